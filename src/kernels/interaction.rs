//! Launcher of `shaders/interaction.wgsl`: dlrm's dot interaction, forward and backward.

use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::launch;
use crate::kernels::named;

/// Shapes of an interaction: `batch` samples of `vectors` (F) vectors of `dim` (D) values;
/// the output rows hold D + F(F-1)/2 values padded to `out_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InteractionShape {
    pub batch: usize,
    pub vectors: usize,
    pub dim: usize,
    pub out_stride: usize,
}

impl InteractionShape {
    /// Output width before padding: D + F(F-1)/2.
    pub fn out_width(&self) -> usize {
        self.dim + self.vectors * (self.vectors - 1) / 2
    }

    fn check(&self) -> Result<()> {
        if !self.dim.is_multiple_of(4) || self.dim == 0 {
            return Err(Error::shape(
                None,
                format!("the interaction needs D a multiple of 4, got {}", self.dim),
            ));
        }
        if self.vectors < 2 || self.out_stride < self.out_width() || self.batch == 0 {
            return Err(Error::shape(
                None,
                format!("interaction of {self:?} is malformed"),
            ));
        }
        Ok(())
    }

    fn constants(&self) -> [(&'static str, f64); 5] {
        [
            ("BATCH", self.batch as f64),
            ("F", self.vectors as f64),
            ("D", self.dim as f64),
            ("LDR", self.out_stride as f64),
            ("LDB", self.batch.div_ceil(4) as f64 * 4.0),
        ]
    }
}

/// Adds R = interaction(T): `t` is [B, F, D], `r` is [B, out_stride] and `r_t` its transpose
/// [out_stride, pad4(B)].
pub fn record_interaction_fwd(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    s: InteractionShape,
    t: Buf,
    r: Buf,
    r_t: Buf,
) -> Result<()> {
    s.check()?;
    launch(
        g,
        label,
        Kernel::InteractFwd,
        &s.constants(),
        named![t, r, r_t],
        (s.batch * s.vectors) as u64,
    )?;
    // One invocation per (sample, vector i): i dot products of D, a vec4 at a time.
    let (b, f, d) = (s.batch as f64, s.vectors as f64, s.dim as f64);
    g.set_cost(Cost {
        flops: b * f * (f - 1.0) * d,
        bytes: 4.0 * b * (f * d + 2.0 * s.out_stride as f64),
        serial: ((s.vectors - 1) * s.dim / 4) as u64,
    });
    Ok(())
}

/// Adds dT from dR (`dr` [B, out_stride]), and vector 0's gradient transposed into `dt0_t`
/// [D, pad4(B)]; with `mask0` vector 0's gradient is zeroed where T[b, 0] <= 0 (the ReLU that
/// ends the bottom MLP).
#[allow(clippy::too_many_arguments)]
pub fn record_interaction_bwd(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    s: InteractionShape,
    dr: Buf,
    t: Buf,
    dt: Buf,
    dt0_t: Buf,
    mask0: bool,
) -> Result<()> {
    s.check()?;
    let mut constants = s.constants().to_vec();
    constants.push(("MASK0", mask0 as u8 as f64));
    launch(
        g,
        label,
        Kernel::InteractBwd,
        &constants,
        named![dr, t, dt, dt0_t],
        (s.batch * s.vectors * s.dim / 4) as u64,
    )?;
    // One invocation per (sample, vector, vec4 of D): a sum over the F vectors.
    let (b, f, d) = (s.batch as f64, s.vectors as f64, s.dim as f64);
    g.set_cost(Cost {
        flops: 2.0 * b * f * f * d,
        bytes: 4.0 * b * (s.out_stride as f64 + 3.0 * f * d),
        serial: s.vectors as u64,
    });
    Ok(())
}
