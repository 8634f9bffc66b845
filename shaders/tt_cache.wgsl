// The LFU row cache of TT tables: an open-addressing hash table counts how often each row (key)
// is looked up; a refresh selects the C most frequent keys as the cache's members and gives each
// a slot (a row of a dense [C, D] cache); lookups of members are served from the cache (pooled by
// cache_pool) and their rows train directly (cache_update). CPU twin: src/twin/tt_cache.rs.
// Launchers: src/kernels/tt_cache.rs.
//
// Keys are u32 (key = the table's key offset + id), below EMPTY. Entries never lose their key:
// a key, once inserted, keeps its entry (and its count) for the table's life, so an empty entry
// ends a probe chain. Results are deterministic: counts, stats and histograms are integer atomics
// (sums do not depend on order); positions come from counting sorts and scans, no atomics. Which
// entry a key takes may depend on the order of concurrent inserts, and a member's slot is its rank
// in entry order, so slot numbers can differ between runs; no output can: a cached row's value
// depends only on its key (it is computed from the cores at a refresh and trained per occurrence
// of that key), and the members, hits and updates follow keys, not slots.

const EMPTY: u32 = 0xffffffffu; // a hash entry without a key
const NONE: u32 = 0xffffffffu;  // no slot: the key is not a member (or absent)

// `WG`, `linear_id` and the batch uniform `Route` (written by the host with every replay) come
// from shaders/prelude.wgsl.

fn group_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

override H: u32 = 65536u;       // hash entries, a power of two
override CAP_C: u32 = 0u;       // cache rows (members at most)

// The murmur3 finalizer: every input bit affects every output bit.
fn mix32(k: u32) -> u32 {
    var h = k;
    h = h ^ (h >> 16u);
    h = h * 0x85ebca6bu;
    h = h ^ (h >> 13u);
    h = h * 0xc2b2ae35u;
    h = h ^ (h >> 16u);
    return h;
}

// max(.., 1): override expressions are evaluated even where unused, and H - 1 with H = 0 fails.
fn hash_mask() -> u32 {
    return max(H, 1u) - 1u;
}

// ---------------------------------------------------------------------------------------------
// cache_reset: every entry empty (keys EMPTY, counts 0, slots NONE).

@group(0) @binding(0) var<storage, read_write> rs_keys: array<u32>;
@group(0) @binding(1) var<storage, read_write> rs_counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> rs_slots: array<u32>;

@compute @workgroup_size(64)
fn cache_reset(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = linear_id(wid, nwg, lid);
    if (e >= H) {
        return;
    }
    rs_keys[e] = EMPTY;
    rs_counts[e] = 0u;
    rs_slots[e] = NONE;
}

// ---------------------------------------------------------------------------------------------
// cache_probe: one invocation per lookup. Finds the lookup's key (inserting it when COUNT),
// adds one to its count (when COUNT) and writes the key's slot (or NONE) to hit[n]. Stats:
// [0] lookups, [1] hits, [2] dropped (COUNT and the key neither found nor inserted within
// MAX_PROBE entries: its occurrence is not counted, but it is reported).

override MAX_PROBE: u32 = 32u;
override COUNT: bool = true;    // training forwards count; evaluation only reads

@group(0) @binding(0) var<uniform> route: Route;
@group(0) @binding(1) var<storage, read> pr_ids: array<u32>;
@group(0) @binding(2) var<storage, read> pr_tables: array<u32>; // per table: first lookup, key offset
@group(0) @binding(3) var<storage, read_write> pr_keys: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> pr_counts: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> pr_slots: array<u32>;
@group(0) @binding(6) var<storage, read_write> pr_hit: array<u32>;
@group(0) @binding(7) var<storage, read_write> pr_stats: array<atomic<u32>>;

var<workgroup> wg_stats: array<atomic<u32>, 3>;

