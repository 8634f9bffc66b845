//! The LFU row cache of a TT table (or group) on the GPU: the hash table of counts, the cached
//! rows and their optimizer state, the statistics, and the refresh (top-C choice, then the
//! members' rows computed from the current cores into the cache, all in one submit). Lookups are
//! routed to it by [`crate::tt::TtLookups`]; kernels in `shaders/tt_cache.wgsl` (see
//! [`crate::cache`] for the rules).
//!
//! A cached row's trained value is discarded when a refresh recomputes the cache (as in the
//! reference): every member's row, staying or new, is computed again from the current cores,
//! and its row-wise Adagrad state starts at zero. A row that leaves the cache is served from the
//! cores at once (its slot is gone with the refresh).

use crate::cache::{CacheConfig, CacheStats, SELECTION_WORDS, STATS_WORDS};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder, Plan, PlanInput};
use crate::kernels::cache::{record_cache_select, CacheHash, NONE};
use crate::tt::batch::GroupTable;

use crate::tt::TtParams;

/// The cache's GPU state and the host's bookkeeping.
#[derive(Debug)]
pub struct TtCache {
    pub(crate) config: CacheConfig,
    pub(crate) hash: CacheHash,
    /// Key of each slot ([`NONE`] past the members), C words.
    pub(crate) members: wgpu::Buffer,
    /// The last refresh's member count (and the select's working state).
    pub(crate) selection: wgpu::Buffer,
    /// The cached rows, [C, D].
    pub(crate) values: wgpu::Buffer,
    /// Row-wise Adagrad state, C (a placeholder with SGD).
    pub(crate) state: wgpu::Buffer,
    /// Counters the probes add to ([`STATS_WORDS`]), read and zeroed by [`TtParams::cache_stats`].
    pub(crate) stats: wgpu::Buffer,
    /// Per table of the group: its first key (key = first key + id).
    pub(crate) key_offsets: Vec<u32>,
    steps: u64,
    refreshes: u64,
    totals: CacheStats,
    refresh: Option<(Plan, PlanInput)>,
}

impl TtCache {
    /// The cache of a group of `tables` with rows of `dim` columns.
    pub(crate) fn new(
        gpu: &Gpu,
        config: CacheConfig,
        tables: &[GroupTable],
        dim: usize,
        adagrad: bool,
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
            values: gpu.storage("tt cache rows", (c * dim) as u64 * 4),
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
    /// Training steps counted by [`TtParams::cache_step`].
    pub fn steps(&self) -> u64 {
        self.steps
    }
    pub fn refreshes(&self) -> u64 {
        self.refreshes
    }
}

impl TtParams {
    /// The table's LFU cache, where its options ask for one.
    pub fn cache(&self) -> Option<&TtCache> {
        self.cache_state()
    }

    /// Counts one training step and refreshes the cache when it is due: after
    /// `warmup_steps` steps, then every `refresh_every` steps. Returns whether it refreshed.
    pub fn cache_step(&mut self) -> Result<bool> {
        let due = self.count_cache_step();
        if due {
            self.refresh_cache()?;
        }
        Ok(due)
    }

    /// [`Self::cache_step`] for a step the caller encoded into `encoder` (the GPU-resident
    /// calls): a due refresh is encoded after it, into the same encoder.
    pub fn cache_step_into(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<bool> {
        let due = self.count_cache_step();
        if due {
            let c = self.refresh_plan()?;
            let (plan, input) = c.refresh.as_ref().expect("refresh plan");
            plan.encode_with(encoder, input)?;
            c.refreshes += 1;
        }
        Ok(due)
    }

    /// Counts a training step; whether a refresh is due after it.
    fn count_cache_step(&mut self) -> bool {
        let Some(c) = self.cache_state_mut() else {
            return false;
        };
        c.steps += 1;
        let (w, every) = (c.config.warmup_steps as u64, c.config.refresh_every as u64);
        c.steps == w || (c.steps > w && (c.steps - w).is_multiple_of(every))
    }

    /// The cache with its refresh plan built (once).
    fn refresh_plan(&mut self) -> Result<&mut TtCache> {
        if self.cache_state().is_none() {
            return Err(Error::input(None, "this TT table has no cache"));
        }
        if self.cache_state().is_some_and(|c| c.refresh.is_none()) {
            let built = self.build_refresh()?;
            self.cache_state_mut().expect("cache").refresh = Some(built);
        }
        Ok(self.cache_state_mut().expect("cache"))
    }

    /// Refreshes the cache now: the top-C rows by count become the members and their rows are
    /// computed from the current cores (one submit, no host round-trip).
    pub fn refresh_cache(&mut self) -> Result<()> {
        let c = self.refresh_plan()?;
        let (plan, input) = c.refresh.as_ref().expect("refresh plan");
        plan.run_with(input)?;
        c.refreshes += 1;
        Ok(())
    }

    /// The cache's statistics since the table was made: lookups, hits and dropped counts
    /// summed over every step (read from the GPU, one wait), members and occupied hash entries
    /// as of the last refresh.
    pub fn cache_stats(&mut self) -> Result<CacheStats> {
        let gpu = self.gpu().clone();
        let Some(c) = self.cache_state_mut() else {
            return Err(Error::input(None, "this TT table has no cache"));
        };
        let words = gpu.read_u32(&c.stats, 0, STATS_WORDS)?;
        let now = CacheStats::from_words(&words);
        // Lookups, hits and dropped are added by the probes: move them into the totals.
        gpu.write(&c.stats, &[0u32; 3]);
        let mut totals = c.totals;
        totals.lookups += now.lookups;
        totals.hits += now.hits;
        totals.dropped += now.dropped;
        totals.members = now.members;
        totals.occupied = now.occupied;
        c.totals = totals;
        Ok(totals)
    }

    /// The cached rows by key (read from the GPU): the members of the last refresh and their
    /// current (trained) values.
    pub fn cache_rows(&self) -> Result<Vec<(u32, Vec<f32>)>> {
        let c = self
            .cache_state()
            .ok_or_else(|| Error::input(None, "this TT table has no cache"))?;
        let gpu = self.gpu();
        let m = gpu.read_u32(&c.selection, 0, 1)?[0] as usize;
        let m = m.min(c.config.rows);
        let keys = gpu.read_u32(&c.members, 0, m)?;
        let dim = self.shape().dim();
        let values = gpu.read_f32(&c.values, 0, m * dim)?;
        Ok(keys
            .into_iter()
            .enumerate()
            .map(|(s, k)| (k, values[s * dim..(s + 1) * dim].to_vec()))
            .collect())
    }

    /// The refresh: select the members, zero their Adagrad state, compute their rows.
    fn build_refresh(&self) -> Result<(Plan, PlanInput)> {
        let c = self.cache_state().expect("cache");
        let rows = c.config.rows;
        let mut g = GraphBuilder::new(self.gpu());
        record_cache_select(
            &mut g,
            "cache refresh select",
            &c.hash,
            rows,
            Buf::from(&c.members),
            Buf::from(&c.selection),
            Buf::from(&c.stats),
        )?;
        g.clear("cache refresh zero state", Buf::from(&c.state));
        let lookups = crate::tt::TtLookups::declare_members(&mut g, self, "cache refresh");
        lookups.record_forward(&mut g, self, &Buf::from(&c.values))?;
        let plan = g.build()?;
        let mut input = plan.new_input();
        lookups.fill_members(&mut input, self)?;
        Ok((plan, input))
    }
}
