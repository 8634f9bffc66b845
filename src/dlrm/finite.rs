//! The per-step finiteness checks of a DLRM's parameters, recorded at the end of its training
//! plan (after every update): the MLPs' parameter arena, every TT group's cores and cached rows
//! whole, and of the dense tables only the rows the step updated (the others did not change). Each region
//! has a code, counting down in this order from the number of regions, so the slot's word
//! (see [`crate::kernels::finite`]) names the first region with a non-finite value. The
//! functions take the model's parts, not the model (no `impl Dlrm` here).

use crate::error::Result;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::finite::{record_finite_span_as, FiniteRegion};
use crate::nn::md::{finite_region_names, MdLookups, MdTables};
use crate::nn::{DenseBagGroup, DenseBagLookups, ParamArena};
use crate::tt::{CorePrecision, TtParams};

/// The regions checked, in code order (the first has the highest code).
pub(super) fn region_names(
    tt: &[&TtParams],
    dense: Option<&DenseBagGroup>,
    qr: Option<&DenseBagGroup>,
    md: Option<&MdTables>,
) -> Vec<String> {
    let mut names = vec!["the MLPs' parameters".to_string()];
    for (g, params) in tt.iter().enumerate() {
        for k in 0..params.shape().d() {
            names.push(format!("core {k} of TT group {g}"));
        }
        if params.cache().is_some() {
            names.push(format!("the cached rows of TT group {g}"));
        }
    }
    if let Some(group) = dense {
        for s in 0..group.num_shards() {
            names.push(format!("the updated rows of dense-table shard {s}"));
        }
    }
    if let Some(group) = qr {
        for s in 0..group.num_shards() {
            names.push(format!("the updated rows of quotient-remainder shard {s}"));
        }
    }
    if let Some(md) = md {
        names.extend(finite_region_names(md));
    }
    names
}

/// The code of the MLPs' parameters (the first region), for the check fused into their update
/// ([`crate::nn::ParamArena::record_update_checked`]).
pub(super) fn mlp_code(
    tt: &[&TtParams],
    dense: Option<&DenseBagGroup>,
    qr: Option<&DenseBagGroup>,
    md: Option<&MdTables>,
) -> u32 {
    region_names(tt, dense, qr, md).len() as u32
}

/// The region with `code`, if any (0: none).
pub(super) fn region_of(code: u32, names: &[String]) -> Option<String> {
    let i = (names.len() as u32).checked_sub(code)?;
    names.get(i as usize).cloned().filter(|_| code > 0)
}

/// Records every check into `g`: `step` is the plan's step uniform, `stats` the ring. The MLPs'
/// parameters are skipped when `mlp_checked` (their update checked them, one pass fewer).
#[allow(clippy::too_many_arguments)]
pub(super) fn record_checks(
    g: &mut GraphBuilder,
    step: &Buf,
    stats: &Buf,
    arena: &ParamArena,
    tt: &[&TtParams],
    dense: Option<(&DenseBagGroup, &DenseBagLookups)>,
    qr: Option<(&DenseBagGroup, &DenseBagLookups)>,
    md: Option<(&MdTables, &MdLookups)>,
    mlp_checked: bool,
) -> Result<()> {
    let regions = region_names(
        tt,
        dense.map(|(group, _)| group),
        qr.map(|(group, _)| group),
        md.map(|(m, _)| m),
    )
    .len() as u32;
    let mut code = regions;
    let gpu = g.gpu().clone();
    // `halves`: the buffer holds f16 values (TT cores stored as f16), two per word.
    let span =
        |g: &mut GraphBuilder, label: String, buffer: &wgpu::Buffer, code: u32, halves: bool| {
            let len = (buffer.size() / 4) as usize;
            let region = gpu.uniform(&format!("{label} region"), 32);
            gpu.write(
                &region,
                &[FiniteRegion {
                    offset: 0,
                    len: len as u32,
                    code,
                    ..FiniteRegion::default()
                }],
            );
            record_finite_span_as(
                g,
                label,
                len,
                step.clone(),
                Buf::from(&region),
                Buf::from(buffer),
                stats.clone(),
                halves,
            )
        };
    if !mlp_checked {
        span(g, "finite mlp".into(), arena.params_buffer(), code, false)?;
    }
    code -= 1;
    for (gi, params) in tt.iter().enumerate() {
        for k in 0..params.shape().d() {
            span(
                g,
                format!("finite tt group {gi} core {k}"),
                params.core_buffer(k),
                code,
                params.precision() == CorePrecision::F16,
            )?;
            code -= 1;
        }
        if let Some(cache) = params.cache() {
            span(
                g,
                format!("finite tt group {gi} cache"),
                &cache.values,
                code,
                cache.precision == CorePrecision::F16,
            )?;
            code -= 1;
        }
    }
    if let Some((group, lookups)) = dense {
        lookups.record_finite_check(g, group, step, stats, code)?;
        code -= group.num_shards() as u32;
    }
    if let Some((group, lookups)) = qr {
        lookups.record_finite_check(g, group, step, stats, code)?;
        code -= group.num_shards() as u32;
    }
    if let Some((md, lookups)) = md {
        lookups.record_finite_checks(g, md, step, stats, code)?;
    }
    Ok(())
}
