// Dense matrix products of the MLPs: C[m, n] = sum_k A(m, k) B(k, n) with a fused epilogue.
// CPU twin: src/reference/nn.rs (gemm). Launcher: src/kernels/matmul.rs.
//
// Three layouts cover a linear layer Y = X W^T + b (W stored [out, in], PyTorch's layout):
//   NT  forward      Y[b, o]  = sum_i X[b, i] W[o, i]       A = X [M, K],   B = W [N, K]
//   NN  input grad   dX[b, i] = sum_o dY[b, o] W[o, i]      A = dY [M, K],  B = W [K, N]
//   TN  weight grad  dW[o, i] = sum_b dY[b, o] X[b, i]      A = dY [K, M],  B = X [K, N]
// (the TN kernel also writes the bias gradient db[o] = sum_b dY[b, o] when BIAS_GRAD).
// Epilogue (NT/NN): + bias[n] (BIAS), max(0, .) (RELU), * (mask[m, n] > 0) (MASK: the ReLU
// derivative of the layer below, read off its output).
// Matrices are row-major with leading dimensions LDA/LDB/LDC/LDM and element offsets *_OFF.
//
// Two variants, chosen once per adapter class by the launcher:
// - gemm_{nt,nn,tn}: register blocks, no workgroup memory (CPU adapters such as lavapipe, where
//   barriers are expensive and registers cheap). Each invocation owns TM rows x TN vec4 columns;
//   its vec4 columns are interleaved with its neighbours' so adjacent lanes read adjacent memory.
//   Needs K, N, the leading dimensions and offsets in multiples of 4 (TN kernel: M too).
// - gemm_tiled: 64 x 64 output tiles staged through workgroup memory in K steps of 16, 4 x 4 per
//   invocation (GPUs). Any shape.
// Both are deterministic: every output is summed by one invocation in increasing k.

const WG: u32 = 64u;

override M: u32 = 1u;
override N: u32 = 4u;
override K: u32 = 4u;
override LDA: u32 = 4u;
override LDB: u32 = 4u;
override LDC: u32 = 4u;
override LDM: u32 = 4u;
override A_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override C_OFF: u32 = 0u;
override M_OFF: u32 = 0u;
override BIAS_OFF: u32 = 0u;
override BIAS: bool = false;
override RELU: bool = false;
override MASK: bool = false;
override BIAS_GRAD: bool = false;
// Rows (4 or 8) and vec4 columns (1 or 2) per invocation of the register kernels.
override TM: u32 = 8u;
override TN: u32 = 2u;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> mask4: array<vec4<f32>>;

// The epilogue of NT/NN on one vec4 of row m at vec4 column q.
fn epilogue(v: vec4<f32>, m: u32, q: u32) -> vec4<f32> {
    var r = v;
    if (BIAS) {
        r = r + bias4[BIAS_OFF / 4u + q];
    }
    if (RELU) {
        r = max(r, vec4<f32>(0.0));
    }
    if (MASK) {
        let keep = mask4[M_OFF / 4u + m * (LDM / 4u) + q] > vec4<f32>(0.0);
        r = select(vec4<f32>(0.0), r, keep);
    }
    return r;
}

// The invocation's first row and first vec4 column, or false when it has no work.
struct Tile {
    m0: u32,
    q0: u32,
    tiles: u32,
    ok: bool,
}

fn tile_of(id: u32, rows: u32) -> Tile {
    let tiles = N / (4u * TN);
    let mt = (rows + TM - 1u) / TM;
    var t: Tile;
    t.tiles = tiles;
    t.ok = id < mt * tiles;
    t.m0 = (id / tiles) * TM;
    t.q0 = id % tiles;
    return t;
}

