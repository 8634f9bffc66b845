//! CPU twin of TT cores stored as f16 (`--tt-precision f16`): the storage rounding and the
//! SGD / Adagrad updates of f16 cores, in f32 arithmetic as the kernels do it (shaders/tt.wgsl
//! `fused_update`, `core_grad_v4`, `core_grad_combine`; shaders/optim.wgsl `optim`), each new
//! value rounded to f16 once: round to nearest, ties to even (`half::f16::from_f32`), which
//! lavapipe's conversion does too (tests/f16_cores.rs checks the ties). WGSL itself only
//! promises one of the two neighbours, so another adapter may round a tie the other way.
//!
//! The products of the forward and backward need no twin of their own: an f16 core is read into
//! f32 exactly, so they are the f32 kernels' products over the rounded cores (the f64 twin of
//! [`super::tt`] checks them within tolerance; the tests check them bitwise against the f32
//! kernels on the rounded cores).

/// `x` rounded to the nearest f16 (ties to even), back as f32 (exact).
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Every value of `cores` rounded to f16: what an f16 table stores for f32 cores.
pub fn round_cores(cores: &[Vec<f32>]) -> Vec<Vec<f32>> {
    cores
        .iter()
        .map(|c| c.iter().map(|&x| round_f16(x)).collect())
        .collect()
}

/// SGD on f16 cores: `w' = f16(w - lr * g)`, the product and difference in f32 (`cores` hold
/// f16 values, `grads` the f32 gradients).
pub fn sgd_update(cores: &[Vec<f32>], grads: &[Vec<f32>], lr: f32) -> Vec<Vec<f32>> {
    cores
        .iter()
        .zip(grads)
        .map(|(c, g)| {
            c.iter()
                .zip(g)
                .map(|(&w, &g)| round_f16(w - lr * g))
                .collect()
        })
        .collect()
}

/// Adagrad on f16 cores with an f32 state: `s' = s + g * g; w' = f16(w - lr * g / (sqrt(s') +
/// eps))`, every operation in f32 in the kernels' order. Returns (cores, state).
pub fn adagrad_update(
    cores: &[Vec<f32>],
    state: &[Vec<f32>],
    grads: &[Vec<f32>],
    lr: f32,
    eps: f32,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut new_cores = Vec::with_capacity(cores.len());
    let mut new_state = Vec::with_capacity(cores.len());
    for ((c, s), g) in cores.iter().zip(state).zip(grads) {
        let (mut nc, mut ns) = (Vec::with_capacity(c.len()), Vec::with_capacity(c.len()));
        for ((&w, &s), &g) in c.iter().zip(s).zip(g) {
            let s2 = s + g * g;
            nc.push(round_f16(w - lr * g / (s2.sqrt() + eps)));
            ns.push(s2);
        }
        new_cores.push(nc);
        new_state.push(ns);
    }
    (new_cores, new_state)
}
