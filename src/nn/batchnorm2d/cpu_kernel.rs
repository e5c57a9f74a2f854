//! CPU kernels of 2-D batch normalisation on NCHW data: one pass for per-(image, channel)
//! sums, a fixed-order reduction over images (so results do not depend on the thread count),
//! and one pass to normalise, all parallel over images.

use rayon::prelude::*;

use crate::nn::gemm::Real;
use crate::nn::simd;

/// Sizes of a call: `n` images of `c` channels of `hw` pixels.
#[derive(Clone, Copy, Debug)]
pub struct BnGeom {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

/// Lanes of the per-channel sums: independent f64 accumulators (one AVX-512 register), so
/// the additions do not wait on each other; summed in a fixed order at the end.
const LANES: usize = 8;

/// Sums of `f(a[i], b[i])` over a slice, in f64: element i goes to lane i % LANES.
#[inline(always)]
fn lane_sums<E: Real>(a: &[E], b: &[E], f: &impl Fn(E, E) -> (f64, f64)) -> (f64, f64) {
    let (mut s0, mut s1) = ([0.0f64; LANES], [0.0f64; LANES]);
    let whole = a.len() / LANES * LANES;
    for (ca, cb) in a[..whole].chunks_exact(LANES).zip(b[..whole].chunks_exact(LANES)) {
        for j in 0..LANES {
            let (u, v) = f(ca[j], cb[j]);
            s0[j] += u;
            s1[j] += v;
        }
    }
    for (j, (&x, &y)) in a[whole..].iter().zip(&b[whole..]).enumerate() {
        let (u, v) = f(x, y);
        s0[j] += u;
        s1[j] += v;
    }
    (s0.iter().sum(), s1.iter().sum())
}

/// Per-channel sums of `f(a, b)` over all images and pixels, accumulated in f64.
fn channel_sums<E: Real>(g: &BnGeom, a: &[E], b: &[E], f: impl Fn(E, E) -> (f64, f64) + Sync) -> (Vec<f64>, Vec<f64>) {
    let per_image: Vec<Vec<(f64, f64)>> = a
        .par_chunks(g.c * g.hw)
        .zip(b.par_chunks(g.c * g.hw))
        .map(|(ai, bi)| {
            simd::run(
                #[inline(always)]
                || (0..g.c).map(|ch| lane_sums(&ai[ch * g.hw..][..g.hw], &bi[ch * g.hw..][..g.hw], &f)).collect(),
            )
        })
        .collect();
    let mut s0 = vec![0.0; g.c];
    let mut s1 = vec![0.0; g.c];
    for img in per_image {
        for (ch, (u, v)) in img.into_iter().enumerate() {
            s0[ch] += u;
            s1[ch] += v;
        }
    }
    (s0, s1)
}

/// y = x * a[c] + b[c] (then max(0, y) when `relu`), parallel over images.
fn affine<E: Real>(g: &BnGeom, x: &[E], a: &[E], b: &[E], relu: bool, y: &mut [E]) {
    y.par_chunks_mut(g.c * g.hw).zip(x.par_chunks(g.c * g.hw)).for_each(|(yi, xi)| {
        simd::run(
            #[inline(always)]
            || {
                for ch in 0..g.c {
                    let (s, t) = (a[ch], b[ch]);
                    let (yo, xs) = (&mut yi[ch * g.hw..][..g.hw], &xi[ch * g.hw..][..g.hw]);
                    if relu {
                        yo.iter_mut().zip(xs).for_each(|(o, &v)| *o = (v * s + t).max(E::zero()));
                    } else {
                        yo.iter_mut().zip(xs).for_each(|(o, &v)| *o = v * s + t);
                    }
                }
            },
        )
    });
}

/// The per-channel factors (a, b) with y = x * a + b.
fn factors<E: Real>(g: &BnGeom, mean: &[f64], var: &[f64], eps: f64, scale: &[E], bias: &[E]) -> (Vec<E>, Vec<E>) {
    let a: Vec<E> = (0..g.c).map(|ch| scale[ch] * E::from(1.0 / (var[ch] + eps).sqrt()).unwrap()).collect();
    let b: Vec<E> = (0..g.c).map(|ch| bias[ch] - a[ch] * E::from(mean[ch]).unwrap()).collect();
    (a, b)
}

/// Sums over the ranks of synchronised batch norm, in place (nothing on one process).
pub type Reduce<'a> = &'a dyn Fn(&mut [f64]);

/// Batch statistics of a training forward: per-channel mean and biased variance, and the
/// values per channel they are over. `reduce` sums the per-channel sums (and the count) over
/// ranks first: synchronised batch norm.
pub fn batch_stats<E: Real>(g: &BnGeom, x: &[E], reduce: Reduce) -> (Vec<f64>, Vec<f64>, f64) {
    let (s, sq) = channel_sums(g, x, x, |v, _| {
        let v = v.to_f64().unwrap();
        (v, v * v)
    });
    let mut all: Vec<f64> = s.into_iter().chain(sq).chain([(g.n * g.hw) as f64]).collect();
    reduce(&mut all);
    let m = all[2 * g.c];
    let (s, sq) = all[..2 * g.c].split_at(g.c);
    let mean: Vec<f64> = s.iter().map(|v| v / m).collect();
    let var = sq.iter().zip(&mean).map(|(q, mu)| (q / m - mu * mu).max(0.0)).collect();
    (mean, var, m)
}

/// Normalises with the given per-channel mean and variance, then scales and shifts, then
/// applies ReLU when `relu`.
#[allow(clippy::too_many_arguments)]
pub fn normalize<E: Real>(
    g: &BnGeom,
    x: &[E],
    mean: &[f64],
    var: &[f64],
    eps: f64,
    scale: &[E],
    bias: &[E],
    relu: bool,
    y: &mut [E],
) {
    let (a, b) = factors(g, mean, var, eps, scale, bias);
    affine(g, x, &a, &b, relu, y);
}

/// Backward of a training forward that used batch statistics `mean`, `var` over `m` values
/// per channel: adds into `dx`, `dscale`, `dbias`. `reduce` sums the per-channel sums of the
/// gradient over ranks (synchronised batch norm: `dx` is then the global batch's; `dscale`
/// and `dbias` stay this rank's part, summed with the other parameters' gradients). With `relu`, the output gradient is first masked where the forward's
/// output was zero (recomputed from `x`, so the output need not be kept); `dy` is then
/// modified in place.
#[allow(clippy::too_many_arguments)]
pub fn backward<E: Real>(
    g: &BnGeom,
    x: &[E],
    mean: &[f64],
    var: &[f64],
    eps: f64,
    scale: &[E],
    bias: &[E],
    relu: bool,
    dy: &mut [E],
    dx: &mut [E],
    dscale: &mut [E],
    dbias: &mut [E],
    m: f64,
    reduce: Reduce,
) {
    if relu {
        let (a, b) = factors(g, mean, var, eps, scale, bias);
        dy.par_chunks_mut(g.c * g.hw).zip(x.par_chunks(g.c * g.hw)).for_each(|(di, xi)| {
            simd::run(
                #[inline(always)]
                || {
                    for ch in 0..g.c {
                        let (s, t) = (a[ch], b[ch]);
                        let r = ch * g.hw..(ch + 1) * g.hw;
                        for (d, &v) in di[r.clone()].iter_mut().zip(&xi[r]) {
                            if v * s + t <= E::zero() {
                                *d = E::zero();
                            }
                        }
                    }
                },
            )
        });
    }
    let dy: &[E] = dy;
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    // sum(dy) and sum(dy * x) per channel; sum(dy * xhat) = invstd * (sum(dy x) - mean sum(dy)).
    let (sdy, sdyx) = channel_sums(g, dy, x, |d, v| {
        let d = d.to_f64().unwrap();
        (d, d * v.to_f64().unwrap())
    });
    for ch in 0..g.c {
        dscale[ch] += E::from(invstd[ch] * (sdyx[ch] - mean[ch] * sdy[ch])).unwrap();
        dbias[ch] += E::from(sdy[ch]).unwrap();
    }
    let mut all: Vec<f64> = sdy.into_iter().chain(sdyx).collect();
    reduce(&mut all);
    let (sdy, sdyx) = all.split_at(g.c);
    // dx = scale * invstd * (dy - sdy / m - xhat * sdyxhat / m), written as dy * k + x * u + v.
    let mut k = vec![E::zero(); g.c];
    let mut u = vec![E::zero(); g.c];
    let mut v = vec![E::zero(); g.c];
    for ch in 0..g.c {
        let sdyxhat = invstd[ch] * (sdyx[ch] - mean[ch] * sdy[ch]);
        let kk = scale[ch].to_f64().unwrap() * invstd[ch];
        let uu = -kk * invstd[ch] * sdyxhat / m;
        k[ch] = E::from(kk).unwrap();
        u[ch] = E::from(uu).unwrap();
        v[ch] = E::from(-kk * sdy[ch] / m - uu * mean[ch]).unwrap();
    }
    dx.par_chunks_mut(g.c * g.hw).zip(dy.par_chunks(g.c * g.hw)).zip(x.par_chunks(g.c * g.hw)).for_each(
        |((dxi, dyi), xi)| {
            simd::run(
                #[inline(always)]
                || {
                    for ch in 0..g.c {
                        let (kk, uu, vv) = (k[ch], u[ch], v[ch]);
                        let r = ch * g.hw..(ch + 1) * g.hw;
                        for ((o, &d), &xv) in dxi[r.clone()].iter_mut().zip(&dyi[r.clone()]).zip(&xi[r]) {
                            *o += d * kk + xv * uu + vv;
                        }
                    }
                },
            )
        },
    );
}
