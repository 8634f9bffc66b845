//! Launchers of `shaders/tt_cache.wgsl`: the LFU row cache of TT tables (see [`crate::cache`]):
//! the hash table's reset and probe (counting), the refresh (top-C selection and slots), the
//! pooling of cached rows and their training. CPU twin: [`crate::twin::tt_cache`].
//!
//! Buffer sizes (u32 or f32 words, every buffer at least 16 bytes): hash table keys, counts and
//! slots H each; stats [`STATS_WORDS`]; selection [`SELECTION_WORDS`]; members C; cache values
//! and their Adagrad state C x D and C; per batch: hit `max_lookups`. The refresh and the update
//! declare their scratch as plan transients (sizes in [`select_scratch_words`],
//! [`update_scratch_words`]).

use crate::cache::{SELECTION_WORDS, STATS_WORDS};
use crate::error::{Error, Result};
use crate::gpu::shaders::{CorePrecision, Kernel, ShaderTypes};
use crate::gpu::{grid, Gpu};
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::optim::UpdateKind;
use crate::kernels::tt_route::record_route_bags;
use crate::kernels::{groups, launch_grid, launch_grid_typed, launch_typed, named, WORKGROUP};

pub use crate::cache::{EMPTY, NONE};

/// Hash entries per workgroup of the refresh kernels (the WGSL `TILE`).
pub const SELECT_TILE: usize = 1024;

/// u32 words of one table descriptor entry of the probe: `[first lookup, key offset]`.
pub const TABLE_WORDS: usize = 2;

/// A cache's hash table on the GPU: three arrays of `entries` u32 (keys, [`EMPTY`] when free;
/// counts; slots, [`NONE`] for non-members) and the probe limit.
#[derive(Clone, Debug)]
pub struct CacheHash {
    pub keys: Buf,
    pub counts: Buf,
    pub slots: Buf,
    /// H, a power of two.
    pub entries: usize,
    pub max_probe: usize,
}

impl CacheHash {
    /// New buffers of an empty table of `entries` entries (a power of two).
    pub fn new(gpu: &Gpu, label: &str, entries: usize, max_probe: usize) -> Result<Self> {
        if !entries.is_power_of_two() || max_probe == 0 {
            return Err(Error::Gpu(format!(
                "cache hash {label}: {entries} entries (a power of two) and max_probe {max_probe} (>= 1)"
            )));
        }
        let keys = gpu.storage_from(&format!("{label} keys"), &vec![EMPTY; entries]);
        let counts = gpu.storage_from(&format!("{label} counts"), &vec![0u32; entries]);
        let slots = gpu.storage_from(&format!("{label} slots"), &vec![NONE; entries]);
        Ok(CacheHash {
            keys: Buf::from(&keys),
            counts: Buf::from(&counts),
            slots: Buf::from(&slots),
            entries,
            max_probe,
        })
    }

    fn h(&self) -> (&'static str, f64) {
        ("H", self.entries as f64)
    }
}

/// Adds the reset of the hash table: every entry empty (keys [`EMPTY`], counts 0, slots
/// [`NONE`]).
pub fn record_cache_reset(g: &mut GraphBuilder, label: &str, hash: &CacheHash) -> Result<()> {
    let gr = groups(g, hash.entries as u64);
    let CacheHash {
        keys,
        counts,
        slots,
        ..
    } = hash;
    launch_grid(
        g,
        label,
        Kernel::CacheReset,
        &[hash.h()],
        named![&keys, &counts, &slots],
        gr,
    )?;
    g.set_cost(integer(12.0 * hash.entries as f64, 1));
    Ok(())
}

