//! The graph executor. A step is data: a list of nodes (a kernel with its bound buffers and
//! dispatch size, a buffer clear or a copy) over named buffers. It is built once per shape into a
//! [`Plan`] (pipelines fetched, bind groups made, transient buffers assigned by lifetime) and then
//! replayed: all nodes encoded into one command encoder and one submit, no host round-trip.
//!
//! What the host sends each replay (a batch's indices, labels, per-chunk parameters) is declared
//! as *inputs*: regions of one packed buffer owned by the plan. The host fills a [`PlanInput`]
//! and [`Plan::run_with`] uploads it with one write and replays the step with one submit.
//!
//! **Unstable internals**: public for the crate's tests and benchmarks only, hidden from the
//! docs, may change in any release.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

pub mod plan_cache;
pub use plan_cache::PlanCache;

/// A buffer a node binds: one the caller owns, a range of one, a transient the plan allocates,
/// or a region of the plan's per-replay input.
#[derive(Clone, Debug)]
pub enum Buf {
    External(wgpu::Buffer),
    /// `size` bytes of `buffer` from `offset` (a multiple of the adapter's binding alignment).
    Slice {
        buffer: wgpu::Buffer,
        offset: u64,
        size: u64,
    },
    /// Index of a transient declared with [`GraphBuilder::transient`].
    Transient(usize),
    /// Index of an input region declared with [`GraphBuilder::input`].
    Input(usize),
}

impl From<&wgpu::Buffer> for Buf {
    fn from(b: &wgpu::Buffer) -> Self {
        Buf::External(b.clone())
    }
}

enum NodeKind {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bindings: Vec<Buf>,
        groups: [u32; 3],
    },
    Clear {
        buffer: Buf,
    },
    Copy {
        src: Buf,
        src_offset: u64,
        dst: Buf,
        dst_offset: u64,
        bytes: u64,
    },
}

struct Node {
    label: String,
    kind: NodeKind,
}

/// Collects the nodes of a step.
pub struct GraphBuilder {
    gpu: Gpu,
    nodes: Vec<Node>,
    transients: Vec<(String, u64)>,
    inputs: Vec<(String, u64)>,
}

/// Where a binding resolves to: a buffer and, for slices and inputs, a byte range of it.
#[derive(Clone)]
struct Bound {
    buffer: wgpu::Buffer,
    offset: u64,
    size: Option<u64>,
}

impl Bound {
    fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: self.size.and_then(wgpu::BufferSize::new),
        })
    }
    fn len(&self) -> u64 {
        self.size.unwrap_or(self.buffer.size() - self.offset)
    }
}

impl std::fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphBuilder")
            .field("nodes", &self.nodes.len())
            .field("transients", &self.transients)
            .field("inputs", &self.inputs)
            .finish()
    }
}

impl GraphBuilder {
    pub fn new(gpu: &Gpu) -> Self {
        GraphBuilder {
            gpu: gpu.clone(),
            nodes: Vec::new(),
            transients: Vec::new(),
            inputs: Vec::new(),
        }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Declares a scratch buffer of `bytes` bytes whose memory the plan may share with other
    /// transients whose lifetimes do not overlap.
    pub fn transient(&mut self, label: &str, bytes: u64) -> Buf {
        self.transients.push((label.to_string(), bytes.max(16)));
        Buf::Transient(self.transients.len() - 1)
    }

    /// Declares a region of `bytes` bytes of the per-replay input: the host writes it into a
    /// [`PlanInput`] before each replay. It binds as storage (read-only) or as a uniform.
    pub fn input(&mut self, label: &str, bytes: u64) -> Buf {
        self.inputs
            .push((label.to_string(), bytes.max(16).div_ceil(16) * 16));
        Buf::Input(self.inputs.len() - 1)
    }

    /// A dispatch of `pipeline` with `bindings[i]` at `@group(0) @binding(i)`.
    pub fn dispatch(
        &mut self,
        label: impl Into<String>,
        pipeline: wgpu::ComputePipeline,
        bindings: Vec<Buf>,
        groups: [u32; 3],
    ) {
        self.nodes.push(Node {
            label: label.into(),
            kind: NodeKind::Dispatch {
                pipeline,
                bindings,
                groups,
            },
        });
    }

    /// Zeroes a whole buffer (or the whole slice, transient or input region).
    pub fn clear(&mut self, label: impl Into<String>, buffer: Buf) {
        self.nodes.push(Node {
            label: label.into(),
            kind: NodeKind::Clear { buffer },
        });
    }

    /// Copies `bytes` bytes between buffers (offsets are relative to slices and regions).
    pub fn copy(
        &mut self,
        label: impl Into<String>,
        src: Buf,
        src_offset: u64,
        dst: Buf,
        dst_offset: u64,
        bytes: u64,
    ) {
        self.nodes.push(Node {
            label: label.into(),
            kind: NodeKind::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                bytes,
            },
        });
    }

