// TT-EmbeddingBag kernels: the per-lookup core chain (forward and its transpose for backward),
// bag pooling, the per-lookup output gradient, and the core gradients (row by row or as pieces
// and a combine) with the update fused in where a plan has one chunk (the whole-core optimizers
// are in optim.wgsl). CPU twin: src/twin/tt.rs. Launchers: src/kernels/tt.rs.
//
// Every kernel is deterministic: each output element is written by exactly one invocation, which
// reduces its terms in a fixed order (lookups of a row in the order of the GPU's stable sort,
// shaders/tt_route.wgsl; chunks one after the other). No atomics.
//
// `core_t` (TT cores: f32 or f16) and `lead_t` (A / P: core 0 or f32 scratch) are aliases from
// src/gpu/shaders.rs (ShaderTypes); reads widen to f32, arithmetic is f32, writes round once.
// Layout: core k is [p_k, R_k * q_k * R_{k+1}]; the slice of digit i is row-major [R_k, q_k, R_{k+1}].
// Per-lookup prefixes P_k are [Q_k, R_k] (Q_k = q_0 ... q_{k-1}), row-major.

// The chunk uniform (`Chunk`), `WG` and `linear_id` come from shaders/prelude.wgsl.

// ---------------------------------------------------------------------------------------------
// chain: C[n] = A[n] (M x K) * B (K x N), B = the slice of core CORE_K at the lookup's digit
// (or its transpose [N, K] stored, when TRANS_B). A comes from scratch (one M x K block per
// lookup) or, when A_FROM_CORE, from core 0's slice at the lookup's digit 0.
// Each invocation computes a 4 x 4 register tile of C.

override M: u32 = 1u;
override K: u32 = 1u;
override N: u32 = 4u; // launchers always set M, K, N; the defaults only have to validate
override CORE_K: u32 = 1u;
override TRANS_B: bool = false;
override A_FROM_CORE: bool = false;

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<storage, read> digits: array<u32>;
@group(0) @binding(2) var<storage, read> chain_a: array<lead_t>;
@group(0) @binding(3) var<storage, read> chain_b: array<core_t>;
@group(0) @binding(4) var<storage, read_write> chain_out: array<f32>;

