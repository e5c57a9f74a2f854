//! VICReg's loss (Bardes et al. 2022, eq. 1-6): invariance between the two views' embeddings,
//! variance kept above 1 in every dimension of each view, covariance between dimensions pushed
//! to 0.

use dfdx::prelude::*;

use super::columns::{centred, cross_product, diagonal_mask, split_views};

/// The epsilon under the variance's square root (the paper's and the authors' 1e-4).
pub const EPSILON: f64 = 1e-4;

/// The weights of the three terms (paper: 25, 25, 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VicRegWeights {
    pub invariance: f64,
    pub variance: f64,
    pub covariance: f64,
}

/// VICReg's loss for embeddings `z` [2N, W] of two views of N >= 2 images (view v of image k
/// at row v N + k), x = view 1 and y = view 2:
/// - invariance s = mean over N W of (x - y)^2;
/// - variance v = mean_j max(0, 1 - sqrt(Var(x_j) + eps)) / 2, the same for y (unbiased
///   variance over the batch, eps = [`EPSILON`]);
/// - covariance c = sum_{i != j} Cov(x)_ij^2 / W + the same for y, Cov(x) = x_c^T x_c / (N - 1)
///   of the centred x_c.
///
/// L = weights.invariance s + weights.variance v + weights.covariance c, as the authors' code
/// (which halves each view's variance term).
pub fn vicreg_loss<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev> + Merge<T>>(z: Tensor<(usize, W), E, Dev, T>, weights: VicRegWeights) -> Tensor<Rank0, E, Dev, T> {
    let (_, width) = *z.shape();
    let dev = z.device().clone();
    let (x, y) = split_views(z);
    let n = x.shape().0;
    let invariance = (x.retaped::<T>() - y.retaped::<T>()).square().mean();
    let off_diagonal = diagonal_mask::<W, E, Dev>(&dev, width, 0.0, 1.0);
    let scale = |v: f64| E::from_f64(v).unwrap();
    let mut variance = Vec::new();
    let mut covariance = Vec::new();
    for view in [x, y] {
        let c = centred(view);
        let cov = cross_product(c.retaped::<T>(), c) * scale(1.0 / (n - 1) as f64);
        // The diagonal of the covariance is each dimension's unbiased variance.
        let var = (cov.retaped::<T>() * diagonal_mask::<W, E, Dev>(&dev, width, 1.0, 0.0)).sum::<(W,), Axis<1>>();
        let std = (var + scale(EPSILON)).sqrt();
        variance.push((std.negate() + E::ONE).relu().mean() * scale(0.5));
        covariance.push((cov.square() * off_diagonal.clone()).sum() * scale(1.0 / width.size() as f64));
    }
    let [v1, v2]: [_; 2] = variance.try_into().unwrap_or_else(|_| unreachable!());
    let [c1, c2]: [_; 2] = covariance.try_into().unwrap_or_else(|_| unreachable!());
    invariance * scale(weights.invariance) + (v1 + v2) * scale(weights.variance) + (c1 + c2) * scale(weights.covariance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    const PAPER: VicRegWeights = VicRegWeights { invariance: 25.0, variance: 25.0, covariance: 1.0 };

    /// Direct evaluation in f64, loops over the formula.
    fn reference(z: &[f64], n: usize, w: usize, k: VicRegWeights) -> f64 {
        let at = |view: usize, i: usize, j: usize| z[(view * n + i) * w + j];
        let inv = (0..n).flat_map(|i| (0..w).map(move |j| (i, j))).map(|(i, j)| (at(0, i, j) - at(1, i, j)).powi(2)).sum::<f64>() / (n * w) as f64;
        let (mut var, mut cov) = (0.0, 0.0);
        for view in 0..2 {
            let mean: Vec<f64> = (0..w).map(|j| (0..n).map(|i| at(view, i, j)).sum::<f64>() / n as f64).collect();
            let c = |a: usize, b: usize| (0..n).map(|i| (at(view, i, a) - mean[a]) * (at(view, i, b) - mean[b])).sum::<f64>() / (n - 1) as f64;
            var += (0..w).map(|j| (1.0 - (c(j, j) + EPSILON).sqrt()).max(0.0)).sum::<f64>() / w as f64 / 2.0;
            cov += (0..w).flat_map(|a| (0..w).map(move |b| (a, b))).filter(|(a, b)| a != b).map(|(a, b)| c(a, b).powi(2)).sum::<f64>() / w as f64;
        }
        k.invariance * inv + k.variance * var + k.covariance * cov
    }

    #[test]
    fn matches_a_hand_computed_value() {
        // Two images, width 2: x = (1, 0), (-1, 2); y = (1, 1), (-1, 1).
        // Invariance: ((0)^2 + (-1)^2 + (0)^2 + (1)^2) / 4 = 0.5.
        // Variance: x's columns have unbiased variance 2 (std above 1: no hinge); y's first 2,
        // its second 0, std sqrt(1e-4) = 0.01, hinge 0.99: v = (0 + 0.99 / 2) / 2 = 0.2475.
        // Covariance: x_c = (1, -1), (-1, 1): Cov(x) = [[2, -2], [-2, 2]], off-diagonal squares
        // 8, over W = 2: 4; Cov(y) = [[2, 0], [0, 0]]: 0. c = 4.
        // L = 25 (0.5) + 25 (0.2475) + 4 = 22.6875.
        let dev: Cpu = Default::default();
        let z = dev.tensor_from_vec(vec![1.0, 0.0, -1.0, 2.0, 1.0, 1.0, -1.0, 1.0], (4, 2));
        let got: f64 = vicreg_loss(z, PAPER).array();
        assert!((got - 22.6875).abs() < 1e-12, "{got}");
    }

    #[test]
    fn matches_the_formula_and_its_gradient() {
        let dev: Cpu = Default::default();
        let (n, w) = (5, 4);
        // Spread wide enough that some dimensions' std is above 1 and some below (the hinge's
        // both sides), away from its kink.
        let v: Vec<f64> = values(2 * n * w, 5).iter().enumerate().map(|(i, x)| x * if i % 2 == 0 { 3.0 } else { 0.5 }).collect();
        let k = VicRegWeights { invariance: 2.0, variance: 3.0, covariance: 0.5 };
        let z: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(v.clone(), (2 * n, w));
        let got = vicreg_loss(z.clone(), k).array();
        assert!((got - reference(&v, n, w, k)).abs() < 1e-10, "{got} vs {}", reference(&v, n, w, k));
        let g = vicreg_loss(z.leaky_trace(), k).backward();
        let loss = |x: &[f64]| vicreg_loss(dev.tensor_from_vec(x.to_vec(), (2 * n, w)), k).array();
        assert_grad_close("vicreg_loss", &g.get(&z).as_vec(), &v, loss, 40);
    }
}
