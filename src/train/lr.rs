//! dlrm's learning-rate policy (`LRPolicyScheduler` in `dlrm_s_pytorch.py`, flags
//! `--lr-num-warmup-steps`, `--lr-decay-start-step`, `--lr-num-decay-steps`), value for value.
//!
//! dlrm's scheduler is stepped once at construction and once after every optimizer step, so the
//! k-th optimizer step (1-based) runs at the rate its `get_lr` gives for `_step_count = k`:
//! - warm-up, `k < W`: `base * (1 - (W - k) / W)`;
//! - decay, `S <= k < S + N`: `max(1e-7, base * ((N - (k - S)) / N)^2)`;
//! - otherwise, with `N > 0`: the last rate set by one of the two above (frozen), without
//!   decay (`N = 0`): `base`.
//!
//! dlrm refuses `S < W` ("Learning rate warmup must finish before the decay starts"). Where its
//! frozen branch comes first (no warm-up step ran and the decay has not started) dlrm has no
//! rate set and fails; here that rate is `base`.

use crate::error::{Error, Result};

/// dlrm's floor on a decayed rate.
pub const MIN_DECAYED_LR: f64 = 1e-7;

/// The warm-up/decay policy of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrPolicy {
    pub base: f64,
    /// `--lr-num-warmup-steps` (W).
    pub warmup_steps: u64,
    /// `--lr-decay-start-step` (S).
    pub decay_start: u64,
    /// `--lr-num-decay-steps` (N).
    pub decay_steps: u64,
}

impl LrPolicy {
    /// The policy, checked as dlrm checks it.
    pub fn new(base: f64, warmup_steps: u64, decay_start: u64, decay_steps: u64) -> Result<Self> {
        if decay_start < warmup_steps {
            return Err(Error::input(
                None,
                format!(
                    "--lr-decay-start-step {decay_start} is before the end of the warm-up (--lr-num-warmup-steps {warmup_steps}): the warm-up must finish before the decay starts"
                ),
            ));
        }
        Ok(LrPolicy {
            base,
            warmup_steps,
            decay_start,
            decay_steps,
        })
    }

    /// Whether the rate ever differs from the base rate.
    pub fn is_constant(&self) -> bool {
        self.warmup_steps <= 1 && self.decay_steps == 0
    }

    /// The rate of optimizer step `k` (1-based), as dlrm's scheduler gives it.
    pub fn rate(&self, k: u64) -> f64 {
        if let Some(r) = self.set_rate(k) {
            return r;
        }
        if self.decay_steps == 0 {
            return self.base;
        }
        // Frozen: the last rate a warm-up or decay step set, i.e. that of the latest step
        // before k in either phase.
        let decay_end = self.decay_start + self.decay_steps;
        let last = if k >= decay_end && decay_end > self.decay_start {
            Some(decay_end - 1)
        } else if self.warmup_steps > 1 {
            Some(self.warmup_steps.min(k) - 1)
        } else {
            None
        };
        last.and_then(|j| self.set_rate(j)).unwrap_or(self.base)
    }

    /// The rate step `k` sets in the warm-up or decay phase (None outside both).
    fn set_rate(&self, k: u64) -> Option<f64> {
        let (w, s, n) = (self.warmup_steps, self.decay_start, self.decay_steps);
        if k < w {
            let scale = 1.0 - (w - k) as f64 / w as f64;
            Some(self.base * scale)
        } else if s <= k && k < s + n {
            let left = (n - (k - s)) as f64 / n as f64;
            Some((self.base * left * left).max(MIN_DECAYED_LR))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dlrm's `get_lr` run as a state machine (the frozen branch reads the last set rate),
    /// the values written out by hand where they are easy.
    #[test]
    fn rates_follow_dlrms_scheduler() {
        let p = LrPolicy::new(0.1, 4, 6, 3).unwrap();
        let want = [
            (1, 0.025),
            (2, 0.05),
            (3, 0.075),
            (4, 0.075), // frozen at step 3's rate until the decay starts
            (5, 0.075),
            (6, 0.1),
            (7, 0.1 * 4.0 / 9.0),
            (8, 0.1 / 9.0),
            (9, 0.1 / 9.0), // frozen after the decay
            (100, 0.1 / 9.0),
        ];
        for (k, r) in want {
            assert!(
                (p.rate(k) - r).abs() < 1e-15,
                "step {k}: {} vs {r}",
                p.rate(k)
            );
        }
        // The state machine over many steps agrees with the closed form.
        let p = LrPolicy::new(0.7, 10, 25, 40).unwrap();
        let mut last = f64::NAN;
        for k in 1..200 {
            let r = match p.set_rate(k) {
                Some(r) => {
                    last = r;
                    r
                }
                None => last,
            };
            assert_eq!(p.rate(k), r, "step {k}");
        }
        // Deep in the decay the floor holds.
        let p = LrPolicy::new(1e-3, 0, 0, 1_000_000).unwrap();
        assert_eq!(p.rate(999_999), MIN_DECAYED_LR);
    }

    #[test]
    fn no_policy_is_the_base_rate_and_a_bad_one_is_refused() {
        let p = LrPolicy::new(0.2, 0, 0, 0).unwrap();
        assert!(p.is_constant());
        assert_eq!(p.rate(1), 0.2);
        assert_eq!(p.rate(12345), 0.2);
        // Warm-up alone: after it, the base rate (dlrm: no decay steps, no freezing).
        let p = LrPolicy::new(0.2, 4, 4, 0).unwrap();
        assert!((p.rate(2) - 0.1).abs() < 1e-15);
        assert_eq!(p.rate(4), 0.2);
        let e = LrPolicy::new(0.1, 10, 5, 3).unwrap_err().to_string();
        assert!(e.contains("--lr-decay-start-step 5"), "{e}");
    }
}
