//! What Barlow Twins' and VICReg's losses share: the two views' embeddings split apart, each
//! embedding dimension centred over the batch, the identity mask and the cross-product
//! a^T b of two batches.

use dfdx::prelude::*;

/// The two views of V = 2 views of N images laid out [2N, W] (view v of image k at row
/// v N + k): ([N, W], [N, W]). Panics (a caller's bug) unless there are 2N >= 4 rows.
pub fn split_views<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev> + Merge<T>>(z: Tensor<(usize, W), E, Dev, T>) -> (Tensor<(usize, W), E, Dev, T>, Tensor<(usize, W), E, Dev, T>) {
    let rows = z.shape().0;
    assert!(rows >= 4 && rows % 2 == 0, "a two-view loss needs two views of at least two images, got {rows} rows");
    let n = rows / 2;
    let first = z.retaped::<T>().slice((0..n, ..));
    (first, z.slice((n..rows, ..)))
}

/// `x` [N, W] with each column's batch mean subtracted.
pub fn centred<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev> + Merge<T>>(x: Tensor<(usize, W), E, Dev, T>) -> Tensor<(usize, W), E, Dev, T> {
    let shape = *x.shape();
    let mean = x.retaped::<T>().mean::<(W,), Axis<0>>();
    x - mean.broadcast_like::<_, Axis<0>>(&shape)
}

/// a^T b for `a` [N, W] and `b` [N, W]: [W, W]. Both may carry the tape, and `b` may be `a`
/// itself (a copy with its own identity is taken: dfdx's matmul cannot take one tensor on
/// both sides).
pub fn cross_product<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev> + Merge<T>>(a: Tensor<(usize, W), E, Dev, T>, b: Tensor<(usize, W), E, Dev, T>) -> Tensor<(W, W), E, Dev, T> {
    let at = a.permute::<(W, usize), Axes2<1, 0>>();
    at.matmul(b * E::ONE)
}

/// The [W, W] matrix with `diagonal` on the diagonal and `off` elsewhere.
pub fn diagonal_mask<W: Dim, E: Dtype, Dev: Device<E>>(dev: &Dev, width: W, diagonal: f64, off: f64) -> Tensor<(W, W), E, Dev> {
    let w = width.size();
    let v = (0..w * w).map(|i| E::from_f64(if i / w == i % w { diagonal } else { off }).unwrap()).collect();
    dev.tensor_from_vec(v, (width, width))
}
