//! dlrm's mixed-dimension embedding tables (`PrEmbeddingBag`, Ginart et al. 2019): a table of
//! N rows of its own width m < D, pooled per bag (sum), then projected to D by a bias-free
//! linear layer: `out = pooled W^T`, W `[D, m]`.
//!
//! The rows of every MD table of one width live in one [`DenseBagGroup`] (its sharding, its
//! fused sparse update), stored at their own width (widths that are not a multiple of 4 run the
//! group's scalar kernels): N x m values per table, as dlrm stores them. The projections are
//! matrices of the model's [`ParamArena`], so the arena's optimizer and finiteness check cover
//! them (the arena pads a matrix's rows to multiples of 4 with zeros that stay zero).
//!
//! Per step, group by group: pool into a scratch E `[tables, B, m]`, transpose it to
//! `[tables, m, B]` (the products contract their operands' rows), then per table
//! `out_t = E_t W_t^T`. Backward: dout transposed once, then per table `dW_t = dout_t^T E_t`
//! and `dE_t = dout_t W_t`, and the group's fused backward and update from dE.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder, PlanInput};
use crate::kernels::matmul::{record_gemm, record_weight_grad, Gemm, GemmVariant, WeightGrad};
use crate::kernels::tt::record_transpose;
use crate::kernels::MatrixAt;
use crate::nn::embedding::{check_bags, dlrm_uniform_bound};
use crate::nn::{ArenaLayout, ArenaTensor, DenseBagGroup, DenseBagLookups, ParamArena};
use crate::tt::{Bags, Optimizer};

/// One MD table as declared: its name prefix (`emb_l.{t}`), the table number its errors name,
/// rows and width m.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdTableSpec {
    pub prefix: String,
    pub table: usize,
    pub rows: u64,
    pub dim: usize,
}

/// The MD tables of one width m.
#[derive(Debug)]
pub struct MdGroup {
    pub rows: DenseBagGroup,
    pub width: usize,
    /// Positions (in the declared list) of the members, in group order.
    pub members: Vec<usize>,
}

/// Every MD table of a model: rows by width, projections in the arena.
pub struct MdTables {
    specs: Vec<MdTableSpec>,
    /// Embedding dimension D (the projections' outputs).
    out_dim: usize,
    /// Per table: its projection W `[D, m]` in the arena.
    proj: Vec<ArenaTensor>,
    pub groups: Vec<MdGroup>,
    /// Per table: (group, position in the group).
    place: Vec<(usize, usize)>,
}

impl std::fmt::Debug for MdTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdTables")
            .field("specs", &self.specs)
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// The projection's name: `{prefix}.proj.weight` (dlrm's PrEmbeddingBag `proj`).
pub fn proj_name(prefix: &str) -> String {
    format!("{prefix}.proj.weight")
}
/// The rows' name: `{prefix}.embs.weight`.
pub fn rows_name(prefix: &str) -> String {
    format!("{prefix}.embs.weight")
}

/// The MD tables' projections, declared in a layout before the arena exists.
#[derive(Debug)]
pub struct MdDecl {
    specs: Vec<MdTableSpec>,
    out_dim: usize,
    proj: Vec<ArenaTensor>,
}

impl MdTables {
    /// Declares the projections of `specs` (each `[D, m]`, m in 1..D) in `layout`.
    pub fn declare(layout: &mut ArenaLayout, specs: &[MdTableSpec], d: usize) -> Result<MdDecl> {
        for (i, s) in specs.iter().enumerate() {
            if s.dim == 0 || s.dim >= d || s.rows == 0 {
                return Err(Error::shape(
                    None,
                    format!(
                        "{}: a mixed-dimension table needs rows > 0 and a width in 1..{d}, got {} x {} (table {i} of the MD tables)",
                        s.prefix, s.rows, s.dim
                    ),
                ));
            }
        }
        let proj = specs
            .iter()
            .map(|s| layout.add_matrix(&proj_name(&s.prefix), d, s.dim))
            .collect();
        Ok(MdDecl {
            specs: specs.to_vec(),
            out_dim: d,
            proj,
        })
    }

