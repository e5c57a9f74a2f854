//! A bounds-checked matrix multiply over the `gemm` crate, single-threaded: the kernels
//! parallelise over images themselves, which keeps results independent of the thread count.
//! Generic over f32 (training) and f64 (gradient checks), so both run the same code.
//!
//! Which kernels: gemm picks the widest the CPU has at run time (AVX-512 with the default
//! `avx512` feature, else AVX2 with FMA). `SSL_CPU_ISA=avx2` in the environment makes every
//! product take gemm's AVX2 kernels instead, on any x86-64 CPU, so the path AVX2-only machines
//! run is tested, and measured, on an AVX-512 one without another build ([`crate::simd::kernels`]).

use crate::simd::{kernels, Kernels};

/// The float types the project's kernels run on.
pub trait Real:
    num_traits::Float + std::ops::AddAssign + std::iter::Sum + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// `dst = lhs rhs`, or `dst += lhs rhs` when `read_dst`, by gemm's AVX2 (FMA) kernels, with
    /// gemm's arguments (column and row strides of each matrix), every stride non-negative;
    /// `false` when the CPU lacks AVX2 and FMA (nothing was done).
    ///
    /// # Safety
    /// The pointers and strides describe matrices inside live allocations, `dst` not aliased.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_avx2(m: usize, n: usize, k: usize, dst: *mut Self, dst_cs: isize, dst_rs: isize, read_dst: bool, lhs: *const Self, lhs_cs: isize, lhs_rs: isize, rhs: *const Self, rhs_cs: isize, rhs_rs: isize) -> bool;
}

/// [`Real::gemm_avx2`] for one float type from its crate's FMA microkernels (gemm-f32 or
/// gemm-f64), `$lanes` values to a 256-bit register, called the way gemm 0.19 calls them.
macro_rules! real_with_avx2_gemm {
    ($t:ty, $kernels:path, $lanes:expr) => {
        impl Real for $t {
            #[allow(clippy::too_many_arguments)]
            unsafe fn gemm_avx2(m: usize, n: usize, k: usize, dst: *mut $t, dst_cs: isize, dst_rs: isize, read_dst: bool, lhs: *const $t, lhs_cs: isize, lhs_rs: isize, rhs: *const $t, rhs_cs: isize, rhs_rs: isize) -> bool {
                #[cfg(target_arch = "x86_64")]
                {
                    use gemm_common::simd::MixedSimd;
                    use $kernels as uk;
                    const N: usize = $lanes;
                    const _: () = assert!(N == <gemm_common::simd::V3 as MixedSimd<$t, $t, $t, $t>>::SIMD_WIDTH);
                    let Some(simd) = <gemm_common::simd::V3 as MixedSimd<$t, $t, $t, $t>>::try_new() else { return false };
                    // SAFETY: as the caller promised.
                    unsafe {
                        gemm_common::gemm::gemm_basic_generic::<_, $t, N, { uk::MR_DIV_N * N }, { uk::NR }, { uk::MR_DIV_N }, { uk::H_M }, { uk::H_N }>(
                            simd, m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, 1.0, 1.0, false, false, false,
                            |a, b, c| a * b + c,
                            &uk::UKR,
                            &uk::H_UKR,
                            false,
                            gemm_common::Parallelism::None,
                        );
                    }
                    true
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs);
                    false
                }
            }
        }
    };
}
real_with_avx2_gemm!(f32, gemm_f32::microkernel::fma::f32, 8);
real_with_avx2_gemm!(f64, gemm_f64::microkernel::fma::f64, 4);

