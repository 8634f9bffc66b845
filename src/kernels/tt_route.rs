//! Launchers of `shaders/tt_route.wgsl`: a batch's lookups routed on the GPU (row digits, bag of
//! each lookup, and per core the stable sort by digit with its segment and piece tables), so the
//! host's part of a step is one O(nnz + bags) pass. CPU twin: `prepare_group` and `cut_pieces`
//! in src/twin/tt_route.rs.

use crate::error::Result;
use crate::gpu::grid;
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::named;
use crate::kernels::{launch, launch_grid, WORKGROUP};

/// The per-batch uniform of the routing kernels (the WGSL `Route`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RouteParams {
    pub nnz: u32,
    pub num_bags: u32,
    pub tables: u32,
    /// Stride between the per-core sections of the digits and the sorted lookups.
    pub cap: u32,
    /// 0 sum, 1 mean, 2 sum weighted by per-sample weights.
    pub pool: u32,
    pub _pad: [u32; 3],
}

/// u32 words per table in the table descriptor of a group with `cores` cores: the table's first
/// lookup, then its row count and first group row of each core.
pub fn table_desc_words(cores: usize) -> usize {
    1 + 2 * cores
}

/// Adds the row digits of up to `max_lookups` lookups: `digits[k * cap + n]` from the ids (u32:
/// a TT table has at most 2^32 rows) and the group's table descriptor. With `keyed` the ids are
/// a group's keys and each table's descriptor starts with its first key instead of its first
/// lookup (a cache's members). `num_tables`: the group's tables (the counts' walk).
#[allow(clippy::too_many_arguments)]
pub fn record_route_digits(
    g: &mut GraphBuilder,
    label: String,
    cores: usize,
    num_tables: usize,
    keyed: bool,
    route: Buf,
    ids: Buf,
    tables: Buf,
    digits: Buf,
    max_lookups: usize,
) -> Result<()> {
    launch(
        g,
        label,
        Kernel::RouteDigits,
        &[("D", cores as f64), ("KEYED", keyed as u8 as f64)],
        named![route, ids, tables, digits],
        max_lookups as u64,
    )?;
    // Integer work: a linear walk over the tables' descriptors, then one digit per core.
    g.set_cost(Cost {
        flops: 0.0,
        bytes: 4.0 * max_lookups as f64 * (1.0 + 3.0 * cores as f64),
        serial: (num_tables + cores) as u64,
    });
    Ok(())
}

/// Integer routing work has no flops; its `serial` is the loop the kernel walks.
fn integer(bytes: f64, serial: u64) -> Cost {
    Cost {
        flops: 0.0,
        bytes,
        serial,
    }
}

/// Steps of a binary search over `n` entries.
fn search_steps(n: usize) -> u64 {
    (usize::BITS - n.max(1).leading_zeros()) as u64
}

/// Adds each lookup's destination (its bag's row) and pooling scale. With `orig` the lookups are
/// a compacted subset of the batch: lookup n is the batch's lookup `orig[n]`, whose bag the
/// batch's `offsets` give.
#[allow(clippy::too_many_arguments)]
pub fn record_route_bags(
    g: &mut GraphBuilder,
    label: String,
    route: Buf,
    offsets: Buf,
    bag_dest: Buf,
    weights: Buf,
    dest: Buf,
    scale: Buf,
    orig: Option<Buf>,
    max_lookups: usize,
) -> Result<()> {
    let indirect = orig.is_some();
    let orig = orig.unwrap_or_else(|| Buf::from(g.gpu().placeholder()));
    launch(
        g,
        label,
        Kernel::RouteBags,
        &[("INDIRECT", indirect as u8 as f64)],
        named![route, offsets, bag_dest, weights, dest, scale, orig],
        max_lookups as u64,
    )?;
    // A binary search for the lookup's bag (over at most as many bags as lookups).
    g.set_cost(integer(
        4.0 * max_lookups as f64 * 6.0,
        search_steps(max_lookups),
    ));
    Ok(())
}

