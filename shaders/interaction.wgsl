// dlrm's dot interaction. T [B, F, D] holds the bottom MLP's output (vector 0) and the F-1 pooled
// embeddings; R [B, LDR] = [T[b, 0, :], dots of pairs (i, j), j < i, in the order i = 1..F-1,
// j = 0..i-1], zero-padded to LDR columns; R^T [LDR, LDB] is written too (the top MLP's products
// read it), as is the transpose [D, LDB] of vector 0's gradient in the backward. CPU twin: src/twin/nn.rs (interaction_*).
// Launcher: src/kernels/interaction.rs. Deterministic: each output is one invocation's fixed-order
// sum.


override BATCH: u32 = 1u;
override F: u32 = 2u;
override D: u32 = 4u;   // a multiple of 4
override LDR: u32 = 4u;
// Row stride of the transposed outputs (pad4(BATCH)).
override LDB: u32 = 4u;
// The bottom MLP ends in a ReLU: the gradient of vector 0 is masked by (T[b, 0, :] > 0).
override MASK0: bool = true;

fn pair_col(i: u32, j: u32) -> u32 {
    return D + i * (i - 1u) / 2u + j;
}

@group(0) @binding(0) var<storage, read> it: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> ir: array<f32>;
@group(0) @binding(2) var<storage, read_write> irt: array<f32>;

fn put(b: u32, c: u32, v: f32) {
    ir[b * LDR + c] = v;
    irt[c * LDB + b] = v;
}

// One invocation per (sample, vector i): the dots of i with every j < i; i = 0 copies vector 0
// and zeroes the padding.
@compute @workgroup_size(64)
fn interact_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let b = id / F;
    if (b >= BATCH) {
        return;
    }
    let i = id - b * F;
    let dq = D / 4u;
    let tb = b * F * dq;
    if (i == 0u) {
        for (var c = 0u; c < dq; c = c + 1u) {
            let v = it[tb + c];
            put(b, 4u * c, v.x);
            put(b, 4u * c + 1u, v.y);
            put(b, 4u * c + 2u, v.z);
            put(b, 4u * c + 3u, v.w);
        }
        for (var c = D + F * (F - 1u) / 2u; c < LDR; c = c + 1u) {
            put(b, c, 0.0);
        }
        return;
    }
    for (var j = 0u; j < i; j = j + 1u) {
        var acc = 0.0;
        for (var c = 0u; c < dq; c = c + 1u) {
            acc = acc + dot(it[tb + i * dq + c], it[tb + j * dq + c]);
        }
        put(b, pair_col(i, j), acc);
    }
}

@group(0) @binding(0) var<storage, read> bdr: array<f32>;
@group(0) @binding(1) var<storage, read> bt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> bdt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bdt0t: array<f32>;

// One invocation per (sample, vector i, vec4 column): dT[b, i] = dR[b, :D] (i = 0) +
// sum over j != i (increasing) of dR[b, pair(i, j)] * T[b, j].
@compute @workgroup_size(64)
fn interact_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let dq = D / 4u;
    let per = F * dq;
    let b = id / per;
    if (b >= BATCH) {
        return;
    }
    let rem = id - b * per;
    let i = rem / dq;
    let c = rem - i * dq;
    let rb = b * LDR;
    let tb = b * per;
    var acc = vec4<f32>(0.0);
    if (i == 0u) {
        acc = vec4<f32>(bdr[rb + 4u * c], bdr[rb + 4u * c + 1u], bdr[rb + 4u * c + 2u],
                        bdr[rb + 4u * c + 3u]);
    }
    for (var j = 0u; j < F; j = j + 1u) {
        if (j == i) {
            continue;
        }
        var col: u32;
        if (j < i) {
            col = pair_col(i, j);
        } else {
            col = pair_col(j, i);
        }
        acc = acc + bdr[rb + col] * bt[tb + j * dq + c];
    }
    if (i == 0u) {
        if (MASK0) {
            acc = select(vec4<f32>(0.0), acc, bt[tb + c] > vec4<f32>(0.0));
        }
        bdt0t[4u * c * LDB + b] = acc.x;
        bdt0t[(4u * c + 1u) * LDB + b] = acc.y;
        bdt0t[(4u * c + 2u) * LDB + b] = acc.z;
        bdt0t[(4u * c + 3u) * LDB + b] = acc.w;
    }
    bdt[tb + i * dq + c] = acc;
}
