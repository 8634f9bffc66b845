//! `ttrec bench dlrm`: training samples/s of dlrm's Kaggle configuration (TT and dense tables) on
//! synthetic Criteo-shaped batches, with the FLOPs per sample counted per part and, with
//! `--profile`, per-kernel GPU times of one step.

use std::time::Instant;

use crate::data::SyntheticCriteo;
use crate::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions};
use crate::error::{Error, Result};
use crate::gpu::{AdapterClass, Gpu};
use crate::graph::NodeCount;

/// One measurement's setup.
#[derive(Clone, Debug)]
pub struct DlrmBenchConfig {
    /// "tt" (the 7 largest tables TT, rank `rank`) or "dense".
    pub variant: String,
    pub batch: usize,
    /// Kaggle's table sizes times this.
    pub scale: f64,
    pub rank: usize,
}

/// Table scale that fits the adapter when none is given: the full Kaggle sizes except for dense
/// tables on a CPU adapter (lavapipe's 2 GiB heap cannot hold 2.16 GB of rows).
pub fn default_scale(gpu: &Gpu, variant: &str) -> f64 {
    if variant == "dense" && gpu.class() == AdapterClass::Cpu {
        0.05
    } else {
        1.0
    }
}

/// What one configuration measured.
#[derive(Clone, Debug)]
pub struct DlrmBenchResult {
    pub config: DlrmBenchConfig,
    pub adapter: String,
    pub env: super::BenchEnv,
    /// The matrix-product kernels (registers or tiled).
    pub gemm: String,
    pub embedding_params: u64,
    /// Samples per second with steps submitted back to back (one wait at the end of each of
    /// [`THROUGHPUT_BLOCKS`] blocks): all samples over all the blocks' time.
    pub samples_per_s: f64,
    /// Samples per second of each block.
    pub samples_per_s_spread: super::Spread,
    /// Median wall time of one step with a wait after it (the PyTorch peers' way).
    pub synced_step_ms: f64,
    /// The synced steps' times, in milliseconds.
    pub synced_step_ms_spread: super::Spread,
    pub steps: usize,
    pub flops_per_sample: Vec<(String, f64)>,
    /// The kernel kinds of the step's plan (see [`super::kernel_kinds`]); None when the adapter
    /// has no timestamps.
    pub kernels: Option<Vec<String>>,
    /// Per-node GPU times of one step (label, microseconds), when profiled.
    pub profile: Vec<(String, f64)>,
    /// Per node of the step's plan, its structure (when profiled; the same order as `profile`).
    pub counts: Vec<NodeCount>,
}

/// Blocks the back-to-back throughput is measured in (for its spread).
pub const THROUGHPUT_BLOCKS: usize = 5;

impl DlrmBenchResult {
    pub fn mflop_per_sample(&self) -> f64 {
        self.flops_per_sample.iter().map(|(_, f)| f).sum::<f64>() / 1e6
    }
    pub fn gflops(&self) -> f64 {
        self.mflop_per_sample() * self.samples_per_s / 1e3
    }
    /// Whether the TT subgroup kernels ran (None: not known, the adapter has no timestamps).
    pub fn subgroup_kernels_ran(&self) -> Option<bool> {
        self.kernels
            .as_ref()
            .map(|k| k.iter().any(|k| k.contains("(subgroup)")))
    }
    /// One JSON object (the `--json` line), `"type": "bench_dlrm"`.
    pub fn json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "bench_dlrm".into());
        self.env.add_to(&mut obj);
        let rest = serde_json::json!({
            "variant": self.config.variant,
            "batch": self.config.batch,
            "scale": self.config.scale,
            "tt_rank": self.config.rank,
            "gemm": self.gemm,
            "subgroup_kernels": self.subgroup_kernels_ran(),
            "kernels": self.kernels,
            "embedding_params": self.embedding_params,
            "samples_per_s": self.samples_per_s,
            "samples_per_s_spread": self.samples_per_s_spread.json(),
            "synced_step_ms": self.synced_step_ms,
            "synced_step_ms_spread": self.synced_step_ms_spread.json(),
            "steps": self.steps,
            "mflop_per_sample": self.mflop_per_sample(),
            "gflops": self.gflops(),
            "flops_per_sample": self.flops_per_sample.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        if let serde_json::Value::Object(m) = rest {
            obj.extend(m);
        }
        if !self.counts.is_empty() {
            let sum = StepCounts::of(&self.counts);
            obj.insert("commands".into(), sum.commands.into());
            obj.insert("dispatches".into(), sum.dispatches.into());
        }
        serde_json::Value::Object(obj)
    }
}

