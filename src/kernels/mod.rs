//! Thin launchers of the WGSL kernel families under `shaders/`: each adds nodes to a
//! [`crate::graph::GraphBuilder`] with a pipeline specialised for the shapes at hand. One file per
//! shader, named after its stem: `kernels/tt_route.rs` runs `shaders/tt_route.wgsl`, and so on.

pub mod embedding;
pub mod finite;
pub mod interaction;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod qr;
pub mod tt;
pub mod tt_cache;
pub mod tt_route;
pub mod tt_subgroup;

use crate::error::{Error, Result};
use crate::gpu::grid;
use crate::gpu::shaders::{Kernel, ShaderTypes};
use crate::graph::{Binding, Buf, GraphBuilder};

/// Threads per workgroup of every ttrec kernel (the WGSL `WG`).
pub const WORKGROUP: u32 = 64;

/// The workgroup grid for `invocations` threads of a kernel recorded into `g` (folded into y
/// past the adapter's per-dimension limit).
pub(crate) fn groups(g: &GraphBuilder, invocations: u64) -> [u32; 3] {
    grid(
        invocations,
        WORKGROUP,
        g.gpu().limits().max_compute_workgroups_per_dimension,
    )
}

/// A kernel's buffers by name, in `@binding` order (see [`named`]).
pub(crate) type Named = Vec<(&'static str, Buf)>;

/// Buffers named after the variables (or `name = expr`) that hold them, for [`launch`]:
/// `named![chunk, digits, a, b = core, out]`. `&name` binds a clone of `name` (a buffer the
/// launcher binds again later): `named![&selection, &hist, members]`.
macro_rules! named {
    (@collect [$($out:tt)*]) => {
        vec![$($out)*]
    };
    (@collect [$($out:tt)*] & $name:ident $(, $($rest:tt)*)?) => {
        named!(@collect [$($out)* (stringify!($name), $name.clone()),] $($($rest)*)?)
    };
    (@collect [$($out:tt)*] $name:ident = $e:expr $(, $($rest:tt)*)?) => {
        named!(@collect [$($out)* (stringify!($name), $e),] $($($rest)*)?)
    };
    (@collect [$($out:tt)*] $name:ident $(, $($rest:tt)*)?) => {
        named!(@collect [$($out)* (stringify!($name), $name),] $($($rest)*)?)
    };
    ($($entry:tt)*) => {
        named!(@collect [] $($entry)*)
    };
}
pub(crate) use named;

/// The one way kernels are launched: `kernel` specialised by `constants` (pipeline cached), with
/// its bindings by name (they must be [`Kernel::bindings`], in that order), over `invocations`
/// threads in workgroups of [`WORKGROUP`].
pub(crate) fn launch(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    kernel: Kernel,
    constants: &[(&str, f64)],
    bindings: Named,
    invocations: u64,
) -> Result<()> {
    launch_typed(
        g,
        label,
        kernel,
        ShaderTypes::F32,
        constants,
        bindings,
        invocations,
    )
}

/// [`launch`] of a module specialised for `types` (the storage of TT cores).
pub(crate) fn launch_typed(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    kernel: Kernel,
    types: ShaderTypes,
    constants: &[(&str, f64)],
    bindings: Named,
    invocations: u64,
) -> Result<()> {
    let grid = groups(g, invocations);
    launch_grid_typed(g, label, kernel, types, constants, bindings, grid)?;
    if let Some(m) = g.last_meta() {
        m.invocations = Some(invocations);
    }
    Ok(())
}

/// [`launch`] over an explicit workgroup grid (kernels with their own workgroup shape).
pub(crate) fn launch_grid(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    kernel: Kernel,
    constants: &[(&str, f64)],
    bindings: Named,
    grid: [u32; 3],
) -> Result<()> {
    launch_grid_typed(
        g,
        label,
        kernel,
        ShaderTypes::F32,
        constants,
        bindings,
        grid,
    )
}

/// [`launch_grid`] of a module specialised for `types`.
pub(crate) fn launch_grid_typed(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    kernel: Kernel,
    types: ShaderTypes,
    constants: &[(&str, f64)],
    bindings: Named,
    grid: [u32; 3],
) -> Result<()> {
    let want = kernel.bindings();
    let got: Vec<&str> = bindings.iter().map(|(n, _)| *n).collect();
    if got != want {
        return Err(Error::Gpu(format!(
            "{kernel:?} ({}::{}) binds {want:?}; the launcher passed {got:?}",
            kernel.shader().name(),
            kernel.entry()
        )));
    }
    let access = &kernel.layout()?.bindings;
    if access.len() != want.len() {
        return Err(Error::Gpu(format!(
            "{kernel:?}: the shader declares {} bindings; the kernel names {want:?}",
            access.len()
        )));
    }
    let pipeline = g.gpu().pipeline_typed(kernel, types, constants)?;
    let bindings = bindings
        .into_iter()
        .zip(access)
        .map(|((name, buf), &access)| Binding { name, access, buf })
        .collect();
    let entry = format!("{}::{}", kernel.shader().name(), kernel.entry());
    g.dispatch(label, &entry, pipeline, bindings, grid)?;
    if let Some(m) = g.last_meta() {
        m.kernel = Some(kernel.entry());
    }
    Ok(())
}

/// A row-major f32 matrix inside a buffer: element (r, c) at `offset + r * stride + c` (in
/// elements). Lets kernels read and write sub-blocks of shared buffers, e.g. each embedding
/// table's pooled rows as one column block of the interaction's input, with no copies.
#[derive(Clone, Debug)]
pub struct MatrixAt {
    pub buf: Buf,
    pub stride: usize,
    pub offset: usize,
}

impl MatrixAt {
    /// A dense matrix of `cols` columns at the start of `buf`.
    pub fn dense(buf: Buf, cols: usize) -> Self {
        MatrixAt {
            buf,
            stride: cols,
            offset: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A launcher that passes its buffers under other names, or in another order, than the
    /// kernel's bindings is an error naming both lists, before any pipeline is built.
    #[test]
    fn launch_checks_binding_names() {
        let gpu = crate::gpu::Gpu::new().expect("an adapter (lavapipe works)");
        let mut g = GraphBuilder::new(&gpu);
        let (core, out) = (
            Buf::from(gpu.placeholder()),
            Buf::from(gpu.placeholder_rw()),
        );
        let e = launch(
            &mut g,
            "swapped",
            Kernel::TtTransposeSlices,
            &[],
            named![&out, &core],
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[\"core\", \"out\"]") && e.contains("[\"out\", \"core\"]"),
            "{e}"
        );
        assert!(g.is_empty());
        launch(
            &mut g,
            "right",
            Kernel::TtTransposeSlices,
            &[("RK", 1.0), ("NK", 1.0), ("PK", 1.0)],
            named![core, out],
            1,
        )
        .unwrap();
        assert_eq!(g.len(), 1);
    }
}
