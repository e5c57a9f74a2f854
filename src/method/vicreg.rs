//! VICReg (Bardes et al. 2022, "VICReg: Variance-Invariance-Covariance Regularization for
//! Self-Supervised Learning"): a backbone and a wide expander; the two views' embeddings are
//! pulled together (invariance) while each view's dimensions keep their variance and are
//! decorrelated. No negatives, no target network, no normalisation across the batch in the
//! loss's first term.
//!
//! Where this differs from the authors' code: both views go through the backbone and the
//! expander in one batch of 2N, so every BatchNorm layer normalises over both views (theirs:
//! one pass per view, each view's own statistics).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::{vicreg_loss, VicRegWeights};
use crate::models::backbone::Backbone;
use crate::models::mlp::{Mlp, TapedRows};
use crate::nn::NnDevice;
use crate::optim::OptimConfig;

use super::expander::ExpanderConfig;
use super::online::Head;
use super::online_loss::{OnlineLoss, OnlineMethod};
use super::view_pair::ViewPair;
use super::{FromBackbone, Method, MethodSettings};

/// `method: VicReg(...)` in a pretraining recipe. The paper trains with LARS, base rate 0.2 x
/// batch / 256, weight decay 1e-6, batch 2048, 10 warm-up epochs and cosine decay: the
/// recipe's `optimizer` and `lr` sections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VicRegConfig {
    /// The expander (paper: 8192 -> 8192, 3 layers).
    pub projector: ExpanderConfig,
    /// Weight of the invariance term, lambda (paper: 25).
    pub invariance: f64,
    /// Weight of the variance term, mu (paper: 25).
    pub variance: f64,
    /// Weight of the covariance term, nu (paper: 1).
    pub covariance: f64,
    /// Gaussian blur probability of view 1 and view 2 (paper: BYOL's 1.0 and 0.1).
    pub blur_p: (f32, f32),
    /// Solarisation probability of view 1 and view 2 (paper: BYOL's 0.0 and 0.2).
    pub solarize_p: (f32, f32),
}

impl Default for VicRegConfig {
    fn default() -> Self {
        VicRegConfig {
            projector: ExpanderConfig::default(),
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
            blur_p: ViewPair::BYOL.blur_p,
            solarize_p: ViewPair::BYOL.solarize_p,
        }
    }
}

impl VicRegConfig {
    fn view_pair(&self) -> ViewPair {
        ViewPair { blur_p: self.blur_p, solarize_p: self.solarize_p }
    }

    fn weights(&self) -> VicRegWeights {
        VicRegWeights { invariance: self.invariance, variance: self.variance, covariance: self.covariance }
    }
}

impl MethodSettings for VicRegConfig {
    fn name(&self) -> &'static str {
        "VICReg"
    }

    fn paper(&self) -> &'static str {
        "Bardes et al. 2022, VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning"
    }

    fn summary(&self) -> String {
        let k = self.weights();
        format!("VICReg (weights {} / {} / {}, {}, {})", k.invariance, k.variance, k.covariance, self.projector.summary(), self.view_pair().summary())
    }

    /// BYOL's asymmetric pair: each view with its blur and solarisation probability.
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        self.view_pair().views(base)
    }

    /// The variance and covariance are unbiased estimates over the batch (N - 1 in the
    /// denominator).
    fn min_batch(&self) -> usize {
        2
    }

    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        super::build_on(self, model, opt, seed, device)
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [("invariance", self.invariance), ("variance", self.variance), ("covariance", self.covariance)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(format!("method.{name}"), format!("{v} must be a weight >= 0")));
            }
        }
        self.view_pair().validate()?;
        self.projector.validate()
    }
}

impl OnlineLoss for VicRegConfig {
    /// The expander.
    fn heads<D: NnDevice>(&self, dev: &D, features: usize) -> Result<Vec<Head<D>>, D::Err> {
        let mlp = Mlp::new(dev, self.projector.spec(features))?;
        Ok(vec![Head { mlp, file: "projector.safetensors", older_file: None }])
    }

    /// The three terms on the two views' embeddings.
    fn loss<D: NnDevice>(&self, heads: &mut [Head<D>], features: TapedRows<D>) -> Result<Tensor<Rank0, f32, D, OwnedTape<f32, D>>, D::Err> {
        let z = heads[0].mlp.try_forward_mut(features)?;
        // Data-parallel: variance and covariance of the global batch (the paper gathers too).
        Ok(vicreg_loss(crate::dist::ops::gather_views(z, 2)?, self.weights()))
    }
}

impl FromBackbone for VicRegConfig {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        OnlineMethod::<B, D, C, F, Self>::boxed(self, opt, dev, backbone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |c: VicRegConfig, field: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(VicRegConfig { variance: -1.0, ..Default::default() }, "method.variance");
        bad(VicRegConfig { covariance: f64::NAN, ..Default::default() }, "method.covariance");
        bad(VicRegConfig { solarize_p: (0.0, 2.0), ..Default::default() }, "method.solarize_p");
        bad(VicRegConfig { projector: ExpanderConfig { hidden: 0, ..Default::default() }, ..Default::default() }, "method.projector.hidden");
        VicRegConfig::default().validate().unwrap();
    }
}
