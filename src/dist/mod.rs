//! Data-parallel training across processes (`mpirun -np P ttrec train ...`, feature `mpi`):
//! every rank holds the whole model and trains on its slice of each global batch; gradients are
//! summed across ranks in a fixed order so that every rank applies bitwise the same update.
//!
//! This module is plain Rust (no GPU): the [`Collective`] a rank group offers (data movement
//! only: all-to-all, all-gather, broadcast, abort) and the reductions built on it, whose results
//! do not depend on the transport's algorithms or timing ([`fixed_sum`]: exchange chunks, sum
//! each chunk in rank order, gather). The MPI group is `mpi` (feature `mpi`); [`Solo`] is the
//! one-process group (the split step's unfused path in one process); [`ThreadGroup`] runs ranks
//! as threads of one process (tests). The step itself is [`crate::dlrm::Dlrm::train_step_parallel`]
//! and the run [`crate::train::run_group`].

#[cfg(feature = "mpi")]
pub mod mpi;
mod threads;

pub use threads::ThreadGroup;

use crate::error::{Error, Result};

/// A group of ranks that move data among themselves. Every call is collective: each rank of
/// the group makes the same calls in the same order.
pub trait Collective {
    /// This rank (0-based).
    fn rank(&self) -> usize;
    /// Ranks in the group.
    fn size(&self) -> usize;
    /// Every rank's bytes, in rank order (lengths may differ).
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// An all-to-all of f32 chunks: `send` is cut into `counts[i]` values for rank i (every rank
    /// passes the same `counts`); returns what every rank sent to this one, in rank order
    /// (`size() * counts[rank()]` values).
    fn all_to_all_f32(&self, send: &[f32], counts: &[usize]) -> Result<Vec<f32>>;
    /// Rank 0's `data` on every rank.
    fn broadcast_bytes(&self, data: Vec<u8>) -> Result<Vec<u8>>;
    /// Ends the whole job at once (every rank) with exit code `code`: for a rank that failed,
    /// so that the others never wait for it.
    fn abort(&self, code: i32) -> !;
}

