//! BYOL's regression loss (Grill et al. 2020, eq. 2): the squared distance between
//! L2-normalised prediction and target, 2 - 2 cos(p, z), symmetrised over the two views.

use dfdx::prelude::*;

use super::cross_view::mean_cross_view_cosine;

/// BYOL's loss for V = 2 views of N images: predictions `p` [2N, W] of the online network and
/// projections `z` [2N, W] of the target network (constants: `z` has no tape, so by its type no gradient reaches the target),
/// view v of image k at row v N + k. Each view's prediction regresses the other view's target:
/// mean over images of (2 - 2 cos(p_1k, z_2k)) + mean of (2 - 2 cos(p_2k, z_1k)), so the loss
/// lies in [0, 8]; the paper's L + L~. Norms are clamped at 1e-12 (PyTorch's F.normalize).
pub fn byol_loss<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev>>(p: Tensor<(usize, W), E, Dev, T>, z: &Tensor<(usize, W), E, Dev>) -> Tensor<Rank0, E, Dev, T> {
    // 2 x (2 - 2 mean cos) over the 2N rows = the sum of the two views' losses.
    (mean_cross_view_cosine(p, z) * E::from_f64(-4.0).unwrap()) + E::from_f64(4.0).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    #[test]
    fn matches_a_hand_computed_value() {
        // The case of `cross_view`: cosines 0 and -1 (view 1), 1/sqrt 2 and 1 (view 2).
        let (p, z) = crate::loss::cross_view::tests::hand_case();
        let loss = byol_loss(p, &z).array();
        let view1 = ((2.0 - 2.0 * 0.0) + (2.0 - 2.0 * -1.0)) / 2.0;
        let view2 = ((2.0 - 2.0 * std::f64::consts::FRAC_1_SQRT_2) + (2.0 - 2.0 * 1.0)) / 2.0;
        assert!((loss - (view1 + view2)).abs() < 1e-12, "{loss} vs {}", view1 + view2);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev: Cpu = Default::default();
        let (rows, w) = (6, 5);
        let (pv, zv) = (values(rows * w, 4), values(rows * w, 5));
        let p: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(pv.clone(), (rows, w));
        let z: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(zv.clone(), (rows, w));
        let g = byol_loss(p.leaky_trace(), &z).backward();
        let loss = |v: &[f64]| byol_loss(dev.tensor_from_vec(v.to_vec(), (rows, w)), &z).array();
        assert_grad_close("byol_loss", &g.get(&p).as_vec(), &pv, loss, 30);
    }
}
