//! The MPI group (feature `mpi`): the world communicator of a job started by `mpirun`, through
//! rsmpi. Only data movement is asked of MPI (all-to-all, all-gather, broadcast), never a
//! reduction, so results do not depend on the algorithms the library picks.

use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::Collective;
use crate::error::{Error, Result};

/// Whether this process was started by an MPI launcher (OpenMPI's, MPICH's Hydra or PMIx).
pub fn launched() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// This process's rank in the world communicator of an MPI job (MPI stays initialised while it
/// lives; dropping it finalises MPI).
pub struct MpiGroup {
    world: SimpleCommunicator,
    local_rank: usize,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
}

impl std::fmt::Debug for MpiGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiGroup(rank {} of {})", self.rank(), self.size())
    }
}

impl MpiGroup {
    /// Initialises MPI; None when it cannot be (already initialised).
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::input(None, "MPI could not be initialised (already initialised?)")
        })?;
        let world = universe.world();
        // The ranks sharing this machine: the local rank picks the adapter.
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Ok(MpiGroup {
            world,
            local_rank,
            _universe: universe,
        })
    }

    /// This rank's index among the ranks on its machine.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
}

impl MpiGroup {
    /// Waits until every rank reaches this point without spinning: MPI's blocking collectives
    /// poll at full speed, which on a machine with few cores starves the ranks still computing
    /// (a CPU adapter most of all). Every collective below starts with it.
    fn settle(&self) {
        let mut request = self.world.immediate_barrier();
        let mut pause = std::time::Duration::from_micros(20);
        loop {
            match request.test() {
                Ok(_) => return,
                Err(r) => {
                    request = r;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(1));
                }
            }
        }
    }
}

fn displacements(counts: &[i32]) -> Vec<i32> {
    counts
        .iter()
        .scan(0, |at, &c| {
            let d = *at;
            *at += c;
            Some(d)
        })
        .collect()
}

fn count(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| {
        Error::input(
            None,
            format!("{n} values in one MPI message (over 2^31 - 1)"),
        )
    })
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        // One leading byte on every message: OpenMPI refuses empty buffers here.
        let mine: Vec<u8> = std::iter::once(0).chain(mine.iter().copied()).collect();
        self.settle();
        let n = self.size();
        let mut lens = vec![0i32; n];
        self.world
            .all_gather_into(&count(mine.len())?, &mut lens[..]);
        let displs = displacements(&lens);
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        let mut buf = vec![0u8; total];
        {
            let mut part = PartitionMut::new(&mut buf[..], &lens[..], &displs[..]);
            self.world.all_gather_varcount_into(&mine[..], &mut part);
        }
        Ok((0..n)
            .map(|r| buf[displs[r] as usize + 1..][..lens[r] as usize - 1].to_vec())
            .collect())
    }
    fn all_to_all_f32(&self, send: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        self.settle();
        let n = self.size();
        let send_counts = counts
            .iter()
            .map(|&c| count(c))
            .collect::<Result<Vec<_>>>()?;
        let send_displs = displacements(&send_counts);
        let mine = send_counts[self.rank()];
        let recv_counts = vec![mine; n];
        let recv_displs = displacements(&recv_counts);
        let mut recv = vec![0f32; n * mine as usize];
        {
            let part = Partition::new(send, &send_counts[..], &send_displs[..]);
            let mut rpart = PartitionMut::new(&mut recv[..], &recv_counts[..], &recv_displs[..]);
            self.world.all_to_all_varcount_into(&part, &mut rpart);
        }
        Ok(recv)
    }
    fn broadcast_bytes(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        self.settle();
        let root = self.world.process_at_rank(0);
        let mut len = data.len() as u64;
        root.broadcast_into(&mut len);
        let mut buf = if self.rank() == 0 {
            data
        } else {
            vec![0u8; len as usize]
        };
        root.broadcast_into(&mut buf[..]);
        Ok(buf)
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
