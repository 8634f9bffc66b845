//! The graph executor. A step is data: a list of nodes (a kernel with its bound buffers and
//! dispatch size, a buffer clear or a copy) over named buffers. It is built once per shape into a
//! [`Plan`] (pipelines fetched, bind groups made, transient buffers assigned by lifetime) and then
//! replayed: all nodes encoded into one command encoder and one submit, no host round-trip.
//!
//! What the host sends each replay (a batch's indices, labels, per-chunk parameters) is declared
//! as *inputs*: regions of one packed buffer owned by the plan. The host fills a [`PlanInput`]
//! and [`Plan::run_with`] uploads it with one write and replays the step with one submit.
//!
//! The rooms, each using only the ones listed before it:
//! - this file: the nodes and the [`GraphBuilder`] that records them;
//! - `alloc`: the packed input buffer ([`PlanInput`]) and the transients' lifetimes and sharing;
//! - `plan`: building ([`GraphBuilder::build`]), encoding, running and profiling a [`Plan`];
//! - `plan_cache`: the one bounded per-shape cache of built plans ([`PlanCache`]).
//!
//! **Unstable internals**: public for the crate's tests and benchmarks only, hidden from the
//! docs, may change in any release.

use crate::error::{Error, Result};
use crate::gpu::reflect::Access;
use crate::gpu::Gpu;

mod alloc;
mod plan;
pub mod plan_cache;

pub use alloc::PlanInput;
pub use plan::{NodeTime, Plan};

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

/// Whether `a` and `b` share bytes. Distinct transients bound by one node never do (both are
/// live, so they live in distinct buffers); distinct input regions never do.
fn overlap(a: &Buf, b: &Buf) -> bool {
    let range = |x: &Buf| match x {
        Buf::External(buffer) => Some((buffer.clone(), 0, buffer.size())),
        Buf::Slice {
            buffer,
            offset,
            size,
        } => Some((buffer.clone(), *offset, offset + size)),
        _ => None,
    };
    match (a, b) {
        (Buf::Transient(x), Buf::Transient(y)) | (Buf::Input(x), Buf::Input(y)) => x == y,
        _ => match (range(a), range(b)) {
            (Some((ba, sa, ea)), Some((bb, sb, eb))) => ba == bb && sa < eb && sb < ea,
            _ => false,
        },
    }
}

impl From<&wgpu::Buffer> for Buf {
    fn from(b: &wgpu::Buffer) -> Self {
        Buf::External(b.clone())
    }
}

/// One binding of a dispatch: the shader's name for it (as the launcher passes it), how the
/// entry point uses it, and the buffer bound.
#[derive(Clone, Debug)]
pub struct Binding {
    pub name: &'static str,
    pub access: Access,
    pub buf: Buf,
}

enum NodeKind {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bindings: Vec<Binding>,
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

impl NodeKind {
    /// Every buffer the node touches, in binding order (a copy: source, then destination).
    fn buffers(&self) -> Vec<&Buf> {
        match self {
            NodeKind::Dispatch { bindings, .. } => bindings.iter().map(|b| &b.buf).collect(),
            NodeKind::Clear { buffer } => vec![buffer],
            NodeKind::Copy { src, dst, .. } => vec![src, dst],
        }
    }
}

struct Node {
    label: String,
    kind: NodeKind,
    meta: NodeMeta,
}

/// What one dispatch computes, counted from its launch parameters by its launcher (a cost
/// function next to each launcher), so the structure of a step is data of its graph: the
/// structural report (`ttrec bench dlrm --profile --json`) and the structural test read it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// Floating-point operations (a multiply-add is 2).
    pub flops: f64,
    /// Bytes read and written in global memory, each operand counted once.
    pub bytes: f64,
    /// The longest chain of dependent multiply-adds or loop iterations one invocation performs
    /// for its reduction (1 for elementwise work).
    pub serial: u64,
}

/// What the launcher said about a node beyond its dispatch (all optional: clears, copies and
/// launchers without a cost function leave them empty).
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeMeta {
    pub kernel: Option<&'static str>,
    /// Invocations with work (the grid may hold more).
    pub invocations: Option<u64>,
    pub cost: Option<Cost>,
}

