// Dense matrix products of the MLPs, all in one form: C[m, n] = sum_k A[k, m] B[k, n], A stored
// [K, M] and B stored [K, N] (both contiguous along the output's dimensions). With transposed
// copies of activations and weights a linear layer Y = X W^T + b (W stored [out, in]) is:
//   forward      Y[b, o]  = sum_i X^T[i, b] W^T[i, o]    A = X^T [in, B],  B = W^T [in, out]
//   input grad   dX[b, i] = sum_o dY^T[o, b] W[o, i]     A = dY^T [out, B], B = W [out, in]
//   weight grad  dW[o, i] = sum_b dY[b, o] X[b, i]       A = dY [B, out],  B = X [B, in]
// CPU twin: src/twin/nn.rs (gemm). Launcher: src/kernels/matmul.rs.
//
// gemm_tn / gemm_tiled: epilogue + bias[n] (BIAS), max(0, .) (RELU), * (mask[m, n] > 0) (MASK: the
// ReLU derivative of the layer below, read off its output), then store C (STORE_C) and/or its
// transpose C^T[n, m] (STORE_CT, feeding the next product). gemm_tn_wgrad / gemm_tiled_wgrad:
// plain C and, with BIAS_GRAD, the bias gradient sum_k A[k, m].
// Matrices are row-major with leading dimensions LD* and element offsets *_OFF.
//
// The variants, chosen once per (kernel class, shape) by the launcher:
// - gemm_tn*: register blocks, no workgroup memory (CPU adapters such as lavapipe, where barriers
//   are expensive and registers cheap). Each invocation owns TM rows x TN vec4 columns and reads,
//   per k, TM/4 vec4s of A and TN vec4s of B; its columns are interleaved with its neighbours' so
//   adjacent lanes read adjacent memory. Needs N, LDA, LDB, LDC and offsets in multiples of 4;
//   A's rows must hold pad4(M) readable values.
// - gemm_tiled*: 64 x 64 output tiles staged through workgroup memory in K steps of 16, 4 x 4
//   per invocation (GPUs). Any shape.
// - gemm_gpu* (+ gemm_combine*): the GPU class's, below: vec4 global loads (the `_any` entries:
//   scalar, any stride), vec4 tiles in workgroup memory and split-K with a fixed-order combine.
// - gemm_thin: the GPU class's short-K products with too few tiles to fill a GPU: one output
//   per invocation, no split.
// All are deterministic: every output (or part) is summed by one invocation in increasing k.


override M: u32 = 1u;
override N: u32 = 4u;
override K: u32 = 1u;
override LDA: u32 = 4u;
override LDB: u32 = 4u;
override LDC: u32 = 4u;
override LDCT: u32 = 4u;
override LDM: u32 = 4u;
override A_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override C_OFF: u32 = 0u;
override CT_OFF: u32 = 0u;
override M_OFF: u32 = 0u;
override BIAS_OFF: u32 = 0u;
override BIAS: bool = false;
override RELU: bool = false;
override MASK: bool = false;
override STORE_C: bool = true;
override STORE_CT: bool = false;
override BIAS_GRAD: bool = false;
// Rows (4 or 8) and vec4 columns (1 or 2) per invocation of the register kernels.
override TM: u32 = 8u;
override TN: u32 = 1u; // launchers always set TM, TN; N = 4 holds one TN = 1 tile (validates)

// The invocation's first row and first vec4 column, or false when it has no work.
struct Tile {
    m0: u32,
    q0: u32,
    tiles: u32,
    ok: bool,
}

fn tile_of(id: u32) -> Tile {
    let tiles = N / (4u * TN);
    let mt = (M + TM - 1u) / TM;
    var t: Tile;
    t.tiles = tiles;
    t.ok = id < mt * tiles;
    t.m0 = (id / tiles) * TM;
    t.q0 = id % tiles;
    return t;
}

@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c4: array<vec4<f32>>;

