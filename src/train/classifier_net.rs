//! A classifier network for fine-tuning: a backbone of a compiled type and a linear classifier
//! of run-time width (one output per class, dropout on its input), behind an object-safe trait
//! like the pretraining methods' [`crate::method::Method`].
//! A frozen backbone runs in evaluation mode without a tape (BatchNorm statistics untouched)
//! and has no optimiser at all, so nothing can move it.

use std::path::Path;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::cross_entropy::smoothed_cross_entropy;
use crate::models::backbone::{Backbone, Images};
use crate::models::encoder::Encoder;
use crate::models::mlp::{Mlp, MlpSpec, Norm};
use crate::models::registry::{with_built_backbone, WithBuiltBackbone};
use crate::nn::NnDevice;
use crate::optim::{Optim, OptimConfig};

use crate::weights::{load_module, load_optimizer, save_module, save_optimizer};
use crate::weights::BACKBONE_FILE;

const CLASSIFIER_FILE: &str = "classifier.safetensors";
const BACKBONE_OPT_FILE: &str = "optimizer-backbone.safetensors";
const CLASSIFIER_OPT_FILE: &str = "optimizer-classifier.safetensors";

/// What the fine-tuning loop needs of a network.
/// As an [`Encoder`] it is its backbone.
pub trait ClassifierNet: Encoder {
    /// One step on a batch [N, C, H, W] with its labels: label-smoothed cross entropy, dropout
    /// from `dropout_seed`, the classifier updated at `lr` and the backbone at `backbone_lr`
    /// (unless frozen). Returns the loss and the number of correct predictions.
    /// A device failure is an error.
    fn step(&mut self, images: Vec<f32>, shape: (usize, usize, usize), labels: &[u32], smoothing: f64, lr: f64, backbone_lr: f64, dropout_seed: u64) -> Result<(f32, usize)>;
    /// Class scores [N, classes] in evaluation mode.
    fn logits(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>>;
    fn classes(&self) -> usize;
    /// Loads backbone weights (a pretraining run's `backbone.safetensors`).
    fn load_backbone(&mut self, path: &Path) -> Result<()>;
    /// Writes the weights (and with `optimizer`, the optimiser state) into `dir`.
    fn save(&self, dir: &Path, optimizer: bool) -> Result<()>;
    /// Reads what [`ClassifierNet::save`] wrote.
    fn load(&mut self, dir: &Path, optimizer: bool) -> Result<()>;
}

struct Net<B, D: NnDevice, const C: usize, const F: usize> {
    dev: D,
    backbone: B,
    /// One linear layer, F -> classes.
    head: Mlp<D>,
    dropout: f64,
    frozen: bool,
    opt_backbone: Optim,
    opt_head: Optim,
}

/// A dropout mask [n x f]: 0 with probability p, else 1 / (1 - p).
fn dropout_mask(n: usize, f: usize, p: f64, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keep = (1.0 / (1.0 - p)) as f32;
    (0..n * f).map(|_| if rng.gen::<f64>() < p { 0.0 } else { keep }).collect()
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Net<B, D, C, F> {
    fn input(&self, images: Vec<f32>, (c, h, w): (usize, usize, usize)) -> Images<C, D> {
        debug_assert_eq!(c, C);
        let n = images.len() / (c * h * w);
        self.dev.tensor_from_vec(images, (n, Const, h, w))
    }

    /// One step; the loss and the scores [N, classes] before the update.
    #[allow(clippy::too_many_arguments)]
    fn try_step(&mut self, images: Vec<f32>, shape: (usize, usize, usize), labels: &[u32], smoothing: f64, lr: f64, backbone_lr: f64, dropout_seed: u64) -> Result<(f32, Vec<f32>), D::Err> {
        let x = self.input(images, shape);
        let n = labels.len();
        // Data-parallel: this rank's rows of the global batch's mask.
        let (rows, global) = crate::dist::batch_rows(n);
        let mask = dropout_mask(global, F, self.dropout, dropout_seed)[rows.start * F..rows.end * F].to_vec();
        let mask = self.dev.try_tensor_from_vec(mask, (n, F))?;
        let mut grads = Gradients::leaky();
        self.head.try_zero_grads(&mut grads)?;
        let features = if self.frozen {
            self.backbone.try_forward(x)?.trace(grads)
        } else {
            self.backbone.try_zero_grads(&mut grads)?;
            self.backbone.try_forward_mut(x.trace(grads))?
        };
        let logits = self.head.try_forward_mut(features.try_reshape_like(&(n, F))?.try_mul(mask)?)?;
        let scores = logits.retaped::<NoneTape>().as_vec();
        let loss = smoothed_cross_entropy(logits, labels, smoothing);
        let value = loss.array();
        // Data-parallel: this rank's share of the global loss; `apply` sums the gradients.
        let grads = crate::dist::scale_loss(loss).backward();
        self.opt_head.cfg.lr = lr;
        let head = &mut self.head;
        self.opt_head.apply::<D::Err>(value.is_finite(), |u| head.update(u, &grads))?;
        if !self.frozen {
            self.opt_backbone.cfg.lr = backbone_lr;
            let backbone = &mut self.backbone;
            self.opt_backbone.apply::<D::Err>(value.is_finite(), |u| u.module(backbone, &grads))?;
        }
        Ok((value, scores))
    }

    fn correct(&self, logits: &[f32], labels: &[u32]) -> usize {
        logits.chunks(self.classes()).zip(labels).filter(|(row, &y)| crate::metrics::in_top_k(row, y as usize, 1)).count()
    }
}


impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Encoder for Net<B, D, C, F> {
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        crate::models::backbone::features(&self.dev, &self.backbone, images, shape)
    }

    fn feature_width(&self) -> usize {
        F
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> ClassifierNet for Net<B, D, C, F> {
    fn step(&mut self, images: Vec<f32>, shape: (usize, usize, usize), labels: &[u32], smoothing: f64, lr: f64, backbone_lr: f64, dropout_seed: u64) -> Result<(f32, usize)> {
        let (value, scores) = self.try_step(images, shape, labels, smoothing, lr, backbone_lr, dropout_seed).map_err(|e| Error::device("a fine-tuning step", e))?;
        Ok((value, self.correct(&scores, labels)))
    }

    fn logits(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        let x = self.input(images, shape);
        let n = x.shape().0;
        let out = self.backbone.try_forward(x).and_then(|f| self.head.try_forward(f.try_reshape_like(&(n, F))?));
        Ok(out.map_err(|e| Error::device("a forward pass", e))?.as_vec())
    }

    fn classes(&self) -> usize {
        self.head.spec().out
    }

    fn load_backbone(&mut self, path: &Path) -> Result<()> {
        load_module(&mut self.backbone, path)
    }

    fn save(&self, dir: &Path, optimizer: bool) -> Result<()> {
        save_module(&self.backbone, &dir.join(BACKBONE_FILE))?;
        self.head.save(&dir.join(CLASSIFIER_FILE))?;
        if optimizer {
            save_optimizer(&self.opt_backbone, &dir.join(BACKBONE_OPT_FILE))?;
            save_optimizer(&self.opt_head, &dir.join(CLASSIFIER_OPT_FILE))?;
        }
        Ok(())
    }

    fn load(&mut self, dir: &Path, optimizer: bool) -> Result<()> {
        load_module(&mut self.backbone, &dir.join(BACKBONE_FILE))?;
        self.head.load(&dir.join(CLASSIFIER_FILE))?;
        if optimizer {
            load_optimizer(&mut self.opt_backbone, &dir.join(BACKBONE_OPT_FILE))?;
            load_optimizer(&mut self.opt_head, &dir.join(CLASSIFIER_OPT_FILE))?;
        }
        Ok(())
    }
}

/// How to build a classifier network.
#[derive(Clone, Copy, Debug)]
pub struct ClassifierSpec {
    pub classes: usize,
    pub dropout: f64,
    pub frozen: bool,
    pub opt: OptimConfig,
    pub seed: u64,
    pub device: DeviceSpec,
}

impl WithBuiltBackbone for ClassifierSpec {
    type Out = Result<Box<dyn ClassifierNet>>;

    /// The classifier is drawn after the backbone.
    fn run<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(self, dev: D, backbone: B) -> Self::Out {
        let s = self;
        let spec = MlpSpec { input: F, hidden: s.classes, out: s.classes, layers: 1, norm: Norm::None };
        let head = Mlp::new(&dev, spec).map_err(|e| Error::device("building the classifier", e))?;
        let (opt_backbone, opt_head) = (Optim::new(s.opt), Optim::new(s.opt));
        Ok(Box::new(Net::<B, D, C, F> { dev, backbone, head, dropout: s.dropout, frozen: s.frozen, opt_backbone, opt_head }))
    }
}

/// Builds model `name` with a classifier for `spec.classes` classes.
pub fn build(name: &str, spec: ClassifierSpec) -> Result<Box<dyn ClassifierNet>> {
    if spec.classes < 2 {
        return Err(Error::invalid("classes", format!("{} classes: a classifier needs at least 2", spec.classes)));
    }
    if !(0.0..1.0).contains(&spec.dropout) {
        return Err(Error::invalid("dropout", format!("{} must be in [0, 1)", spec.dropout)));
    }
    with_built_backbone(name, spec.device, spec.seed, spec)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageShape, Split};

    fn batch() -> (Vec<f32>, Vec<u32>) {
        let s = Split::random(12, ImageShape { height: 10, width: 10, channels: 1 }, 5);
        (s.images.iter().map(|&v| v as f32 / 255.0).collect(), (0..12).map(|i| i % 3).collect())
    }

    #[test]
    fn learns_a_batch_and_a_frozen_backbone_never_moves() {
        let (x, y) = batch();
        let shape = (1, 10, 10);
        let opt = OptimConfig { kind: crate::optim::OptimizerKind::Sgd, lr: 0.05, weight_decay: 0.01, ..Default::default() };
        let spec = ClassifierSpec { classes: 3, dropout: 0.1, frozen: false, opt, seed: 0, device: DeviceSpec::Cpu };
        let mut net = build("small_fmnist", spec).unwrap();
        let (first, _) = net.step(x.clone(), shape, &y, 0.1, 0.05, 0.05, 1).unwrap();
        for s in 0..10 {
            net.step(x.clone(), shape, &y, 0.1, 0.05, 0.05, 2 + s).unwrap();
        }
        let (last, correct) = net.step(x.clone(), shape, &y, 0.1, 0.05, 0.05, 20).unwrap();
        assert!(last < first, "{first} -> {last}");
        assert!(correct > 4);
        let logits = net.logits(x.clone(), shape).unwrap();
        assert_eq!(logits.len(), 12 * 3, "one score per class");

        // Frozen: weights and BatchNorm statistics of the backbone stay bit for bit, even with
        // weight decay and momentum; the classifier learns.
        let d = tempfile::tempdir().unwrap();
        net.save(d.path(), false).unwrap();
        let before = std::fs::read(d.path().join(BACKBONE_FILE)).unwrap();
        let mut frozen = build("small_fmnist", ClassifierSpec { frozen: true, ..spec }).unwrap();
        frozen.load_backbone(&d.path().join(BACKBONE_FILE)).unwrap();
        let f0 = frozen.features(x.clone(), shape).unwrap();
        let (a, _) = frozen.step(x.clone(), shape, &y, 0.0, 0.5, 0.5, 1).unwrap();
        for s in 0..5 {
            frozen.step(x.clone(), shape, &y, 0.0, 0.5, 0.5, 2 + s).unwrap();
        }
        let (b, _) = frozen.step(x.clone(), shape, &y, 0.0, 0.5, 0.5, 9).unwrap();
        assert!(b < a);
        assert_eq!(frozen.features(x.clone(), shape).unwrap(), f0);
        let e = tempfile::tempdir().unwrap();
        frozen.save(e.path(), true).unwrap();
        assert_eq!(std::fs::read(e.path().join(BACKBONE_FILE)).unwrap(), before);

        // Save and load with the optimiser: the next step is identical.
        let mut again = build("small_fmnist", ClassifierSpec { frozen: true, ..spec }).unwrap();
        again.load(e.path(), true).unwrap();
        assert_eq!(frozen.step(x.clone(), shape, &y, 0.1, 0.1, 0.1, 3).unwrap(), again.step(x, shape, &y, 0.1, 0.1, 0.1, 3).unwrap());
        assert!(build("small_fmnist", ClassifierSpec { classes: 1, ..spec }).is_err());
    }
}
