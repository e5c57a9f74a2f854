//! The online linear probe of pretraining (SimCLR's paper, appendix B.6; solo-learn's online
//! classifier): a linear classifier trained alongside the method on the backbone's features of
//! the training views, detached (no gradient reaches the backbone), on the pretraining split's
//! labels. It costs one small matrix product a step and gives a top-1 every epoch without a
//! separate probe; the monitor evaluates it on its held-out images.
//!
//! It trains with AdamW at a constant lr 1e-3 without weight decay (the features' scale
//! changes as pretraining goes; Adam follows it without a tuned rate), on the host, from
//! weights drawn from the recipe's seed, and its weights and optimiser state are saved in
//! checkpoints, so a resumed run repeats its numbers exactly.

use std::path::Path;

use dfdx::prelude::*;

use crate::error::{Error, Result};
use crate::loss::smoothed_cross_entropy;
use crate::models::encoder::FeatureClassifier;
use crate::models::mlp::{Mlp, MlpSpec, Norm};
use crate::optim::{Optim, OptimConfig, OptimizerKind};
use crate::weights::{load_optimizer, save_optimizer};

/// The probe's files inside a checkpoint.
pub const PROBE_FILE: &str = "online_probe.safetensors";
pub const PROBE_OPT_FILE: &str = "online_probe_optimizer.safetensors";

/// The probe's learning rate.
pub const LR: f64 = 1e-3;

/// See the module docs.
pub struct OnlineProbe {
    dev: Cpu,
    linear: Mlp<Cpu>,
    opt: Optim,
    classes: usize,
}

impl OnlineProbe {
    /// A probe from `features` to `classes`, its weights drawn from `seed`.
    pub fn new(features: usize, classes: usize, seed: u64) -> Result<Self> {
        let dev = Cpu::seed_from_u64(seed);
        let spec = MlpSpec { input: features, hidden: 0, out: classes, layers: 1, norm: Norm::None };
        let linear = Mlp::new(&dev, spec).map_err(|e| Error::device("building the online probe", e))?;
        let opt = Optim::new(OptimConfig { kind: OptimizerKind::AdamW, lr: LR, weight_decay: 0.0, ..Default::default() });
        Ok(OnlineProbe { dev, linear, opt, classes })
    }

    /// One step on `features` [R, F] (detached backbone features of R views) with their
    /// `labels`; returns how many of the first `counted` rows it classified correctly before
    /// the update.
    pub fn step(&mut self, features: &[f32], labels: &[u32], counted: usize) -> Result<usize> {
        let rows = labels.len();
        let width = features.len() / rows.max(1);
        let mut run = || -> Result<usize, CpuError> {
            let x = self.dev.try_tensor_from_vec(features.to_vec(), (rows, width))?;
            let mut grads = Gradients::leaky();
            self.linear.try_zero_grads(&mut grads)?;
            let logits = self.linear.try_forward_mut(x.trace(grads))?;
            let scores = logits.retaped::<NoneTape>().as_vec();
            let correct = scores.chunks(self.classes).zip(labels).take(counted).filter(|(row, &y)| crate::metrics::in_top_k(row, y as usize, 1)).count();
            let loss = smoothed_cross_entropy(logits, labels, 0.0);
            let finite = loss.array().is_finite();
            // Data-parallel: this rank's share of the global batch's loss; the update sums
            // the gradients over ranks, so every rank holds the same probe.
            let grads = crate::dist::scale_loss(loss).backward();
            let linear = &mut self.linear;
            self.opt.apply::<CpuError>(finite, |u| linear.update(u, &grads))?;
            Ok(correct)
        };
        run().map_err(|e| Error::device("an online probe step", e))
    }

    /// Writes the weights and the optimiser state into the checkpoint folder `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.linear.save(&dir.join(PROBE_FILE))?;
        save_optimizer(&self.opt, &dir.join(PROBE_OPT_FILE))
    }

    /// Reads what [`OnlineProbe::save`] wrote. A checkpoint from before the probe existed has
    /// none: the probe then starts afresh (it never touches the backbone).
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        if !dir.join(PROBE_FILE).exists() {
            return Ok(());
        }
        self.linear.load(&dir.join(PROBE_FILE))?;
        load_optimizer(&mut self.opt, &dir.join(PROBE_OPT_FILE))
    }
}

impl FeatureClassifier for OnlineProbe {
    fn predict(&self, features: &[f32]) -> Result<Vec<u32>> {
        let width = self.linear.spec().input;
        let rows = features.len() / width;
        let logits = self
            .dev
            .try_tensor_from_vec(features.to_vec(), (rows, width))
            .and_then(|x| self.linear.try_forward(x))
            .map_err(|e| Error::device("the online probe's forward pass", e))?
            .as_vec();
        Ok(logits.chunks(self.classes).map(|row| crate::metrics::predicted(row) as u32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable classes: the probe learns them, and a saved and reloaded probe predicts
    /// and steps exactly as the original.
    #[test]
    fn learns_separable_classes_and_resumes_exactly() {
        let features: Vec<f32> = (0..16).flat_map(|i| if i % 2 == 0 { [1.0, 0.2 * i as f32, 0.0] } else { [-1.0, 0.1 * i as f32, 0.5] }).collect();
        let labels: Vec<u32> = (0..16).map(|i| i % 2).collect();
        let mut p = OnlineProbe::new(3, 2, 7).unwrap();
        for _ in 0..300 {
            p.step(&features, &labels, 16).unwrap();
        }
        assert_eq!(p.step(&features, &labels, 8).unwrap(), 8);
        assert_eq!(p.predict(&features).unwrap(), labels);
        let d = tempfile::tempdir().unwrap();
        p.save(d.path()).unwrap();
        let mut q = OnlineProbe::new(3, 2, 99).unwrap();
        q.load(d.path()).unwrap();
        p.step(&features, &labels, 16).unwrap();
        q.step(&features, &labels, 16).unwrap();
        let probe_x = [0.3, -0.2, 0.1, -0.05, 0.0, 0.4];
        let (a, b) = (p.linear.try_forward(p.dev.tensor_from_vec(probe_x.to_vec(), (2, 3))).unwrap().as_vec(), q.linear.try_forward(q.dev.tensor_from_vec(probe_x.to_vec(), (2, 3))).unwrap().as_vec());
        assert_eq!(a, b);
    }
}
