//! Uncompressed embedding tables (EmbeddingBag, sum pooling) as one group: the tables share a row
//! space (table t's row i is group row `base_t + i`) cut into shards of at most one storage
//! binding, so tables of any size, and many small ones, cost one dispatch per shard per pass
//! (FBGEMM's table-batched embedding, in WGSL). Forward pools into a caller's matrix; backward
//! reduces each distinct row's lookups in order and applies the fused sparse update (SGD or
//! Adagrad) to that row only.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder, PlanInput};
use crate::kernels::embedding::{
    cut_bag_pieces, record_bag_bwd, record_bag_bwd_combine, record_bag_bwd_pieces, record_bag_fwd,
    BagGroupShape, ShardAt,
};
use crate::kernels::finite::{record_finite_rows, FiniteRegion};
use crate::kernels::optim::UpdateKind;
use crate::kernels::MatrixAt;
use crate::nn::row_sort::sort_by_row;
use crate::tt::{Bags, Optimizer};

/// One shard of the group's rows.
struct Shard {
    lo: u64,
    rows: u64,
    weight: wgpu::Buffer,
    state: wgpu::Buffer,
}

/// Several uncompressed tables of one embedding dimension, on the GPU.
pub struct DenseBagGroup {
    gpu: Gpu,
    dim: usize,
    rows: Vec<u64>,
    bases: Vec<u64>,
    shards: Vec<Shard>,
    optimizer: Optimizer,
    opt_params: wgpu::Buffer,
}

impl std::fmt::Debug for DenseBagGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseBagGroup")
            .field("dim", &self.dim)
            .field("rows", &self.rows)
            .field("shards", &self.shards.len())
            .field("optimizer", &self.optimizer)
            .finish()
    }
}

/// dlrm's initialisation of a table of `rows` rows: U(-1/sqrt(rows), 1/sqrt(rows)).
pub fn dlrm_uniform_bound(rows: u64) -> f32 {
    (1.0 / (rows as f64).sqrt()) as f32
}

