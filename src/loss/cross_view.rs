//! What BYOL's and SimSiam's losses share: each view's prediction compared with the other
//! view's target by cosine similarity, the target a constant (stop-gradient).

use dfdx::prelude::*;

/// The mean, over the 2N rows of V = 2 views of N images, of cos(p_r, z_r'), where r' is the
/// other view of the same image: predictions `p` [2N, W] (view v of image k at row v N + k)
/// against targets `z` [2N, W], constants (no gradient reaches them). Norms are clamped at
/// 1e-12 (PyTorch's F.normalize).
pub fn mean_cross_view_cosine<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev>>(p: Tensor<(usize, W), E, Dev, T>, z: &Tensor<(usize, W), E, Dev>) -> Tensor<Rank0, E, Dev, T> {
    let (rows, width) = *p.shape();
    assert!(rows >= 2 && rows % 2 == 0, "a cross-view loss needs two views of each image (an even number of rows), got {rows}");
    assert_eq!(z.shape().0, rows, "a cross-view loss: predictions and targets differ in rows");
    let n = rows / 2;
    // Row r of the target the prediction at row r is compared with: the other view of the same
    // image, the halves swapped on the device.
    let other = (z.clone().slice((n.., ..)), z.clone().slice((..n, ..))).concat_along(Axis::<0>);
    let other = other.reshape_like(&(rows, width));
    cosine_rows(p, other).mean()
}

/// Cosine similarity of each row of `a` with the same row of the constant `b`: [N].
fn cosine_rows<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev>>(a: Tensor<(usize, W), E, Dev, T>, b: Tensor<(usize, W), E, Dev>) -> Tensor<(usize,), E, Dev, T> {
    let shape = *a.shape();
    let na = a.retaped::<T>().square().sum::<(usize,), Axis<1>>().sqrt().clamp(1e-12, f64::MAX);
    let nb = b.clone().square().sum::<(usize,), Axis<1>>().sqrt().clamp(1e-12, f64::MAX);
    let an = a / na.broadcast_like::<_, Axis<1>>(&shape);
    let bn = b / nb.broadcast_like::<_, Axis<1>>(&shape);
    (an * bn).sum::<(usize,), Axis<1>>()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two images, width 2; predictions p (views 1 then 2) and targets z.
    /// Image 0: p_1 = (1, 0) against z_2 = (0, 3): cos 0; p_2 = (2, 2) against z_1 = (1, 0): cos 1/sqrt 2.
    /// Image 1: p_1 = (0, 1) against z_2 = (0, -1): cos -1; p_2 = (3, 4) against z_1 = (3, 4): cos 1.
    pub(crate) fn hand_case() -> (Tensor<(usize, usize), f64, Cpu>, Tensor<(usize, usize), f64, Cpu>) {
        let dev: Cpu = Default::default();
        let p = dev.tensor_from_vec(vec![1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 4.0], (4, 2));
        let z = dev.tensor_from_vec(vec![1.0, 0.0, 3.0, 4.0, 0.0, 3.0, 0.0, -1.0], (4, 2));
        (p, z)
    }

    #[test]
    fn pairs_each_view_with_the_other() {
        let (p, z) = hand_case();
        let want = (0.0 - 1.0 + std::f64::consts::FRAC_1_SQRT_2 + 1.0) / 4.0;
        let got = mean_cross_view_cosine(p, &z).array();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
