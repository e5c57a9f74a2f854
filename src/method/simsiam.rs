//! SimSiam (Chen and He 2021, "Exploring Simple Siamese Representation Learning"): a backbone,
//! a projector and a predictor; each view's prediction regresses the other view's projection
//! under stop-gradient. No negatives, no moving-average target, no large batch.
//!
//! Where this differs from the authors' code: the linear layers before BatchNorm keep their
//! bias and the projector's output BatchNorm learns a scale and shift (theirs: no bias,
//! `affine=False`; a bias before BatchNorm is cancelled by it); BatchNorm sees both views'
//! 2N rows together (theirs: each view's N); the predictor's rate follows the schedule like
//! every other parameter (the paper's fixed predictor rate is not offered).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::simsiam_loss;
use crate::models::backbone::Backbone;
use crate::models::mlp::{Mlp, MlpSpec, Norm, TapedRows};
use crate::nn::NnDevice;
use crate::optim::OptimConfig;

use super::online::Head;
use super::online_loss::{OnlineLoss, OnlineMethod};
use super::{FromBackbone, Method, MethodSettings};

/// SimSiam's projector: `layers` linear layers with BatchNorm after each, the output's
/// included (no ReLU after it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Hidden width (paper: 2048).
    pub hidden: usize,
    /// Output width (paper: 2048).
    pub out: usize,
    /// Linear layers (paper: 3 on ImageNet, 2 on CIFAR-10).
    pub layers: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig { hidden: 2048, out: 2048, layers: 3 }
    }
}

/// SimSiam's predictor: a bottleneck, out -> hidden -> out, BatchNorm on the hidden layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorConfig {
    /// Hidden width (paper: 512, a quarter of the output's).
    pub hidden: usize,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig { hidden: 512 }
    }
}

/// `method: SimSiam(...)` in a pretraining recipe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSiamConfig {
    pub projector: ProjectorConfig,
    pub predictor: PredictorConfig,
}

impl SimSiamConfig {
    fn projector_spec(&self, features: usize) -> MlpSpec {
        let p = &self.projector;
        MlpSpec { input: features, hidden: p.hidden, out: p.out, layers: p.layers, norm: Norm::All }
    }

    fn predictor_spec(&self) -> MlpSpec {
        MlpSpec { input: self.projector.out, hidden: self.predictor.hidden, out: self.projector.out, layers: 2, norm: Norm::Hidden }
    }
}

impl MethodSettings for SimSiamConfig {
    fn name(&self) -> &'static str {
        "SimSiam"
    }

    fn paper(&self) -> &'static str {
        "Chen and He 2021, Exploring Simple Siamese Representation Learning"
    }

    fn summary(&self) -> String {
        let p = &self.projector;
        format!("SimSiam ({}-layer projector {} → {}, predictor {} → {})", p.layers, p.hidden, p.out, self.predictor.hidden, p.out)
    }

    /// Both views take the recipe's augmentation.
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        vec![base.clone(), base.clone()]
    }

    /// BatchNorm in the heads needs more than one image (it sees both views' 2N rows together).
    fn min_batch(&self) -> usize {
        2
    }

    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        super::build_on(self, model, opt, seed, device)
    }

    fn validate(&self) -> Result<()> {
        if !(2..=3).contains(&self.projector.layers) {
            return Err(Error::invalid("method.projector.layers", format!("{} must be 2 or 3", self.projector.layers)));
        }
        self.projector_spec(1).check("method.projector")?;
        self.predictor_spec().check("method.predictor")
    }
}

const PROJECTOR: usize = 0;
const PREDICTOR: usize = 1;

impl OnlineLoss for SimSiamConfig {
    /// The projector, then the predictor.
    fn heads<D: NnDevice>(&self, dev: &D, features: usize) -> Result<Vec<Head<D>>, D::Err> {
        let projector = Mlp::new(dev, self.projector_spec(features))?;
        let predictor = Mlp::new(dev, self.predictor_spec())?;
        Ok(vec![
            Head { mlp: projector, file: "projector.safetensors", older_file: None },
            Head { mlp: predictor, file: "predictor.safetensors", older_file: None },
        ])
    }

    /// Each view's prediction against the other view's projection under stop-gradient.
    fn loss<D: NnDevice>(&self, heads: &mut [Head<D>], features: TapedRows<D>) -> Result<Tensor<Rank0, f32, D, OwnedTape<f32, D>>, D::Err> {
        let z = heads[PROJECTOR].mlp.try_forward_mut(features)?;
        // The stop-gradient: the projections as constants, for the other view's prediction.
        let target = z.retaped::<NoneTape>();
        let p = heads[PREDICTOR].mlp.try_forward_mut(z)?;
        Ok(simsiam_loss(p, &target))
    }
}

impl FromBackbone for SimSiamConfig {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        OnlineMethod::<B, D, C, F, Self>::boxed(self, opt, dev, backbone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::StepAt;
    use crate::optim::OptimizerKind;

    fn small() -> SimSiamConfig {
        SimSiamConfig { projector: ProjectorConfig { hidden: 64, out: 32, layers: 3 }, predictor: PredictorConfig { hidden: 8 } }
    }

    fn views(n: usize, seed: u64) -> Vec<f32> {
        let s = crate::data::Split::random(2 * n, crate::data::ImageShape { height: 12, width: 12, channels: 1 }, seed);
        s.images.iter().map(|&v| v as f32 / 255.0 - 0.5).collect()
    }

    #[test]
    fn learns_and_resumes_exactly() {
        let opt = OptimConfig { kind: OptimizerKind::Sgd, lr: 0.05, momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
        let mut a = small().build("small_fmnist", opt, 3, DeviceSpec::Cpu).unwrap();
        let shape = (1, 12, 12);
        let at = |step| StepAt { lr: 0.05, step, total_steps: 20, steps_per_epoch: 5 };
        // The same batch again and again: the predictions approach the projections.
        let batch = views(6, 1);
        let first = a.step(batch.clone(), shape, at(0)).unwrap().loss;
        assert!((-1.0..=1.0).contains(&first), "{first}");
        for s in 1..12 {
            a.step(batch.clone(), shape, at(s)).unwrap();
        }
        let last = a.step(batch.clone(), shape, at(12)).unwrap().loss;
        assert!(last < first, "{first} -> {last}");
        let d = tempfile::tempdir().unwrap();
        a.save(d.path()).unwrap();
        let mut b = small().build("small_fmnist", opt, 99, DeviceSpec::Cpu).unwrap();
        b.load(d.path()).unwrap();
        for s in 13..15 {
            let other = views(6, s);
            assert_eq!(a.step(other.clone(), shape, at(s)).unwrap(), b.step(other, shape, at(s)).unwrap(), "step {s}");
        }
        let img = batch[..6 * 144].to_vec();
        assert_eq!(a.features(img.clone(), shape).unwrap(), b.features(img, shape).unwrap());
        // Another predictor width is refused, naming the file.
        let wide = SimSiamConfig { predictor: PredictorConfig { hidden: 9 }, ..small() };
        let e = wide.build("small_fmnist", opt, 0, DeviceSpec::Cpu).unwrap().load(d.path()).unwrap_err().to_string();
        assert!(e.contains("predictor.safetensors"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = SimSiamConfig { projector: ProjectorConfig { layers: 4, ..Default::default() }, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("method.projector.layers"), "{e}");
        let e = SimSiamConfig { predictor: PredictorConfig { hidden: 0 }, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("method.predictor.hidden"), "{e}");
        SimSiamConfig::default().validate().unwrap();
    }
}
