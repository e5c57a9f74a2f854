//! BYOL (Grill et al. 2020, "Bootstrap Your Own Latent"): an online network (backbone,
//! projector, predictor) predicts a target network's projection of the other view; the target
//! (backbone, projector) is an exponential moving average of the online one and gets no
//! gradient. No negatives, so no large batch is needed.

use std::path::Path;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::byol_loss;
use crate::models::backbone::Backbone;
use crate::models::encoder::Encoder;
use crate::models::mlp::{Mlp, MlpSpec, Norm};
use crate::nn::NnDevice;
use crate::optim::OptimConfig;
use crate::weights;

use super::online::{Head, Online};
use super::target::{cosine_decay, Target};
use super::view_pair::ViewPair;
use super::{FromBackbone, Method, MethodSettings, StepAt, StepOut};

/// BYOL's projector: Linear, BatchNorm, ReLU, Linear (paper section 3.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Hidden width (paper: 4096).
    pub hidden: usize,
    /// Output width (paper: 256).
    pub out: usize,
}

/// BYOL's predictor: the projector's shape, from its output back to its output width.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorConfig {
    /// Hidden width (paper: 4096).
    pub hidden: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig { hidden: 4096, out: 256 }
    }
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig { hidden: 4096 }
    }
}

/// `method: Byol(...)` in a pretraining recipe. The paper trains with LARS at a base rate of
/// 0.2 x batch / 256, weight decay 1.5e-6 (biases and BatchNorm excluded), trust coefficient
/// 1e-3, 10 warm-up epochs and cosine decay: the recipe's `optimizer` and `lr` sections.
/// `recipes/byol_fmnist.ron` uses AdamW instead, for a 30-minute run at batch 128 (it says why).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {
    pub projector: ProjectorConfig,
    pub predictor: PredictorConfig,
    /// The target's decay at the first step (paper: 0.996); it rises to `tau_final` (paper: 1)
    /// as tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 over the run's K steps.
    pub tau_base: f64,
    pub tau_final: f64,
    /// Gaussian blur probability of view 1 and view 2 (paper: 1.0 and 0.1); replaces the
    /// recipe's `augment.blur_p`.
    pub blur_p: (f32, f32),
    /// Solarisation probability of view 1 and view 2 (paper: 0.0 and 0.2); replaces the
    /// recipe's `augment.solarize_p`.
    pub solarize_p: (f32, f32),
}

impl Default for ByolConfig {
    fn default() -> Self {
        ByolConfig {
            projector: ProjectorConfig::default(),
            predictor: PredictorConfig::default(),
            tau_base: 0.996,
            tau_final: 1.0,
            blur_p: ViewPair::BYOL.blur_p,
            solarize_p: ViewPair::BYOL.solarize_p,
        }
    }
}

impl MethodSettings for ByolConfig {
    fn name(&self) -> &'static str {
        "BYOL"
    }

    fn paper(&self) -> &'static str {
        "Grill et al. 2020, Bootstrap Your Own Latent"
    }

    fn summary(&self) -> String {
        format!(
            "BYOL (projector {} → {}, predictor {} → {}, target decay {} → {}, {})",
            self.projector.hidden,
            self.projector.out,
            self.predictor.hidden,
            self.projector.out,
            self.tau_base,
            self.tau_final,
            self.view_pair().summary()
        )
    }

    /// The two views: `base` with each view's blur and solarisation probability.
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        self.view_pair().views(base)
    }

    /// BatchNorm in the heads needs two rows per view.
    fn min_batch(&self) -> usize {
        2
    }

    /// BYOL on model `model`, its weights drawn from `seed` (backbone, projector, predictor).
    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        super::build_on(self, model, opt, seed, device)
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.tau_base) {
            return Err(Error::invalid("method.tau_base", format!("{} is not a decay in [0, 1]", self.tau_base)));
        }
        if !(self.tau_base..=1.0).contains(&self.tau_final) {
            return Err(Error::invalid("method.tau_final", format!("{} must lie in [tau_base, 1] = [{}, 1]", self.tau_final, self.tau_base)));
        }
        self.view_pair().validate()?;
        self.projector_spec(1).check("method.projector")?;
        self.predictor_spec().check("method.predictor")
    }

}

impl ByolConfig {
    fn view_pair(&self) -> ViewPair {
        ViewPair { blur_p: self.blur_p, solarize_p: self.solarize_p }
    }