/// The model of a benchmark configuration (one per variant; batch sizes share it), with the
/// matrix-product variant `gemm` (None: the kernel class's) and kernel class `kernels`.
pub fn bench_model(
    gpu: &Gpu,
    cfg: &DlrmBenchConfig,
    gemm: Option<crate::kernels::matmul::GemmVariant>,
    kernels: crate::gpu::KernelClass,
) -> Result<Dlrm> {
    bench_model_as(gpu, cfg, gemm, kernels, crate::tt::CorePrecision::F32)
}

/// [`bench_model`] with its TT cores stored at `tt_precision` (`--tt-precision`).
pub fn bench_model_as(
    gpu: &Gpu,
    cfg: &DlrmBenchConfig,
    gemm: Option<crate::kernels::matmul::GemmVariant>,
    kernels: crate::gpu::KernelClass,
    tt_precision: crate::tt::CorePrecision,
) -> Result<Dlrm> {
    let synth = SyntheticCriteo::new(1, cfg.scale)?;
    let base = DlrmConfig::kaggle_dense().with_table_sizes(synth.table_sizes());
    let config = match cfg.variant.as_str() {
        "tt" => base.with_tt_largest(7, cfg.rank)?,
        "dense" => base,
        v => {
            return Err(Error::input(
                None,
                format!("unknown DLRM variant {v:?}; tt or dense"),
            ))
        }
    };
    Dlrm::new(
        gpu,
        config,
        DlrmOptions {
            gemm,
            kernels,
            tt_precision,
            ..DlrmOptions::default()
        },
    )
}

/// Measures one configuration on `model` (from [`bench_model`]): warm-up, then steps back to
/// back for at least `seconds` (and `min_steps`) in [`THROUGHPUT_BLOCKS`] blocks with a wait at
/// the end of each, then synced steps.
pub fn run_dlrm(
    gpu: &Gpu,
    model: &mut Dlrm,
    cfg: &DlrmBenchConfig,
    min_steps: usize,
    seconds: f64,
    profile: bool,
) -> Result<DlrmBenchResult> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(Error::input(
            None,
            format!("seconds per measurement must be a non-negative number, got {seconds}"),
        ));
    }
    let synth = SyntheticCriteo::new(1, cfg.scale)?;
    let embedding_params = model.config().embedding_params()?;
    model.prepare_train(cfg.batch)?;
    // Distinct batches, made before timing so data generation is not measured.
    let batches: Vec<_> = (0..16)
        .map(|i| synth.batch(i * cfg.batch as u64, cfg.batch))
        .collect();
    for b in batches.iter().take(3) {
        model.train_step(&DlrmBatch::from(b))?;
    }
    gpu.wait()?;
    let block_steps = min_steps.div_ceil(THROUGHPUT_BLOCKS).max(1);
    let block_seconds = seconds / THROUGHPUT_BLOCKS as f64;
    let mut steps = 0;
    let mut elapsed = 0.0;
    let mut block_rates = Vec::with_capacity(THROUGHPUT_BLOCKS);
    for _ in 0..THROUGHPUT_BLOCKS {
        let start = Instant::now();
        let mut n = 0;
        while n < block_steps || start.elapsed().as_secs_f64() < block_seconds {
            model.train_step(&DlrmBatch::from(&batches[steps % batches.len()]))?;
            steps += 1;
            n += 1;
            if steps % 256 == 0 {
                model.take_stats()?;
            }
        }
        gpu.wait()?;
        let secs = start.elapsed().as_secs_f64();
        elapsed += secs;
        block_rates.push((n * cfg.batch) as f64 / secs);
    }
    let mut synced = Vec::new();
    let sync_start = Instant::now();
    while synced.len() < 5
        || (sync_start.elapsed().as_secs_f64() < seconds / 2.0 && synced.len() < 1000)
    {
        let t = Instant::now();
        model.train_step(&DlrmBatch::from(&batches[synced.len() % batches.len()]))?;
        gpu.wait()?;
        synced.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let stats = model.take_stats()?;
    if let Some(s) = stats.iter().find(|s| !s.loss.is_finite()) {
        return Err(Error::Gpu(format!(
            "the loss of step {} is {}",
            s.step, s.loss
        )));
    }
    // The structure is known without timestamps; the times need them.
    let counts = if profile {
        model.train_counts(cfg.batch)?
    } else {
        Vec::new()
    };
    // One profiled step tells which kernels the plan runs (and, asked for, their times).
    let nodes = if gpu.has_timestamps() {
        Some(model.profile_step(&DlrmBatch::from(&batches[0]))?)
    } else {
        None
    };
    let kernels = nodes.as_ref().map(|nodes| {
        let labels: Vec<String> = nodes.iter().map(|n| n.label.clone()).collect();
        super::kernel_kinds(&labels, "")
    });
    let prof = match (profile, nodes) {
        (true, Some(nodes)) => nodes
            .into_iter()
            .map(|n| (n.label, n.nanos / 1e3))
            .collect(),
        _ => Vec::new(),
    };
    let synced_spread = super::Spread::of(synced);
    Ok(DlrmBenchResult {
        config: cfg.clone(),
        adapter: gpu.adapter_name(),
        env: super::BenchEnv::of(gpu),
        gemm: format!("{:?}", model.gemm_variant()),
        embedding_params,
        samples_per_s: (steps * cfg.batch) as f64 / elapsed,
        samples_per_s_spread: super::Spread::of(block_rates),
        synced_step_ms: synced_spread.median,
        synced_step_ms_spread: synced_spread,
        steps,
        flops_per_sample: model
            .flops_per_sample()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        kernels,
        profile: prof,
        counts,
    })
}