/// How a core's lookups are sorted: the same stable counting sort either way, bitwise the same
/// results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortStrategy {
    /// Four dispatches (count, scan, segments, place) over blocks of about sqrt(chunk) lookups,
    /// plus two clears: parallel enough for GPUs.
    Blocks,
    /// One dispatch: a workgroup per chunk whose 64 invocations do the four steps with barriers
    /// between them: for CPU adapters, where each dispatch costs tens of microseconds.
    Workgroup,
}

/// The most rows of a core the one-dispatch sort takes: its workgroup zeroes and scans 64 x rows
/// counts per chunk, one invocation looping over rows of them, which stops paying for large
/// cores (and on lavapipe it was seen to lose writes from 32,768 rows on; 16,384 passed).
pub const FUSED_SORT_MAX_ROWS: usize = 4096;

/// How the sort of one core is laid out in a plan (fixed per plan: the chunking and the piece
/// lengths are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortLayout {
    /// Rows of the core (digits).
    pub rows: usize,
    pub core: usize,
    /// Lookups per chunk, and chunks of the plan.
    pub chunk: usize,
    pub chunks: usize,
    /// Lookups per block (counted and placed by one invocation).
    pub block: usize,
    pub blocks_per_chunk: usize,
    /// Lookups per core-gradient piece (0: no gradient piece table).
    pub grad_len: usize,
    /// Subgroup pieces: lookups per piece and piece slots per chunk.
    pub sg: Option<(usize, usize)>,
    pub strategy: SortStrategy,
}

impl SortLayout {
    /// A layout whose blocks are about the square root of a chunk long (at least 16, at most
    /// 1024 lookups), which balances the serial loops: a block's lookups in `sort_count` and
    /// `sort_place`, a chunk's blocks in `sort_scan`. The block counts take chunks x blocks x
    /// rows words.
    /// With [`SortStrategy::Workgroup`] a chunk is 64 blocks, one per invocation of its
    /// workgroup; cores of more than [`FUSED_SORT_MAX_ROWS`] rows take the blocks instead.
    pub fn new(
        rows: usize,
        core: usize,
        chunk: usize,
        chunks: usize,
        grad_len: usize,
        sg: Option<(usize, usize)>,
        strategy: SortStrategy,
    ) -> Self {
        let strategy = if rows > FUSED_SORT_MAX_ROWS {
            SortStrategy::Blocks
        } else {
            strategy
        };
        let block = match strategy {
            SortStrategy::Blocks => ((chunk as f64).sqrt().ceil() as usize)
                .next_power_of_two()
                .clamp(16, 1024),
            SortStrategy::Workgroup => chunk.div_ceil(WORKGROUP as usize).max(1),
        };
        SortLayout {
            rows,
            core,
            chunk,
            chunks,
            block,
            blocks_per_chunk: match strategy {
                SortStrategy::Blocks => chunk.div_ceil(block),
                SortStrategy::Workgroup => WORKGROUP as usize,
            },
            grad_len,
            sg,
            strategy,
        }
    }

    /// Words of the per-block digit counts (with [`SortStrategy::Workgroup`] also the offsets
    /// and the run lengths: the fused kernel's whole scratch).
    pub fn count_words(&self) -> usize {
        let counts = self.chunks * self.blocks_per_chunk * self.rows;
        match self.strategy {
            SortStrategy::Blocks => counts,
            SortStrategy::Workgroup => 2 * counts + self.total_words(),
        }
    }
    /// Words of a per-chunk table over the digits (totals).
    pub fn total_words(&self) -> usize {
        self.chunks * self.rows
    }
    /// Words of a per-chunk table with one entry per digit and a closing one (segments, piece
    /// starts).
    pub fn table_words(&self) -> usize {
        self.chunks * (self.rows + 1)
    }

    /// Lookups the plan sorts (every chunk full).
    fn lookups(&self) -> usize {
        self.chunks * self.chunk
    }