/// One node of a built plan as the structural report shows it.
#[derive(Clone, Debug)]
pub struct NodeCount {
    pub label: String,
    /// The entry point (None for clears and copies).
    pub kernel: Option<&'static str>,
    /// Workgroups launched (0 for clears and copies).
    pub workgroups: u64,
    pub invocations: Option<u64>,
    /// The launcher's count (None where the launcher has no cost function yet).
    pub cost: Option<Cost>,
}

/// Collects the nodes of a step; [`GraphBuilder::build`] turns them into a [`Plan`].
pub struct GraphBuilder {
    gpu: Gpu,
    nodes: Vec<Node>,
    /// (label, bytes) of each transient.
    transients: Vec<(String, u64)>,
    /// (label, bytes) of each input region.
    inputs: Vec<(String, u64)>,
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

    /// A dispatch of `pipeline` (entry point `entry`, for errors) with `bindings[i]` at
    /// `@group(0) @binding(i)`. Refused when two bindings overlap in one buffer and either is
    /// writable: WebGPU forbids that aliasing (Dawn rejects it; wgpu does not check), and a
    /// kernel reading what another binding writes has no defined result.
    pub fn dispatch(
        &mut self,
        label: impl Into<String>,
        entry: &str,
        pipeline: wgpu::ComputePipeline,
        bindings: Vec<Binding>,
        groups: [u32; 3],
    ) -> Result<()> {
        let label = label.into();
        self.check_aliasing(&label, entry, &bindings)?;
        self.nodes.push(Node {
            label,
            meta: NodeMeta::default(),
            kind: NodeKind::Dispatch {
                pipeline,
                bindings,
                groups,
            },
        });
        Ok(())
    }

    /// Errors, naming the node and both bindings, when two of `bindings` overlap and either is
    /// writable.
    fn check_aliasing(&self, label: &str, entry: &str, bindings: &[Binding]) -> Result<()> {
        for (i, a) in bindings.iter().enumerate() {
            for b in &bindings[i + 1..] {
                if (a.access.writable() || b.access.writable()) && overlap(&a.buf, &b.buf) {
                    return Err(Error::Gpu(format!(
                        "node {label:?} ({entry}) binds {} to both {} ({}) and {} ({}): a \
                         writable binding may not alias another binding (WebGPU forbids it)",
                        self.describe(&a.buf),
                        a.name,
                        a.access.wgsl(),
                        b.name,
                        b.access.wgsl()
                    )));
                }
            }
        }
        Ok(())
    }

    /// How errors name a buffer.
    fn describe(&self, b: &Buf) -> String {
        match b {
            Buf::External(buffer) => format!("one buffer of {} bytes", buffer.size()),
            Buf::Slice {
                buffer,
                offset,
                size,
            } => format!(
                "overlapping ranges of one buffer of {} bytes (one at {offset}, {size} bytes)",
                buffer.size()
            ),
            Buf::Transient(t) => format!("transient {:?}", self.transients[*t].0),
            Buf::Input(i) => format!("input {:?}", self.inputs[*i].0),
        }
    }

    /// Zeroes a whole buffer (or the whole slice, transient or input region).
    pub fn clear(&mut self, label: impl Into<String>, buffer: Buf) {
        self.nodes.push(Node {
            label: label.into(),
            meta: NodeMeta::default(),
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
            meta: NodeMeta::default(),
            kind: NodeKind::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                bytes,
            },
        });
    }

    /// The launcher's notes on the last node recorded (None before the first).
    pub(crate) fn last_meta(&mut self) -> Option<&mut NodeMeta> {
        self.nodes.last_mut().map(|n| &mut n.meta)
    }

    /// Sets the cost of the last node recorded (launchers call it right after recording).
    pub fn set_cost(&mut self, cost: Cost) {
        if let Some(m) = self.last_meta() {
            m.cost = Some(cost);
        }
    }

    /// Number of nodes so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
