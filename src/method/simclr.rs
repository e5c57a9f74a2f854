//! SimCLR (Chen et al. 2020): a backbone and a projector; NT-Xent between the two views'
//! projections, every other image of the batch a negative.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::nt_xent;
use crate::models::backbone::Backbone;
use crate::models::mlp::{Mlp, MlpSpec, Norm, TapedRows};
use crate::nn::NnDevice;
use crate::optim::OptimConfig;

use super::online::Head;
use super::online_loss::{OnlineLoss, OnlineMethod};
use super::{FromBackbone, Method, MethodSettings};

/// SimCLR's projector: `layers` linear layers, input -> hidden -> ... -> out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Hidden width (paper: the backbone's width, 2048 for ResNet-50).
    pub hidden: usize,
    /// Output width (paper: 128).
    pub out: usize,
    /// 2 (SimCLR v1: Linear, ReLU, Linear) or 3 (v2: BatchNorm after every linear layer).
    pub layers: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig { hidden: 512, out: 128, layers: 2 }
    }
}

impl ProjectorConfig {
    /// The head on a backbone of `features` outputs.
    pub fn spec(&self, features: usize) -> MlpSpec {
        let norm = if self.layers >= 3 { Norm::All } else { Norm::None };
        MlpSpec { input: features, hidden: self.hidden, out: self.out, layers: self.layers, norm }
    }
}

/// `method: SimClr(...)` in a pretraining recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimClrConfig {
    /// NT-Xent temperature (paper: 0.5 for CIFAR-10, 0.1 for ImageNet with large batches).
    pub temperature: f64,
    pub projector: ProjectorConfig,
}

impl Default for SimClrConfig {
    fn default() -> Self {
        SimClrConfig { temperature: 0.5, projector: ProjectorConfig::default() }
    }
}

impl MethodSettings for SimClrConfig {
    fn name(&self) -> &'static str {
        "SimCLR"
    }

    fn paper(&self) -> &'static str {
        "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations"
    }

    fn summary(&self) -> String {
        let p = &self.projector;
        format!("SimCLR (temperature {}, {}-layer projector {} → {})", self.temperature, p.layers, p.hidden, p.out)
    }

    /// Both views take the recipe's augmentation.
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        vec![base.clone(), base.clone()]
    }

    fn min_batch(&self) -> usize {
        crate::loss::nt_xent::MIN_BATCH
    }

    /// SimCLR on model `model`, its weights drawn from `seed` (backbone first, then projector).
    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        super::build_on(self, model, opt, seed, device)
    }

    fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid("method.temperature", format!("{} must be a positive number", self.temperature)));
        }
        if !(2..=3).contains(&self.projector.layers) {
            return Err(Error::invalid("method.projector.layers", format!("{} must be 2 or 3", self.projector.layers)));
        }
        self.projector.spec(1).check("method.projector")
    }
}

impl OnlineLoss for SimClrConfig {
    /// The projector; its file was `head.safetensors` before methods were plug-ins (still read).
    fn heads<D: NnDevice>(&self, dev: &D, features: usize) -> Result<Vec<Head<D>>, D::Err> {
        let mlp = Mlp::new(dev, self.projector.spec(features))?;
        Ok(vec![Head { mlp, file: "projector.safetensors", older_file: Some("head.safetensors") }])
    }

    /// NT-Xent over the projections of the 2N views.
    fn loss<D: NnDevice>(&self, heads: &mut [Head<D>], features: TapedRows<D>) -> Result<Tensor<Rank0, f32, D, OwnedTape<f32, D>>, D::Err> {
        let z = heads[0].mlp.try_forward_mut(features)?;
        // Data-parallel: every rank's projections, so every image of the global batch is a
        // negative (the paper's global batch; the loss then is the single-process one).
        Ok(nt_xent(crate::dist::ops::gather_views(z, 2)?, self.temperature))
    }
}

impl FromBackbone for SimClrConfig {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        OnlineMethod::<B, D, C, F, Self>::boxed(self, opt, dev, backbone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::StepAt;

    fn at(lr: f64) -> StepAt {
        StepAt { lr, step: 0, total_steps: 1, steps_per_epoch: 1 }
    }

    #[test]
    fn builds_learns_saves_and_loads() {
        let cfg = SimClrConfig { temperature: 0.5, projector: ProjectorConfig { hidden: 128, out: 64, layers: 2 } };
        let opt = OptimConfig { kind: crate::optim::OptimizerKind::Sgd, lr: 0.1, ..Default::default() };
        let mut a = cfg.build("small_fmnist", opt, 1, DeviceSpec::Cpu).unwrap();
        assert_eq!(a.feature_width(), 128);
        let shape = (1, 12, 12);
        let s = crate::data::Split::random(8, crate::data::ImageShape { height: 12, width: 12, channels: 1 }, 3);
        let views: Vec<f32> = (0..2).flat_map(|_| s.images.iter().map(|&v| v as f32 / 255.0)).collect();
        let img = views[..4 * 144].to_vec();
        let before = a.features(img.clone(), shape).unwrap();
        let first = a.step(views.clone(), shape, at(0.1)).unwrap().loss;
        for _ in 0..5 {
            a.step(views.clone(), shape, at(0.1)).unwrap();
        }
        assert!(a.step(views.clone(), shape, at(0.1)).unwrap().loss < first, "identical views: the loss falls");
        assert_ne!(before, a.features(img.clone(), shape).unwrap(), "training changes the evaluation features");
        let d = tempfile::tempdir().unwrap();
        a.save(d.path()).unwrap();
        let mut b = cfg.build("small_fmnist", opt, 2, DeviceSpec::Cpu).unwrap();
        b.load(d.path()).unwrap();
        assert_eq!(a.features(img.clone(), shape).unwrap(), b.features(img, shape).unwrap());
        assert_eq!(a.step(views.clone(), shape, at(0.1)).unwrap(), b.step(views, shape, at(0.1)).unwrap(), "optimiser state restored");
        // Another model's files are refused, and a projector of another width.
        let mut c = SimClrConfig::default().build("resnet18_cifar", opt, 0, DeviceSpec::Cpu).unwrap();
        assert!(c.load(d.path()).unwrap_err().to_string().contains("backbone.safetensors"));
        let wide = SimClrConfig { projector: ProjectorConfig { hidden: 300, ..cfg.projector.clone() }, ..cfg.clone() };
        let mut e = wide.build("small_fmnist", opt, 0, DeviceSpec::Cpu).unwrap();
        let err = e.load(d.path()).unwrap_err().to_string();
        assert!(err.contains("projector.safetensors") && err.contains("300"), "{err}");
    }

    #[test]
    fn a_projector_of_any_width_trains() {
        let cfg = SimClrConfig { temperature: 0.5, projector: ProjectorConfig { hidden: 300, out: 37, layers: 3 } };
        let opt = OptimConfig { kind: crate::optim::OptimizerKind::Sgd, lr: 0.05, ..Default::default() };
        let mut a = cfg.build("small_fmnist", opt, 4, DeviceSpec::Cpu).unwrap();
        let s = crate::data::Split::random(6, crate::data::ImageShape { height: 12, width: 12, channels: 1 }, 5);
        let views: Vec<f32> = (0..2).flat_map(|_| s.images.iter().map(|&v| v as f32 / 255.0)).collect();
        let losses: Vec<f32> = (0..8).map(|_| a.step(views.clone(), (1, 12, 12), at(0.05)).unwrap().loss).collect();
        assert!(losses[7] < losses[0], "{losses:?}");
    }
}
