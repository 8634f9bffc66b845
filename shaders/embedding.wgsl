// Uncompressed EmbeddingBag (sum pooling) for a group of tables sharing one row space: table t's
// row i is group row `base_t + i`. The rows live in shards of at most one storage binding each
// (rows [SHARD_LO, SHARD_LO + SHARD_ROWS)); every kernel runs once per shard, in shard order.
// CPU twin: src/twin/nn.rs (bag_*). Launcher: src/kernels/embedding.rs.
//
// Pooled rows go to a caller's matrix (bag b of table t at b * OUT_STRIDE + col_off[t]), e.g. a
// column block of the interaction's input. The backward reduces the lookups of each distinct row
// (sorted on the host, stable) in order and applies the fused update to that row: no atomics,
// deterministic.


override D: u32 = 4u;           // a multiple of 4 (any width in the scalar kernels, `_s`)
override TABLES: u32 = 1u;
override BAGS: u32 = 1u;
override OUT_STRIDE: u32 = 4u;  // a multiple of 4 (any in the scalar kernels)
override SHARD_LO: u32 = 0u;
override SHARD_ROWS: u32 = 1u;
// Later shards add to what the first shard wrote (which writes every bag, empty ones as zeros).
override ACCUMULATE: bool = false;
// Segment slots of the backward (the most distinct rows a batch can have: its lookup count).
override SEGMENTS: u32 = 1u;
// 0: SGD w -= lr g. 1: Adagrad s += g^2; w -= lr g / (sqrt(s) + eps).
override OPTIMIZER: u32 = 0u;

@group(0) @binding(0) var<storage, read> bag_offsets: array<u32>;  // [TABLES * (BAGS + 1)]
@group(0) @binding(1) var<storage, read> bag_rows: array<u32>;     // group rows of the lookups
@group(0) @binding(2) var<storage, read> bag_col_off: array<u32>;  // [TABLES]
@group(0) @binding(3) var<storage, read> bag_weight: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bag_out: array<vec4<f32>>;

// One invocation per (table, bag, vec4 column).
@compute @workgroup_size(64)
fn bag_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let dq = D / 4u;
    let tb = id / dq;
    let t = tb / BAGS;
    if (t >= TABLES) {
        return;
    }
    let b = tb - t * BAGS;
    let c = id - tb * dq;
    let lo = bag_offsets[t * (BAGS + 1u) + b];
    let hi = bag_offsets[t * (BAGS + 1u) + b + 1u];
    var acc = vec4<f32>(0.0);
    for (var n = lo; n < hi; n = n + 1u) {
        let row = bag_rows[n];
        if (row >= SHARD_LO && row - SHARD_LO < SHARD_ROWS) {
            acc = acc + bag_weight[(row - SHARD_LO) * dq + c];
        }
    }
    let o = (b * OUT_STRIDE + bag_col_off[t]) / 4u + c;
    if (ACCUMULATE) {
        bag_out[o] = bag_out[o] + acc;
    } else {
        bag_out[o] = acc;
    }
}

@group(0) @binding(0) var<uniform> bag_opt: OptParams;
// Segment u (a distinct row): segs[2u] = first sorted position, segs[2u + 1] = group row;
// segment u ends where u + 1 starts. Unused segments start and end at the lookup count.
@group(0) @binding(1) var<storage, read> bag_segs: array<u32>;
// For each lookup in row-sorted order: the element offset of its bag's gradient row in dout.
@group(0) @binding(2) var<storage, read> bag_dest: array<u32>;
@group(0) @binding(3) var<storage, read> bag_dout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bag_w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> bag_state: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> bag_seg_grad: array<vec4<f32>>;

const NO_ROW: u32 = 0xffffffffu;

// Segment u's group row when it has lookups and lies in this shard; NO_ROW otherwise.
fn bag_segment_row(u: u32) -> u32 {
    let row = bag_segs[2u * u + 1u];
    if (bag_segs[2u * u] >= bag_segs[2u * u + 2u] || row < SHARD_LO || row - SHARD_LO >= SHARD_ROWS) {
        return NO_ROW;
    }
    return row;
}

