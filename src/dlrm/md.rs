//! The DLRM's mixed-dimension tables (`TableKind::Md`, dlrm's `--md-flag`): which model tables
//! they are and how their parameters are named. The layer itself is [`crate::nn::md`]; `net`
//! builds it, `inputs` fills its lookups, `step` records it (pooled, projected into T at the
//! table's slot; backward from dT), `state_dict` names it (`emb_l.{t}.embs.weight` `[N, m]`,
//! `emb_l.{t}.proj.weight` `[D, m]`, as dlrm's `PrEmbeddingBag`). Sits below `net`: it takes the
//! config and the layer's parts, never the network.

use crate::dlrm::config::{DlrmConfig, TableKind};
use crate::nn::md::MdTableSpec;

/// Seed offset of the MD tables' initial values (the dense tables use +7, TT tables
/// +1000 + t): table i of the MD tables draws from `seed + MD_SEED + 2 i` and `+ 2 i + 1`.
pub(super) const MD_SEED: u64 = 2000;

/// The MD tables of `config` in model order, and per model table its MD index (None for others).
pub(super) fn md_specs(config: &DlrmConfig) -> (Vec<MdTableSpec>, Vec<Option<usize>>) {
    let mut specs = Vec::new();
    let index = config
        .tables
        .iter()
        .enumerate()
        .map(|(t, table)| match table.kind {
            TableKind::Md { dim } => {
                specs.push(MdTableSpec {
                    prefix: format!("emb_l.{t}"),
                    table: t,
                    rows: table.rows,
                    dim,
                });
                Some(specs.len() - 1)
            }
            _ => None,
        })
        .collect();
    (specs, index)
}

/// Each MD table's ids in a batch (`sparse` `[B, tables]`), in MD order.
pub(super) fn md_ids(
    config: &DlrmConfig,
    md_index: &[Option<usize>],
    sparse: &[u32],
) -> Vec<Vec<u32>> {
    let tables = config.tables.len();
    let b = sparse.len() / tables.max(1);
    (0..tables)
        .filter(|&t| md_index[t].is_some())
        .map(|t| (0..b).map(|s| sparse[s * tables + t]).collect())
        .collect()
}