    /// The count of the one-dispatch sort: a workgroup per chunk, each invocation counting
    /// and placing its block (after zeroing its counts of every digit), and the scans split over
    /// the 64 invocations
    /// with barriers between (an invocation's share of the rows, 64 blocks each, and the
    /// segments' scan over the shares).
    fn fused_cost(&self) -> Cost {
        let share = self.rows.div_ceil(WORKGROUP as usize) as u64;
        integer(
            4.0 * (10.0 * self.lookups() as f64 + 3.0 * self.count_words() as f64),
            (self.rows + 2 * self.block) as u64 + share * (2 + WORKGROUP as u64) + WORKGROUP as u64,
        )
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let (sg_len, sg_pieces) = self.sg.unwrap_or((0, 1));
        vec![
            ("PK", self.rows as f64),
            ("CORE_K", self.core as f64),
            ("CHUNK", self.chunk as f64),
            ("CHUNKS", self.chunks as f64),
            ("BL", self.block as f64),
            ("BPC", self.blocks_per_chunk as f64),
            ("GRAD_LEN", self.grad_len as f64),
            ("SG_LEN", sg_len as f64),
            ("SG_PIECES", sg_pieces as f64),
        ]
    }
}

/// The buffers of one core's sort.
#[derive(Clone, Debug)]
pub struct SortBuffers {
    /// Scratch: per-block digit counts, then offsets ([`SortLayout::count_words`]).
    pub counts: Buf,
    /// Scratch: each chunk's run length per digit ([`SortLayout::total_words`]).
    pub totals: Buf,
    /// Out: per chunk, where each digit's run starts in `sorted` (a lookup position).
    pub segments: Buf,
    /// Out: per chunk, each digit's first core-gradient piece (with `grad_len`).
    pub grad_pieces: Option<Buf>,
    /// Out: per chunk, each digit's first subgroup piece, and the pieces themselves (lookup + 1
    /// per slot, 0 for an empty slot), with `sg`.
    pub sg_starts: Option<Buf>,
    pub sg_pieces: Option<Buf>,
    /// Out: the core's section of the lookups sorted by digit within each chunk.
    pub sorted: Buf,
}