/// The part of the model a profiled node belongs to, from its label.
pub fn node_part(label: &str) -> &'static str {
    if label.starts_with("bottom") {
        "bottom MLP"
    } else if label.starts_with("top") {
        "top MLP"
    } else if label.starts_with("interaction") {
        "interaction"
    } else if label.starts_with("tt group") {
        "TT tables"
    } else if label.starts_with("dense") {
        "dense tables"
    } else if label.starts_with("loss") {
        "loss"
    } else if label.starts_with("mlp") {
        "MLP update"
    } else {
        "other"
    }
}

/// A GPU as the counts see it ([`step_by_counts`]): peak rates from its data sheet and a fixed
/// cost per command, both assumptions, printed with every report. Nothing here is measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceModel {
    pub name: &'static str,
    /// Compute units (SMs, GPU cores): a node with fewer workgroups fills only that many.
    pub units: u32,
    /// fp32 FLOP/s.
    pub flops: f64,
    /// Memory bytes/s.
    pub bytes: f64,
    /// Clock (Hz), for the serial chain's latency.
    pub clock_hz: f64,
    /// Microseconds every command (dispatch, clear, copy) costs on top of its work: launch and
    /// the barrier before the next.
    pub command_us: f64,
}

/// NVIDIA H100 SXM: 132 SMs, 67 TFLOP/s fp32, 3.35 TB/s, 1.98 GHz boost.
pub const H100: DeviceModel = DeviceModel {
    name: "H100",
    units: 132,
    flops: 67e12,
    bytes: 3.35e12,
    clock_hz: 1.98e9,
    command_us: 3.0,
};

/// An Apple M2-class laptop GPU: 10 cores, 3.6 TFLOP/s fp32, 100 GB/s, 1.4 GHz.
pub const M2: DeviceModel = DeviceModel {
    name: "M2",
    units: 10,
    flops: 3.6e12,
    bytes: 100e9,
    clock_hz: 1.4e9,
    command_us: 5.0,
};

/// Cycles of one dependent multiply-add in a serial chain (fp32 FMA latency).
pub const FMA_LATENCY_CYCLES: f64 = 4.0;

