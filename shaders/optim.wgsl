// Fused optimizers: the update of every element of a parameter buffer from its accumulated
// gradient, used by the MLPs' parameter arena and by TT cores whose update is not fused into
// their gradient kernel. CPU twin: src/twin/tt.rs (sgd_update, adagrad_update).
// Launcher: src/kernels/optim.rs.


// optim: the fused update of every element of a core from its accumulated gradient.
// OPTIMIZER 0: SGD w -= lr g. 1: Adagrad s += g^2; w -= lr g / (sqrt(s) + eps).

override OPTIMIZER: u32 = 0u;

@group(0) @binding(0) var<uniform> opt: OptParams;
@group(0) @binding(1) var<storage, read> opt_grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> opt_weight: array<core_t>; // f32, or TT cores as f16
@group(0) @binding(3) var<storage, read_write> opt_state: array<f32>;

@compute @workgroup_size(64)
fn optim(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= opt.len) {
        return;
    }
    let g = opt_grad[i];
    if (OPTIMIZER == 0u) {
        opt_weight[i] = core_t(f32(opt_weight[i]) - opt.lr * g);
    } else {
        let s = opt_state[i] + g * g;
        opt_state[i] = s;
        opt_weight[i] = core_t(f32(opt_weight[i]) - opt.lr * g / (sqrt(s) + opt.eps));
    }
}

// optim_arena: the same update over the MLPs' parameter arena (src/nn/mlp.rs), in blocks, and
// each weight's transposed copy written beside it (the forward's right operand), so that no
// step transposes the weights. One invocation per 4 x 4 block of a weight (4 vec4 rows in, 4
// vec4 columns of the copy out) or per vec4 of a bias; per element the arithmetic is the
// `optim` kernel's, so the parameters are bitwise the same. The gaps between tensors (zero,
// never trained) are left alone.
//
// The tensors, one vec4<u32> each: (first block, offset / 4, stride / 4, stored rows / 4 or 0
// for a bias). A weight at offset o with stride s and r stored rows has its copy [s, r] at o of
// the transposed buffer.
//
// With FINITE_CODE > 0 the update also checks its new values (the finiteness check of
// shaders/finite.wgsl `finite_span` over the arena, fused here): an invocation that wrote a NaN
// or an infinity raises word 3 of the step's slot of the statistics ring to FINITE_CODE.

override TENSORS: u32 = 1u;
override BLOCKS: u32 = 0u;
override FINITE_CODE: u32 = 0u;
const ARENA_SLOT_WORDS: u32 = 4u;
const ARENA_NON_FINITE_WORD: u32 = 3u;

@group(0) @binding(0) var<uniform> arena_opt: OptParams;
@group(0) @binding(1) var<storage, read> arena_grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> arena_weight: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> arena_state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> arena_weight_t: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> arena_tensors: array<vec4<u32>>;
@group(0) @binding(6) var<uniform> arena_step_slot: StepParams;
@group(0) @binding(7) var<storage, read_write> arena_stats: array<atomic<u32>>;

// Whether any lane of `w` is a NaN or an infinity (exponent bits all ones, tested on the bits).
fn arena_bad(w: vec4<f32>) -> bool {
    let e = vec4<u32>(0x7f800000u);
    return any((bitcast<vec4<u32>>(w) & e) == e);
}

fn arena_flag(bad: bool) {
    if (FINITE_CODE > 0u && bad) {
        let word = ARENA_SLOT_WORDS * arena_step_slot.slot + ARENA_NON_FINITE_WORD;
        atomicMax(&arena_stats[word], FINITE_CODE);
    }
}

// Updates the vec4 at `i` and returns the new weights.
fn arena_step(i: u32) -> vec4<f32> {
    let g = arena_grad[i];
    var w: vec4<f32>;
    if (OPTIMIZER == 0u) {
        w = arena_weight[i] - arena_opt.lr * g;
    } else {
        let s = arena_state[i] + g * g;
        arena_state[i] = s;
        w = arena_weight[i] - arena_opt.lr * g / (sqrt(s) + arena_opt.eps);
    }
    arena_weight[i] = w;
    return w;
}

@compute @workgroup_size(64)
fn optim_arena(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    if (id >= BLOCKS) {
        return;
    }
    // The tensor of block `id`: the last whose first block is at most `id`.
    var t = arena_tensors[0];
    for (var j = 1u; j < TENSORS; j = j + 1u) {
        let e = arena_tensors[j];
        if (e.x <= id) {
            t = e;
        }
    }
    let local = id - t.x;
    if (t.w == 0u) {
        arena_flag(arena_bad(arena_step(t.y + local)));
        return;
    }
    let rb = local / t.z;
    let cb = local - rb * t.z;
    let src = t.y + 4u * rb * t.z + cb;
    let x0 = arena_step(src);
    let x1 = arena_step(src + t.z);
    let x2 = arena_step(src + 2u * t.z);
    let x3 = arena_step(src + 3u * t.z);
    arena_flag(arena_bad(x0) || arena_bad(x1) || arena_bad(x2) || arena_bad(x3));
    let dst = t.y + 4u * cb * t.w + rb;
    arena_weight_t[dst] = vec4<f32>(x0.x, x1.x, x2.x, x3.x);
    arena_weight_t[dst + t.w] = vec4<f32>(x0.y, x1.y, x2.y, x3.y);
    arena_weight_t[dst + 2u * t.w] = vec4<f32>(x0.z, x1.z, x2.z, x3.z);
    arena_weight_t[dst + 3u * t.w] = vec4<f32>(x0.w, x1.w, x2.w, x3.w);
}