// Keeps segment u's row gradient g (vec4 column c) and applies OPTIMIZER's update to the row
// (bag_bwd and bag_bwd_combine alike).
fn bag_update_row(u: u32, c: u32, row: u32, g: vec4<f32>) {
    let dq = D / 4u;
    bag_seg_grad[u * dq + c] = g;
    let w = (row - SHARD_LO) * dq + c;
    if (OPTIMIZER == 0u) {
        bag_w[w] = bag_w[w] - bag_opt.lr * g;
    } else {
        let st = bag_state[w] + g * g;
        bag_state[w] = st;
        bag_w[w] = bag_w[w] - bag_opt.lr * g / (sqrt(st) + bag_opt.eps);
    }
}

// One invocation per (segment, vec4 column): the row's gradient, kept in seg_grad, then the
// fused update of the row.
@compute @workgroup_size(64)
fn bag_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let dq = D / 4u;
    let u = id / dq;
    let c = id - u * dq;
    if (u >= SEGMENTS) {
        return;
    }
    let row = bag_segment_row(u);
    if (row == NO_ROW) {
        return;
    }
    var g = vec4<f32>(0.0);
    for (var s = bag_segs[2u * u]; s < bag_segs[2u * u + 2u]; s = s + 1u) {
        g = g + bag_dout[bag_dest[s] / 4u + c];
    }
    bag_update_row(u, c, row, g);
}

// ---------------------------------------------------------------------------------------------
// The backward as pieces (the GPU class). bag_bwd gives each distinct row to one invocation that
// walks all of the row's lookups: a hot row (a value in most samples, common in Criteo) is one
// long serial loop. Here the host cuts each row's sorted lookups into pieces of at most
// BAG_PIECE (kernels::embedding::BAG_PIECE); bag_bwd_pieces sums each piece (one invocation per
// piece and vec4 column, lookups in order), and bag_bwd_combine adds each row's piece sums in
// piece order, keeps the gradient and updates the row as bag_bwd does. Fixed order: deterministic.

override PIECES: u32 = 1u; // piece slots

// Piece p holds the sorted lookups [cuts[p], cuts[p + 1]); unused slots are empty (cuts at the
// lookup count).
@group(0) @binding(0) var<storage, read> bp_cuts: array<u32>;
@group(0) @binding(1) var<storage, read> bp_dest: array<u32>;
@group(0) @binding(2) var<storage, read> bp_dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bp_partial: array<vec4<f32>>; // [PIECES, D / 4]

@compute @workgroup_size(64)
fn bag_bwd_pieces(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let dq = D / 4u;
    let p = id / dq;
    let c = id - p * dq;
    if (p >= PIECES) {
        return;
    }
    let s0 = bp_cuts[p];
    let s1 = bp_cuts[p + 1u];
    if (s0 >= s1) {
        return;
    }
    var g = vec4<f32>(0.0);
    for (var s = s0; s < s1; s = s + 1u) {
        g = g + bp_dout[bp_dest[s] / 4u + c];
    }
    bp_partial[p * dq + c] = g;
}

// Segment u's pieces are [seg_pieces[u], seg_pieces[u + 1]).
@group(0) @binding(2) var<storage, read> bc_seg_pieces: array<u32>;
@group(0) @binding(3) var<storage, read> bc_partial: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bag_bwd_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let dq = D / 4u;
    let u = id / dq;
    let c = id - u * dq;
    if (u >= SEGMENTS) {
        return;
    }
    let row = bag_segment_row(u);
    if (row == NO_ROW) {
        return;
    }
    var g = vec4<f32>(0.0);
    for (var p = bc_seg_pieces[u]; p < bc_seg_pieces[u + 1u]; p = p + 1u) {
        g = g + bc_partial[p * dq + c];
    }
    bag_update_row(u, c, row, g);
}