// The accumulators of a register tile, and the sums of its rows of A over k.
struct Block {
    acc: array<vec4<f32>, 32>,
    asum: array<vec4<f32>, 4>,
}

fn tn_block(t: Tile) -> Block {
    var blk: Block;
    for (var i = 0u; i < TM * TN; i = i + 1u) {
        blk.acc[i] = vec4<f32>(0.0);
    }
    for (var i = 0u; i < TM / 4u; i = i + 1u) {
        blk.asum[i] = vec4<f32>(0.0);
    }
    let rq = TM / 4u;
    let mq_last = LDA / 4u - 1u;
    for (var k = 0u; k < K; k = k + 1u) {
        var av: array<vec4<f32>, 4>;
        for (var r = 0u; r < rq; r = r + 1u) {
            av[r] = a4[A_OFF / 4u + k * (LDA / 4u) + min(t.m0 / 4u + r, mq_last)];
        }
        if (BIAS_GRAD) {
            for (var r = 0u; r < rq; r = r + 1u) {
                blk.asum[r] = blk.asum[r] + av[r];
            }
        }
        for (var j = 0u; j < TN; j = j + 1u) {
            let bv = b4[B_OFF / 4u + k * (LDB / 4u) + t.q0 + j * t.tiles];
            for (var r = 0u; r < rq; r = r + 1u) {
                let x = av[r];
                let i = 4u * r;
                blk.acc[i * TN + j] = blk.acc[i * TN + j] + x.x * bv;
                blk.acc[(i + 1u) * TN + j] = blk.acc[(i + 1u) * TN + j] + x.y * bv;
                blk.acc[(i + 2u) * TN + j] = blk.acc[(i + 2u) * TN + j] + x.z * bv;
                blk.acc[(i + 3u) * TN + j] = blk.acc[(i + 3u) * TN + j] + x.w * bv;
            }
        }
    }
    return blk;
}

@group(0) @binding(3) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> mask4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> ct: array<f32>;

@compute @workgroup_size(64)
fn gemm_tn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(linear_id(wid, nwg, lid));
    if (!t.ok) {
        return;
    }
    let blk = tn_block(t);
    for (var i = 0u; i < TM; i = i + 1u) {
        let m = t.m0 + i;
        if (m >= M) {
            break;
        }
        for (var j = 0u; j < TN; j = j + 1u) {
            let q = t.q0 + j * t.tiles;
            var v = blk.acc[i * TN + j];
            if (BIAS) {
                v = v + bias4[BIAS_OFF / 4u + q];
            }
            if (RELU) {
                v = max(v, vec4<f32>(0.0));
            }
            if (MASK) {
                let keep = mask4[M_OFF / 4u + m * (LDM / 4u) + q] > vec4<f32>(0.0);
                v = select(vec4<f32>(0.0), v, keep);
            }
            if (STORE_C) {
                c4[C_OFF / 4u + m * (LDC / 4u) + q] = v;
            }
            if (STORE_CT) {
                let n = CT_OFF + 4u * q * LDCT + m;
                ct[n] = v.x;
                ct[n + LDCT] = v.y;
                ct[n + 2u * LDCT] = v.z;
                ct[n + 3u * LDCT] = v.w;
            }
        }
    }
}

