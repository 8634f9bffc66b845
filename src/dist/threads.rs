//! [`ThreadGroup`]: ranks as threads of one process, exchanging through shared memory. The
//! reductions' tests run on it without MPI; it is no transport for real runs (one process, one
//! device).

use std::sync::{Arc, Barrier, Mutex};

use super::Collective;
use crate::error::Result;

struct Board {
    slots: Mutex<Vec<Vec<u8>>>,
    barrier: Barrier,
}

/// One rank of a group of threads (see [`ThreadGroup::run`]).
#[derive(Clone)]
pub struct ThreadGroup {
    rank: usize,
    size: usize,
    board: Arc<Board>,
}

impl std::fmt::Debug for ThreadGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadGroup(rank {} of {})", self.rank, self.size)
    }
}

impl ThreadGroup {
    /// Runs `body` on `ranks` threads, each with its rank of one group; their results in rank
    /// order.
    pub fn run<T: Send>(
        ranks: usize,
        body: impl Fn(ThreadGroup) -> Result<T> + Sync,
    ) -> Vec<Result<T>> {
        let board = Arc::new(Board {
            slots: Mutex::new(vec![Vec::new(); ranks]),
            barrier: Barrier::new(ranks),
        });
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..ranks)
                .map(|rank| {
                    let g = ThreadGroup {
                        rank,
                        size: ranks,
                        board: board.clone(),
                    };
                    let body = &body;
                    s.spawn(move || body(g))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a rank's thread panicked"))
                .collect()
        })
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.board.slots.lock().expect("board")[self.rank] = mine.to_vec();
        self.board.barrier.wait();
        let all = self.board.slots.lock().expect("board").clone();
        self.board.barrier.wait();
        Ok(all)
    }
    fn all_to_all_f32(&self, send: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        let all = self.all_gather_bytes(bytemuck::cast_slice(send))?;
        let start: usize = counts[..self.rank].iter().sum();
        let len = counts[self.rank];
        Ok(all
            .iter()
            .flat_map(|p| {
                p[start * 4..(start + len) * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
                    .collect::<Vec<_>>()
            })
            .collect())
    }
    fn broadcast_bytes(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        Ok(self.all_gather_bytes(&data)?.swap_remove(0))
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
