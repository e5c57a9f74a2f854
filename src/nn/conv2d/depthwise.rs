//! Direct kernels for depthwise convolutions (one input and one output channel per group, as
//! in MobileNet), where im2col + GEMM would run one 1-row GEMM per channel. Parallel over
//! (image, channel) planes; the weight gradient is summed per channel over images in order,
//! so results do not depend on the thread count.

use rayon::prelude::*;

use super::cpu_kernel::ConvGeom;
use crate::nn::gemm::Real;

/// Whether the geometry is depthwise (groups = in = out channels).
pub fn applicable(g: &ConvGeom) -> bool {
    g.groups == g.c_in && g.c_out == g.c_in
}

/// Calls `f(oy, ox, iy, ix, tap)` for every in-bounds (output pixel, kernel tap) pair.
#[inline]
fn for_each_tap(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    for oy in 0..g.oh {
        for ky in 0..g.k {
            let iy = (oy * g.stride + ky * g.dil) as isize - g.pad as isize;
            if iy < 0 || iy >= g.h as isize {
                continue;
            }
            for ox in 0..g.ow {
                for kx in 0..g.k {
                    let ix = (ox * g.stride + kx * g.dil) as isize - g.pad as isize;
                    if ix >= 0 && ix < g.w as isize {
                        f(oy, ox, iy as usize, ix as usize, ky * g.k + kx);
                    }
                }
            }
        }
    }
}

/// y = depthwise_conv(x, w), overwriting `y`.
pub fn forward<E: Real>(g: &ConvGeom, x: &[E], w: &[E], y: &mut [E]) {
    let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
    y.par_chunks_mut(ohw).zip(x.par_chunks(hw)).enumerate().for_each(|(plane, (yp, xp))| {
        let wc = &w[(plane % g.c_in) * kk..][..kk];
        yp.fill(E::zero());
        for_each_tap(g, |oy, ox, iy, ix, t| yp[oy * g.ow + ox] += wc[t] * xp[iy * g.w + ix]);
    });
}

/// Adds the input gradient into `dx` (when given) and the weight gradient into `dw`.
pub fn backward<E: Real>(g: &ConvGeom, x: &[E], w: &[E], dy: &[E], dx: Option<&mut [E]>, dw: &mut [E]) {
    let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
    if let Some(dx) = dx {
        dx.par_chunks_mut(hw).zip(dy.par_chunks(ohw)).enumerate().for_each(|(plane, (dxp, dyp))| {
            let wc = &w[(plane % g.c_in) * kk..][..kk];
            for_each_tap(g, |oy, ox, iy, ix, t| dxp[iy * g.w + ix] += wc[t] * dyp[oy * g.ow + ox]);
        });
    }
    let sums: Vec<Vec<E>> = (0..g.c_in)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![E::zero(); kk];
            for n in 0..g.batch {
                let plane = n * g.c_in + c;
                let (xp, dyp) = (&x[plane * hw..][..hw], &dy[plane * ohw..][..ohw]);
                for_each_tap(g, |oy, ox, iy, ix, t| acc[t] += dyp[oy * g.ow + ox] * xp[iy * g.w + ix]);
            }
            acc
        })
        .collect();
    for (c, acc) in sums.into_iter().enumerate() {
        dw[c * kk..][..kk].iter_mut().zip(acc).for_each(|(d, a)| *d += a);
    }
}