    /// Number of nodes so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Plans the step: lays the inputs out in one buffer, assigns transients to pooled buffers
    /// by lifetime (a buffer is reused once the last node using its previous tenant has run) and
    /// makes every bind group.
    pub fn build(self) -> Result<Plan> {
        let GraphBuilder {
            gpu,
            nodes,
            transients,
            inputs,
        } = self;
        // Inputs: one buffer, every region aligned for both storage and uniform bindings.
        let align = (gpu.limits().min_storage_buffer_offset_alignment as u64)
            .max(gpu.limits().min_uniform_buffer_offset_alignment as u64)
            .max(16);
        let mut layout = Vec::with_capacity(inputs.len());
        let mut end = 0u64;
        for (label, bytes) in &inputs {
            if *bytes > gpu.max_binding() {
                return Err(Error::Gpu(format!(
                    "input {label} needs {bytes} bytes, over the adapter's binding limit {}",
                    gpu.max_binding()
                )));
            }
            let at = end.div_ceil(align) * align;
            layout.push((at, *bytes));
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
        // First and last node index of each transient.
        let mut life: Vec<Option<(usize, usize)>> = vec![None; transients.len()];
        for (i, node) in nodes.iter().enumerate() {
            let mut touch = |b: &Buf| {
                if let Buf::Transient(t) = b {
                    let e = &mut life[*t];
                    *e = Some(match *e {
                        None => (i, i),
                        Some((a, _)) => (a, i),
                    });
                }
            };
            match &node.kind {
                NodeKind::Dispatch { bindings, .. } => bindings.iter().for_each(&mut touch),
                NodeKind::Clear { buffer } => touch(buffer),
                NodeKind::Copy { src, dst, .. } => {
                    touch(src);
                    touch(dst)
                }
            }
        }
        // Greedy assignment in order of first use: reuse the smallest free physical buffer that
        // fits, else take a new one from the pool.
        let mut order: Vec<usize> = (0..transients.len())
            .filter(|&t| life[t].is_some())
            .collect();
        order.sort_by_key(|&t| life[t].map(|l| l.0));
        let mut physical: Vec<(wgpu::Buffer, usize)> = Vec::new(); // (buffer, last use of tenant)
        let mut assigned: Vec<Option<usize>> = vec![None; transients.len()];
        for t in order {
            let (first, last) = life[t].expect("used");
            let need = transients[t].1;
            if need > gpu.limits().max_buffer_size {
                return Err(Error::Gpu(format!(
                    "transient {} needs {need} bytes, over the adapter's buffer limit {}",
                    transients[t].0,
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
        let buffers: Vec<wgpu::Buffer> = physical.into_iter().map(|(b, _)| b).collect();
        let resolve = |b: &Buf| -> Bound {
            match b {
                Buf::External(b) => Bound {
                    buffer: b.clone(),
                    offset: 0,
                    size: None,
                },
                Buf::Slice {
                    buffer,
                    offset,
                    size,
                } => Bound {
                    buffer: buffer.clone(),
                    offset: *offset,
                    size: Some(*size),
                },
                Buf::Transient(t) => Bound {
                    buffer: buffers[assigned[*t].expect("assigned")].clone(),
                    offset: 0,
                    size: None,
                },
                Buf::Input(i) => Bound {
                    buffer: arena.clone().expect("inputs declared"),
                    offset: layout[*i].0,
                    size: Some(layout[*i].1),
                },
            }
        };
        let mut ops = Vec::with_capacity(nodes.len());
        for node in nodes {
            let op = match node.kind {
                NodeKind::Dispatch {
                    pipeline,
                    bindings,
                    groups,
                } => {
                    let bound: Vec<Bound> = bindings.iter().map(&resolve).collect();
                    let entries: Vec<wgpu::BindGroupEntry> = bound
                        .iter()
                        .enumerate()
                        .map(|(i, b)| wgpu::BindGroupEntry {
                            binding: i as u32,
                            resource: b.binding(),
                        })
                        .collect();
                    let bind_group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(&node.label),
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    });
                    Op::Dispatch {
                        pipeline,
                        bind_group,
                        groups,
                    }
                }
                NodeKind::Clear { buffer } => {
                    let b = resolve(&buffer);
                    Op::Clear {
                        size: b.len(),
                        offset: b.offset,
                        buffer: b.buffer,
                    }
                }
                NodeKind::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => {
                    let (s, d) = (resolve(&src), resolve(&dst));
                    Op::Copy {
                        src: s.buffer,
                        src_offset: s.offset + src_offset,
                        dst: d.buffer,
                        dst_offset: d.offset + dst_offset,
                        bytes,
                    }
                }
            };
            ops.push((node.label, op));
        }
        gpu.take_error()
            .map_err(|e| Error::Gpu(format!("building a plan: {e}")))?;
        Ok(Plan {
            gpu,
            ops,
            transient_buffers: buffers,
            inputs: Arc::new(InputLayout {
                regions: layout,
                labels: inputs.into_iter().map(|(l, _)| l).collect(),
                bytes: end,
            }),
            arena,
        })
    }
}

/// Where each input region lies in the packed input buffer.
#[derive(Debug)]
struct InputLayout {
    /// (offset, bytes) of each region.
    regions: Vec<(u64, u64)>,
    labels: Vec<String>,
    bytes: u64,
}

/// The host side of a plan's inputs: a byte image of the packed input buffer. Fill the regions
/// with [`PlanInput::write`], then [`Plan::run_with`] uploads it in one write.
#[derive(Debug, Clone)]
pub struct PlanInput {
    layout: Arc<InputLayout>,
    /// The image, in words so that every region (aligned to 16 bytes or more) can be viewed as
    /// a slice of any 4-byte type.
    words: Vec<u32>,
}

impl PlanInput {
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

enum Op {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    Clear {
        buffer: wgpu::Buffer,
        offset: u64,
        size: u64,
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    },
}

/// A built step: replay it with [`Plan::encode`] (inside a larger encoder) or [`Plan::run`].
pub struct Plan {
    gpu: Gpu,
    ops: Vec<(String, Op)>,
    transient_buffers: Vec<wgpu::Buffer>,
    inputs: Arc<InputLayout>,
    arena: Option<wgpu::Buffer>,
}

/// GPU time of one node of a profiled replay.
#[derive(Clone, Debug)]
pub struct NodeTime {
    pub label: String,
    pub nanos: f64,
}

/// Encodes a clear or copy node (dispatches go through compute passes, not here).
fn encode_transfer(encoder: &mut wgpu::CommandEncoder, op: &Op) {
    match op {
        Op::Clear {
            buffer,
            offset,
            size,
        } => encoder.clear_buffer(buffer, *offset, Some(*size)),
        Op::Copy {
            src,
            src_offset,
            dst,
            dst_offset,
            bytes,
        } => encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes),
        Op::Dispatch { .. } => unreachable!("dispatches are encoded in compute passes"),
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("ops", &self.ops.len())
            .field("transient_buffers", &self.transient_buffers.len())
            .field("input_bytes", &self.inputs.bytes)
            .finish()
    }
}

impl Plan {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// Bytes of transient memory the plan holds.
    pub fn transient_bytes(&self) -> u64 {
        self.transient_buffers.iter().map(|b| b.size()).sum()
    }
    /// Labels of the nodes in order.
    pub fn labels(&self) -> Vec<&str> {
        self.ops.iter().map(|(l, _)| l.as_str()).collect()
    }

    /// Encodes every node into `encoder`: consecutive dispatches share one compute pass.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut i = 0;
        while i < self.ops.len() {
            match &self.ops[i].1 {
                Op::Dispatch { .. } => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("ttrec step"),
                        timestamp_writes: None,
                    });
                    while let Some((
                        _,
                        Op::Dispatch {
                            pipeline,
                            bind_group,
                            groups,
                        },
                    )) = self.ops.get(i)
                    {
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, bind_group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                }
                transfer => {
                    encode_transfer(encoder, transfer);
                    i += 1;
                }
            }
        }
    }

    /// A zeroed host image of the plan's inputs, to fill and pass to [`Plan::run_with`].
    pub fn new_input(&self) -> PlanInput {
        PlanInput {
            layout: self.inputs.clone(),
            words: vec![0; self.inputs.bytes.div_ceil(4) as usize],
        }
    }

    /// Bytes uploaded per replay.
    pub fn input_bytes(&self) -> u64 {
        self.inputs.bytes
    }

    /// Queues the upload of `input` (one write, applied at the start of the next submit).
    pub fn upload(&self, input: &PlanInput) -> Result<()> {
        if !Arc::ptr_eq(&input.layout, &self.inputs) {
            return Err(Error::Gpu(
                "the input image was made for another plan".to_string(),
            ));
        }
        if let Some(arena) = &self.arena {
            self.gpu
                .queue()
                .write_buffer(arena, 0, bytemuck::cast_slice(&input.words));
        }
        Ok(())
    }

    /// Uploads `input` and replays the step: one write, one encoder, one submit. Does not wait.
    pub fn run_with(&self, input: &PlanInput) -> Result<()> {
        self.upload(input)?;
        self.run()
    }

    /// Encodes the upload of `input` and every node into the caller's `encoder` (for apps that
    /// submit ttrec's work with their own): the upload goes through a staging copy recorded in
    /// the encoder, so it is ordered with the caller's other commands.
    pub fn encode_with(&self, encoder: &mut wgpu::CommandEncoder, input: &PlanInput) -> Result<()> {
        self.encode_with_copies(encoder, input, &[])
    }

    /// [`Plan::encode_with`], plus copies of `bytes` bytes from caller buffers into input regions
    /// after the upload (an input that already lives on the GPU, e.g. an output gradient).
    pub fn encode_with_copies(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &PlanInput,
        copies: &[(&wgpu::Buffer, &Buf, u64)],
    ) -> Result<()> {
        use wgpu::util::DeviceExt;
        if !Arc::ptr_eq(&input.layout, &self.inputs) {
            return Err(Error::Gpu(
                "the input image was made for another plan".to_string(),
            ));
        }
        if let Some(arena) = &self.arena {
            let staging = self
                .gpu
                .device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("ttrec step input staging"),
                    contents: bytemuck::cast_slice(&input.words),
                    usage: wgpu::BufferUsages::COPY_SRC,
                });
            encoder.copy_buffer_to_buffer(&staging, 0, arena, 0, input.len() as u64);
            for (src, region, bytes) in copies {
                let Buf::Input(i) = region else {
                    return Err(Error::Gpu(format!("{region:?} is not an input region")));
                };
                let (at, size) = self.inputs.regions[*i];
                if *bytes > size || *bytes > src.size() {
                    return Err(Error::Gpu(format!(
                        "copy of {bytes} bytes into input {} of {size} bytes",
                        self.inputs.labels[*i]
                    )));
                }
                if *bytes > 0 {
                    encoder.copy_buffer_to_buffer(src, 0, arena, at, *bytes);
                }
            }
        }
        self.encode(encoder);
        Ok(())
    }

    /// Replays the step: one encoder, one submit. Does not wait.
    pub fn run(&self) -> Result<()> {
        let mut enc = self
            .gpu
            .device()
            .create_command_encoder(&Default::default());
        self.encode(&mut enc);
        self.gpu.queue().submit([enc.finish()]);
        self.gpu.take_error()
    }

    /// Replays the step with a GPU timestamp around every node (each dispatch in a pass of its
    /// own), waits, and returns the per-node times. Needs [`Gpu::has_timestamps`].
    pub fn run_profiled(&self) -> Result<Vec<NodeTime>> {
        let gpu = &self.gpu;
        if !gpu.has_timestamps() {
            return Err(Error::Gpu(format!(
                "{} has no timestamp queries",
                gpu.adapter_name()
            )));
        }
        let n = self.ops.len() as u32;
        if n == 0 {
            return Ok(Vec::new());
        }
        let count = 2 * n;
        let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("ttrec node times"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("ttrec timestamps"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        for (i, (label, op)) in self.ops.iter().enumerate() {
            let i = i as u32;
            match op {
                Op::Dispatch {
                    pipeline,
                    bind_group,
                    groups,
                } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(label),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &set,
                            beginning_of_pass_write_index: Some(2 * i),
                            end_of_pass_write_index: Some(2 * i + 1),
                        }),
                    });
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                }
                other => {
                    let with_encoder_stamps = gpu
                        .device()
                        .features()
                        .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
                    if with_encoder_stamps {
                        enc.write_timestamp(&set, 2 * i);
                    }
                    encode_transfer(&mut enc, other);
                    if with_encoder_stamps {
                        enc.write_timestamp(&set, 2 * i + 1);
                    }
                }
            }
        }
        enc.resolve_query_set(&set, 0..count, &resolve, 0);
        gpu.queue().submit([enc.finish()]);
        let raw = gpu.read_bytes(&resolve, 0, count as u64 * 8)?;
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        let period = gpu.queue().get_timestamp_period() as f64;
        Ok(self
            .ops
            .iter()
            .enumerate()
            .map(|(i, (label, _))| NodeTime {
                label: label.clone(),
                nanos: stamps[2 * i + 1].saturating_sub(stamps[2 * i]) as f64 * period,
            })
            .collect())
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        for b in self.transient_buffers.drain(..) {
            self.gpu.release(b);
        }
    }
}
