//! MoCo v2 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation
//! Learning"; Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning"): a
//! query encoder (backbone + MLP head) trained by InfoNCE against the key of the other view,
//! computed by a momentum (key) encoder, and a queue of K keys of earlier batches as
//! negatives. The key encoder follows the query encoder by a moving average and takes no
//! gradient.
//!
//! Shuffling BN. MoCo's code computes the keys on 8 GPUs after shuffling the batch among them,
//! so that a key's BatchNorm statistics come from other images than its query's (otherwise
//! the model can find its positive by the batch statistics they share, section 3.3). On one
//! process there are no devices to shuffle among; here the keys are computed in
//! `shuffle_bn_groups` groups of a random permutation of the batch (drawn from the step
//! number, so exact resume holds), each group normalised by its own statistics, the keys put
//! back in order after. The queries are one group (the whole batch), where MoCo's are one
//! GPU's share of it. Data-parallel, each rank does the same with its own images (the key
//! encoder's batch norm is never synchronised); the keys of every rank enter the queue, in
//! the global batch's order, so the ranks hold the same queue.
//!
//! Where this differs from the papers: the loss is MoCo's, one direction (queries from view 1,
//! keys from view 2), not the symmetrised loss of MoCo v2+ / v3; the momentum may rise on a
//! cosine (`momentum_final`, as solo-learn's MoCo v2+), constant by default as in the paper.

use std::path::Path;

use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::info_nce;
use crate::models::backbone::Backbone;
use crate::models::encoder::Encoder;
use crate::models::mlp::Mlp;
use crate::nn::NnDevice;
use crate::optim::OptimConfig;
use crate::weights;

use super::online::{Head, Online};
use super::simclr::ProjectorConfig;
use super::target::{cosine_decay, Target};
use super::{FromBackbone, Method, MethodSettings, StepAt, StepOut};

/// The queue's file inside a checkpoint: the keys [K, W] and the write position.
pub const QUEUE_FILE: &str = "queue.safetensors";

/// The largest queue: its write position is stored as an f32, exact up to 2^24.
const MAX_QUEUE: usize = 1 << 24;

/// The most shuffled groups (each needs two images of the batch).
const MAX_GROUPS: usize = 1 << 16;

/// `method: MocoV2(...)` in a pretraining recipe. The paper trains with SGD (momentum 0.9),
/// lr 0.03 x batch / 256, weight decay 1e-4, cosine decay, 200-800 epochs at batch 256: the
/// recipe's `optimizer` and `lr` sections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoConfig {
    /// The MLP head (MoCo v2: 2048 hidden, ReLU, 128 out, no BatchNorm: `layers: 2`).
    pub projector: ProjectorConfig,
    /// InfoNCE temperature (MoCo v2: 0.2; v1: 0.07).
    pub temperature: f64,
    /// Negative keys kept, K (paper: 65536 on ImageNet; 4096 to 65536 on CIFAR in later work).
    pub queue_size: usize,
    /// The key encoder's momentum m at the first step (paper: 0.999; 0.99 for small data,
    /// as solo-learn's CIFAR recipes).
    pub momentum: f64,
    /// Its value at the last step, reached on a cosine (paper: constant, equal to `momentum`).
    pub momentum_final: f64,
    /// Groups the keys' BatchNorm statistics are taken in (paper: 8 GPUs); see the module docs.
    pub shuffle_bn_groups: usize,
}

impl Default for MocoConfig {
    fn default() -> Self {
        MocoConfig {
            projector: ProjectorConfig { hidden: 2048, out: 128, layers: 2 },
            temperature: 0.2,
            queue_size: 65536,
            momentum: 0.999,
            momentum_final: 0.999,
            shuffle_bn_groups: 8,
        }
    }
}

impl MocoConfig {
    /// The key encoder's momentum after step `step` of `total`.
    pub fn momentum_at(&self, step: u64, total: u64) -> f64 {
        cosine_decay(self.momentum, self.momentum_final, step, total)
    }
}

