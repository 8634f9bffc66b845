//! dlrm's quotient-remainder embeddings (`QREmbeddingBag`, mode sum) as one group: every QR
//! table is two uncompressed tables, the quotient table (ceil(N / c) rows, looked up at id / c)
//! and the remainder table (c rows, at id % c), each `part` wide, held together in one
//! [`DenseBagGroup`] (QR table j's quotient table is group table 2j, its remainder 2j + 1).
//! Forward: both parts pooled by the dense-table kernels into a scratch matrix E, then combined
//! into the caller's slots (`shaders/qr.wgsl`: mult, add or concat). Backward: the combination's
//! gradient onto E's layout (dE), then the group's fused sparse backward and update.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder, PlanInput};
use crate::kernels::qr::{record_qr_combine, record_qr_split, QrMeta, QrOp, QrShape};
use crate::nn::embedding::check_bags;
use crate::nn::{DenseBagGroup, DenseBagLookups};
use crate::tt::{Bags, Optimizer};

/// One QR table: `rows` ids split by `collisions`, combined by `op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QrTableSpec {
    pub rows: u64,
    pub collisions: u64,
    pub op: QrOp,
}

impl QrTableSpec {
    /// Rows of the quotient table (dlrm: ceil(rows / collisions)).
    pub fn quotient_rows(&self) -> u64 {
        self.rows.div_ceil(self.collisions)
    }
}

/// Which of a QR table's two tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrPart {
    Quotient,
    Remainder,
}

/// QR tables of one embedding dimension, on the GPU.
#[derive(Debug)]
pub struct QrBagGroup {
    group: DenseBagGroup,
    specs: Vec<QrTableSpec>,
    dim: usize,
    part: usize,
}

/// dlrm's `QREmbeddingBag.reset_parameters`: `nn.init.uniform_(w, np.sqrt(1 / N))`, whose
/// second argument is uniform_'s LOWER bound `a` (b keeps its default 1): U(sqrt(1/N), 1) for
/// both tables, N the QR table's full row count. Kept as dlrm has it, since dlrm's published QR
/// results come from it (every initial value positive, none near 0).
pub fn qr_init_range(rows: u64) -> (f32, f32) {
    ((1.0 / rows as f64).sqrt() as f32, 1.0)
}

impl QrBagGroup {
    /// The tables of `specs` at embedding dimension `dim` (each part `dim`, or `dim / 2` for
    /// concat: every table of a group needs the same part width), initialised as dlrm does from
    /// `seed` (group table i from its own stream), or zero without a seed (to be loaded).
    pub fn new(
        gpu: &Gpu,
        dim: usize,
        specs: &[QrTableSpec],
        optimizer: Optimizer,
        seed: Option<u64>,
        max_shard_bytes: Option<u64>,
    ) -> Result<Self> {
        let part_of = |s: &QrTableSpec| match s.op {
            QrOp::Concat => dim / 2,
            _ => dim,
        };
        let part = specs.first().map_or(dim, part_of);
        for (j, s) in specs.iter().enumerate() {
            if s.collisions == 0 || s.rows == 0 {
                return Err(Error::shape(
                    Some(j),
                    format!(
                        "a QR table needs rows and collisions of at least 1 (rows {}, collisions {})",
                        s.rows, s.collisions
                    ),
                ));
            }
            if part_of(s) != part {
                return Err(Error::shape(
                    Some(j),
                    "QR tables of one model share their part width: concat (D/2) cannot be mixed with mult or add (D)",
                ));
            }
        }
        let rows: Vec<u64> = specs
            .iter()
            .flat_map(|s| [s.quotient_rows(), s.collisions])
            .collect();
        let mut group = DenseBagGroup::empty(gpu, part, &rows, optimizer, max_shard_bytes)?;
        if let Some(seed) = seed {
            for (i, &n) in rows.iter().enumerate() {
                let (lo, hi) = qr_init_range(specs[i / 2].rows);
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)),
                );
                let values: Vec<f32> = (0..n as usize * part)
                    .map(|_| {
                        if lo < hi {
                            rng.random_range(lo..hi)
                        } else {
                            hi
                        }
                    })
                    .collect();
                group.set_table(i, &values)?;
            }
        }
        Ok(QrBagGroup {
            group,
            specs: specs.to_vec(),
            dim,
            part,
        })
    }

    pub fn group(&self) -> &DenseBagGroup {
        &self.group
    }
    pub fn specs(&self) -> &[QrTableSpec] {
        &self.specs
    }
    pub fn num_tables(&self) -> usize {
        self.specs.len()
    }
    /// Values of each output slot (D).
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Values of each part's rows.
    pub fn part(&self) -> usize {
        self.part
    }
    pub fn num_params(&self) -> u64 {
        self.group.num_params()
    }
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.group.set_learning_rate(lr);
    }

    fn index(&self, j: usize, part: QrPart) -> Result<usize> {
        if j >= self.specs.len() {
            return Err(Error::input(
                None,
                format!("QR table {j} of a group of {}", self.specs.len()),
            ));
        }
        Ok(2 * j + (part == QrPart::Remainder) as usize)
    }

    /// QR table `j`'s `part` table, `[rows, part]` row-major.
    pub fn table(&self, j: usize, part: QrPart) -> Result<Vec<f32>> {
        self.group.table(self.index(j, part)?)
    }

    /// Replaces QR table `j`'s `part` table (`[rows, part]`, finite).
    pub fn set_table(&mut self, j: usize, part: QrPart, values: &[f32]) -> Result<()> {
        let i = self.index(j, part)?;
        self.group.set_table(i, values)
    }

    /// The Adagrad state of QR table `j`'s `part` table (None for other optimizers).
    pub fn table_state(&self, j: usize, part: QrPart) -> Result<Option<Vec<f32>>> {
        self.group.table_state(self.index(j, part)?)
    }
}

