//! `ttrec kernels --export DIR`: every compute pipeline that ttrec builds for the Kaggle DLRM's
//! training and evaluation plans and for standalone TT tables, written out so that users porting
//! ttrec, and external checkers (naga's back ends, Dawn; see `tests/portability.rs`), see exactly
//! what runs.
//!
//! The export builds those plans on a fresh [`Gpu`] (compiling their pipelines, running
//! nothing), then lists the GPU's pipeline cache: each entry is a kernel and its override
//! constants. `DIR` receives
//! - `shaders/<shader>.wgsl`: each module's WGSL exactly as wgpu compiles it (prelude included),
//!   and `shaders/<shader>.webgpu.wgsl` where a WebGPU implementation needs other text (the
//!   `enable subgroups;` directive, see [`Shader::webgpu_source`]);
//! - `pipelines/NNN-<shader>-<entry>.json`, one per pipeline: its kernel, shader file, entry
//!   point, override constants, bindings (group, binding, name, access) and, under `webgpu`, the
//!   file and device features a WebGPU implementation needs;
//! - `manifest.json`: the options, the adapter, the plans built and every file above.
//!
//! Pipelines depend on the kernel class (CPU or GPU variants), the batch and the adapter (the
//! subgroup kernels' lane count, the chunking bounds): the manifest records all three.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use wgpu::naga;

use crate::dlrm::baselines::{DLRM_MD_TEMPERATURE, DLRM_MD_THRESHOLD};
use crate::dlrm::{Baseline, Dlrm, DlrmConfig, DlrmOptions, TtCacheOptions};
use crate::error::{Error, Result};
use crate::gpu::shaders::{Kernel, Shader};
use crate::gpu::{AdapterClass, Gpu, KernelClass};
use crate::graph::{Buf, GraphBuilder};
use crate::io::write_atomic;
use crate::kernels::matmul::{record_gemm, record_weight_grad, Gemm, GemmVariant, WeightGrad};
use crate::kernels::optim::{record_update, UpdateKind};
use crate::kernels::qr::QrOp;
use crate::kernels::MatrixAt;
use crate::nn::{QrBagGroup, QrLookups, QrTableSpec};
use crate::tt::{Mode, Optimizer, TtEmbeddingBag, TtKernels, TtOptions, TtShape};

/// The format name in every manifest.
pub const FORMAT: &str = "ttrec-kernels-v1";

/// What to build before listing the pipelines.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    /// The kernel class whose variants the plans use ([`TtKernels::for_class`]).
    pub class: AdapterClass,
    /// Samples of the training and evaluation batches (the Kaggle model has one lookup per
    /// table and sample; the standalone tables get as many bags of one lookup).
    pub batch: usize,
    /// The matrix-product variant (None: the model's default for the adapter).
    pub gemm: Option<GemmVariant>,
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Every pipeline, in file order.
    pub pipelines: Vec<(Kernel, Vec<(String, f64)>)>,
    /// The shader modules they come from.
    pub shaders: Vec<Shader>,
    /// One line per plan built, as in the manifest.
    pub plans: Vec<String>,
}

