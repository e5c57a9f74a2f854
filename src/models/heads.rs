//! Heads on top of a backbone's features.

use dfdx::nn::builders::{Linear, ReLU};

/// SimCLR v1's projection head: Linear, ReLU, Linear (F -> H -> Z).
pub type ProjectionMlp<const F: usize, const H: usize, const Z: usize> = (Linear<F, H>, ReLU, Linear<H, Z>);
