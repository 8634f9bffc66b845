//! The model's parameters by dlrm's state-dict names (`bot_l.*`, `top_l.*`, `emb_l.{t}.weight`,
//! `emb_l.{t}.tt_cores.{k}`): listing, reading, replacing, gradients of the last step and
//! counts. Checkpoints, parity fixtures and the tests reach the parameters only through these
//! names, so the grouping of tables on the GPU stays an internal matter of the [`Net`].

use crate::dlrm::net::Net;
use crate::dlrm::qr::{param_name as qr_name, parse_name as parse_qr};
use crate::error::{Error, Result};
use crate::nn::md::{rows_name, MdLookups, MdTables};
use crate::nn::QrPart;
use crate::nn::{DenseBagGroup, DenseBagLookups};
use crate::tt::{Bags, TtParams};

/// Names of the parameters, as dlrm's state dict.
fn emb_weight(t: usize) -> String {
    format!("emb_l.{t}.weight")
}
fn emb_core(t: usize, k: usize) -> String {
    format!("emb_l.{t}.tt_cores.{k}")
}

/// A parsed parameter name.
enum Param<'a> {
    Mlp(&'a str),
    Dense(usize),
    Core(usize, usize),
    /// An MD table's rows (its projection is an arena tensor, reached as `Mlp`).
    MdRows(usize),
}

fn parse_name(name: &str) -> Param<'_> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["emb_l", t, "weight"] => t.parse().map(Param::Dense).unwrap_or(Param::Mlp(name)),
        ["emb_l", t, "embs", "weight"] => t.parse().map(Param::MdRows).unwrap_or(Param::Mlp(name)),
        ["emb_l", t, "tt_cores", k] => match (t.parse(), k.parse()) {
            (Ok(t), Ok(k)) => Param::Core(t, k),
            _ => Param::Mlp(name),
        },
        _ => Param::Mlp(name),
    }
}

/// What the last training step leaves for the dense tables' gradients: their ids (one list per
/// dense table) and the step's dense lookups.
pub(super) struct LastDenseStep<'a> {
    pub(super) ids: &'a [Vec<u32>],
    pub(super) lookups: &'a DenseBagLookups,
}

/// What the last training step leaves for the MD tables' row gradients: their ids (one list per
/// MD table) and the step's MD lookups.
pub(super) struct LastMdStep<'a> {
    pub(super) ids: &'a [Vec<u32>],
    pub(super) lookups: &'a MdLookups,
}

/// Every parameter's name and logical shape: MLP layers, then tables in order.
pub(super) fn parameter_names(net: &Net) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = net
        .arena
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.shape()))
        .collect();
    for (t, table) in net.config.tables.iter().enumerate() {
        if let Some(q) = net.qr.as_ref().filter(|q| q.tables.contains(&t)) {
            let part = q.group.part();
            let spec = q.group.specs()[q.index(t).expect("a QR table")];
            out.push((
                qr_name(t, QrPart::Quotient),
                vec![spec.quotient_rows() as usize, part],
            ));
            out.push((
                qr_name(t, QrPart::Remainder),
                vec![spec.collisions as usize, part],
            ));
            continue;
        }
        if let Ok((md, i)) = md_table(net, t) {
            let s = &md.specs()[i];
            out.push((rows_name(&s.prefix), vec![s.rows as usize, s.dim]));
            continue;
        }
        match tt_table(net, t) {
            Ok((p, i)) => {
                let shape = &p.tables()[i].shape;
                for k in 0..shape.d() {
                    out.push((emb_core(t, k), shape.core_shape(k).to_vec()));
                }
            }
            Err(_) => out.push((emb_weight(t), vec![table.rows as usize, net.config.dim()])),
        }
    }
    out
}

/// Table `t`'s TT group's parameters and its position in the group.
fn tt_table(net: &Net, t: usize) -> Result<(&TtParams, usize)> {
    match net.tt_of.get(t).copied().flatten() {
        Some((g, i)) => Ok((&net.tt[g].params, i)),
        None => Err(Error::input(Some(t), "the table is not a TT table")),
    }
}

/// The MD tables and table `t`'s index among them.
fn md_table(net: &Net, t: usize) -> Result<(&MdTables, usize)> {
    match (net.md.as_ref(), net.md_index.get(t).copied().flatten()) {
        (Some(md), Some(i)) => Ok((md, i)),
        _ => Err(Error::input(
            Some(t),
            "the table is not a mixed-dimension table",
        )),
    }
}

/// The dense group and table `t`'s position in it.
fn dense_table(net: &Net, t: usize) -> Result<(&DenseBagGroup, usize)> {
    match (
        net.dense.as_ref(),
        net.dense_index.get(t).copied().flatten(),
    ) {
        (Some(g), Some(i)) => Ok((g, i)),
        _ => Err(Error::input(Some(t), "the table is not a dense table")),
    }
}