// ---------------------------------------------------------------------------------------------
// Scalar forms of the four kernels above, for tables whose width is not a multiple of 4 (dlrm's
// mixed-dimension tables, nn::md: widths 1, 2, 3, 5, ...): D any width, OUT_STRIDE and the column
// offsets any values; one invocation per scalar column instead of per vec4 column. Every sum
// runs in the same order and every update is the same as in the vec4 kernels.

@group(0) @binding(3) var<storage, read> bags_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> bags_out: array<f32>;

@compute @workgroup_size(64)
fn bag_fwd_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let tb = id / D;
    let t = tb / BAGS;
    if (t >= TABLES) {
        return;
    }
    let b = tb - t * BAGS;
    let c = id - tb * D;
    let lo = bag_offsets[t * (BAGS + 1u) + b];
    let hi = bag_offsets[t * (BAGS + 1u) + b + 1u];
    var acc: f32 = 0.0;
    for (var n = lo; n < hi; n = n + 1u) {
        let row = bag_rows[n];
        if (row >= SHARD_LO && row - SHARD_LO < SHARD_ROWS) {
            acc = acc + bags_weight[(row - SHARD_LO) * D + c];
        }
    }
    let o = b * OUT_STRIDE + bag_col_off[t] + c;
    if (ACCUMULATE) {
        bags_out[o] = bags_out[o] + acc;
    } else {
        bags_out[o] = acc;
    }
}

@group(0) @binding(3) var<storage, read> bags_dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> bags_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> bags_state: array<f32>;
@group(0) @binding(6) var<storage, read_write> bags_seg_grad: array<f32>;

// bag_update_row for one scalar column c.
fn bag_update_row_s(u: u32, c: u32, row: u32, g: f32) {
    bags_seg_grad[u * D + c] = g;
    let w = (row - SHARD_LO) * D + c;
    if (OPTIMIZER == 0u) {
        bags_w[w] = bags_w[w] - bag_opt.lr * g;
    } else {
        let st = bags_state[w] + g * g;
        bags_state[w] = st;
        bags_w[w] = bags_w[w] - bag_opt.lr * g / (sqrt(st) + bag_opt.eps);
    }
}

@compute @workgroup_size(64)
fn bag_bwd_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let u = id / D;
    let c = id - u * D;
    if (u >= SEGMENTS) {
        return;
    }
    let row = bag_segment_row(u);
    if (row == NO_ROW) {
        return;
    }
    var g: f32 = 0.0;
    for (var s = bag_segs[2u * u]; s < bag_segs[2u * u + 2u]; s = s + 1u) {
        g = g + bags_dout[bag_dest[s] + c];
    }
    bag_update_row_s(u, c, row, g);
}

@group(0) @binding(2) var<storage, read> bps_dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> bps_partial: array<f32>; // [PIECES, D]

@compute @workgroup_size(64)
fn bag_bwd_pieces_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let p = id / D;
    let c = id - p * D;
    if (p >= PIECES) {
        return;
    }
    let s0 = bp_cuts[p];
    let s1 = bp_cuts[p + 1u];
    if (s0 >= s1) {
        return;
    }
    var g: f32 = 0.0;
    for (var s = s0; s < s1; s = s + 1u) {
        g = g + bps_dout[bp_dest[s] + c];
    }
    bps_partial[p * D + c] = g;
}

@group(0) @binding(3) var<storage, read> bcs_partial: array<f32>;

@compute @workgroup_size(64)
fn bag_bwd_combine_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let u = id / D;
    let c = id - u * D;
    if (u >= SEGMENTS) {
        return;
    }
    let row = bag_segment_row(u);
    if (row == NO_ROW) {
        return;
    }
    var g: f32 = 0.0;
    for (var p = bc_seg_pieces[u]; p < bc_seg_pieces[u + 1u]; p = p + 1u) {
        g = g + bcs_partial[p * D + c];
    }
    bag_update_row_s(u, c, row, g);
}
