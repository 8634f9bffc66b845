// Routing a batch of TT lookups on the GPU, so that the host sends only the ids, the bag offsets
// and where each bag's row goes: the row digit of every core, each lookup's bag (where its row
// goes, its pooling scale) and, per core, every chunk's lookups sorted by digit with the segment
// and piece tables that the core-gradient and subgroup kernels read. CPU twin:
// `prepare_group` and `cut_pieces` in src/twin/tt_route.rs. Launchers: src/kernels/tt_route.rs.
//
// Deterministic by construction: integer results only, each written by one invocation. The sort
// is a stable counting sort in blocks: one invocation counts (and later places) the lookups of
// one block in lookup order, so no result depends on scheduling. No atomics.

// The batch (`Route`, shaders/prelude.wgsl), written by the host with every replay.
@group(0) @binding(0) var<uniform> route: Route;

// ---------------------------------------------------------------------------------------------
// route_digits: digits[k * cap + n] = base_t[k] + digit k of id n in the mixed radix p_t (the
// last core varies fastest), t = the table of lookup n.

override D: u32 = 3u; // cores
// The ids are keys of a group (a cache's members: key = the table's first key + id) and tables
// are found by their first key instead of their first lookup.
override KEYED: bool = false;

@group(0) @binding(1) var<storage, read> rd_ids: array<u32>;  // tables have at most 2^32 rows
@group(0) @binding(2) var<storage, read> rd_tables: array<u32>;     // per table: first lookup, p[D], base[D]
@group(0) @binding(3) var<storage, read_write> rd_digits: array<u32>;

@compute @workgroup_size(64)
fn route_digits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let n = linear_id(wid, nwg, lid);
    if (n >= route.nnz) {
        return;
    }
    let stride = 1u + 2u * D;
    // Tables hold their lookups in table order (tables without lookups share their start), or
    // with KEYED their keys.
    var at = n;
    if (KEYED) {
        at = rd_ids[n];
    }
    var t = 0u;
    while (t + 1u < route.tables && rd_tables[(t + 1u) * stride] <= at) {
        t = t + 1u;
    }
    let desc = t * stride;
    var rest = rd_ids[n];
    if (KEYED) {
        rest = rest - rd_tables[desc];
    }
    for (var j = 0u; j < D; j = j + 1u) {
        let k = D - 1u - j;
        let p = rd_tables[desc + 1u + k];
        rd_digits[k * route.cap + n] = rd_tables[desc + 1u + D + k] + rest % p;
        rest = rest / p;
    }
}

// ---------------------------------------------------------------------------------------------
// route_bags: for each lookup, where its bag's row goes and its pooling scale.

@group(0) @binding(1) var<storage, read> rb_offsets: array<u32>;  // num_bags + 1, then padding
@group(0) @binding(2) var<storage, read> rb_bag_dest: array<u32>;
@group(0) @binding(3) var<storage, read> rb_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> rb_dest: array<u32>;
@group(0) @binding(5) var<storage, read_write> rb_scale: array<f32>;
// With INDIRECT the lookups are a compacted subset (a cache's misses): lookup n is lookup
// rb_orig[n] of the batch, whose offsets, bag destinations and weights the other bindings hold.
@group(0) @binding(6) var<storage, read> rb_orig: array<u32>;
override INDIRECT: bool = false;

@compute @workgroup_size(64)
fn route_bags(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let m = linear_id(wid, nwg, lid);
    if (m >= route.nnz) {
        return;
    }
    var n = m;
    if (INDIRECT) {
        n = rb_orig[m];
    }
    // The bag of n: the last b with offsets[b] <= n (an empty bag shares its offset with the
    // next). Invariant: offsets[lo] <= n < offsets[hi].
    var lo = 0u;
    var hi = route.num_bags;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (rb_offsets[mid] <= n) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    rb_dest[m] = rb_bag_dest[lo];
    var s = 1.0;
    if (route.pool == 1u) {
        s = 1.0 / f32(rb_offsets[lo + 1u] - rb_offsets[lo]);
    } else if (route.pool == 2u) {
        s = rb_weights[n];
    }
    rb_scale[m] = s;
}

// ---------------------------------------------------------------------------------------------
// The sort of core CORE_K: each chunk of CHUNK lookups is cut into BPC blocks of BL lookups.
// sort_count counts each block's digits, sort_scan turns the counts into each block's offset
// within its digit's run (and the run lengths), sort_segments scans the run lengths into the
// segment table (and the piece tables), sort_place writes each lookup at its place.