@group(0) @binding(3) var<storage, read_write> bias_grad4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn gemm_tn_wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(linear_id(wid, nwg, lid));
    if (!t.ok) {
        return;
    }
    let blk = tn_block(t);
    for (var i = 0u; i < TM; i = i + 1u) {
        let m = t.m0 + i;
        if (m < M) {
            for (var j = 0u; j < TN; j = j + 1u) {
                let q = t.q0 + j * t.tiles;
                c4[C_OFF / 4u + m * (LDC / 4u) + q] = blk.acc[i * TN + j];
            }
        }
    }
    if (BIAS_GRAD && t.q0 == 0u) {
        for (var r = 0u; r < TM / 4u; r = r + 1u) {
            if (t.m0 + 4u * r < M) {
                bias_grad4[BIAS_OFF / 4u + t.m0 / 4u + r] = blk.asum[r];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gemm_tiled / gemm_tiled_wgrad: the same products for GPUs, any shape; 16 x 16 invocations per
// 64 x 64 tile of C, K in steps of 16 through workgroup memory. Tile loads read consecutive m
// (A) and n (B) in consecutive invocations: coalesced.

const BM: u32 = 64u;
const BK: u32 = 16u;

@group(0) @binding(0) var<storage, read> ta: array<f32>;
@group(0) @binding(1) var<storage, read> tb: array<f32>;
@group(0) @binding(2) var<storage, read_write> tc: array<f32>;
@group(0) @binding(3) var<storage, read> tbias: array<f32>;
@group(0) @binding(4) var<storage, read> tmask: array<f32>;
@group(0) @binding(5) var<storage, read_write> tct: array<f32>;
@group(0) @binding(3) var<storage, read_write> tbias_grad: array<f32>;

var<workgroup> tile_a: array<f32, 1024>; // [BK][BM]: A(k, m) at k * BM + m
var<workgroup> tile_b: array<f32, 1024>; // [BK][BM]: B(k, n) at k * BM + n

struct TiledBlock {
    acc: array<f32, 16>,
    asum: array<f32, 4>,
}

// The 4 x 4 block of invocation (l.x, l.y) of the 64 x 64 tile at (m_base, n_base), and the sum
// over k of its 4 rows of A (for the bias gradient).
fn tiled_block(m_base: u32, n_base: u32, l: vec3<u32>, li: u32) -> TiledBlock {
    var blk: TiledBlock;
    for (var i = 0u; i < 16u; i = i + 1u) {
        blk.acc[i] = 0.0;
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        blk.asum[i] = 0.0;
    }
    for (var k0 = 0u; k0 < K; k0 = k0 + BK) {
        // 256 invocations stage 1024 values of each tile, 4 each.
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li + 256u * e;
            let kk = idx / BM;
            let mm = idx % BM;
            let k = k0 + kk;
            var av = 0.0;
            if (k < K && m_base + mm < M) {
                av = ta[A_OFF + k * LDA + m_base + mm];
            }
            var bv = 0.0;
            if (k < K && n_base + mm < N) {
                bv = tb[B_OFF + k * LDB + n_base + mm];
            }
            tile_a[idx] = av;
            tile_b[idx] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = tile_a[kk * BM + l.y * 4u + i];
                bv[i] = tile_b[kk * BM + l.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    blk.acc[i * 4u + j] = blk.acc[i * 4u + j] + av[i] * bv[j];
                }
                blk.asum[i] = blk.asum[i] + av[i];
            }
        }
        workgroupBarrier();
    }
    return blk;
}

@compute @workgroup_size(16, 16)
fn gemm_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let m_base = wid.y * BM;
    let n_base = wid.x * BM;
    let blk = tiled_block(m_base, n_base, l, li);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m_base + l.y * 4u + i;
        if (m >= M) {
            continue;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n_base + l.x * 4u + j;
            if (n >= N) {
                continue;
            }
            var v = blk.acc[i * 4u + j];
            if (BIAS) {
                v = v + tbias[BIAS_OFF + n];
            }
            if (RELU) {
                v = max(v, 0.0);
            }
            if (MASK && !(tmask[M_OFF + m * LDM + n] > 0.0)) {
                v = 0.0;
            }
            if (STORE_C) {
                tc[C_OFF + m * LDC + n] = v;
            }
            if (STORE_CT) {
                tct[CT_OFF + n * LDCT + m] = v;
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm_tiled_wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let m_base = wid.y * BM;
    let n_base = wid.x * BM;
    let blk = tiled_block(m_base, n_base, l, li);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m_base + l.y * 4u + i;
        if (m >= M) {
            continue;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n_base + l.x * 4u + j;
            if (n < N) {
                tc[C_OFF + m * LDC + n] = blk.acc[i * 4u + j];
            }
        }
        if (BIAS_GRAD && wid.x == 0u && l.x == 0u) {
            tbias_grad[BIAS_OFF + m] = blk.asum[i];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gemm_gpu / gemm_gpu_wgrad: the GPU class's products, any shape. A workgroup of 16 x 16
// invocations owns a 64 x 64 tile of C over the K range [z * KC, min(K, (z + 1) * KC)) of its
// split z = workgroup_id.z (split-K: a product with few output tiles still fills the GPU, and no
// invocation's serial chain is longer than KC). A and B are staged through workgroup memory in
// K steps of 16, as vec4s of 4 consecutive m (A) or n (B); each invocation keeps its 4 x 4 block
// of C in 4 vec4 registers and reads one vec4 of each tile per k. With SPLIT the raw sums go to
// the scratch bound as `c`, part z of [PARTS][M][N] (then, for the bias gradient, the parts'
// row sums of A, [PARTS][M]), and gemm_combine* add the parts in increasing z: deterministic,
// no atomics. Without SPLIT (one part) the epilogue runs here. gemm_gpu and gemm_gpu_wgrad load
// A and B from global memory as vec4s (aligned operands: every product of the DLRM step); the
// `_any` entries load scalars, for any stride and offset.

override KC: u32 = 16u;
override SPLIT: bool = false;
override PARTS: u32 = 1u;

// [BK][BM / 4]: A(k, m0..m0 + 3) at k * 16 + m0 / 4 (B likewise by n).
var<workgroup> gtile_a: array<vec4<f32>, 256>;
var<workgroup> gtile_b: array<vec4<f32>, 256>;

struct GpuBlock {
    acc: array<vec4<f32>, 4>,
    asum: vec4<f32>,
}

// The multiply-adds of one staged K step (`steps` deep) into invocation (l.x, l.y)'s block.
fn gpu_step(blk: ptr<function, GpuBlock>, steps: u32, l: vec3<u32>) {
    for (var kk = 0u; kk < steps; kk = kk + 1u) {
        let a = gtile_a[kk * 16u + l.y];
        let b = gtile_b[kk * 16u + l.x];
        (*blk).acc[0] = (*blk).acc[0] + a.x * b;
        (*blk).acc[1] = (*blk).acc[1] + a.y * b;
        (*blk).acc[2] = (*blk).acc[2] + a.z * b;
        (*blk).acc[3] = (*blk).acc[3] + a.w * b;
        if (BIAS_GRAD) {
            (*blk).asum = (*blk).asum + a;
        }
    }
}

fn gpu_block_zero() -> GpuBlock {
    var blk: GpuBlock;
    for (var i = 0u; i < 4u; i = i + 1u) {
        blk.acc[i] = vec4<f32>(0.0);
    }
    blk.asum = vec4<f32>(0.0);
    return blk;
}

// The 4 x 4 block of invocation (l.x, l.y) of the tile at (m_base, n_base) over split z's K
// range, and the sums over that range of its 4 rows of A (with BIAS_GRAD). Scalar global loads
// (the `_any` entries): any shape, stride and offset.
fn gpu_block(m_base: u32, n_base: u32, z: u32, l: vec3<u32>, li: u32) -> GpuBlock {
    var blk = gpu_block_zero();
    let kb = z * KC;
    let ke = min(K, kb + KC);
    // Each invocation stages one vec4 of each tile: row li / 16, quad li % 16.
    let lk = li / 16u;
    let lq = 4u * (li % 16u);
    for (var k0 = kb; k0 < ke; k0 = k0 + BK) {
        let k = k0 + lk;
        var av = vec4<f32>(0.0);
        var bv = vec4<f32>(0.0);
        if (k < ke) {
            for (var i = 0u; i < 4u; i = i + 1u) {
                if (m_base + lq + i < M) {
                    av[i] = ta[A_OFF + k * LDA + m_base + lq + i];
                }
                if (n_base + lq + i < N) {
                    bv[i] = tb[B_OFF + k * LDB + n_base + lq + i];
                }
            }
        }
        gtile_a[li] = av;
        gtile_b[li] = bv;
        workgroupBarrier();
        gpu_step(&blk, min(BK, ke - k0), l);
        workgroupBarrier();
    }
    return blk;
}

// gpu_block with vec4 global loads (gemm_gpu, gemm_gpu_wgrad): LDA, LDB, A_OFF and B_OFF multiples of
// 4 and rows of A and B holding pad4(M) and pad4(N) readable values (the launcher checks). The
// lanes past M or N read row padding and feed only outputs that are never stored.
@group(0) @binding(0) var<storage, read> va: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> vb: array<vec4<f32>>;

fn gpu_block_v4(m_base: u32, n_base: u32, z: u32, l: vec3<u32>, li: u32) -> GpuBlock {
    var blk = gpu_block_zero();
    let kb = z * KC;
    let ke = min(K, kb + KC);
    let lk = li / 16u;
    let lq = 4u * (li % 16u);
    for (var k0 = kb; k0 < ke; k0 = k0 + BK) {
        let k = k0 + lk;
        var av = vec4<f32>(0.0);
        var bv = vec4<f32>(0.0);
        if (k < ke) {
            if (m_base + lq < M) {
                av = va[(A_OFF + k * LDA + m_base + lq) / 4u];
            }
            if (n_base + lq < N) {
                bv = vb[(B_OFF + k * LDB + n_base + lq) / 4u];
            }
        }
        gtile_a[li] = av;
        gtile_b[li] = bv;
        workgroupBarrier();
        gpu_step(&blk, min(BK, ke - k0), l);
        workgroupBarrier();
    }
    return blk;
}

// The forward epilogue of C[m, n] = v (shared by gemm_gpu* without SPLIT and gemm_thin).
fn gpu_store(v0: f32, m: u32, n: u32) {
    var v = v0;
    if (BIAS) {
        v = v + tbias[BIAS_OFF + n];
    }
    if (RELU) {
        v = max(v, 0.0);
    }
    if (MASK && !(tmask[M_OFF + m * LDM + n] > 0.0)) {
        v = 0.0;
    }
    if (STORE_C) {
        tc[C_OFF + m * LDC + n] = v;
    }
    if (STORE_CT) {
        tct[CT_OFF + n * LDCT + m] = v;
    }
}

// The stores of gemm_gpu*: split z's raw sums to the scratch, or C through the epilogue.
fn gpu_product_out(blk: GpuBlock, m_base: u32, n_base: u32, z: u32, l: vec3<u32>) {
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m_base + 4u * l.y + i;
        if (m >= M) {
            break;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n_base + 4u * l.x + j;
            if (n >= N) {
                break;
            }
            if (SPLIT) {
                tc[z * M * N + m * N + n] = blk.acc[i][j];
            } else {
                gpu_store(blk.acc[i][j], m, n);
            }
        }
    }
}

// The stores of gemm_gpu_wgrad*: C and the bias gradient, or split z's raw sums.
fn gpu_wgrad_out(blk: GpuBlock, m_base: u32, n_base: u32, z: u32, l: vec3<u32>, first: bool) {
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m_base + 4u * l.y + i;
        if (m >= M) {
            break;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n_base + 4u * l.x + j;
            if (n >= N) {
                break;
            }
            if (SPLIT) {
                tc[z * M * N + m * N + n] = blk.acc[i][j];
            } else {
                tc[C_OFF + m * LDC + n] = blk.acc[i][j];
            }
        }
        if (BIAS_GRAD && first && l.x == 0u) {
            if (SPLIT) {
                tc[PARTS * M * N + z * M + m] = blk.asum[i];
            } else {
                tbias_grad[BIAS_OFF + m] = blk.asum[i];
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm_gpu_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let blk = gpu_block(wid.y * BM, wid.x * BM, wid.z, l, li);
    gpu_product_out(blk, wid.y * BM, wid.x * BM, wid.z, l);
}

@compute @workgroup_size(16, 16)
fn gemm_gpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let blk = gpu_block_v4(wid.y * BM, wid.x * BM, wid.z, l, li);
    gpu_product_out(blk, wid.y * BM, wid.x * BM, wid.z, l);
}

@compute @workgroup_size(16, 16)
fn gemm_gpu_wgrad_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let blk = gpu_block(wid.y * BM, wid.x * BM, wid.z, l, li);
    gpu_wgrad_out(blk, wid.y * BM, wid.x * BM, wid.z, l, wid.x == 0u);
}

@compute @workgroup_size(16, 16)
fn gemm_gpu_wgrad(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_id) l: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let blk = gpu_block_v4(wid.y * BM, wid.x * BM, wid.z, l, li);
    gpu_wgrad_out(blk, wid.y * BM, wid.x * BM, wid.z, l, wid.x == 0u);
}

// gemm_thin: the GPU class's products with a short K (launcher: at most GPU_THIN_K) and too few
// 64 x 64 tiles to fill a GPU: one output per invocation, consecutive invocations along n (B's
// loads coalesced, A's broadcast), K summed in increasing k, then the forward epilogue. No
// workgroup memory and no split: a thin product's time is its memory traffic.
@compute @workgroup_size(64)
fn gemm_thin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    if (id >= M * N) {
        return;
    }
    let m = id / N;
    let n = id - m * N;
    var v = 0.0;
    for (var k = 0u; k < K; k = k + 1u) {
        v = v + ta[A_OFF + k * LDA + m] * tb[B_OFF + k * LDB + n];
    }
    gpu_store(v, m, n);
}

// gemm_combine / gemm_combine_wgrad: C[m, n] = the sum of the PARTS parts of gemm_gpu* in
// increasing part, one invocation per element (and, for the weight gradient, one per bias
// gradient row), then the forward epilogue.

@group(0) @binding(1) var<storage, read_write> cc: array<f32>;
@group(0) @binding(2) var<storage, read> cbias: array<f32>;
@group(0) @binding(3) var<storage, read> cmask: array<f32>;
@group(0) @binding(4) var<storage, read_write> cct: array<f32>;
@group(0) @binding(2) var<storage, read_write> cbias_grad: array<f32>;

// The sum of the parts of element `e` of a [PARTS][len] scratch starting at `base`.
fn parts_sum(base: u32, len: u32, e: u32) -> f32 {
    var v = ta[base + e];
    for (var s = 1u; s < PARTS; s = s + 1u) {
        v = v + ta[base + s * len + e];
    }
    return v;
}

@compute @workgroup_size(64)
fn gemm_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    if (id >= M * N) {
        return;
    }
    let m = id / N;
    let n = id - m * N;
    var v = parts_sum(0u, M * N, id);
    if (BIAS) {
        v = v + cbias[BIAS_OFF + n];
    }
    if (RELU) {
        v = max(v, 0.0);
    }
    if (MASK && !(cmask[M_OFF + m * LDM + n] > 0.0)) {
        v = 0.0;
    }
    if (STORE_C) {
        cc[C_OFF + m * LDC + n] = v;
    }
    if (STORE_CT) {
        cct[CT_OFF + n * LDCT + m] = v;
    }
}

@compute @workgroup_size(64)
fn gemm_combine_wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    if (id < M * N) {
        let m = id / N;
        cc[C_OFF + m * LDC + id - m * N] = parts_sum(0u, M * N, id);
    } else if (BIAS_GRAD && id < M * N + M) {
        let m = id - M * N;
        cbias_grad[BIAS_OFF + m] = parts_sum(PARTS * M * N, M, m);
    }
}