@compute @workgroup_size(64)
fn chain(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let mt = (M + 3u) / 4u;
    let nt = (N + 3u) / 4u;
    let per = mt * nt;
    let id = linear_id(wid, nwg, lid);
    let n = id / per;
    if (n >= chunk.len) {
        return;
    }
    let rem = id - n * per;
    let m0 = (rem / nt) * 4u;
    let c0 = (rem % nt) * 4u;
    let g = chunk.start + n;
    var a_base = n * M * K;
    if (A_FROM_CORE) {
        a_base = digits[g] * M * K;
    }
    let b_base = digits[CORE_K * chunk.cap + g] * K * N;
    // Clamped rows/columns load valid memory; their results are not stored.
    let m1 = min(m0 + 1u, M - 1u);
    let m2 = min(m0 + 2u, M - 1u);
    let m3 = min(m0 + 3u, M - 1u);
    let c1 = min(c0 + 1u, N - 1u);
    let c2 = min(c0 + 2u, N - 1u);
    let c3 = min(c0 + 3u, N - 1u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < K; kk = kk + 1u) {
        var b: vec4<f32>;
        if (TRANS_B) {
            b = vec4<f32>(f32(chain_b[b_base + c0 * K + kk]), f32(chain_b[b_base + c1 * K + kk]),
                          f32(chain_b[b_base + c2 * K + kk]), f32(chain_b[b_base + c3 * K + kk]));
        } else {
            let row = b_base + kk * N;
            b = vec4<f32>(f32(chain_b[row + c0]), f32(chain_b[row + c1]), f32(chain_b[row + c2]), f32(chain_b[row + c3]));
        }
        acc0 = acc0 + f32(chain_a[a_base + m0 * K + kk]) * b;
        acc1 = acc1 + f32(chain_a[a_base + m1 * K + kk]) * b;
        acc2 = acc2 + f32(chain_a[a_base + m2 * K + kk]) * b;
        acc3 = acc3 + f32(chain_a[a_base + m3 * K + kk]) * b;
    }
    let o = n * M * N;
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + i;
        if (m < M) {
            for (var j = 0u; j < 4u; j = j + 1u) {
                let c = c0 + j;
                if (c < N) {
                    chain_out[o + m * N + c] = accs[i][j];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pool: out[b, c] (+)= sum over the chunk's lookups n of bag b (in order) of scale[n] * rows[n, c].
// scale holds the per-sample weight (sum), 1 (sum) or 1 / bag length (mean). Bag b's row starts
// at element dest[b] of `out` (any layout: a column block of the interaction's input, several
// tables' bags in one call). The first chunk writes every bag (ACCUMULATE false: empty bags get
// zeros), later chunks add their part, so no clear is needed.

override D: u32 = 1u;
override ACCUMULATE: bool = false;

@group(0) @binding(1) var<storage, read> pool_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> pool_scale: array<f32>;
@group(0) @binding(3) var<storage, read> pool_rows: array<f32>;
@group(0) @binding(4) var<storage, read_write> pool_out: array<f32>;
@group(0) @binding(5) var<storage, read> pool_dest: array<u32>;

@compute @workgroup_size(64)
fn pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let b = id / D;
    if (b >= chunk.num_bags) {
        return;
    }
    let c = id - b * D;
    let lo = max(pool_offsets[b], chunk.start);
    let hi = min(pool_offsets[b + 1u], chunk.start + chunk.len);
    if (ACCUMULATE && lo >= hi) {
        return;
    }
    var acc = 0.0;
    for (var n = lo; n < hi; n = n + 1u) {
        acc = acc + pool_scale[n] * pool_rows[(n - chunk.start) * D + c];
    }
    let o = pool_dest[b] + c;
    if (ACCUMULATE) {
        pool_out[o] = pool_out[o] + acc;
    } else {
        pool_out[o] = acc;
    }
}

// ---------------------------------------------------------------------------------------------
// row_grad: drow[n, c] = scale[n] * dout[dest[n] + c], the gradient reaching each lookup's row
// (dest[n]: where the lookup's bag's row starts, as in pool).

@group(0) @binding(1) var<storage, read> rg_dest: array<u32>;
@group(0) @binding(2) var<storage, read> rg_scale: array<f32>;
@group(0) @binding(3) var<storage, read> rg_dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> rg_drow: array<f32>;

@compute @workgroup_size(64)
fn row_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let n = id / D;
    if (n >= chunk.len) {
        return;
    }
    let c = id - n * D;
    let g = chunk.start + n;
    rg_drow[n * D + c] = rg_scale[g] * rg_dout[rg_dest[g] + c];
}

// ---------------------------------------------------------------------------------------------
// core_grad: grad_k[row] += sum over the chunk's lookups n with digit_k(n) = row, in sorted order,
// of P_k(n)^T (RK x QK) * dP_{k+1}(n) (QK x NK). P_k is 1 for core 0 (P_MODE 0), core 0's slice
// for core 1 (P_MODE 1), scratch otherwise (P_MODE 2). Each invocation owns a 4 x 4 tile of one
// row's [RK, NK] gradient.

override QK: u32 = 1u;
override RK: u32 = 4u; // RK, NK: launchers always set them; defaults that validate (vec4 tiles)
override NK: u32 = 4u;
override PK: u32 = 1u;
override P_MODE: u32 = 0u;
// The fused update of the rows this call touches (a plan with one chunk: the row's gradient is
// complete in the invocation): 0 none (a separate pass updates the whole core), 1 SGD,
// 2 Adagrad. Rows without lookups are not touched, as their gradient is zero.
override FUSED_UPDATE: u32 = 0u;
// Lookups summed in registers before their sum is added to the gradient in memory.
override BLOCK: u32 = 16u;

@group(0) @binding(7) var<uniform> cg_opt: OptParams;
@group(0) @binding(8) var<storage, read_write> cg_weight: array<core_t>;
@group(0) @binding(9) var<storage, read_write> cg_state: array<f32>;

// Applies the fused update to element i of the core with gradient g.
fn fused_update(i: u32, g: f32) {
    if (FUSED_UPDATE == 1u) {
        cg_weight[i] = core_t(f32(cg_weight[i]) - cg_opt.lr * g);
    } else if (FUSED_UPDATE == 2u) {
        let st = cg_state[i] + g * g;
        cg_state[i] = st;
        cg_weight[i] = core_t(f32(cg_weight[i]) - cg_opt.lr * g / (sqrt(st) + cg_opt.eps));
    }
}

@group(0) @binding(1) var<storage, read> cg_digits: array<u32>;
@group(0) @binding(2) var<storage, read> cg_sorted: array<u32>;
@group(0) @binding(3) var<storage, read> cg_segments: array<u32>;
@group(0) @binding(4) var<storage, read> cg_p: array<lead_t>;
@group(0) @binding(5) var<storage, read> cg_dp: array<f32>;
@group(0) @binding(6) var<storage, read_write> cg_grad: array<f32>;

// Lookup g's product P^T dP over core_grad's 4 x 4 tile (rows r0..r3, columns c), its QK
// terms summed in order from zero: one vec4 of columns per row.
fn core_grad_lookup(g: u32, r0: u32, r1: u32, r2: u32, r3: u32, c: vec4<u32>)
    -> array<vec4<f32>, 4> {
    let n = g - chunk.start;
    var p_base = n * QK * RK;
    if (P_MODE == 1u) {
        p_base = cg_digits[g] * QK * RK;
    }
    let dp_base = n * QK * NK;
    var one = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0),
                                  vec4<f32>(0.0));
    for (var a = 0u; a < QK; a = a + 1u) {
        let d = dp_base + a * NK;
        let dpv = vec4<f32>(cg_dp[d + c.x], cg_dp[d + c.y], cg_dp[d + c.z], cg_dp[d + c.w]);
        var pv = vec4<f32>(1.0);
        if (P_MODE != 0u) {
            let p = p_base + a * RK;
            pv = vec4<f32>(f32(cg_p[p + r0]), f32(cg_p[p + r1]), f32(cg_p[p + r2]), f32(cg_p[p + r3]));
        }
        one[0] = one[0] + pv.x * dpv;
        one[1] = one[1] + pv.y * dpv;
        one[2] = one[2] + pv.z * dpv;
        one[3] = one[3] + pv.w * dpv;
    }
    return one;
}