override PK: u32 = 1u;          // rows of the core (digits 0 .. PK)
override CORE_K: u32 = 0u;
override CHUNK: u32 = 1u;       // lookups per chunk
override CHUNKS: u32 = 1u;
override BL: u32 = 32u;         // lookups per block
override BPC: u32 = 1u;         // blocks per chunk
override GRAD_LEN: u32 = 0u;    // lookups per core-gradient piece (0: no such table)
override SG_LEN: u32 = 0u;      // lookups per subgroup piece (0: no subgroup pieces)
override SG_PIECES: u32 = 1u;   // subgroup piece slots per chunk

// Lookups [x, y) of block b.
fn block_range(b: u32) -> vec2<u32> {
    let c = b / BPC;
    let end = min((c + 1u) * CHUNK, route.nnz);
    let lo = min(c * CHUNK + (b - c * BPC) * BL, end);
    return vec2<u32>(lo, min(lo + BL, end));
}

@group(0) @binding(1) var<storage, read> so_digits: array<u32>;
@group(0) @binding(2) var<storage, read_write> so_counts: array<u32>; // [CHUNKS * BPC, PK], zeroed

@compute @workgroup_size(64)
fn sort_count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let b = linear_id(wid, nwg, lid);
    if (b >= CHUNKS * BPC) {
        return;
    }
    let r = block_range(b);
    let section = CORE_K * route.cap;
    for (var n = r.x; n < r.y; n = n + 1u) {
        let at = b * PK + so_digits[section + n];
        so_counts[at] = so_counts[at] + 1u;
    }
}

@group(0) @binding(1) var<storage, read_write> ss_counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> ss_totals: array<u32>; // [CHUNKS, PK]

@compute @workgroup_size(64)
fn sort_scan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    if (id >= CHUNKS * PK) {
        return;
    }
    let c = id / PK;
    let row = id - c * PK;
    if (c * CHUNK >= route.nnz) {
        ss_totals[id] = 0u; // a chunk past the batch's lookups
        return;
    }
    var run = 0u;
    for (var j = 0u; j < BPC; j = j + 1u) {
        let at = (c * BPC + j) * PK + row;
        let x = ss_counts[at];
        ss_counts[at] = run;
        run = run + x;
    }
    ss_totals[id] = run;
}

@group(0) @binding(1) var<storage, read> sg_totals: array<u32>;
@group(0) @binding(2) var<storage, read_write> sg_segments: array<u32>;   // [CHUNKS, PK + 1]
@group(0) @binding(3) var<storage, read_write> sg_grad_pieces: array<u32>; // [CHUNKS, PK + 1]
@group(0) @binding(4) var<storage, read_write> sg_sg_pieces: array<u32>;   // [CHUNKS, PK + 1]

var<workgroup> partial: array<vec3<u32>, 64>;

// One workgroup per chunk: segments[c][r] = where digit r's run starts (a lookup position),
// grad_pieces[c][r] / sg_pieces[c][r] = its first piece; entry PK closes the last run.
@compute @workgroup_size(64)
fn sort_segments(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    let per = (PK + WG - 1u) / WG;
    let r0 = min(lid * per, PK);
    let r1 = min(r0 + per, PK);
    var mine = vec3<u32>(0u);
    if (c < CHUNKS) {
        for (var r = r0; r < r1; r = r + 1u) {
            mine = mine + run_sizes(sg_totals[c * PK + r]);
        }
    }
    partial[lid] = mine;
    workgroupBarrier();
    if (c >= CHUNKS) {
        return;
    }
    var at = vec3<u32>(min(c * CHUNK, route.nnz), 0u, 0u);
    for (var i = 0u; i < lid; i = i + 1u) {
        at = at + partial[i];
    }
    let base = c * (PK + 1u);
    for (var r = r0; r < r1; r = r + 1u) {
        write_segment(base + r, at);
        at = at + run_sizes(sg_totals[c * PK + r]);
    }
    if (lid == WG - 1u) {
        write_segment(base + PK, at);
    }
}

// A run of `len` lookups: (lookups, gradient pieces, subgroup pieces).
fn run_sizes(len: u32) -> vec3<u32> {
    // max(.., 1): the constants are evaluated even where the branch is not taken.
    var g = 0u;
    if (GRAD_LEN != 0u) {
        g = (len + max(GRAD_LEN, 1u) - 1u) / max(GRAD_LEN, 1u);
    }
    var s = 0u;
    if (SG_LEN != 0u) {
        s = (len + max(SG_LEN, 1u) - 1u) / max(SG_LEN, 1u);
    }
    return vec3<u32>(len, g, s);
}