impl DenseBagGroup {
    /// Tables of `rows[t]` rows of `dim` values (a multiple of 4), initialised as dlrm does
    /// (U(-1/sqrt(N), 1/sqrt(N)), table t from its own stream of `seed`). `max_shard_bytes`
    /// caps a shard below the adapter's binding limit (None: the limit itself).
    pub fn new(
        gpu: &Gpu,
        dim: usize,
        rows: &[u64],
        optimizer: Optimizer,
        seed: u64,
        max_shard_bytes: Option<u64>,
    ) -> Result<Self> {
        let group = Self::empty(gpu, dim, rows, optimizer, max_shard_bytes)?;
        // Generate table by table into one shard image at a time: host memory stays at a shard.
        let mut shard = 0;
        let mut image: Vec<f32> = Vec::new();
        for (t, &n) in rows.iter().enumerate() {
            let bound = dlrm_uniform_bound(n);
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t as u64 + 1)),
            );
            for _ in 0..n {
                for _ in 0..dim {
                    image.push(rng.random_range(-bound..bound));
                }
                if image.len() as u64 == group.shards[shard].rows * dim as u64 {
                    gpu.write(&group.shards[shard].weight, &image);
                    image.clear();
                    shard += 1;
                }
            }
        }
        group.write_opt_params();
        Ok(group)
    }

    /// Tables with all-zero rows (to be set with [`DenseBagGroup::set_table`]); D a multiple
    /// of 4 (the vec4 kernels).
    pub fn empty(
        gpu: &Gpu,
        dim: usize,
        rows: &[u64],
        optimizer: Optimizer,
        max_shard_bytes: Option<u64>,
    ) -> Result<Self> {
        if dim == 0 || !dim.is_multiple_of(4) {
            return Err(Error::shape(
                None,
                format!("dense embedding tables need D a multiple of 4, got {dim}"),
            ));
        }
        Self::empty_any_width(gpu, dim, rows, optimizer, max_shard_bytes)
    }

    /// [`DenseBagGroup::empty`] of any width: widths that are not a multiple of 4 run the
    /// scalar kernels (dlrm's mixed-dimension tables, `nn::md`).
    pub fn empty_any_width(
        gpu: &Gpu,
        dim: usize,
        rows: &[u64],
        optimizer: Optimizer,
        max_shard_bytes: Option<u64>,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::shape(None, "dense embedding tables need D > 0"));
        }
        if let Some(t) = rows.iter().position(|&n| n == 0) {
            return Err(Error::shape(Some(t), "a dense table has 0 rows"));
        }
        let row_bytes = dim as u64 * 4;
        let cap = max_shard_bytes
            .unwrap_or(u64::MAX)
            .min(gpu.max_binding())
            .min(gpu.limits().max_buffer_size);
        let shard_rows = (cap / row_bytes).min(u32::MAX as u64 / 2);
        if shard_rows == 0 {
            return Err(Error::shape(
                None,
                format!("a row of {row_bytes} bytes does not fit one storage binding"),
            ));
        }
        let mut bases = Vec::with_capacity(rows.len());
        let mut total = 0u64;
        for &n in rows {
            bases.push(total);
            total += n;
        }
        if total > u32::MAX as u64 {
            return Err(Error::shape(
                None,
                format!("{total} rows in one group; at most 2^32 - 1"),
            ));
        }
        let adagrad = matches!(optimizer, Optimizer::Adagrad { .. });
        let mut shards = Vec::new();
        let mut lo = 0;
        while lo < total {
            let n = shard_rows.min(total - lo);
            let bytes = n * row_bytes;
            shards.push(Shard {
                lo,
                rows: n,
                weight: gpu.storage(&format!("dense rows {lo}.."), bytes),
                state: if adagrad {
                    gpu.storage(&format!("dense state {lo}.."), bytes)
                } else {
                    gpu.storage("dense state (unused)", 16)
                },
            });
            lo += n;
        }
        let group = DenseBagGroup {
            gpu: gpu.clone(),
            dim,
            rows: rows.to_vec(),
            bases,
            shards,
            optimizer,
            opt_params: gpu.uniform("dense opt", 16),
        };
        group.write_opt_params();
        Ok(group)
    }

    fn write_opt_params(&self) {
        self.gpu
            .write(&self.opt_params, &[self.optimizer.params(0)]);
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Rows of each table.
    pub fn table_rows(&self) -> &[u64] {
        &self.rows
    }
    pub fn num_tables(&self) -> usize {
        self.rows.len()
    }
    /// Number of shards (dispatches per pass).
    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }
    /// Parameters of all tables.
    pub fn num_params(&self) -> u64 {
        self.rows.iter().sum::<u64>() * self.dim as u64
    }
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    /// Changes the learning rate of the fused update (takes effect at the next submit).
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.optimizer.set_learning_rate(lr);
        self.write_opt_params();
    }

    /// Calls `f(shard, first row of the range in the shard, range of group rows)` for the
    /// pieces of group rows [lo, lo + n).
    fn for_pieces(&self, lo: u64, n: u64, mut f: impl FnMut(&Shard, u64, std::ops::Range<u64>)) {
        for s in &self.shards {
            let a = lo.max(s.lo);
            let b = (lo + n).min(s.lo + s.rows);
            if a < b {
                f(s, a - s.lo, a..b);
            }
        }
    }

    fn check_table(&self, t: usize) -> Result<()> {
        if t >= self.rows.len() {
            return Err(Error::input(
                None,
                format!("table {t} of a group of {}", self.rows.len()),
            ));
        }
        Ok(())
    }

    /// Table `t`'s rows, `[N, D]` row-major.
    pub fn table(&self, t: usize) -> Result<Vec<f32>> {
        self.read_rows(t, false)
    }

    /// Table `t`'s Adagrad state (None for other optimizers).
    pub fn table_state(&self, t: usize) -> Result<Option<Vec<f32>>> {
        if !matches!(self.optimizer, Optimizer::Adagrad { .. }) {
            return Ok(None);
        }
        self.read_rows(t, true).map(Some)
    }

    fn read_rows(&self, t: usize, state: bool) -> Result<Vec<f32>> {
        self.check_table(t)?;
        let d = self.dim as u64;
        let mut out = Vec::with_capacity((self.rows[t] * d) as usize);
        let mut err = None;
        self.for_pieces(self.bases[t], self.rows[t], |s, at, range| {
            let buf = if state { &s.state } else { &s.weight };
            match self.gpu.read_f32(
                buf,
                (at * d) as usize,
                ((range.end - range.start) * d) as usize,
            ) {
                Ok(v) => out.extend_from_slice(&v),
                Err(e) => err = Some(e),
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Replaces table `t`'s rows (`[N, D]`, finite).
    pub fn set_table(&mut self, t: usize, values: &[f32]) -> Result<()> {
        self.write_rows(t, values, false)
    }

    /// Replaces table `t`'s Adagrad state (resuming).
    pub fn set_table_state(&mut self, t: usize, values: &[f32]) -> Result<()> {
        if !matches!(self.optimizer, Optimizer::Adagrad { .. }) {
            return Err(Error::input(
                Some(t),
                "optimizer state given for a table whose optimizer keeps none (not Adagrad)",
            ));
        }
        self.write_rows(t, values, true)
    }

    fn write_rows(&mut self, t: usize, values: &[f32], state: bool) -> Result<()> {
        self.check_table(t)?;
        let d = self.dim as u64;
        let want = (self.rows[t] * d) as usize;
        if values.len() != want {
            return Err(Error::input(
                Some(t),
                format!(
                    "{} values for a table of {} x {}",
                    values.len(),
                    self.rows[t],
                    self.dim
                ),
            ));
        }
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                Some(t),
                format!(
                    "value {} at row {}, column {} is not finite",
                    values[i],
                    i / self.dim,
                    i % self.dim
                ),
            ));
        }
        let base = self.bases[t];
        self.for_pieces(base, self.rows[t], |s, at, range| {
            let from = ((range.start - base) * d) as usize;
            let to = ((range.end - base) * d) as usize;
            let buf = if state { &s.state } else { &s.weight };
            self.gpu
                .queue()
                .write_buffer(buf, at * d * 4, bytemuck::cast_slice(&values[from..to]));
        });
        Ok(())
    }
}