/// A batch's ids split for the group: per QR table, its quotient ids then its remainder ids
/// (group tables 2j and 2j + 1), all with the bags' offsets.
struct SplitIds {
    ids: Vec<Vec<i64>>,
}

impl SplitIds {
    fn new(qr: &QrBagGroup, bags: &[Bags]) -> Self {
        let mut ids = Vec::with_capacity(2 * bags.len());
        for (s, b) in qr.specs.iter().zip(bags) {
            let c = s.collisions as i64;
            let all: Vec<i64> = (0..b.nnz()).map(|n| b.indices.get(n)).collect();
            ids.push(all.iter().map(|v| v / c).collect());
            ids.push(all.iter().map(|v| v % c).collect());
        }
        SplitIds { ids }
    }
    fn bags<'a>(&'a self, bags: &[Bags<'a>]) -> Vec<Bags<'a>> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, v)| Bags::new(v, bags[i / 2].offsets))
            .collect()
    }
}

/// Where one batch's lookups of a [`QrBagGroup`] live in a plan: the parts' lookups (a
/// [`DenseBagLookups`] of the group), the scratch E and dE, and where each table's slot goes.
#[derive(Debug, Clone)]
pub struct QrLookups {
    lookups: DenseBagLookups,
    shape: QrShape,
    meta: wgpu::Buffer,
    e: Buf,
    de: Buf,
    tag: String,
}

impl QrLookups {
    /// Declares the inputs of `bags` bags per QR table with up to `nnz_cap` lookups over all
    /// QR tables. Bag b of table j is combined into row b of `out` at column `col_offsets[j]`
    /// (D values; `out_stride` values per row).
    pub fn declare(
        g: &mut GraphBuilder,
        qr: &QrBagGroup,
        bags: usize,
        nnz_cap: usize,
        out_stride: usize,
        col_offsets: &[usize],
        tag: &str,
    ) -> Result<Self> {
        let q = qr.num_tables();
        if col_offsets.len() != q {
            return Err(Error::shape(
                None,
                format!("{} output columns for {q} QR tables", col_offsets.len()),
            ));
        }
        let part = qr.part;
        let e_stride = 2 * q * part;
        let e_cols: Vec<usize> = (0..2 * q).map(|i| i * part).collect();
        let lookups = DenseBagLookups::declare(
            g,
            &qr.group,
            bags,
            2 * nnz_cap.max(1),
            e_stride,
            &e_cols,
            tag,
        )?;
        let meta: Vec<QrMeta> = qr
            .specs
            .iter()
            .zip(col_offsets)
            .enumerate()
            .map(|(j, (s, &c))| QrMeta {
                t_col: c as u32,
                e_col: (2 * j * part) as u32,
                op: s.op.code(),
                _pad: 0,
            })
            .collect();
        let e_bytes = (bags.max(1) * e_stride) as u64 * 4;
        Ok(QrLookups {
            lookups,
            shape: QrShape {
                tables: q,
                bags,
                dim: qr.dim,
                part,
                t_stride: out_stride,
                e_stride,
            },
            meta: g.gpu().storage_from(&format!("{tag} layout"), &meta),
            e: g.transient(&format!("{tag} pooled parts (E)"), e_bytes),
            de: g.transient(&format!("{tag} parts' gradients (dE)"), e_bytes),
            tag: tag.to_string(),
        })
    }