/// Adds the probe of up to `max_lookups` lookups (`route.nnz` of them): each lookup's key is
/// `key offset of its table + ids[n]` (`tables`: [`TABLE_WORDS`] per table, `[first lookup, key
/// offset]`, tables in lookup order); with `count` (training forwards) an absent key is inserted
/// and every occurrence adds one to its key's count. `hit[n]` = the key's slot or [`NONE`].
/// Adds to `stats` ([`STATS_WORDS`], zeroed by the caller when it wants): lookups, hits, dropped
/// (with `count`, occurrences whose key found no entry within the probe limit). `num_tables`: how
/// many the descriptor holds (the counts' walk).
#[allow(clippy::too_many_arguments)]
pub fn record_cache_probe(
    g: &mut GraphBuilder,
    label: &str,
    route: Buf,
    ids: Buf,
    tables: Buf,
    hash: &CacheHash,
    hit: Buf,
    stats: Buf,
    count: bool,
    max_lookups: usize,
    num_tables: usize,
) -> Result<()> {
    let gr = groups(g, max_lookups as u64);
    let CacheHash {
        keys,
        counts,
        slots,
        ..
    } = hash;
    launch_grid(
        g,
        label,
        Kernel::CacheProbe,
        &[
            hash.h(),
            ("MAX_PROBE", hash.max_probe as f64),
            ("COUNT", if count { 1.0 } else { 0.0 }),
        ],
        named![route, ids, tables, &keys, &counts, &slots, hit, stats],
        gr,
    )?;
    // Per lookup: its table (a walk over the descriptors), then up to MAX_PROBE entries.
    g.set_cost(integer(
        4.0 * max_lookups as f64 * (3.0 + 3.0 * hash.max_probe as f64),
        (hash.max_probe + num_tables) as u64,
    ));
    Ok(())
}

/// u32 words of the refresh's scratch for `entries` hash entries: the 256-bin histogram and the
/// per-tile member counts (one per [`SELECT_TILE`] entries).
pub fn select_scratch_words(entries: usize) -> (usize, usize) {
    (256, entries.div_ceil(SELECT_TILE))
}

/// Adds a refresh with `capacity_c` cache rows: the members are the top `capacity_c` non-empty
/// entries by (count descending, key ascending), all of them when fewer; every entry's slot
/// becomes its rank among the members in entry order, or [`NONE`]; `members[slot] = key`
/// (`capacity_c` words, [`NONE`] past the members). `selection` ([`SELECTION_WORDS`]) gets the
/// member count m at word 0 and the non-empty entries at word 1; `stats` the same at words 3 and
/// 4. A radix select of the m-th largest (count, key) over 8 passes of 8 bits, then a scan over
/// entry tiles: 20 dispatches, no host round-trip. Scratch: two transients
/// ([`select_scratch_words`]).
#[allow(clippy::too_many_arguments)]
pub fn record_cache_select(
    g: &mut GraphBuilder,
    label: &str,
    hash: &CacheHash,
    capacity_c: usize,
    members: Buf,
    selection: Buf,
    stats: Buf,
) -> Result<()> {
    let gpu = g.gpu().clone();
    let constants = [hash.h(), ("CAP_C", capacity_c as f64)];
    let (hist_words, tile_words) = select_scratch_words(hash.entries);
    let hist = g.transient(&format!("{label} histogram"), hist_words as u64 * 4);
    let tiles = g.transient(&format!("{label} tiles"), tile_words as u64 * 4);
    let max_dim = gpu.limits().max_compute_workgroups_per_dimension;
    let tile_groups = grid(tile_words as u64 * WORKGROUP as u64, WORKGROUP, max_dim);

    let gr = groups(g, capacity_c.max(256) as u64);
    launch_grid(
        g,
        format!("{label} init"),
        Kernel::SelectInit,
        &constants,
        named![&selection, &hist, &members],
        gr,
    )?;
    g.set_cost(integer(4.0 * (capacity_c + 256) as f64, 1));
    let entries = hash.entries as f64;
    let (keys, counts) = (hash.keys.clone(), hash.counts.clone());
    for pass in 0..8 {
        launch_grid(
            g,
            format!("{label} histogram {pass}"),
            Kernel::SelectHist,
            &constants,
            named![&selection, &keys, &counts, &hist],
            tile_groups,
        )?;
        // Per tile: each invocation its 16 entries, then the tile's 256 bins merged 4 a thread.
        g.set_cost(integer(
            4.0 * (2.0 * entries + 256.0 * tile_words as f64),
            (SELECT_TILE / WORKGROUP as usize + WORKGROUP as usize) as u64,
        ));
        launch_grid(
            g,
            format!("{label} choose {pass}"),
            Kernel::SelectChoose,
            &constants,
            named![&selection, &hist, &stats],
            [1, 1, 1],
        )?;
        // One invocation walks the 256 bins (twice).
        g.set_cost(integer(4.0 * 2.0 * 256.0, 2 * 256));
    }
    launch_grid(
        g,
        format!("{label} count"),
        Kernel::SelectCount,
        &constants,
        named![&selection, &keys, &counts, &tiles],
        tile_groups,
    )?;
    g.set_cost(integer(
        4.0 * (2.0 * entries + tile_words as f64),
        (SELECT_TILE / WORKGROUP as usize + WORKGROUP as usize) as u64,
    ));
    launch_grid(
        g,
        format!("{label} scan"),
        Kernel::SelectScan,
        &constants,
        named![&tiles],
        [1, 1, 1],
    )?;
    // One workgroup: each invocation its share of the tiles twice and the earlier shares.
    g.set_cost(integer(
        4.0 * 2.0 * tile_words as f64,
        (2 * tile_words.div_ceil(WORKGROUP as usize) + WORKGROUP as usize) as u64,
    ));
    launch_grid(
        g,
        format!("{label} place"),
        Kernel::SelectPlace,
        &constants,
        named![
            selection,
            keys,
            counts,
            tiles,
            slots = hash.slots.clone(),
            members
        ],
        tile_groups,
    )?;
    g.set_cost(integer(
        4.0 * (4.0 * entries + capacity_c as f64),
        (2 * SELECT_TILE / WORKGROUP as usize + WORKGROUP as usize) as u64,
    ));
    Ok(())
}