/// Where one batch's lookups of a group live in a plan, and where their pooled rows go.
#[derive(Debug, Clone)]
pub struct DenseBagLookups {
    pub nnz_cap: usize,
    pub bags: usize,
    /// The longest bag and the most lookups of one row a batch may have (the counts).
    bag_run: usize,
    row_run: usize,
    out_stride: usize,
    col_off: Vec<usize>,
    col_off_buf: wgpu::Buffer,
    offsets: Buf,
    rows: Buf,
    segs: Buf,
    dest: Buf,
    seg_grad: wgpu::Buffer,
    /// The GPU class's backward in pieces ([`Self::use_pieces`]).
    pieces: Option<BagPieces>,
    tag: String,
}

/// The inputs and scratch of the backward in pieces: each piece's first sorted lookup, each
/// segment's first piece, the pieces' sums.
#[derive(Debug, Clone)]
struct BagPieces {
    cuts: Buf,
    seg_pieces: Buf,
    partial: Buf,
}

/// A batch of a group laid out for the kernels (host side).
#[derive(Debug, Default)]
struct HostLookups {
    offsets: Vec<u32>,
    rows: Vec<u32>,
    segs: Vec<u32>,
    dest: Vec<u32>,
    /// Group row of each segment (distinct row), in order.
    seg_rows: Vec<u32>,
}

impl DenseBagLookups {
    /// Declares the inputs of `bags` bags per table with up to `nnz_cap` lookups over all
    /// tables. Bag b of table t is pooled into row b of `out` at column `col_offsets[t]`
    /// (`out.stride` and every column offset a multiple of 4 where the width is; `out.offset` 0).
    pub fn declare(
        g: &mut GraphBuilder,
        group: &DenseBagGroup,
        bags: usize,
        nnz_cap: usize,
        out_stride: usize,
        col_offsets: &[usize],
        tag: &str,
    ) -> Result<Self> {
        if col_offsets.len() != group.num_tables() {
            return Err(Error::shape(
                None,
                format!(
                    "{} output columns for {} dense tables",
                    col_offsets.len(),
                    group.num_tables()
                ),
            ));
        }
        // The vec4 kernels write whole vec4s; the scalar ones (widths not a multiple of 4) any column.
        let vec4 = group.dim.is_multiple_of(4);
        if vec4
            && (!out_stride.is_multiple_of(4) || col_offsets.iter().any(|c| !c.is_multiple_of(4)))
        {
            return Err(Error::shape(
                None,
                "dense tables pool into columns at multiples of 4",
            ));
        }
        let nnz_cap = nnz_cap.max(1);
        let t = group.num_tables();
        let col_u32: Vec<u32> = col_offsets.iter().map(|&c| c as u32).collect();
        let u32s = |n: usize| n as u64 * 4;
        Ok(DenseBagLookups {
            nnz_cap,
            bags,
            bag_run: nnz_cap,
            row_run: nnz_cap,
            out_stride,
            col_off: col_offsets.to_vec(),
            col_off_buf: g.gpu().storage_from(&format!("{tag} columns"), &col_u32),
            offsets: g.input(&format!("{tag} offsets"), u32s(t * (bags + 1))),
            rows: g.input(&format!("{tag} rows"), u32s(nnz_cap)),
            segs: g.input(&format!("{tag} segments"), u32s(2 * (nnz_cap + 1))),
            dest: g.input(&format!("{tag} destinations"), u32s(nnz_cap)),
            seg_grad: g.gpu().storage(
                &format!("{tag} row grads"),
                (nnz_cap * group.dim) as u64 * 4,
            ),
            pieces: None,
            tag: tag.to_string(),
        })
    }

