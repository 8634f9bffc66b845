//! dlrm's quotient-remainder and mixed-dimension flags (`--qr-*`, `--md-*`), named and defaulted
//! as `dlrm_s_pytorch.py` has them; `--qr-flag` / `--md-flag` are `--embedding qr` / `md`.

use clap::Args;

use crate::dlrm::baselines::{
    Baseline, DLRM_MD_TEMPERATURE, DLRM_MD_THRESHOLD, DLRM_QR_COLLISIONS, DLRM_QR_THRESHOLD,
};
use crate::dlrm::QrOperation;
use crate::error::{Error, Result};

use super::options::EmbeddingKind;

/// The baselines' options.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Quotient-remainder and mixed-dimension tables (dlrm's baselines)")]
pub struct BaselineFlags {
    /// dlrm's flag: the same as --embedding qr.
    #[arg(long, conflicts_with_all = ["embedding", "md_flag"])]
    pub qr_flag: bool,
    /// QR tables: those of more than ROWS rows (default 200, as dlrm).
    #[arg(long, value_name = "ROWS")]
    pub qr_threshold: Option<u64>,
    /// How a QR table combines its quotient and remainder vectors (default mult). concat puts
    /// two halves side by side: as in dlrm, --arch-mlp-bot then ends in twice
    /// --arch-sparse-feature-size.
    #[arg(long, value_enum, value_name = "OP")]
    pub qr_operation: Option<QrOperation>,
    /// Rows of each remainder table (the quotient table has ceil(rows / N)); default 4.
    #[arg(long, value_name = "N")]
    pub qr_collisions: Option<u64>,
    /// dlrm's flag: the same as --embedding md.
    #[arg(long, conflicts_with = "embedding")]
    pub md_flag: bool,
    /// Mixed-dimension tables: those of more than ROWS rows (default 200, as dlrm).
    #[arg(long, value_name = "ROWS")]
    pub md_threshold: Option<u64>,
    /// The alpha of dlrm's alpha-power rule (default 0.3): a table of n rows gets
    /// D * (n_min / n)^alpha columns, n_min the smallest table's rows.
    #[arg(long, value_name = "ALPHA")]
    pub md_temperature: Option<f32>,
    /// Round each table's width to the nearest power of two.
    #[arg(long)]
    pub md_round_dims: bool,
}

impl BaselineFlags {
    /// The method `--embedding` names, or dlrm's flag for it.
    pub fn embedding(&self, embedding: EmbeddingKind) -> EmbeddingKind {
        if self.qr_flag {
            EmbeddingKind::Qr
        } else if self.md_flag {
            EmbeddingKind::Md
        } else {
            embedding
        }
    }

    /// The baseline of `embedding` with its options; an option of the other method (or of a
    /// method not chosen) is an error naming it.
    pub fn check(&self, embedding: EmbeddingKind) -> Result<Option<Baseline>> {
        let qr_given = [
            self.qr_threshold.map(|_| "--qr-threshold"),
            self.qr_operation.map(|_| "--qr-operation"),
            self.qr_collisions.map(|_| "--qr-collisions"),
        ];
        let md_given = [
            self.md_threshold.map(|_| "--md-threshold"),
            self.md_temperature.map(|_| "--md-temperature"),
            self.md_round_dims.then_some("--md-round-dims"),
        ];
        let stray = |given: &[Option<&'static str>], needs: &str| -> Result<()> {
            match given.iter().flatten().next() {
                Some(flag) => Err(Error::input(
                    None,
                    format!("{flag} needs --embedding {needs} (or dlrm's --{needs}-flag)"),
                )),
                None => Ok(()),
            }
        };
        match embedding {
            EmbeddingKind::Qr => {
                stray(&md_given, "md")?;
                let collisions = self.qr_collisions.unwrap_or(DLRM_QR_COLLISIONS);
                if collisions == 0 {
                    return Err(Error::input(None, "--qr-collisions must be at least 1"));
                }
                Ok(Some(Baseline::Qr {
                    threshold: self.qr_threshold.unwrap_or(DLRM_QR_THRESHOLD),
                    collisions,
                    operation: self.qr_operation.unwrap_or(QrOperation::Mult),
                }))
            }
            EmbeddingKind::Md => {
                stray(&qr_given, "qr")?;
                let temperature = self.md_temperature.unwrap_or(DLRM_MD_TEMPERATURE);
                if !(temperature.is_finite() && temperature >= 0.0) {
                    return Err(Error::input(
                        None,
                        format!(
                            "--md-temperature must be a non-negative number, got {temperature}"
                        ),
                    ));
                }
                Ok(Some(Baseline::Md {
                    threshold: self.md_threshold.unwrap_or(DLRM_MD_THRESHOLD),
                    temperature,
                    round_dims: self.md_round_dims,
                }))
            }
            EmbeddingKind::Tt | EmbeddingKind::Dense => {
                stray(&qr_given, "qr")?;
                stray(&md_given, "md")?;
                Ok(None)
            }
        }
    }

    /// Whether QR concat doubles the bottom MLP's output over --arch-sparse-feature-size.
    pub fn concat(&self, embedding: EmbeddingKind) -> bool {
        embedding == EmbeddingKind::Qr && self.qr_operation == Some(QrOperation::Concat)
    }
}