    /// The tables of `decl` on the GPU. With `seed`, initialised as dlrm does: rows
    /// U(-sqrt(1/N), sqrt(1/N)) (table i from `seed + 2 i`), projections xavier-uniform
    /// U(-a, a), a = sqrt(6 / (m + D)) (from `seed + 2 i + 1`); without, all zero (to be loaded).
    pub fn new(
        gpu: &Gpu,
        decl: MdDecl,
        arena: &mut ParamArena,
        optimizer: Optimizer,
        seed: Option<u64>,
        max_shard_bytes: Option<u64>,
    ) -> Result<Self> {
        let mut widths: Vec<usize> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut place = Vec::with_capacity(decl.specs.len());
        for (i, s) in decl.specs.iter().enumerate() {
            let w = s.dim;
            let gi = match widths.iter().position(|&x| x == w) {
                Some(gi) => gi,
                None => {
                    widths.push(w);
                    members.push(Vec::new());
                    widths.len() - 1
                }
            };
            place.push((gi, members[gi].len()));
            members[gi].push(i);
        }
        let groups = widths
            .into_iter()
            .zip(members)
            .map(|(w, members)| {
                let rows: Vec<u64> = members.iter().map(|&i| decl.specs[i].rows).collect();
                Ok(MdGroup {
                    rows: DenseBagGroup::empty_any_width(
                        gpu,
                        w,
                        &rows,
                        optimizer,
                        max_shard_bytes,
                    )?,
                    width: w,
                    members,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut md = MdTables {
            specs: decl.specs,
            out_dim: decl.out_dim,
            proj: decl.proj,
            groups,
            place,
        };
        if let Some(seed) = seed {
            for i in 0..md.specs.len() {
                let (rows, proj) = md.initial(i, seed);
                md.set_rows(i, &rows)?;
                arena.set(&md.proj[i].name, &proj)?;
            }
        }
        Ok(md)
    }

    /// dlrm's initial rows `[N, m]` and projection `[D, m]` of table `i`.
    fn initial(&self, i: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let s = &self.specs[i];
        let bound = dlrm_uniform_bound(s.rows);
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(2 * i as u64));
        let rows = (0..s.rows as usize * s.dim)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = (6.0 / (s.dim + self.out_dim) as f64).sqrt() as f32;
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(2 * i as u64 + 1));
        let proj = (0..self.out_dim * s.dim)
            .map(|_| rng.random_range(-a..a))
            .collect();
        (rows, proj)
    }

    pub fn specs(&self) -> &[MdTableSpec] {
        &self.specs
    }
    /// Table `i`'s projection tensor in the arena.
    pub fn projection(&self, i: usize) -> &ArenaTensor {
        &self.proj[i]
    }
    /// Values of the tables' rows and projections (logical, without padding).
    pub fn num_params(&self) -> u64 {
        self.specs
            .iter()
            .map(|s| (s.rows + self.out_dim as u64) * s.dim as u64)
            .sum()
    }
    /// Bytes the rows take on the GPU (N x m f32 per table), without optimizer state.
    pub fn stored_row_bytes(&self) -> u64 {
        self.specs.iter().map(|s| s.rows * s.dim as u64 * 4).sum()
    }

    fn check(&self, i: usize) -> Result<&MdTableSpec> {
        self.specs
            .get(i)
            .ok_or_else(|| Error::input(None, format!("MD table {i} of {}", self.specs.len())))
    }

    /// Table `i`'s rows `[N, m]`.
    pub fn rows(&self, i: usize) -> Result<Vec<f32>> {
        self.check(i)?;
        let (gi, at) = self.place[i];
        self.groups[gi].rows.table(at)
    }

    /// Replaces table `i`'s rows (`[N, m]`, finite).
    pub fn set_rows(&mut self, i: usize, values: &[f32]) -> Result<()> {
        let s = self.check(i)?.clone();
        let name = rows_name(&s.prefix);
        if values.len() as u64 != s.rows * s.dim as u64 {
            return Err(Error::input(
                Some(s.table),
                format!(
                    "{name}: {} values for a table of {} x {}",
                    values.len(),
                    s.rows,
                    s.dim
                ),
            ));
        }
        if let Some(k) = values.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                Some(s.table),
                format!(
                    "{name}: value {} at row {}, column {} is not finite",
                    values[k],
                    k / s.dim,
                    k % s.dim
                ),
            ));
        }
        let (gi, at) = self.place[i];
        self.groups[gi].rows.set_table(at, values)
    }

    /// Changes the rows' learning rate (the projections' is the arena's).
    pub fn set_learning_rate(&mut self, lr: f32) {
        for g in &mut self.groups {
            g.rows.set_learning_rate(lr);
        }
    }
}