// Y = A B^T: A [M, K], B stored [N, K]; every output is a dot product of two contiguous rows.
@compute @workgroup_size(64)
fn gemm_nt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(linear_id(wid, nwg, lid), M);
    if (!t.ok) {
        return;
    }
    let kq = K / 4u;
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k4 = 0u; k4 < kq; k4 = k4 + 1u) {
        // The 4 TN rows of B this invocation's columns read, at k4.
        var bv: array<vec4<f32>, 8>;
        for (var j = 0u; j < TN; j = j + 1u) {
            let n0 = 4u * (t.q0 + j * t.tiles);
            for (var e = 0u; e < 4u; e = e + 1u) {
                bv[4u * j + e] = b4[B_OFF / 4u + (n0 + e) * (LDB / 4u) + k4];
            }
        }
        for (var i = 0u; i < TM; i = i + 1u) {
            let m = min(t.m0 + i, M - 1u);
            let av = a4[A_OFF / 4u + m * (LDA / 4u) + k4];
            for (var j = 0u; j < TN; j = j + 1u) {
                acc[i * TN + j] = acc[i * TN + j] + vec4<f32>(
                    dot(av, bv[4u * j]), dot(av, bv[4u * j + 1u]),
                    dot(av, bv[4u * j + 2u]), dot(av, bv[4u * j + 3u]));
            }
        }
    }
    for (var i = 0u; i < TM; i = i + 1u) {
        let m = t.m0 + i;
        if (m < M) {
            for (var j = 0u; j < TN; j = j + 1u) {
                let q = t.q0 + j * t.tiles;
                c4[C_OFF / 4u + m * (LDC / 4u) + q] = epilogue(acc[i * TN + j], m, q);
            }
        }
    }
}

// Y = A B: A [M, K], B [K, N]; each step of 4 k reads a vec4 of every row of A and 4 rows of B.
@compute @workgroup_size(64)
fn gemm_nn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(linear_id(wid, nwg, lid), M);
    if (!t.ok) {
        return;
    }
    let kq = K / 4u;
    let nq = LDB / 4u;
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k4 = 0u; k4 < kq; k4 = k4 + 1u) {
        var bv: array<vec4<f32>, 8>;
        let row = B_OFF / 4u + 4u * k4 * nq;
        for (var j = 0u; j < TN; j = j + 1u) {
            let q = t.q0 + j * t.tiles;
            bv[4u * j] = b4[row + q];
            bv[4u * j + 1u] = b4[row + nq + q];
            bv[4u * j + 2u] = b4[row + 2u * nq + q];
            bv[4u * j + 3u] = b4[row + 3u * nq + q];
        }
        for (var i = 0u; i < TM; i = i + 1u) {
            let m = min(t.m0 + i, M - 1u);
            let av = a4[A_OFF / 4u + m * (LDA / 4u) + k4];
            for (var j = 0u; j < TN; j = j + 1u) {
                acc[i * TN + j] = acc[i * TN + j] + av.x * bv[4u * j] + av.y * bv[4u * j + 1u]
                    + av.z * bv[4u * j + 2u] + av.w * bv[4u * j + 3u];
            }
        }
    }
    for (var i = 0u; i < TM; i = i + 1u) {
        let m = t.m0 + i;
        if (m < M) {
            for (var j = 0u; j < TN; j = j + 1u) {
                let q = t.q0 + j * t.tiles;
                c4[C_OFF / 4u + m * (LDC / 4u) + q] = epilogue(acc[i * TN + j], m, q);
            }
        }
    }
}

@group(0) @binding(3) var<storage, read_write> bias_grad4: array<vec4<f32>>;

