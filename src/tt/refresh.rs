//! The row cache's refresh as a table's training steps drive it: each step is counted, and when
//! one is due the refresh runs: the top-C rows by count become the members (the select) and
//! their rows are computed from the current cores by the table's own lookups, in one plan built
//! on the first refresh and replayed after (one submit, no host round-trip).
//!
//! These [`TtParams`] methods live here rather than in `params.rs` because building the refresh
//! records lookups over the parameters: `lookups` depends on `params`, so `params` cannot depend
//! on `lookups`. This file sits above both (it uses `params`, `row_cache` and `lookups`; none of
//! them uses it), which keeps the module graph free of cycles.

use crate::error::{Error, Result};
use crate::gpu::shaders::CorePrecision;
use crate::graph::{Buf, GraphBuilder, Plan, PlanInput};
use crate::kernels::tt_cache::{record_cache_select, record_cache_store};
use crate::tt::lookups::TtLookups;
use crate::tt::params::TtParams;

impl TtParams {
    /// Counts one training step and refreshes the cache when it is due: after
    /// `warmup_steps` steps, then every `refresh_every` steps. Returns whether it refreshed.
    pub fn cache_step(&mut self) -> Result<bool> {
        let due = self.cache_mut().is_some_and(|c| c.count_step());
        if due {
            self.refresh_cache()?;
        }
        Ok(due)
    }

    /// [`Self::cache_step`] for a step the caller encoded into `encoder` (the GPU-resident
    /// calls): a due refresh is encoded after it, into the same encoder.
    pub fn cache_step_into(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<bool> {
        let due = self.cache_mut().is_some_and(|c| c.count_step());
        if due {
            self.build_refresh_once()?;
            self.cache_mut().expect("cache").encode_refresh(encoder)?;
        }
        Ok(due)
    }

    /// Refreshes the cache now: the top-C rows by count become the members and their rows are
    /// computed from the current cores (one submit, no host round-trip).
    pub fn refresh_cache(&mut self) -> Result<()> {
        self.build_refresh_once()?;
        self.cache_mut().expect("cache").run_refresh()
    }

    /// Builds the refresh's plan ahead of the first refresh (its pipelines compiled), without
    /// running it: `ttrec kernels --export` lists them. An error without a cache.
    pub fn prepare_cache_refresh(&mut self) -> Result<()> {
        self.build_refresh_once()
    }

    /// Builds the refresh's plan into the cache, unless it is built.
    fn build_refresh_once(&mut self) -> Result<()> {
        match self.cache() {
            None => Err(Error::input(None, "this TT table has no cache")),
            Some(c) if c.has_refresh_plan() => Ok(()),
            Some(_) => {
                let (plan, input) = build_refresh(self)?;
                self.cache_mut()
                    .expect("cache")
                    .set_refresh_plan(plan, input);
                Ok(())
            }
        }
    }
}

/// The refresh of `params`'s cache: select the members, zero their Adagrad state, compute their
/// rows into the cache.
fn build_refresh(params: &TtParams) -> Result<(Plan, PlanInput)> {
    let c = params.cache().expect("cache");
    let rows = c.config.rows;
    let mut g = GraphBuilder::new(params.gpu());
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
    let lookups = TtLookups::declare_members(&mut g, params, "cache refresh");
    match c.precision {
        CorePrecision::F32 => {
            lookups.record_forward(&mut g, params, &Buf::from(&c.values))?;
        }
        // f16 rows: computed in f32 into scratch, then each value rounded once into the cache.
        CorePrecision::F16 => {
            let len = rows * params.shape().dim();
            let computed = g.transient("cache refresh rows", len as u64 * 4);
            // Zeroed: rows past the members (not written by the forward) store as 0, never as
            // whatever the scratch held (the finite check reads every cached word).
            g.clear("cache refresh zero rows", computed.clone());
            lookups.record_forward(&mut g, params, &computed)?;
            record_cache_store(
                &mut g,
                "cache refresh store",
                computed,
                Buf::from(&c.values),
                len,
                CorePrecision::F16,
            )?;
        }
    }
    let plan = g.build()?;
    let mut input = plan.new_input();
    lookups.fill_members(&mut input, params)?;
    Ok((plan, input))
}
