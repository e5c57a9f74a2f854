//! CPU kernels of 2-D batch normalisation on NCHW data: one pass for per-(image, channel)
//! sums, a fixed-order reduction over images (so results do not depend on the thread count),
//! and one pass to normalise, all parallel over images.

use rayon::prelude::*;

use crate::nn::gemm::Real;
use crate::nn::tape::Store;
use crate::simd;

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

/// `(sum a, sum a * b)` over two slices, in f64: element i goes to lane i % LANES, the lanes
/// are summed in order at the end. On f32 at the AVX-512 and AVX2 levels the whole lanes are
/// computed with intrinsics (the compiler leaves this loop scalar), the same operations in the
/// same order, so the same bits at every level.
#[inline(always)]
fn sum_and_dot<E: Real>(a: &[E], b: &[E], at: simd::Level) -> (f64, f64) {
    let whole = a.len() / LANES * LANES;
    let (mut s0, mut s1) = lanes_f32(&a[..whole], &b[..whole], at).unwrap_or_else(|| lanes(&a[..whole], &b[..whole]));
    for (j, (&x, &y)) in a[whole..].iter().zip(&b[whole..]).enumerate() {
        let (x, y) = (x.to_f64().unwrap_or(f64::NAN), y.to_f64().unwrap_or(f64::NAN));
        s0[j] += x;
        s1[j] += x * y;
    }
    (s0.iter().sum(), s1.iter().sum())
}

/// The lanes of [`sum_and_dot`] over whole lanes, portably.
#[inline(always)]
fn lanes<E: Real>(a: &[E], b: &[E]) -> ([f64; LANES], [f64; LANES]) {
    let (mut s0, mut s1) = ([0.0f64; LANES], [0.0f64; LANES]);
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for j in 0..LANES {
            let (x, y) = (ca[j].to_f64().unwrap_or(f64::NAN), cb[j].to_f64().unwrap_or(f64::NAN));
            s0[j] += x;
            s1[j] += x * y;
        }
    }
    (s0, s1)
}

/// The lanes of [`sum_and_dot`] by intrinsics, where `E` is f32 and `at` has them.
#[inline(always)]
fn lanes_f32<E: Real>(a: &[E], b: &[E], at: simd::Level) -> Option<([f64; LANES], [f64; LANES])> {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() {
        // SAFETY: E is f32, so the slices are f32 slices of the same length.
        let (a, b) = unsafe {
            (std::slice::from_raw_parts(a.as_ptr().cast::<f32>(), a.len()), std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len()))
        };
        // SAFETY: `simd::within` checked that the CPU has the instructions.
        return match simd::within(at) {
            simd::Level::Avx512 => Some(unsafe { x86::lanes_avx512(a, b) }),
            simd::Level::Avx2 => Some(unsafe { x86::lanes_avx2(a, b) }),
            simd::Level::Baseline => None,
        };
    }
    let _ = (a, b, at);
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// [`super::lanes`] on f32 with one 8-lane f64 register a sum (a multiply, then an add:
    /// no FMA, as the portable loop).
    #[target_feature(enable = "avx512f")]
    pub fn lanes_avx512(a: &[f32], b: &[f32]) -> ([f64; LANES], [f64; LANES]) {
        let (mut s0, mut s1) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            // SAFETY: each chunk holds 8 f32.
            let (x, y) = unsafe { (_mm512_cvtps_pd(_mm256_loadu_ps(ca.as_ptr())), _mm512_cvtps_pd(_mm256_loadu_ps(cb.as_ptr()))) };
            s0 = _mm512_add_pd(s0, x);
            s1 = _mm512_add_pd(s1, _mm512_mul_pd(x, y));
        }
        let (mut o0, mut o1) = ([0.0; LANES], [0.0; LANES]);
        // SAFETY: each array holds 8 f64.
        unsafe {
            _mm512_storeu_pd(o0.as_mut_ptr(), s0);
            _mm512_storeu_pd(o1.as_mut_ptr(), s1);
        }
        (o0, o1)
    }

    /// [`super::lanes`] on f32 with two 4-lane f64 registers a sum.
    #[target_feature(enable = "avx2")]
    pub fn lanes_avx2(a: &[f32], b: &[f32]) -> ([f64; LANES], [f64; LANES]) {
        let (mut s0lo, mut s0hi, mut s1lo, mut s1hi) = (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
        for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            // SAFETY: each chunk holds 8 f32.
            let (xlo, xhi, ylo, yhi) = unsafe {
                (
                    _mm256_cvtps_pd(_mm_loadu_ps(ca.as_ptr())),
                    _mm256_cvtps_pd(_mm_loadu_ps(ca.as_ptr().add(4))),
                    _mm256_cvtps_pd(_mm_loadu_ps(cb.as_ptr())),
                    _mm256_cvtps_pd(_mm_loadu_ps(cb.as_ptr().add(4))),
                )
            };
            s0lo = _mm256_add_pd(s0lo, xlo);
            s0hi = _mm256_add_pd(s0hi, xhi);
            s1lo = _mm256_add_pd(s1lo, _mm256_mul_pd(xlo, ylo));
            s1hi = _mm256_add_pd(s1hi, _mm256_mul_pd(xhi, yhi));
        }
        let (mut o0, mut o1) = ([0.0; LANES], [0.0; LANES]);
        // SAFETY: each array holds 8 f64.
        unsafe {
            _mm256_storeu_pd(o0.as_mut_ptr(), s0lo);
            _mm256_storeu_pd(o0.as_mut_ptr().add(4), s0hi);
            _mm256_storeu_pd(o1.as_mut_ptr(), s1lo);
            _mm256_storeu_pd(o1.as_mut_ptr().add(4), s1hi);
        }
        (o0, o1)
    }
}