@compute @workgroup_size(64)
fn core_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let rt = (RK + 3u) / 4u;
    let nt = (NK + 3u) / 4u;
    let per = rt * nt;
    let id = linear_id(wid, nwg, lid);
    let row = id / per;
    if (row >= PK) {
        return;
    }
    let seg = chunk.index * (PK + 1u) + row;
    let s0 = cg_segments[seg];
    let s1 = cg_segments[seg + 1u];
    if (s0 >= s1) {
        return;
    }
    let rem = id - row * per;
    let r0 = (rem / nt) * 4u;
    let c0 = (rem % nt) * 4u;
    let r1 = min(r0 + 1u, RK - 1u);
    let r2 = min(r0 + 2u, RK - 1u);
    let r3 = min(r0 + 3u, RK - 1u);
    let c1 = min(c0 + 1u, NK - 1u);
    let c2 = min(c0 + 2u, NK - 1u);
    let c3 = min(c0 + 3u, NK - 1u);
    let core_section = CORE_K * chunk.cap;
    let o = row * RK * NK;
    // Blocks of BLOCK lookups are summed in registers, then added to the row's gradient in
    // memory: a long segment (a hot row) is a sum of short sums, not one long serial sum.
    for (var b0 = s0; b0 < s1; b0 = b0 + BLOCK) {
        var acc0 = vec4<f32>(0.0);
        var acc1 = vec4<f32>(0.0);
        var acc2 = vec4<f32>(0.0);
        var acc3 = vec4<f32>(0.0);
        for (var s = b0; s < min(b0 + BLOCK, s1); s = s + 1u) {
            // Each lookup's product summed on its own, then added (see core_grad_block_v4).
            let one = core_grad_lookup(cg_sorted[core_section + s], r0, r1, r2, r3,
                                       vec4<u32>(c0, c1, c2, c3));
            acc0 = acc0 + one[0];
            acc1 = acc1 + one[1];
            acc2 = acc2 + one[2];
            acc3 = acc3 + one[3];
        }
        let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
        for (var i = 0u; i < 4u; i = i + 1u) {
            let r = r0 + i;
            if (r < RK) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    let c = c0 + j;
                    if (c < NK) {
                        let at = o + r * NK + c;
                        cg_grad[at] = cg_grad[at] + accs[i][j];
                    }
                }
            }
        }
    }
    if (FUSED_UPDATE != 0u) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let r = r0 + i;
            if (r < RK) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    let c = c0 + j;
                    if (c < NK) {
                        let at = o + r * NK + c;
                        fused_update(at, cg_grad[at]);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vectorised variants for shapes whose inner dimensions are multiples of 4 (the common case:
// ranks and q_k R_{k+1} of real tables). They read vec4s along contiguous memory, which both CPU
// adapters (SIMD lanes) and GPUs (wide loads) execute far faster than scalar gathers. The
// launcher picks them; the scalar kernels above remain for any other shape.

@group(0) @binding(2) var<storage, read> v4_a: array<vec4<lead_t>>;
@group(0) @binding(3) var<storage, read> v4_b: array<vec4<core_t>>;
@group(0) @binding(4) var<storage, read_write> v4_out: array<vec4<f32>>;

// C = A * B with K % 4 == 0 and N % (4 TNQ) == 0: each invocation owns 4 rows x TNQ vec4 columns.
override TNQ: u32 = 1u;

@compute @workgroup_size(64)
fn chain_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let mt = (M + 3u) / 4u;
    let nq = N / 4u;
    let ntiles = nq / TNQ;
    let kq = K / 4u;
    let per = mt * ntiles;
    let id = linear_id(wid, nwg, lid);
    let n = id / per;
    if (n >= chunk.len) {
        return;
    }
    let rem = id - n * per;
    let m0 = (rem / ntiles) * 4u;
    // Column j of this invocation is vec4 column tile + j * ntiles: for a fixed j, neighbouring
    // invocations (SIMD lanes on CPU adapters, threads of a warp on GPUs) read neighbouring vec4s.
    let cq = rem % ntiles;
    let g = chunk.start + n;
    var a_base = n * M * kq;
    if (A_FROM_CORE) {
        a_base = digits[g] * M * kq;
    }
    let b_base = digits[CORE_K * chunk.cap + g] * K * nq + cq;
    let a0 = a_base + m0 * kq;
    let a1 = a_base + min(m0 + 1u, M - 1u) * kq;
    let a2 = a_base + min(m0 + 2u, M - 1u) * kq;
    let a3 = a_base + min(m0 + 3u, M - 1u) * kq;
    var acc: array<vec4<f32>, 16>;
    for (var t = 0u; t < 16u; t = t + 1u) {
        acc[t] = vec4<f32>(0.0);
    }
    for (var k4 = 0u; k4 < kq; k4 = k4 + 1u) {
        let x0 = vec4<f32>(v4_a[a0 + k4]);
        let x1 = vec4<f32>(v4_a[a1 + k4]);
        let x2 = vec4<f32>(v4_a[a2 + k4]);
        let x3 = vec4<f32>(v4_a[a3 + k4]);
        let row = b_base + 4u * k4 * nq;
        for (var j = 0u; j < TNQ; j = j + 1u) {
            let col = row + j * ntiles;
            let b0 = vec4<f32>(v4_b[col]);
            let b1 = vec4<f32>(v4_b[col + nq]);
            let b2 = vec4<f32>(v4_b[col + 2u * nq]);
            let b3 = vec4<f32>(v4_b[col + 3u * nq]);
            acc[j] = acc[j] + x0.x * b0 + x0.y * b1 + x0.z * b2 + x0.w * b3;
            acc[4u + j] = acc[4u + j] + x1.x * b0 + x1.y * b1 + x1.z * b2 + x1.w * b3;
            acc[8u + j] = acc[8u + j] + x2.x * b0 + x2.y * b1 + x2.z * b2 + x2.w * b3;
            acc[12u + j] = acc[12u + j] + x3.x * b0 + x3.y * b1 + x3.z * b2 + x3.w * b3;
        }
    }
    let o = n * M * nq + cq;
    for (var i = 0u; i < 4u; i = i + 1u) {
        if (m0 + i < M) {
            for (var j = 0u; j < TNQ; j = j + 1u) {
                v4_out[o + (m0 + i) * nq + j * ntiles] = acc[4u * i + j];
            }
        }
    }
}

// chain_v4 with one row of A per invocation (the GPU class: M times the invocations, so that
// the products of small M still fill a GPU): each invocation owns 1 row x TNQ vec4 columns,
// laid out as in chain_v4, and sums the same terms in the same order.
@compute @workgroup_size(64)
fn chain_row_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let nq = N / 4u;
    let ntiles = nq / TNQ;
    let kq = K / 4u;
    let per = M * ntiles;
    let id = linear_id(wid, nwg, lid);
    let n = id / per;
    if (n >= chunk.len) {
        return;
    }
    let rem = id - n * per;
    let m = rem / ntiles;
    let cq = rem % ntiles;
    let g = chunk.start + n;
    var a_base = n * M * kq;
    if (A_FROM_CORE) {
        a_base = digits[g] * M * kq;
    }
    let b_base = digits[CORE_K * chunk.cap + g] * K * nq + cq;
    let a0 = a_base + m * kq;
    var acc: array<vec4<f32>, 4>;
    for (var t = 0u; t < 4u; t = t + 1u) {
        acc[t] = vec4<f32>(0.0);
    }
    for (var k4 = 0u; k4 < kq; k4 = k4 + 1u) {
        let x0 = vec4<f32>(v4_a[a0 + k4]);
        let row = b_base + 4u * k4 * nq;
        for (var j = 0u; j < TNQ; j = j + 1u) {
            let col = row + j * ntiles;
            let b0 = vec4<f32>(v4_b[col]);
            let b1 = vec4<f32>(v4_b[col + nq]);
            let b2 = vec4<f32>(v4_b[col + 2u * nq]);
            let b3 = vec4<f32>(v4_b[col + 3u * nq]);
            acc[j] = acc[j] + x0.x * b0 + x0.y * b1 + x0.z * b2 + x0.w * b3;
        }
    }
    let o = n * M * nq + cq + m * nq;
    for (var j = 0u; j < TNQ; j = j + 1u) {
        v4_out[o + j * ntiles] = acc[j];
    }
}