/// Where one batch's lookups of every MD group live in a plan (pooled into scratch E, bag b of
/// group table j at `[j, b, :]`).
#[derive(Debug, Clone)]
pub struct MdLookups {
    pub batch: usize,
    groups: Vec<DenseBagLookups>,
}

/// The scratch one forward leaves for the backward: each group's pooled E `[tables, B, m]`.
#[derive(Debug, Clone)]
pub struct MdSaved {
    pooled: Vec<Buf>,
}

/// Where the projected vectors go: table i's bag b at `buf[b * stride + cols[i]]`.
#[derive(Debug, Clone)]
pub struct MdOut<'a> {
    pub buf: &'a Buf,
    pub stride: usize,
    pub cols: &'a [usize],
}

impl MdLookups {
    /// Declares the inputs of `batch` bags per table with up to `lookups_per_table * batch`
    /// lookups per table. `one_hot`: every bag is one lookup (DLRM; only the counts change);
    /// `pieces`: the GPU class's backward in pieces.
    pub fn declare(
        g: &mut GraphBuilder,
        md: &MdTables,
        batch: usize,
        lookups_per_table: usize,
        one_hot: bool,
        pieces: bool,
        tag: &str,
    ) -> Result<Self> {
        let groups = md
            .groups
            .iter()
            .enumerate()
            .map(|(gi, grp)| {
                let n = grp.members.len();
                let cols: Vec<usize> = (0..n).map(|j| j * batch * grp.width).collect();
                let mut lk = DenseBagLookups::declare(
                    g,
                    &grp.rows,
                    batch,
                    n * batch * lookups_per_table,
                    grp.width,
                    &cols,
                    &format!("{tag} group {gi}"),
                )?;
                if one_hot {
                    lk = lk.assume_one_hot();
                }
                if pieces {
                    lk = lk.use_pieces(g, &grp.rows);
                }
                Ok(lk)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MdLookups { batch, groups })
    }

    /// Checks and lays out `bags` (one per MD table, in declared order) into `input`.
    pub fn fill(&self, input: &mut PlanInput, md: &MdTables, bags: &[Bags]) -> Result<()> {
        if bags.len() != md.specs.len() {
            return Err(Error::input(
                None,
                format!("{} batches for {} MD tables", bags.len(), md.specs.len()),
            ));
        }
        for (grp, lk) in md.groups.iter().zip(&self.groups) {
            for &i in &grp.members {
                let s = &md.specs[i];
                check_bags(&bags[i], s.rows).map_err(|e| e.with_table(s.table))?;
            }
            let mine: Vec<Bags> = grp.members.iter().map(|&i| bags[i]).collect();
            lk.validate(&grp.rows, &mine)?;
            lk.fill(input, &grp.rows, &mine)?;
        }
        Ok(())
    }

    /// Adds the forward: pooling, transposition, projection of every table into `out`.
    pub fn record_forward(
        &self,
        g: &mut GraphBuilder,
        md: &MdTables,
        arena: &ParamArena,
        out: &MdOut,
        variant: GemmVariant,
    ) -> Result<MdSaved> {
        let b = self.batch;
        let mut pooled = Vec::with_capacity(md.groups.len());
        for (gi, (grp, lk)) in md.groups.iter().zip(&self.groups).enumerate() {
            let (n, w) = (grp.members.len(), grp.width);
            let bytes = (n * b * w) as u64 * 4;
            let e = g.transient(&format!("md group {gi} pooled"), bytes);
            lk.record_forward(g, &grp.rows, e.clone())?;
            let e_t = g.transient(&format!("md group {gi} pooled transposed"), bytes);
            record_transpose(
                g,
                format!("md group {gi} transpose"),
                e.clone(),
                e_t.clone(),
                n,
                b,
                w,
            )?;
            for (j, &i) in grp.members.iter().enumerate() {
                record_gemm(
                    g,
                    format!("md table {i} projection"),
                    &Gemm {
                        m: b,
                        n: md.out_dim,
                        k: w,
                        a: MatrixAt {
                            buf: e_t.clone(),
                            stride: b,
                            offset: j * w * b,
                        },
                        b: arena.weight_t_at(&md.proj[i]),
                        c: Some(MatrixAt {
                            buf: out.buf.clone(),
                            stride: out.stride,
                            offset: out.cols[i],
                        }),
                        ct: None,
                        bias: None,
                        relu: false,
                        mask: None,
                    },
                    variant,
                )?;
            }
            pooled.push(e);
        }
        Ok(MdSaved { pooled })
    }

    /// Adds the backward from `dout` (the layout of the forward's `out`): the projections'
    /// gradients into the arena's gradients (their update is the arena's), and the rows'
    /// fused backward and update.
    pub fn record_backward(
        &self,
        g: &mut GraphBuilder,
        md: &MdTables,
        arena: &ParamArena,
        dout: &MdOut,
        saved: &MdSaved,
        variant: GemmVariant,
    ) -> Result<()> {
        let b = self.batch;
        let d = md.out_dim;
        // dout transposed once: [B, stride] -> [stride, B].
        let dout_t = g.transient("md dout transposed", (b * dout.stride) as u64 * 4);
        record_transpose(
            g,
            "md dout transpose".into(),
            dout.buf.clone(),
            dout_t.clone(),
            1,
            b,
            dout.stride,
        )?;
        for (gi, ((grp, lk), e)) in md
            .groups
            .iter()
            .zip(&self.groups)
            .zip(&saved.pooled)
            .enumerate()
        {
            let (n, w) = (grp.members.len(), grp.width);
            let de = g.transient(&format!("md group {gi} dE"), (n * b * w) as u64 * 4);
            for (j, &i) in grp.members.iter().enumerate() {
                let proj = &md.proj[i];
                record_weight_grad(
                    g,
                    format!("md table {i} projection grad"),
                    &WeightGrad {
                        m: d,
                        n: w,
                        k: b,
                        a: MatrixAt {
                            buf: dout.buf.clone(),
                            stride: dout.stride,
                            offset: dout.cols[i],
                        },
                        b: MatrixAt {
                            buf: e.clone(),
                            stride: w,
                            offset: j * b * w,
                        },
                        c: arena.grad_at(proj),
                        bias_grad: None,
                    },
                    variant,
                )?;
                record_gemm(
                    g,
                    format!("md table {i} pooled grad"),
                    &Gemm {
                        m: b,
                        n: w,
                        k: d,
                        a: MatrixAt {
                            buf: dout_t.clone(),
                            stride: b,
                            offset: dout.cols[i] * b,
                        },
                        b: arena.weight_at(proj),
                        c: Some(MatrixAt {
                            buf: de.clone(),
                            stride: w,
                            offset: j * b * w,
                        }),
                        ct: None,
                        bias: None,
                        relu: false,
                        mask: None,
                    },
                    variant,
                )?;
            }
            lk.record_backward(g, &grp.rows, de)?;
        }
        Ok(())
    }

    /// The dense gradient `[N, m]` of MD table `i`'s rows from the last backward of `bags`
    /// (the batch that was filled, one per MD table). For tests and small tables.
    pub fn rows_grad(&self, md: &MdTables, bags: &[Bags], i: usize) -> Result<Vec<f32>> {
        md.check(i)?;
        let (gi, at) = md.place[i];
        let grp = &md.groups[gi];
        let mine: Vec<Bags> = grp.members.iter().map(|&i| bags[i]).collect();
        self.groups[gi].table_grad(&grp.rows, &mine, at)
    }

    /// Adds the finiteness checks of the rows the backward updated, group by group, shard by
    /// shard, with codes counting down from `first_code`; returns the next free code.
    pub fn record_finite_checks(
        &self,
        g: &mut GraphBuilder,
        md: &MdTables,
        step: &Buf,
        stats: &Buf,
        first_code: u32,
    ) -> Result<u32> {
        let mut code = first_code;
        for (grp, lk) in md.groups.iter().zip(&self.groups) {
            lk.record_finite_check(g, &grp.rows, step, stats, code)?;
            code -= grp.rows.num_shards() as u32;
        }
        Ok(code)
    }
}

/// Names of the regions [`MdLookups::record_finite_checks`] checks, in code order.
pub fn finite_region_names(md: &MdTables) -> Vec<String> {
    md.groups
        .iter()
        .enumerate()
        .flat_map(|(gi, grp)| {
            (0..grp.rows.num_shards()).map(move |s| {
                format!(
                    "the updated rows of MD group {gi} (width {}) shard {s}",
                    grp.width
                )
            })
        })
        .collect()
}
