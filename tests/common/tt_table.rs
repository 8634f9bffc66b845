//! A TT table's training in the twin (f64 gradients, SGD or Adagrad), for the edge tests.

use super::twins::tt as twin;
use super::{assert_close, to_f64, u64s};
use ttrec::tt::{Optimizer, Pooling, TtOptions, TtParams, TtShape};

/// A table's state in the twin: cores and Adagrad accumulators.
#[derive(Clone)]
pub struct TwinTable {
    pub shape: TtShape,
    pub cores: Vec<Vec<f32>>,
    pub state: Vec<Vec<f32>>,
}

impl TwinTable {
    pub fn new(shape: &TtShape, cores: &[Vec<f32>]) -> Self {
        TwinTable {
            shape: shape.clone(),
            cores: cores.to_vec(),
            state: cores.iter().map(|c| vec![0.0; c.len()]).collect(),
        }
    }

    /// One training step: returns (forward output, core gradients); updates cores and state.
    pub fn step(
        &mut self,
        opt: Optimizer,
        pooling: Pooling,
        idx: &[i64],
        off: &[i64],
        dout: &[f32],
    ) -> (Vec<f64>, Vec<Vec<f64>>) {
        let (i, o) = (u64s(idx), u64s(off));
        let out = twin::forward(&self.shape, &self.cores, &i, &o, None, pooling);
        let grads = twin::backward(&self.shape, &self.cores, &i, &o, None, pooling, dout);
        match opt {
            Optimizer::Sgd { lr } => self.cores = twin::sgd_update(&self.cores, &grads, lr as f64),
            Optimizer::Adagrad { lr, eps } => {
                let (c, s) =
                    twin::adagrad_update(&self.cores, &self.state, &grads, lr as f64, eps as f64);
                self.cores = c;
                self.state = s;
            }
            Optimizer::None => {}
        }
        (out, grads)
    }

    /// Asserts GPU cores, gradients and (Adagrad) state against this twin after a step.
    pub fn check(
        &self,
        what: &str,
        opt: Optimizer,
        grads: &[Vec<f64>],
        got_grads: &[Vec<f32>],
        got_cores: &[Vec<f32>],
        got_state: Option<&[Vec<f32>]>,
    ) {
        for k in 0..self.shape.d() {
            assert_close(
                &format!("{what}: grad {k}"),
                &got_grads[k],
                &grads[k],
                1e-5,
                1e-6,
            );
            assert_close(
                &format!("{what}: core {k}"),
                &got_cores[k],
                &to_f64(&self.cores[k]),
                1e-5,
                1e-6,
            );
            if matches!(opt, Optimizer::Adagrad { .. }) {
                let s = got_state.expect("Adagrad state");
                assert_close(
                    &format!("{what}: Adagrad state {k}"),
                    &s[k],
                    &to_f64(&self.state[k]),
                    1e-5,
                    1e-9,
                );
            }
        }
    }
}

/// Options of a table with `opt`, `pooling` and chunks of at most `chunk` lookups.
pub fn options(opt: Optimizer, pooling: Pooling, chunk: Option<usize>) -> TtOptions {
    TtOptions {
        pooling,
        optimizer: opt,
        max_chunk_lookups: chunk,
        ..TtOptions::default()
    }
}

/// Table `t`'s part of every core of a group's buffers read whole (`all[k]`).
pub fn table_part(params: &TtParams, all: &[Vec<f32>], t: usize) -> Vec<Vec<f32>> {
    let tb = &params.tables()[t];
    (0..params.shape().d())
        .map(|k| {
            let at = tb.bases[k] * params.shape().core_cols(k);
            all[k][at..at + tb.shape.core_len(k)].to_vec()
        })
        .collect()
}