// C = A^T B: A stored [K, M], B [K, N]; per k an outer product of TM values of A and TN vec4s of B.
// With BIAS_GRAD the invocations of the first column tile also sum A over k (the bias gradient).
@compute @workgroup_size(64)
fn gemm_tn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(linear_id(wid, nwg, lid), M);
    if (!t.ok) {
        return;
    }
    let rq = TM / 4u;
    let mq_last = M / 4u - 1u;
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }
    var bsum: array<vec4<f32>, 2>;
    bsum[0] = vec4<f32>(0.0);
    bsum[1] = vec4<f32>(0.0);
    for (var k = 0u; k < K; k = k + 1u) {
        var av: array<vec4<f32>, 2>;
        for (var r = 0u; r < rq; r = r + 1u) {
            av[r] = a4[A_OFF / 4u + k * (LDA / 4u) + min(t.m0 / 4u + r, mq_last)];
        }
        if (BIAS_GRAD) {
            for (var r = 0u; r < rq; r = r + 1u) {
                bsum[r] = bsum[r] + av[r];
            }
        }
        for (var j = 0u; j < TN; j = j + 1u) {
            let bv = b4[B_OFF / 4u + k * (LDB / 4u) + t.q0 + j * t.tiles];
            for (var r = 0u; r < rq; r = r + 1u) {
                let x = av[r];
                let i = 4u * r;
                acc[i * TN + j] = acc[i * TN + j] + x.x * bv;
                acc[(i + 1u) * TN + j] = acc[(i + 1u) * TN + j] + x.y * bv;
                acc[(i + 2u) * TN + j] = acc[(i + 2u) * TN + j] + x.z * bv;
                acc[(i + 3u) * TN + j] = acc[(i + 3u) * TN + j] + x.w * bv;
            }
        }
    }
    for (var i = 0u; i < TM; i = i + 1u) {
        let m = t.m0 + i;
        if (m < M) {
            for (var j = 0u; j < TN; j = j + 1u) {
                let q = t.q0 + j * t.tiles;
                c4[C_OFF / 4u + m * (LDC / 4u) + q] = acc[i * TN + j];
            }
        }
    }
    if (BIAS_GRAD && t.q0 == 0u) {
        for (var r = 0u; r < rq; r = r + 1u) {
            if (t.m0 + 4u * r < M) {
                bias_grad4[BIAS_OFF / 4u + t.m0 / 4u + r] = bsum[r];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gemm_tiled (NT: LAYOUT 0, NN: 1) and gemm_tiled_tn (LAYOUT 2): any shape; 16 x 16 invocations
// per 64 x 64 tile of C, K in steps of 16 through workgroup memory.

override LAYOUT: u32 = 0u;
const BM: u32 = 64u;
const BK: u32 = 16u;

@group(0) @binding(0) var<storage, read> ta: array<f32>;
@group(0) @binding(1) var<storage, read> tb: array<f32>;
@group(0) @binding(2) var<storage, read_write> tc: array<f32>;
@group(0) @binding(3) var<storage, read> tbias: array<f32>;
@group(0) @binding(4) var<storage, read> tmask: array<f32>;
@group(0) @binding(3) var<storage, read_write> tbias_grad: array<f32>;

var<workgroup> tile_a: array<f32, 1024>; // [BK][BM]: A(m, k) at k * BM + m
var<workgroup> tile_b: array<f32, 1024>; // [BK][BM]: B(k, n) at k * BM + n

fn load_a(m: u32, k: u32) -> f32 {
    if (m >= M || k >= K) {
        return 0.0;
    }
    if (LAYOUT == 2u) {
        return ta[A_OFF + k * LDA + m];
    }
    return ta[A_OFF + m * LDA + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if (k >= K || n >= N) {
        return 0.0;
    }
    if (LAYOUT == 0u) {
        return tb[B_OFF + n * LDB + k];
    }
    return tb[B_OFF + k * LDB + n];
}

// The 4 x 4 block of invocation (l.x, l.y) of the 64 x 64 tile at (m_base, n_base), and the sum
// over k of its 4 rows of A (for the bias gradient).
struct Block {
    acc: array<f32, 16>,
    asum: array<f32, 4>,
}

fn tiled_block(m_base: u32, n_base: u32, l: vec3<u32>, li: u32) -> Block {
    var blk: Block;
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
            tile_a[idx] = load_a(m_base + mm, k0 + kk);
            tile_b[idx] = load_b(k0 + kk, n_base + mm);
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

// NT and NN (LAYOUT 0 and 1) with the epilogue.
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
            tc[C_OFF + m * LDC + n] = v;
        }
    }
}

// TN (LAYOUT 2) with the bias gradient from the first column of tiles.
@compute @workgroup_size(16, 16)
fn gemm_tiled_tn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
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