    /// Runs the backward as pieces (the GPU class): each row's lookups cut into pieces of at
    /// most [`crate::kernels::embedding::BAG_PIECE`], summed in parallel and combined in order,
    /// so that a hot row is not one long serial sum. Declares the pieces' inputs and scratch.
    pub fn use_pieces(mut self, g: &mut GraphBuilder, group: &DenseBagGroup) -> Self {
        let dim = group.dim;
        let words = |n: usize| n as u64 * 4;
        self.pieces = Some(BagPieces {
            cuts: g.input(&format!("{} piece cuts", self.tag), words(self.nnz_cap + 1)),
            seg_pieces: g.input(
                &format!("{} segment pieces", self.tag),
                words(self.nnz_cap + 1),
            ),
            partial: g.transient(
                &format!("{} piece sums", self.tag),
                words(self.nnz_cap * dim),
            ),
        });
        self
    }

    /// The plan takes one lookup per bag (DLRM's one-hot features): only the kernels' counts
    /// change (a row sees at most one lookup per bag of its table).
    pub fn assume_one_hot(mut self) -> Self {
        self.bag_run = 1;
        self.row_run = self.bags.min(self.nnz_cap);
        self
    }

    fn shape(&self, group: &DenseBagGroup) -> BagGroupShape {
        BagGroupShape {
            dim: group.dim,
            tables: group.num_tables(),
            bags: self.bags,
            lookups: self.nnz_cap,
            bag_run: self.bag_run,
            row_run: self.row_run,
        }
    }

    fn shard_at(s: &Shard) -> ShardAt {
        ShardAt {
            lo: s.lo as usize,
            rows: s.rows as usize,
            weight: Buf::from(&s.weight),
            state: Buf::from(&s.state),
        }
    }

    /// Adds the forward: every shard's rows pooled into `out` (the buffer whose layout was
    /// declared).
    pub fn record_forward(
        &self,
        g: &mut GraphBuilder,
        group: &DenseBagGroup,
        out: Buf,
    ) -> Result<()> {
        let out = MatrixAt {
            buf: out,
            stride: self.out_stride,
            offset: 0,
        };
        for (i, s) in group.shards.iter().enumerate() {
            record_bag_fwd(
                g,
                format!("{} shard {i} pool", self.tag),
                self.shape(group),
                self.offsets.clone(),
                self.rows.clone(),
                Buf::from(&self.col_off_buf),
                &Self::shard_at(s),
                &out,
                i > 0,
            )?;
        }
        Ok(())
    }

    /// Adds the backward with the fused update: `dout` has the output's layout.
    pub fn record_backward(
        &self,
        g: &mut GraphBuilder,
        group: &DenseBagGroup,
        dout: Buf,
    ) -> Result<()> {
        let kind = match group.optimizer {
            Optimizer::None => {
                return Err(Error::input(
                    None,
                    "dense tables train with a fused update; Optimizer::None has none",
                ))
            }
            Optimizer::Sgd { .. } => UpdateKind::Sgd,
            Optimizer::Adagrad { .. } => UpdateKind::Adagrad,
        };
        if let Some(p) = &self.pieces {
            return self.record_backward_pieces(g, group, dout, kind, p);
        }
        for (i, s) in group.shards.iter().enumerate() {
            record_bag_bwd(
                g,
                format!("{} shard {i} update", self.tag),
                group.dim,
                self.nnz_cap,
                kind,
                Buf::from(&group.opt_params),
                self.segs.clone(),
                self.dest.clone(),
                dout.clone(),
                &Self::shard_at(s),
                Buf::from(&self.seg_grad),
                self.row_run,
            )?;
        }
        Ok(())
    }