// C = A * B^T (B stored [N, K]) with K % 4 == 0: every output is a dot product of two
// contiguous rows, read as vec4s. Each invocation owns 4 rows x 4 TNQ columns.
@compute @workgroup_size(64)
fn chain_t_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let mt = (M + 3u) / 4u;
    let nt = (N + 4u * TNQ - 1u) / (4u * TNQ);
    let kq = K / 4u;
    let per = mt * nt;
    let id = linear_id(wid, nwg, lid);
    let n = id / per;
    if (n >= chunk.len) {
        return;
    }
    let rem = id - n * per;
    let m0 = (rem / nt) * 4u;
    let c0 = (rem % nt) * 4u * TNQ;
    let g = chunk.start + n;
    let a_base = n * M * kq;
    let b_base = digits[CORE_K * chunk.cap + g] * N * kq;
    let a0 = a_base + m0 * kq;
    let a1 = a_base + min(m0 + 1u, M - 1u) * kq;
    let a2 = a_base + min(m0 + 2u, M - 1u) * kq;
    let a3 = a_base + min(m0 + 3u, M - 1u) * kq;
    var acc: array<vec4<f32>, 16>;
    for (var t = 0u; t < 16u; t = t + 1u) {
        acc[t] = vec4<f32>(0.0);
    }
    for (var k4 = 0u; k4 < kq; k4 = k4 + 1u) {
        let x0 = vec4<f32>(v4_a[a0 + k4]);
        let x1 = vec4<f32>(v4_a[a1 + k4]);
        let x2 = vec4<f32>(v4_a[a2 + k4]);
        let x3 = vec4<f32>(v4_a[a3 + k4]);
        for (var j = 0u; j < TNQ; j = j + 1u) {
            let c = c0 + 4u * j;
            let y0 = vec4<f32>(v4_b[b_base + min(c, N - 1u) * kq + k4]);
            let y1 = vec4<f32>(v4_b[b_base + min(c + 1u, N - 1u) * kq + k4]);
            let y2 = vec4<f32>(v4_b[b_base + min(c + 2u, N - 1u) * kq + k4]);
            let y3 = vec4<f32>(v4_b[b_base + min(c + 3u, N - 1u) * kq + k4]);
            acc[j] = acc[j] + vec4<f32>(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
            acc[4u + j] = acc[4u + j] + vec4<f32>(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
            acc[8u + j] = acc[8u + j] + vec4<f32>(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
            acc[12u + j] = acc[12u + j] + vec4<f32>(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
        }
    }
    let o = n * M * N;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + i;
        if (m < M) {
            for (var j = 0u; j < 4u * TNQ; j = j + 1u) {
                let c = c0 + j;
                if (c < N) {
                    chain_out[o + m * N + c] = acc[4u * i + j / 4u][j % 4u];
                }
            }
        }
    }
}

@group(0) @binding(4) var<storage, read> cg4_p: array<vec4<lead_t>>;
@group(0) @binding(5) var<storage, read> cg4_dp: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> cg4_grad: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> cg4_weight: array<vec4<core_t>>;
@group(0) @binding(9) var<storage, read_write> cg4_state: array<vec4<f32>>;

// core_grad with NK % (4 TNQ) == 0, RK % (4 TRQ) == 0 (or P_MODE == 0 with TRQ == 1): each
// invocation owns 4 TRQ rows x TNQ vec4 columns of one core row's gradient. Every loaded value
// feeds 4 TNQ (p) or 4 TRQ (dp) multiply-adds; on CPU adapters loads cost far more than FMAs.
override TRQ: u32 = 1u;

// One block's sum, shared by core_grad_v4 and core_grad_pieces_v4 so that both add the same
// terms in the same order (bitwise equal results): acc[16 i + j + 4 e] for i < TRQ, j < TNQ,
// e < 4 is row r0 + 4 i + e, vec4 column cq + j ntiles of the core row's [RK, NK] gradient,
// summed over the sorted lookups s0 <= s < s1 in order, from zero. Each lookup's product is
// summed on its own (core_grad_lookup_v4) and then added to the block's sum: the running sum,
// which grows with the lookups, meets one rounding per lookup instead of one per term (QK
// times fewer), as the reference adds each lookup's product to the gradient. A single serial
// sum over the block was 2-4x less accurate on the last core at ranks 32, D 64 (BENCHMARKS.md,
// "Exactness").
fn core_grad_block_v4(acc: ptr<function, array<vec4<f32>, 64>>, s0: u32, s1: u32, r0: u32,
                      cq: u32, ntiles: u32) {
    for (var i = 0u; i < TRQ; i = i + 1u) {
        for (var j = 0u; j < TNQ; j = j + 1u) {
            for (var e = 0u; e < 16u; e = e + 4u) {
                (*acc)[16u * i + j + e] = vec4<f32>(0.0);
            }
        }
    }
    var one: array<vec4<f32>, 64>;
    for (var s = s0; s < s1; s = s + 1u) {
        core_grad_lookup_v4(&one, cg_sorted[CORE_K * chunk.cap + s], r0, cq, ntiles);
        for (var i = 0u; i < TRQ; i = i + 1u) {
            for (var j = 0u; j < TNQ; j = j + 1u) {
                for (var e = 0u; e < 16u; e = e + 4u) {
                    let t = 16u * i + j + e;
                    (*acc)[t] = (*acc)[t] + one[t];
                }
            }
        }
    }
}

// Lookup g's product P^T dP over the tile of core_grad_block_v4 (same layout), its QK terms
// summed in order from zero.
fn core_grad_lookup_v4(one: ptr<function, array<vec4<f32>, 64>>, g: u32, r0: u32, cq: u32,
                       ntiles: u32) {
    let nq = NK / 4u;
    let rq = RK / 4u;
    for (var i = 0u; i < TRQ; i = i + 1u) {
        for (var j = 0u; j < TNQ; j = j + 1u) {
            for (var e = 0u; e < 16u; e = e + 4u) {
                (*one)[16u * i + j + e] = vec4<f32>(0.0);
            }
        }
    }
    let n = g - chunk.start;
    var p_base = n * QK * rq + r0 / 4u;
    if (P_MODE == 1u) {
        p_base = cg_digits[g] * QK * rq + r0 / 4u;
    }
    var d = n * QK * nq + cq;
    for (var a = 0u; a < QK; a = a + 1u) {
        var pvs: array<vec4<f32>, 4>;
        for (var i = 0u; i < TRQ; i = i + 1u) {
            pvs[i] = vec4<f32>(1.0, 0.0, 0.0, 0.0);
            if (P_MODE != 0u) {
                pvs[i] = vec4<f32>(cg4_p[p_base + a * rq + i]);
            }
        }
        for (var j = 0u; j < TNQ; j = j + 1u) {
            let dpv = cg4_dp[d + j * ntiles];
            for (var i = 0u; i < TRQ; i = i + 1u) {
                let pv = pvs[i];
                let t = 16u * i + j;
                (*one)[t] = (*one)[t] + pv.x * dpv;
                (*one)[t + 4u] = (*one)[t + 4u] + pv.y * dpv;
                (*one)[t + 8u] = (*one)[t + 8u] + pv.z * dpv;
                (*one)[t + 12u] = (*one)[t + 12u] + pv.w * dpv;
            }
        }
        d = d + nq;
    }
}

@compute @workgroup_size(64)
fn core_grad_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let rt = (RK + 4u * TRQ - 1u) / (4u * TRQ);
    let nq = NK / 4u;
    let ntiles = nq / TNQ;
    let per = rt * ntiles;
    let id = linear_id(wid, nwg, lid);
    let row = id / per;
    if (row >= PK) {
        return;
    }
    let seg = chunk.index * (PK + 1u) + row;
    let s0 = cg_segments[seg];
    let s1 = cg_segments[seg + 1u];
    if (s0 >= s1) {
        return;
    }
    let rem = id - row * per;
    let r0 = (rem / ntiles) * 4u * TRQ;
    let cq = rem % ntiles; // columns cq + j * ntiles, interleaved as in chain_v4
    let o = row * RK * nq + cq;
    // Blocks of BLOCK lookups summed in registers, then added to the gradient in memory (see
    // core_grad).
    for (var b0 = s0; b0 < s1; b0 = b0 + BLOCK) {
        var acc: array<vec4<f32>, 64>;
        core_grad_block_v4(&acc, b0, min(b0 + BLOCK, s1), r0, cq, ntiles);
        for (var i = 0u; i < 4u * TRQ; i = i + 1u) {
            if (r0 + i < RK) {
                for (var j = 0u; j < TNQ; j = j + 1u) {
                    let at = o + (r0 + i) * nq + j * ntiles;
                    cg4_grad[at] = cg4_grad[at] + acc[4u * i + j];
                }
            }
        }
    }
    if (FUSED_UPDATE != 0u) {
        for (var i = 0u; i < 4u * TRQ; i = i + 1u) {
            if (r0 + i < RK) {
                for (var j = 0u; j < TNQ; j = j + 1u) {
                    let at = o + (r0 + i) * nq + j * ntiles;
                    let g = cg4_grad[at];
                    if (FUSED_UPDATE == 1u) {
                        cg4_weight[at] = vec4<core_t>(vec4<f32>(cg4_weight[at]) - cg_opt.lr * g);
                    } else {
                        let st = cg4_state[at] + g * g;
                        cg4_state[at] = st;
                        cg4_weight[at] = vec4<core_t>(vec4<f32>(cg4_weight[at]) - cg_opt.lr * g / (sqrt(st) + cg_opt.eps));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The core gradient as pieces (the strategy for GPUs): core_grad_v4 gives each core row to one
// invocation, which sums the row's lookups block after block, so a hot row is one long serial
// loop. Here each piece of up to BLOCK lookups of one row (the route kernels cut them) is summed
// by its own invocations into a partial gradient, and core_grad_combine adds a row's partials to
// its gradient in piece order. Same block sums, same order of additions: bitwise equal to
// core_grad_v4, with the parallelism of the pieces.

override PIECES: u32 = 1u; // gradient piece slots per chunk

@group(0) @binding(6) var<storage, read_write> cgp_partial: array<vec4<f32>>; // [PIECES, RK, NK]
@group(0) @binding(7) var<storage, read> cgp_starts: array<u32>; // per chunk: first piece of each row

@compute @workgroup_size(64)
fn core_grad_pieces_v4(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let rt = (RK + 4u * TRQ - 1u) / (4u * TRQ);
    let nq = NK / 4u;
    let ntiles = nq / TNQ;
    let per = rt * ntiles;
    let id = linear_id(wid, nwg, lid);
    let piece = id / per;
    let table = chunk.index * (PK + 1u);
    if (piece >= PIECES || piece >= cgp_starts[table + PK]) {
        return;
    }
    // The row of the piece: the last row whose first piece is at or before it (rows without
    // lookups share their start with the next). Invariant: starts[lo] <= piece < starts[hi].
    var lo = 0u;
    var hi = PK;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (cgp_starts[table + mid] <= piece) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let seg = table + lo;
    let b0 = cg_segments[seg] + (piece - cgp_starts[seg]) * BLOCK;
    let s1 = min(b0 + BLOCK, cg_segments[seg + 1u]);
    let rem = id - piece * per;
    let r0 = (rem / ntiles) * 4u * TRQ;
    let cq = rem % ntiles;
    // The block sum of core_grad_v4: the same function, so the same additions in the same order.
    var acc: array<vec4<f32>, 64>;
    core_grad_block_v4(&acc, b0, s1, r0, cq, ntiles);
    let o = piece * RK * nq + cq;
    for (var i = 0u; i < 4u * TRQ; i = i + 1u) {
        if (r0 + i < RK) {
            for (var j = 0u; j < TNQ; j = j + 1u) {
                cgp_partial[o + (r0 + i) * nq + j * ntiles] = acc[4u * i + j];
            }
        }
    }
}

// The row of gradient piece `piece` of the chunk: the last row whose first piece is at or
// before it (rows without lookups share their start with the next). Invariant:
// starts[lo] <= piece < starts[hi].
fn piece_row(table: u32, piece: u32) -> u32 {
    var lo = 0u;
    var hi = PK;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (cgp_starts[table + mid] <= piece) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// core_grad_pieces_v4 with one row of the [RK, NK] slice per invocation (the GPU class: 4 TRQ
// times the invocations, so that a few pieces still fill a GPU): each invocation owns 1 row x
// TNQ vec4 columns and adds the same terms in the same order as core_grad_block_v4.
@compute @workgroup_size(64)
fn core_grad_pieces_row(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let nq = NK / 4u;
    let ntiles = nq / TNQ;
    let per = RK * ntiles;
    let id = linear_id(wid, nwg, lid);
    let piece = id / per;
    let table = chunk.index * (PK + 1u);
    if (piece >= PIECES || piece >= cgp_starts[table + PK]) {
        return;
    }
    let seg = table + piece_row(table, piece);
    let b0 = cg_segments[seg] + (piece - cgp_starts[seg]) * BLOCK;
    let s1 = min(b0 + BLOCK, cg_segments[seg + 1u]);
    let rem = id - piece * per;
    let r = rem / ntiles;
    let cq = rem % ntiles;
    let core_section = CORE_K * chunk.cap;
    var acc: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        acc[j] = vec4<f32>(0.0);
    }
    for (var s = b0; s < s1; s = s + 1u) {
        let g = cg_sorted[core_section + s];
        let n = g - chunk.start;
        var p_base = n * QK * RK + r;
        if (P_MODE == 1u) {
            p_base = cg_digits[g] * QK * RK + r;
        }
        var d = n * QK * nq + cq;
        // Each lookup's QK terms summed on their own, then added to the piece's sum: the
        // additions of core_grad_block_v4 (see core_grad_lookup_v4), so both stay bitwise equal.
        var one: array<vec4<f32>, 4>;
        for (var j = 0u; j < 4u; j = j + 1u) {
            one[j] = vec4<f32>(0.0);
        }
        for (var a = 0u; a < QK; a = a + 1u) {
            var pv = 1.0;
            if (P_MODE != 0u) {
                pv = f32(cg_p[p_base + a * RK]);
            }
            for (var j = 0u; j < TNQ; j = j + 1u) {
                one[j] = one[j] + pv * cg4_dp[d + j * ntiles];
            }
            d = d + nq;
        }
        for (var j = 0u; j < TNQ; j = j + 1u) {
            acc[j] = acc[j] + one[j];
        }
    }
    let o = piece * RK * nq + r * nq + cq;
    for (var j = 0u; j < TNQ; j = j + 1u) {
        cgp_partial[o + j * ntiles] = acc[j];
    }
}

@group(0) @binding(1) var<storage, read> cc_starts: array<u32>;
@group(0) @binding(2) var<storage, read> cc_partial: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> cc_grad: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> cc_opt: OptParams;
@group(0) @binding(5) var<storage, read_write> cc_weight: array<vec4<core_t>>;
@group(0) @binding(6) var<storage, read_write> cc_state: array<vec4<f32>>;

// One invocation per vec4 of a row's gradient: adds the row's partials in piece order, then
// the fused update where FUSED_UPDATE (as core_grad_v4 does).
@compute @workgroup_size(64)
fn core_grad_combine(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let slice = RK * NK / 4u;
    let id = linear_id(wid, nwg, lid);
    let row = id / slice;
    if (row >= PK) {
        return;
    }
    let e = id - row * slice;
    let table = chunk.index * (PK + 1u) + row;
    let p0 = cc_starts[table];
    let p1 = cc_starts[table + 1u];
    if (p0 >= p1) {
        return;
    }
    let at = id;
    var g = cc_grad[at];
    for (var p = p0; p < p1; p = p + 1u) {
        g = g + cc_partial[p * slice + e];
    }
    cc_grad[at] = g;
    if (FUSED_UPDATE == 1u) {
        cc_weight[at] = vec4<core_t>(vec4<f32>(cc_weight[at]) - cc_opt.lr * g);
    } else if (FUSED_UPDATE == 2u) {
        let st = cc_state[at] + g * g;
        cc_state[at] = st;
        cc_weight[at] = vec4<core_t>(vec4<f32>(cc_weight[at]) - cc_opt.lr * g / (sqrt(st) + cc_opt.eps));
    }
}

// ---------------------------------------------------------------------------------------------
// transpose_slices: out[i] = core[i]^T for every row digit i: [RK, NK] -> [NK, RK]. Run once per
// backward so that dP_k = dP_{k+1} G_k^T becomes a plain chain_v4 product over contiguous rows.

@group(0) @binding(0) var<storage, read> tr_in: array<core_t>;
@group(0) @binding(1) var<storage, read_write> tr_out: array<core_t>;

@compute @workgroup_size(64)
fn transpose_slices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let slice = RK * NK;
    if (id >= PK * slice) {
        return;
    }
    let digit = id / slice;
    let rem = id - digit * slice;
    let r = rem / NK;
    let c = rem - r * NK;
    tr_out[digit * slice + c * RK + r] = tr_in[id];
}
