//! The DLRM's quotient-remainder tables (`--embedding qr`, dlrm's `--qr-flag`): which model
//! tables are QR, their group on the GPU ([`QrBagGroup`]), its lookups in a plan, the packing
//! of a batch's ids and the state-dict names `emb_l.{t}.weight_q` / `emb_l.{t}.weight_r`.
//! Kept apart from `net` so that the network holds one value for all of them.

use crate::dlrm::config::{DlrmConfig, QrOperation, TableKind};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{GraphBuilder, PlanInput};
use crate::kernels::qr::QrOp;
use crate::nn::{QrBagGroup, QrLookups, QrPart, QrTableSpec};
use crate::tt::{Bags, Optimizer};

/// The model's QR tables as one group.
pub(super) struct QrTables {
    pub(super) group: QrBagGroup,
    /// Model table of each group table, in order.
    pub(super) tables: Vec<usize>,
}

fn op_of(operation: QrOperation) -> QrOp {
    match operation {
        QrOperation::Mult => QrOp::Mult,
        QrOperation::Add => QrOp::Add,
        QrOperation::Concat => QrOp::Concat,
    }
}

/// Seed offset of the QR tables' streams from the config seed (the dense tables use 7).
const QR_SEED: u64 = 11;

impl QrTables {
    /// The QR tables of `config` (None if it has none), initialised as dlrm does from the
    /// config seed when `init`, else zero.
    pub(super) fn build(
        gpu: &Gpu,
        config: &DlrmConfig,
        optimizer: Optimizer,
        init: bool,
        max_shard_bytes: Option<u64>,
    ) -> Result<Option<Self>> {
        let mut tables: Vec<usize> = Vec::new();
        let mut specs = Vec::new();
        for (t, table) in config.tables.iter().enumerate() {
            if let TableKind::Qr {
                collisions,
                operation,
            } = table.kind
            {
                if let Some(&first) = tables.first() {
                    let TableKind::Qr { operation: op0, .. } = config.tables[first].kind else {
                        unreachable!("a QR table")
                    };
                    if op0.part_dim(config.dim()) != operation.part_dim(config.dim()) {
                        return Err(Error::shape(
                            Some(t),
                            format!(
                                "QR tables of one model share their part width: table {first} is {} and this one {}; concat cannot be mixed with mult or add",
                                op0.name(),
                                operation.name()
                            ),
                        ));
                    }
                }
                tables.push(t);
                specs.push(QrTableSpec {
                    rows: table.rows,
                    collisions,
                    op: op_of(operation),
                });
            }
        }
        if tables.is_empty() {
            return Ok(None);
        }
        let seed = init.then(|| config.seed.wrapping_add(QR_SEED));
        let group = QrBagGroup::new(gpu, config.dim(), &specs, optimizer, seed, max_shard_bytes)
            .map_err(|e| e.with_table(tables[0]))?;
        Ok(Some(QrTables { group, tables }))
    }

    /// The group index of model table `t` (an error naming it when it is not QR).
    pub(super) fn index(&self, t: usize) -> Result<usize> {
        self.tables
            .iter()
            .position(|&m| m == t)
            .ok_or_else(|| Error::input(Some(t), "the table is not a quotient-remainder table"))
    }

    /// Declares a plan's QR lookups for `batch` one-hot samples, each table combined into
    /// column `slot_col(t)` of T (`t_stride` per row); `pieces`: the backward in pieces.
    pub(super) fn declare(
        &self,
        g: &mut GraphBuilder,
        batch: usize,
        t_stride: usize,
        slot_col: impl Fn(usize) -> usize,
        pieces: bool,
    ) -> Result<QrLookups> {
        let cols: Vec<usize> = self.tables.iter().map(|&t| slot_col(t)).collect();
        let lk = QrLookups::declare(
            g,
            &self.group,
            batch,
            batch * self.tables.len(),
            t_stride,
            &cols,
            "qr tables",
        )?
        .assume_one_hot();
        Ok(if pieces {
            lk.use_pieces(g, &self.group)
        } else {
            lk
        })
    }

    /// The ids of every QR table in a batch of `b` samples of `sparse` (`[B, tables]`).
    pub(super) fn ids(&self, sparse: &[u32], tables: usize, b: usize) -> Vec<Vec<u32>> {
        self.tables
            .iter()
            .map(|&t| (0..b).map(|s| sparse[s * tables + t]).collect())
            .collect()
    }

    /// Writes the QR tables' ids (validated, one list per QR table) into a plan's input.
    pub(super) fn fill(
        &self,
        input: &mut PlanInput,
        lk: &QrLookups,
        ids: &[Vec<u32>],
    ) -> Result<()> {
        let offsets: Vec<u32> = (0..=ids[0].len() as u32).collect();
        let bags: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
        lk.fill(input, &self.group, &bags)
    }

    /// The dense gradient of model table `t`'s `part` from the last training step's `ids`.
    pub(super) fn gradient(
        &self,
        lk: &QrLookups,
        ids: &[Vec<u32>],
        t: usize,
        part: QrPart,
    ) -> Result<Vec<f32>> {
        let j = self.index(t)?;
        let offsets: Vec<u32> = (0..=ids[0].len() as u32).collect();
        let bags: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
        let (q, r) = lk.table_grads(&self.group, &bags, j)?;
        Ok(match part {
            QrPart::Quotient => q,
            QrPart::Remainder => r,
        })
    }
}

/// The state-dict name of model table `t`'s `part` (dlrm's `QREmbeddingBag` names).
pub(super) fn param_name(t: usize, part: QrPart) -> String {
    match part {
        QrPart::Quotient => format!("emb_l.{t}.weight_q"),
        QrPart::Remainder => format!("emb_l.{t}.weight_r"),
    }
}

/// (model table, part) of a QR parameter name; None for any other name.
pub(super) fn parse_name(name: &str) -> Option<(usize, QrPart)> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["emb_l", t, "weight_q"] => t.parse().ok().map(|t| (t, QrPart::Quotient)),
        ["emb_l", t, "weight_r"] => t.parse().ok().map(|t| (t, QrPart::Remainder)),
        _ => None,
    }
}
