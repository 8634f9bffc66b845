//! What each kernel's entry point declares, read off its WGSL with naga once per process: the
//! access of every binding it uses (uniform, read-only or read-write storage), its workgroup
//! size and its workgroup memory. The graph refuses a dispatch that binds one buffer range to a
//! writable binding and another binding at once (WebGPU forbids it; wgpu does not check), and
//! [`check_limits`] compares a kernel with a device's limits before wgpu does, so a kernel over a
//! limit (`--limits webgpu`) is ttrec's own error naming the limit. Reflection rather than a
//! hand-kept table: the shader is the one source of truth.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::shaders::{Kernel, Shader};
use crate::error::{Error, Result};

/// How an entry point uses a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

impl Access {
    /// Whether the kernel may write through the binding.
    pub fn writable(self) -> bool {
        self == Access::ReadWrite
    }
    /// The WGSL spelling.
    pub fn wgsl(self) -> &'static str {
        match self {
            Access::Uniform => "uniform",
            Access::Read => "storage, read",
            Access::ReadWrite => "storage, read_write",
        }
    }
}

/// A kernel's interface as its entry point declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// The access of `@group(0) @binding(i)`, binding 0 first.
    pub bindings: Vec<Access>,
    /// `@workgroup_size`.
    pub workgroup_size: [u32; 3],
    /// Bytes of `var<workgroup>` memory the entry point uses.
    pub workgroup_bytes: u64,
}

impl KernelLayout {
    /// Storage buffers bound (read-only and read-write).
    pub fn storage_buffers(&self) -> u32 {
        self.bindings
            .iter()
            .filter(|a| **a != Access::Uniform)
            .count() as u32
    }
    /// Uniform buffers bound.
    pub fn uniform_buffers(&self) -> u32 {
        self.bindings
            .iter()
            .filter(|a| **a == Access::Uniform)
            .count() as u32
    }
}

type Layouts = HashMap<Kernel, std::result::Result<KernelLayout, String>>;

fn layouts() -> &'static Layouts {
    static LAYOUTS: OnceLock<Layouts> = OnceLock::new();
    LAYOUTS.get_or_init(|| {
        let mut all = Layouts::new();
        for shader in Shader::ALL {
            match reflect_shader(shader) {
                Ok(entries) => {
                    for &k in Kernel::ALL.iter().filter(|k| k.shader() == shader) {
                        let found = entries
                            .iter()
                            .find(|(name, _)| name == k.entry())
                            .map(|(_, l)| l.clone())
                            .ok_or_else(|| {
                                format!(
                                    "no entry point {} in shaders/{}.wgsl",
                                    k.entry(),
                                    shader.name()
                                )
                            });
                        all.insert(k, found.and_then(|l| l));
                    }
                }
                Err(e) => {
                    for &k in Kernel::ALL.iter().filter(|k| k.shader() == shader) {
                        all.insert(k, Err(e.clone()));
                    }
                }
            }
        }
        all
    })
}

type EntryLayouts = Vec<(String, std::result::Result<KernelLayout, String>)>;

/// Every entry point of `shader` with its layout (or why it has none).
fn reflect_shader(shader: Shader) -> std::result::Result<EntryLayouts, String> {
    let source = shader.source();
    let file = format!("shaders/{}.wgsl", shader.name());
    let module = naga::front::wgsl::parse_str(&source)
        .map_err(|e| format!("{file} does not parse: {}", e.emit_to_string(&source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| format!("{file} does not validate: {}", e.emit_to_string(&source)))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("{file}: laying out its types: {e}"))?;
    let entries = module
        .entry_points
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let used = info.get_entry_point(index);
            let mut bindings: Vec<(u32, Access)> = Vec::new();
            let mut workgroup_bytes = 0u64;
            for (handle, var) in module.global_variables.iter() {
                if used[handle].is_empty() {
                    continue;
                }
                let access = match var.space {
                    naga::AddressSpace::Uniform => Access::Uniform,
                    naga::AddressSpace::Storage { access } => {
                        if access.contains(naga::StorageAccess::STORE) {
                            Access::ReadWrite
                        } else {
                            Access::Read
                        }
                    }
                    naga::AddressSpace::WorkGroup => {
                        workgroup_bytes += layouter[var.ty].size as u64;
                        continue;
                    }
                    _ => continue,
                };
                let Some(b) = &var.binding else { continue };
                if b.group != 0 {
                    return (
                        entry.name.clone(),
                        Err(format!(
                            "{file}: {} binds {:?} in group {}; ttrec binds group 0 only",
                            entry.name, var.name, b.group
                        )),
                    );
                }
                bindings.push((b.binding, access));
            }
            bindings.sort_by_key(|(b, _)| *b);
            let numbered = bindings
                .iter()
                .enumerate()
                .all(|(i, (b, _))| *b == i as u32);
            let layout = if numbered {
                Ok(KernelLayout {
                    bindings: bindings.into_iter().map(|(_, a)| a).collect(),
                    workgroup_size: entry.workgroup_size,
                    workgroup_bytes,
                })
            } else {
                Err(format!(
                    "{file}: {} uses bindings {:?}, not 0..n",
                    entry.name,
                    bindings.iter().map(|(b, _)| b).collect::<Vec<_>>()
                ))
            };
            (entry.name.clone(), layout)
        })
        .collect();
    Ok(entries)
}

impl Kernel {
    /// The entry point's bindings, workgroup size and memory, reflected from its shader (once per
    /// process).
    pub fn layout(self) -> Result<&'static KernelLayout> {
        match layouts().get(&self) {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(Error::Gpu(e.clone())),
            None => Err(Error::Gpu(format!("{self:?} was not reflected"))),
        }
    }
}