/// Adds the pooling of the cached rows of up to `max_bags` bags (`route.num_bags` of them):
/// `out[bag_dest[b] + c] += sum over the hits n of bag b, in lookup order, of scale_n
/// cache_values[hit[n] * dim + c]` (scale 1, 1 / bag length, or `weights[n]` by `route.pool`).
/// Runs after the TT pooling wrote `out`; bags without hits are untouched. `max_lookups` and
/// `bag_run` (the longest bag) size the counts.
#[allow(clippy::too_many_arguments)]
pub fn record_cache_pool(
    g: &mut GraphBuilder,
    label: &str,
    route: Buf,
    offsets: Buf,
    bag_dest: Buf,
    weights: Buf,
    hit: Buf,
    cache_values: Buf,
    out: Buf,
    dim: usize,
    max_bags: usize,
    max_lookups: usize,
    bag_run: usize,
) -> Result<()> {
    record_cache_pool_as(
        g,
        label,
        [route, offsets, bag_dest, weights, hit],
        cache_values,
        out,
        [dim, max_bags, max_lookups, bag_run],
        CorePrecision::F32,
    )
}

/// [`record_cache_pool`] of cached rows stored at `precision` (f16: read into f32).
/// `inputs`: route, offsets, bag_dest, weights, hit; `sizes`: dim, max_bags, max_lookups,
/// bag_run.
pub fn record_cache_pool_as(
    g: &mut GraphBuilder,
    label: &str,
    inputs: [Buf; 5],
    cache_values: Buf,
    out: Buf,
    sizes: [usize; 4],
    precision: CorePrecision,
) -> Result<()> {
    let [route, offsets, bag_dest, weights, hit] = inputs;
    let [dim, max_bags, max_lookups, bag_run] = sizes;
    let gr = groups(g, (max_bags * dim) as u64);
    launch_grid_typed(
        g,
        label,
        Kernel::CachePool,
        ShaderTypes::new(precision, false),
        &[("D", dim as f64)],
        named![
            route,
            offsets,
            bag_dest,
            weights,
            hit,
            values = cache_values,
            out
        ],
        gr,
    )?;
    // One invocation per (bag, column) walks the bag's lookups; `bag_run`: the longest bag.
    let (l, d) = (max_lookups as f64, dim as f64);
    g.set_cost(Cost {
        flops: 2.0 * l * d,
        bytes: 4.0 * (l * (d + 3.0) + 2.0 * max_bags as f64 * d),
        serial: bag_run as u64,
    });
    Ok(())
}

/// How the update's sort of the lookups by slot is laid out for `max_lookups` lookups and
/// `capacity_c` slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotSortLayout {
    /// Lookups per block (counted and placed by one invocation, in lookup order).
    pub block: usize,
    pub blocks: usize,
    /// Radix passes of 8 bits over the keys 0..=C (C: a miss).
    pub passes: usize,
}

impl SlotSortLayout {
    /// Blocks of about the square root of `max_lookups` lookups (16 to 1024), as
    /// [`crate::kernels::tt_route::SortLayout`].
    pub fn new(max_lookups: usize, capacity_c: usize) -> Self {
        let block = ((max_lookups as f64).sqrt().ceil() as usize)
            .next_power_of_two()
            .clamp(16, 1024);
        let bits = (usize::BITS - capacity_c.leading_zeros()) as usize;
        SlotSortLayout {
            block,
            blocks: max_lookups.div_ceil(block).max(1),
            passes: bits.div_ceil(8).max(1),
        }
    }
}