/// Builds the plans of `options` on `gpu` (compiling their pipelines) and returns one line per
/// plan. Pipelines already in `gpu`'s cache stay there: export from a fresh [`Gpu`].
pub fn build_plans(gpu: &Gpu, options: &ExportOptions) -> Result<Vec<String>> {
    let batch = options.batch;
    if batch == 0 {
        return Err(Error::input(None, "the export's batch must be at least 1"));
    }
    let tt_kernels = TtKernels::for_class(options.class);
    let config = DlrmConfig::kaggle();
    let mut plans = Vec::new();
    let dlrm_options = || DlrmOptions {
        gemm: options.gemm,
        kernels: match options.class {
            AdapterClass::Cpu => KernelClass::Cpu,
            AdapterClass::Gpu => KernelClass::Gpu,
        },
        tt_kernels: Some(tt_kernels),
        ..DlrmOptions::default()
    };
    let mut model = Dlrm::zeroed(gpu, config.clone(), dlrm_options())?;
    model.prepare_train(batch)?;
    plans.push(format!("dlrm kaggle train, batch {batch}"));
    model.prepare_eval(batch)?;
    plans.push(format!("dlrm kaggle eval, batch {batch}"));
    let gemm = model.gemm_variant();
    drop(model);
    // dlrm's mixed-dimension tables (`--embedding md`): widths 1 to 4, so the embedding
    // kernels' scalar forms too.
    let md = DlrmConfig::kaggle_dense().with_baseline(Baseline::Md {
        threshold: DLRM_MD_THRESHOLD,
        temperature: DLRM_MD_TEMPERATURE,
        round_dims: false,
    })?;
    Dlrm::zeroed(gpu, md, dlrm_options())?.prepare_train(batch)?;
    plans.push(format!("dlrm kaggle md train, batch {batch}"));

    // Standalone tables in every call mode: the largest Kaggle TT table with each fused update,
    // and with a row cache (its probe, pooling, update and refresh kernels).
    let largest = config.tables_by_size()[0];
    let shape = config
        .tt_shape(largest)?
        .expect("the Kaggle preset's largest table is TT");
    let cache = TtCacheOptions {
        rows: 0.01,
        warmup_steps: 1,
        refresh_every: 1,
    }
    .config(shape.num_embeddings, 1)?;
    // And a table whose products do not fit the vec4 kernels (D 3, ranks 3): the scalar ones.
    let odd = TtShape::new(1000, &[10, 10, 10], &[1, 3, 1], &[3, 3])?;
    let sgd = Optimizer::Sgd { lr: 0.1 };
    let variants = [
        ("sgd", &shape, sgd, None),
        (
            "adagrad",
            &shape,
            Optimizer::Adagrad {
                lr: 0.1,
                eps: 1e-10,
            },
            None,
        ),
        ("no update", &shape, Optimizer::None, None),
        ("sgd, row cache", &shape, sgd, Some(cache)),
        ("sgd, D 3 ranks 3", &odd, sgd, None),
    ];
    for (name, shape, optimizer, cache) in variants {
        let mut table = TtEmbeddingBag::new(
            gpu,
            shape.clone(),
            TtOptions {
                optimizer,
                kernels: Some(tt_kernels),
                cache,
                ..TtOptions::default()
            },
        )?;
        if table.params().cache().is_some() {
            table.params_mut().prepare_cache_refresh()?;
            plans.push(format!("tt table ({name}) cache refresh"));
        }
        for mode in [Mode::Forward, Mode::Backward, Mode::ForwardBackward] {
            table.prepare(mode, batch, batch)?;
            plans.push(format!(
                "tt table ({name}) {mode:?}, {batch} bags of 1 lookup"
            ));
        }
    }
    // The GPU class's core-gradient pieces with 4-row tiles (`row_tiles` off): no class's
    // default, still a variant a table may choose.
    if tt_kernels.row_tiles {
        let mut table = TtEmbeddingBag::new(
            gpu,
            shape.clone(),
            TtOptions {
                optimizer: sgd,
                kernels: Some(TtKernels {
                    row_tiles: false,
                    ..tt_kernels
                }),
                ..TtOptions::default()
            },
        )?;
        table.prepare(Mode::ForwardBackward, batch, batch)?;
        plans.push(format!(
            "tt table (sgd, 4-row tiles) ForwardBackward, {batch} bags of 1 lookup"
        ));
    }
    record_other_shapes(gpu, gemm)?;
    plans.push("products at unaligned shapes, the element-wise optimizer".into());
    record_qr_tables(gpu, batch, options.class)?;
    plans.push(format!(
        "dlrm's quotient-remainder tables (mult and concat), {batch} bags of 1 lookup"
    ));
    plans.push(format!(
        "kernels: {}; tt: {}; gemm: {gemm:?}",
        class_name(options.class),
        tt_kernels.describe()
    ));
    Ok(plans)
}

/// Records (and builds, compiling their pipelines) the kernels that the plans above run only at
/// other shapes: the products with unaligned operands (the GPU class's scalar-load entries;
/// `bench gemm`, library callers) and the element-wise optimizer (TT tables in several chunks).
fn record_other_shapes(gpu: &Gpu, gemm: GemmVariant) -> Result<()> {
    let (m, n, k) = (5, 3, 70);
    let buf = |label: &str, len: usize| Buf::from(&gpu.storage(label, len as u64 * 4));
    let (a, b) = (buf("export a", k * m), buf("export b", k * n));
    let c = buf("export c", m * n);
    let at = |buf: &Buf, cols| MatrixAt::dense(buf.clone(), cols);
    let mut g = GraphBuilder::new(gpu);
    let product = Gemm {
        m,
        n,
        k,
        a: at(&a, m),
        b: at(&b, n),
        c: Some(at(&c, n)),
        ct: None,
        bias: None,
        relu: false,
        mask: None,
    };
    record_gemm(&mut g, "unaligned product", &product, gemm)?;
    let wgrad = WeightGrad {
        m,
        n,
        k,
        a: at(&a, m),
        b: at(&b, n),
        c: at(&c, n),
        bias_grad: None,
    };
    record_weight_grad(&mut g, "unaligned weight gradient", &wgrad, gemm)?;
    let opt = Buf::from(&gpu.uniform("export optimizer", 16));
    let state = buf("export state", 4);
    record_update(
        &mut g,
        "update",
        UpdateKind::Sgd,
        opt,
        c.clone(),
        a,
        state,
        m * n,
    )?;
    g.build()?;
    Ok(())
}

