//! TT-EmbeddingBag on the GPU, standalone: the table's state is a [`TtParams`], and each call
//! (forward, backward, or both) is a plan of its [`TtLookups`] built once per capacity and
//! replayed with one upload and one submit. Several tables run in one call through
//! [`TtTableBatch`]; a model records [`TtLookups`] into its own step instead.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder, Plan, PlanCache, PlanInput};
use crate::tt::lookups::{LookupSource, TtLookups};
use crate::tt::options::TtOptions;
use crate::tt::params::TtParams;
use crate::tt_bags::{Bags, Placement};
use crate::tt_shape::{Pooling, TtShape};

/// Call plans kept per table (or table batch): one per mode and capacities; a shape beyond
/// these drops them all (see [`PlanCache`]).
const PLANS_KEPT: usize = 8;

/// What a call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Forward,
    /// Recomputes the prefixes, then gradients and the fused update.
    Backward,
    /// Forward and backward sharing the prefixes, one submit.
    ForwardBackward,
}

impl Mode {
    fn forward_out(self) -> bool {
        matches!(self, Mode::Forward | Mode::ForwardBackward)
    }
    fn backward(self) -> bool {
        matches!(self, Mode::Backward | Mode::ForwardBackward)
    }
}

/// A TT-compressed embedding bag table on the GPU: `forward` pools rows of bags, `backward`
/// computes the dense core gradients (deterministically) and applies the fused update of
/// [`TtOptions::optimizer`]; `save`/`load` keep cores and Adagrad state
/// ([`crate::tt::checkpoint`]).
///
/// ```
/// use ttrec::gpu::Gpu;
/// use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};
///
/// let gpu = Gpu::new()?;
/// // 6 rows of 4 columns as 2 cores of rank 1: row (i0, i1) is the outer product of core 0's
/// // row i0 (q_0 = 2 values) and core 1's row i1 (q_1 = 2 values).
/// let shape = TtShape::new(6, &[2, 3], &[2, 2], &[1])?;
/// let cores = vec![
///     vec![1.0, 2.0, /* i0 = 1 */ 3.0, 4.0],
///     vec![1.0, 10.0, /* i1 = 1 */ 2.0, 20.0, /* i1 = 2 */ 3.0, 30.0],
/// ];
/// let options = TtOptions {
///     pooling: Pooling::Mean,
///     optimizer: Optimizer::Sgd { lr: 0.5 },
///     ..TtOptions::default()
/// };
/// let mut table = TtEmbeddingBag::from_cores(&gpu, shape, &cores, options)?;
/// // Row 5 = (i0 = 1, i1 = 2): (3, 4) x (3, 30). One bag of rows {5}, one of rows {0, 0}.
/// let (indices, offsets) = (vec![5i64, 0, 0], vec![0i64, 1, 3]);
/// let bags = Bags::new(&indices, &offsets);
/// let out = table.forward(&bags)?;
/// assert_eq!(out, [9.0, 90.0, 12.0, 120.0, /* row 0 */ 1.0, 10.0, 2.0, 20.0]);
///
/// // One SGD step on d(sum(grad_output * out)): only the rows looked up move.
/// table.backward(&bags, &[1.0; 8])?;
/// let after = table.cores()?;
/// assert_ne!(after[0], cores[0]);
/// assert_eq!(after[1][2..4], cores[1][2..4]); // core 1's row 1 was not used
///
/// // Checkpoints round-trip exactly.
/// let path = std::env::temp_dir().join(format!("ttrec-doc-{}.safetensors", std::process::id()));
/// table.save(&path)?;
/// let mut back = TtEmbeddingBag::load(&gpu, &path, table.options().clone())?;
/// assert_eq!(back.forward(&bags)?, table.forward(&bags)?);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), ttrec::Error>(())
/// ```
pub struct TtEmbeddingBag {
    params: TtParams,
    plans: PlanCache<(Mode, usize, usize), CallPlan>,
}

impl std::fmt::Debug for TtEmbeddingBag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtEmbeddingBag")
            .field("shape", self.params.shape())
            .field("options", self.params.options())
            .field("plans", &self.plans.len())
            .finish()
    }
}

