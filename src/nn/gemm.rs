//! A bounds-checked matrix multiply over the `gemm` crate, single-threaded: the kernels
//! parallelise over images themselves, which keeps results independent of the thread count.
//! Generic over f32 (training) and f64 (gradient checks), so both run the same code.

/// The float types the project's kernels run on.
pub trait Real:
    num_traits::Float + std::ops::AddAssign + std::iter::Sum + Default + Send + Sync + std::fmt::Debug + 'static
{
}
impl Real for f32 {}
impl Real for f64 {}

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
/// `ld`.
pub fn matmul<E: Real>(dst: &mut [E], ld: usize, a: Mat<E>, b: Mat<E>, accumulate: bool) {
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
