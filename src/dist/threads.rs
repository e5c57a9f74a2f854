//! Ranks as threads of one process: the same collectives as MPI, for tests of the distributed
//! arithmetic (gather gradients, synchronised batch norm, gradient sums) without `mpirun`.
//! Sums run in rank order on every rank, so every rank gets bit-identical results.

use std::sync::{Arc, Barrier, Mutex};

use super::Collective;

struct Shared {
    slots: Mutex<Vec<Vec<f64>>>,
    barrier: Barrier,
}

/// One rank of a [`ThreadGroup`]; give each to its own thread.
pub struct ThreadRank {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

/// A group of ranks that are threads.
pub struct ThreadGroup;

impl ThreadGroup {
    /// `size` ranks, in rank order.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(size: usize) -> Vec<ThreadRank> {
        let shared = Arc::new(Shared { slots: Mutex::new(vec![Vec::new(); size]), barrier: Barrier::new(size) });
        (0..size).map(|rank| ThreadRank { rank, size, shared: shared.clone() }).collect()
    }
}

/// Runs `f(rank)` on `size` threads, each with its rank as its group
/// ([`super::with_group`]); the results in rank order.
pub fn run<R: Send>(size: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let ranks = ThreadGroup::new(size);
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|r| {
                s.spawn(|| {
                    let rank = r.rank;
                    // A rank that panics would leave the others waiting for it forever: end the
                    // process, so a failing test fails instead of hanging.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| super::with_group(Box::new(r), || f(rank)))).unwrap_or_else(|_| {
                        eprintln!("thread rank {rank} panicked: the whole group ends");
                        std::process::abort()
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a rank thread panicked")).collect()
    })
}

impl ThreadRank {
    /// Every rank's `data`, in rank order.
    fn exchange(&self, data: Vec<f64>) -> Vec<Vec<f64>> {
        self.shared.slots.lock().expect("a rank thread panicked")[self.rank] = data;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().expect("a rank thread panicked").clone();
        // Nobody writes the next exchange before everyone has read this one.
        self.shared.barrier.wait();
        all
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let all = self.exchange(buf.iter().map(|&v| v as f64).collect());
        for (i, b) in buf.iter_mut().enumerate() {
            // In f32, in rank order, as a reduction of f32 buffers is.
            *b = all.iter().fold(0.0f32, |s, r| s + r[i] as f32);
        }
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
        let all = self.exchange(buf.to_vec());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = all.iter().fold(0.0, |s, r| s + r[i]);
        }
    }

    fn all_gather(&self, send: &[f32], counts: &[usize]) -> Vec<f32> {
        assert_eq!(send.len(), counts[self.rank], "all_gather: this rank's count");
        self.exchange(send.iter().map(|&v| v as f64).collect()).into_iter().flatten().map(|v| v as f32).collect()
    }

    fn barrier(&self) {
        self.shared.barrier.wait();
    }

    fn abort(&self, code: i32) -> ! {
        panic!("rank {} aborted the group with code {code}", self.rank)
    }
}