/// One table's part of a call plan: its lookups, the pooled output and the uploaded gradient.
struct TableIo {
    lookups: TtLookups,
    out: wgpu::Buffer,
    dout: Option<Buf>,
}

/// A built call: its plan, its input image and each table's part.
struct CallPlan {
    plan: Plan,
    input: PlanInput,
    ios: Vec<TableIo>,
}

impl CallPlan {
    /// Builds the plan recorded in `g` for the tables' `ios`.
    fn build(g: GraphBuilder, ios: Vec<TableIo>) -> Result<Self> {
        let plan = g.build()?;
        let input = plan.new_input();
        Ok(CallPlan { plan, input, ios })
    }
}

fn capacity(n: usize) -> usize {
    n.max(64).next_power_of_two()
}

/// Records `mode` for one table into `g`: lookups declared as inputs, output into an owned
/// buffer, the output gradient as an input.
fn record_table(
    g: &mut GraphBuilder,
    params: &TtParams,
    mode: Mode,
    nnz_cap: usize,
    bag_cap: usize,
    tag: &str,
) -> Result<TableIo> {
    let dim = params.shape().dim();
    // Training steps (with a backward) count the lookups in the table's cache; a forward alone
    // (inference) does not.
    let source = LookupSource::for_table(params, mode.backward());
    let lookups = TtLookups::declare_with(g, params, nnz_cap, bag_cap, tag, source);
    let out = params
        .gpu()
        .storage(&format!("{tag} out"), (bag_cap * dim) as u64 * 4);
    let out_b = Buf::from(&out);
    let dout = mode
        .backward()
        .then(|| g.input(&format!("{tag} dout"), (bag_cap * dim) as u64 * 4));
    match mode {
        Mode::Forward => {
            lookups.record_forward(g, params, &out_b)?;
        }
        Mode::Backward => {
            lookups.record_backward(g, params, dout.as_ref().expect("dout"), None, true)?;
        }
        Mode::ForwardBackward => {
            lookups.record_forward_backward(
                g,
                params,
                &out_b,
                dout.as_ref().expect("dout"),
                true,
            )?;
        }
    }
    Ok(TableIo { lookups, out, dout })
}

/// Checks that `dout` holds `[B, D]` finite values for `bags`.
fn check_dout(shape: &TtShape, bags: &Bags, dout: &[f32]) -> Result<()> {
    let want = bags.num_bags() * shape.dim();
    if dout.len() != want {
        return Err(Error::input(
            None,
            format!(
                "grad_output has {} values; {} bags x D = {} needs {want}",
                dout.len(),
                bags.num_bags(),
                shape.dim()
            ),
        ));
    }
    if let Some(i) = dout.iter().position(|x| !x.is_finite()) {
        return Err(Error::input(
            None,
            format!("grad_output at position {i} is {}", dout[i]),
        ));
    }
    Ok(())
}

impl TableIo {
    /// Writes one table's batch (and output gradient) into the call's input image.
    fn fill(
        &self,
        input: &mut PlanInput,
        params: &TtParams,
        bags: &Bags,
        dout: Option<&[f32]>,
    ) -> Result<()> {
        self.lookups.fill(
            input,
            params,
            &[*bags],
            &Placement::dense(params.shape().dim()),
            params.options().pooling,
        )?;
        if let (Some(region), Some(dout)) = (&self.dout, dout) {
            input.write(region, dout)?;
        }
        Ok(())
    }
}

impl TtEmbeddingBag {
    /// A table of `shape` with cores drawn by `options.init`.
    pub fn new(gpu: &Gpu, shape: TtShape, options: TtOptions) -> Result<Self> {
        Ok(Self::from_params(TtParams::new(gpu, shape, options)?))
    }

    /// A table with the given cores (core k row-major `[p_k, R_k q_k R_{k+1}]`).
    pub fn from_cores(
        gpu: &Gpu,
        shape: TtShape,
        cores: &[Vec<f32>],
        options: TtOptions,
    ) -> Result<Self> {
        Ok(Self::from_params(TtParams::from_cores(
            gpu, shape, cores, options,
        )?))
    }

    /// A standalone table over existing parameters.
    pub fn from_params(params: TtParams) -> Self {
        TtEmbeddingBag {
            params,
            plans: PlanCache::new(PLANS_KEPT),
        }
    }