// The entry holding `key`, or NONE. When COUNT, an absent key takes the first empty entry of
// its chain. Each entry changes at most once (EMPTY to a key), so concurrent probes of one key
// see the same chain and agree on its entry: a key is never in two entries.
fn find(key: u32) -> u32 {
    let mask = hash_mask();
    var e = mix32(key) & mask;
    for (var p = 0u; p < min(MAX_PROBE, H); p = p + 1u) {
        var cur = atomicLoad(&pr_keys[e]);
        if (COUNT && cur == EMPTY) {
            // Weak: may fail spuriously, so retry while the entry is still empty.
            loop {
                let r = atomicCompareExchangeWeak(&pr_keys[e], EMPTY, key);
                if (r.exchanged) {
                    cur = key;
                    break;
                }
                if (r.old_value != EMPTY) {
                    cur = r.old_value;
                    break;
                }
            }
        }
        if (cur == key) {
            return e;
        }
        if (cur == EMPTY) {
            return NONE; // not counting: an empty entry ends the chain, the key is absent
        }
        e = (e + 1u) & mask;
    }
    return NONE;
}

@compute @workgroup_size(64)
fn cache_probe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let n = linear_id(wid, nwg, lid);
    if (lid < 3u) {
        atomicStore(&wg_stats[lid], 0u);
    }
    workgroupBarrier();
    if (n < route.nnz) {
        // The lookup's table: tables hold their lookups in table order; tables without
        // lookups share their start.
        var t = 0u;
        while (t + 1u < route.tables && pr_tables[(t + 1u) * 2u] <= n) {
            t = t + 1u;
        }
        let key = pr_tables[t * 2u + 1u] + pr_ids[n];
        var e = NONE;
        if (key != EMPTY) {
            e = find(key);
        }
        var slot = NONE;
        if (e != NONE) {
            if (COUNT) {
                atomicAdd(&pr_counts[e], 1u);
            }
            slot = pr_slots[e];
        } else if (COUNT) {
            atomicAdd(&wg_stats[2], 1u);
        }
        pr_hit[n] = slot;
        atomicAdd(&wg_stats[0], 1u);
        if (slot != NONE) {
            atomicAdd(&wg_stats[1], 1u);
        }
    }
    workgroupBarrier();
    if (lid < 3u) {
        let v = atomicLoad(&wg_stats[lid]);
        if (v != 0u) {
            atomicAdd(&pr_stats[lid], v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The refresh: members = the top CAP_C non-empty entries by (count descending, key ascending),
// all of them when fewer are non-empty. An entry's rank value is the 64-bit (count, ~key), unique
// since keys are; a radix select (8 passes of 8 bits, most significant first) finds the m-th
// largest value V, and the members are the entries whose value is >= V. Then every entry gets
// its slot (its rank among the members in entry order, or NONE) and members[slot] = key.
//
// The selection state (SELECTION_WORDS in src/cache/mod.rs): [0] m (members), [1] non-empty
// entries, [2] pass (`step` below: `pass` is reserved in WGSL), [3] rank still wanted within
// the prefix, [4], [5] the prefix of V (hi: count, lo: ~key) decided so far.

fn top_mask(bits: u32) -> u32 {
    return select(0u, 0xffffffffu << ((32u - bits) & 31u), bits > 0u);
}

// Whether value v agrees with `prefix` on the bits decided before pass `step`.
fn has_prefix(v: vec2<u32>, prefix: vec2<u32>, step: u32) -> bool {
    let bits_hi = min(8u * step, 32u);
    let bits_lo = 8u * step - bits_hi;
    return (v.x & top_mask(bits_hi)) == prefix.x && (v.y & top_mask(bits_lo)) == prefix.y;
}

fn digit_of(v: vec2<u32>, step: u32) -> u32 {
    if (step < 4u) {
        return (v.x >> (24u - 8u * step)) & 255u;
    }
    return (v.y >> ((24u - 8u * (step - 4u)) & 31u)) & 255u;
}

fn rank_value(count: u32, key: u32) -> vec2<u32> {
    return vec2<u32>(count, ~key);
}

// select_init: one invocation per max(CAP_C, 256): state, histogram, members = NONE.

@group(0) @binding(0) var<storage, read_write> si_sel: array<u32>;
@group(0) @binding(1) var<storage, read_write> si_hist: array<u32>;
@group(0) @binding(2) var<storage, read_write> si_members: array<u32>;

@compute @workgroup_size(64)
fn select_init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i < 256u) {
        si_hist[i] = 0u;
    }
    if (i < CAP_C) {
        si_members[i] = NONE;
    }
    if (i < 8u) {
        si_sel[i] = select(0u, CAP_C, i == 3u);
    }
}

// select_hist: one workgroup per tile of TILE = WG * PER entries; histogram of the current
// pass's digit over the non-empty entries that have the prefix.

const PER: u32 = 16u;
const TILE: u32 = 1024u; // WG * PER

@group(0) @binding(0) var<storage, read> sh_sel: array<u32>;
@group(0) @binding(1) var<storage, read> sh_keys: array<u32>;
@group(0) @binding(2) var<storage, read> sh_counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> sh_hist: array<atomic<u32>>;

var<workgroup> wg_hist: array<atomic<u32>, 256>;

@compute @workgroup_size(64)
fn select_hist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    for (var j = 0u; j < 4u; j = j + 1u) {
        atomicStore(&wg_hist[lid + j * WG], 0u);
    }
    workgroupBarrier();
    let step = sh_sel[2];
    let prefix = vec2<u32>(sh_sel[4], sh_sel[5]);
    // Pass 0 always counts: it also gives the non-empty entries.
    if (step == 0u || (step < 8u && sh_sel[3] > 0u)) {
        let base = group_id(wid, nwg) * TILE;
        for (var j = 0u; j < PER; j = j + 1u) {
            let e = base + j * WG + lid;
            if (e < H) {
                let key = sh_keys[e];
                if (key != EMPTY) {
                    let v = rank_value(sh_counts[e], key);
                    if (has_prefix(v, prefix, step)) {
                        atomicAdd(&wg_hist[digit_of(v, step)], 1u);
                    }
                }
            }
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < 4u; j = j + 1u) {
        let v = atomicLoad(&wg_hist[lid + j * WG]);
        if (v != 0u) {
            atomicAdd(&sh_hist[lid + j * WG], v);
        }
    }
}

// select_choose: one invocation. Picks the digit of V at this pass from the histogram, clears
// the histogram for the next pass. At pass 0 also fixes m = min(CAP_C, non-empty entries) and
// writes stats [3] members, [4] non-empty entries.

@group(0) @binding(0) var<storage, read_write> sc_sel: array<u32>;
@group(0) @binding(1) var<storage, read_write> sc_hist: array<u32>;
@group(0) @binding(2) var<storage, read_write> sc_stats: array<u32>;

@compute @workgroup_size(1)
fn select_choose() {
    let step = sc_sel[2];
    var need = sc_sel[3];
    if (step == 0u) {
        var total = 0u;
        for (var b = 0u; b < 256u; b = b + 1u) {
            total = total + sc_hist[b];
        }
        need = min(need, total);
        sc_sel[0] = need;
        sc_sel[1] = total;
        sc_stats[3] = need;
        sc_stats[4] = total;
    }
    if (need > 0u && step < 8u) {
        // Digits from the largest down: the bin holding the need-th largest value.
        var above = 0u;
        var digit = 0u;
        for (var i = 0u; i < 256u; i = i + 1u) {
            let b = 255u - i;
            let c = sc_hist[b];
            if (above + c >= need) {
                digit = b;
                break;
            }
            above = above + c;
        }
        need = need - above;
        if (step < 4u) {
            sc_sel[4] = sc_sel[4] | (digit << (24u - 8u * step));
        } else {
            sc_sel[5] = sc_sel[5] | (digit << ((24u - 8u * (step - 4u)) & 31u));
        }
    }
    sc_sel[3] = need;
    sc_sel[2] = step + 1u;
    for (var b = 0u; b < 256u; b = b + 1u) {
        sc_hist[b] = 0u;
    }
}

fn is_member(key: u32, count: u32, m: u32, threshold: vec2<u32>) -> bool {
    if (key == EMPTY || m == 0u) {
        return false;
    }
    let v = rank_value(count, key);
    return v.x > threshold.x || (v.x == threshold.x && v.y >= threshold.y);
}

// select_count: one workgroup per tile; members of each tile (thread lid owns the PER
// consecutive entries from tile * TILE + lid * PER).

@group(0) @binding(0) var<storage, read> sn_sel: array<u32>;
@group(0) @binding(1) var<storage, read> sn_keys: array<u32>;
@group(0) @binding(2) var<storage, read> sn_counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> sn_tiles: array<u32>;

var<workgroup> wg_part: array<u32, 64>;

@compute @workgroup_size(64)
fn select_count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let tile = group_id(wid, nwg);
    let m = sn_sel[0];
    let threshold = vec2<u32>(sn_sel[4], sn_sel[5]);
    var mine = 0u;
    for (var j = 0u; j < PER; j = j + 1u) {
        let e = tile * TILE + lid * PER + j;
        if (e < H && is_member(sn_keys[e], sn_counts[e], m, threshold)) {
            mine = mine + 1u;
        }
    }
    wg_part[lid] = mine;
    workgroupBarrier();
    if (lid == 0u && tile * TILE < H) {
        var total = 0u;
        for (var i = 0u; i < WG; i = i + 1u) {
            total = total + wg_part[i];
        }
        sn_tiles[tile] = total;
    }
}

