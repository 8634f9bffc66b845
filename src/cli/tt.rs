//! `ttrec tt convert`: a dense table of a checkpoint into TT cores (TT-SVD), or TT cores back
//! into a dense table, printing the reconstruction error and the sizes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use ttrec::compress::plan::{bytes, parse_bytes};
use ttrec::compress::tt_svd::tt_to_dense_f64;
use ttrec::compress::{reconstruction_error, tt_svd, RankChoice};
use ttrec::tt::shapes::suggested_dim_shape;
use ttrec::tt::{checkpoint as tt_checkpoint, suggested_tt_shapes, TtShape};

/// `ttrec tt` subcommands.
#[derive(Debug, Subcommand)]
pub enum TtCommand {
    /// A dense table of a checkpoint into TT cores by TT-SVD (or back with --to-dense).
    Convert(ConvertArgs),
}

/// Options of `ttrec tt convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A training checkpoint (`--save-model`), or any safetensors file holding the table as a 2-D
    /// f32 tensor; with --to-dense, a TT cores file (this command's --out) or a training
    /// checkpoint whose --table is TT.
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The table: C1..C26 (Criteo's columns), a number t (dlrm's `emb_l.{t}.weight`, from 0) or
    /// a tensor name. Not needed for a TT cores file.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// The interior TT ranks, comma-separated (default 32 for each).
    #[arg(long, value_name = "R,R", value_delimiter = ',', conflicts_with_all = ["tolerance", "budget"])]
    pub ranks: Vec<usize>,
    /// The smallest ranks within this relative Frobenius error of the table (e.g. 0.05).
    #[arg(long, value_name = "F", conflicts_with = "budget")]
    pub tolerance: Option<f64>,
    /// The highest equal ranks whose cores take at most this many bytes (e.g. 2MB).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub budget: Option<u64>,
    /// Number of cores d (2 to 4) for the automatic shapes.
    #[arg(long, default_value_t = 3)]
    pub cores: usize,
    /// Row factors, comma-separated (default: the reference's automatic shapes).
    #[arg(long, value_name = "P,P,P", value_delimiter = ',')]
    pub p_shapes: Vec<usize>,
    /// Column factors, comma-separated, product D (default: automatic).
    #[arg(long, value_name = "Q,Q,Q", value_delimiter = ',')]
    pub q_shapes: Vec<usize>,
    /// Multiply TT cores out into a dense table (tensor `weight`, [N, D]).
    #[arg(long)]
    pub to_dense: bool,
    /// Where the cores (or with --to-dense the dense table) go, as safetensors.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Print one JSON object ("type": "tt_convert") instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ttrec tt ...`.
pub fn run(cmd: TtCommand) -> anyhow::Result<()> {
    match cmd {
        TtCommand::Convert(a) if a.to_dense => to_dense(&a),
        TtCommand::Convert(a) => from_dense(&a),
    }
}

/// The tensor name `--table` means.
fn tensor_name(table: &str) -> String {
    if let Some(n) = table
        .strip_prefix(['C', 'c'])
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n >= 1)
    {
        return format!("emb_l.{}.weight", n - 1);
    }
    match table.parse::<usize>() {
        Ok(t) => format!("emb_l.{t}.weight"),
        Err(_) => table.to_string(),
    }
}

