//! The adapter's class (CPU or GPU) and the kernel class a plan is built with.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Whether the adapter computes on a CPU (lavapipe, llvmpipe, WARP) or on a GPU: the TT core
/// gradients pick their strategy by this ([`crate::tt::TtKernels::for_adapter`]: one strong
/// invocation per row on CPUs, many pieces on GPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterClass {
    Cpu,
    Gpu,
}

/// Which class of kernels a plan is built with: the adapter's own ([`KernelClass::Auto`]) or one
/// forced, so the GPU-class plans run (and are tested) on a CPU adapter such as lavapipe, and a
/// GPU can be compared with the CPU-class kernels. Every class computes the same math; results
/// are bitwise reproducible per (adapter, class).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KernelClass {
    /// The adapter's class ([`Gpu::class`]).
    #[default]
    Auto,
    /// The GPU-shaped kernels: many invocations, short serial loops, workgroup memory.
    Gpu,
    /// The CPU-shaped kernels: few strong invocations, register blocks, long serial loops.
    Cpu,
}

impl KernelClass {
    /// The adapter class whose kernels run on `gpu`.
    pub fn resolve(self, gpu: &Gpu) -> AdapterClass {
        match self {
            KernelClass::Auto => gpu.class(),
            KernelClass::Gpu => AdapterClass::Gpu,
            KernelClass::Cpu => AdapterClass::Cpu,
        }
    }

    /// The class named `auto`, `gpu` or `cpu` (command-line flags).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(KernelClass::Auto),
            "gpu" => Ok(KernelClass::Gpu),
            "cpu" => Ok(KernelClass::Cpu),
            other => Err(Error::input(
                None,
                format!("kernel class {other:?}: auto, gpu or cpu"),
            )),
        }
    }

    /// The flag's spelling: `auto`, `gpu` or `cpu`.
    pub fn name(self) -> &'static str {
        match self {
            KernelClass::Auto => "auto",
            KernelClass::Gpu => "gpu",
            KernelClass::Cpu => "cpu",
        }
    }
}