/// Parameter `name` read back (logical layout, row-major).
pub(super) fn parameter(net: &Net, name: &str) -> Result<Vec<f32>> {
    if let Some((t, part)) = parse_qr(name) {
        let q = qr_tables(net, t)?;
        return q.group.table(q.index(t)?, part);
    }
    match parse_name(name) {
        Param::Dense(t) => {
            let (g, i) = dense_table(net, t)?;
            g.table(i)
        }
        Param::Core(t, k) => {
            let (p, i) = tt_table(net, t)?;
            p.table_core(i, k).map_err(|e| e.with_table(t))
        }
        Param::MdRows(t) => {
            let (md, i) = md_table(net, t)?;
            md.rows(i).map_err(|e| e.with_table(t))
        }
        Param::Mlp(n) => net.arena.get(n),
    }
}

/// Replaces parameter `name` (logical layout); the shape must match.
pub(super) fn set_parameter(net: &mut Net, name: &str, values: &[f32]) -> Result<()> {
    if let Some((t, part)) = parse_qr(name) {
        let j = qr_tables(net, t)?.index(t)?;
        let q = net.qr.as_mut().expect("QR tables");
        return q
            .group
            .set_table(j, part, values)
            .map_err(|e| e.with_table(t));
    }
    match parse_name(name) {
        Param::Dense(t) => {
            let i = dense_table(net, t)?.1;
            net.dense
                .as_mut()
                .expect("dense group")
                .set_table(i, values)
        }
        Param::Core(t, k) => {
            let i = tt_table(net, t)?.1;
            let (g, _) = net.tt_of[t].expect("a TT table");
            net.tt[g]
                .params
                .set_table_core(i, k, values)
                .map_err(|e| e.with_table(t))
        }
        Param::MdRows(t) => {
            let i = md_table(net, t)?.1;
            let md = net.md.as_mut().expect("MD tables");
            md.set_rows(i, values).map_err(|e| e.with_table(t))
        }
        Param::Mlp(n) => net.arena.set(n, values),
    }
}

/// The gradient of parameter `name` in the last training step (`last_dense`: None before any);
/// dense for every kind (for a dense table, rows that were not looked up are zero).
pub(super) fn gradient(
    net: &Net,
    name: &str,
    last_dense: Option<LastDenseStep>,
    last_md: Option<LastMdStep>,
) -> Result<Vec<f32>> {
    match parse_name(name) {
        Param::Dense(t) => {
            let (g, i) = dense_table(net, t)?;
            let last = last_dense.ok_or_else(|| Error::input(None, "no training step yet"))?;
            let b = last.ids[0].len();
            let offsets: Vec<u32> = (0..=b as u32).collect();
            let bags: Vec<Bags> = last.ids.iter().map(|v| Bags::new(v, &offsets)).collect();
            last.lookups.table_grad(g, &bags, i)
        }
        Param::Core(t, k) => {
            let (p, i) = tt_table(net, t)?;
            p.table_grad(i, k).map_err(|e| e.with_table(t))
        }
        Param::MdRows(t) => {
            let (md, i) = md_table(net, t)?;
            let last = last_md.ok_or_else(|| Error::input(None, "no training step yet"))?;
            let b = last.ids[0].len();
            let offsets: Vec<u32> = (0..=b as u32).collect();
            let bags: Vec<Bags> = last.ids.iter().map(|v| Bags::new(v, &offsets)).collect();
            last.lookups.rows_grad(md, &bags, i)
        }
        Param::Mlp(n) => net.arena.grad(n),
    }
}

/// The QR tables, when model table `t` is one of them.
fn qr_tables(net: &Net, t: usize) -> Result<&crate::dlrm::qr::QrTables> {
    net.qr
        .as_ref()
        .filter(|q| q.tables.contains(&t))
        .ok_or_else(|| Error::input(Some(t), "the table is not a quotient-remainder table"))
}

/// Number of parameters (values, not bytes): (MLPs, dense, QR and MD tables (MD rows and
/// projections), TT cores).
pub(super) fn parameter_counts(net: &Net) -> (u64, u64, u64) {
    let md = net.md.as_ref().map_or(0, |m| m.num_params());
    let md_proj = net.md.as_ref().map_or(0, |m| {
        (0..m.specs().len())
            .map(|i| m.projection(i).len() as u64)
            .sum::<u64>()
    });
    let mlp = net.arena.num_params() as u64 - md_proj;
    let dense = net.dense.as_ref().map_or(0, |d| d.num_params())
        + net.qr.as_ref().map_or(0, |q| q.group.num_params())
        + md;
    let tt = net.tt.iter().map(|g| g.params.num_params() as u64).sum();
    (mlp, dense, tt)
}