// select_scan: one workgroup; the tiles' member counts become their first slots (exclusive
// scan in place).

@group(0) @binding(0) var<storage, read_write> ss_tiles: array<u32>;

@compute @workgroup_size(64)
fn select_scan(@builtin(local_invocation_index) lid: u32) {
    let tiles = (H + TILE - 1u) / TILE;
    let per = (tiles + WG - 1u) / WG;
    let t0 = min(lid * per, tiles);
    let t1 = min(t0 + per, tiles);
    var mine = 0u;
    for (var t = t0; t < t1; t = t + 1u) {
        mine = mine + ss_tiles[t];
    }
    wg_part[lid] = mine;
    workgroupBarrier();
    var at = 0u;
    for (var i = 0u; i < lid; i = i + 1u) {
        at = at + wg_part[i];
    }
    for (var t = t0; t < t1; t = t + 1u) {
        let x = ss_tiles[t];
        ss_tiles[t] = at;
        at = at + x;
    }
}

// select_place: one workgroup per tile; every entry's slot (its rank among the members in entry
// order, or NONE) and members[slot] = key.

@group(0) @binding(0) var<storage, read> sp_sel: array<u32>;
@group(0) @binding(1) var<storage, read> sp_keys: array<u32>;
@group(0) @binding(2) var<storage, read> sp_counts: array<u32>;
@group(0) @binding(3) var<storage, read> sp_tiles: array<u32>;
@group(0) @binding(4) var<storage, read_write> sp_slots: array<u32>;
@group(0) @binding(5) var<storage, read_write> sp_members: array<u32>;

