//! Barlow Twins' loss (Zbontar et al. 2021, eq. 1-2): the cross-correlation matrix of the two
//! views' batch-normalised embeddings is pulled towards the identity.

use dfdx::prelude::*;

use super::columns::{centred, cross_product, diagonal_mask, split_views};

/// The epsilon of the embeddings' normalisation (PyTorch's BatchNorm1d without affine, as
/// the authors' code).
pub const EPSILON: f64 = 1e-5;

/// Barlow Twins' loss for embeddings `z` [2N, W] of two views of N >= 2 images (view v of
/// image k at row v N + k). Each view's columns are normalised over the batch (mean 0,
/// biased variance 1, epsilon [`EPSILON`]), C = z1^T z2 / N [W, W] is their
/// cross-correlation, and L = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2
/// (paper: lambda = 0.0051). Dimensionless; 0 when the views agree and the dimensions are
/// decorrelated.
pub fn barlow_twins_loss<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev> + Merge<T>>(z: Tensor<(usize, W), E, Dev, T>, lambda: f64) -> Tensor<Rank0, E, Dev, T> {
    let (_, width) = *z.shape();
    let dev = z.device().clone();
    let (z1, z2) = split_views(z);
    let n = z1.shape().0;
    let c = cross_product(standardised(z1), standardised(z2)) * E::from_f64(1.0 / n as f64).unwrap();
    let identity = diagonal_mask::<W, E, Dev>(&dev, width, 1.0, 0.0);
    let weights = diagonal_mask::<W, E, Dev>(&dev, width, 1.0, lambda);
    ((c - identity).square() * weights).sum()
}

/// Each column of `x` [N, W] at batch mean 0 and biased variance 1 (with [`EPSILON`]).
fn standardised<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev> + Merge<T>>(x: Tensor<(usize, W), E, Dev, T>) -> Tensor<(usize, W), E, Dev, T> {
    let shape = *x.shape();
    let xc = centred(x);
    let std = (xc.retaped::<T>().square().mean::<(W,), Axis<0>>() + E::from_f64(EPSILON).unwrap()).sqrt();
    xc / std.broadcast_like::<_, Axis<0>>(&shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    /// Direct evaluation in f64, loops over the formula.
    fn reference(z: &[f64], n: usize, w: usize, lambda: f64) -> f64 {
        let norm = |view: usize| -> Vec<Vec<f64>> {
            (0..w)
                .map(|j| {
                    let col: Vec<f64> = (0..n).map(|k| z[(view * n + k) * w + j]).collect();
                    let mean = col.iter().sum::<f64>() / n as f64;
                    let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
                    col.iter().map(|v| (v - mean) / (var + EPSILON).sqrt()).collect()
                })
                .collect()
        };
        let (a, b) = (norm(0), norm(1));
        let mut loss = 0.0;
        for i in 0..w {
            for j in 0..w {
                let c = (0..n).map(|k| a[i][k] * b[j][k]).sum::<f64>() / n as f64;
                loss += if i == j { (1.0 - c).powi(2) } else { lambda * c * c };
            }
        }
        loss
    }

    #[test]
    fn matches_a_hand_computed_value() {
        // Two images, width 2. View 1: columns (1, -1) and (3, 1); view 2: (2, 0) and (0, 2).
        // Centred, every column is +-(1, -1) with variance 1, so normalised it is
        // +-(1, -1) k with k^2 = 1 / (1 + eps); C = k^2 [[1, -1], [1, -1]], and
        // L = (1 - k^2)^2 + (1 + k^2)^2 + lambda (k^4 + k^4).
        let dev: Cpu = Default::default();
        let z = dev.tensor_from_vec(vec![1.0, 3.0, -1.0, 1.0, 2.0, 0.0, 0.0, 2.0], (4, 2));
        let k2 = 1.0 / (1.0 + EPSILON);
        let want = (1.0 - k2) * (1.0 - k2) + (1.0 + k2) * (1.0 + k2) + 0.0051 * 2.0 * k2 * k2;
        let got: f64 = barlow_twins_loss(z, 0.0051).array();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn matches_the_formula_and_its_gradient() {
        let dev: Cpu = Default::default();
        let (n, w) = (5, 4);
        let v = values(2 * n * w, 3);
        let z: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(v.clone(), (2 * n, w));
        let got = barlow_twins_loss(z.clone(), 0.3).array();
        assert!((got - reference(&v, n, w, 0.3)).abs() < 1e-10, "{got} vs {}", reference(&v, n, w, 0.3));
        let g = barlow_twins_loss(z.leaky_trace(), 0.3).backward();
        let loss = |x: &[f64]| barlow_twins_loss(dev.tensor_from_vec(x.to_vec(), (2 * n, w)), 0.3).array();
        assert_grad_close("barlow_twins_loss", &g.get(&z).as_vec(), &v, loss, 40);
    }
}