/// The one-process group: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![mine.to_vec()])
    }
    fn all_to_all_f32(&self, send: &[f32], _counts: &[usize]) -> Result<Vec<f32>> {
        Ok(send.to_vec())
    }
    fn broadcast_bytes(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        Ok(data)
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Values per rank when `len` values are cut into `ranks` chunks (the first `len % ranks`
/// chunks one longer).
pub fn chunk_counts(len: usize, ranks: usize) -> Vec<usize> {
    (0..ranks)
        .map(|r| len / ranks + usize::from(r < len % ranks))
        .collect()
}

/// Sums `values` across the group, in place, in a fixed order: each rank receives chunk
/// `rank` of every rank's values, sums them in rank order (rank 0's plus rank 1's plus ...),
/// and the summed chunks are gathered back. Every rank ends with the same bits, and they are
/// the bits of the serial rank-order sum whatever algorithms the transport uses.
pub fn fixed_sum(group: &dyn Collective, values: &mut [f32]) -> Result<()> {
    let ranks = group.size();
    if ranks == 1 {
        return Ok(());
    }
    let counts = chunk_counts(values.len(), ranks);
    let mine = counts[group.rank()];
    let received = group.all_to_all_f32(values, &counts)?;
    if received.len() != ranks * mine {
        return Err(Error::input(
            None,
            format!(
                "rank {}: the gradient exchange returned {} values, expected {ranks} x {mine}",
                group.rank(),
                received.len()
            ),
        ));
    }
    let mut sum = received[..mine].to_vec();
    for part in received.chunks_exact(mine.max(1)).skip(1) {
        for (s, v) in sum.iter_mut().zip(part) {
            *s += v;
        }
    }
    let gathered = gather_f32(group, &sum)?;
    if gathered.len() != values.len() {
        return Err(Error::input(
            None,
            format!(
                "rank {}: the gathered gradient has {} values, expected {}",
                group.rank(),
                gathered.len(),
                values.len()
            ),
        ));
    }
    values.copy_from_slice(&gathered);
    Ok(())
}

/// Every rank's `values` concatenated in rank order.
pub fn gather_f32(group: &dyn Collective, values: &[f32]) -> Result<Vec<f32>> {
    let parts = group.all_gather_bytes(bytemuck::cast_slice(values))?;
    Ok(parts
        .iter()
        .flat_map(|p| {
            p.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
        })
        .collect())
}

/// Every rank's `values` concatenated in rank order.
pub fn gather_u32(group: &dyn Collective, values: &[u32]) -> Result<Vec<u32>> {
    let parts = group.all_gather_bytes(bytemuck::cast_slice(values))?;
    Ok(parts
        .iter()
        .flat_map(|p| {
            p.chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
        })
        .collect())
}

/// Every rank's `values` (f64) concatenated in rank order.
pub fn gather_f64(group: &dyn Collective, values: &[f64]) -> Result<Vec<f64>> {
    let parts = group.all_gather_bytes(bytemuck::cast_slice(values))?;
    Ok(parts
        .iter()
        .flat_map(|p| {
            p.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8")))
        })
        .collect())
}

/// Whether any rank's `flag` is set (every rank gets the same answer).
pub fn any(group: &dyn Collective, flag: bool) -> Result<bool> {
    Ok(group
        .all_gather_bytes(&[u8::from(flag)])?
        .iter()
        .any(|p| p.first() == Some(&1)))
}

/// Waits until every rank got here.
pub fn barrier(group: &dyn Collective) -> Result<()> {
    group.all_gather_bytes(&[]).map(|_| ())
}

/// The ranks whose `hash` differs from rank 0's (empty when all agree; the same on every rank).
pub fn differing_ranks(group: &dyn Collective, hash: u64) -> Result<Vec<usize>> {
    let all = group.all_gather_bytes(&hash.to_le_bytes())?;
    Ok((1..all.len()).filter(|&r| all[r] != all[0]).collect())
}

/// The XXH3-64 hash of a list of f32 tensors' bits, in order (the periodic check that the ranks
/// hold the same parameters).
pub fn hash_tensors<'a>(tensors: impl IntoIterator<Item = &'a [f32]>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for t in tensors {
        h.update(&(t.len() as u64).to_le_bytes());
        h.update(bytemuck::cast_slice(t));
    }
    h.digest()
}

/// The rows `[rank * b, (rank + 1) * b)` of a global batch of `ranks * b` rows: this rank's part
/// of global step k, i.e. rows `[k P B + r B, + B)` of the training stream.
pub fn rank_rows(rank: usize, b: usize) -> std::ops::Range<usize> {
    rank * b..(rank + 1) * b
}

/// Set once every rank of this process's group has agreed to stop (a signal or
/// `--stop-after-steps`) and rank 0 has written its checkpoint: the run's error is then the
/// whole group's, and the ranks end normally instead of aborting the job.
static STOPPED_TOGETHER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the group's stop as agreed (see [`stopped_together`]).
pub fn mark_stopped_together() {
    STOPPED_TOGETHER.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether every rank agreed to stop (the run's error is no single rank's failure).
pub fn stopped_together() -> bool {
    STOPPED_TOGETHER.load(std::sync::atomic::Ordering::SeqCst)
}

/// The signal that stopped the group (0: none), as agreed by [`agree_stop`].
static AGREED_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Whether any rank wants to stop (`stop`), and the first signal any rank received (`signal`,
/// in rank order): every rank gets the same answer. The signal is kept for
/// [`agreed_signal`] (the run's message and exit code on ranks the signal did not reach).
pub fn agree_stop(
    group: &dyn Collective,
    stop: bool,
    signal: Option<i32>,
) -> Result<(bool, Option<i32>)> {
    let mine = [u32::from(stop), signal.unwrap_or(0) as u32];
    let all = gather_u32(group, &mine)?;
    let stop = all.chunks_exact(2).any(|c| c[0] != 0);
    let signal = all.chunks_exact(2).map(|c| c[1]).find(|&s| s != 0);
    if let Some(s) = signal {
        AGREED_SIGNAL.store(s as i32, std::sync::atomic::Ordering::SeqCst);
    }
    Ok((stop, signal.map(|s| s as i32)))
}

/// The signal some rank of the group received, once the ranks agreed on it (None before).
pub fn agreed_signal() -> Option<i32> {
    match AGREED_SIGNAL.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The test hook of rank failures: `TTREC_DIST_FAULT=RANK:STEP` makes rank RANK fail with an
/// error before global step STEP, `RANK:STEP:crash` makes it abort the process there (as a
/// killed rank). The tests check that the job then ends, non-zero, without hanging.
pub fn injected_fault(rank: usize, step: u64) -> Result<()> {
    let Ok(spec) = std::env::var("TTREC_DIST_FAULT") else {
        return Ok(());
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let at = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
    if at(0) != Some(rank as u64) || at(1) != Some(step) {
        return Ok(());
    }
    if parts.get(2) == Some(&"crash") {
        eprintln!("rank {rank}: crashing at step {step} (TTREC_DIST_FAULT)");
        std::process::abort();
    }
    Err(Error::input(
        None,
        format!("rank {rank}: injected failure at step {step} (TTREC_DIST_FAULT)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sum_is_the_rank_order_sum_on_every_rank() {
        let ranks = 3;
        let len = 1001;
        let data: Vec<Vec<f32>> = (0..ranks)
            .map(|r| {
                (0..len)
                    .map(|i| ((i * 7 + r * 13) % 17) as f32 * 0.1 + 1e-7 * (r as f32 + 1.0))
                    .collect()
            })
            .collect();
        let serial: Vec<f32> = (0..len)
            .map(|i| {
                let mut s = data[0][i];
                for d in &data[1..] {
                    s += d[i];
                }
                s
            })
            .collect();
        let results = ThreadGroup::run(ranks, |g| {
            let mut v = data[g.rank()].clone();
            fixed_sum(&g, &mut v).map(|()| v)
        });
        for r in results {
            let v = r.expect("rank ok");
            assert_eq!(
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                serial.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn gathers_and_flags_in_rank_order() {
        let out = ThreadGroup::run(2, |g| {
            let ids = gather_u32(&g, &[g.rank() as u32; 3])?;
            let any_set = any(&g, g.rank() == 1)?;
            let diff = differing_ranks(&g, 7 + g.rank() as u64)?;
            let b = g.broadcast_bytes(if g.rank() == 0 { vec![9, 8] } else { vec![] })?;
            Ok((ids, any_set, diff, b))
        });
        for r in out {
            let (ids, any_set, diff, b) = r.expect("rank ok");
            assert_eq!(ids, vec![0, 0, 0, 1, 1, 1]);
            assert!(any_set);
            assert_eq!(diff, vec![1]);
            assert_eq!(b, vec![9, 8]);
        }
        assert_eq!(chunk_counts(10, 3), vec![4, 3, 3]);
        assert_eq!(rank_rows(1, 4), 4..8);
    }
}