@compute @workgroup_size(64)
fn select_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let tile = group_id(wid, nwg);
    let m = sp_sel[0];
    let threshold = vec2<u32>(sp_sel[4], sp_sel[5]);
    let first = tile * TILE + lid * PER;
    var mine = 0u;
    for (var j = 0u; j < PER; j = j + 1u) {
        let e = first + j;
        if (e < H && is_member(sp_keys[e], sp_counts[e], m, threshold)) {
            mine = mine + 1u;
        }
    }
    wg_part[lid] = mine;
    workgroupBarrier();
    if (tile * TILE >= H) {
        return;
    }
    var slot = sp_tiles[tile];
    for (var i = 0u; i < lid; i = i + 1u) {
        slot = slot + wg_part[i];
    }
    for (var j = 0u; j < PER; j = j + 1u) {
        let e = first + j;
        if (e < H) {
            let key = sp_keys[e];
            if (is_member(key, sp_counts[e], m, threshold)) {
                sp_slots[e] = slot;
                sp_members[slot] = key;
                slot = slot + 1u;
            } else {
                sp_slots[e] = NONE;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cache_pool: one invocation per (bag, column) of the batch; adds the bag's cached rows
// out[bag_dest[b] + c] += sum over the bag's hits n (in lookup order) of scale_n cache[hit[n], c].
// Runs after the TT pooling wrote `out`. Bags without hits leave `out` untouched. The cached
// rows are stored as `core_t` (f16 with f16 cores, read into f32; f32: the identity).

override D: u32 = 16u; // columns

@group(0) @binding(1) var<storage, read> po_offsets: array<u32>;  // num_bags + 1, then padding
@group(0) @binding(2) var<storage, read> po_bag_dest: array<u32>;
@group(0) @binding(3) var<storage, read> po_weights: array<f32>;
@group(0) @binding(4) var<storage, read> po_hit: array<u32>;
@group(0) @binding(5) var<storage, read> po_cache: array<core_t>; // [C, D], the cores' type
@group(0) @binding(6) var<storage, read_write> po_out: array<f32>;

@compute @workgroup_size(64)
fn cache_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let dim = max(D, 1u);
    let b = id / dim;
    if (b >= route.num_bags) {
        return;
    }
    let c = id - b * dim;
    let lo = po_offsets[b];
    let hi = po_offsets[b + 1u];
    var mean = 1.0;
    if (route.pool == 1u && hi > lo) {
        mean = 1.0 / f32(hi - lo);
    }
    var acc = 0.0;
    var any = false;
    for (var n = lo; n < hi; n = n + 1u) {
        let slot = po_hit[n];
        if (slot != NONE) {
            var s = mean;
            if (route.pool == 2u) {
                s = po_weights[n];
            }
            acc = acc + s * f32(po_cache[slot * dim + c]);
            any = true;
        }
    }
    if (any) {
        let o = po_bag_dest[b] + c;
        po_out[o] = po_out[o] + acc;
    }
}

// ---------------------------------------------------------------------------------------------
// The backward of the cached rows. A stable LSD radix sort (8 bits a pass, SHIFT = 8 * pass) of
// the batch's lookups by slot, misses last (key CAP_C), in blocks of BL lookups counted and
// placed by one invocation in lookup order; then cache_update walks each slot's run in lookup
// order.

override SHIFT: u32 = 0u;
override FIRST: bool = true;  // pass 0 reads lookups 0..nnz in order instead of `src`
override BL: u32 = 32u;       // lookups per block
override BLOCKS: u32 = 1u;

fn slot_key(slot: u32) -> u32 {
    return select(slot, CAP_C, slot == NONE);
}

fn sort_block(b: u32) -> vec2<u32> {
    let lo = min(b * BL, route.nnz);
    return vec2<u32>(lo, min(lo + BL, route.nnz));
}

@group(0) @binding(1) var<storage, read> uc_hit: array<u32>;
@group(0) @binding(2) var<storage, read> uc_src: array<u32>;
@group(0) @binding(3) var<storage, read_write> uc_counts: array<u32>; // [BLOCKS, 256]

@compute @workgroup_size(64)
fn slot_sort_count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let b = linear_id(wid, nwg, lid);
    if (b >= BLOCKS) {
        return;
    }
    for (var d = 0u; d < 256u; d = d + 1u) {
        uc_counts[b * 256u + d] = 0u;
    }
    let r = sort_block(b);
    for (var i = r.x; i < r.y; i = i + 1u) {
        var n = i;
        if (!FIRST) {
            n = uc_src[i];
        }
        let at = b * 256u + ((slot_key(uc_hit[n]) >> SHIFT) & 255u);
        uc_counts[at] = uc_counts[at] + 1u;
    }
}

// One workgroup: per digit, each block's offset within the digit's run (in place), and where
// each digit's run starts.
@group(0) @binding(0) var<storage, read_write> us_counts: array<u32>;
@group(0) @binding(1) var<storage, read_write> us_bases: array<u32>; // [256]

var<workgroup> wg_totals: array<u32, 256>;

@compute @workgroup_size(64)
fn slot_sort_scan(@builtin(local_invocation_index) lid: u32) {
    for (var j = 0u; j < 4u; j = j + 1u) {
        let d = lid * 4u + j;
        var run = 0u;
        for (var b = 0u; b < BLOCKS; b = b + 1u) {
            let x = us_counts[b * 256u + d];
            us_counts[b * 256u + d] = run;
            run = run + x;
        }
        wg_totals[d] = run;
    }
    workgroupBarrier();
    var at = 0u;
    for (var d = 0u; d < lid * 4u; d = d + 1u) {
        at = at + wg_totals[d];
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let d = lid * 4u + j;
        us_bases[d] = at;
        at = at + wg_totals[d];
    }
}

@group(0) @binding(1) var<storage, read> up_hit: array<u32>;
@group(0) @binding(2) var<storage, read> up_src: array<u32>;
@group(0) @binding(3) var<storage, read_write> up_counts: array<u32>;
@group(0) @binding(4) var<storage, read> up_bases: array<u32>;
@group(0) @binding(5) var<storage, read_write> up_dst: array<u32>;

@compute @workgroup_size(64)
fn slot_sort_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let b = linear_id(wid, nwg, lid);
    if (b >= BLOCKS) {
        return;
    }
    let r = sort_block(b);
    for (var i = r.x; i < r.y; i = i + 1u) {
        var n = i;
        if (!FIRST) {
            n = up_src[i];
        }
        let digit = (slot_key(up_hit[n]) >> SHIFT) & 255u;
        let at = b * 256u + digit;
        let within = up_counts[at];
        up_counts[at] = within + 1u;
        up_dst[up_bases[digit] + within] = n;
    }
}

