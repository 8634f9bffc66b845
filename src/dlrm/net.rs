//! The network of a DLRM as one value ([`Net`]): its MLPs and their parameter arena, the dense
//! tables (one sharded group) and the TT tables (grouped by core shape), with where each model
//! table lives. Built here from a config; read by the step recording (`step`), the batch inputs
//! (`inputs`) and the state dict (`state_dict`), which take it as an explicit part, so that none
//! of them reaches back into `Dlrm` (no import cycle).

use crate::dlrm::config::{DlrmConfig, DlrmOptions, TableKind};
use crate::dlrm::md::{md_specs, MD_SEED};
use crate::dlrm::qr::QrTables;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::matmul::GemmVariant;
use crate::nn::md::MdTables;
use crate::nn::{ArenaLayout, DenseBagGroup, Mlp, ParamArena};
use crate::tt::{init_cores, Optimizer, Pooling, TtKernels, TtOptions, TtParams, TtShape};

/// TT tables stored as one (see [`TtParams::group_from_cores`]).
pub(super) struct TtGroup {
    pub(super) params: TtParams,
    /// Model table of each group table, in order.
    pub(super) tables: Vec<usize>,
}

/// A DLRM's layers and parameters on the GPU (no run state: plans and statistics live in
/// `Dlrm`).
pub(super) struct Net {
    pub(super) gpu: Gpu,
    pub(super) config: DlrmConfig,
    pub(super) variant: GemmVariant,
    pub(super) arena: ParamArena,
    pub(super) bottom: Mlp,
    pub(super) top: Mlp,
    pub(super) dense: Option<DenseBagGroup>,
    /// Per model table: its index in the dense group (None for TT tables).
    pub(super) dense_index: Vec<Option<usize>>,
    /// TT tables with the same cores, column factors and ranks, stored (and run) as one group.
    pub(super) tt: Vec<TtGroup>,
    /// Per model table: its TT group and position in it (None for dense tables).
    pub(super) tt_of: Vec<Option<(usize, usize)>>,
    /// dlrm's quotient-remainder tables, as one group (None without any).
    pub(super) qr: Option<QrTables>,
    /// The mixed-dimension tables (rows by width; projections in `arena`), if any.
    pub(super) md: Option<MdTables>,
    /// Per model table: its index among the MD tables.
    pub(super) md_index: Vec<Option<usize>>,
}

/// Where the model's tables go: the dense tables' rows, and the TT tables grouped by (column
/// factors, ranks), since a group runs in shared dispatches.
struct TablePlacement {
    dense_rows: Vec<u64>,
    dense_index: Vec<Option<usize>>,
    /// Per TT group: its (model table, shape) members.
    groups: Vec<Vec<(usize, TtShape)>>,
    tt_of: Vec<Option<(usize, usize)>>,
}

fn place_tables(config: &DlrmConfig) -> Result<TablePlacement> {
    let mut dense_rows = Vec::new();
    let mut dense_index = Vec::new();
    // (column factors, ranks) of each group, beside its members.
    let mut keys: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    let mut groups: Vec<Vec<(usize, TtShape)>> = Vec::new();
    let mut tt_of = vec![None; config.tables.len()];
    for (t, table) in config.tables.iter().enumerate() {
        if matches!(table.kind, TableKind::Qr { .. } | TableKind::Md { .. }) {
            // Built apart: `QrTables` and `nn::md` (see `md_specs`).
            dense_index.push(None);
            continue;
        }
        match config.tt_shape(t)? {
            None => {
                dense_index.push(Some(dense_rows.len()));
                dense_rows.push(table.rows);
            }
            Some(shape) => {
                dense_index.push(None);
                let gi = match keys
                    .iter()
                    .position(|(q, r)| *q == shape.q && *r == shape.ranks)
                {
                    Some(i) => i,
                    None => {
                        keys.push((shape.q.clone(), shape.ranks.clone()));
                        groups.push(Vec::new());
                        groups.len() - 1
                    }
                };
                tt_of[t] = Some((gi, groups[gi].len()));
                groups[gi].push((t, shape));
            }
        }
    }
    Ok(TablePlacement {
        dense_rows,
        dense_index,
        groups,
        tt_of,
    })
}

