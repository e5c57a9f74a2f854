//! The convolution for devices other than the CPU (CUDA), written with dfdx's device-generic
//! tensor ops: im2col as one gather of pixel rows ([`crate::nn::windows`]), then one matrix
//! product (cuBLAS on CUDA) per group. dfdx's autodiff gives the backward. Being
//! generic, it also runs on the CPU, where the tests check it against [`super::cpu_kernel`].

use dfdx::prelude::*;

use crate::nn::windows::{windows, Axis1, Map};

/// Convolution of `x` (B, I, H, W) with `weight` [O, IPG, K, K] (groups = I / IPG), stride
/// `s`, padding `p`, dilation `l`: (B, O, OH, OW). Both arrive taped; panics when the kernel
/// does not fit.
pub fn conv2d<E: Dtype, D: Device<E> + TensorFromVec<usize>, T: Tape<E, D>>(
    x: Map<E, D, T>,
    weight: Map<E, D, T>,
    (s, p, l): (usize, usize, usize),
) -> Result<Map<E, D, T>, D::Err> {
    let (b, i, h, w) = *x.shape();
    let (o, ipg, k, _) = *weight.shape();
    let groups = i / ipg;
    let axis = |size| Axis1 { size, kernel: k, stride: s, padding: p, dilation: l };
    let (ah, aw) = (axis(h), axis(w));
    let (oh, ow) = (ah.out().expect("kernel fits"), aw.out().expect("kernel fits"));
    let kk = k * k;
    let cols = windows(x, (ah, aw), E::default())?.try_reshape_like(&(kk, oh, ow, b, i))?;
    if groups == 1 {
        return dense(cols, weight, (b, i, oh, ow, o, kk));
    }
    if ipg == 1 && o == i {
        // Depthwise: y[b, c] = sum over offsets of window[b, c] * w[c, offset].
        let wk = weight.try_reshape_like(&(o, kk))?.try_permute::<_, Axes2<1, 0>>()?;
        let wk = wk.try_broadcast_like::<_, Axes3<1, 2, 3>>(cols.shape())?;
        let y = cols.try_mul(wk)?.try_sum::<(usize, usize, usize, usize), Axis<0>>()?; // (OH, OW, B, C)
        return y.try_permute::<_, Axes4<2, 3, 0, 1>>()?.try_reshape_like(&(b, o, oh, ow));
    }
    // Other groupings: one dense convolution per group on taped copies, joined along the
    // channels; the histories of the windows and the weight join the result at the end.
    let opg = o / groups;
    let (cols, cols_tape) = cols.split_tape();
    // A copy with its own id: dfdx's slice backward assigns rather than adds, which would
    // overwrite the weight's accumulated gradient.
    let (weight, weight_tape) = weight.try_mul(E::ONE)?.split_tape();
    let mut out: Option<Map<E, D, T>> = None;
    for g in 0..groups {
        let part = cols.retaped::<T>().try_slice((.., .., .., .., g * ipg..(g + 1) * ipg))?;
        let wg = weight.retaped::<T>().try_slice((g * opg..(g + 1) * opg, .., .., ..))?;
        let yg = dense(part, wg, (b, ipg, oh, ow, opg, kk))?;
        out = Some(match out {
            None => yg,
            Some(prev) => (prev, yg).try_concat_along(Axis::<1>)?,
        });
    }
    let (y, tape) = out.expect("at least one group").split_tape();
    Ok(y.put_tape(tape.merge(cols_tape).merge(weight_tape)))
}

/// One dense convolution from its windows `cols` (K², OH, OW, B, C) and weight [O, C, K, K]:
/// (B·OH·OW, C·K²) x (C·K², O), back to (B, O, OH, OW).
fn dense<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    cols: Tensor<(usize, usize, usize, usize, usize), E, D, T>,
    weight: Map<E, D, T>,
    (b, c, oh, ow, o, kk): (usize, usize, usize, usize, usize, usize),
) -> Result<Map<E, D, T>, D::Err> {
    let rows = cols.try_permute::<_, Axes5<3, 1, 2, 4, 0>>()?.try_reshape_like(&(b * oh * ow, c * kk))?;
    let wt = weight.try_reshape_like(&(o, c * kk))?.try_permute::<_, Axes2<1, 0>>()?;
    let y = rows.try_matmul(wt)?; // (B·OH·OW, O)
    y.try_reshape_like(&(b, oh, ow, o))?.try_permute::<_, Axes4<0, 3, 1, 2>>()?.try_reshape_like(&(b, o, oh, ow))
}