fn write_segment(i: u32, at: vec3<u32>) {
    sg_segments[i] = at.x;
    if (GRAD_LEN != 0u) {
        sg_grad_pieces[i] = at.y;
    }
    if (SG_LEN != 0u) {
        sg_sg_pieces[i] = at.z;
    }
}

@group(0) @binding(1) var<storage, read> sp_digits: array<u32>;
@group(0) @binding(2) var<storage, read_write> sp_counts: array<u32>; // block offsets (sort_scan)
@group(0) @binding(3) var<storage, read> sp_segments: array<u32>;
@group(0) @binding(4) var<storage, read_write> sp_sorted: array<u32>;
@group(0) @binding(5) var<storage, read> sp_sg_starts: array<u32>;   // sort_segments' sg_pieces
@group(0) @binding(6) var<storage, read_write> sp_pieces: array<u32>; // lookup + 1; 0 = empty slot

@compute @workgroup_size(64)
fn sort_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let b = linear_id(wid, nwg, lid);
    if (b >= CHUNKS * BPC) {
        return;
    }
    let c = b / BPC;
    let r = block_range(b);
    let section = CORE_K * route.cap;
    for (var n = r.x; n < r.y; n = n + 1u) {
        let digit = sp_digits[section + n];
        let at = b * PK + digit;
        let within = sp_counts[at]; // lookups of this digit before n in the chunk
        sp_counts[at] = within + 1u;
        let seg = c * (PK + 1u) + digit;
        sp_sorted[section + sp_segments[seg] + within] = n;
        if (SG_LEN != 0u) {
            let len = max(SG_LEN, 1u); // evaluated even where the branch is not taken
            let piece = sp_sg_starts[seg] + within / len;
            sp_pieces[(c * SG_PIECES + piece) * len + within % len] = n + 1u;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compaction of a cache's misses: the lookups whose row is not cached (hit[n] == NONE) become the
// TT path's batch, in lookup order: their ids, where each came from, the bag offsets and table
// starts over them, and the TT path's uniforms (route, chunks), which the plan copies into its
// input regions. Blocks of CBL lookups, one invocation each, as in the sort: no atomics.

const NO_SLOT: u32 = 0xffffffffu;

override CBL: u32 = 64u;       // lookups per block
override CBLOCKS: u32 = 1u;    // blocks over the plan's lookup capacity
override TT_CHUNK: u32 = 1u;   // the TT path's lookups per chunk
override TT_CHUNKS: u32 = 1u;
override TABLE_STRIDE: u32 = 1u; // u32 words per table descriptor

@group(0) @binding(1) var<storage, read> cc_hit: array<u32>;
@group(0) @binding(2) var<storage, read_write> cc_blocks: array<u32>; // misses per block, then bases

@compute @workgroup_size(64)
fn compact_count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let b = linear_id(wid, nwg, lid);
    if (b >= CBLOCKS) {
        return;
    }
    let lo = min(b * CBL, route.nnz);
    let hi = min(lo + CBL, route.nnz);
    var misses = 0u;
    for (var n = lo; n < hi; n = n + 1u) {
        if (cc_hit[n] == NO_SLOT) {
            misses = misses + 1u;
        }
    }
    cc_blocks[b] = misses;
}

@group(0) @binding(1) var<storage, read_write> cs_blocks: array<u32>;
@group(0) @binding(2) var<storage, read_write> cs_total: array<u32>; // [misses]

var<workgroup> cs_part: array<u32, 64>;

// One workgroup: the blocks' exclusive prefix sums (each thread a contiguous range).
@compute @workgroup_size(64)
fn compact_scan(@builtin(local_invocation_index) lid: u32) {
    // Blocks past the batch's lookups hold no misses.
    let used = min((route.nnz + CBL - 1u) / CBL, CBLOCKS);
    let per = (used + WG - 1u) / WG;
    let b0 = min(lid * per, used);
    let b1 = min(b0 + per, used);
    var mine = 0u;
    for (var b = b0; b < b1; b = b + 1u) {
        mine = mine + cs_blocks[b];
    }
    cs_part[lid] = mine;
    workgroupBarrier();
    var at = 0u;
    for (var i = 0u; i < lid; i = i + 1u) {
        at = at + cs_part[i];
    }
    for (var b = b0; b < b1; b = b + 1u) {
        let x = cs_blocks[b];
        cs_blocks[b] = at;
        at = at + x;
    }
    if (lid == WG - 1u) {
        cs_total[0] = at;
    }
}

@group(0) @binding(1) var<storage, read> cp_hit: array<u32>;
@group(0) @binding(2) var<storage, read> cp_blocks: array<u32>;   // block bases
@group(0) @binding(3) var<storage, read> cp_ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> cp_tt_ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> cp_orig: array<u32>;
@group(0) @binding(6) var<storage, read_write> cp_rank: array<u32>; // misses before each lookup

@compute @workgroup_size(64)
fn compact_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let b = linear_id(wid, nwg, lid);
    if (b >= CBLOCKS) {
        return;
    }
    let lo = min(b * CBL, route.nnz);
    let hi = min(lo + CBL, route.nnz);
    var m = cp_blocks[b];
    for (var n = lo; n < hi; n = n + 1u) {
        cp_rank[n] = m;
        if (cp_hit[n] == NO_SLOT) {
            cp_tt_ids[m] = cp_ids[n];
            cp_orig[m] = n;
            m = m + 1u;
        }
    }
}

