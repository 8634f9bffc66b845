//! dlrm's DLRM with TT-compressed tables, trained end to end on the GPU.
//! - [`config`]: model shapes, dlrm's Kaggle and Terabyte presets, which tables are TT; the
//!   options that do not change the math.
//! - [`baselines`]: which tables dlrm's quotient-remainder and mixed-dimension options turn
//!   into those kinds (the compression baselines TT is compared against).
//! - [`model`]: [`Dlrm`], the model on the GPU: building, the public calls, the plan caches and
//!   the statistics ring; a training step is one replayed plan, one submit.
//! - `qr` (internal): the quotient-remainder tables as one group, their lookups and names.
//! - `net` (internal): the layers and parameters as one value the rooms below take explicitly.
//! - `inputs` (internal): [`DlrmBatch`], its checks, its input regions and their filling.
//! - `step` (internal): recording the training and evaluation plans.
//! - `state_dict` (internal): parameters by dlrm's state-dict names.
//! - [`fixture`]: PyTorch parity fixtures (`ttrec-dlrm-v1`).
//! - `finite`: the per-step finiteness checks of the parameters, recorded into the training
//!   plan (their flag travels in the step statistics).
//!
//! The CPU twin of a whole step (f64, the tests' oracle) is `twin::dlrm`, with the other twins.
//!
//! - `md` (internal): the mixed-dimension tables' names and ids (the layer is `nn::md`).
//!
//! Imports run one way, each file using only those before it: config, baselines, md, qr, net,
//! inputs, finite,
//! step, state_dict, model. The rooms after net take it (or the config) as an explicit argument;
//! none reaches back into model.rs.

pub mod baselines;
pub mod config;
mod finite;
pub mod fixture;
mod inputs;
mod md;
pub mod model;
mod net;
mod qr;
mod split;
mod state_dict;
mod step;

pub use baselines::Baseline;
pub use config::{
    DlrmConfig, DlrmOptions, OptimizerKind, QrOperation, TableConfig, TableKind, TtCacheOptions,
};
pub use inputs::DlrmBatch;
pub use model::{Dlrm, StepStats, Trace};