/// Adds the stable sort of core `layout.core`'s digits: clears, counts, scans, places.
pub fn record_sort(
    g: &mut GraphBuilder,
    label: &str,
    layout: &SortLayout,
    route: Buf,
    digits: Buf,
    b: &SortBuffers,
) -> Result<()> {
    let c = layout.constants();
    let ro = Buf::from(g.gpu().placeholder());
    // Absent writable outputs: a distinct placeholder each (writable bindings may not alias).
    let rw = |i| Buf::from(g.gpu().placeholder_rw_n(i));
    let (rw0, rw1, rw2) = (rw(0), rw(1), rw(2));
    // One workgroup per chunk.
    let per_chunk = grid(
        layout.chunks as u64 * WORKGROUP as u64,
        WORKGROUP,
        g.gpu().limits().max_compute_workgroups_per_dimension,
    );
    if layout.strategy == SortStrategy::Workgroup {
        launch_grid(
            g,
            format!("{label} (fused)"),
            Kernel::SortFused,
            &c,
            named![
                route,
                digits,
                scratch = b.counts.clone(),
                segments = b.segments.clone(),
                grad_pieces = b.grad_pieces.clone().unwrap_or(rw0),
                sg_starts = b.sg_starts.clone().unwrap_or(rw1),
                sorted = b.sorted.clone(),
                sg_pieces = b.sg_pieces.clone().unwrap_or(rw2)
            ],
            per_chunk,
        )?;
        g.set_cost(layout.fused_cost());
        return Ok(());
    }
    let blocks = (layout.chunks * layout.blocks_per_chunk) as u64;
    g.clear(format!("{label} zero counts"), b.counts.clone());
    if let Some(p) = &b.sg_pieces {
        g.clear(format!("{label} zero pieces"), p.clone());
    }
    launch(
        g,
        format!("{label} count"),
        Kernel::SortCount,
        &c,
        named![
            route = route.clone(),
            digits = digits.clone(),
            counts = b.counts.clone()
        ],
        blocks,
    )?;
    let (lookups, count_words) = (layout.lookups() as f64, layout.count_words() as f64);
    // Each block's lookups in order, a read-modify-write of its digit's count each.
    g.set_cost(integer(
        4.0 * (lookups + 2.0 * lookups),
        layout.block as u64,
    ));
    launch(
        g,
        format!("{label} scan"),
        Kernel::SortScan,
        &c,
        named![
            route = route.clone(),
            counts = b.counts.clone(),
            totals = b.totals.clone()
        ],
        (layout.chunks * layout.rows) as u64,
    )?;
    // Per (chunk, digit): the chunk's blocks in order.
    g.set_cost(integer(
        4.0 * (2.0 * count_words + layout.total_words() as f64),
        layout.blocks_per_chunk as u64,
    ));
    launch_grid(
        g,
        format!("{label} segments"),
        Kernel::SortSegments,
        &c,
        named![
            route = route.clone(),
            totals = b.totals.clone(),
            segments = b.segments.clone(),
            grad_pieces = b.grad_pieces.clone().unwrap_or_else(|| rw0.clone()),
            sg_starts = b.sg_starts.clone().unwrap_or_else(|| rw1.clone())
        ],
        per_chunk,
    )?;
    // One workgroup per chunk: each invocation its share of the digits twice, and the
    // workgroup's earlier shares.
    g.set_cost(integer(
        4.0 * (layout.total_words() + 3 * layout.table_words()) as f64,
        2 * layout.rows.div_ceil(WORKGROUP as usize) as u64 + WORKGROUP as u64,
    ));
    launch(
        g,
        format!("{label} place"),
        Kernel::SortPlace,
        &c,
        named![
            route,
            digits,
            counts = b.counts.clone(),
            segments = b.segments.clone(),
            sorted = b.sorted.clone(),
            sg_starts = b.sg_starts.clone().unwrap_or(ro),
            sg_pieces = b.sg_pieces.clone().unwrap_or(rw2)
        ],
        blocks,
    )?;
    // Each block's lookups in order: its digit's offset, segment, and the sorted position
    // (and piece slot) written.
    g.set_cost(integer(4.0 * lookups * 7.0, layout.block as u64));
    Ok(())
}

/// u32 words of the TT path's uniforms written by [`record_compact`] and
/// [`record_members_batch`]: a `Route`, then a `Chunk` per chunk (8 words each).
pub fn tt_params_words(chunks: usize) -> usize {
    8 * (chunks + 1)
}

/// How a batch's cache misses are compacted (fixed per plan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactLayout {
    /// Lookups per block, and blocks over the plan's capacity.
    pub block: usize,
    pub blocks: usize,
    /// The TT path's chunking.
    pub chunk: usize,
    pub chunks: usize,
    /// u32 words per table descriptor.
    pub table_words: usize,
}

impl CompactLayout {
    /// Blocks of about the square root of the capacity (at least 64 lookups), at most 4,096
    /// blocks so that the one-workgroup scan stays short.
    pub fn new(nnz_cap: usize, chunk: usize, chunks: usize, table_words: usize) -> Self {
        let block = ((nnz_cap as f64).sqrt().ceil() as usize)
            .next_power_of_two()
            .max(64)
            .max(nnz_cap.div_ceil(4096));
        CompactLayout {
            block,
            blocks: nnz_cap.div_ceil(block),
            chunk,
            chunks,
            table_words,
        }
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("CBL", self.block as f64),
            ("CBLOCKS", self.blocks as f64),
            ("TT_CHUNK", self.chunk as f64),
            ("TT_CHUNKS", self.chunks as f64),
            ("TABLE_STRIDE", self.table_words as f64),
        ]
    }
}