    fn record_backward_pieces(
        &self,
        g: &mut GraphBuilder,
        group: &DenseBagGroup,
        dout: Buf,
        kind: UpdateKind,
        p: &BagPieces,
    ) -> Result<()> {
        record_bag_bwd_pieces(
            g,
            format!("{} pieces", self.tag),
            group.dim,
            self.nnz_cap,
            p.cuts.clone(),
            self.dest.clone(),
            dout,
            p.partial.clone(),
        )?;
        for (i, s) in group.shards.iter().enumerate() {
            record_bag_bwd_combine(
                g,
                format!("{} shard {i} update", self.tag),
                group.dim,
                self.nnz_cap,
                kind,
                Buf::from(&group.opt_params),
                self.segs.clone(),
                p.seg_pieces.clone(),
                p.partial.clone(),
                &Self::shard_at(s),
                Buf::from(&self.seg_grad),
                self.row_run,
            )?;
        }
        Ok(())
    }

    /// Adds the per-step finiteness check of the rows the backward updated, shard by shard:
    /// shard i raises the step's non-finite word of `stats` to `first_code - i` (see
    /// `shaders/finite.wgsl`); `step` is the plan's step uniform.
    pub fn record_finite_check(
        &self,
        g: &mut GraphBuilder,
        group: &DenseBagGroup,
        step: &Buf,
        stats: &Buf,
        first_code: u32,
    ) -> Result<()> {
        for (i, s) in group.shards.iter().enumerate() {
            let region = g
                .gpu()
                .uniform(&format!("{} shard {i} finite", self.tag), 32);
            g.gpu().write(
                &region,
                &[FiniteRegion {
                    offset: s.lo as u32,
                    len: s.rows as u32,
                    code: first_code - i as u32,
                    dim: group.dim as u32,
                    segments: self.nnz_cap as u32,
                    ..FiniteRegion::default()
                }],
            );
            record_finite_rows(
                g,
                format!("{} shard {i} finite", self.tag),
                self.nnz_cap,
                group.dim,
                step.clone(),
                Buf::from(&region),
                self.segs.clone(),
                Buf::from(&s.weight),
                stats.clone(),
            )?;
        }
        Ok(())
    }

    /// Checks `bags` (one per table) against the group and this plan: bag count, offsets, ids
    /// in range. Errors name the table, position and value.
    pub fn validate(&self, group: &DenseBagGroup, bags: &[Bags]) -> Result<()> {
        if bags.len() != group.num_tables() {
            return Err(Error::input(
                None,
                format!(
                    "{} batches for {} dense tables",
                    bags.len(),
                    group.num_tables()
                ),
            ));
        }
        let mut nnz = 0;
        for (t, b) in bags.iter().enumerate() {
            if b.num_bags() != self.bags {
                return Err(Error::input(
                    Some(t),
                    format!("{} bags; this plan takes {}", b.num_bags(), self.bags),
                ));
            }
            check_bags(b, group.rows[t]).map_err(|e| e.with_table(t))?;
            nnz += b.nnz();
        }
        if nnz > self.nnz_cap {
            return Err(Error::input(
                None,
                format!(
                    "{nnz} lookups over the dense tables; this plan takes {}",
                    self.nnz_cap
                ),
            ));
        }
        Ok(())
    }

