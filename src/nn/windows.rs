//! Sliding windows written with dfdx's device-generic tensor ops, for the convolution and
//! pooling kernels of devices other than the CPU (CUDA): the input becomes a table of pixels
//! (one row per pixel, plus one row standing for the padding) and one `gather` of its rows
//! lays out every window. dfdx's autodiff supplies the backward (gather scatters with
//! additions), so these need no hand-written gradient; tests compare the kernels built on them
//! with the CPU kernels.
//!
//! dfdx 0.13's `slice` backward *assigns* its gradient instead of adding it, so overlapping
//! slices of one tensor (the obvious way to cut windows) lose gradient; gather does not.

use dfdx::prelude::*;

/// A (batch, channels, height, width) tensor with runtime dimensions.
pub type Map<E, D, T> = Tensor<(usize, usize, usize, usize), E, D, T>;
/// Windows as (K² · OH · OW, B · C): row (k, y, x) holds pixel offset k of output (y, x) for
/// every image and channel.
pub type Windows<E, D, T> = Tensor<(usize, usize), E, D, T>;

/// Window geometry along one spatial axis.
#[derive(Clone, Copy, Debug)]
pub struct Axis1 {
    pub size: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

impl Axis1 {
    /// Output positions, or `None` when the (dilated) kernel does not fit.
    pub fn out(&self) -> Option<usize> {
        let span = self.dilation * (self.kernel - 1) + 1;
        (self.size + 2 * self.padding).checked_sub(span).map(|v| v / self.stride + 1)
    }
    /// The input position of kernel tap `k` at output `o`, or `None` in the padding.
    fn source(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride + k * self.dilation).checked_sub(self.padding).filter(|&i| i < self.size)
    }
}

/// Row of the pixel table for every (tap i, tap j, output y, output x); `h.size * w.size`
/// (the padding row) where the window reaches outside the image.
fn window_rows(h: Axis1, w: Axis1) -> Vec<usize> {
    let (oh, ow) = (h.out().expect("window fits"), w.out().expect("window fits"));
    let pad = h.size * w.size;
    let mut rows = Vec::with_capacity(h.kernel * w.kernel * oh * ow);
    for i in 0..h.kernel {
        for j in 0..w.kernel {
            for y in 0..oh {
                for x in 0..ow {
                    rows.push(match (h.source(y, i), w.source(x, j)) {
                        (Some(r), Some(c)) => r * w.size + c,
                        _ => pad,
                    });
                }
            }
        }
    }
    rows
}

/// Every window of `x` (B, C, H, W), with `value` in the padding: (K² · OH · OW, B · C).
pub fn windows<E: Dtype, D: Device<E> + TensorFromVec<usize>, T: Tape<E, D>>(
    x: Map<E, D, T>,
    (h, w): (Axis1, Axis1),
    value: E,
) -> Result<Windows<E, D, T>, D::Err> {
    let dev = x.device().clone();
    let (b, c, hh, ww) = *x.shape();
    let table = x.try_permute::<_, Axes4<2, 3, 0, 1>>()?.try_reshape_like(&(hh * ww, b * c))?;
    let pad = dev.try_zeros_like(&(1, b * c))?.try_add(value)?.retaped::<T>();
    let table = (table, pad).try_concat_along(Axis::<0>)?;
    let rows = window_rows(h, w);
    let n = rows.len();
    table.try_gather(dev.try_tensor_from_vec(rows, (n,))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    #[test]
    fn windows_are_laid_out_and_differentiated_correctly() {
        let dev = Cpu::default();
        let shape = (2, 3, 5, 4);
        let xv = values(2 * 3 * 5 * 4, 1);
        let ax = |size, kernel, stride, padding| Axis1 { size, kernel, stride, padding, dilation: 1 };
        let (h, w) = (ax(5, 3, 2, 1), ax(4, 2, 1, 0));
        let (oh, ow) = (h.out().unwrap(), w.out().unwrap());
        assert_eq!((oh, ow), (3, 3));
        let f = |v: &[f64]| windows(dev.tensor_from_vec(v.to_vec(), shape).leaky_trace(), (h, w), -7.0).unwrap();
        let got = f(&xv).as_vec();
        // Direct evaluation.
        for (k, (i, j)) in (0..3).flat_map(|i| (0..2).map(move |j| (i, j))).enumerate() {
            for y in 0..oh {
                for x in 0..ow {
                    for bc in 0..6 {
                        let (r, c) = ((y * 2 + i) as isize - 1, x + j);
                        let want = if r < 0 || r >= 5 { -7.0 } else { xv[bc * 20 + r as usize * 4 + c] };
                        assert_eq!(got[((k * oh + y) * ow + x) * 6 + bc], want);
                    }
                }
            }
        }
        let x = dev.tensor_from_vec(xv.clone(), shape);
        let r = values(got.len(), 2);
        let rt = dev.tensor_from_vec(r.clone(), (got.len() / 6, 6));
        let g = (windows(x.leaky_trace(), (h, w), -7.0).unwrap() * rt).sum().backward();
        let loss = |v: &[f64]| f(v).as_vec().iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        assert_grad_close("windows dx", &g.get(&x).as_vec(), &xv, loss, 120);
    }
}
