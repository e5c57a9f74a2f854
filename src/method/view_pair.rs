//! BYOL's asymmetric pair of views (Grill et al. 2020, table 6), which Barlow Twins, VICReg
//! and MoCo v2's successors adopt: the recipe's augmentation with each view's own Gaussian
//! blur and solarisation probability.

use crate::augment::AugmentConfig;
use crate::error::{Error, Result};

/// Each view's blur and solarisation probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewPair {
    /// Gaussian blur probability of view 1 and view 2 (BYOL: 1.0 and 0.1).
    pub blur_p: (f32, f32),
    /// Solarisation probability of view 1 and view 2 (BYOL: 0.0 and 0.2).
    pub solarize_p: (f32, f32),
}

impl ViewPair {
    /// BYOL's probabilities.
    pub const BYOL: ViewPair = ViewPair { blur_p: (1.0, 0.1), solarize_p: (0.0, 0.2) };

    /// The two views: `base` with each view's probabilities.
    pub fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        let view = |blur_p, solarize_p| AugmentConfig { blur_p, solarize_p, ..base.clone() };
        vec![view(self.blur_p.0, self.solarize_p.0), view(self.blur_p.1, self.solarize_p.1)]
    }

    /// Refuses a probability outside [0, 1], naming `method.blur_p` or `method.solarize_p`.
    pub fn validate(&self) -> Result<()> {
        for (name, (a, b)) in [("blur_p", self.blur_p), ("solarize_p", self.solarize_p)] {
            if !(0.0..=1.0).contains(&a) || !(0.0..=1.0).contains(&b) {
                return Err(Error::invalid(format!("method.{name}"), format!("({a}, {b}) are not probabilities in [0, 1]")));
            }
        }
        Ok(())
    }

    /// For summaries.
    pub fn summary(&self) -> String {
        format!("blur p {:?}, solarize p {:?}", self.blur_p, self.solarize_p)
    }
}