/// One TT group of `members` (model table, shape), each table drawn as if alone from its own
/// seed (`init`) or zero.
fn build_tt_group(
    gpu: &Gpu,
    config: &DlrmConfig,
    options: &DlrmOptions,
    members: Vec<(usize, TtShape)>,
    optimizer: Optimizer,
    init: bool,
) -> Result<TtGroup> {
    let cache = match &options.tt_cache {
        Some(c) => {
            let rows: u64 = members.iter().map(|(_, s)| s.num_embeddings).sum();
            Some(
                c.config(rows, members.len())
                    .map_err(|e| e.with_table(members[0].0))?,
            )
        }
        None => None,
    };
    let opts = TtOptions {
        pooling: Pooling::Sum,
        optimizer,
        init: config.tt_init,
        seed: config.seed,
        kernels: Some(
            options
                .tt_kernels
                .unwrap_or_else(|| TtKernels::for_class(options.kernels.resolve(gpu))),
        ),
        cache,
        precision: options.tt_precision,
        ..TtOptions::default()
    };
    let cores: Vec<Vec<Vec<f32>>> = members
        .iter()
        .map(|(t, shape)| {
            if init {
                init_cores(
                    shape,
                    config.tt_init,
                    config.seed.wrapping_add(1000 + *t as u64),
                )
            } else {
                (0..shape.d())
                    .map(|k| vec![0.0; shape.core_len(k)])
                    .collect()
            }
        })
        .collect();
    let tables: Vec<usize> = members.iter().map(|(t, _)| *t).collect();
    let shapes: Vec<TtShape> = members.into_iter().map(|(_, s)| s).collect();
    let params = TtParams::group_from_cores(gpu, shapes, &cores, opts)
        .map_err(|e| e.with_table(tables[0]))?;
    Ok(TtGroup { params, tables })
}

impl Net {
    /// The network of `config` (validated by the caller), initialised as dlrm does from
    /// `config.seed` when `init`, else every parameter zero (to be loaded).
    pub(super) fn build(
        gpu: &Gpu,
        config: DlrmConfig,
        options: &DlrmOptions,
        init: bool,
    ) -> Result<Self> {
        let opt = options.optimizer.at(config.learning_rate);
        let mut layout = ArenaLayout::default();
        let bottom = Mlp::declare(&mut layout, "bot_l", &config.bottom_mlp, true)?;
        let top = Mlp::declare(&mut layout, "top_l", &config.top_widths(), false)?;
        let (specs, md_index) = md_specs(&config);
        // The MD projections follow the MLPs in the arena (none: the arena is unchanged).
        let md_decl = (!specs.is_empty())
            .then(|| MdTables::declare(&mut layout, &specs, config.dim()))
            .transpose()?;
        let mut arena = ParamArena::new(gpu, layout, opt)?;
        if init {
            bottom.init(&mut arena, config.seed)?;
            top.init(&mut arena, config.seed ^ 0x5bd1_e995)?;
        }
        let placement = place_tables(&config)?;
        let tt = placement
            .groups
            .into_iter()
            .map(|members| build_tt_group(gpu, &config, options, members, opt, init))
            .collect::<Result<Vec<_>>>()?;
        let dense_rows = &placement.dense_rows;
        let dense = if dense_rows.is_empty() {
            None
        } else if init {
            Some(DenseBagGroup::new(
                gpu,
                config.dim(),
                dense_rows,
                opt,
                config.seed.wrapping_add(7),
                options.max_shard_bytes,
            )?)
        } else {
            Some(DenseBagGroup::empty(
                gpu,
                config.dim(),
                dense_rows,
                opt,
                options.max_shard_bytes,
            )?)
        };
        let qr = QrTables::build(gpu, &config, opt, init, options.max_shard_bytes)?;
        let md = match md_decl {
            Some(decl) => Some(MdTables::new(
                gpu,
                decl,
                &mut arena,
                opt,
                init.then(|| config.seed.wrapping_add(MD_SEED)),
                options.max_shard_bytes,
            )?),
            None => None,
        };
        let variant = options
            .gemm
            .unwrap_or_else(|| GemmVariant::for_class(options.kernels.resolve(gpu)));
        Ok(Net {
            gpu: gpu.clone(),
            config,
            variant,
            arena,
            bottom,
            top,
            dense,
            dense_index: placement.dense_index,
            tt,
            tt_of: placement.tt_of,
            qr,
            md,
            md_index,
        })
    }

    /// Column of table `t`'s pooled vector in a row of T (the bottom output is column 0).
    pub(super) fn slot_col(&self, t: usize) -> usize {
        (t + 1) * self.config.dim()
    }
    /// Values in one row of T: (tables + 1) vectors of D.
    pub(super) fn t_stride(&self) -> usize {
        self.config.vectors() * self.config.dim()
    }
    /// Column in T of each MD table, in MD order.
    pub(super) fn md_cols(&self) -> Vec<usize> {
        (0..self.config.tables.len())
            .filter(|&t| self.md_index[t].is_some())
            .map(|t| self.slot_col(t))
            .collect()
    }
    /// Column in T of each dense table, in dense-group order.
    pub(super) fn dense_col_offsets(&self) -> Vec<usize> {
        (0..self.config.tables.len())
            .filter(|&t| self.dense_index[t].is_some())
            .map(|t| self.slot_col(t))
            .collect()
    }

    /// Changes the learning rate of every parameter (takes effect at the next step).
    pub(super) fn set_learning_rate(&mut self, lr: f32) {
        self.config.learning_rate = lr;
        self.arena.set_learning_rate(lr);
        if let Some(d) = &mut self.dense {
            d.set_learning_rate(lr);
        }
        for g in &mut self.tt {
            g.params.set_learning_rate(lr);
        }
        if let Some(q) = &mut self.qr {
            q.group.set_learning_rate(lr);
        }
        if let Some(md) = &mut self.md {
            md.set_learning_rate(lr);
        }
    }
}
