//! DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"):
//! self-distillation without labels. A student (backbone + DINO head) matches, for every view
//! of an image, the teacher's sharpened and centred distribution over K prototypes for the
//! image's other global views. The teacher is a moving average of the student and sees the 2
//! global crops only; the student also sees N local crops of a smaller size (multi-crop), in
//! the same step.
//!
//! Where this differs from the authors' code: the teacher's temperature warms up linearly by
//! step, not by epoch; the gradient is not clipped (theirs: norm 3.0), the last layer is not
//! frozen during the first epoch, and the weight decay stays constant (theirs: 0.04 -> 0.4 on
//! a cosine); the head's linear layers are drawn uniformly in ±1/sqrt(fan-in) (theirs:
//! truncated normal, std 0.02).

use std::path::Path;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::data::ImageShape;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::dino::{center_from_sums, teacher_sums};
use crate::loss::{dino_loss, teacher_targets};
use crate::models::backbone::Backbone;
use crate::models::encoder::Encoder;
use crate::models::mlp::Mlp;
use crate::nn::NnDevice;
use crate::optim::OptimConfig;
use crate::weights;

use super::online::{Head, Online};
use super::target::{cosine_decay, Target};
use super::view_pair::ViewPair;
use super::{FromBackbone, Method, MethodSettings, StepAt, StepOut};

/// The centre's file inside a checkpoint.
pub const CENTER_FILE: &str = "center.safetensors";

/// DINO's head: an MLP with GELU, an L2-normalised bottleneck, and a weight-normalised layer
/// to the prototypes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoHeadConfig {
    /// Hidden width (paper: 2048).
    pub hidden: usize,
    /// Bottleneck width (paper: 256).
    pub bottleneck: usize,
    /// Prototypes, K (paper: 65536).
    pub prototypes: usize,
    /// Linear layers before the bottleneck's normalisation (paper: 3).
    pub layers: usize,
}

impl Default for DinoHeadConfig {
    fn default() -> Self {
        DinoHeadConfig { hidden: 2048, bottleneck: 256, prototypes: 65536, layers: 3 }
    }
}

/// Multi-crop (Caron et al. 2020, SwAV; DINO section 3.1): 2 global crops at the recipe's
/// size and `local_crops` smaller ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiCropConfig {
    /// Area fraction of the global crops (paper: 0.4 to 1).
    pub global_scale: (f32, f32),
    /// Local crops per image (paper: 8 in the code's default, 10 in the best runs).
    pub local_crops: usize,
    /// Area fraction of the local crops (paper: 0.05 to 0.4).
    pub local_scale: (f32, f32),
    /// Side of the local crops in pixels (paper: 96 for 224 global crops).
    pub local_size: usize,
}

impl Default for MultiCropConfig {
    fn default() -> Self {
        MultiCropConfig { global_scale: (0.4, 1.0), local_crops: 8, local_scale: (0.05, 0.4), local_size: 96 }
    }
}

/// `method: Dino(...)` in a pretraining recipe. The paper trains with AdamW, lr 5e-4 x batch /
/// 256 after 10 warm-up epochs, cosine decay, weight decay 0.04 -> 0.4: the recipe's
/// `optimizer` and `lr` sections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoConfig {
    pub head: DinoHeadConfig,
    pub multi_crop: MultiCropConfig,
    /// Student temperature (paper: 0.1).
    pub student_temperature: f64,
    /// Teacher temperature after warm-up (paper: 0.04 to 0.07; the authors' code's default
    /// 0.04, 0.07 for longer runs).
    pub teacher_temperature: f64,
    /// Teacher temperature at the first step (paper: 0.04).
    pub teacher_temperature_warmup: f64,
    /// Epochs of the teacher temperature's linear warm-up (paper: 30).
    pub teacher_warmup_epochs: f64,
    /// Momentum of the centre (paper: 0.9).
    pub center_momentum: f64,
    /// The teacher's decay at the first step (paper: 0.996), rising on a cosine to
    /// `momentum_final` (paper: 1).
    pub momentum: f64,
    pub momentum_final: f64,
    /// Gaussian blur probability of the two global crops (paper: BYOL's 1.0 and 0.1).
    pub blur_p: (f32, f32),
    /// Solarisation probability of the two global crops (paper: 0.0 and 0.2).
    pub solarize_p: (f32, f32),
    /// Gaussian blur probability of the local crops (paper: 0.5).
    pub local_blur_p: f32,
}

