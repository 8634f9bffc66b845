//! The LFU row cache attached to a TT table (or group) on the GPU ([`TtCache`]): the hash table
//! of counts, the cached rows and their optimizer state, the statistics, the step count that
//! makes a refresh due, and the refresh's plan once built. Lookups are routed to it by
//! [`crate::tt::TtLookups`]; the refresh is recorded and run by `tt::refresh`; kernels in
//! `shaders/tt_cache.wgsl` (see [`crate::cache`] for the rules).
//!
//! A cached row's trained value is discarded when a refresh recomputes the cache (as in the
//! reference): every member's row, staying or new, is computed again from the current cores,
//! and its row-wise Adagrad state starts at zero. A row that leaves the cache is served from the
//! cores at once (its slot is gone with the refresh).
//!
//! The cached rows are stored at the cores' precision (`--tt-precision`): f16 rows for f16 cores,
//! read into f32, trained in f32 and rounded once per update (see shaders/tt_cache.wgsl).

use crate::cache::{CacheConfig, CacheStats, SELECTION_WORDS, STATS_WORDS};
use crate::error::Result;
use crate::gpu::shaders::CorePrecision;
use crate::gpu::Gpu;
use crate::graph::{Plan, PlanInput};
use crate::kernels::tt_cache::{CacheHash, NONE};
use crate::tt_shape::GroupTable;

/// The cache's GPU state and the host's bookkeeping.
#[derive(Debug)]
pub struct TtCache {
    pub(crate) config: CacheConfig,
    pub(crate) hash: CacheHash,
    /// Key of each slot ([`NONE`] past the members), C words.
    pub(crate) members: wgpu::Buffer,
    /// The last refresh's member count (and the select's working state).
    pub(crate) selection: wgpu::Buffer,
    /// The cached rows, [C, D], stored at `precision`.
    pub(crate) values: wgpu::Buffer,
    /// The cached rows' storage type: the cores'.
    pub(crate) precision: CorePrecision,
    /// Row-wise Adagrad state, C (a placeholder with SGD).
    pub(crate) state: wgpu::Buffer,
    /// Counters the probes add to ([`STATS_WORDS`]), read and zeroed by [`TtCache::read_stats`].
    pub(crate) stats: wgpu::Buffer,
    /// Per table of the group: its first key (key = first key + id).
    pub(crate) key_offsets: Vec<u32>,
    steps: u64,
    refreshes: u64,
    totals: CacheStats,
    /// The refresh (select, then the members' rows), built on the first refresh.
    refresh: Option<(Plan, PlanInput)>,
}

impl TtCache {
    /// The cache of a group of `tables` with rows of `dim` columns stored at `precision`.
    pub(crate) fn new(
        gpu: &Gpu,
        config: CacheConfig,
        tables: &[GroupTable],
        dim: usize,
        adagrad: bool,
        precision: CorePrecision,
    ) -> Result<Self> {
        let mut key_offsets = Vec::with_capacity(tables.len());
        let mut keys = 0u64;
        for t in tables {
            key_offsets.push(keys.min(u32::MAX as u64) as u32);
            keys += t.shape.num_embeddings;
        }
        config.validate(keys)?;
        let c = config.rows;
        let hash = CacheHash::new(gpu, "tt cache hash", config.hash_entries, config.max_probe)?;
        Ok(TtCache {
            config,
            hash,
            members: gpu.storage_from("tt cache members", &vec![NONE; c]),
            selection: gpu.storage("tt cache selection", SELECTION_WORDS as u64 * 4),
            // Whole 4-byte words (an f16 cache of an odd C x D ends in half a word).
            values: gpu.storage(
                "tt cache rows",
                ((c * dim) as u64 * precision.bytes()).next_multiple_of(4),
            ),
            precision,
            state: gpu.storage("tt cache state", if adagrad { c as u64 * 4 } else { 16 }),
            stats: gpu.storage("tt cache stats", STATS_WORDS as u64 * 4),
            key_offsets,
            steps: 0,
            refreshes: 0,
            totals: CacheStats::default(),
            refresh: None,
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }
    /// Training steps counted by [`crate::tt::TtParams::cache_step`].
    pub fn steps(&self) -> u64 {
        self.steps
    }
    pub fn refreshes(&self) -> u64 {
        self.refreshes
    }

    /// Counts a training step; whether a refresh is due after it: after `warmup_steps` steps,
    /// then every `refresh_every` steps.
    pub(crate) fn count_step(&mut self) -> bool {
        self.steps += 1;
        let (w, every) = (
            self.config.warmup_steps as u64,
            self.config.refresh_every as u64,
        );
        self.steps == w || (self.steps > w && (self.steps - w).is_multiple_of(every))
    }

    /// Whether the refresh's plan is built.
    pub(crate) fn has_refresh_plan(&self) -> bool {
        self.refresh.is_some()
    }

    /// Keeps the refresh's plan (built once by the table, which knows its lookups).
    pub(crate) fn set_refresh_plan(&mut self, plan: Plan, input: PlanInput) {
        self.refresh = Some((plan, input));
    }

    /// Runs the refresh (one submit, no host round-trip); its plan must be built.
    pub(crate) fn run_refresh(&mut self) -> Result<()> {
        let (plan, input) = self.refresh.as_ref().expect("refresh plan");
        plan.run_with(input)?;
        self.refreshes += 1;
        Ok(())
    }

    /// Encodes the refresh into the caller's `encoder`; its plan must be built.
    pub(crate) fn encode_refresh(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let (plan, input) = self.refresh.as_ref().expect("refresh plan");
        plan.encode_with(encoder, input)?;
        self.refreshes += 1;
        Ok(())
    }

    /// The statistics since the cache was made: lookups, hits and dropped counts summed over
    /// every step (read from the GPU, one wait, and moved into the totals), members and
    /// occupied hash entries as of the last refresh.
    pub(crate) fn read_stats(&mut self, gpu: &Gpu) -> Result<CacheStats> {
        let words = gpu.read_u32(&self.stats, 0, STATS_WORDS)?;
        let now = CacheStats::from_words(&words);
        // Lookups, hits and dropped are added by the probes: move them into the totals.
        gpu.write(&self.stats, &[0u32; 3]);
        let mut totals = self.totals;
        totals.lookups += now.lookups;
        totals.hits += now.hits;
        totals.dropped += now.dropped;
        totals.members = now.members;
        totals.occupied = now.occupied;
        self.totals = totals;
        Ok(totals)
    }

    /// The cached rows by key (read from the GPU): the members of the last refresh and their
    /// current (trained) values, rows of `dim` columns.
    pub(crate) fn read_rows(&self, gpu: &Gpu, dim: usize) -> Result<Vec<(u32, Vec<f32>)>> {
        let m = gpu.read_u32(&self.selection, 0, 1)?[0] as usize;
        let m = m.min(self.config.rows);
        let keys = gpu.read_u32(&self.members, 0, m)?;
        let bytes = gpu.read_bytes(&self.values, 0, (m * dim) as u64 * self.precision.bytes())?;
        let values: Vec<f32> = match self.precision {
            CorePrecision::F32 => bytemuck::pod_collect_to_vec(&bytes),
            CorePrecision::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
                .collect(),
        };
        Ok(keys
            .into_iter()
            .enumerate()
            .map(|(s, k)| (k, values[s * dim..(s + 1) * dim].to_vec()))
            .collect())
    }
}