    /// The table's GPU state (cores, gradients, optimizer state).
    pub fn params(&self) -> &TtParams {
        &self.params
    }
    pub fn params_mut(&mut self) -> &mut TtParams {
        &mut self.params
    }
    /// Gives up the standalone plans and returns the parameters (to record them into a model).
    pub fn into_params(self) -> TtParams {
        self.params
    }
    pub fn shape(&self) -> &TtShape {
        self.params.shape()
    }
    pub fn options(&self) -> &TtOptions {
        self.params.options()
    }
    pub fn gpu(&self) -> &Gpu {
        self.params.gpu()
    }
    /// The GPU buffer of core k (for apps that bind it themselves).
    pub fn core_buffer(&self, k: usize) -> &wgpu::Buffer {
        self.params.core_buffer(k)
    }

    /// Changes the learning rate of the fused optimizer; the kind stays.
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.params.set_learning_rate(lr);
    }

    fn validate(&self, bags: &Bags, dout: Option<&[f32]>, mode: Mode) -> Result<()> {
        bags.validate(self.shape(), self.options().pooling)?;
        if let Some(dout) = dout {
            check_dout(self.shape(), bags, dout)?;
        } else if mode.backward() {
            return Err(Error::input(None, "a backward call needs grad_output"));
        }
        Ok(())
    }

    /// The plan for `mode` and the capacities of `bags` (built on first use), filled with
    /// `bags` and `dout`.
    fn prepared(
        &mut self,
        bags: &Bags,
        dout: Option<&[f32]>,
        mode: Mode,
    ) -> Result<(Mode, usize, usize)> {
        self.validate(bags, dout, mode)?;
        self.filled_plan(bags, dout, mode)
    }

    /// The plan for `mode` and the capacities of `bags` (built on first use), filled with
    /// `bags` and, where given, `dout`; the caller has validated both.
    fn filled_plan(
        &mut self,
        bags: &Bags,
        dout: Option<&[f32]>,
        mode: Mode,
    ) -> Result<(Mode, usize, usize)> {
        self.prepare(mode, bags.nnz(), bags.num_bags())?;
        let key = (mode, capacity(bags.nnz()), capacity(bags.num_bags()));
        let params = &self.params;
        let cp = self.plans.get_mut(&key).expect("plan built by prepare");
        cp.ios[0].fill(&mut cp.input, params, bags, dout)?;
        Ok(key)
    }

    /// Builds the plan of `mode` for calls of up to `nnz` lookups in `num_bags` bags ahead of
    /// use (its pipelines compiled), without running it: `ttrec kernels --export` lists them.
    pub fn prepare(&mut self, mode: Mode, nnz: usize, num_bags: usize) -> Result<()> {
        let key = (mode, capacity(nnz), capacity(num_bags));
        let params = &self.params;
        self.plans.get_or_build(key, || {
            let mut g = GraphBuilder::new(params.gpu());
            let io = record_table(&mut g, params, mode, key.1, key.2, "tt")?;
            CallPlan::build(g, vec![io])
        })?;
        Ok(())
    }

    /// The plan of `key`, built by [`Self::filled_plan`] in this call.
    fn plan(&self, key: &(Mode, usize, usize)) -> &CallPlan {
        self.plans.get(key).expect("plan built by filled_plan")
    }

    /// Validates the call, fills the plan for its capacities and replays it: one upload, one
    /// submit, no wait. Returns the plan's key.
    fn submit(
        &mut self,
        bags: &Bags,
        dout: Option<&[f32]>,
        mode: Mode,
    ) -> Result<(Mode, usize, usize)> {
        let key = self.prepared(bags, dout, mode)?;
        let cp = self.plan(&key);
        cp.plan.run_with(&cp.input)?;
        Ok(key)
    }

    fn call(&mut self, bags: &Bags, dout: Option<&[f32]>, mode: Mode) -> Result<Option<Vec<f32>>> {
        let key = self.submit(bags, dout, mode)?;
        if mode.backward() {
            // A training step: the cache refreshes when due (its own submit, after this one).
            self.params.cache_step()?;
        }
        if mode.forward_out() {
            let out = self.gpu().read_f32(
                &self.plan(&key).ios[0].out,
                0,
                bags.num_bags() * self.shape().dim(),
            )?;
            Ok(Some(out))
        } else {
            self.gpu().wait()?;
            Ok(None)
        }
    }

    /// Pooled rows of every bag, `[B, D]` row-major.
    pub fn forward(&mut self, bags: &Bags) -> Result<Vec<f32>> {
        Ok(self
            .call(bags, None, Mode::Forward)?
            .expect("forward output"))
    }

    /// Gradient of `sum(grad_output * forward(bags))` into the dense core gradients, then the
    /// fused update (if any). `grad_output` is `[B, D]`.
    pub fn backward(&mut self, bags: &Bags, grad_output: &[f32]) -> Result<()> {
        self.call(bags, Some(grad_output), Mode::Backward)
            .map(|_| ())
    }

    /// Forward and backward with update in one submit (the training step of a table alone);
    /// returns the forward output computed before the update.
    pub fn forward_backward(&mut self, bags: &Bags, grad_output: &[f32]) -> Result<Vec<f32>> {
        Ok(self
            .call(bags, Some(grad_output), Mode::ForwardBackward)?
            .expect("forward output"))
    }

    /// The GPU-resident forward for apps that keep the rows on the GPU: encodes the upload of
    /// `bags`, the forward and a copy of the `[B, D]` pooled rows into `out` (which needs
    /// `COPY_DST` and `B * D * 4` bytes) into the caller's `encoder`. Nothing runs until the
    /// caller submits it; no wait, no readback.
    pub fn forward_into(
        &mut self,
        bags: &Bags,
        out: &wgpu::Buffer,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<()> {
        let bytes = (bags.num_bags() * self.shape().dim()) as u64 * 4;
        check_target("out", out, bytes, wgpu::BufferUsages::COPY_DST)?;
        let key = self.prepared(bags, None, Mode::Forward)?;
        let cp = self.plan(&key);
        cp.plan.encode_with(encoder, &cp.input)?;
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(&cp.ios[0].out, 0, out, 0, bytes);
        }
        Ok(())
    }

    /// The GPU-resident backward (with the fused update): the output gradient `[B, D]` is read
    /// from the caller's `grad_output` buffer (`COPY_SRC`, at least `B * D * 4` bytes), all
    /// encoded into the caller's `encoder`. The gradient is not checked for finiteness (it never
    /// reaches the host).
    pub fn backward_from(
        &mut self,
        bags: &Bags,
        grad_output: &wgpu::Buffer,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<()> {
        let bytes = (bags.num_bags() * self.shape().dim()) as u64 * 4;
        check_target(
            "grad_output",
            grad_output,
            bytes,
            wgpu::BufferUsages::COPY_SRC,
        )?;
        bags.validate(self.shape(), self.options().pooling)?;
        // The plan's gradient region is left as it is: the copy below overwrites it.
        let key = self.filled_plan(bags, None, Mode::Backward)?;
        let cp = self.plan(&key);
        let dout = cp.ios[0].dout.as_ref().expect("backward plan has dout");
        cp.plan
            .encode_with_copies(encoder, &cp.input, &[(grad_output, dout, bytes)])?;
        // A training step: a due cache refresh goes into the same encoder, after it.
        self.params.cache_step_into(encoder)?;
        Ok(())
    }

    /// Runs the plan of `mode` for `bags` without reading anything back (benchmarks); a
    /// training step (with a backward) counts for the cache's refreshes as in the other calls.
    pub fn replay_only(
        &mut self,
        bags: &Bags,
        grad_output: Option<&[f32]>,
        mode: Mode,
    ) -> Result<()> {
        self.submit(bags, grad_output, mode)?;
        if mode.backward() {
            self.params.cache_step()?;
        }
        Ok(())
    }

    /// Per-node GPU times of the plan of `mode` for `bags` (needs timestamp queries).
    pub fn profile(
        &mut self,
        bags: &Bags,
        grad_output: Option<&[f32]>,
        mode: Mode,
    ) -> Result<Vec<crate::graph::NodeTime>> {
        let key = self.submit(bags, grad_output, mode)?;
        self.gpu().wait()?;
        self.plan(&key).plan.run_profiled()
    }

    /// The cores, read back.
    pub fn cores(&self) -> Result<Vec<Vec<f32>>> {
        self.params.cores()
    }
    /// The dense core gradients of the last backward.
    pub fn grads(&self) -> Result<Vec<Vec<f32>>> {
        self.params.grads()
    }
    /// The Adagrad accumulators (None for other optimizers).
    pub fn optimizer_state(&self) -> Result<Option<Vec<Vec<f32>>>> {
        self.params.optimizer_state()
    }
    /// Replaces the cores (and resets the optimizer state).
    pub fn set_cores(&mut self, cores: &[Vec<f32>]) -> Result<()> {
        self.params.set_cores(cores)
    }

    /// The full N x D matrix, computed on the GPU by the forward kernels; for small tables
    /// (at most 2^26 values).
    pub fn full_weight(&mut self) -> Result<Vec<f32>> {
        let n = self.shape().num_embeddings as usize;
        let dim = self.shape().dim();
        let total = n as u128 * dim as u128;
        if total > 1 << 26 {
            return Err(Error::input(
                None,
                format!("full_weight of {n} x {dim} is too large; it is meant for small tables"),
            ));
        }
        let idx: Vec<u32> = (0..n as u32).collect();
        let off: Vec<u32> = (0..=n as u32).collect();
        // Sum pooling with bags of one row is the row itself, whatever the table's pooling.
        let bags = Bags::new(&idx, &off);
        bags.validate(self.shape(), Pooling::Sum)?;
        let mut g = GraphBuilder::new(self.gpu());
        // The rows the table serves (cached ones from its cache), without counting.
        let source = LookupSource::for_table(&self.params, false);
        let lookups = TtLookups::declare_with(&mut g, &self.params, n, n, "tt full", source);
        let out = self.gpu().storage("tt full weight", total as u64 * 4);
        lookups.record_forward(&mut g, &self.params, &Buf::from(&out))?;
        let plan = g.build()?;
        let mut input = plan.new_input();
        lookups.fill(
            &mut input,
            &self.params,
            &[bags],
            &Placement::dense(dim),
            Pooling::Sum,
        )?;
        plan.run_with(&input)?;
        self.gpu().read_f32(&out, 0, n * dim)
    }
}

