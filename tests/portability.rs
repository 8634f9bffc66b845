//! The kernels compile for every backend, checked on a CPU machine through `ttrec kernels
//! --export` (run here as a library call, for both kernel classes, into a folder under
//! `target/`): every exported pipeline, with its override constants applied, translates with
//! naga's MSL, HLSL, SPIR-V and GLSL back ends (what wgpu runs on Metal, DX12, Vulkan and GL),
//! and compiles under Dawn (Chrome's WebGPU) through `tools/dawn/check.mjs` where Node and the
//! npm package `webgpu` are installed (`.ci/run` installs them; under `CI=true` their absence
//! fails the test instead of skipping it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use ttrec::export::{export, ExportOptions};
use ttrec::gpu::shaders::{Kernel, Shader};
use ttrec::gpu::{AdapterClass, Gpu};
use ttrec::kernels::matmul::GemmVariant;

/// Batch of the exports: large enough that the subgroup chain is used where the adapter has
/// fixed-size subgroups (a digit has at least two lookups on average).
const BATCH: usize = 2048;

/// The three exports, made once per test process: CPU-class kernels with the register products,
/// GPU-class kernels with the split-K products (the GPU default) and with the tiled ones
/// (together every kernel a plan records).
fn exports() -> &'static [PathBuf; 3] {
    static DIRS: OnceLock<[PathBuf; 3]> = OnceLock::new();
    DIRS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels-export");
        let one = |name: &str, class, gemm| {
            let dir = root.join(name);
            let _ = std::fs::remove_dir_all(&dir);
            // A fresh device: the export lists the pipeline cache.
            let gpu = Gpu::new().expect("an adapter (lavapipe works)");
            let options = ExportOptions {
                class,
                batch: BATCH,
                gemm: Some(gemm),
            };
            export(&gpu, &dir, &options).expect("export");
            dir
        };
        [
            one("cpu", AdapterClass::Cpu, GemmVariant::Registers),
            one("gpu", AdapterClass::Gpu, GemmVariant::Split),
            one("gpu-tiled", AdapterClass::Gpu, GemmVariant::Tiled),
        ]
    })
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every pipeline JSON of the export in `dir`.
fn pipelines(dir: &Path) -> Vec<Value> {
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["format"], ttrec::export::FORMAT);
    manifest["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .map(|p| read_json(&dir.join(p.as_str().expect("a path"))))
        .collect()
}

/// The export is what runs: each WGSL file is the shader's source exactly as compiled, each
/// pipeline names a kernel's entry point with its launcher's bindings, and the two exports
/// together hold every kernel that any plan records.
#[test]
fn export_lists_every_kernel_with_its_source_and_bindings() {
    let mut seen = Vec::new();
    for dir in exports() {
        let all = pipelines(dir);
        assert!(all.len() > 40, "{}: {} pipelines", dir.display(), all.len());
        for p in &all {
            let shader = Shader::from_name(p["shader"].as_str().unwrap()).expect("a shader");
            let wgsl = std::fs::read_to_string(dir.join(p["wgsl"].as_str().unwrap())).unwrap();
            assert_eq!(wgsl, shader.source(), "{}", p["file"]);
            let webgpu = dir.join(p["webgpu"]["wgsl"].as_str().unwrap());
            let webgpu = std::fs::read_to_string(webgpu).unwrap();
            assert_eq!(webgpu, shader.webgpu_source(), "{}", p["file"]);
            let kernel = *Kernel::ALL
                .iter()
                .find(|k| k.shader() == shader && k.entry() == p["entry_point"])
                .unwrap_or_else(|| panic!("{}: no such kernel", p["file"]));
            let names: Vec<&str> = p["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["name"].as_str().expect("a named binding"))
                .collect();
            assert_eq!(names, kernel.bindings(), "{}", p["file"]);
            for b in p["bindings"].as_array().unwrap() {
                let access = b["access"].as_str().unwrap();
                assert!(
                    ["uniform", "read", "read_write"].contains(&access),
                    "{}: {b}",
                    p["file"]
                );
            }
            if !seen.contains(&kernel) {
                seen.push(kernel);
            }
        }
    }
    // The hash table's reset kernel is recorded by no plan (a new table's hash is cleared); the
    // subgroup chain only where the adapter has fixed-size subgroups (lavapipe: 8 lanes); the
    // cache's f32 -> f16 store only by the refresh of an f16 cache (the exports are f32 models;
    // tests/f16_cache.rs runs it).
    let subgroups = read_json(&exports()[0].join("manifest.json"))["subgroup_size"].is_u64();
    let missing: Vec<&Kernel> = Kernel::ALL
        .iter()
        .filter(|k| !seen.contains(k) && **k != Kernel::CacheReset && **k != Kernel::CacheStore)
        .filter(|k| subgroups || **k != Kernel::TtChainSg)
        .collect();
    assert!(missing.is_empty(), "kernels no export holds: {missing:?}");
}

/// One exported pipeline's module with its override constants applied (naga's
/// `process_overrides`, as wgpu does before handing a module to a back end).
fn specialised(dir: &Path, p: &Value) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = std::fs::read_to_string(dir.join(p["wgsl"].as_str().unwrap())).unwrap();
    let module = naga::front::wgsl::parse_str(&source).expect("parses");
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .expect("validates");
    let mut constants = naga::back::PipelineConstants::default();
    for (name, v) in p["overrides"].as_object().unwrap() {
        constants.insert(name.clone(), v.as_f64().expect("a number"));
    }
    let entry = p["entry_point"].as_str().unwrap();
    let (m, i) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, entry)),
        &constants,
    )
    .unwrap_or_else(|e| panic!("{}: overrides: {e:?}", p["file"]));
    (m.into_owned(), i.into_owned())
}