impl DeviceModel {
    /// The time node `c` implies, in microseconds, by its counts: the longest of its FLOPs at
    /// peak, its bytes at full bandwidth (both scaled by the share of the compute units its
    /// workgroups fill) and its serial chain at [`FMA_LATENCY_CYCLES`] a step, plus
    /// [`DeviceModel::command_us`]. A transfer (a clear or copy: no kernel, no workgroups) moves
    /// its bytes at full bandwidth. None where the launcher counted nothing.
    pub fn node_us(&self, c: &NodeCount) -> Option<f64> {
        let cost = c.cost?;
        let fill = if c.kernel.is_none() {
            1.0
        } else {
            (c.workgroups as f64 / self.units as f64).clamp(1.0 / self.units as f64, 1.0)
        };
        let compute = cost.flops / (self.flops * fill);
        let memory = cost.bytes / (self.bytes * fill);
        let serial = cost.serial as f64 * FMA_LATENCY_CYCLES / self.clock_hz;
        Some(compute.max(memory).max(serial) * 1e6 + self.command_us)
    }

    /// One line saying what the model assumes.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} units, {} TFLOP/s, {} GB/s, {:.2} GHz, {} us per command",
            self.name,
            self.units,
            self.flops / 1e12,
            self.bytes / 1e9,
            self.clock_hz / 1e9,
            self.command_us
        )
    }
}

/// A step's implied time on one device model.
#[derive(Clone, Debug, PartialEq)]
pub struct StepEstimate {
    pub device: &'static str,
    /// Per node: its time (None: no cost, counted at the command cost only).
    pub node_us: Vec<Option<f64>>,
    pub step_us: f64,
    pub samples_per_s: f64,
}

/// A step's structure summed: commands, dispatches, nodes without a cost, FLOPs and bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct StepCounts {
    pub commands: usize,
    pub dispatches: usize,
    pub uncosted: usize,
    pub flops: f64,
    pub bytes: f64,
}

impl StepCounts {
    pub fn of(counts: &[NodeCount]) -> Self {
        let costs = counts.iter().filter_map(|c| c.cost);
        StepCounts {
            commands: counts.len(),
            dispatches: counts.iter().filter(|c| c.kernel.is_some()).count(),
            uncosted: counts.iter().filter(|c| c.cost.is_none()).count(),
            flops: costs.clone().map(|c| c.flops).sum(),
            bytes: costs.map(|c| c.bytes).sum(),
        }
    }
}

/// The time a step of `batch` samples with nodes `counts` implies on `device`, by the counts
/// (NOT measured): each node's [`DeviceModel::node_us`], nodes without a cost at the command
/// cost alone (so the total is a lower bound where nodes lack one).
pub fn step_by_counts(device: &DeviceModel, counts: &[NodeCount], batch: usize) -> StepEstimate {
    let node_us: Vec<Option<f64>> = counts.iter().map(|c| device.node_us(c)).collect();
    let step_us: f64 = node_us.iter().map(|t| t.unwrap_or(device.command_us)).sum();
    StepEstimate {
        device: device.name,
        node_us,
        step_us,
        samples_per_s: batch as f64 / (step_us * 1e-6),
    }
}

/// The devices of the counts report.
pub const COUNT_DEVICES: [DeviceModel; 2] = [H100, M2];

