//! Every shader under shaders/ (with the prelude) parses and validates with naga; every .wgsl
//! file there is embedded (so a new kernel cannot be forgotten by the binary); every typed
//! `Kernel` names an entry point that exists and every entry point has a `Kernel`; and every
//! uniform struct shared with Rust has the same layout on both sides.

use std::mem::{offset_of, size_of};

use ttrec::gpu::shaders::{Kernel, Shader, PRELUDE};

fn module(shader: Shader) -> naga::Module {
    module_and_info(shader).0
}

fn module_and_info(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = shader.source();
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
        panic!(
            "shaders/{}.wgsl does not parse:\n{}",
            shader.name(),
            e.emit_to_string(&source)
        )
    });
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    let info = validator.validate(&module).unwrap_or_else(|e| {
        panic!(
            "shaders/{}.wgsl does not validate:\n{}",
            shader.name(),
            e.emit_to_string(&source)
        )
    });
    (module, info)
}

#[test]
fn every_shader_validates_with_naga() {
    for shader in Shader::ALL {
        let m = module(shader);
        assert!(
            !m.entry_points.is_empty(),
            "shaders/{}.wgsl has no entry point",
            shader.name()
        );
    }
}

#[test]
fn every_wgsl_file_is_embedded() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).expect("shaders/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            let on_disk = std::fs::read_to_string(&path).unwrap();
            let embedded = if stem == "prelude" {
                PRELUDE
            } else {
                Shader::from_name(&stem)
                    .unwrap_or_else(|| {
                        panic!("{} is not a Shader in src/gpu/shaders.rs", path.display())
                    })
                    .file()
            };
            assert_eq!(
                embedded,
                on_disk,
                "{} differs from the embedded copy",
                path.display()
            );
        }
    }
}

#[test]
fn kernels_and_entry_points_match_one_to_one() {
    for &k in Kernel::ALL {
        let m = module(k.shader());
        assert!(
            m.entry_points.iter().any(|e| e.name == k.entry()),
            "{k:?}: no entry point {} in shaders/{}.wgsl",
            k.entry(),
            k.shader().name()
        );
    }
    for shader in Shader::ALL {
        for e in module(shader).entry_points {
            assert!(
                Kernel::ALL
                    .iter()
                    .any(|k| k.shader() == shader && k.entry() == e.name),
                "entry point {} of shaders/{}.wgsl has no Kernel",
                e.name,
                shader.name()
            );
        }
    }
}

/// Every kernel's named bindings (what its launcher must pass, `Kernel::bindings`) are as many as
/// the bindings its entry point uses, numbered 0..n in group 0: the graph binds buffer i at
/// binding i.
#[test]
fn kernels_name_every_binding_their_entry_point_uses() {
    for &k in Kernel::ALL {
        let (m, info) = module_and_info(k.shader());
        let (index, _) = m
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == k.entry())
            .expect("entry point");
        let fi = info.get_entry_point(index);
        let mut used: Vec<(u32, String)> = m
            .global_variables
            .iter()
            .filter(|(h, _)| !fi[*h].is_empty())
            .filter_map(|(_, v)| {
                v.binding.as_ref().map(|b| {
                    (
                        b.group * 100 + b.binding,
                        v.name.clone().unwrap_or_default(),
                    )
                })
            })
            .collect();
        used.sort();
        let slots: Vec<u32> = used.iter().map(|(b, _)| *b).collect();
        let want: Vec<u32> = (0..k.bindings().len() as u32).collect();
        assert_eq!(
            slots,
            want,
            "{k:?}: the shader's {} uses bindings {used:?}; the kernel names {:?}",
            k.entry(),
            k.bindings()
        );
    }
}

/// (size, [(member, offset)]) of WGSL struct `name` in the prelude.
fn wgsl_layout(name: &str) -> (u32, Vec<(String, u32)>) {
    let m = module(Shader::Tt); // the prelude is part of every module
    for (_, ty) in m.types.iter() {
        if ty.name.as_deref() == Some(name) {
            if let naga::TypeInner::Struct { members, span } = &ty.inner {
                return (
                    *span,
                    members
                        .iter()
                        .map(|mb| (mb.name.clone().unwrap_or_default(), mb.offset))
                        .collect(),
                );
            }
        }
    }
    panic!("no struct {name} in shaders/prelude.wgsl")
}

/// Asserts the WGSL struct has the Rust struct's size and, for each named (non-padding) member,
/// its offset.
fn check(name: &str, rust_size: usize, rust_members: &[(&str, usize)]) {
    let (span, members) = wgsl_layout(name);
    assert_eq!(
        span as usize, rust_size,
        "{name}: WGSL size {span}, Rust {rust_size}"
    );
    let named: Vec<&(String, u32)> = members
        .iter()
        .filter(|(n, _)| !n.starts_with('_'))
        .collect();
    assert_eq!(
        named.len(),
        rust_members.len(),
        "{name}: WGSL members {named:?}, Rust {rust_members:?}"
    );
    for ((wn, wo), (rn, ro)) in named.iter().zip(rust_members) {
        assert_eq!(wn, rn, "{name}: member order");
        assert_eq!(
            *wo as usize, *ro,
            "{name}.{wn}: WGSL offset {wo}, Rust {ro}"
        );
    }
}

#[test]
fn uniform_structs_match_their_rust_twins() {
    use ttrec::kernels::loss::StepParams;
    use ttrec::kernels::optim::OptParams;
    use ttrec::kernels::tt::ChunkParams;
    use ttrec::kernels::tt_route::RouteParams;
    check(
        "Chunk",
        size_of::<ChunkParams>(),
        &[
            ("start", offset_of!(ChunkParams, start)),
            ("len", offset_of!(ChunkParams, len)),
            ("cap", offset_of!(ChunkParams, cap)),
            ("num_bags", offset_of!(ChunkParams, num_bags)),
            ("index", offset_of!(ChunkParams, index)),
        ],
    );
    check(
        "Route",
        size_of::<RouteParams>(),
        &[
            ("nnz", offset_of!(RouteParams, nnz)),
            ("num_bags", offset_of!(RouteParams, num_bags)),
            ("tables", offset_of!(RouteParams, tables)),
            ("cap", offset_of!(RouteParams, cap)),
            ("pool", offset_of!(RouteParams, pool)),
        ],
    );
    check(
        "OptParams",
        size_of::<OptParams>(),
        &[
            ("lr", offset_of!(OptParams, lr)),
            ("eps", offset_of!(OptParams, eps)),
            ("len", offset_of!(OptParams, len)),
        ],
    );
    check(
        "StepParams",
        size_of::<StepParams>(),
        &[("slot", offset_of!(StepParams, slot))],
    );
}

/// Every entry point validates with its override constants at their *default* values (a
/// checker or a port that builds a pipeline without ttrec's launchers, or with only some of
/// the constants, must not divide by zero or index out of bounds in constant evaluation).
#[test]
fn every_entry_point_validates_with_default_override_values() {
    let mut failed = Vec::new();
    for &k in Kernel::ALL {
        let (m, info) = module_and_info(k.shader());
        let none = naga::back::PipelineConstants::default();
        if let Err(e) = naga::back::pipeline_constants::process_overrides(
            &m,
            &info,
            Some((naga::ShaderStage::Compute, k.entry())),
            &none,
        ) {
            failed.push(format!("{}::{}: {e:?}", k.shader().name(), k.entry()));
        }
    }
    assert!(
        failed.is_empty(),
        "entry points that do not validate with default override values:\n{}",
        failed.join("\n")
    );
}