/// Translates one specialised pipeline with MSL 2.4, HLSL SM 6.0, SPIR-V 1.3 and GLSL ES 3.10;
/// returns the back ends that failed, with their errors.
fn translate(module: &naga::Module, info: &naga::valid::ModuleInfo, entry: &str) -> Vec<String> {
    use naga::back::{glsl, hlsl, msl, spv};
    let stage = naga::ShaderStage::Compute;
    let mut failed = Vec::new();
    let msl_options = msl::Options {
        lang_version: (2, 4),
        ..Default::default()
    };
    let msl_pipeline = msl::PipelineOptions {
        entry_point: Some((stage, entry.to_string())),
        ..Default::default()
    };
    if let Err(e) = msl::write_string(module, info, &msl_options, &msl_pipeline) {
        failed.push(format!("MSL: {e:?}"));
    }
    let hlsl_options = hlsl::Options {
        shader_model: hlsl::ShaderModel::V6_0,
        ..Default::default()
    };
    let hlsl_pipeline = hlsl::PipelineOptions {
        entry_point: Some((stage, entry.to_string())),
    };
    let mut out = String::new();
    if let Err(e) =
        hlsl::Writer::new(&mut out, &hlsl_options, &hlsl_pipeline).write(module, info, None)
    {
        failed.push(format!("HLSL: {e:?}"));
    }
    let spv_options = spv::Options {
        lang_version: (1, 3),
        ..Default::default()
    };
    let spv_pipeline = spv::PipelineOptions {
        shader_stage: stage,
        entry_point: entry.to_string(),
    };
    if let Err(e) = spv::write_vec(module, info, &spv_options, Some(&spv_pipeline)) {
        failed.push(format!("SPIR-V: {e:?}"));
    }
    let glsl_options = glsl::Options::default(); // GLSL ES 3.10, the GL backend's compute
    let glsl_pipeline = glsl::PipelineOptions {
        shader_stage: stage,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let mut out = String::new();
    let written = glsl::Writer::new(
        &mut out,
        module,
        info,
        &glsl_options,
        &glsl_pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write());
    if let Err(e) = written {
        failed.push(format!("GLSL: {e:?}"));
    }
    failed
}

/// Every exported pipeline translates with naga's MSL, HLSL, SPIR-V and GLSL back ends.
#[test]
fn every_exported_pipeline_translates_with_every_naga_back_end() {
    let mut failed = Vec::new();
    let mut count = 0;
    for dir in exports() {
        for p in pipelines(dir) {
            let (module, info) = specialised(dir, &p);
            let entry = p["entry_point"].as_str().unwrap();
            for f in translate(&module, &info, entry) {
                failed.push(format!("{} {}: {f}", dir.display(), p["file"]));
            }
            count += 1;
        }
    }
    assert!(count > 80, "{count} pipelines");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Node and the `webgpu` package (Dawn), when installed: `tools/dawn/node_modules` from
/// `npm ci` in `tools/dawn` (`.ci/run` does it).
fn dawn() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/dawn");
    let node = std::process::Command::new("node").arg("--version").output();
    let have_node = node.is_ok_and(|o| o.status.success());
    (have_node && root.join("node_modules/webgpu").is_dir()).then_some(root)
}

/// Every exported shader module compiles under Dawn with no error, warning or message, and
/// every pipeline is created with its entry point and override constants (Dawn's null
/// backend, which validates without a GPU). The WebGPU text of the subgroup shader adds
/// `enable subgroups;` (Tint needs it; naga rejects it).
#[test]
fn dawn_compiles_every_exported_pipeline() {
    let Some(tools) = dawn() else {
        let msg = "Dawn check: needs `node` and tools/dawn/node_modules (run `npm ci` in \
                   tools/dawn; .ci/run does)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}: missing under CI=true");
        }
        eprintln!("skipped: {msg}");
        return;
    };
    for dir in exports() {
        let out = std::process::Command::new("node")
            .arg(tools.join("check.mjs"))
            .arg(dir)
            .output()
            .expect("running node");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Dawn on {}:\n{text}", dir.display());
        assert!(text.contains("no diagnostics"), "{text}");
    }
}

/// The command itself: `ttrec kernels --export DIR --json` prints one `kernels_export` record
/// whose count matches the manifest it wrote; bad flags are errors naming the flag.
#[test]
fn the_kernels_command_exports_and_checks_its_flags() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels-export-cli");
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ttrec"))
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("running ttrec")
    };
    let d = dir.to_str().unwrap();
    let out = run(&[
        "kernels",
        "--export",
        d,
        "--kernels",
        "gpu",
        "--batch",
        "64",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(record["type"], "kernels_export");
    assert_eq!(record["kernels"], "gpu");
    assert_eq!(record["batch"], 64);
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["kernels"], "gpu");
    let n = manifest["pipelines"].as_array().unwrap().len();
    assert_eq!(record["pipelines"], n);
    assert_eq!(std::fs::read_dir(dir.join("pipelines")).unwrap().count(), n);
    for (args, flag) in [
        (vec!["kernels", "--export", d, "--batch", "0"], "--batch"),
        (
            vec!["kernels", "--export", d, "--kernels", "tpu"],
            "--kernels",
        ),
        (vec!["kernels"], "--export"),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