@group(0) @binding(1) var<storage, read> cf_total: array<u32>;
@group(0) @binding(2) var<storage, read> cf_rank: array<u32>;
@group(0) @binding(3) var<storage, read> cf_offsets: array<u32>;  // the batch's bag offsets
@group(0) @binding(4) var<storage, read> cf_tables: array<u32>;   // the batch's table descriptors
@group(0) @binding(5) var<storage, read_write> cf_tt_offsets: array<u32>;
@group(0) @binding(6) var<storage, read_write> cf_tt_tables: array<u32>;
@group(0) @binding(7) var<storage, read_write> cf_params: TtUniforms;

// The uniforms of the cores' path as the GPU writes them (the plan copies them into its input
// regions): its batch, then one Chunk per chunk (kernels::tt_route::tt_params_words).
struct TtUniforms {
    route: Route,
    chunks: array<Chunk>,
}

// The cores' path's batch of `nnz` lookups in `num_bags` bags.
fn tt_route(nnz: u32, num_bags: u32, pool: u32) -> Route {
    return Route(nnz, num_bags, route.tables, route.cap, pool, 0u, 0u, 0u);
}

// Chunk c of a batch of `nnz` lookups in `num_bags` bags, TT_CHUNK lookups a chunk.
fn tt_chunk(c: u32, nnz: u32, num_bags: u32) -> Chunk {
    let start = min(c * TT_CHUNK, nnz);
    return Chunk(start, min(start + TT_CHUNK, nnz) - start, route.cap, num_bags, c, 0u, 0u, 0u);
}

// misses before position x of the batch (x = nnz included).
fn misses_before(x: u32) -> u32 {
    if (x >= route.nnz) {
        return cf_total[0];
    }
    return cf_rank[x];
}