/// u32 words of the update's scratch for `max_lookups` lookups and `capacity_c` slots: the two
/// ping-pong arrays of sorted lookups (`max_lookups` each), the per-block digit counts (blocks x
/// 256) and the digit bases (256).
pub fn update_scratch_words(max_lookups: usize, capacity_c: usize) -> [usize; 4] {
    let l = SlotSortLayout::new(max_lookups, capacity_c);
    [max_lookups, max_lookups, l.blocks * 256, 256]
}

/// Adds the training of the cached rows from the output gradient `dout` (laid out as the pooled
/// output: bag b's row at `bag_dest[b]`): each occurrence n of a cached row (`hit[n] != NONE`), in
/// lookup order, with g = scale_n dout[bag_dest[bag(n)] + c]: SGD `values -= lr g`; row-wise
/// Adagrad `state[slot] += mean over c of g^2; values -= lr g / (sqrt(state[slot]) + eps)`.
/// `opt`: the uniform `OptParams` (lr, eps; len unused). `state`: C f32 for Adagrad, any
/// read-write buffer for SGD. A stable radix sort of the lookups by slot
/// ([`SlotSortLayout`], 3 dispatches a pass), then one dispatch walking each slot's run. Scratch:
/// four transients ([`update_scratch_words`]). Adds nothing when `capacity_c` is 0. `row_run`
/// (the most occurrences of one row) sizes the counts.
#[allow(clippy::too_many_arguments)]
pub fn record_cache_update(
    g: &mut GraphBuilder,
    label: &str,
    route: Buf,
    offsets: Buf,
    bag_dest: Buf,
    weights: Buf,
    hit: Buf,
    dout: Buf,
    values: Buf,
    state: Buf,
    opt: Buf,
    kind: UpdateKind,
    dim: usize,
    max_lookups: usize,
    capacity_c: usize,
    row_run: usize,
) -> Result<()> {
    record_cache_update_as(
        g,
        label,
        [route, offsets, bag_dest, weights, hit, dout],
        [values, state, opt],
        kind,
        [dim, max_lookups, capacity_c, row_run],
        CorePrecision::F32,
    )
}

