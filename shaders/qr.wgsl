// dlrm's quotient-remainder embeddings (QREmbeddingBag, mode sum): the combination of each QR
// table's two pooled vectors. The quotient and remainder tables are pooled by the dense-table
// kernels (shaders/embedding.wgsl) into a scratch matrix E, [BAGS, E_STRIDE]: QR table j's
// quotient part at columns meta[j].e_col .. + PART, its remainder part right after. Here:
// - qr_combine writes each table's slot of the output T (D values at meta[j].t_col) from E:
//   mult E_q * E_r, add E_q + E_r, concat [E_q, E_r] (PART = D / 2: a copy of 2 PART values);
// - qr_split writes dE (E's layout) from dT: the product rule for mult (dE_q = dT * E_r,
//   dE_r = dT * E_q), dT itself for add (both parts) and concat (each part its half).
// Every output value is written by one invocation, no atomics: deterministic.
// CPU twin: src/twin/qr.rs. Launcher: src/kernels/qr.rs.

override TABLES: u32 = 1u;    // QR tables
override BAGS: u32 = 1u;
override D: u32 = 4u;         // values of a T slot
override PART: u32 = 4u;      // values of each part (D, or D / 2 for concat)
override T_STRIDE: u32 = 4u;  // values per row of T (and dT)
override E_STRIDE: u32 = 8u;  // values per row of E (and dE)

// One QR table. Rust: kernels::qr::QrMeta.
struct QrMeta {
    t_col: u32,  // first column of the table's slot in T
    e_col: u32,  // first column of its quotient part in E (the remainder follows)
    op: u32,     // 0 mult, 1 add, 2 concat
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> cmb_meta: array<QrMeta>;
@group(0) @binding(1) var<storage, read> cmb_e: array<f32>;
@group(0) @binding(2) var<storage, read_write> cmb_t: array<f32>;

// One invocation per (bag, table, value of the slot).
@compute @workgroup_size(64)
fn qr_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let bj = id / D;
    let b = bj / TABLES;
    if (b >= BAGS) {
        return;
    }
    let j = bj - b * TABLES;
    let k = id - bj * D;
    let m = cmb_meta[j];
    let e = b * E_STRIDE + m.e_col;
    var v: f32;
    if (m.op == 2u) {
        v = cmb_e[e + k];  // the quotient part, then the remainder part right after it
    } else if (m.op == 1u) {
        v = cmb_e[e + k] + cmb_e[e + PART + k];
    } else {
        v = cmb_e[e + k] * cmb_e[e + PART + k];
    }
    cmb_t[b * T_STRIDE + m.t_col + k] = v;
}

@group(0) @binding(0) var<storage, read> spl_meta: array<QrMeta>;
@group(0) @binding(1) var<storage, read> spl_e: array<f32>;
@group(0) @binding(2) var<storage, read> spl_dt: array<f32>;
@group(0) @binding(3) var<storage, read_write> spl_de: array<f32>;

// One invocation per (bag, table, value of the two parts).
@compute @workgroup_size(64)
fn qr_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let width = 2u * PART;
    let bj = id / width;
    let b = bj / TABLES;
    if (b >= BAGS) {
        return;
    }
    let j = bj - b * TABLES;
    let k = id - bj * width;
    let m = spl_meta[j];
    let e = b * E_STRIDE + m.e_col;
    let t = b * T_STRIDE + m.t_col;
    var g: f32;
    if (m.op == 2u) {
        g = spl_dt[t + k];
    } else {
        let c = select(k, k - PART, k >= PART);  // the slot's column of this part's value
        g = spl_dt[t + c];
        if (m.op == 0u) {
            // The other part's value at the same column.
            let other = select(e + PART + k, e + c, k >= PART);
            g = g * spl_e[other];
        }
    }
    spl_de[e + k] = g;
}
