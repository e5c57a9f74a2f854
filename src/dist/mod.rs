//! Data-parallel training: ranks of one job, each with its own slice of every global batch,
//! joined by collective operations (MPI under `mpirun` / `srun`; threads in tests).
//!
//! Semantics (as PyTorch's DistributedDataParallel with solo-learn's gather, and exact rather
//! than approximate):
//! - `batch_size` is the global batch; rank r trains on its slice of it ([`shard`]), and the
//!   views of an image depend only on (seed, epoch, image, view), so the global batch is the
//!   one a single process would see.
//! - The global loss is the mean over the global batch, L = sum_r (n_r / N) L_r; each rank
//!   backpropagates its share (n_r / N) L_r ([`scale_loss`]), and the parameter gradients are
//!   summed over ranks before the optimiser ([`crate::optim::Optim::apply`]), so every rank
//!   applies dL/dθ and holds the same weights.
//! - A loss over the global batch (NT-Xent's negatives, Barlow Twins' cross-correlation,
//!   VICReg's variance and covariance) all-gathers the embeddings ([`ops::gather_views`]); the
//!   backward of the gather sums every rank's gradient of the gathered rows and returns each
//!   rank its own rows (solo-learn's `GatherLayer`; lightly's fix of 2024, PR #1531), so each
//!   rank receives exactly its share of the global loss's gradient. MoCo's queue takes every
//!   rank's keys ([`gather_host`]), DINO's centre every rank's sums ([`sum_over_ranks`]).
//! - Synchronised batch norm (`sync_batchnorm: true`): batch statistics and their gradients
//!   are summed over ranks ([`sync_batchnorm`]).
//!
//! The group of the running thread is set with [`with_group`]; code below the training loop
//! (losses, layers, the optimiser update) asks [`current`], so methods need not carry it. One
//! process alone has no group and every function here is then the identity.
//! Collectives do not fail: MPI aborts the whole job on a communication error (its default
//! error handler), which is what a rank that cannot reach the others must do.

#[cfg(feature = "mpi")]
pub mod mpi;
pub mod ops;
pub mod threads;

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

/// The collective operations training needs.
pub trait Collective {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// How many ranks the job has.
    fn size(&self) -> usize;
    /// Element-wise sum over ranks, in place; every rank gets the same values.
    fn all_reduce_sum(&self, buf: &mut [f32]);
    /// The same in f64 (losses, counts).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]);
    /// Every rank's `send` concatenated in rank order; `counts[r]` is rank r's length.
    fn all_gather(&self, send: &[f32], counts: &[usize]) -> Vec<f32>;
    /// Waits for every rank.
    fn barrier(&self);
    /// Ends the whole job with `code` (MPI_Abort; a thread rank panics).
    fn abort(&self, code: i32) -> !;
}

/// Whether an MPI launcher started this process (Open MPI's `mpirun`, or a PMI/PMIx launcher
/// such as Slurm's `srun`), from the variables they set.
pub fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some())
}

/// The job size a launcher announced (1 when none did, or it did not say).
pub fn launched_ranks() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok()).unwrap_or(1)
}

/// A group of ranks as the running thread sees it.
pub struct Group {
    comm: Box<dyn Collective>,
    sync_batchnorm: Cell<bool>,
    /// This rank's images in the current step and the global batch's.
    batch: Cell<(usize, usize)>,
    /// Seconds spent in collectives so far (waiting for the other ranks included).
    comm_s: Cell<f64>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Group>>> = const { RefCell::new(None) };
}

/// Runs `f` with `comm` as the running thread's group (restoring the previous one after).
pub fn with_group<R>(comm: Box<dyn Collective>, f: impl FnOnce() -> R) -> R {
    let group = Rc::new(Group { comm, sync_batchnorm: Cell::new(false), batch: Cell::new((1, 1)), comm_s: Cell::new(0.0) });
    let before = CURRENT.with(|c| c.replace(Some(group)));
    struct Restore(Option<Option<Rc<Group>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take().flatten();
            CURRENT.with(|c| *c.borrow_mut() = before);
        }
    }
    let _restore = Restore(Some(before));
    f()
}

/// The running thread's group when it has more than one rank.
pub fn current() -> Option<Rc<Group>> {
    CURRENT.with(|c| c.borrow().clone()).filter(|g| g.size() > 1)
}