/// [`record_cache_update`] of cached rows stored at `precision` (f16: each occurrence's update
/// computed in f32 and rounded once to f16). `inputs`: route, offsets, bag_dest, weights, hit,
/// dout; `trained`: values, state, opt; `sizes`: dim, max_lookups, capacity_c, row_run.
pub fn record_cache_update_as(
    g: &mut GraphBuilder,
    label: &str,
    inputs: [Buf; 6],
    trained: [Buf; 3],
    kind: UpdateKind,
    sizes: [usize; 4],
    precision: CorePrecision,
) -> Result<()> {
    let [route, offsets, bag_dest, weights, hit, dout] = inputs;
    let [values, state, opt] = trained;
    let [dim, max_lookups, capacity_c, row_run] = sizes;
    if capacity_c == 0 || max_lookups == 0 {
        return Ok(());
    }
    let gpu = g.gpu().clone();
    let layout = SlotSortLayout::new(max_lookups, capacity_c);
    let words = update_scratch_words(max_lookups, capacity_c);
    let sorted = [
        g.transient(&format!("{label} sorted a"), words[0] as u64 * 4),
        g.transient(&format!("{label} sorted b"), words[1] as u64 * 4),
    ];
    let counts = g.transient(&format!("{label} counts"), words[2] as u64 * 4);
    let bases = g.transient(&format!("{label} bases"), words[3] as u64 * 4);
    let ro = Buf::from(gpu.placeholder());
    for pass in 0..layout.passes {
        let constants = [
            ("CAP_C", capacity_c as f64),
            ("SHIFT", (8 * pass) as f64),
            ("FIRST", if pass == 0 { 1.0 } else { 0.0 }),
            ("BL", layout.block as f64),
            ("BLOCKS", layout.blocks as f64),
        ];
        let src = if pass == 0 {
            ro.clone()
        } else {
            sorted[(pass + 1) % 2].clone()
        };
        let dst = sorted[pass % 2].clone();
        let gr = groups(g, layout.blocks as u64);
        launch_grid(
            g,
            format!("{label} sort count {pass}"),
            Kernel::SlotSortCount,
            &constants,
            named![&route, &hit, &src, &counts],
            gr,
        )?;
        // Each block: its 256 digit counts zeroed, then its lookups in order.
        g.set_cost(integer(
            4.0 * (2.0 * max_lookups as f64 + 256.0 * layout.blocks as f64),
            (256 + layout.block) as u64,
        ));
        launch_grid(
            g,
            format!("{label} sort scan {pass}"),
            Kernel::SlotSortScan,
            &constants,
            named![&counts, &bases],
            [1, 1, 1],
        )?;
        // One workgroup: each invocation 4 digits over every block, then the earlier digits.
        g.set_cost(integer(
            4.0 * 2.0 * 256.0 * layout.blocks as f64,
            (4 * layout.blocks + 4 * WORKGROUP as usize) as u64,
        ));
        launch_grid(
            g,
            format!("{label} sort place {pass}"),
            Kernel::SlotSortPlace,
            &constants,
            named![&route, &hit, src, &counts, &bases, dst],
            gr,
        )?;
        g.set_cost(integer(4.0 * 5.0 * max_lookups as f64, layout.block as u64));
    }
    let code = match kind {
        UpdateKind::Sgd => 0.0,
        UpdateKind::Adagrad => 1.0,
    };
    let threads = match kind {
        UpdateKind::Sgd => max_lookups * dim,
        UpdateKind::Adagrad => max_lookups,
    };
    // Each lookup's destination and scale once (route_bags), not per occurrence and column.
    let dest = g.transient(&format!("{label} destinations"), max_lookups as u64 * 4);
    let scale = g.transient(&format!("{label} scales"), max_lookups as u64 * 4);
    record_route_bags(
        g,
        format!("{label} bags"),
        route.clone(),
        offsets,
        bag_dest,
        weights,
        dest.clone(),
        scale.clone(),
        None,
        max_lookups,
    )?;
    let gr = groups(g, threads as u64);
    launch_grid_typed(
        g,
        format!("{label} update"),
        Kernel::CacheUpdate,
        ShaderTypes::new(precision, false),
        &[("D", dim as f64), ("OPTIMIZER", code)],
        named![
            route,
            dest,
            scale,
            hit,
            sorted = sorted[(layout.passes - 1) % 2].clone(),
            dout,
            values,
            state,
            opt
        ],
        gr,
    )?;
    // Each occurrence's invocation walks its slot's run (at most `row_run` lookups), row-wise
    // Adagrad over the row's columns too.
    let (l, d) = (max_lookups as f64, dim as f64);
    let per_thread = match kind {
        UpdateKind::Sgd => 1,
        UpdateKind::Adagrad => dim,
    };
    g.set_cost(Cost {
        flops: 6.0 * l * d,
        bytes: 4.0 * (l * (2.0 * d + 4.0) + 2.0 * l * d),
        serial: (row_run * per_thread) as u64,
    });
    Ok(())
}

/// Stores `len` computed rows' values (`rows`, f32) into cached rows held at `precision`, each
/// rounded once (round to nearest): how a refresh fills an f16 cache, whose rows it computes
/// into f32 scratch first.
pub fn record_cache_store(
    g: &mut GraphBuilder,
    label: &str,
    rows: Buf,
    values: Buf,
    len: usize,
    precision: CorePrecision,
) -> Result<()> {
    launch_typed(
        g,
        label,
        Kernel::CacheStore,
        ShaderTypes::new(precision, false),
        &[("LEN", len as f64)],
        named![rows, values],
        len.max(1) as u64,
    )?;
    g.set_cost(Cost {
        flops: 0.0,
        bytes: (4 + precision.bytes()) as f64 * len as f64,
        serial: 1,
    });
    Ok(())
}

/// Reads a stats buffer ([`STATS_WORDS`] words) into [`crate::cache::CacheStats`] (waits for
/// the GPU).
pub fn read_cache_stats(gpu: &Gpu, stats: &wgpu::Buffer) -> Result<crate::cache::CacheStats> {
    let words = gpu.read_u32(stats, 0, STATS_WORDS)?;
    Ok(crate::cache::CacheStats::from_words(&words))
}

/// Reads the member count of a selection output ([`SELECTION_WORDS`] words; waits).
pub fn read_members(gpu: &Gpu, selection: &wgpu::Buffer) -> Result<usize> {
    let words = gpu.read_u32(selection, 0, SELECTION_WORDS)?;
    Ok(words[0] as usize)
}

/// Integer work (hashing, sorting, selecting): no flops, the loop the kernel walks.
fn integer(bytes: f64, serial: u64) -> Cost {
    Cost {
        flops: 0.0,
        bytes,
        serial,
    }
}
