//! Compression beyond the reference: dense tables into TT cores and back (TT-SVD, on the host
//! with `faer`), and the choice of which tables become TT with which ranks (TT only where it
//! pays, or under a byte budget or compression factor), with what the model then occupies.
//!
//! - [`tt_svd`](mod@tt_svd): [`tt_svd::tt_svd`], [`tt_svd::tt_to_dense`], the reconstruction
//!   error; [`TtParams::from_dense`] and [`TtParams::to_dense`] on the GPU tables.
//! - [`plan`]: [`plan::choose_tables`], [`plan::model_plan`], the size and factor parsers.
//!
//! Layer: above `tt` and `dlrm` (it builds their types), below `train` (which warm-starts TT
//! tables from a dense checkpoint and plans its tables through it).

pub mod plan;
pub mod tt_svd;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tt::{TtOptions, TtParams};
use crate::tt_shape::TtShape;

pub use plan::{
    choose_tables, model_plan, model_plan_at, Budget, ModelPlan, Selection, TT_PAYS_FACTOR,
};
pub use tt_svd::{
    reconstruction_error, tt_svd, tt_to_dense, RankChoice, ReconstructionError, TtSvd,
};

impl TtParams {
    /// A TT table whose cores are the TT-SVD of `table` (`shape.num_embeddings x shape.dim()`,
    /// row-major) at `shape`'s factors and ranks (see [`RankChoice::Fixed`]).
    pub fn from_dense(
        gpu: &Gpu,
        table: &[f32],
        shape: TtShape,
        options: TtOptions,
    ) -> Result<Self> {
        let svd = tt_svd(
            table,
            shape.num_embeddings,
            &shape.p,
            &shape.q,
            &RankChoice::Fixed(shape.interior_ranks().to_vec()),
        )?;
        Self::from_cores(gpu, svd.shape, &svd.cores, options)
    }

    /// The full table (`N x D`, row-major) of a single TT table, read back from the GPU and
    /// multiplied out in f64.
    pub fn to_dense(&self) -> Result<Vec<f32>> {
        if self.tables().len() != 1 {
            return Err(Error::input(
                None,
                format!(
                    "to_dense of a group of {} tables: read one table's cores with table_cores",
                    self.tables().len()
                ),
            ));
        }
        tt_to_dense(&self.tables()[0].shape, &self.table_cores(0)?)
    }
}