    fn projector_spec(&self, features: usize) -> MlpSpec {
        MlpSpec { input: features, hidden: self.projector.hidden, out: self.projector.out, layers: 2, norm: Norm::Hidden }
    }

    fn predictor_spec(&self) -> MlpSpec {
        MlpSpec { input: self.projector.out, hidden: self.predictor.hidden, out: self.projector.out, layers: 2, norm: Norm::Hidden }
    }

    /// The target's decay after step `step` of `total` (0-based; the cosine schedule above).
    pub fn tau(&self, step: u64, total: u64) -> f64 {
        cosine_decay(self.tau_base, self.tau_final, step, total)
    }
}

/// The online heads, in this order.
const PROJECTOR: usize = 0;
const PREDICTOR: usize = 1;

struct Byol<B, D: NnDevice, const C: usize, const F: usize> {
    cfg: ByolConfig,
    /// The backbone, the projector and the predictor.
    online: Online<B, D, C, F>,
    /// The backbone and the projector.
    target: Target<B, D, C, F>,
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Byol<B, D, C, F> {
    fn try_step(&mut self, views: Vec<f32>, (_, h, w): (usize, usize, usize), at: StepAt) -> Result<(f32, f64, Vec<f32>), D::Err> {
        let x = self.online.images(views, (h, w))?;
        let target = self.target.forward(x.clone())?;

        let f = self.online.forward_mut(x)?;
        let features = f.as_vec();
        let z = self.online.heads[PROJECTOR].mlp.try_forward_mut(f)?;
        let p = self.online.heads[PREDICTOR].mlp.try_forward_mut(z)?;
        let loss = byol_loss(p, &target);
        let value = loss.array();
        let tau = self.cfg.tau(at.step, at.total_steps);
        if self.online.update(crate::dist::scale_loss(loss).backward(), at.lr, value.is_finite())? {
            self.target.follow(&self.online.backbone, &self.online.heads[PROJECTOR].mlp, tau)?;
        }
        Ok((value, tau, features))
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Encoder for Byol<B, D, C, F> {
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        self.online.features(images, shape)
    }

    fn feature_width(&self) -> usize {
        F
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Method for Byol<B, D, C, F> {
    fn step(&mut self, views: Vec<f32>, shape: (usize, usize, usize), at: StepAt) -> Result<StepOut> {
        let (loss, tau, features) = self.try_step(views, shape, at).map_err(|e| Error::device("a BYOL step", e))?;
        Ok(StepOut { loss, logs: vec![("tau", tau)], features })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.online.save(dir)?;
        self.target.save(dir)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.online.load(dir)?;
        self.target.load(dir)
    }

    fn save_backbone(&self, path: &Path) -> Result<()> {
        weights::save_module(&self.online.backbone, path)
    }
}

impl FromBackbone for ByolConfig {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        Ok(Box::new(Byol::<B, D, C, F>::new(self, opt, dev, backbone)?))
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Byol<B, D, C, F> {
    /// The online heads drawn after the backbone; the target starts as a copy of the online
    /// network (paper, section 3.1).
    fn new(cfg: &ByolConfig, opt: OptimConfig, dev: D, backbone: B) -> Result<Self> {
        let err = |e| Error::device("building BYOL's heads", e);
        let projector = Mlp::new(&dev, cfg.projector_spec(F)).map_err(err)?;
        let predictor = Mlp::new(&dev, cfg.predictor_spec()).map_err(err)?;
        let target = Target::copy_of(&backbone, &projector);
        let heads = vec![
            Head { mlp: projector, file: "projector.safetensors", older_file: None },
            Head { mlp: predictor, file: "predictor.safetensors", older_file: None },
        ];
        Ok(Byol { cfg: cfg.clone(), online: Online::new(dev, backbone, heads, opt), target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::target::tests::{assert_followed, mlp_tensors, tensors_of};
    use crate::method::target::TARGET_BACKBONE_FILE;
    use crate::models::resnet::SmallFmnist;
    use crate::optim::OptimizerKind;

    fn small() -> ByolConfig {
        ByolConfig { projector: ProjectorConfig { hidden: 64, out: 32 }, predictor: PredictorConfig { hidden: 48 }, ..Default::default() }
    }

    fn views(n: usize, seed: u64) -> Vec<f32> {
        let s = crate::data::Split::random(2 * n, crate::data::ImageShape { height: 12, width: 12, channels: 1 }, seed);
        s.images.iter().map(|&v| v as f32 / 255.0 - 0.5).collect()
    }

    #[test]
    fn tau_follows_the_cosine_schedule() {
        let c = ByolConfig::default();
        assert_eq!(c.tau(0, 100), 0.996);
        assert!((c.tau(50, 100) - 0.998).abs() < 1e-12);
        assert!((c.tau(100, 100) - 1.0).abs() < 1e-15);
        let views = c.views(&AugmentConfig::simclr());
        assert_eq!((views[0].blur_p, views[0].solarize_p, views[1].blur_p, views[1].solarize_p), (1.0, 0.0, 0.1, 0.2));
    }

    /// After a step the target is exactly tau target + (1 - tau) online, the online network
    /// having moved: the target took no gradient step of its own. Running statistics are the
    /// target's own (it runs in training mode), so only trained tensors are compared.
    #[test]
    fn the_target_moves_only_by_the_moving_average() {
        let dev = Cpu::seed_from_u64(0);
        let backbone = dev.build_module::<SmallFmnist, f32>();
        let opt = OptimConfig { kind: OptimizerKind::Sgd, lr: 0.5, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
        let mut m = Byol::<_, Cpu, 1, 128>::new(&small(), opt, dev, backbone).unwrap();
        let (old_b, old_p) = (tensors_of(&m.target.backbone), mlp_tensors(&m.target.projector));
        let at = StepAt { lr: 0.5, step: 3, total_steps: 10, steps_per_epoch: 5 };
        let (loss, tau, _) = m.try_step(views(4, 1), (1, 12, 12), at).unwrap();
        assert!(loss.is_finite() && (0.0..=8.0).contains(&loss));
        assert_eq!(tau, small().tau(3, 10));
        assert_followed("backbone", tau, old_b, tensors_of(&m.online.backbone), tensors_of(&m.target.backbone));
        assert_followed("projector", tau, old_p, mlp_tensors(&m.online.heads[PROJECTOR].mlp), mlp_tensors(&m.target.projector));
    }

    #[test]
    fn resumes_exactly_with_its_target_network() {
        let opt = OptimConfig { kind: OptimizerKind::Lars, lr: 0.2, ..Default::default() };
        let mut a = small().build("small_fmnist", opt, 3, DeviceSpec::Cpu).unwrap();
        let shape = (1, 12, 12);
        let at = |step| StepAt { lr: 0.2, step, total_steps: 6, steps_per_epoch: 5 };
        let batches: Vec<Vec<f32>> = (0..4).map(|i| views(4, 10 + i)).collect();
        a.step(batches[0].clone(), shape, at(0)).unwrap();
        a.step(batches[1].clone(), shape, at(1)).unwrap();
        let d = tempfile::tempdir().unwrap();
        a.save(d.path()).unwrap();
        let mut b = small().build("small_fmnist", opt, 99, DeviceSpec::Cpu).unwrap();
        b.load(d.path()).unwrap();
        for (i, batch) in batches[2..].iter().enumerate() {
            let (x, y) = (a.step(batch.clone(), shape, at(2 + i as u64)).unwrap(), b.step(batch.clone(), shape, at(2 + i as u64)).unwrap());
            assert_eq!(x, y, "step {}", 2 + i);
        }
        let img = batches[0][..4 * 144].to_vec();
        assert_eq!(a.features(img.clone(), shape).unwrap(), b.features(img, shape).unwrap());
        // A checkpoint without the target network is refused, naming the file.
        std::fs::remove_file(d.path().join(TARGET_BACKBONE_FILE)).unwrap();
        let e = b.load(d.path()).unwrap_err().to_string();
        assert!(e.contains(TARGET_BACKBONE_FILE), "{e}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |c: ByolConfig, field: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(ByolConfig { tau_base: 1.5, ..Default::default() }, "method.tau_base");
        bad(ByolConfig { tau_final: 0.5, ..Default::default() }, "method.tau_final");
        bad(ByolConfig { blur_p: (1.0, 2.0), ..Default::default() }, "method.blur_p");
        bad(ByolConfig { projector: ProjectorConfig { hidden: 0, out: 8 }, ..Default::default() }, "method.projector.hidden");
        bad(ByolConfig { predictor: PredictorConfig { hidden: 0 }, ..Default::default() }, "method.predictor.hidden");
        ByolConfig::default().validate().unwrap();
    }
}