/// A strided read-only matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, E> {
    pub data: &'a [E],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, E> Mat<'a, E> {
    /// A row-major matrix with leading dimension `ld`.
    pub fn rows(data: &'a [E], rows: usize, cols: usize, ld: usize) -> Self {
        Mat { data, rows, cols, rs: ld, cs: 1 }
    }
    /// The transpose view.
    pub fn t(self) -> Self {
        Mat { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            assert!((self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst = a * b` (or `dst += a * b` when `accumulate`), `dst` row-major with leading dimension
/// `ld`, by the process's [`kernels`].
pub fn matmul<E: Real>(dst: &mut [E], ld: usize, a: Mat<E>, b: Mat<E>, accumulate: bool) {
    matmul_on(kernels(), dst, ld, a, b, accumulate)
}

/// [`matmul`] by the kernels `on`.
pub fn matmul_on<E: Real>(on: Kernels, dst: &mut [E], ld: usize, a: Mat<E>, b: Mat<E>, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "inner dimensions differ");
    a.check();
    b.check();
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ld + n <= dst.len(), "destination out of bounds");
    if k == 0 {
        if !accumulate {
            (0..m).for_each(|i| dst[i * ld..i * ld + n].fill(E::zero()));
        }
        return;
    }
    // gemm's own preparation (gemm 0.19, `gemm::gemm`): a row-major destination is computed as
    // the transposed product, which its kernels prefer. Every stride here is non-negative.
    if on == Kernels::Avx2 {
        let (dst_cs, dst_rs) = (1isize, ld as isize);
        let (a_cs, a_rs, b_cs, b_rs) = (a.cs as isize, a.rs as isize, b.cs as isize, b.rs as isize);
        // SAFETY: every view was checked to lie inside its slice; `dst` is borrowed mutably.
        let done = unsafe {
            if dst_cs < dst_rs {
                E::gemm_avx2(n, m, k, dst.as_mut_ptr(), dst_rs, dst_cs, accumulate, b.data.as_ptr(), b_rs, b_cs, a.data.as_ptr(), a_rs, a_cs)
            } else {
                E::gemm_avx2(m, n, k, dst.as_mut_ptr(), dst_cs, dst_rs, accumulate, a.data.as_ptr(), a_cs, a_rs, b.data.as_ptr(), b_cs, b_rs)
            }
        };
        if done {
            return;
        }
    }
    // SAFETY: every view was checked to lie inside its slice; `dst` is borrowed mutably.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            E::one(),
            E::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::avx2_kernels_run_here;

    /// gemm's AVX2 kernels (what `SSL_CPU_ISA=avx2` runs) against the native ones and a plain
    /// triple loop, f32 and f64, over shapes that cover the kernels' edges (1 row or column,
    /// sizes off their block multiples, long inner dimensions), every transpose, with and
    /// without accumulation. On an AVX2-only CPU both are the same kernels.
    #[test]
    fn avx2_and_native_kernels_agree() {
        fn case<E: Real>(m: usize, k: usize, n: usize, ta: bool, tb: bool, acc: bool, tol: f64) {
            let val = |i: usize| E::from(((i * 7919) % 1013) as f64 / 1013.0 - 0.5).unwrap();
            let a: Vec<E> = (0..m * k).map(val).collect();
            let b: Vec<E> = (0..k * n).map(|i| val(i + 17)).collect();
            let av = if ta { Mat::rows(&a, k, m, m).t() } else { Mat::rows(&a, m, k, k) };
            let bv = if tb { Mat::rows(&b, n, k, k).t() } else { Mat::rows(&b, k, n, n) };
            // A destination wider than the product (as the convolution's padded rows): its
            // last 3 columns are left alone.
            let ld = n + 3;
            let start: Vec<E> = (0..m * ld).map(|i| val(i + 5)).collect();
            let run = |on| {
                let mut d = start.clone();
                matmul_on(on, &mut d, ld, av, bv, acc);
                for i in 0..m {
                    assert_eq!(&d[i * ld + n..(i + 1) * ld], &start[i * ld + n..(i + 1) * ld], "{on:?}: padding of row {i}");
                }
                d
            };
            let (wide, avx2) = (run(Kernels::Native), run(Kernels::Avx2));
            for i in 0..m {
                for j in 0..n {
                    let mut want = if acc { start[i * ld + j].to_f64().unwrap() } else { 0.0 };
                    for p in 0..k {
                        let x = if ta { a[p * m + i] } else { a[i * k + p] };
                        let y = if tb { b[j * k + p] } else { b[p * n + j] };
                        want += x.to_f64().unwrap() * y.to_f64().unwrap();
                    }
                    for (what, got) in [("native", wide[i * ld + j]), ("avx2", avx2[i * ld + j])] {
                        let err = (got.to_f64().unwrap() - want).abs() / want.abs().max(1.0);
                        assert!(err <= tol, "{what} {m}x{k}x{n} ta {ta} tb {tb} acc {acc} at ({i}, {j}): {got:?} vs {want}");
                    }
                }
            }
        }
        // Forced, the AVX2 kernels do run (no silent fall-back) wherever the CPU has them.
        if avx2_kernels_run_here() {
            let (a, b, mut d) = ([2.0f32], [3.0f32], [1.0f32]);
            // SAFETY: 1x1 matrices in live arrays.
            assert!(unsafe { f32::gemm_avx2(1, 1, 1, d.as_mut_ptr(), 1, 1, true, a.as_ptr(), 1, 1, b.as_ptr(), 1, 1) });
            assert_eq!(d[0], 7.0);
        }
        for &(m, k, n) in &[(1, 1, 1), (1, 300, 7), (17, 300, 1), (17, 1, 33), (37, 129, 300), (64, 576, 196), (5, 1000, 3)] {
            for (ta, tb, acc) in [(false, false, false), (true, false, true), (false, true, false), (true, true, true)] {
                case::<f32>(m, k, n, ta, tb, acc, 1e-5);
                case::<f64>(m, k, n, ta, tb, acc, 1e-12);
            }
        }
    }

    #[test]
    fn matches_naive_with_transposes_and_accumulation() {
        let a: Vec<f32> = (0..6).map(|i| i as f32).collect(); // 2x3
        let b: Vec<f32> = (0..12).map(|i| (i as f32) * 0.5 - 2.0).collect(); // 3x4
        let mut c = vec![1.0; 8];
        matmul(&mut c, 4, Mat::rows(&a, 2, 3, 3), Mat::rows(&b, 3, 4, 4), true);
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = 1.0 + (0..3).map(|k| a[i * 3 + k] * b[k * 4 + j]).sum::<f32>();
                assert!((c[i * 4 + j] - want).abs() < 1e-5);
            }
        }
        // (b^T) (a^T) = (a b)^T
        let mut ct = vec![0.0; 8];
        matmul(&mut ct, 2, Mat::rows(&b, 3, 4, 4).t(), Mat::rows(&a, 2, 3, 3).t(), false);
        for i in 0..2 {
            for j in 0..4 {
                assert!((ct[j * 2 + i] - (c[i * 4 + j] - 1.0)).abs() < 1e-5);
            }
        }
    }
}
