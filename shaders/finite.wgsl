// Finiteness of the parameters after a training step, at no host round-trip: each check scans
// one region of a parameter buffer and, if it finds a NaN or an infinity, raises word 3 of the
// step's slot of the statistics ring (the ring the loss writes, shaders/loss.wgsl) to its
// region's code with atomicMax, so the word ends as the code of the first region (in the
// plan's order: codes count down) with a non-finite value, 0 when all are finite. The host
// reads it with the loss. CPU twin: src/twin/finite.rs. Launcher: src/kernels/finite.rs.
//
// A value is non-finite when its exponent bits are all ones (NaN or infinity), tested on the
// bits so that no fast-math assumption can fold it away.

// One region to check. Rust: kernels::finite::FiniteRegion.
struct FiniteRegion {
    offset: u32,   // first value (finite_span) / first row of the shard (finite_rows)
    len: u32,      // values (finite_span) / rows of the shard (finite_rows)
    code: u32,     // what the slot's word becomes (at least)
    dim: u32,      // values per row (finite_rows)
    segments: u32, // segments of the batch (finite_rows)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Words per slot of the statistics ring (kernels::loss::STATS_PER_STEP), and the one raised.
const SLOT_WORDS: u32 = 4u;
const NON_FINITE_WORD: u32 = 3u;

fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// finite_span over a buffer of f16 values (TT cores with `--tt-precision f16`): each 32-bit
// word holds two, each tested on its own exponent bits.
override HALVES: bool = false;

fn non_finite_span(v: f32) -> bool {
    if (HALVES) {
        let b = bitcast<u32>(v);
        return (b & 0x7c00u) == 0x7c00u || (b & 0x7c000000u) == 0x7c000000u;
    }
    return non_finite(v);
}

@group(0) @binding(0) var<uniform> fin_step: StepParams;
@group(0) @binding(1) var<uniform> fin_region: FiniteRegion;
@group(0) @binding(2) var<storage, read> fin_values: array<f32>;
@group(0) @binding(3) var<storage, read_write> fin_stats: array<atomic<u32>>;

// Values offset..offset+len, in a grid-stride loop over however many threads were launched.
@compute @workgroup_size(64)
fn finite_span(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let threads = nwg.x * nwg.y * WG;
    var bad = false;
    for (var i = linear_id(wid, nwg, lid); i < fin_region.len; i = i + threads) {
        bad = bad || non_finite_span(fin_values[fin_region.offset + i]);
    }
    if (bad) {
        atomicMax(&fin_stats[SLOT_WORDS * fin_step.slot + NON_FINITE_WORD], fin_region.code);
    }
}

@group(0) @binding(0) var<uniform> rows_step: StepParams;
@group(0) @binding(1) var<uniform> rows_region: FiniteRegion;
// The dense tables' segments of the step (shaders/embedding.wgsl): segs[2u + 1] = group row.
@group(0) @binding(2) var<storage, read> rows_segs: array<u32>;
@group(0) @binding(3) var<storage, read> rows_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> rows_stats: array<atomic<u32>>;

// The rows of one dense-table shard that the step updated (only they can have changed): one
// thread per (segment, column); unused segments are empty (start = end).
@compute @workgroup_size(64)
fn finite_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let d = rows_region.dim;
    let u = id / d;
    let c = id - u * d;
    if (u >= rows_region.segments) {
        return;
    }
    let lo = rows_region.offset;
    let row = rows_segs[2u * u + 1u];
    if (rows_segs[2u * u] >= rows_segs[2u * u + 2u] || row < lo || row - lo >= rows_region.len) {
        return;
    }
    if (non_finite(rows_weight[(row - lo) * d + c])) {
        atomicMax(&rows_stats[SLOT_WORDS * rows_step.slot + NON_FINITE_WORD], rows_region.code);
    }
}