/// Records (and builds) a DLRM's quotient-remainder tables at the Kaggle dimension, forward and
/// backward (`--embedding qr`): two tables of mult (D parts) and of concat (D / 2 parts), as
/// the DLRM's plans hold them.
fn record_qr_tables(gpu: &Gpu, batch: usize, class: AdapterClass) -> Result<()> {
    let dim = DlrmConfig::kaggle().dim();
    for op in [QrOp::Mult, QrOp::Concat] {
        let spec = QrTableSpec {
            rows: 1000,
            collisions: 4,
            op,
        };
        let sgd = Optimizer::Sgd { lr: 0.1 };
        let qr = QrBagGroup::new(gpu, dim, &[spec, spec], sgd, None, None)?;
        let stride = 3 * dim;
        let t = Buf::from(&gpu.storage("export qr T", (batch * stride) as u64 * 4));
        let mut g = GraphBuilder::new(gpu);
        let lk = QrLookups::declare(&mut g, &qr, batch, 2 * batch, stride, &[dim, 2 * dim], "qr")?
            .assume_one_hot();
        let lk = match class {
            AdapterClass::Cpu => lk,
            AdapterClass::Gpu => lk.use_pieces(&mut g, &qr),
        };
        lk.record_forward(&mut g, &qr, t.clone())?;
        lk.record_backward(&mut g, &qr, t)?;
        g.build()?;
    }
    Ok(())
}

/// "cpu" or "gpu".
pub fn class_name(class: AdapterClass) -> &'static str {
    match class {
        AdapterClass::Cpu => "cpu",
        AdapterClass::Gpu => "gpu",
    }
}

/// Builds the plans of `options` on `gpu` (a fresh one: see [`build_plans`]) and writes every
/// pipeline in its cache into `dir` (see the module doc). Files are written atomically; pipeline
/// files of an earlier export into `dir` that this one does not write are removed.
pub fn export(gpu: &Gpu, dir: &Path, options: &ExportOptions) -> Result<ExportSummary> {
    let plans = build_plans(gpu, options)?;
    let pipelines = gpu.pipelines();
    let mut shaders: Vec<Shader> = Vec::new();
    for (k, _) in &pipelines {
        if !shaders.contains(&k.shader()) {
            shaders.push(k.shader());
        }
    }
    let mkdir = |d: &Path| {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::file(d, format!("cannot create the directory: {e}")))
    };
    mkdir(&dir.join("shaders"))?;
    mkdir(&dir.join("pipelines"))?;

    let mut reflected = BTreeMap::new();
    let mut shader_entries = Vec::new();
    for &s in &shaders {
        let wgsl = format!("shaders/{}.wgsl", s.name());
        write_atomic(dir.join(&wgsl), s.source().as_bytes())?;
        let webgpu = if s.uses_subgroups() {
            let file = format!("shaders/{}.webgpu.wgsl", s.name());
            write_atomic(dir.join(&file), s.webgpu_source().as_bytes())?;
            file
        } else {
            wgsl.clone()
        };
        shader_entries.push(json!({"shader": s.name(), "wgsl": wgsl, "webgpu_wgsl": webgpu}));
        reflected.insert(s.name(), Reflected::of(s)?);
    }

    let mut files = Vec::new();
    for (i, (kernel, constants)) in pipelines.iter().enumerate() {
        let s = kernel.shader();
        let file = format!("pipelines/{i:03}-{}-{}.json", s.name(), kernel.entry());
        let entry = pipeline_json(*kernel, constants, &file, &reflected[s.name()])?;
        let text = serde_json::to_string_pretty(&entry).expect("JSON of plain values");
        write_atomic(dir.join(&file), format!("{text}\n").as_bytes())?;
        files.push(file);
    }
    remove_stale(&dir.join("pipelines"), &files)?;

    let manifest = json!({
        "format": FORMAT,
        "ttrec": env!("CARGO_PKG_VERSION"),
        "kernels": class_name(options.class),
        "batch": options.batch,
        "adapter": gpu.adapter_name(),
        "subgroup_size": gpu.subgroup_size(),
        "plans": plans,
        "shaders": shader_entries,
        "pipelines": files,
    });
    let text = serde_json::to_string_pretty(&manifest).expect("JSON of plain values");
    write_atomic(dir.join("manifest.json"), format!("{text}\n").as_bytes())?;
    Ok(ExportSummary {
        pipelines,
        shaders,
        plans,
    })
}

