//! The MPI engine: the job `mpirun` (or `srun`) started, through the system's MPI library
//! (Open MPI on Debian) and the `mpi` crate. Only the thread that initialised MPI calls it
//! (`MPI_THREAD_FUNNELED`): the training loop's; augmentation and GEMM threads never do.

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::Collective;

/// `MPI_COMM_WORLD`; MPI is finalised when this is dropped.
pub struct MpiWorld {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl MpiWorld {
    /// Initialises MPI when a launcher started this process ([`super::launched`]); `None`
    /// otherwise, so a plain `ssl` never touches MPI.
    pub fn init() -> Option<MpiWorld> {
        if !super::launched() {
            return None;
        }
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)?;
        Some(MpiWorld { world: universe.world(), _universe: universe })
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
    }

    fn all_gather(&self, send: &[f32], counts: &[usize]) -> Vec<f32> {
        let counts: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
        let displs: Vec<i32> = counts.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
        let mut recv = vec![0.0f32; counts.iter().sum::<i32>() as usize];
        {
            let mut part = PartitionMut::new(&mut recv[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(send, &mut part);
        }
        recv
    }

    fn barrier(&self) {
        self.world.barrier();
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
