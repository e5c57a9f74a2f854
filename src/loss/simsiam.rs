//! SimSiam's loss (Chen and He 2021, eq. 1-2): the negative cosine similarity between each
//! view's prediction and the other view's projection under stop-gradient, symmetrised.

use dfdx::prelude::*;

use super::cross_view::mean_cross_view_cosine;

/// SimSiam's loss for V = 2 views of N images: predictions `p` [2N, W] and projections `z`
/// [2N, W] taken as constants (the stop-gradient: `z` is a tensor without a tape, so by its
/// type no gradient can reach it), view v of image k at row v N + k:
/// L = D(p_1, z_2) / 2 + D(p_2, z_1) / 2 with D(p, z) = -cos(p, z) averaged over images, so
/// L lies in [-1, 1] and reaches -1 when predictions match. Norms are clamped at 1e-12.
pub fn simsiam_loss<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev>>(p: Tensor<(usize, W), E, Dev, T>, z: &Tensor<(usize, W), E, Dev>) -> Tensor<Rank0, E, Dev, T> {
    mean_cross_view_cosine(p, z).negate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    #[test]
    fn matches_a_hand_computed_value() {
        // The case of `cross_view`: cosines 0 and -1 (view 1), 1/sqrt 2 and 1 (view 2).
        let (p, z) = crate::loss::cross_view::tests::hand_case();
        let d1 = -(0.0 + -1.0) / 2.0;
        let d2 = -(std::f64::consts::FRAC_1_SQRT_2 + 1.0) / 2.0;
        let want = d1 / 2.0 + d2 / 2.0;
        let got = simsiam_loss(p, &z).array();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev: Cpu = Default::default();
        let (rows, w) = (6, 5);
        let (pv, zv) = (values(rows * w, 7), values(rows * w, 8));
        let p: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(pv.clone(), (rows, w));
        let z: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(zv, (rows, w));
        let g = simsiam_loss(p.leaky_trace(), &z).backward();
        let loss = |v: &[f64]| simsiam_loss(dev.tensor_from_vec(v.to_vec(), (rows, w)), &z).array();
        assert_grad_close("simsiam_loss", &g.get(&p).as_vec(), &pv, loss, 30);
    }
}
