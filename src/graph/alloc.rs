//! Memory of a plan: the packed per-replay input buffer and its host image ([`PlanInput`]), and
//! the transients' lifetimes, by which transients whose lifetimes do not overlap share one
//! pooled buffer. Kept apart from encoding and running (`plan`) because it is decided once, when
//! a plan is built, and is where a plan's GPU memory goes.

use std::sync::Arc;

use super::{Buf, Node};
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Where each input region lies in the packed input buffer.
#[derive(Debug)]
pub(super) struct InputLayout {
    /// (offset, bytes) of each region.
    pub(super) regions: Vec<(u64, u64)>,
    pub(super) labels: Vec<String>,
    pub(super) bytes: u64,
}

/// Lays the declared inputs `(label, bytes)` out in one buffer, every region aligned for both
/// storage and uniform bindings, and makes that buffer (None when there are no inputs).
pub(super) fn lay_out_inputs(
    gpu: &Gpu,
    inputs: Vec<(String, u64)>,
) -> Result<(InputLayout, Option<wgpu::Buffer>)> {
    let align = (gpu.limits().min_storage_buffer_offset_alignment as u64)
        .max(gpu.limits().min_uniform_buffer_offset_alignment as u64)
        .max(16);
    let mut regions = Vec::with_capacity(inputs.len());
    let mut end = 0u64;
    for (label, bytes) in &inputs {
        if *bytes > gpu.max_binding() {
            return Err(Error::Gpu(format!(
                "input {label} needs {bytes} bytes, over the adapter's binding limit {}",
                gpu.max_binding()
            )));
        }
        let at = end.div_ceil(align) * align;
        regions.push((at, *bytes));
        end = at + bytes;
    }
    if end > gpu.limits().max_buffer_size {
        return Err(Error::Gpu(format!(
            "the step's inputs need {end} bytes, over the adapter's buffer limit {}",
            gpu.limits().max_buffer_size
        )));
    }
    let arena = (!inputs.is_empty()).then(|| {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("ttrec step inputs"),
            size: end.div_ceil(16) * 16,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    });
    let layout = InputLayout {
        regions,
        labels: inputs.into_iter().map(|(l, _)| l).collect(),
        bytes: end,
    };
    Ok((layout, arena))
}

/// The pooled buffers that hold a plan's transients.
pub(super) struct Transients {
    /// The physical buffers, taken from the GPU's pool (returned when the plan drops).
    pub(super) buffers: Vec<wgpu::Buffer>,
    /// Per declared transient: its physical buffer (None for a transient no node uses).
    pub(super) assigned: Vec<Option<usize>>,
}

/// Assigns the `transients` `(label, bytes)` used by `nodes` to pooled buffers by lifetime: in
/// order of first use, each takes the smallest free buffer that fits (free once the last node
/// using its previous tenant has run), else a new one from the pool.
pub(super) fn assign_transients(
    gpu: &Gpu,
    nodes: &[Node],
    transients: &[(String, u64)],
) -> Result<Transients> {
    // First and last node index of each transient.
    let mut life: Vec<Option<(usize, usize)>> = vec![None; transients.len()];
    for (i, node) in nodes.iter().enumerate() {
        for b in node.kind.buffers() {
            if let Buf::Transient(t) = b {
                let e = &mut life[*t];
                *e = Some(match *e {
                    None => (i, i),
                    Some((a, _)) => (a, i),
                });
            }
        }
    }
    let mut order: Vec<usize> = (0..transients.len())
        .filter(|&t| life[t].is_some())
        .collect();
    order.sort_by_key(|&t| life[t].map(|l| l.0));
    let mut physical: Vec<(wgpu::Buffer, usize)> = Vec::new(); // (buffer, last use of tenant)
    let mut assigned: Vec<Option<usize>> = vec![None; transients.len()];
    for t in order {
        let (first, last) = life[t].expect("used");
        let need = transients[t].1;
        // Every transient is bound whole by some node: it must fit one binding.
        if need > gpu.max_binding() {
            return Err(Error::Gpu(format!(
                "transient {} needs {need} bytes, over the device's maxStorageBufferBindingSize \
                 of {} bytes (and maxBufferSize {})",
                transients[t].0,
                gpu.limits().max_storage_buffer_binding_size,
                gpu.limits().max_buffer_size
            )));
        }
        let candidate = physical
            .iter()
            .enumerate()
            .filter(|(_, (b, busy))| *busy < first && b.size() >= need)
            .min_by_key(|(_, (b, _))| b.size())
            .map(|(i, _)| i);
        let slot = match candidate {
            Some(i) => i,
            None => {
                physical.push((gpu.acquire(need), 0));
                physical.len() - 1
            }
        };
        physical[slot].1 = last;
        assigned[t] = Some(slot);
    }
    Ok(Transients {
        buffers: physical.into_iter().map(|(b, _)| b).collect(),
        assigned,
    })
}

/// The host side of a plan's inputs: a byte image of the packed input buffer. Fill the regions
/// with [`PlanInput::write`], then `Plan::run_with` uploads it in one write.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub(super) layout: Arc<InputLayout>,
    /// The image, in words so that every region (aligned to 16 bytes or more) can be viewed as
    /// a slice of any 4-byte type.
    pub(super) words: Vec<u32>,
}

impl PlanInput {
    /// A zeroed image of `layout`.
    pub(super) fn zeroed(layout: Arc<InputLayout>) -> Self {
        let words = vec![0; layout.bytes.div_ceil(4) as usize];
        PlanInput { layout, words }
    }

    /// Writes `data` at the start of input region `region`.
    pub fn write<T: bytemuck::Pod>(&mut self, region: &Buf, data: &[T]) -> Result<()> {
        self.write_at(region, 0, data)
    }

    /// (index, byte offset, bytes) of input region `region`.
    fn region(&self, region: &Buf) -> Result<(usize, u64, u64)> {
        let Buf::Input(i) = region else {
            return Err(Error::Gpu(format!(
                "{region:?} is not an input region of this plan"
            )));
        };
        self.layout
            .regions
            .get(*i)
            .map(|&(at, size)| (*i, at, size))
            .ok_or_else(|| Error::Gpu(format!("input region {i} is not declared in this plan")))
    }

    /// Input region `region` as a mutable slice of a 4-byte type, to fill in place (no copy of
    /// a staging vector).
    pub fn region_mut<T: bytemuck::Pod>(&mut self, region: &Buf) -> Result<&mut [T]> {
        let (_, at, size) = self.region(region)?;
        let (at, words) = (at as usize / 4, size as usize / 4);
        bytemuck::try_cast_slice_mut(&mut self.words[at..at + words]).map_err(|e| {
            Error::Gpu(format!(
                "input region as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Writes `data` at byte `offset` of input region `region`.
    pub fn write_at<T: bytemuck::Pod>(
        &mut self,
        region: &Buf,
        offset: u64,
        data: &[T],
    ) -> Result<()> {
        let (i, at, size) = self.region(region)?;
        let src: &[u8] = bytemuck::cast_slice(data);
        if offset + src.len() as u64 > size {
            return Err(Error::Gpu(format!(
                "{} bytes at {offset} do not fit input {} of {size} bytes",
                src.len(),
                self.layout.labels[i]
            )));
        }
        let start = (at + offset) as usize;
        bytemuck::cast_slice_mut::<u32, u8>(&mut self.words)[start..start + src.len()]
            .copy_from_slice(src);
        Ok(())
    }

    /// Bytes of the whole input image.
    pub fn len(&self) -> usize {
        self.words.len() * 4
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}