/// The buffers of a compaction: the batch's (inputs), scratch, and the TT path's (outputs).
#[derive(Clone, Debug)]
pub struct CompactBuffers {
    /// Per lookup of the batch: its cache slot or NONE (a miss).
    pub hit: Buf,
    pub ids: Buf,
    pub offsets: Buf,
    pub tables: Buf,
    /// Scratch: per block misses then bases ([`CompactLayout::blocks`] words), the total (1
    /// word), and per lookup the misses before it (capacity words).
    pub blocks: Buf,
    pub total: Buf,
    pub rank: Buf,
    /// Out: the misses' ids and positions in the batch (capacity words each), the offsets and
    /// table descriptors over them, and the TT path's uniforms ([`tt_params_words`]).
    pub tt_ids: Buf,
    pub orig: Buf,
    pub tt_offsets: Buf,
    pub tt_tables: Buf,
    pub params: Buf,
}

/// Adds the compaction of a batch's cache misses into the TT path's batch: count, scan, place,
/// finish (offsets, table starts, uniforms). `max_offsets`: the batch's offset capacity.
pub fn record_compact(
    g: &mut GraphBuilder,
    label: &str,
    layout: &CompactLayout,
    route: Buf,
    b: &CompactBuffers,
    max_offsets: usize,
    max_tables: usize,
) -> Result<()> {
    let c = layout.constants();
    launch(
        g,
        format!("{label} count"),
        Kernel::CompactCount,
        &c,
        named![
            route = route.clone(),
            hit = b.hit.clone(),
            blocks = b.blocks.clone()
        ],
        layout.blocks as u64,
    )?;
    let lookups = (layout.blocks * layout.block) as f64;
    g.set_cost(integer(
        4.0 * (lookups + layout.blocks as f64),
        layout.block as u64,
    ));
    launch_grid(
        g,
        format!("{label} scan"),
        Kernel::CompactScan,
        &c,
        named![
            route = route.clone(),
            blocks = b.blocks.clone(),
            total = b.total.clone()
        ],
        [1, 1, 1],
    )?;
    // One workgroup: each invocation its share of the blocks twice, and the earlier shares.
    g.set_cost(integer(
        4.0 * 2.0 * layout.blocks as f64,
        2 * layout.blocks.div_ceil(WORKGROUP as usize) as u64 + WORKGROUP as u64,
    ));
    launch(
        g,
        format!("{label} place"),
        Kernel::CompactPlace,
        &c,
        named![
            route = route.clone(),
            hit = b.hit.clone(),
            blocks = b.blocks.clone(),
            ids = b.ids.clone(),
            tt_ids = b.tt_ids.clone(),
            orig = b.orig.clone(),
            rank = b.rank.clone()
        ],
        layout.blocks as u64,
    )?;
    g.set_cost(integer(4.0 * 5.0 * lookups, layout.block as u64));
    launch(
        g,
        format!("{label} finish"),
        Kernel::CompactFinish,
        &c,
        named![
            route,
            total = b.total.clone(),
            rank = b.rank.clone(),
            offsets = b.offsets.clone(),
            tables = b.tables.clone(),
            tt_offsets = b.tt_offsets.clone(),
            tt_tables = b.tt_tables.clone(),
            params = b.params.clone()
        ],
        max_offsets.max(max_tables) as u64,
    )?;
    g.set_cost(integer(
        4.0 * 3.0 * (max_offsets + max_tables * layout.table_words) as f64,
        layout.table_words.max(layout.chunks) as u64,
    ));
    Ok(())
}

/// Adds the TT path's uniforms for a cache refresh's members (bag i = member i; `route` holds
/// the tables and the capacity C), from the member count at word 0 of `selection`.
pub fn record_members_batch(
    g: &mut GraphBuilder,
    label: &str,
    chunk: usize,
    chunks: usize,
    route: Buf,
    selection: Buf,
    params: Buf,
) -> Result<()> {
    launch_grid(
        g,
        label,
        Kernel::MembersBatch,
        &[("TT_CHUNK", chunk as f64), ("TT_CHUNKS", chunks as f64)],
        named![route, selection, params],
        [1, 1, 1],
    )?;
    // One invocation writes the route and each chunk's uniform.
    g.set_cost(integer(4.0 * 8.0 * (chunks + 1) as f64, chunks as u64));
    Ok(())
}
