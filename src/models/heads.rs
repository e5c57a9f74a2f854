//! Heads on top of a backbone's features.

use dfdx::nn::builders::{BatchNorm1D, Linear, ReLU};

/// SimCLR v1's projection head: Linear, ReLU, Linear (F -> H -> Z).
pub type ProjectionMlp<const F: usize, const H: usize, const Z: usize> = (Linear<F, H>, ReLU, Linear<H, Z>);

/// SimCLR v2's projection head: three layers with BatchNorm (F -> H -> H -> Z).
pub type ProjectionMlpV2<const F: usize, const H: usize, const Z: usize> = (
    (Linear<F, H>, BatchNorm1D<H>, ReLU),
    (Linear<H, H>, BatchNorm1D<H>, ReLU),
    (Linear<H, Z>, BatchNorm1D<Z>),
);

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::prelude::*;

    #[test]
    fn heads_map_features_to_their_widths() {
        let dev = Cpu::seed_from_u64(0);
        let x: Tensor<(usize, Const<16>), f32, _> = dev.sample_normal_like(&(8, Const));
        let v1 = dev.build_module::<ProjectionMlp<16, 32, 4>, f32>();
        assert_eq!(v1.forward(x.clone()).shape(), &(8, Const::<4>));
        let mut v2 = dev.build_module::<ProjectionMlpV2<16, 32, 4>, f32>();
        let z = v2.forward_mut(x.leaky_trace());
        assert_eq!(z.shape(), &(8, Const::<4>));
        // The last BatchNorm standardises each output over the batch.
        let zv = z.as_vec();
        let mean0: f32 = (0..8).map(|i| zv[i * 4]).sum::<f32>() / 8.0;
        assert!(mean0.abs() < 1e-4);
    }
}
