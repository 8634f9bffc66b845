//! A built step and how it runs: [`GraphBuilder::build`] resolves every node's buffers (with the
//! memory `alloc` lays out) into bind groups once; [`Plan`] then encodes them (consecutive
//! dispatches in one compute pass), uploads the host's input image, submits, or profiles every
//! node with GPU timestamps. Nothing here allocates per replay except the staging copy of
//! [`Plan::encode_with`].

use std::sync::Arc;

use super::alloc::{assign_transients, lay_out_inputs, InputLayout, PlanInput};
use super::{Binding, Buf, Cost, GraphBuilder, NodeCount, NodeKind};
use crate::error::{Error, Result};
use crate::gpu::reflect::Access;
use crate::gpu::Gpu;

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

/// A node with its buffers resolved: what a replay encodes.
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

impl GraphBuilder {
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
        let (layout, arena) = lay_out_inputs(&gpu, inputs)?;
        let memory = assign_transients(&gpu, &nodes, &transients)?;
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
                // Bound at its own size, not the pooled buffer's (rounded up to a power of
                // two): a transient within the binding limit stays within it.
                Buf::Transient(t) => Bound {
                    buffer: memory.buffers[memory.assigned[*t].expect("assigned")].clone(),
                    offset: 0,
                    size: Some(transients[*t].1.div_ceil(16) * 16),
                },
                Buf::Input(i) => Bound {
                    buffer: arena.clone().expect("inputs declared"),
                    offset: layout.regions[*i].0,
                    size: Some(layout.regions[*i].1),
                },
            }
        };
        let counts = nodes.iter().map(|n| node_count(n, &resolve)).collect();
        let ops = nodes
            .into_iter()
            .map(|node| {
                let op = bind(&gpu, &node.label, node.kind, &resolve)?;
                Ok((node.label, op))
            })
            .collect::<Result<_>>()?;
        gpu.take_error()
            .map_err(|e| Error::Gpu(format!("building a plan: {e}")))?;
        Ok(Plan {
            gpu,
            ops,
            counts,
            transient_buffers: memory.buffers,
            inputs: Arc::new(layout),
            arena,
        })
    }
}

/// The structural report's view of `node`; clears and copies are counted here (bytes
/// written, and read for a copy), dispatches by their launchers.
fn node_count(node: &super::Node, resolve: &dyn Fn(&Buf) -> Bound) -> NodeCount {
    let transfer = |bytes: u64| {
        Some(Cost {
            flops: 0.0,
            bytes: bytes as f64,
            serial: 1,
        })
    };
    let (workgroups, cost) = match &node.kind {
        NodeKind::Dispatch { groups, .. } => {
            (groups.iter().map(|&g| g as u64).product(), node.meta.cost)
        }
        NodeKind::Clear { buffer } => {
            let b = resolve(buffer);
            let size = b.size.unwrap_or_else(|| b.buffer.size() - b.offset);
            (0, transfer(size))
        }
        NodeKind::Copy { bytes, .. } => (0, transfer(2 * bytes)),
    };
    NodeCount {
        label: node.label.clone(),
        kernel: node.meta.kernel,
        workgroups,
        invocations: node.meta.invocations,
        cost,
    }
}

/// Errors, naming the node, the binding and the limit, when a binding is larger than the
/// device allows (`--limits webgpu`: 128 MiB of storage, 64 KiB of uniform), before wgpu's
/// validation would refuse the bind group.
fn check_binding_size(gpu: &Gpu, node: &str, binding: &Binding, bytes: u64) -> Result<()> {
    let limits = gpu.limits();
    let (limit, max) = match binding.access {
        Access::Uniform => (
            "maxUniformBufferBindingSize",
            limits.max_uniform_buffer_binding_size,
        ),
        _ => (
            "maxStorageBufferBindingSize",
            limits.max_storage_buffer_binding_size,
        ),
    };
    if bytes > max {
        return Err(Error::Gpu(format!(
            "node {node:?} binds {bytes} bytes to {}, over the device's {limit} of {max} bytes",
            binding.name
        )));
    }
    Ok(())
}

/// Node `kind` with its buffers resolved by `resolve` (a dispatch's bind group made).
fn bind(gpu: &Gpu, label: &str, kind: NodeKind, resolve: &impl Fn(&Buf) -> Bound) -> Result<Op> {
    Ok(match kind {
        NodeKind::Dispatch {
            pipeline,
            bindings,
            groups,
        } => {
            let bound: Vec<Bound> = bindings.iter().map(|b| resolve(&b.buf)).collect();
            for (binding, b) in bindings.iter().zip(&bound) {
                check_binding_size(gpu, label, binding, b.len())?;
            }
            let entries: Vec<wgpu::BindGroupEntry> = bound
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: b.binding(),
                })
                .collect();
            let bind_group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
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
    })
}

/// A built step: replay it with [`Plan::encode`] (inside a larger encoder) or [`Plan::run`].
pub struct Plan {
    gpu: Gpu,
    ops: Vec<(String, Op)>,
    /// Per node, what the launcher counted (same order as `ops`).
    counts: Vec<NodeCount>,
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
    /// Per node, its kernel, workgroups, invocations and the launcher's cost (the structural
    /// report).
    pub fn counts(&self) -> &[NodeCount] {
        &self.counts
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
        PlanInput::zeroed(self.inputs.clone())
    }

    /// Bytes uploaded per replay.
    pub fn input_bytes(&self) -> u64 {
        self.inputs.bytes
    }

    /// Errors unless `input` was made by this plan's [`Plan::new_input`].
    fn check_input(&self, input: &PlanInput) -> Result<()> {
        if !Arc::ptr_eq(&input.layout, &self.inputs) {
            return Err(Error::Gpu(
                "the input image was made for another plan".to_string(),
            ));
        }
        Ok(())
    }

    /// Queues the upload of `input` (one write, applied at the start of the next submit).
    pub fn upload(&self, input: &PlanInput) -> Result<()> {
        self.check_input(input)?;
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
        self.check_input(input)?;
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
        self.encode_stamped(&mut enc, &set);
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

    /// Encodes every node with timestamps `2i` and `2i + 1` of `set` around node `i`: each
    /// dispatch in a pass of its own; clears and copies stamped where the adapter allows
    /// timestamps inside encoders.
    fn encode_stamped(&self, enc: &mut wgpu::CommandEncoder, set: &wgpu::QuerySet) {
        let with_encoder_stamps = self
            .gpu
            .device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
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
                            query_set: set,
                            beginning_of_pass_write_index: Some(2 * i),
                            end_of_pass_write_index: Some(2 * i + 1),
                        }),
                    });
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                }
                other => {
                    if with_encoder_stamps {
                        enc.write_timestamp(set, 2 * i);
                    }
                    encode_transfer(enc, other);
                    if with_encoder_stamps {
                        enc.write_timestamp(set, 2 * i + 1);
                    }
                }
            }
        }
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        for b in self.transient_buffers.drain(..) {
            self.gpu.release(b);
        }
    }
}
