//! The one bounded per-shape cache of built plans, used by the DLRM's train and eval plans and by
//! the TT tables' call plans. A plan is built on the first call of a shape and replayed after;
//! when the cache is full and a new shape arrives, every plan is dropped (shapes in a run are few:
//! the training batch, the evaluation batch and a last partial batch), which bounds the GPU
//! memory that stale shapes can hold.

use std::collections::HashMap;
use std::hash::Hash;

use crate::error::Result;

/// A map from a shape key to a built plan, holding at most `capacity` plans.
#[derive(Debug)]
pub struct PlanCache<K, V> {
    plans: HashMap<K, V>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V> PlanCache<K, V> {
    /// An empty cache that keeps at most `capacity` plans (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            plans: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The plan for `key`, built by `build` when missing (then every other plan is dropped when
    /// the cache is full). A failed build leaves the cache as it was.
    pub fn get_or_build(&mut self, key: K, build: impl FnOnce() -> Result<V>) -> Result<&mut V> {
        if !self.plans.contains_key(&key) {
            let plan = build()?;
            if self.plans.len() >= self.capacity {
                self.plans.clear();
            }
            self.plans.insert(key.clone(), plan);
        }
        Ok(self.plans.get_mut(&key).expect("plan just inserted"))
    }

    /// Takes the plan for `key` out (built by `build` when missing), so the caller can use it
    /// beside other borrows of its owner; give it back with [`PlanCache::put`].
    pub fn take_or_build(&mut self, key: &K, build: impl FnOnce() -> Result<V>) -> Result<V> {
        match self.plans.remove(key) {
            Some(plan) => Ok(plan),
            None => build(),
        }
    }

    /// Puts a plan (back) under `key`, dropping every other plan first when the cache is full.
    pub fn put(&mut self, key: K, plan: V) {
        if !self.plans.contains_key(&key) && self.plans.len() >= self.capacity {
            self.plans.clear();
        }
        self.plans.insert(key, plan);
    }

    /// The plan for `key`, if built.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.plans.get(key)
    }

    /// The plan for `key`, if built, for filling its input.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.plans.get_mut(key)
    }

    /// Every built plan (in no particular order).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.plans.values()
    }

    /// How many plans are built.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    /// Whether no plan is built.
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// Drops every plan (their GPU buffers go with them).
    pub fn clear(&mut self) {
        self.plans.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_and_drops_all_when_full() {
        let mut cache: PlanCache<usize, String> = PlanCache::new(2);
        let mut builds = 0;
        for key in [1, 2, 1, 2] {
            cache
                .get_or_build(key, || {
                    builds += 1;
                    Ok(format!("plan {key}"))
                })
                .unwrap();
        }
        assert_eq!(builds, 2);
        assert_eq!(cache.len(), 2);
        cache.get_or_build(3, || Ok("plan 3".into())).unwrap();
        assert_eq!(cache.len(), 1, "a third shape drops the two older plans");
        assert_eq!(cache.get(&3).map(String::as_str), Some("plan 3"));
        assert!(cache.get(&1).is_none());
    }

    #[test]
    fn take_and_put_keep_the_bound() {
        let mut cache: PlanCache<usize, usize> = PlanCache::new(1);
        let p = cache.take_or_build(&7, || Ok(70)).unwrap();
        assert!(cache.is_empty());
        cache.put(7, p);
        let q = cache.take_or_build(&8, || Ok(80)).unwrap();
        cache.put(8, q);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&8), Some(&80));
        let failed = cache.get_or_build(9, || Err(crate::Error::Gpu("no plan".into())));
        assert!(failed.is_err());
        assert_eq!(cache.get(&8), Some(&80), "a failed build drops nothing");
    }
}
