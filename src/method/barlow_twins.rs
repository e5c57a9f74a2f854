//! Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
//! Reduction"): a backbone and a wide projector; the cross-correlation of the two views'
//! batch-normalised embeddings is pulled towards the identity. No negatives, no target
//! network, no predictor.
//!
//! Where this differs from the authors' code: both views go through the backbone and the
//! projector in one batch of 2N, so every BatchNorm layer normalises over both views (theirs:
//! one pass per view, each view's own statistics); the loss's normalisation of each view's
//! embeddings is theirs.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::barlow_twins_loss;
use crate::models::backbone::Backbone;
use crate::models::mlp::{Mlp, TapedRows};
use crate::nn::NnDevice;
use crate::optim::OptimConfig;

use super::expander::ExpanderConfig;
use super::online::Head;
use super::online_loss::{OnlineLoss, OnlineMethod};
use super::view_pair::ViewPair;
use super::{FromBackbone, Method, MethodSettings};

/// `method: BarlowTwins(...)` in a pretraining recipe. The paper trains with LARS (base rate
/// 0.2 for weights, 0.0048 for biases and BatchNorm, x batch / 256), weight decay 1.5e-6,
/// batch 2048, 10 warm-up epochs and cosine decay for 1000 epochs: the recipe's `optimizer`
/// and `lr` sections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BarlowTwinsConfig {
    pub projector: ExpanderConfig,
    /// Weight of the off-diagonal (redundancy reduction) term (paper: 0.0051).
    pub lambda: f64,
    /// Gaussian blur probability of view 1 and view 2 (paper: BYOL's 1.0 and 0.1).
    pub blur_p: (f32, f32),
    /// Solarisation probability of view 1 and view 2 (paper: BYOL's 0.0 and 0.2).
    pub solarize_p: (f32, f32),
}

impl Default for BarlowTwinsConfig {
    fn default() -> Self {
        BarlowTwinsConfig { projector: ExpanderConfig::default(), lambda: 0.0051, blur_p: ViewPair::BYOL.blur_p, solarize_p: ViewPair::BYOL.solarize_p }
    }
}

impl BarlowTwinsConfig {
    fn view_pair(&self) -> ViewPair {
        ViewPair { blur_p: self.blur_p, solarize_p: self.solarize_p }
    }
}

impl MethodSettings for BarlowTwinsConfig {
    fn name(&self) -> &'static str {
        "Barlow Twins"
    }

    fn paper(&self) -> &'static str {
        "Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction"
    }

    fn summary(&self) -> String {
        format!("Barlow Twins (lambda {}, {}, {})", self.lambda, self.projector.summary(), self.view_pair().summary())
    }

    /// BYOL's asymmetric pair: each view with its blur and solarisation probability.
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        self.view_pair().views(base)
    }

    /// The embeddings are normalised over the batch: one image has no variance.
    fn min_batch(&self) -> usize {
        2
    }

    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        super::build_on(self, model, opt, seed, device)
    }

    fn validate(&self) -> Result<()> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(Error::invalid("method.lambda", format!("{} must be a number >= 0", self.lambda)));
        }
        self.view_pair().validate()?;
        self.projector.validate()
    }
}

impl OnlineLoss for BarlowTwinsConfig {
    /// The projector.
    fn heads<D: NnDevice>(&self, dev: &D, features: usize) -> Result<Vec<Head<D>>, D::Err> {
        let mlp = Mlp::new(dev, self.projector.spec(features))?;
        Ok(vec![Head { mlp, file: "projector.safetensors", older_file: None }])
    }

    /// The cross-correlation loss of the two views' projections.
    fn loss<D: NnDevice>(&self, heads: &mut [Head<D>], features: TapedRows<D>) -> Result<Tensor<Rank0, f32, D, OwnedTape<f32, D>>, D::Err> {
        let z = heads[0].mlp.try_forward_mut(features)?;
        // Data-parallel: the cross-correlation of the global batch (the paper's, over 32 GPUs).
        Ok(barlow_twins_loss(crate::dist::ops::gather_views(z, 2)?, self.lambda))
    }
}

impl FromBackbone for BarlowTwinsConfig {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        OnlineMethod::<B, D, C, F, Self>::boxed(self, opt, dev, backbone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |c: BarlowTwinsConfig, field: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(BarlowTwinsConfig { lambda: -1.0, ..Default::default() }, "method.lambda");
        bad(BarlowTwinsConfig { blur_p: (1.5, 0.0), ..Default::default() }, "method.blur_p");
        bad(BarlowTwinsConfig { projector: ExpanderConfig { layers: 1, ..Default::default() }, ..Default::default() }, "method.projector.layers");
        bad(BarlowTwinsConfig { projector: ExpanderConfig { out: 0, ..Default::default() }, ..Default::default() }, "method.projector.out");
        BarlowTwinsConfig::default().validate().unwrap();
    }
}