/// Per-channel `(sum a, sum a * b)` over all images and pixels, accumulated in f64.
fn channel_sums<E: Real>(g: &BnGeom, a: &[E], b: &[E]) -> (Vec<f64>, Vec<f64>) {
    let per_image: Vec<Vec<(f64, f64)>> = a
        .par_chunks(g.c * g.hw)
        .zip(b.par_chunks(g.c * g.hw))
        .map(|(ai, bi)| {
            let at = simd::level();
            (0..g.c).map(|ch| sum_and_dot(&ai[ch * g.hw..][..g.hw], &bi[ch * g.hw..][..g.hw], at)).collect()
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
                        for (o, &v) in yo.iter_mut().zip(xs) {
                            *o = (v * s + t).max(E::zero());
                        }
                    } else {
                        for (o, &v) in yo.iter_mut().zip(xs) {
                            *o = v * s + t;
                        }
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
    let (s, sq) = channel_sums(g, x, x);
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
/// per channel: stores the input gradient in `dx` as `store` says, adds into `dscale` and
/// `dbias`. `reduce` sums the per-channel sums of the gradient over ranks (synchronised batch
/// norm: `dx` is then the global batch's; `dscale` and `dbias` stay this rank's part, summed
/// with the other parameters' gradients). With `relu`, the output gradient is first masked where the forward's
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
    store: Store,
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
    let (sdy, sdyx) = channel_sums(g, dy, x);
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
                        let values = dxi[r.clone()].iter_mut().zip(&dyi[r.clone()]).zip(&xi[r]);
                        match store {
                            Store::Add => values.for_each(|((o, &d), &xv)| *o += d * kk + xv * uu + vv),
                            Store::Write => values.for_each(|((o, &d), &xv)| *o = d * kk + xv * uu + vv),
                        }
                    }
                },
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_input_gradient_is_the_one_added_into_zeros() {
        let g = BnGeom { n: 3, c: 4, hw: 10 };
        let x: Vec<f32> = (0..120).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let (mean, var, m) = batch_stats(&g, &x, &|_: &mut [f64]| {});
        let (scale, bias) = ([0.5, -1.0, 2.0, 1.5], [0.1, 0.2, -0.3, 0.0]);
        for relu in [false, true] {
            let run = |dx: &mut [f32], store: Store| {
                let mut dy: Vec<f32> = (0..120).map(|i| ((i * 53 % 89) as f32 - 44.0) / 23.0).collect();
                let (mut ds, mut db) = ([0.0; 4], [0.0; 4]);
                backward(&g, &x, &mean, &var, 1e-5, &scale, &bias, relu, &mut dy, dx, store, &mut ds, &mut db, m, &|_: &mut [f64]| {});
            };
            let (mut written, mut added) = (vec![f32::NAN; 120], vec![0.0; 120]);
            run(&mut written, Store::Write);
            run(&mut added, Store::Add);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&written), bits(&added), "relu {relu}");
        }
    }

    #[test]
    fn sums_are_the_same_bits_at_every_level() {
        let a: Vec<f32> = (0..1000).map(|i| ((i * 7919 % 1009) as f32 - 500.0) / 37.0).collect();
        let b: Vec<f32> = (0..1000).map(|i| ((i * 104729 % 997) as f32 - 400.0) / 53.0).collect();
        for n in [0, 5, 8, 49, 196, 1000] {
            let want = sum_and_dot(&a[..n], &b[..n], simd::Level::Baseline);
            for at in simd::available() {
                let got = sum_and_dot(&a[..n], &b[..n], at);
                assert_eq!((got.0.to_bits(), got.1.to_bits()), (want.0.to_bits(), want.1.to_bits()), "{at:?}, {n} values");
            }
            let exact: (f64, f64) = a[..n].iter().zip(&b[..n]).fold((0.0, 0.0), |(s, d), (&x, &y)| (s + x as f64, d + x as f64 * y as f64));
            assert!((want.0 - exact.0).abs() < 1e-9 && (want.1 - exact.1).abs() < 1e-9, "{n} values");
        }
    }
}
