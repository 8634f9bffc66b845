//! The graph executor. A step is data: a list of nodes (a kernel with its bound buffers and
//! dispatch size, a buffer clear or a copy) over named buffers. It is built once per shape into a
//! [`Plan`] (pipelines fetched, bind groups made, transient buffers assigned by lifetime) and then
//! replayed: all nodes encoded into one command encoder and one submit, no host round-trip.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A buffer a node binds: one the caller owns, or a transient the plan allocates.
#[derive(Clone, Debug)]
pub enum Buf {
    External(wgpu::Buffer),
    /// Index of a transient declared with [`GraphBuilder::transient`].
    Transient(usize),
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
}

impl GraphBuilder {
    pub fn new(gpu: &Gpu) -> Self {
        GraphBuilder {
            gpu: gpu.clone(),
            nodes: Vec::new(),
            transients: Vec::new(),
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

    /// Zeroes a whole buffer.
    pub fn clear(&mut self, label: impl Into<String>, buffer: Buf) {
        self.nodes.push(Node {
            label: label.into(),
            kind: NodeKind::Clear { buffer },
        });
    }

    /// Copies `bytes` bytes between buffers.
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

    /// Plans the step: assigns transients to pooled buffers by lifetime (a buffer is reused once
    /// the last node using its previous tenant has run) and makes every bind group.
    pub fn build(self) -> Result<Plan> {
        let GraphBuilder {
            gpu,
            nodes,
            transients,
        } = self;
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
        let resolve = |b: &Buf| -> wgpu::Buffer {
            match b {
                Buf::External(b) => b.clone(),
                Buf::Transient(t) => buffers[assigned[*t].expect("assigned")].clone(),
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
                    let bufs: Vec<wgpu::Buffer> = bindings.iter().map(&resolve).collect();
                    let entries: Vec<wgpu::BindGroupEntry> = bufs
                        .iter()
                        .enumerate()
                        .map(|(i, b)| wgpu::BindGroupEntry {
                            binding: i as u32,
                            resource: b.as_entire_binding(),
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
                NodeKind::Clear { buffer } => Op::Clear {
                    buffer: resolve(&buffer),
                },
                NodeKind::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => Op::Copy {
                    src: resolve(&src),
                    src_offset,
                    dst: resolve(&dst),
                    dst_offset,
                    bytes,
                },
            };
            ops.push((node.label, op));
        }
        gpu.take_error()
            .map_err(|e| Error::Gpu(format!("building a plan: {e}")))?;
        Ok(Plan {
            gpu,
            ops,
            transient_buffers: buffers,
        })
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
        Op::Clear { buffer } => encoder.clear_buffer(buffer, 0, None),
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