/// This rank and the job's size: (0, 1) on one process.
pub fn rank_and_size() -> (usize, usize) {
    CURRENT.with(|c| c.borrow().as_ref().map_or((0, 1), |g| (g.rank(), g.size())))
}

/// Whether this process writes the run's files (rank 0, or the only process).
pub fn is_writer() -> bool {
    rank_and_size().0 == 0
}

/// The group with synchronised batch norm, when it is on and there is more than one rank.
pub fn sync_batchnorm() -> Option<Rc<Group>> {
    current().filter(|g| g.sync_batchnorm.get())
}

/// Runs `f` with batch norm on each rank's own images, synchronised or not outside (MoCo's key
/// encoder: its shuffled groups exist to keep per-device statistics).
pub fn local_batchnorm<R>(f: impl FnOnce() -> R) -> R {
    let Some(g) = current() else { return f() };
    let was = g.sync_batchnorm.replace(false);
    let out = f();
    g.sync_batchnorm.set(was);
    out
}

/// Rank `rank`'s part of `n` items among `size` ranks: contiguous, in rank order, sizes
/// differing by at most one.
pub fn shard(n: usize, rank: usize, size: usize) -> Range<usize> {
    (rank * n / size)..((rank + 1) * n / size)
}

/// Joins the job, if any, before a run: refuses a global batch (`batch_size`) too small for
/// `min_batch` images a rank (`what` needs them), and turns synchronised batch norm on or off
/// (CPU only so far). The number of ranks (1 on one process).
pub fn join(batch_size: usize, min_batch: usize, what: &str, sync_batchnorm: bool, device: crate::device::DeviceSpec) -> crate::Result<usize> {
    use crate::Error;
    let Some(g) = current() else { return Ok(1) };
    let ranks = g.size();
    if batch_size < ranks * min_batch {
        return Err(Error::invalid("batch_size", format!("{batch_size} is the global batch: {ranks} ranks need at least {} images ({min_batch} each for {what})", ranks * min_batch)));
    }
    if sync_batchnorm && device != crate::device::DeviceSpec::Cpu {
        return Err(Error::invalid("sync_batchnorm", format!("is on the CPU only so far; on {device} set sync_batchnorm: false")));
    }
    g.set_sync_batchnorm(sync_batchnorm);
    Ok(ranks)
}

/// Rank 0's `value` on every rank (one all-reduce; the others' values are ignored): for a
/// measure rank 0 alone takes that decides what every rank does next (fine-tuning's
/// validation, which early stopping follows). `value` itself on one process.
pub fn from_rank0(value: f64) -> f64 {
    match current() {
        Some(g) => {
            let mut v = [if g.rank() == 0 { value } else { 0.0 }];
            g.all_reduce_sum_f64(&mut v);
            v[0]
        }
        None => value,
    }
}

/// Waits for every rank (nothing on one process).
pub fn barrier() {
    if let Some(g) = current() {
        g.timed(|c| c.barrier());
    }
}

/// Where this rank's `local` rows sit in the global batch of the step, and the global batch's
/// size: (0..local, local) on one process. For what is drawn per row of the global batch
/// (fine-tuning's dropout masks), so that the ranks draw the rows one process would.
pub fn batch_rows(local: usize) -> (Range<usize>, usize) {
    match current() {
        Some(g) => {
            let global = g.batch.get().1;
            (shard(global, g.rank(), g.size()), global)
        }
        None => (0..local, local),
    }
}

/// The weight of this rank's loss in the global one, n_r / N (1 on one process).
pub fn loss_share() -> f64 {
    current().map_or(1.0, |g| {
        let (local, global) = g.batch.get();
        local as f64 / global.max(1) as f64
    })
}

impl Group {
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    pub fn size(&self) -> usize {
        self.comm.size()
    }

    pub fn comm(&self) -> &dyn Collective {
        &*self.comm
    }

    /// Runs a collective, adding its time to [`Group::comm_seconds`].
    fn timed<R>(&self, f: impl FnOnce(&dyn Collective) -> R) -> R {
        let t = std::time::Instant::now();
        let out = f(&*self.comm);
        self.comm_s.set(self.comm_s.get() + t.elapsed().as_secs_f64());
        out
    }