    fn lay_out(&self, group: &DenseBagGroup, bags: &[Bags]) -> HostLookups {
        let t_count = group.num_tables();
        let mut h = HostLookups {
            offsets: Vec::with_capacity(t_count * (self.bags + 1)),
            ..Default::default()
        };
        let mut lookups: Vec<(u32, u32)> = Vec::new(); // (group row, position)
        let mut dest_of = Vec::new();
        for (t, b) in bags.iter().enumerate() {
            let start = h.rows.len() as u32;
            for i in 0..=self.bags {
                h.offsets.push(start + b.offsets.get(i) as u32);
            }
            for bag in 0..self.bags {
                let (lo, hi) = (b.offsets.get(bag) as usize, b.offsets.get(bag + 1) as usize);
                for n in lo..hi {
                    let row = (group.bases[t] + b.indices.get(n) as u64) as u32;
                    lookups.push((row, h.rows.len() as u32));
                    h.rows.push(row);
                    dest_of.push((bag * self.out_stride + self.col_off[t]) as u32);
                }
            }
        }
        sort_by_row(&mut lookups);
        let nnz = lookups.len() as u32;
        h.dest = lookups.iter().map(|&(_, n)| dest_of[n as usize]).collect();
        for (s, &(row, _)) in lookups.iter().enumerate() {
            if s == 0 || lookups[s - 1].0 != row {
                h.segs.push(s as u32);
                h.segs.push(row);
                h.seg_rows.push(row);
            }
        }
        // Unused segments start (and end) at the lookup count.
        while h.segs.len() < 2 * (self.nnz_cap + 1) {
            h.segs.push(nnz);
            h.segs.push(0);
        }
        h
    }

    /// Lays validated `bags` out into the plan's `input` (host work: the stable sort of the
    /// lookups by row, O(nnz log nnz)).
    pub fn fill(&self, input: &mut PlanInput, group: &DenseBagGroup, bags: &[Bags]) -> Result<()> {
        let h = self.lay_out(group, bags);
        input.write(&self.offsets, &h.offsets)?;
        input.write(&self.rows, &h.rows)?;
        input.write(&self.segs, &h.segs)?;
        input.write(&self.dest, &h.dest)?;
        if let Some(p) = &self.pieces {
            let starts: Vec<u32> = (0..h.seg_rows.len()).map(|u| h.segs[2 * u]).collect();
            let nnz = h.rows.len() as u32;
            let (cuts, seg_pieces) = cut_bag_pieces(&starts, nnz, self.nnz_cap, self.nnz_cap);
            input.write(&p.cuts, &cuts)?;
            input.write(&p.seg_pieces, &seg_pieces)?;
        }
        Ok(())
    }

    /// The dense gradient of table `t` (`[N, D]`) from the last backward of `bags` (the batch
    /// that was filled): read back from the per-row gradients the kernel keeps. For tests and
    /// small tables.
    pub fn table_grad(&self, group: &DenseBagGroup, bags: &[Bags], t: usize) -> Result<Vec<f32>> {
        group.check_table(t)?;
        let h = self.lay_out(group, bags);
        let d = group.dim;
        let seg_grad = group
            .gpu
            .read_f32(&self.seg_grad, 0, h.seg_rows.len() * d)?;
        let mut out = vec![0f32; group.rows[t] as usize * d];
        let (base, n) = (group.bases[t], group.rows[t]);
        for (u, &row) in h.seg_rows.iter().enumerate() {
            let row = row as u64;
            if row >= base && row < base + n {
                let r = (row - base) as usize;
                out[r * d..(r + 1) * d].copy_from_slice(&seg_grad[u * d..(u + 1) * d]);
            }
        }
        Ok(out)
    }
}

/// Offsets well formed and ids below `rows`; errors name the position and value.
pub fn check_bags(b: &Bags, rows: u64) -> Result<()> {
    let no = b.offsets.len();
    if no == 0 || b.offsets.get(0) != 0 {
        return Err(Error::input(None, "offsets must start with 0"));
    }
    for i in 1..no {
        if b.offsets.get(i) < b.offsets.get(i - 1) {
            return Err(Error::input(
                None,
                format!(
                    "offsets decrease at position {i}: {} then {}",
                    b.offsets.get(i - 1),
                    b.offsets.get(i)
                ),
            ));
        }
    }
    if b.offsets.get(no - 1) != b.nnz() as i64 {
        return Err(Error::input(
            None,
            format!(
                "the last offset is {} but there are {} indices",
                b.offsets.get(no - 1),
                b.nnz()
            ),
        ));
    }
    if b.weights.is_some() {
        return Err(Error::input(
            None,
            "dense tables take no per-sample weights",
        ));
    }
    for i in 0..b.nnz() {
        let v = b.indices.get(i);
        if v < 0 || v as u64 >= rows {
            return Err(Error::input(
                None,
                format!("index {v} at position {i} is out of range; the table has {rows} rows (0..{rows})"),
            ));
        }
    }
    Ok(())
}
