// TT chain products that share operands across a subgroup (needs wgpu::Features::SUBGROUP and an
// adapter whose subgroups all have SG lanes). CPU twin: src/twin/tt.rs (same products as
// chain_v4 in tt.wgsl, which the tests compare bitwise). Launcher: src/kernels/tt_subgroup.rs.
//
// Why: per lookup, C[n] = A[n] (M x K) * B[digit] (K x N) with a small M (the q of the first
// cores, 2 to 16), so in a per-lookup kernel every loaded value of B feeds only M multiply-adds.
// On CPU adapters (lavapipe) each lane's load is a scalar gather that costs far more than an FMA,
// so that kernel is load-bound. Here the lookups of a call are cut into pieces of up to L lookups
// whose digit of core CORE_K is the same (sorted on the GPU, see shaders/tt_route.wgsl): one subgroup takes
// one piece and SG x 4 columns. Each lane loads its 4 columns of B once for all L lookups, and
// the L x M rows of A at each step are loaded once by the whole subgroup (each lane loads L M / SG
// of them) and passed around with subgroupShuffle. Loads per FMA drop from (M + 4) / 4M to about
// (1/L + 4/SG) / 16. Real GPUs gain the same way (B reuse, fewer memory transactions).
//
// Each output element is written by one lane that sums K in ascending order, with the same
// expression as chain_v4: results are bitwise equal to it and deterministic.

const NONE: u32 = 0u; // an empty slot; a used one holds its lookup + 1
// Vec4 accumulators per lane (L * M) and A vec4s each lane loads per step (L * M / SG, rounded up).
const MAX_ROWS: u32 = 16u;
const MAX_OWN: u32 = 4u;

override SG: u32 = 8u;       // lanes of a subgroup = lanes of a workgroup
override L: u32 = 8u;        // lookups per piece
override PIECES: u32 = 1u;   // pieces per chunk in `pieces`
override M: u32 = 1u;
override K: u32 = 4u;        // multiple of 4
override N: u32 = 32u;       // multiple of 4 SG
override PK: u32 = 1u;       // rows of core CORE_K
override CORE_K: u32 = 1u;
override A_FROM_CORE: bool = false;

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<storage, read> digits: array<u32>;
@group(0) @binding(2) var<storage, read> pieces: array<u32>;
@group(0) @binding(3) var<storage, read> sg_a: array<vec4<lead_t>>;
@group(0) @binding(4) var<storage, read> sg_b: array<vec4<core_t>>;
@group(0) @binding(5) var<storage, read_write> sg_out: array<vec4<f32>>;

@compute @workgroup_size(SG)
fn chain_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(subgroup_invocation_id) lane: u32) {
    let nq = N / 4u;
    let kq = K / 4u;
    let groups = nq / SG;
    let task = wid.y * nwg.x + wid.x;
    let piece = task / groups;
    if (piece >= PIECES) {
        return;
    }
    let col = (task - piece * groups) * SG + lane; // this lane's vec4 column of C
    let slot0 = (chunk.index * PIECES + piece) * L;
    if (pieces[slot0] == NONE) {
        return;
    }
    let first = pieces[slot0] - 1u;
    // Every lookup of the piece has this digit of core CORE_K.
    let digit = min(digits[CORE_K * chunk.cap + first], PK - 1u);
    let b_base = digit * K * nq + col;
    // A rows this lane loads: rows e = i SG + lane of the piece's L x M rows (lookup e / M, row
    // e % M). Missing lookups (a piece's tail) repeat the first one and are not stored.
    let rows = L * M;
    let own = (rows + SG - 1u) / SG;
    var own_at: array<u32, MAX_OWN>;
    for (var i = 0u; i < own; i = i + 1u) {
        let e = min(i * SG + lane, rows - 1u); // lanes past the last row repeat it (unused)
        var g = first;
        if (pieces[slot0 + e / M] != NONE) {
            g = pieces[slot0 + e / M] - 1u;
        }
        var base = (g - chunk.start) * M * kq;
        if (A_FROM_CORE) {
            base = digits[g] * M * kq;
        }
        own_at[i] = base + (e % M) * kq;
    }
    var acc: array<vec4<f32>, MAX_ROWS>;
    for (var e = 0u; e < rows; e = e + 1u) {
        acc[e] = vec4<f32>(0.0);
    }
    for (var k4 = 0u; k4 < kq; k4 = k4 + 1u) {
        var mine: array<vec4<f32>, MAX_OWN>;
        for (var i = 0u; i < own; i = i + 1u) {
            mine[i] = vec4<f32>(sg_a[own_at[i] + k4]);
        }
        let row = b_base + 4u * k4 * nq;
        let b0 = vec4<f32>(sg_b[row]);
        let b1 = vec4<f32>(sg_b[row + nq]);
        let b2 = vec4<f32>(sg_b[row + 2u * nq]);
        let b3 = vec4<f32>(sg_b[row + 3u * nq]);
        for (var e = 0u; e < rows; e = e + 1u) {
            let x = subgroupShuffle(mine[e / SG], e % SG);
            acc[e] = acc[e] + x.x * b0 + x.y * b1 + x.z * b2 + x.w * b3;
        }
    }
    for (var l = 0u; l < L; l = l + 1u) {
        if (pieces[slot0 + l] != NONE) {
            let g = pieces[slot0 + l] - 1u;
            let o = (g - chunk.start) * M * nq + col;
            for (var m = 0u; m < M; m = m + 1u) {
                sg_out[o + m * nq] = acc[l * M + m];
            }
        }
    }
}
