//! CPU kernels of 2-D max and average pooling on NCHW data, parallel over (image, channel)
//! planes.

use rayon::prelude::*;

use crate::nn::gemm::Real;

/// Plane geometry of a pooling call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl PoolGeom {
    /// The geometry, or `None` when the window does not fit the padded input (or padding is
    /// more than half the window, as PyTorch also refuses).
    pub fn new(planes: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Option<Self> {
        if k == 0 || stride == 0 || 2 * pad > k || h + 2 * pad < k || w + 2 * pad < k {
            return None;
        }
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        Some(PoolGeom { planes, h, w, k, stride, pad, oh, ow })
    }
    fn window(&self, o: usize, len: usize) -> (usize, usize) {
        let start = (o * self.stride) as isize - self.pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + self.k as isize) as usize).min(len);
        (lo, hi)
    }
}

/// Max pooling forward; `arg` receives the in-plane index of each maximum, for the backward.
pub fn max_forward<E: Real>(g: &PoolGeom, x: &[E], y: &mut [E], arg: &mut [u32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    x.par_chunks(hw).zip(y.par_chunks_mut(ohw)).zip(arg.par_chunks_mut(ohw)).for_each(|((xp, yp), ap)| {
        for oy in 0..g.oh {
            let (y0, y1) = g.window(oy, g.h);
            for ox in 0..g.ow {
                let (x0, x1) = g.window(ox, g.w);
                let (mut best, mut at) = (E::neg_infinity(), y0 * g.w + x0);
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let v = xp[iy * g.w + ix];
                        if v > best || v.is_nan() {
                            best = v;
                            at = iy * g.w + ix;
                        }
                    }
                }
                yp[oy * g.ow + ox] = best;
                ap[oy * g.ow + ox] = at as u32;
            }
        }
    });
}

/// Max pooling backward: routes each output gradient to its maximum.
pub fn max_backward<E: Real>(g: &PoolGeom, arg: &[u32], dy: &[E], dx: &mut [E]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    dx.par_chunks_mut(hw).zip(dy.par_chunks(ohw)).zip(arg.par_chunks(ohw)).for_each(|((dxp, dyp), ap)| {
        for (d, &a) in dyp.iter().zip(ap) {
            dxp[a as usize] += *d;
        }
    });
}

/// Average pooling forward; padding counts in the divisor (PyTorch's `count_include_pad`).
pub fn avg_forward<E: Real>(g: &PoolGeom, x: &[E], y: &mut [E]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let norm = E::one() / E::from(g.k * g.k).unwrap();
    x.par_chunks(hw).zip(y.par_chunks_mut(ohw)).for_each(|(xp, yp)| {
        for oy in 0..g.oh {
            let (y0, y1) = g.window(oy, g.h);
            for ox in 0..g.ow {
                let (x0, x1) = g.window(ox, g.w);
                let s: E = (y0..y1).flat_map(|iy| xp[iy * g.w + x0..iy * g.w + x1].iter().copied()).sum();
                yp[oy * g.ow + ox] = s * norm;
            }
        }
    });
}

/// Average pooling backward.
pub fn avg_backward<E: Real>(g: &PoolGeom, dy: &[E], dx: &mut [E]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let norm = E::one() / E::from(g.k * g.k).unwrap();
    dx.par_chunks_mut(hw).zip(dy.par_chunks(ohw)).for_each(|(dxp, dyp)| {
        for oy in 0..g.oh {
            let (y0, y1) = g.window(oy, g.h);
            for ox in 0..g.ow {
                let (x0, x1) = g.window(ox, g.w);
                let d = dyp[oy * g.ow + ox] * norm;
                for iy in y0..y1 {
                    dxp[iy * g.w + x0..iy * g.w + x1].iter_mut().for_each(|v| *v += d);
                }
            }
        }
    });
}