impl Default for DinoConfig {
    fn default() -> Self {
        DinoConfig {
            head: DinoHeadConfig::default(),
            multi_crop: MultiCropConfig::default(),
            student_temperature: 0.1,
            teacher_temperature: 0.07,
            teacher_temperature_warmup: 0.04,
            teacher_warmup_epochs: 30.0,
            center_momentum: 0.9,
            momentum: 0.996,
            momentum_final: 1.0,
            blur_p: ViewPair::BYOL.blur_p,
            solarize_p: ViewPair::BYOL.solarize_p,
            local_blur_p: 0.5,
        }
    }
}

impl DinoConfig {
    /// The teacher's temperature at step `at`: linear from the warm-up value to the final one
    /// over `teacher_warmup_epochs`, then constant.
    pub fn teacher_temperature_at(&self, at: &StepAt) -> f64 {
        let warm = self.teacher_warmup_epochs * at.steps_per_epoch as f64;
        let progress = if warm > 0.0 { (at.step as f64 / warm).min(1.0) } else { 1.0 };
        self.teacher_temperature_warmup + (self.teacher_temperature - self.teacher_temperature_warmup) * progress
    }
}

impl MethodSettings for DinoConfig {
    fn name(&self) -> &'static str {
        "DINO"
    }

    fn paper(&self) -> &'static str {
        "Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers"
    }

    fn summary(&self) -> String {
        let (h, m) = (&self.head, &self.multi_crop);
        format!(
            "DINO ({} prototypes, head {} → {}, 2 global + {} local crops of {} px, temperatures student {} / teacher {} → {}, centre momentum {}, teacher decay {} → {})",
            h.prototypes,
            h.hidden,
            h.bottleneck,
            m.local_crops,
            m.local_size,
            self.student_temperature,
            self.teacher_temperature_warmup,
            self.teacher_temperature,
            self.center_momentum,
            self.momentum,
            self.momentum_final
        )
    }

    /// The two global crops (BYOL's blur and solarisation pair), then the local crops. Their
    /// crop scales are `multi_crop`'s: the recipe's `augment.crop_scale` is not used.
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        let m = &self.multi_crop;
        let global = AugmentConfig { crop_scale: m.global_scale, ..base.clone() };
        let mut views = ViewPair { blur_p: self.blur_p, solarize_p: self.solarize_p }.views(&global);
        let local = AugmentConfig { crop_scale: m.local_scale, size: Some(m.local_size), blur_p: self.local_blur_p, solarize_p: 0.0, ..base.clone() };
        views.extend(std::iter::repeat_n(local, m.local_crops));
        views
    }

    /// BatchNorm in the backbone needs two images in each forward pass.
    fn min_batch(&self) -> usize {
        2
    }

    /// Local crops must be smaller than the global ones (multi-crop's point: the default 96 px
    /// is for 224 px images; 28 px ones take 12).
    fn check_views(&self, shapes: &[ImageShape]) -> Result<()> {
        let (Some(global), Some(local)) = (shapes.first(), shapes.get(2)) else { return Ok(()) };
        if local.height >= global.height || local.width >= global.width {
            let side = (global.height.min(global.width) * 96).div_ceil(224);
            return Err(Error::invalid(
                "method.multi_crop.local_size",
                format!("{} px local crops are not smaller than the {}x{} global ones (the paper's 96 px are for 224 px images; about {side} here)", self.multi_crop.local_size, global.height, global.width),
            ));
        }
        Ok(())
    }

    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        super::build_on(self, model, opt, seed, device)
    }

    fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::invalid(format!("method.{name}"), format!("{v} must be a positive number")))
            }
        };
        positive("student_temperature", self.student_temperature)?;
        positive("teacher_temperature", self.teacher_temperature)?;
        positive("teacher_temperature_warmup", self.teacher_temperature_warmup)?;
        if !(self.teacher_warmup_epochs >= 0.0 && self.teacher_warmup_epochs.is_finite()) {
            return Err(Error::invalid("method.teacher_warmup_epochs", format!("{} must be a number >= 0", self.teacher_warmup_epochs)));
        }
        if !(0.0..=1.0).contains(&self.center_momentum) {
            return Err(Error::invalid("method.center_momentum", format!("{} is not a momentum in [0, 1]", self.center_momentum)));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::invalid("method.momentum", format!("{} is not a decay in [0, 1]", self.momentum)));
        }
        if !(self.momentum..=1.0).contains(&self.momentum_final) {
            return Err(Error::invalid("method.momentum_final", format!("{} must lie in [momentum, 1] = [{}, 1]", self.momentum_final, self.momentum)));
        }
        ViewPair { blur_p: self.blur_p, solarize_p: self.solarize_p }.validate()?;
        if !(0.0..=1.0).contains(&self.local_blur_p) {
            return Err(Error::invalid("method.local_blur_p", format!("{} is not a probability in [0, 1]", self.local_blur_p)));
        }
        let h = &self.head;
        for (name, v) in [("hidden", h.hidden), ("bottleneck", h.bottleneck), ("prototypes", h.prototypes), ("layers", h.layers)] {
            if v == 0 {
                return Err(Error::invalid(format!("method.head.{name}"), "must be at least 1"));
            }
        }
        let m = &self.multi_crop;
        for (name, (a, b)) in [("global_scale", m.global_scale), ("local_scale", m.local_scale)] {
            if !(0.0 < a && a <= b && b <= 1.0) {
                return Err(Error::invalid(format!("method.multi_crop.{name}"), format!("({a}, {b}) must satisfy 0 < min <= max <= 1")));
            }
        }
        if m.local_size == 0 {
            return Err(Error::invalid("method.multi_crop.local_size", "must be at least 1"));
        }
        Ok(())
    }
}