// cache_update: the cached rows train directly, per occurrence in lookup order, with
// g = scale_n dout[bag_dest[bag(n)] + c]. OPTIMIZER 0: SGD w -= lr g, one invocation per
// (sorted position, column). 1: row-wise Adagrad, one invocation per sorted position:
// state += mean over the columns of g^2, then w -= lr g / (sqrt(state) + eps). Only the first
// position of each slot's run works; it walks the run. With f16 rows (`core_t`) each
// occurrence's update is computed in f32 from the stored value and rounded once to f16.

override OPTIMIZER: u32 = 0u;

// Each lookup's bag destination and pooling scale, computed once per lookup by tt_route.wgsl's
// route_bags (a binary search per occurrence and column here cost lavapipe about 1 ms a step).
@group(0) @binding(1) var<storage, read> cu_dest: array<u32>;
@group(0) @binding(2) var<storage, read> cu_scale: array<f32>;
@group(0) @binding(3) var<storage, read> cu_hit: array<u32>;
@group(0) @binding(4) var<storage, read> cu_sorted: array<u32>;
@group(0) @binding(5) var<storage, read> cu_dout: array<f32>;
@group(0) @binding(6) var<storage, read_write> cu_values: array<core_t>; // [C, D]
@group(0) @binding(7) var<storage, read_write> cu_state: array<f32>;  // [C] (Adagrad)
@group(0) @binding(8) var<uniform> opt: OptParams;