// The TT path's offsets (one invocation per offset), table starts (per table) and uniforms.
@compute @workgroup_size(64)
fn compact_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    let misses = cf_total[0];
    if (i <= route.num_bags) {
        cf_tt_offsets[i] = misses_before(cf_offsets[i]);
    }
    if (i < route.tables) {
        let at = i * TABLE_STRIDE;
        cf_tt_tables[at] = misses_before(cf_tables[at]);
        for (var w = 1u; w < TABLE_STRIDE; w = w + 1u) {
            cf_tt_tables[at + w] = cf_tables[at + w];
        }
    }
    if (i == 0u) {
        cf_params.route = tt_route(misses, route.num_bags, route.pool);
        for (var c = 0u; c < TT_CHUNKS; c = c + 1u) {
            cf_params.chunks[c] = tt_chunk(c, misses, route.num_bags);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// members_batch: a cache refresh's members as a batch of one-lookup bags (bag i = member i, so
// row i of the output is slot i's row): the TT path's uniforms from the member count.

@group(0) @binding(1) var<storage, read> mb_selection: array<u32>; // [members, ...]
@group(0) @binding(2) var<storage, read_write> mb_params: TtUniforms;

@compute @workgroup_size(64)
fn members_batch(@builtin(local_invocation_index) lid: u32) {
    if (lid != 0u) {
        return;
    }
    let m = min(mb_selection[0], route.cap);
    mb_params.route = tt_route(m, m, 0u);
    for (var c = 0u; c < TT_CHUNKS; c = c + 1u) {
        mb_params.chunks[c] = tt_chunk(c, m, m);
    }
}

// ---------------------------------------------------------------------------------------------
// sort_fused: the sort of core CORE_K in one dispatch, for CPU adapters (where every dispatch
// costs tens of microseconds whatever its size): one workgroup per chunk, its 64 invocations
// each own a block of CHUNK / 64 lookups and go through the same four steps as the kernels
// above (count, scan, segments, place) with barriers between them. Same results, bitwise.
// Scratch: per block its digit counts, then per block its offsets within each digit's run
// (a region of their own: lavapipe's compiler was seen to reuse an invocation's own earlier
// count instead of the offset another invocation wrote over it), then the run lengths.

@group(0) @binding(1) var<storage, read> sf_digits: array<u32>;
@group(0) @binding(2) var<storage, read_write> sf_scratch: array<u32>;  // counts, offsets, totals
@group(0) @binding(3) var<storage, read_write> sf_segments: array<u32>; // [CHUNKS, PK + 1]
@group(0) @binding(4) var<storage, read_write> sf_grad_pieces: array<u32>;
@group(0) @binding(5) var<storage, read_write> sf_sg_starts: array<u32>;
@group(0) @binding(6) var<storage, read_write> sf_sorted: array<u32>;
@group(0) @binding(7) var<storage, read_write> sf_pieces: array<u32>;

var<workgroup> sf_part: array<vec3<u32>, 64>;

@compute @workgroup_size(64)
fn sort_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    if (c >= CHUNKS) {
        return;
    }
    let offsets = CHUNKS * WG * PK; // where the offsets region starts
    let totals = 2u * offsets;      // and the run lengths
    let section = CORE_K * route.cap;
    let bl = (CHUNK + WG - 1u) / WG;
    let end = min((c + 1u) * CHUNK, route.nnz);
    let lo = min(c * CHUNK + lid * bl, end);
    let hi = min(lo + bl, end);
    let row = (c * WG + lid) * PK;
    // Zero this block's counts and its share of the chunk's subgroup pieces; count.
    for (var r = 0u; r < PK; r = r + 1u) {
        sf_scratch[row + r] = 0u;
    }
    if (SG_LEN != 0u) {
        let slots = SG_PIECES * max(SG_LEN, 1u);
        let share = (slots + WG - 1u) / WG;
        let s0 = min(lid * share, slots);
        let s1 = min(s0 + share, slots);
        for (var s = s0; s < s1; s = s + 1u) {
            sf_pieces[c * slots + s] = 0u;
        }
    }
    for (var n = lo; n < hi; n = n + 1u) {
        let at = row + sf_digits[section + n];
        sf_scratch[at] = sf_scratch[at] + 1u;
    }
    storageBarrier();
    workgroupBarrier();
    // Each digit's run: the blocks' offsets within it, and its length.
    let per = (PK + WG - 1u) / WG;
    let r0 = min(lid * per, PK);
    let r1 = min(r0 + per, PK);
    var mine = vec3<u32>(0u);
    for (var r = r0; r < r1; r = r + 1u) {
        var run = 0u;
        for (var b = 0u; b < WG; b = b + 1u) {
            let at = (c * WG + b) * PK + r;
            sf_scratch[offsets + at] = run;
            run = run + sf_scratch[at];
        }
        sf_scratch[totals + c * PK + r] = run;
        mine = mine + run_sizes(run);
    }
    sf_part[lid] = mine;
    storageBarrier();
    workgroupBarrier();
    // The segment and piece tables (as sort_segments).
    var at = vec3<u32>(min(c * CHUNK, route.nnz), 0u, 0u);
    for (var i = 0u; i < lid; i = i + 1u) {
        at = at + sf_part[i];
    }
    let base = c * (PK + 1u);
    for (var r = r0; r < r1; r = r + 1u) {
        sf_segments[base + r] = at.x;
        if (GRAD_LEN != 0u) {
            sf_grad_pieces[base + r] = at.y;
        }
        if (SG_LEN != 0u) {
            sf_sg_starts[base + r] = at.z;
        }
        at = at + run_sizes(sf_scratch[totals + c * PK + r]);
    }
    if (lid == WG - 1u) {
        sf_segments[base + PK] = at.x;
        if (GRAD_LEN != 0u) {
            sf_grad_pieces[base + PK] = at.y;
        }
        if (SG_LEN != 0u) {
            sf_sg_starts[base + PK] = at.z;
        }
    }
    storageBarrier();
    workgroupBarrier();
    // Place each lookup (as sort_place).
    for (var n = lo; n < hi; n = n + 1u) {
        let digit = sf_digits[section + n];
        let k = offsets + row + digit;
        let within = sf_scratch[k];
        sf_scratch[k] = within + 1u;
        let seg = base + digit;
        sf_sorted[section + sf_segments[seg] + within] = n;
        if (SG_LEN != 0u) {
            let len = max(SG_LEN, 1u);
            let piece = sf_sg_starts[seg] + within / len;
            sf_pieces[(c * SG_PIECES + piece) * len + within % len] = n + 1u;
        }
    }
}