struct Dino<B, D: NnDevice, const C: usize, const F: usize> {
    cfg: DinoConfig,
    /// The student: the backbone and the head.
    online: Online<B, D, C, F>,
    /// The teacher.
    target: Target<B, D, C, F>,
    /// The centre of the teacher's outputs, [K].
    center: Vec<f32>,
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Dino<B, D, C, F> {
    /// The head drawn after the backbone; the teacher starts as a copy of the student, the
    /// centre at 0 (the authors' code).
    fn new(cfg: &DinoConfig, opt: OptimConfig, dev: D, backbone: B) -> Result<Self, D::Err> {
        let h = &cfg.head;
        let head = Mlp::dino_head(&dev, F, h.hidden, h.bottleneck, h.prototypes, h.layers)?;
        let target = Target::copy_of(&backbone, &head);
        let heads = vec![Head { mlp: head, file: "head.safetensors", older_file: None }];
        Ok(Dino { cfg: cfg.clone(), online: Online::new(dev, backbone, heads, opt), target, center: vec![0.0; h.prototypes] })
    }

    /// Views: 2N global crops [2N, C, H, W] then the local ones [L N, C, s, s].
    fn try_step(&mut self, views: Vec<f32>, (_, h, w): (usize, usize, usize), at: StepAt) -> Result<(f32, [f64; 2], Vec<f32>), D::Err> {
        let m = &self.cfg.multi_crop;
        let (per_global, per_local) = (C * h * w, C * m.local_size * m.local_size);
        let n = views.len() / (2 * per_global + m.local_crops * per_local);
        let (global, local) = views.split_at(2 * n * per_global);
        let temperature = self.cfg.teacher_temperature_at(&at);
        // The teacher on the global crops.
        let x = self.online.images(global.to_vec(), (h, w))?;
        let teacher = self.target.forward(x.clone())?.as_vec();
        let targets = teacher_targets(&teacher, &self.center, temperature);
        // The student on every crop: one forward per size, on one tape.
        let f = self.online.forward_mut(x)?;
        let features = f.as_vec();
        let mut student = self.online.heads[0].mlp.try_forward_mut(f)?;
        if m.local_crops > 0 {
            let x = self.online.images(local.to_vec(), (m.local_size, m.local_size))?;
            let rows = x.shape().0;
            let f = self.online.backbone.try_forward_mut(x.leaky_trace())?.try_reshape_like(&(rows, F))?;
            let s = self.online.heads[0].mlp.try_forward_mut(f)?;
            student = (student, s).try_concat_along(Axis::<0>)?;
        }
        let loss = dino_loss(student, &targets, self.cfg.student_temperature);
        let value = loss.array();
        let decay = cosine_decay(self.cfg.momentum, self.cfg.momentum_final, at.step, at.total_steps);
        if self.online.update(crate::dist::scale_loss(loss).backward(), at.lr, value.is_finite())? {
            self.target.follow(&self.online.backbone, &self.online.heads[0].mlp, decay)?;
            // The mean of the global batch's teacher outputs (their sums over ranks), the same
            // centre on every rank.
            let mut sums = teacher_sums(&teacher, self.center.len());
            crate::dist::sum_over_ranks(&mut sums);
            self.center = center_from_sums(&self.center, &sums, self.cfg.center_momentum);
        }
        Ok((value, [temperature, decay], features))
    }

    fn save_center(&self, path: &Path) -> Result<()> {
        crate::tensors_file::save(path, &[("center".into(), vec![self.center.len()], &self.center)])
    }

    fn load_center(&mut self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(Error::bad_input(path, "no such file"));
        }
        let stored = crate::tensors_file::load_floats(path)?;
        match stored.iter().find(|(n, _, _)| n == "center") {
            Some((_, dims, v)) if *dims == vec![self.center.len()] => {
                self.center.copy_from_slice(v);
                Ok(())
            }
            Some((_, dims, _)) => Err(Error::bad_input(path, format!("does not fit this head: a centre of {dims:?}, this head has {} prototypes", self.center.len()))),
            None => Err(Error::bad_input(path, "is not a DINO centre (no tensor center)")),
        }
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Encoder for Dino<B, D, C, F> {
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        self.online.features(images, shape)
    }

    fn feature_width(&self) -> usize {
        F
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Method for Dino<B, D, C, F> {
    /// Logs the teacher's temperature and decay; the features given back are the global
    /// crops'.
    fn step(&mut self, views: Vec<f32>, shape: (usize, usize, usize), at: StepAt) -> Result<StepOut> {
        let (loss, [t, m], features) = self.try_step(views, shape, at).map_err(|e| Error::device("a DINO step", e))?;
        Ok(StepOut { loss, logs: vec![("teacher_temperature", t), ("momentum", m)], features })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.online.save(dir)?;
        self.target.save(dir)?;
        self.save_center(&dir.join(CENTER_FILE))
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.online.load(dir)?;
        self.target.load(dir)?;
        self.load_center(&dir.join(CENTER_FILE))
    }

    fn save_backbone(&self, path: &Path) -> Result<()> {
        weights::save_module(&self.online.backbone, path)
    }
}

impl FromBackbone for DinoConfig {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        let m = Dino::<B, D, C, F>::new(self, opt, dev, backbone).map_err(|e| Error::device("building DINO's head", e))?;
        Ok(Box::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::target::tests::{assert_followed, mlp_tensors, tensors_of};
    use crate::models::resnet::SmallFmnist;
    use crate::optim::OptimizerKind;

    fn small() -> DinoConfig {
        DinoConfig {
            head: DinoHeadConfig { hidden: 32, bottleneck: 8, prototypes: 16, layers: 3 },
            multi_crop: MultiCropConfig { local_crops: 2, local_size: 6, ..Default::default() },
            teacher_warmup_epochs: 2.0,
            ..Default::default()
        }
    }

    /// 2 global views of 12 px, then 2 local of 6 px, of `n` images.
    fn views(n: usize, seed: u64) -> Vec<f32> {
        let img = |count, side, seed| {
            let s = crate::data::Split::random(count, crate::data::ImageShape { height: side, width: side, channels: 1 }, seed);
            s.images.iter().map(|&v| v as f32 / 255.0 - 0.5).collect::<Vec<f32>>()
        };
        [img(2 * n, 12, seed), img(2 * n, 6, seed + 100)].concat()
    }

    #[test]
    fn the_teacher_temperature_warms_up_linearly() {
        let c = small();
        let at = |step| StepAt { lr: 0.1, step, total_steps: 100, steps_per_epoch: 10 };
        assert_eq!(c.teacher_temperature_at(&at(0)), 0.04);
        assert!((c.teacher_temperature_at(&at(10)) - 0.055).abs() < 1e-12);
        assert!((c.teacher_temperature_at(&at(20)) - 0.07).abs() < 1e-12);
        assert_eq!(c.teacher_temperature_at(&at(90)), 0.07);
        let views = c.views(&AugmentConfig::simclr());
        assert_eq!(views.len(), 4);
        assert_eq!((views[0].crop_scale, views[0].size, views[1].solarize_p), ((0.4, 1.0), None, 0.2));
        assert_eq!((views[3].crop_scale, views[3].size, views[3].blur_p), ((0.05, 0.4), Some(6), 0.5));
    }

    /// After a step: the centre is momentum c + (1 - momentum) mean of the teacher's outputs on
    /// the global crops before the step, and the teacher moved exactly by the moving average
    /// (no gradient reached it).
    #[test]
    fn the_centre_and_the_teacher_follow_their_formulas() {
        let dev = Cpu::seed_from_u64(0);
        let backbone = dev.build_module::<SmallFmnist, f32>();
        let opt = OptimConfig { kind: OptimizerKind::Sgd, lr: 0.5, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
        let mut m = Dino::<_, Cpu, 1, 128>::new(&small(), opt, dev.clone(), backbone).unwrap();
        for step in 0..2 {
            let batch = views(4, step);
            let mut before = Target::copy_of(&m.target.backbone, &m.target.projector);
            let teacher = before.forward(dev.tensor_from_vec(batch[..8 * 144].to_vec(), (8, Const::<1>, 12, 12))).unwrap().as_vec();
            let want = crate::loss::updated_center(&m.center, &teacher, 0.9);
            let (old_b, old_h) = (tensors_of(&m.target.backbone), mlp_tensors(&m.target.projector));
            let at = StepAt { lr: 0.5, step, total_steps: 10, steps_per_epoch: 5 };
            let (loss, [t, decay], features) = m.try_step(batch, (1, 12, 12), at).unwrap();
            // The student's logits are cosines over 0.1, within 20 of each other: the cross
            // entropy is at most 20 + ln K.
            assert!(loss.is_finite() && loss > 0.0 && loss < 20.0 + (16f32).ln(), "{loss}");
            assert_eq!(t, small().teacher_temperature_at(&at));
            assert_eq!(features.len(), 8 * 128, "the global crops' features");
            assert_eq!(m.center, want, "step {step}");
            assert_followed("backbone", decay, old_b, tensors_of(&m.online.backbone), tensors_of(&m.target.backbone));
            assert_followed("head", decay, old_h, mlp_tensors(&m.online.heads[0].mlp), mlp_tensors(&m.target.projector));
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |c: DinoConfig, field: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(DinoConfig { student_temperature: 0.0, ..Default::default() }, "method.student_temperature");
        bad(DinoConfig { center_momentum: 2.0, ..Default::default() }, "method.center_momentum");
        bad(DinoConfig { momentum_final: 0.5, ..Default::default() }, "method.momentum_final");
        bad(DinoConfig { head: DinoHeadConfig { prototypes: 0, ..Default::default() }, ..Default::default() }, "method.head.prototypes");
        bad(DinoConfig { multi_crop: MultiCropConfig { local_scale: (0.5, 0.4), ..Default::default() }, ..Default::default() }, "method.multi_crop.local_scale");
        bad(DinoConfig { multi_crop: MultiCropConfig { local_size: 0, ..Default::default() }, ..Default::default() }, "method.multi_crop.local_size");
        DinoConfig::default().validate().unwrap();
    }
}