/// The report of `ttrec bench dlrm --counts` for one step's `counts`: a node table (or one
/// `bench_dlrm_count` record per node) and the step's totals (`bench_dlrm_counts`), each time
/// labelled as implied by the counts.
pub fn counts_report(
    counts: &[NodeCount],
    variant: &str,
    batch: usize,
    kernels: &str,
    json: bool,
) -> Vec<String> {
    let est: Vec<StepEstimate> = COUNT_DEVICES
        .iter()
        .map(|d| step_by_counts(d, counts, batch))
        .collect();
    let sum = StepCounts::of(counts);
    let time = |t: Option<f64>| t.map_or("no cost".to_string(), |t| format!("{t:.1}"));
    let mut lines = Vec::new();
    if !json {
        lines.push(format!(
            "{variant} batch {batch}, {kernels} kernels: by the counts, NOT measured"
        ));
        lines.push(format!(
            "  {:<52} {:<22} {:>7} {:>6} {:>9} {:>8} {:>9} {:>9}",
            "node", "kernel", "wgs", "serial", "MFLOP", "MB", "H100 us", "M2 us"
        ));
    }
    for (i, c) in counts.iter().enumerate() {
        let (h100, m2) = (est[0].node_us[i], est[1].node_us[i]);
        if json {
            lines.push(
                serde_json::json!({
                    "type": "bench_dlrm_count", "variant": variant, "batch": batch,
                    "kernels": kernels, "node": c.label, "kernel": c.kernel,
                    "workgroups": c.workgroups, "invocations": c.invocations,
                    "serial": c.cost.map(|k| k.serial), "flops": c.cost.map(|k| k.flops),
                    "bytes": c.cost.map(|k| k.bytes), "h100_us": h100, "m2_us": m2,
                })
                .to_string(),
            );
            continue;
        }
        let num =
            |f: Option<f64>, scale: f64| f.map_or("-".into(), |x| format!("{:.3}", x / scale));
        lines.push(format!(
            "  {:<52} {:<22} {:>7} {:>6} {:>9} {:>8} {:>9} {:>9}",
            c.label,
            c.kernel.unwrap_or("(transfer)"),
            c.workgroups,
            c.cost.map_or("-".into(), |k| k.serial.to_string()),
            num(c.cost.map(|k| k.flops), 1e6),
            num(c.cost.map(|k| k.bytes), 1e6),
            time(h100),
            time(m2),
        ));
    }
    if json {
        let mut rec = serde_json::json!({
            "type": "bench_dlrm_counts", "variant": variant, "batch": batch, "kernels": kernels,
            "measured": false, "commands": sum.commands, "dispatches": sum.dispatches,
            "uncosted": sum.uncosted, "flops": sum.flops, "bytes": sum.bytes,
        });
        for (d, e) in COUNT_DEVICES.iter().zip(&est) {
            let key = d.name.to_lowercase();
            rec[format!("{key}_step_us")] = e.step_us.into();
            rec[format!("{key}_samples_per_s")] = e.samples_per_s.into();
            rec[format!("{key}_model")] = d.describe().into();
        }
        lines.push(rec.to_string());
    } else {
        lines.push(format!(
            "  step: {} commands ({} dispatches, {} without a cost), {:.1} MFLOP, {:.1} MB",
            sum.commands,
            sum.dispatches,
            sum.uncosted,
            sum.flops / 1e6,
            sum.bytes / 1e6
        ));
        for e in &est {
            lines.push(format!(
                "  implied on {}: {:.1} us a step, {:.0} samples/s (NOT measured)",
                e.device, e.step_us, e.samples_per_s
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Cost;

    fn node(label: &str, workgroups: u64, cost: Option<Cost>) -> NodeCount {
        NodeCount {
            label: label.into(),
            kernel: Some("k"),
            workgroups,
            invocations: Some(workgroups * 64),
            cost,
        }
    }

    /// The model's three bounds and the command cost, by hand; a node without a cost costs its
    /// command only and prints "no cost".
    #[test]
    fn counts_imply_times_by_hand() {
        let full = node(
            "compute",
            264,
            Some(Cost {
                flops: 67e6,
                bytes: 1e3,
                serial: 1,
            }),
        );
        // 67 MFLOP at 67 TFLOP/s: 1 us, plus 3 us.
        assert!((H100.node_us(&full).unwrap() - 4.0).abs() < 1e-9);
        let memory = node(
            "memory",
            1000,
            Some(Cost {
                flops: 1.0,
                bytes: 100e6,
                serial: 1,
            }),
        );
        // 100 MB at 100 GB/s: 1,000 us, plus 5 us.
        assert!((M2.node_us(&memory).unwrap() - 1005.0).abs() < 1e-9);
        // One workgroup of 132 SMs: the same FLOPs take 132 times as long.
        let narrow = NodeCount {
            workgroups: 1,
            ..full.clone()
        };
        assert!((H100.node_us(&narrow).unwrap() - (132.0 + 3.0)).abs() < 1e-6);
        let chain = node(
            "chain",
            1000,
            Some(Cost {
                flops: 1.0,
                bytes: 1.0,
                serial: 1_980_000,
            }),
        );
        // 1.98 M dependent steps of 4 cycles at 1.98 GHz: 4,000 us.
        assert!((H100.node_us(&chain).unwrap() - 4003.0).abs() < 1e-6);
        // A clear (no kernel, no workgroups) at full bandwidth: 33.5 MB at 3.35 TB/s, 10 us.
        let clear = NodeCount {
            label: "zero grad".into(),
            kernel: None,
            workgroups: 0,
            invocations: None,
            cost: Some(Cost {
                flops: 0.0,
                bytes: 33.5e6,
                serial: 1,
            }),
        };
        assert!((H100.node_us(&clear).unwrap() - 13.0).abs() < 1e-6);
        let unknown = node("routing", 2, None);
        assert_eq!(H100.node_us(&unknown), None);
        let counts = vec![full, memory, unknown];
        let e = step_by_counts(&H100, &counts, 1000);
        let want = 4.0 + (100e6 / 3.35e12 * 1e6 + 3.0) + 3.0;
        assert!((e.step_us - want).abs() < 1e-9, "{e:?}");
        assert!((e.samples_per_s - 1000.0 / (want * 1e-6)).abs() < 1e-3);
        let text = counts_report(&counts, "tt", 1000, "gpu", false);
        assert!(text[0].contains("NOT measured"));
        assert!(text
            .iter()
            .any(|l| l.contains("routing") && l.contains("no cost")));
        assert!(text
            .iter()
            .any(|l| l.contains("3 commands (3 dispatches, 1 without a cost)")));
        let json = counts_report(&counts, "tt", 1000, "gpu", true);
        assert_eq!(json.len(), 4);
        let total: serde_json::Value = serde_json::from_str(&json[3]).unwrap();
        assert_eq!(total["type"], "bench_dlrm_counts");
        assert_eq!(total["measured"], false);
        assert_eq!(total["uncosted"], 1);
        assert!((total["h100_step_us"].as_f64().unwrap() - want).abs() < 1e-9);
        let routing: serde_json::Value = serde_json::from_str(&json[2]).unwrap();
        assert!(routing["h100_us"].is_null());
    }

    /// The report of a real step's plan (built, not run; GPU class, tiny tables): a row per
    /// node, the products with their implied times, and no transposes left in the step.
    #[test]
    fn a_step_plan_reports_by_the_counts() {
        let gpu = Gpu::new().expect("an adapter (lavapipe works)");
        let cfg = DlrmBenchConfig {
            variant: "tt".into(),
            batch: 64,
            scale: 0.001,
            rank: 4,
        };
        let mut model = bench_model(&gpu, &cfg, None, crate::gpu::KernelClass::Gpu).unwrap();
        let counts = model.train_counts(64).unwrap();
        let json = counts_report(&counts, "tt", 64, "gpu", true);
        assert_eq!(json.len(), counts.len() + 1);
        let recs: Vec<serde_json::Value> = json
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let products: Vec<&serde_json::Value> = recs
            .iter()
            .filter(|r| r["kernel"].as_str().is_some_and(|k| k.starts_with("gemm")))
            .collect();
        assert!(products.len() >= 18, "{} products", products.len());
        for p in &products {
            assert!(p["h100_us"].as_f64().unwrap() >= H100.command_us, "{p}");
            assert!(p["m2_us"].as_f64().unwrap() >= M2.command_us, "{p}");
        }
        assert!(!recs.iter().any(|r| r["kernel"] == "transpose"));
        assert!(recs.iter().any(|r| r["kernel"] == "optim_arena"));
        let total = recs.last().unwrap();
        assert_eq!(total["commands"], counts.len());
        assert!(total["h100_samples_per_s"].as_f64().unwrap() > 0.0);
        let text = counts_report(&counts, "tt", 64, "gpu", false);
        assert_eq!(text.len(), counts.len() + 2 + 1 + COUNT_DEVICES.len());
    }
}