/// Checks a caller's buffer for the GPU-resident calls.
fn check_target(
    what: &str,
    buf: &wgpu::Buffer,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> Result<()> {
    if buf.size() < bytes {
        return Err(Error::input(
            None,
            format!(
                "{what} buffer has {} bytes; the call needs {bytes}",
                buf.size()
            ),
        ));
    }
    if !buf.usage().contains(usage) {
        return Err(Error::input(
            None,
            format!("{what} buffer lacks usage {usage:?}"),
        ));
    }
    Ok(())
}

/// Several TT tables (shapes may differ) run in one call: one plan with every table's nodes, one
/// upload, one submit. Errors name the table.
///
/// ```
/// use ttrec::gpu::Gpu;
/// use ttrec::tt::{Bags, TtEmbeddingBag, TtOptions, TtShape, TtTableBatch};
///
/// let gpu = Gpu::new()?;
/// let shapes = [TtShape::auto(1000, 16, &[8, 8])?, TtShape::auto(50_000, 8, &[4])?];
/// let tables = shapes
///     .iter()
///     .map(|s| TtEmbeddingBag::new(&gpu, s.clone(), TtOptions::default()))
///     .collect::<Result<Vec<_>, _>>()?;
/// let mut batch = TtTableBatch::new(tables)?;
/// let (a, b) = ([1u32, 999], [49_999u32]);
/// let bags = [Bags::new(&a[..], &[0u32, 2][..]), Bags::new(&b[..], &[0u32, 1][..])];
/// let out = batch.forward(&bags)?;
/// assert_eq!((out[0].len(), out[1].len()), (16, 8));
/// // Table 1 has 50,000 rows: the error names the table, the position and the value.
/// let c = [50_000u32];
/// let bad = [bags[0], Bags::new(&c[..], &[0u32, 1][..])];
/// let err = batch.forward(&bad).unwrap_err().to_string();
/// assert!(err.contains("table 1") && err.contains("index 50000 at position 0"), "{err}");
/// # Ok::<(), ttrec::Error>(())
/// ```
pub struct TtTableBatch {
    gpu: Gpu,
    tables: Vec<TtEmbeddingBag>,
    plans: PlanCache<(Mode, Vec<(usize, usize)>), CallPlan>,
}

impl std::fmt::Debug for TtTableBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtTableBatch")
            .field("tables", &self.tables)
            .finish()
    }
}

