//! The projector Barlow Twins and VICReg share (VICReg calls it the expander): `layers` linear
//! layers, each hidden one followed by BatchNorm and ReLU, the output linear.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::mlp::{MlpSpec, Norm};

/// `projector: (...)` of Barlow Twins and VICReg.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpanderConfig {
    /// Hidden width (both papers: 8192).
    pub hidden: usize,
    /// Output width (both papers: 8192; the losses grow as its square).
    pub out: usize,
    /// Linear layers (both papers: 3).
    pub layers: usize,
}

impl Default for ExpanderConfig {
    fn default() -> Self {
        ExpanderConfig { hidden: 8192, out: 8192, layers: 3 }
    }
}

impl ExpanderConfig {
    /// The head on a backbone of `features` outputs.
    pub fn spec(&self, features: usize) -> MlpSpec {
        MlpSpec { input: features, hidden: self.hidden, out: self.out, layers: self.layers, norm: Norm::Hidden }
    }

    /// Refuses 0 widths and other than 2 or 3 layers, naming `method.projector.*`.
    pub fn validate(&self) -> Result<()> {
        if !(2..=3).contains(&self.layers) {
            return Err(Error::invalid("method.projector.layers", format!("{} must be 2 or 3", self.layers)));
        }
        self.spec(1).check("method.projector")
    }

    /// For summaries.
    pub fn summary(&self) -> String {
        format!("{}-layer projector {} → {}", self.layers, self.hidden, self.out)
    }
}