/// Errors, naming the WebGPU limit, when `kernel` needs more than `limits` allow: storage and
/// uniform buffers per stage, bindings per group, workgroup size and invocations, workgroup
/// memory.
pub fn check_limits(kernel: Kernel, limits: &wgpu::Limits) -> Result<()> {
    let l = kernel.layout()?;
    let name = format!("{}::{}", kernel.shader().name(), kernel.entry());
    let [x, y, z] = l.workgroup_size;
    let checks: [(&str, u64, u64); 8] = [
        (
            "maxStorageBuffersPerShaderStage",
            l.storage_buffers() as u64,
            limits.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "maxUniformBuffersPerShaderStage",
            l.uniform_buffers() as u64,
            limits.max_uniform_buffers_per_shader_stage as u64,
        ),
        (
            "maxBindingsPerBindGroup",
            l.bindings.len() as u64,
            limits.max_bindings_per_bind_group as u64,
        ),
        (
            "maxComputeWorkgroupSizeX",
            x as u64,
            limits.max_compute_workgroup_size_x as u64,
        ),
        (
            "maxComputeWorkgroupSizeY",
            y as u64,
            limits.max_compute_workgroup_size_y as u64,
        ),
        (
            "maxComputeWorkgroupSizeZ",
            z as u64,
            limits.max_compute_workgroup_size_z as u64,
        ),
        (
            "maxComputeInvocationsPerWorkgroup",
            x as u64 * y as u64 * z as u64,
            limits.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "maxComputeWorkgroupStorageSize",
            l.workgroup_bytes,
            limits.max_compute_workgroup_storage_size as u64,
        ),
    ];
    for (limit, need, have) in checks {
        if need > have {
            return Err(Error::Gpu(format!(
                "kernel {name} needs {need} for {limit}; the device allows {have} \
                 (WebGPU's default limits allow {})",
                webgpu_default(limit)
            )));
        }
    }
    Ok(())
}

/// WebGPU's default value of `limit` (as [`wgpu::Limits::default`] holds them).
fn webgpu_default(limit: &str) -> u64 {
    let d = wgpu::Limits::default();
    match limit {
        "maxStorageBuffersPerShaderStage" => d.max_storage_buffers_per_shader_stage as u64,
        "maxUniformBuffersPerShaderStage" => d.max_uniform_buffers_per_shader_stage as u64,
        "maxBindingsPerBindGroup" => d.max_bindings_per_bind_group as u64,
        "maxComputeWorkgroupSizeX" => d.max_compute_workgroup_size_x as u64,
        "maxComputeWorkgroupSizeY" => d.max_compute_workgroup_size_y as u64,
        "maxComputeWorkgroupSizeZ" => d.max_compute_workgroup_size_z as u64,
        "maxComputeInvocationsPerWorkgroup" => d.max_compute_invocations_per_workgroup as u64,
        "maxComputeWorkgroupStorageSize" => d.max_compute_workgroup_storage_size as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel reflects, with as many bindings as its launcher names, and fits WebGPU's
    /// default limits.
    #[test]
    fn every_kernel_reflects_and_fits_webgpu_defaults() {
        for &k in Kernel::ALL {
            let l = k.layout().unwrap();
            assert_eq!(l.bindings.len(), k.bindings().len(), "{k:?}");
            check_limits(k, &wgpu::Limits::default()).unwrap();
        }
        // Spot checks against the WGSL.
        let cg = Kernel::TtCoreGrad.layout().unwrap();
        assert_eq!(cg.bindings[0], Access::Uniform);
        assert_eq!(cg.bindings[1], Access::Read);
        assert_eq!(cg.bindings[8], Access::ReadWrite);
        assert_eq!(cg.storage_buffers(), 8);
        assert_eq!(
            Kernel::GemmTiled.layout().unwrap().workgroup_size,
            [16, 16, 1]
        );
        assert_eq!(Kernel::GemmTiled.layout().unwrap().workgroup_bytes, 8192);
    }

    /// A device with fewer storage buffers than `core_grad` binds is refused with the limit's
    /// name, as is one with too little workgroup memory for the tiled product.
    #[test]
    fn a_kernel_over_a_limit_is_named() {
        let small = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 7,
            ..Default::default()
        };
        let e = check_limits(Kernel::TtCoreGrad, &small)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tt::core_grad")
                && e.contains("maxStorageBuffersPerShaderStage")
                && e.contains("needs 8")
                && e.contains("allows 7"),
            "{e}"
        );
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: 4096,
            ..Default::default()
        };
        let e = check_limits(Kernel::GemmTiled, &small)
            .unwrap_err()
            .to_string();
        assert!(e.contains("maxComputeWorkgroupStorageSize"), "{e}");
    }

    /// wgpu's default limits are WebGPU's defaults (the spec's table), which `--limits webgpu`
    /// relies on.
    #[test]
    fn wgpu_defaults_are_webgpu_defaults() {
        let d = wgpu::Limits::default();
        assert_eq!(d.max_storage_buffer_binding_size, 134_217_728);
        assert_eq!(d.max_buffer_size, 268_435_456);
        assert_eq!(d.max_storage_buffers_per_shader_stage, 8);
        assert_eq!(d.max_uniform_buffers_per_shader_stage, 12);
        assert_eq!(d.max_uniform_buffer_binding_size, 65_536);
        assert_eq!(d.min_storage_buffer_offset_alignment, 256);
        assert_eq!(d.min_uniform_buffer_offset_alignment, 256);
        assert_eq!(d.max_compute_workgroup_storage_size, 16_384);
        assert_eq!(d.max_compute_invocations_per_workgroup, 256);
        assert_eq!(d.max_compute_workgroups_per_dimension, 65_535);
        assert_eq!(d.max_bind_groups, 4);
        assert_eq!(d.max_bindings_per_bind_group, 1000);
    }
}
