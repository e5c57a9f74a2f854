//! The pretraining loader: a seeded shuffle per epoch, both views of each batch augmented in
//! parallel, and the next batch prepared on a second thread while the model trains on this one.
//!
//! The last partial batch: dropped when `drop_last` (SimCLR and solo-learn do so: a short batch
//! has fewer negatives and noisier BatchNorm statistics); otherwise trained as a smaller batch
//! when it holds at least the loss's minimum (NT-Xent needs 2 images for a negative, BatchNorm
//! in training mode 2 values per channel), and folded into the batch before it when it does
//! not, so no step is ever taken on a batch that cannot form the loss.

use std::ops::Range;
use std::sync::mpsc::sync_channel;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::augment::Pipeline;
use crate::data::Split;
use crate::error::Result;

/// How an epoch of images is cut into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Images per step.
    pub batch: usize,
    /// Drop the last partial batch instead of training on it.
    pub drop_last: bool,
    /// The fewest images a step's loss can be formed from; a shorter last batch is folded into
    /// the one before it.
    pub min_batch: usize,
}

impl Batching {
    /// Steps in an epoch of `n` images.
    pub fn steps(&self, n: usize) -> usize {
        let (full, rem) = (n / self.batch, n % self.batch);
        if self.drop_last || rem == 0 || (rem < self.min_batch && full > 0) {
            full
        } else {
            full + 1
        }
    }

    /// Positions `lo..hi` in the epoch's order of the images of step `step` (of `n` images).
    pub fn range(&self, n: usize, step: usize) -> Range<usize> {
        let lo = step * self.batch;
        let last = step + 1 == self.steps(n);
        lo..if last && !self.drop_last { n } else { (lo + self.batch).min(n) }
    }
}

/// The order of `0..n` in `epoch`: depends only on (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}

/// One epoch's batches.
pub struct Epoch<'a> {
    /// One pipeline per view (2 for SimCLR and BYOL, 1 for fine-tuning).
    pub pipelines: &'a [&'a Pipeline],
    pub split: &'a Split,
    pub order: &'a [usize],
    pub batching: Batching,
    pub seed: u64,
    pub epoch: usize,
    /// (rank, ranks): data-parallel, this rank trains on its part of each batch
    /// ([`crate::dist::shard`]); (0, 1) on one process.
    pub part: (usize, usize),
}

impl Epoch<'_> {
    /// The images of step `step`: the global batch.
    pub fn indices(&self, step: usize) -> &[usize] {
        &self.order[self.batching.range(self.order.len(), step)]
    }

    /// This rank's images of step `step` (all of them on one process).
    pub fn local_indices(&self, step: usize) -> &[usize] {
        let batch = self.indices(step);
        &batch[crate::dist::shard(batch.len(), self.part.0, self.part.1)]
    }

    /// Calls `train(step, views)` for each step in `steps`, views laid out [V N, C, H, W] with
    /// view v of image k at row v N + k (views of another size as blocks of their own, see
    /// [`crate::augment::pipeline::views_into`]); the next batch is augmented meanwhile.
    /// Stops early when `train` returns `Ok(false)` or an error.
    pub fn run(&self, steps: Range<usize>, mut train: impl FnMut(usize, Vec<f32>) -> Result<bool>) -> Result<()> {
        std::thread::scope(|s| {
            let (tx, rx) = sync_channel::<(usize, Vec<f32>)>(1);
            s.spawn(move || {
                for step in steps {
                    let mut views = Vec::new();
                    crate::augment::pipeline::views_into(self.pipelines, self.split, self.local_indices(step), self.seed, self.epoch as u64, &mut views);
                    if tx.send((step, views)).is_err() {
                        break;
                    }
                }
            });
            for (step, views) in rx {
                if !train(step, views)? {
                    break;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::AugmentConfig;
    use crate::data::ImageShape;

    #[test]
    fn orders_and_batches() {
        let cut = |n, batch, drop_last, min_batch| {
            let b = Batching { batch, drop_last, min_batch };
            (0..b.steps(n)).map(|s| b.range(n, s).len()).collect::<Vec<_>>()
        };
        assert_eq!(cut(10, 4, true, 2), vec![4, 4]);
        assert_eq!(cut(10, 4, false, 2), vec![4, 4, 2]);
        assert_eq!(cut(17, 8, false, 2), vec![8, 9], "a lone image joins the batch before it");
        assert_eq!(cut(17, 8, true, 2), vec![8, 8]);
        assert_eq!(cut(16, 8, false, 2), vec![8, 8]);
        assert_eq!(cut(19, 8, false, 4), vec![8, 11]);
        assert_eq!(cut(20, 8, false, 4), vec![8, 8, 4]);
        assert_eq!(cut(3, 8, false, 2), vec![3], "a single short batch is still a batch");
        let a = epoch_order(50, 1, 0);
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_ne!(a, epoch_order(50, 2, 0));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());

        let shape = ImageShape { height: 6, width: 6, channels: 1 };
        let split = Split::random(10, shape, 0);
        let pipeline = Pipeline::for_split(AugmentConfig::simclr(), &split).unwrap();
        let order = epoch_order(10, 3, 0);
        let e = Epoch { pipelines: &[&pipeline, &pipeline], split: &split, order: &order, batching: Batching { batch: 4, drop_last: false, min_batch: 2 }, seed: 3, epoch: 0, part: (0, 1) };
        let mut seen = Vec::new();
        e.run(0..3, |step, views| {
            let mut want = Vec::new();
            pipeline.views_into(&split, e.indices(step), 2, 3, 0, &mut want);
            assert_eq!(views, want);
            seen.push((step, views.len() / 36));
            Ok(step < 1)
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 8), (1, 8)], "stops when asked");
        let mut last = 0;
        e.run(2..3, |_, views| {
            last = views.len() / 36;
            Ok(true)
        })
        .unwrap();
        assert_eq!(last, 4, "a partial last batch of 2 images when kept");
        // Rank 1 of 2 takes the second half of each batch, and augments only its images.
        let r1 = Epoch { part: (1, 2), ..e };
        assert_eq!(r1.local_indices(0), &e.indices(0)[2..4]);
        assert_eq!(r1.local_indices(2), &e.indices(2)[1..2]);
        r1.run(0..1, |_, views| {
            let mut want = Vec::new();
            pipeline.views_into(&split, &e.indices(0)[2..4], 2, 3, 0, &mut want);
            assert_eq!(views, want);
            Ok(true)
        })
        .unwrap();
    }
}