/// The entry points' bindings of one shader module, read by naga (wgpu's own front end).
struct Reflected {
    module: naga::Module,
    info: naga::valid::ModuleInfo,
}

impl Reflected {
    fn of(shader: Shader) -> Result<Self> {
        let source = shader.source();
        let bad = |e: String| Error::Gpu(format!("shaders/{}.wgsl: {e}", shader.name()));
        let module =
            naga::front::wgsl::parse_str(&source).map_err(|e| bad(e.emit_to_string(&source)))?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| bad(e.emit_to_string(&source)))?;
        Ok(Reflected { module, info })
    }

    /// (group, binding, variable, access) of every resource `entry` uses, in binding order.
    fn bindings(&self, entry: &str) -> Option<Vec<(u32, u32, String, &'static str)>> {
        let index = self
            .module
            .entry_points
            .iter()
            .position(|e| e.name == entry)?;
        let used = self.info.get_entry_point(index);
        let mut out: Vec<_> = self
            .module
            .global_variables
            .iter()
            .filter(|(h, _)| !used[*h].is_empty())
            .filter_map(|(_, v)| {
                let b = v.binding.as_ref()?;
                let access = match v.space {
                    naga::AddressSpace::Uniform => "uniform",
                    naga::AddressSpace::Storage { access }
                        if access.contains(naga::StorageAccess::STORE) =>
                    {
                        "read_write"
                    }
                    naga::AddressSpace::Storage { .. } => "read",
                    _ => "other",
                };
                let name = v.name.clone().unwrap_or_default();
                Some((b.group, b.binding, name, access))
            })
            .collect();
        out.sort();
        Some(out)
    }
}

/// One pipeline's JSON (see the module doc).
fn pipeline_json(
    kernel: Kernel,
    constants: &[(String, f64)],
    file: &str,
    reflected: &Reflected,
) -> Result<Value> {
    let s = kernel.shader();
    let bindings = reflected.bindings(kernel.entry()).ok_or_else(|| {
        Error::Gpu(format!(
            "no entry point {} in shaders/{}.wgsl",
            kernel.entry(),
            s.name()
        ))
    })?;
    let names = kernel.bindings();
    let bindings: Vec<Value> = bindings
        .into_iter()
        .map(|(group, binding, variable, access)| {
            let name = (group == 0)
                .then(|| names.get(binding as usize))
                .flatten()
                .copied();
            json!({"group": group, "binding": binding, "name": name, "variable": variable,
                   "access": access})
        })
        .collect();
    let overrides: serde_json::Map<String, Value> = constants
        .iter()
        .map(|(name, v)| {
            let value = if v.fract() == 0.0 && v.abs() < 9e15 {
                json!(*v as i64)
            } else {
                json!(v)
            };
            (name.clone(), value)
        })
        .collect();
    let (webgpu_wgsl, features) = if s.uses_subgroups() {
        (
            format!("shaders/{}.webgpu.wgsl", s.name()),
            vec!["subgroups"],
        )
    } else {
        (format!("shaders/{}.wgsl", s.name()), vec![])
    };
    Ok(json!({
        "file": file,
        "kernel": format!("{kernel:?}"),
        "shader": s.name(),
        "wgsl": format!("shaders/{}.wgsl", s.name()),
        "entry_point": kernel.entry(),
        "overrides": overrides,
        "bindings": bindings,
        "webgpu": {"wgsl": webgpu_wgsl, "features": features},
    }))
}

/// Removes `*.json` files in `dir` that are not in `keep` (pipelines of an earlier export).
fn remove_stale(dir: &Path, keep: &[String]) -> Result<()> {
    let listing = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot list the directory: {e}")))?;
    for entry in listing.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = keep.iter().any(|k| k.ends_with(&format!("/{name}")));
        if name.ends_with(".json") && !ours {
            std::fs::remove_file(&path)
                .map_err(|e| Error::file(&path, format!("cannot remove a stale file: {e}")))?;
        }
    }
    Ok(())
}