impl MethodSettings for MocoConfig {
    fn name(&self) -> &'static str {
        "MoCo v2"
    }

    fn paper(&self) -> &'static str {
        "He et al. 2020, Momentum Contrast; Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning"
    }

    fn summary(&self) -> String {
        let p = &self.projector;
        format!(
            "MoCo v2 (temperature {}, queue {}, momentum {} → {}, {}-layer projector {} → {}, keys' BatchNorm in {} shuffled groups)",
            self.temperature, self.queue_size, self.momentum, self.momentum_final, p.layers, p.hidden, p.out, self.shuffle_bn_groups
        )
    }

    /// Both views take the recipe's augmentation (MoCo v2's is SimCLR's).
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        vec![base.clone(), base.clone()]
    }

    /// Every shuffled group of keys needs two images for its BatchNorm statistics.
    fn min_batch(&self) -> usize {
        self.shuffle_bn_groups.saturating_mul(2)
    }

    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        super::build_on(self, model, opt, seed, device)
    }

    fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid("method.temperature", format!("{} must be a positive number", self.temperature)));
        }
        if !(1..=MAX_QUEUE).contains(&self.queue_size) {
            return Err(Error::invalid("method.queue_size", format!("{} must lie in [1, {MAX_QUEUE}]", self.queue_size)));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::invalid("method.momentum", format!("{} is not a momentum in [0, 1]", self.momentum)));
        }
        if !(self.momentum..=1.0).contains(&self.momentum_final) {
            return Err(Error::invalid("method.momentum_final", format!("{} must lie in [momentum, 1] = [{}, 1]", self.momentum_final, self.momentum)));
        }
        if !(1..=MAX_GROUPS).contains(&self.shuffle_bn_groups) {
            return Err(Error::invalid("method.shuffle_bn_groups", format!("{} must lie in [1, {MAX_GROUPS}]", self.shuffle_bn_groups)));
        }
        if !(2..=3).contains(&self.projector.layers) {
            return Err(Error::invalid("method.projector.layers", format!("{} must be 2 or 3", self.projector.layers)));
        }
        self.projector.spec(1).check("method.projector")
    }
}

/// The queue of negative keys: K rows of unit norm, the oldest overwritten first.
#[derive(Clone, Debug, PartialEq)]
struct Queue {
    keys: Vec<f32>,
    width: usize,
    /// The row the next key is written to.
    ptr: usize,
}

impl Queue {
    fn len(&self) -> usize {
        self.keys.len() / self.width
    }

    /// Writes `keys` [N, W] from row `ptr` on, wrapping around.
    fn push(&mut self, keys: &[f32]) {
        for key in keys.chunks(self.width) {
            self.keys[self.ptr * self.width..(self.ptr + 1) * self.width].copy_from_slice(key);
            self.ptr = (self.ptr + 1) % self.len();
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        let ptr = [self.ptr as f32];
        crate::tensors_file::save(path, &[("queue".into(), vec![self.len(), self.width], &self.keys), ("ptr".into(), vec![1], &ptr)])
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(Error::bad_input(path, "no such file"));
        }
        let stored = crate::tensors_file::load_floats(path)?;
        let find = |name: &str| stored.iter().find(|(n, _, _)| n == name);
        let (Some((_, dims, keys)), Some((_, _, ptr))) = (find("queue"), find("ptr")) else {
            return Err(Error::bad_input(path, "is not a MoCo queue (no tensors queue and ptr)"));
        };
        let want = vec![self.len(), self.width];
        let ptr = ptr.first().copied().unwrap_or(-1.0);
        if *dims != want || !(0.0..want[0] as f32).contains(&ptr) {
            return Err(Error::bad_input(path, format!("does not fit this queue: {dims:?} keys at row {ptr}, this run's queue is {want:?}")));
        }
        self.keys.copy_from_slice(keys);
        self.ptr = ptr as usize;
        Ok(())
    }
}