    /// Seconds this rank spent in collectives so far, waiting for slower ranks included.
    pub fn comm_seconds(&self) -> f64 {
        self.comm_s.get()
    }

    pub fn all_reduce_sum(&self, buf: &mut [f32]) {
        self.timed(|c| c.all_reduce_sum(buf))
    }

    pub fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
        self.timed(|c| c.all_reduce_sum_f64(buf))
    }

    /// Every rank's `send` in rank order, each rank's length exchanged first.
    pub fn all_gather(&self, send: &[f32]) -> (Vec<f32>, Vec<usize>) {
        let counts = self.counts(send.len());
        (self.timed(|c| c.all_gather(send, &counts)), counts)
    }

    /// Every rank's `n`, in rank order.
    pub fn counts(&self, n: usize) -> Vec<usize> {
        let mut c = vec![0.0; self.size()];
        c[self.rank()] = n as f64;
        self.all_reduce_sum_f64(&mut c);
        c.into_iter().map(|v| v as usize).collect()
    }

    /// Turns synchronised batch norm on or off.
    pub fn set_sync_batchnorm(&self, on: bool) {
        self.sync_batchnorm.set(on)
    }

    /// The step about to run trains this rank on `local` of the global batch's `global` images.
    pub fn set_batch(&self, local: usize, global: usize) {
        self.batch.set((local, global))
    }
}

/// The loss this rank backpropagates: its share of the global loss, `share` L_r
/// ([`loss_share`]); the loss itself on one process.
pub fn scale_loss<D: dfdx::tensor_ops::Device<f32>>(
    loss: dfdx::tensor::Tensor<dfdx::shapes::Rank0, f32, D, dfdx::tensor::OwnedTape<f32, D>>,
) -> dfdx::tensor::Tensor<dfdx::shapes::Rank0, f32, D, dfdx::tensor::OwnedTape<f32, D>> {
    match current() {
        Some(_) => loss * loss_share() as f32,
        None => loss,
    }
}

/// Sums `values` over ranks in place (nothing on one process): statistics of the global batch
/// from each rank's part (DINO's centre).
pub fn sum_over_ranks(values: &mut [f64]) {
    if let Some(g) = current() {
        g.all_reduce_sum_f64(values);
    }
}

/// Every rank's `rows` (a host buffer of whole rows, not on the tape) concatenated in rank
/// order: the global batch's rows when each rank passes its own (MoCo's keys for the queue);
/// `rows` itself on one process.
pub fn gather_host(rows: Vec<f32>) -> Vec<f32> {
    match current() {
        Some(g) => g.all_gather(&rows).0,
        None => rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order() {
        for (n, size) in [(128, 2), (96, 2), (7, 3), (3, 4), (256, 32)] {
            let parts: Vec<Range<usize>> = (0..size).map(|r| shard(n, r, size)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[size - 1].end, n);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{lens:?}");
        }
    }

    #[test]
    fn one_process_has_no_group() {
        assert!(current().is_none());
        assert_eq!(rank_and_size(), (0, 1));
        assert!(is_writer());
        assert_eq!(loss_share(), 1.0);
        let ranks = threads::ThreadGroup::new(1);
        let one = ranks.into_iter().next().unwrap();
        with_group(Box::new(one), || {
            assert!(current().is_none(), "a group of one is no group");
            assert_eq!(rank_and_size(), (0, 1));
        });
    }

    #[test]
    fn ranks_see_their_group_and_share() {
        let out = threads::run(3, |rank| {
            let g = current().unwrap();
            assert_eq!((g.rank(), g.size()), (rank, 3));
            g.set_batch(shard(10, rank, 3).len(), 10);
            let mut v = vec![rank as f32, 1.0];
            g.all_reduce_sum(&mut v);
            let (all, counts) = g.all_gather(&vec![rank as f32; rank + 1]);
            (v, all, counts, loss_share(), is_writer())
        });
        for (rank, (v, all, counts, share, writer)) in out.into_iter().enumerate() {
            assert_eq!(v, vec![3.0, 3.0]);
            assert_eq!(all, vec![0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
            assert_eq!(counts, vec![1, 2, 3]);
            assert_eq!(share, [3.0, 3.0, 4.0][rank] / 10.0);
            assert_eq!(writer, rank == 0);
        }
        assert!(current().is_none(), "the group ends with its scope");
    }
}