    /// One lookup per bag (DLRM's one-hot features): see [`DenseBagLookups::assume_one_hot`].
    pub fn assume_one_hot(mut self) -> Self {
        self.lookups = self.lookups.assume_one_hot();
        self
    }

    /// The backward in pieces (the GPU class): see [`DenseBagLookups::use_pieces`].
    pub fn use_pieces(mut self, g: &mut GraphBuilder, qr: &QrBagGroup) -> Self {
        self.lookups = self.lookups.use_pieces(g, &qr.group);
        self
    }

    /// The parts' lookups (the group's finiteness checks take them).
    pub fn part_lookups(&self) -> &DenseBagLookups {
        &self.lookups
    }

    /// Adds the forward: both parts pooled into E, combined into `out`'s slots.
    pub fn record_forward(&self, g: &mut GraphBuilder, qr: &QrBagGroup, out: Buf) -> Result<()> {
        self.lookups.record_forward(g, &qr.group, self.e.clone())?;
        record_qr_combine(
            g,
            format!("{} combine", self.tag),
            self.shape,
            Buf::from(&self.meta),
            self.e.clone(),
            out,
        )
    }

    /// Adds the backward with the fused update: `dout` has the output's layout.
    pub fn record_backward(&self, g: &mut GraphBuilder, qr: &QrBagGroup, dout: Buf) -> Result<()> {
        record_qr_split(
            g,
            format!("{} combine backward", self.tag),
            self.shape,
            Buf::from(&self.meta),
            self.e.clone(),
            dout,
            self.de.clone(),
        )?;
        self.lookups.record_backward(g, &qr.group, self.de.clone())
    }

    /// Checks `bags` (one per QR table): bag count, offsets, ids below the table's rows. Errors
    /// name the QR table (its index in the group), position and value.
    pub fn validate(&self, qr: &QrBagGroup, bags: &[Bags]) -> Result<()> {
        if bags.len() != qr.num_tables() {
            return Err(Error::input(
                None,
                format!("{} batches for {} QR tables", bags.len(), qr.num_tables()),
            ));
        }
        for (j, (b, s)) in bags.iter().zip(&qr.specs).enumerate() {
            if b.num_bags() != self.shape.bags {
                return Err(Error::input(
                    Some(j),
                    format!("{} bags; this plan takes {}", b.num_bags(), self.shape.bags),
                ));
            }
            check_bags(b, s.rows).map_err(|e| e.with_table(j))?;
        }
        let split = SplitIds::new(qr, bags);
        self.lookups.validate(&qr.group, &split.bags(bags))
    }

    /// Lays validated `bags` (one per QR table) out into the plan's `input`: each id split into
    /// its quotient and remainder lookups.
    pub fn fill(&self, input: &mut PlanInput, qr: &QrBagGroup, bags: &[Bags]) -> Result<()> {
        let split = SplitIds::new(qr, bags);
        self.lookups.fill(input, &qr.group, &split.bags(bags))
    }

    /// The dense gradients of QR table `j`'s quotient and remainder tables from the last
    /// backward of `bags` (the batch that was filled). For tests and small tables.
    pub fn table_grads(
        &self,
        qr: &QrBagGroup,
        bags: &[Bags],
        j: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let split = SplitIds::new(qr, bags);
        let parts = split.bags(bags);
        let q = self
            .lookups
            .table_grad(&qr.group, &parts, qr.index(j, QrPart::Quotient)?)?;
        let r = self
            .lookups
            .table_grad(&qr.group, &parts, qr.index(j, QrPart::Remainder)?)?;
        Ok((q, r))
    }
}
