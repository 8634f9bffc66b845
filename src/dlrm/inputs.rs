//! A batch on its way into a plan: the [`DlrmBatch`] the caller hands over, its checks
//! ([`validate`]: sizes, finite features, ids in range, labels 0 or 1, each error naming the
//! sample, feature or table), the input regions a plan declares for it ([`declare`]) and the
//! packing of a batch into them ([`fill`]). Everything takes the [`Net`] it reads as an argument.

use crate::data::Batch;
use crate::dlrm::config::DlrmConfig;
use crate::dlrm::md::md_ids;
use crate::dlrm::net::Net;
use crate::error::{Error, Result};
use crate::graph::{Buf, GraphBuilder, PlanInput};
use crate::kernels::loss::StepParams;
use crate::kernels::matmul::GemmVariant;
use crate::nn::md::MdLookups;
use crate::nn::mlp::pad4;
use crate::nn::{DenseBagLookups, QrLookups};
use crate::tt::lookups::LookupSource;
use crate::tt::Placement;
use crate::tt::{Bags, Pooling, TtLookups};

/// One batch as the model takes it: `dense` `[B, dense features]` (after dlrm's log transform),
/// `sparse` `[B, tables]` ids, `labels` `[B]` (0 or 1; may be empty for prediction).
#[derive(Clone, Copy, Debug)]
pub struct DlrmBatch<'a> {
    pub dense: &'a [f32],
    pub sparse: &'a [u32],
    pub labels: &'a [f32],
}

impl<'a> From<&'a Batch> for DlrmBatch<'a> {
    fn from(b: &'a Batch) -> Self {
        DlrmBatch {
            dense: &b.dense,
            sparse: &b.sparse,
            labels: &b.labels,
        }
    }
}

/// Per-batch input regions of a plan.
pub(super) struct BatchInputs {
    pub(super) batch: usize,
    /// The dense features batch-major [B, pad4(13)] and feature-major [pad4(13), pad4(B)].
    pub(super) dense_x: Buf,
    pub(super) dense_x_t: Buf,
    pub(super) labels: Option<Buf>,
    pub(super) step: Option<Buf>,
    pub(super) dense: Option<DenseBagLookups>,
    /// One per TT group.
    pub(super) tt: Vec<TtLookups>,
    /// The quotient-remainder tables' lookups.
    pub(super) qr: Option<QrLookups>,
    /// The MD tables' lookups (one per bag).
    pub(super) md: Option<MdLookups>,
}

/// Declares the input regions of a plan for batches of `batch` samples (with labels and the
/// statistics slot when `train`).
pub(super) fn declare(
    net: &Net,
    g: &mut GraphBuilder,
    batch: usize,
    train: bool,
) -> Result<BatchInputs> {
    let in_p = net.bottom.input_stride();
    let dense_x = g.input("dense features", (batch * in_p) as u64 * 4);
    let dense_x_t = g.input("dense features transposed", (in_p * pad4(batch)) as u64 * 4);
    let (labels, step) = if train {
        (
            Some(g.input("labels", batch as u64 * 4)),
            Some(g.input("step", std::mem::size_of::<StepParams>() as u64)),
        )
    } else {
        (None, None)
    };
    let dense = match &net.dense {
        Some(group) => {
            let lookups = DenseBagLookups::declare(
                g,
                group,
                batch,
                batch * group.num_tables(),
                net.t_stride(),
                &net.dense_col_offsets(),
                "dense tables",
            )?
            .assume_one_hot();
            // The GPU class (whose products are the split ones) sums hot rows in pieces.
            Some(if net.variant == GemmVariant::Split {
                lookups.use_pieces(g, group)
            } else {
                lookups
            })
        }
        None => None,
    };
    let tt = net
        .tt
        .iter()
        .enumerate()
        .map(|(i, grp)| {
            let n = batch * grp.tables.len();
            // Training plans count the lookups in the groups' caches; evaluation does not.
            let source = LookupSource::for_table(&grp.params, train);
            TtLookups::declare_with(g, &grp.params, n, n, &format!("tt group {i}"), source)
                .assume_one_hot(batch)
        })
        .collect();
    let qr = match &net.qr {
        Some(q) => Some(q.declare(
            g,
            batch,
            net.t_stride(),
            |t| net.slot_col(t),
            net.variant == GemmVariant::Split,
        )?),
        None => None,
    };
    let md = match &net.md {
        Some(md) => Some(MdLookups::declare(
            g,
            md,
            batch,
            1,
            true,
            net.variant == GemmVariant::Split,
            "md tables",
        )?),
        None => None,
    };
    Ok(BatchInputs {
        qr,
        batch,
        dense_x,
        dense_x_t,
        labels,
        step,
        dense,
        tt,
        md,
    })
}