impl TtTableBatch {
    /// Takes ownership of `tables`; they must share one [`Gpu`].
    pub fn new(tables: Vec<TtEmbeddingBag>) -> Result<Self> {
        let gpu = tables
            .first()
            .ok_or_else(|| Error::input(None, "a table batch needs at least one table"))?
            .gpu()
            .clone();
        for (t, table) in tables.iter().enumerate() {
            if table.gpu().device() != gpu.device() {
                return Err(Error::input(
                    Some(t),
                    "all tables of a batch must live on the same device",
                ));
            }
        }
        Ok(TtTableBatch {
            gpu,
            tables,
            plans: PlanCache::new(PLANS_KEPT),
        })
    }

    pub fn tables(&self) -> &[TtEmbeddingBag] {
        &self.tables
    }
    pub fn tables_mut(&mut self) -> &mut [TtEmbeddingBag] {
        &mut self.tables
    }

    fn call(
        &mut self,
        bags: &[Bags],
        douts: Option<&[&[f32]]>,
        mode: Mode,
    ) -> Result<Option<Vec<Vec<f32>>>> {
        if bags.len() != self.tables.len() {
            return Err(Error::input(
                None,
                format!("{} batches for {} tables", bags.len(), self.tables.len()),
            ));
        }
        if let Some(d) = douts {
            if d.len() != self.tables.len() {
                return Err(Error::input(
                    None,
                    format!("{} grad_outputs for {} tables", d.len(), self.tables.len()),
                ));
            }
        }
        // Validate everything before any GPU work; errors name the table.
        for (t, (table, b)) in self.tables.iter().zip(bags).enumerate() {
            table
                .validate(b, douts.map(|d| d[t]), mode)
                .map_err(|e| e.with_table(t))?;
        }
        let caps: Vec<(usize, usize)> = bags
            .iter()
            .map(|b| (capacity(b.nnz()), capacity(b.num_bags())))
            .collect();
        let (gpu, tables) = (&self.gpu, &self.tables);
        let cp = self.plans.get_or_build((mode, caps.clone()), || {
            let mut g = GraphBuilder::new(gpu);
            let mut ios = Vec::new();
            for (t, (table, &(nc, bc))) in tables.iter().zip(&caps).enumerate() {
                ios.push(record_table(
                    &mut g,
                    &table.params,
                    mode,
                    nc,
                    bc,
                    &format!("table {t}"),
                )?);
            }
            CallPlan::build(g, ios)
        })?;
        for (t, table) in self.tables.iter().enumerate() {
            cp.ios[t].fill(&mut cp.input, &table.params, &bags[t], douts.map(|d| d[t]))?;
        }
        cp.plan.run_with(&cp.input)?;
        if mode.backward() {
            for table in self.tables.iter_mut() {
                table.params.cache_step()?;
            }
        }
        if !mode.forward_out() {
            self.gpu.wait()?;
            return Ok(None);
        }
        let mut outs = Vec::new();
        for (t, table) in self.tables.iter().enumerate() {
            outs.push(self.gpu.read_f32(
                &cp.ios[t].out,
                0,
                bags[t].num_bags() * table.shape().dim(),
            )?);
        }
        Ok(Some(outs))
    }

    /// Pooled outputs of every table, one submit.
    pub fn forward(&mut self, bags: &[Bags]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .call(bags, None, Mode::Forward)?
            .expect("forward output"))
    }
    /// Backward (with each table's fused update) of every table, one submit.
    pub fn backward(&mut self, bags: &[Bags], grad_outputs: &[&[f32]]) -> Result<()> {
        self.call(bags, Some(grad_outputs), Mode::Backward)
            .map(|_| ())
    }
    /// Forward and backward of every table, one submit.
    pub fn forward_backward(
        &mut self,
        bags: &[Bags],
        grad_outputs: &[&[f32]],
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .call(bags, Some(grad_outputs), Mode::ForwardBackward)?
            .expect("forward output"))
    }
}