/// Every tensor of `path`: a training checkpoint (verified), else any safetensors file.
fn tensors(path: &Path) -> anyhow::Result<ttrec::train::checkpoint::Tensors> {
    let (meta, raw) = tt_checkpoint::read_safetensors(path)?;
    if meta.get("format").map(String::as_str) == Some(ttrec::train::checkpoint::FORMAT) {
        return Ok(ttrec::train::checkpoint::load(path)?.tensors);
    }
    let mut out = Vec::new();
    for (name, t) in raw {
        if let Ok(v) = t.f32s(&name, path) {
            out.push((name, t.shape, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The ranks `a` asks for, for the shape factors `p`, `q` of a table of `rows` rows.
fn rank_choice(a: &ConvertArgs, rows: u64, p: &[usize], q: &[usize]) -> anyhow::Result<RankChoice> {
    let d = p.len();
    if let Some(t) = a.tolerance {
        if !(t.is_finite() && t >= 0.0) {
            bail!("--tolerance must be a number of 0 or more, got {t}");
        }
        return Ok(RankChoice::Tolerance(t));
    }
    if let Some(budget) = a.budget {
        // Parameters grow with the rank: the highest equal rank within the budget.
        let bytes_at = |r: usize| -> anyhow::Result<u64> {
            Ok(4 * TtShape::new(rows, p, q, &vec![r; d - 1])?.num_params() as u64)
        };
        if bytes_at(1)? > budget {
            bail!(
                "--budget {budget} bytes: even rank 1 takes {} bytes",
                bytes_at(1)?
            );
        }
        // lo fits; hi does not (or is past the largest rank tried).
        let (mut lo, mut hi) = (1usize, 2usize);
        while hi <= 1 << 16 && bytes_at(hi)? <= budget {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if bytes_at(mid)? <= budget {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return Ok(RankChoice::Fixed(vec![lo; d - 1]));
    }
    if a.ranks.is_empty() {
        return Ok(RankChoice::Fixed(vec![32; d - 1]));
    }
    if a.ranks.len() != d - 1 || a.ranks.contains(&0) {
        bail!(
            "--ranks {:?}: {d} cores need {} ranks of at least 1",
            a.ranks,
            d - 1
        );
    }
    Ok(RankChoice::Fixed(a.ranks.clone()))
}

fn list(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Dense table -> TT cores.
fn from_dense(a: &ConvertArgs) -> anyhow::Result<()> {
    let Some(table) = &a.table else {
        bail!(
            "--table is needed: which table of {} to convert (C1..C26, a number or a tensor name)",
            a.from.display()
        );
    };
    let name = tensor_name(table);
    let all = tensors(&a.from).with_context(|| format!("reading {}", a.from.display()))?;
    let Some((_, shape, values)) = all.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = all
            .iter()
            .filter(|(_, s, _)| s.len() == 2)
            .map(|(n, _, _)| n.as_str())
            .collect();
        bail!(
            "{}: no tensor {name} (--table {table}); 2-D tensors there: {}",
            a.from.display(),
            names.join(", ")
        );
    };
    let [rows, dim] = shape[..] else {
        bail!("tensor {name} has shape {shape:?}; a table is 2-D [rows, D]");
    };
    if !(2..=4).contains(&a.cores) {
        bail!("--cores {}: TT tables have 2 to 4 cores", a.cores);
    }
    let p = if a.p_shapes.is_empty() {
        suggested_tt_shapes(rows as u64, a.cores, true)
    } else {
        a.p_shapes.clone()
    };
    let q = if a.q_shapes.is_empty() {
        suggested_dim_shape(dim, p.len())
    } else {
        a.q_shapes.clone()
    };
    if q.iter().product::<usize>() != dim {
        bail!("--q-shapes {}: their product must be D = {dim}", list(&q));
    }
    let ranks = rank_choice(a, rows as u64, &p, &q)?;
    let svd = tt_svd(values, rows as u64, &p, &q, &ranks)?;
    let approx = tt_to_dense_f64(&svd.shape, &svd.cores)?;
    let err = reconstruction_error(values, &approx, dim);
    tt_checkpoint::save_cores(&a.out, &svd.shape, &svd.cores)?;
    let dense_bytes = 4 * (rows * dim) as u64;
    let tt_bytes = 4 * svd.shape.num_params() as u64;
    let s = &svd.shape;
    if a.json {
        println!(
            "{}",
            json!({
                "type": "tt_convert", "table": name, "rows": rows, "dim": dim,
                "p": s.p, "q": s.q, "ranks": s.interior_ranks(),
                "tt_bytes": tt_bytes, "dense_bytes": dense_bytes,
                "compression": dense_bytes as f64 / tt_bytes as f64,
                "relative_error": err.relative_frobenius,
                "predicted_relative_error": svd.predicted_relative_error(),
                "worst_row": err.worst_row, "worst_row_error": err.worst_row_error,
                "worst_row_norm": err.worst_row_norm,
                "out": a.out.display().to_string(),
            })
        );
        return Ok(());
    }
    println!(
        "table {name}: {rows} rows x {dim} ({} as f32)",
        bytes(dense_bytes)
    );
    println!(
        "TT: p {} q {} ranks {}: {} parameters ({}), {:.1}x smaller than dense",
        list(&s.p),
        list(&s.q),
        list(s.interior_ranks()),
        s.num_params(),
        bytes(tt_bytes),
        dense_bytes as f64 / tt_bytes as f64
    );
    println!(
        "reconstruction: relative Frobenius error {:.6} (discarded singular values: {:.6}); worst row {}: error {:.4e} (its norm {:.4e})",
        err.relative_frobenius,
        svd.predicted_relative_error(),
        err.worst_row,
        err.worst_row_error,
        err.worst_row_norm
    );
    println!("wrote {}", a.out.display());
    Ok(())
}

/// TT cores -> dense table.
fn to_dense(a: &ConvertArgs) -> anyhow::Result<()> {
    let (shape, cores) = match &a.table {
        None => tt_checkpoint::load_cores(&a.from)?,
        Some(table) => {
            let ck = ttrec::train::checkpoint::load(&a.from)?;
            let name = tensor_name(table);
            let t: usize = name
                .strip_prefix("emb_l.")
                .and_then(|r| r.strip_suffix(".weight"))
                .and_then(|t| t.parse().ok())
                .with_context(|| format!("--table {table}: C1..C26 or a table number"))?;
            let Some(shape) = ck.meta.config.tt_shape(t)? else {
                bail!("table {t} of {} is dense already", a.from.display());
            };
            let cores = (0..shape.d())
                .map(|k| {
                    let n = format!("emb_l.{t}.tt_cores.{k}");
                    ck.tensors
                        .iter()
                        .find(|(m, _, _)| *m == n)
                        .map(|(_, _, v)| v.clone())
                        .with_context(|| format!("tensor {n} is missing"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (shape, cores)
        }
    };
    let dense = tt_to_dense_f64(&shape, &cores)?;
    let values: Vec<f32> = dense.iter().map(|&x| x as f32).collect();
    let (rows, dim) = (shape.num_embeddings as usize, shape.dim());
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "ttrec-dense-table-v1".to_string());
    tt_checkpoint::write_safetensors(
        &a.out,
        &[("weight".to_string(), vec![rows, dim], values)],
        meta,
    )?;
    let (tt_bytes, dense_bytes) = (4 * shape.num_params() as u64, 4 * (rows * dim) as u64);
    if a.json {
        println!(
            "{}",
            json!({"type": "tt_convert", "to_dense": true, "rows": rows, "dim": dim,
                   "tt_bytes": tt_bytes, "dense_bytes": dense_bytes,
                   "out": a.out.display().to_string()})
        );
    } else {
        println!(
            "TT p {} q {} ranks {} ({}) -> dense {rows} rows x {dim} ({}); wrote {} (tensor weight)",
            list(&shape.p),
            list(&shape.q),
            list(shape.interior_ranks()),
            bytes(tt_bytes),
            bytes(dense_bytes),
            a.out.display()
        );
    }
    Ok(())
}