/// Samples in `batch`, after checking it against `config`: sizes, finite dense features, ids
/// in range, labels 0 or 1 (when `labels` are needed or given).
pub(super) fn validate(config: &DlrmConfig, batch: &DlrmBatch, labels: bool) -> Result<usize> {
    let tables = config.tables.len();
    let features = config.dense_features();
    if batch.sparse.is_empty() || !batch.sparse.len().is_multiple_of(tables) {
        return Err(Error::input(
            None,
            format!(
                "the batch has {} ids; the model has {tables} tables, so a batch of B samples has B x {tables}",
                batch.sparse.len()
            ),
        ));
    }
    let b = batch.sparse.len() / tables;
    if batch.dense.len() != b * features {
        return Err(Error::input(
            None,
            format!(
                "the batch has {} dense values; {b} samples x {features} dense features need {}",
                batch.dense.len(),
                b * features
            ),
        ));
    }
    if let Some(i) = batch.dense.iter().position(|x| !x.is_finite()) {
        return Err(Error::input(
            None,
            format!(
                "dense feature I{} of sample {} is {} (not finite)",
                i % features + 1,
                i / features,
                batch.dense[i]
            ),
        ));
    }
    for (i, &id) in batch.sparse.iter().enumerate() {
        let t = i % tables;
        let rows = config.tables[t].rows;
        if id as u64 >= rows {
            return Err(Error::input(
                Some(t),
                format!(
                    "id {id} of sample {} (C{}) is out of range; the table has {rows} rows",
                    i / tables,
                    t + 1
                ),
            ));
        }
    }
    if labels || !batch.labels.is_empty() {
        validate_labels(batch.labels, b)?;
    }
    Ok(b)
}

/// `b` labels, each 0 or 1.
fn validate_labels(labels: &[f32], b: usize) -> Result<()> {
    if labels.len() != b {
        return Err(Error::input(
            None,
            format!("the batch has {} labels for {b} samples", labels.len()),
        ));
    }
    if let Some(i) = labels.iter().position(|&y| y != 0.0 && y != 1.0) {
        return Err(Error::input(
            None,
            format!("label of sample {i} is {}; labels are 0 or 1", labels[i]),
        ));
    }
    Ok(())
}

/// Writes `batch` (validated) into a plan's input image, with statistics slot `slot` for a
/// training plan. Returns the dense tables' ids, one list per dense table (None without dense
/// tables), which the dense gradients need later.
pub(super) fn fill(
    net: &Net,
    input: &mut PlanInput,
    inputs: &BatchInputs,
    batch: &DlrmBatch,
    slot: Option<u32>,
) -> Result<FilledIds> {
    let b = inputs.batch;
    let tables = net.config.tables.len();
    let features = net.config.dense_features();
    let in_p = net.bottom.input_stride();
    let bp = pad4(b);
    let mut x = vec![0f32; b * in_p];
    let mut x_t = vec![0f32; in_p * bp];
    for s in 0..b {
        for f in 0..features {
            let v = batch.dense[s * features + f];
            x[s * in_p + f] = v;
            x_t[f * bp + s] = v;
        }
    }
    input.write(&inputs.dense_x, &x)?;
    input.write(&inputs.dense_x_t, &x_t)?;
    if let Some(l) = &inputs.labels {
        input.write(l, batch.labels)?;
    }
    if let (Some(region), Some(slot)) = (&inputs.step, slot) {
        input.write(region, &[StepParams { slot, _pad: [0; 3] }])?;
    }
    let column = |t: usize| -> Vec<u32> { (0..b).map(|s| batch.sparse[s * tables + t]).collect() };
    let offsets: Vec<u32> = (0..=b as u32).collect();
    let mut dense_ids = None;
    if let (Some(group), Some(lk)) = (&net.dense, &inputs.dense) {
        let ids: Vec<Vec<u32>> = (0..tables)
            .filter(|&t| net.dense_index[t].is_some())
            .map(column)
            .collect();
        let bags: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
        lk.fill(input, group, &bags)?;
        dense_ids = Some(ids);
    }
    for (grp, lk) in net.tt.iter().zip(&inputs.tt) {
        let ids: Vec<Vec<u32>> = grp.tables.iter().map(|&t| column(t)).collect();
        let bags: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
        let place = Placement {
            col: grp.tables.iter().map(|&t| net.slot_col(t)).collect(),
            stride: vec![net.t_stride(); grp.tables.len()],
        };
        lk.fill(input, &grp.params, &bags, &place, Pooling::Sum)?;
    }
    let mut qr_ids = None;
    if let (Some(q), Some(lk)) = (&net.qr, &inputs.qr) {
        let ids = q.ids(batch.sparse, tables, b);
        q.fill(input, lk, &ids)?;
        qr_ids = Some(ids);
    }
    let mut md_ids_out = None;
    if let (Some(md), Some(lk)) = (&net.md, &inputs.md) {
        let ids = md_ids(&net.config, &net.md_index, batch.sparse);
        let bags: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
        lk.fill(input, md, &bags)?;
        md_ids_out = Some(ids);
    }
    Ok(FilledIds {
        dense: dense_ids,
        qr: qr_ids,
        md: md_ids_out,
    })
}

/// The ids a filled input holds, per kind of table (None: the model has none of that kind),
/// kept by `Dlrm` for the gradients of the last step without splitting the batch again.
pub(super) struct FilledIds {
    pub(super) dense: Option<Vec<Vec<u32>>>,
    pub(super) qr: Option<Vec<Vec<u32>>>,
    pub(super) md: Option<Vec<Vec<u32>>>,
}
