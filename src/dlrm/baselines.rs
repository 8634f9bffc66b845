//! The compression baselines users weigh TT against, as dlrm builds them: quotient-remainder
//! tables (`--qr-flag`, Shi et al. 2019) and mixed-dimension tables (`--md-flag`, Ginart et al.
//! 2019), chosen per table by dlrm's rules. What each table computes is `nn`'s and `kernels`';
//! this file only decides which tables become which kind.

use crate::dlrm::config::{DlrmConfig, QrOperation, TableKind};
use crate::error::{Error, Result};

/// dlrm's defaults: `--qr-threshold 200 --qr-collisions 4 --qr-operation mult`,
/// `--md-threshold 200 --md-temperature 0.3` (dims not rounded).
pub const DLRM_QR_THRESHOLD: u64 = 200;
pub const DLRM_QR_COLLISIONS: u64 = 4;
pub const DLRM_MD_THRESHOLD: u64 = 200;
pub const DLRM_MD_TEMPERATURE: f32 = 0.3;

/// A baseline in place of TT for the large tables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Baseline {
    /// Tables of more than `threshold` rows become quotient-remainder tables.
    Qr {
        threshold: u64,
        collisions: u64,
        operation: QrOperation,
    },
    /// Tables of more than `threshold` rows get dlrm's alpha-power width (`temperature`), a
    /// power of two when `round_dims`, and a projection to D when narrower than D.
    Md {
        threshold: u64,
        temperature: f32,
        round_dims: bool,
    },
}

/// dlrm's `md_solver(n, alpha, d0=D, round_dim)`: the width of each table under the alpha-power
/// rule anchored at the smallest table, which keeps `d0`; the others get
/// `d0 * (n_min / n)^alpha`, at least 1, rounded half to even (torch.round), then to the nearest
/// power of two when `round_dims`. Computed in f32 as torch computes it.
pub fn md_dims(rows: &[u64], alpha: f32, d0: usize, round_dims: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&t| rows[t]);
    let Some(&smallest) = order.first() else {
        return Vec::new();
    };
    let lambda = d0 as f32 * (rows[smallest] as f32).powf(alpha);
    let mut dims = vec![0usize; rows.len()];
    for (i, &t) in order.iter().enumerate() {
        let d = if i == 0 {
            d0 as f32
        } else {
            (lambda * (rows[t] as f32).powf(-alpha)).max(1.0)
        };
        let mut d = d.round_ties_even();
        if round_dims {
            d = 2f32.powf(d.log2().round_ties_even());
        }
        dims[t] = d as usize;
    }
    dims
}

impl DlrmConfig {
    /// Every table of more than `baseline`'s threshold rows as that baseline, the others dense
    /// (an MD table as wide as D is dense: dlrm's projection is then the identity).
    pub fn with_baseline(mut self, baseline: Baseline) -> Result<Self> {
        let dim = self.dim();
        match baseline {
            Baseline::Qr {
                threshold,
                collisions,
                operation,
            } => {
                if collisions == 0 {
                    return Err(Error::input(None, "--qr-collisions must be at least 1"));
                }
                for table in &mut self.tables {
                    table.kind = if table.rows > threshold {
                        TableKind::Qr {
                            collisions,
                            operation,
                        }
                    } else {
                        TableKind::Dense
                    };
                }
            }
            Baseline::Md {
                threshold,
                temperature,
                round_dims,
            } => {
                if !(temperature.is_finite() && temperature >= 0.0) {
                    return Err(Error::input(
                        None,
                        format!(
                            "--md-temperature must be a non-negative number, got {temperature}"
                        ),
                    ));
                }
                let rows: Vec<u64> = self.tables.iter().map(|t| t.rows).collect();
                let dims = md_dims(&rows, temperature, dim, round_dims);
                for (table, d) in self.tables.iter_mut().zip(dims) {
                    table.kind = if table.rows > threshold && d < dim {
                        TableKind::Md { dim: d }
                    } else {
                        TableKind::Dense
                    };
                }
            }
        }
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md_dims_follow_dlrms_alpha_power_rule() {
        // n = [3, 1500, 10_000_000], alpha 0.3, d0 16 (values from numpy in float32):
        // lambda = 16 * 3^0.3 = 22.246; 22.246 * 1500^-0.3 = 2.480 -> 2;
        // 22.246 * 1e7^-0.3 = 0.177 -> 1 (at least 1).
        assert_eq!(
            md_dims(&[1500, 3, 10_000_000], 0.3, 16, false),
            vec![2, 16, 1]
        );
        // alpha 0: every table keeps d0.
        assert_eq!(md_dims(&[5, 50, 500], 0.0, 16, false), vec![16, 16, 16]);
        // Rounded to powers of two: 16 * (10/1000)^0.25 = 5.06 -> 5 -> 2^round(2.32) = 4.
        assert_eq!(md_dims(&[10, 1000], 0.25, 16, true), vec![16, 4]);
    }

    #[test]
    fn baselines_replace_only_tables_above_the_threshold() {
        let c = DlrmConfig::kaggle_dense()
            .with_baseline(Baseline::Qr {
                threshold: 200,
                collisions: 4,
                operation: QrOperation::Mult,
            })
            .unwrap();
        for t in &c.tables {
            assert_eq!(
                t.rows > 200,
                matches!(t.kind, TableKind::Qr { .. }),
                "{t:?}"
            );
        }
        let c = DlrmConfig::kaggle_dense()
            .with_baseline(Baseline::Md {
                threshold: 200,
                temperature: 0.3,
                round_dims: false,
            })
            .unwrap();
        assert!(c
            .tables
            .iter()
            .any(|t| matches!(t.kind, TableKind::Md { .. })));
        for t in &c.tables {
            if let TableKind::Md { dim } = t.kind {
                assert!(t.rows > 200 && (1..16).contains(&dim), "{t:?}");
            }
        }
        assert!(
            c.embedding_params().unwrap()
                < DlrmConfig::kaggle_dense().embedding_params().unwrap() / 4
        );
    }
}