@compute @workgroup_size(64)
fn cache_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    let dim = max(D, 1u);
    var i = id;
    var c = 0u;
    if (OPTIMIZER == 0u) {
        i = id / dim;
        c = id - i * dim;
    }
    if (i >= route.nnz) {
        return;
    }
    let slot = cu_hit[cu_sorted[i]];
    if (slot == NONE || (i > 0u && cu_hit[cu_sorted[i - 1u]] == slot)) {
        return;
    }
    let row = slot * dim;
    for (var j = i; j < route.nnz; j = j + 1u) {
        let n = cu_sorted[j];
        if (cu_hit[n] != slot) {
            break;
        }
        let ds = vec2<u32>(cu_dest[n], 0u);
        let s = cu_scale[n];
        if (OPTIMIZER == 0u) {
            let g = s * cu_dout[ds.x + c];
            cu_values[row + c] = core_t(f32(cu_values[row + c]) - opt.lr * g);
        } else {
            var sq = 0.0;
            for (var k = 0u; k < dim; k = k + 1u) {
                let g = s * cu_dout[ds.x + k];
                sq = sq + g * g;
            }
            let st = cu_state[slot] + sq / f32(dim);
            cu_state[slot] = st;
            let den = sqrt(st) + opt.eps;
            for (var k = 0u; k < dim; k = k + 1u) {
                let g = s * cu_dout[ds.x + k];
                cu_values[row + k] = core_t(f32(cu_values[row + k]) - opt.lr * g / den);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cache_store: the refresh's computed rows (f32, [C, D]) into the cache as `core_t`, each value
// rounded once (used where the rows are stored as f16; f32 rows are written in place).

override LEN: u32 = 0u; // C * D

@group(0) @binding(0) var<storage, read> st_rows: array<f32>;
@group(0) @binding(1) var<storage, read_write> st_values: array<core_t>;

@compute @workgroup_size(64)
fn cache_store(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= LEN) {
        return;
    }
    st_values[i] = core_t(st_rows[i]);
}