/// Each row of `v` [rows, W] divided by its norm (clamped at 1e-12, as F.normalize).
fn unit_rows(mut v: Vec<f32>, width: usize) -> Vec<f32> {
    for row in v.chunks_mut(width) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

struct Moco<B, D: NnDevice, const C: usize, const F: usize> {
    cfg: MocoConfig,
    /// The query encoder: the backbone and the projector.
    online: Online<B, D, C, F>,
    /// The key encoder.
    target: Target<B, D, C, F>,
    queue: Queue,
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Moco<B, D, C, F> {
    /// The projector drawn after the backbone, then the queue (random unit keys, as MoCo's
    /// code); the key encoder starts as a copy of the query encoder.
    fn new(cfg: &MocoConfig, opt: OptimConfig, dev: D, backbone: B) -> Result<Self, D::Err> {
        let projector = Mlp::new(&dev, cfg.projector.spec(F))?;
        let width = cfg.projector.out;
        let keys: Tensor<(usize, usize), f32, D> = dev.try_sample_like(&(cfg.queue_size, width), rand_distr::StandardNormal)?;
        let queue = Queue { keys: unit_rows(keys.as_vec(), width), width, ptr: 0 };
        let target = Target::copy_of(&backbone, &projector);
        let heads = vec![Head { mlp: projector, file: "projector.safetensors", older_file: None }];
        Ok(Moco { cfg: cfg.clone(), online: Online::new(dev, backbone, heads, opt), target, queue })
    }

    /// The keys of `images` [N, C, H, W], [N, W] of unit rows, computed by the key encoder in
    /// shuffled groups (module docs), the permutation drawn from `step`.
    fn keys(&mut self, images: &[f32], (h, w): (usize, usize), step: u64) -> Result<Vec<f32>, D::Err> {
        let per = C * h * w;
        let n = images.len() / per;
        let width = self.queue.width;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(step));
        let groups = self.cfg.shuffle_bn_groups.clamp(1, (n / 2).max(1));
        let mut keys = vec![0.0; n * width];
        for g in 0..groups {
            let rows = &order[g * n / groups..(g + 1) * n / groups];
            let x: Vec<f32> = rows.iter().flat_map(|&i| images[i * per..(i + 1) * per].iter().copied()).collect();
            // Each rank's groups of its own images: per-device statistics, as MoCo's.
            let z = crate::dist::local_batchnorm(|| self.target.forward(self.online.images(x, (h, w))?))?.as_vec();
            for (j, &i) in rows.iter().enumerate() {
                keys[i * width..(i + 1) * width].copy_from_slice(&z[j * width..(j + 1) * width]);
            }
        }
        Ok(unit_rows(keys, width))
    }

    fn try_step(&mut self, views: Vec<f32>, (_, h, w): (usize, usize, usize), at: StepAt) -> Result<(f32, f64, Vec<f32>), D::Err> {
        let n = views.len() / (2 * C * h * w);
        let (queries, keys) = views.split_at(n * C * h * w);
        let keys = self.keys(keys, (h, w), at.step)?;
        let x = self.online.images(queries.to_vec(), (h, w))?;
        let f = self.online.forward_mut(x)?;
        let features = f.as_vec();
        let q = self.online.heads[0].mlp.try_forward_mut(f)?;
        let dev = self.online.dev.clone();
        let width = self.queue.width;
        let k = dev.try_tensor_from_vec(keys.clone(), (n, width))?;
        let queue = dev.try_tensor_from_vec(self.queue.keys.clone(), (self.queue.len(), width))?;
        let loss = info_nce(q, &k, &queue, self.cfg.temperature);
        let value = loss.array();
        let m = self.cfg.momentum_at(at.step, at.total_steps);
        if self.online.update(crate::dist::scale_loss(loss).backward(), at.lr, value.is_finite())? {
            self.target.follow(&self.online.backbone, &self.online.heads[0].mlp, m)?;
            // Every rank's keys, in the global batch's order, so every rank holds the same queue.
            self.queue.push(&crate::dist::gather_host(keys));
        }
        Ok((value, m, features))
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Encoder for Moco<B, D, C, F> {
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        self.online.features(images, shape)
    }

    fn feature_width(&self) -> usize {
        F
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Method for Moco<B, D, C, F> {
    /// Views [2N, ...]: view 1 the queries, view 2 their keys. Logs the key encoder's momentum.
    fn step(&mut self, views: Vec<f32>, shape: (usize, usize, usize), at: StepAt) -> Result<StepOut> {
        let (loss, m, features) = self.try_step(views, shape, at).map_err(|e| Error::device("a MoCo v2 step", e))?;
        Ok(StepOut { loss, logs: vec![("momentum", m)], features })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.online.save(dir)?;
        self.target.save(dir)?;
        self.queue.save(&dir.join(QUEUE_FILE))
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.online.load(dir)?;
        self.target.load(dir)?;
        self.queue.load(&dir.join(QUEUE_FILE))
    }

    fn save_backbone(&self, path: &Path) -> Result<()> {
        weights::save_module(&self.online.backbone, path)
    }
}

impl FromBackbone for MocoConfig {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        let m = Moco::<B, D, C, F>::new(self, opt, dev, backbone).map_err(|e| Error::device("building MoCo v2's head and queue", e))?;
        Ok(Box::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::target::tests::{assert_followed, mlp_tensors, tensors_of};
    use crate::models::resnet::SmallFmnist;
    use crate::optim::OptimizerKind;

    fn small() -> MocoConfig {
        MocoConfig { projector: ProjectorConfig { hidden: 32, out: 8, layers: 2 }, queue_size: 6, shuffle_bn_groups: 1, ..Default::default() }
    }

    fn views(n: usize, seed: u64) -> Vec<f32> {
        let s = crate::data::Split::random(2 * n, crate::data::ImageShape { height: 12, width: 12, channels: 1 }, seed);
        s.images.iter().map(|&v| v as f32 / 255.0 - 0.5).collect()
    }

    /// The queue takes each step's keys (the key encoder's normalised projections of view 2,
    /// computed before the step) from its write position on, wrapping around; the key encoder
    /// moves exactly by the moving average (no gradient reaches it).
    #[test]
    fn the_queue_and_the_key_encoder_follow_their_formulas() {
        let dev = Cpu::seed_from_u64(0);
        let backbone = dev.build_module::<SmallFmnist, f32>();
        let opt = OptimConfig { kind: OptimizerKind::Sgd, lr: 0.5, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
        let mut m = Moco::<_, Cpu, 1, 128>::new(&small(), opt, dev.clone(), backbone).unwrap();
        assert!(m.queue.keys.chunks(8).all(|r| (r.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5), "unit keys");
        let mut ptr = 0;
        for step in 0..2 {
            let batch = views(4, step);
            // The keys as the key encoder gives them before the step (one group: the batch).
            let mut before = Target::copy_of(&m.target.backbone, &m.target.projector);
            let x = dev.tensor_from_vec(batch[4 * 144..].to_vec(), (4, Const::<1>, 12, 12));
            let want = unit_rows(before.forward(x).unwrap().as_vec(), 8);
            let (old_b, old_p) = (tensors_of(&m.target.backbone), mlp_tensors(&m.target.projector));
            let at = StepAt { lr: 0.5, step, total_steps: 10, steps_per_epoch: 5 };
            let (loss, momentum, _) = m.try_step(batch, (1, 12, 12), at).unwrap();
            assert!(loss.is_finite() && loss > 0.0, "{loss}");
            assert_eq!(momentum, 0.999);
            for j in 0..4 {
                let row = (ptr + j) % 6;
                assert_eq!(&m.queue.keys[row * 8..(row + 1) * 8], &want[j * 8..(j + 1) * 8], "step {step}, key {j} at row {row}");
            }
            ptr = (ptr + 4) % 6;
            assert_eq!(m.queue.ptr, ptr);
            assert_followed("backbone", momentum, old_b, tensors_of(&m.online.backbone), tensors_of(&m.target.backbone));
            assert_followed("projector", momentum, old_p, mlp_tensors(&m.online.heads[0].mlp), mlp_tensors(&m.target.projector));
        }
        // Wrapped: rows 4, 5, 0, 1 written by the second step, the write position at row 2.
        assert_eq!(ptr, 2);
    }

    /// In shuffled groups the keys are the same keys, in the batch's order: each group's
    /// statistics differ from the whole batch's, but every image gets its own key back.
    #[test]
    fn shuffled_groups_give_each_image_its_own_key() {
        let cfg = MocoConfig { shuffle_bn_groups: 2, ..small() };
        let dev = Cpu::seed_from_u64(0);
        let backbone = dev.build_module::<SmallFmnist, f32>();
        let mut m = Moco::<_, Cpu, 1, 128>::new(&cfg, OptimConfig::default(), dev.clone(), backbone).unwrap();
        let images = views(4, 3)[..8 * 144].to_vec();
        let keys = m.keys(&images, (12, 12), 5).unwrap();
        // Image i's key, computed alone in its group of the same permutation.
        let mut order: Vec<usize> = (0..8).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(5));
        for g in 0..2 {
            let rows = &order[g * 4..(g + 1) * 4];
            let x: Vec<f32> = rows.iter().flat_map(|&i| images[i * 144..(i + 1) * 144].iter().copied()).collect();
            let mut t = Target::copy_of(&m.target.backbone, &m.target.projector);
            let z = unit_rows(t.forward(dev.tensor_from_vec(x, (4, Const::<1>, 12, 12))).unwrap().as_vec(), 8);
            for (j, &i) in rows.iter().enumerate() {
                assert_eq!(&keys[i * 8..(i + 1) * 8], &z[j * 8..(j + 1) * 8], "image {i}");
            }
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |c: MocoConfig, field: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(MocoConfig { temperature: 0.0, ..Default::default() }, "method.temperature");
        bad(MocoConfig { queue_size: 0, ..Default::default() }, "method.queue_size");
        bad(MocoConfig { momentum: 1.5, ..Default::default() }, "method.momentum");
        bad(MocoConfig { momentum_final: 0.5, ..Default::default() }, "method.momentum_final");
        bad(MocoConfig { shuffle_bn_groups: 0, ..Default::default() }, "method.shuffle_bn_groups");
        bad(MocoConfig { shuffle_bn_groups: usize::MAX, ..Default::default() }, "method.shuffle_bn_groups");
        bad(MocoConfig { projector: ProjectorConfig { out: 0, ..Default::default() }, ..Default::default() }, "method.projector.out");
        MocoConfig::default().validate().unwrap();
        assert_eq!(MocoConfig::default().min_batch(), 16);
    }
}
