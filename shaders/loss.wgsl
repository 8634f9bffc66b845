// Sigmoid + binary cross-entropy, mean over the batch, on the logits in column 0 of Z [B, LDZ].
// CPU twin: src/twin/nn.rs (bce). Launcher: src/kernels/loss.rs.
//
// Stable in the logit: loss = max(z, 0) - z y + log(1 + exp(-|z|)), dz = (sigmoid(z) - y) / B,
// written in both layouts ([B, LDZ] and [LDZ, LDB]) for the top MLP's products.
// Each sample's loss is clamped to [-log(1 - EPS), -log(EPS)], as the evaluation's log loss
// clamps the probability to [EPS, 1 - EPS] (metrics::LOG_LOSS_EPS): the printed training loss
// and the test loss are the same function of the logits (the gradient is not clamped).
// The step's slot of a ring of per-step statistics that stays on the GPU until the host asks
// (4 words, kernels::loss::STATS_PER_STEP): the mean loss, the correct count, 1.0 if a logit is
// NaN or infinite (else 0.0), and 0 for the parameters' non-finite code that the checks of
// shaders/finite.wgsl raise after the update. One workgroup reduces in a fixed tree order, so
// the loss is bitwise deterministic.

override BATCH: u32 = 1u;
override LDZ: u32 = 4u;
// Row stride of the transposed gradient [LDZ, LDB] (pad4(BATCH)).
override LDB: u32 = 4u;

@group(0) @binding(0) var<uniform> step: StepParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits_t: array<f32>;

var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_correct: array<f32, 256>;
var<workgroup> part_bad: array<u32, 256>;

// Per-sample loss bounds: -log(1 - 1e-7) and -log(1e-7).
const LOSS_FLOOR: f32 = 1.0000000494736474e-7;
const LOSS_CAP: f32 = 16.11809565095832;

fn sigmoid(z: f32) -> f32 {
    if (z >= 0.0) {
        return 1.0 / (1.0 + exp(-z));
    }
    let e = exp(z);
    return e / (1.0 + e);
}

// log(1 + exp(-|z|)) without losing the small values.
fn softplus_neg_abs(z: f32) -> f32 {
    let e = exp(-abs(z));
    if (e < 1e-3) {
        return e * (1.0 - 0.5 * e);
    }
    return log(1.0 + e);
}

@compute @workgroup_size(256)
fn bce(@builtin(local_invocation_index) t: u32) {
    var ls = 0.0;
    var cs = 0.0;
    var bad = 0u;
    for (var b = t; b < BATCH; b = b + 256u) {
        let z = logits[b * LDZ];
        let y = labels[b];
        // NaN or infinite (exponent bits all ones): a clamp would hide it.
        if ((bitcast<u32>(z) & 0x7f800000u) == 0x7f800000u) {
            bad = 1u;
        }
        ls = ls + clamp(max(z, 0.0) - z * y + softplus_neg_abs(z), LOSS_FLOOR, LOSS_CAP);
        if ((z > 0.0) == (y > 0.5)) {
            cs = cs + 1.0;
        }
        let dz = (sigmoid(z) - y) / f32(BATCH);
        dlogits[b * LDZ] = dz;
        dlogits_t[b] = dz;
        for (var c = 1u; c < LDZ; c = c + 1u) {
            dlogits[b * LDZ + c] = 0.0;
            dlogits_t[c * LDB + b] = 0.0;
        }
    }
    part_loss[t] = ls;
    part_correct[t] = cs;
    part_bad[t] = bad;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h = h / 2u) {
        if (t < h) {
            part_loss[t] = part_loss[t] + part_loss[t + h];
            part_correct[t] = part_correct[t] + part_correct[t + h];
            part_bad[t] = max(part_bad[t], part_bad[t + h]);
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        stats[4u * step.slot] = part_loss[0] / f32(BATCH);
        stats[4u * step.slot + 1u] = part_correct[0];
        stats[4u * step.slot + 2u] = f32(part_bad[0]);
        stats[4u * step.slot + 3u] = 0.0;
    }
}

@group(0) @binding(0) var<storage, read> sig_logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> sig_prob: array<f32>;

// The predicted click probabilities (evaluation): prob[b] = sigmoid(z[b]).
// Workgroups past the per-dimension limit fold into y, as in the other kernel families.
@compute @workgroup_size(64)
fn probabilities(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let b = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (b < BATCH) {
        sig_prob[b] = sigmoid(sig_logits[b * LDZ]);
    }
}
