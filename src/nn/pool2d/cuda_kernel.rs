//! Pooling for devices other than the CPU (CUDA), written with dfdx's device-generic tensor
//! ops: the windows of [`crate::nn::windows`] reduced by max or mean. dfdx's autodiff gives the
//! backward; the tests check it against [`super::cpu_kernel`] on the CPU.
//!
//! One difference: where a window holds its maximum twice, dfdx's max passes the gradient to
//! every copy, the CPU kernel (and PyTorch) to the first only. After a ReLU the usual tie is at
//! zero, whose gradient the ReLU stops anyway.

use dfdx::prelude::*;

use super::PoolKind;
use crate::nn::windows::{windows, Axis1, Map};

/// Pools `x` (B, C, H, W) with window `k`, stride `s`, padding `p` (never the maximum; counted
/// in the mean's divisor, as PyTorch's default).
pub fn pool2d<E: Dtype, D: Device<E> + TensorFromVec<usize>, T: Tape<E, D>>(
    x: Map<E, D, T>,
    kind: PoolKind,
    (k, s, p): (usize, usize, usize),
) -> Result<Map<E, D, T>, D::Err> {
    let (b, c, h, w) = *x.shape();
    let axis = |size| Axis1 { size, kernel: k, stride: s, padding: p, dilation: 1 };
    let (ah, aw) = (axis(h), axis(w));
    let (oh, ow) = (ah.out().expect("window fits"), aw.out().expect("window fits"));
    let fill = match kind {
        PoolKind::Max => E::from_f64(f64::NEG_INFINITY).expect("float type"),
        PoolKind::Avg => E::default(),
    };
    let cols = windows(x, (ah, aw), fill)?.try_reshape_like(&(k * k, oh * ow * b * c))?;
    let y = match kind {
        PoolKind::Max => cols.try_max::<(usize,), Axis<0>>()?,
        PoolKind::Avg => cols.try_sum::<(usize,), Axis<0>>()?.try_mul(E::from_f64(1.0 / (k * k) as f64).expect("float type"))?,
    };
    y.try_reshape_like(&(oh, ow, b, c))?.try_permute::<_, Axes4<2, 3, 0, 1>>()?.try_reshape_like(&(b, c, oh, ow))
}
