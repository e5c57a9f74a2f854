//! CPU kernels of the 2-D convolution on NCHW f32 data: im2col over a chunk of images, one GEMM
//! per (chunk, group), rayon over chunks.
//!
//! The work is cut into chunks and reduction tasks that depend on the batch and the shape only,
//! never on the thread count, so results are bitwise identical on 1 or many threads.

use rayon::prelude::*;

use super::depthwise;
use crate::nn::gemm::{matmul, Mat, Real};
use crate::nn::tape::Store;
use crate::simd;

/// GEMM columns (output pixels over the chunk's images) aimed at per chunk.
const CHUNK_COLS: usize = 256;
/// Weight-gradient partial sums, reduced in a fixed order at the end.
pub(super) const REDUCE_TASKS: usize = 8;

/// Shape and hyper-parameters of one convolution call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub dil: usize,
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    /// The geometry, or `None` when the kernel does not fit in the padded input.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        groups: usize,
    ) -> Option<Self> {
        let span = dil * (k - 1) + 1;
        if h + 2 * pad < span || w + 2 * pad < span || stride == 0 {
            return None;
        }
        let oh = (h + 2 * pad - span) / stride + 1;
        let ow = (w + 2 * pad - span) / stride + 1;
        Some(ConvGeom { batch, c_in, h, w, c_out, k, stride, pad, dil, groups, oh, ow })
    }
    fn ipg(&self) -> usize {
        self.c_in / self.groups
    }
    fn opg(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of the im2col matrix of one group.
    fn rows(&self) -> usize {
        self.ipg() * self.k * self.k
    }
    fn in_len(&self) -> usize {
        self.c_in * self.h * self.w
    }
    fn out_pixels(&self) -> usize {
        self.oh * self.ow
    }
    fn out_len(&self) -> usize {
        self.c_out * self.out_pixels()
    }
    /// Images per chunk: enough for about `CHUNK_COLS` GEMM columns.
    fn chunk_images(&self) -> usize {
        CHUNK_COLS.div_ceil(self.out_pixels()).clamp(1, self.batch.max(1))
    }
    /// The output columns `ox` whose input column `ox * stride + kx * dil - pad` lies in
    /// `0..w`, as a half-open range.
    #[inline(always)]
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let off = (kx * self.dil) as isize - self.pad as isize;
        let s = self.stride as isize;
        let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
        let hi = ((self.w as isize - off) + s - 1) / s;
        (lo.clamp(0, self.ow as isize) as usize, hi.clamp(0, self.ow as isize) as usize)
    }
    /// Whether the output has the input's size at stride 1 ("same" padding, as every 3x3
    /// convolution of a ResNet block): then an im2col row is its input plane shifted.
    fn same_size(&self) -> bool {
        self.stride == 1 && self.oh == self.h && self.ow == self.w
    }
    /// For a [`Self::same_size`] geometry, the im2col row of kernel tap (ky, kx) as a shift:
    /// column j (= oy * W + ox) reads pixel j + `shift` of the plane for j in `start..end`,
    /// except the columns of each row outside `valid_cols(kx)` (which wrap to the next or
    /// previous row and are zero); the columns outside `start..end` are zero. `None` when the
    /// tap reads only padding.
    #[inline(always)]
    fn shift(&self, ky: usize, kx: usize) -> Option<Shift> {
        let dy = (ky * self.dil) as isize - self.pad as isize;
        let dx = (kx * self.dil) as isize - self.pad as isize;
        let rows = (-dy).clamp(0, self.oh as isize) as usize..(self.h as isize - dy).clamp(0, self.oh as isize) as usize;
        let (lo, hi) = self.valid_cols(kx);
        if rows.is_empty() || lo >= hi {
            return None;
        }
        let (start, end) = (rows.start * self.ow + lo, (rows.end - 1) * self.ow + hi);
        Some(Shift { rows, lo, hi, start, end, shift: dy * self.w as isize + dx })
    }
}

/// One kernel tap of a same-size convolution as a shift of the plane ([`ConvGeom::shift`]).
struct Shift {
    /// Output rows that read inside the plane.
    rows: std::ops::Range<usize>,
    /// Output columns that read inside the plane: `lo..hi`.
    lo: usize,
    hi: usize,
    /// The columns read as one block: from the first valid pixel to the last.
    start: usize,
    end: usize,
    /// Plane index minus column index.
    shift: isize,
}

impl Shift {
    /// The block of the plane that columns `start..end` read.
    #[inline(always)]
    fn source(&self) -> std::ops::Range<usize> {
        let from = (self.start as isize + self.shift) as usize;
        from..from + self.end - self.start
    }
    /// Zeroes the columns inside `start..end` that wrap around a row edge (one or two a row
    /// for a 3x3 kernel). Column by column down the rows: a per-row `fill` of one element
    /// would be a `memset` call each.
    #[inline(always)]
    fn zero_wrapped<E: Real>(&self, ow: usize, cols: &mut [E]) {
        for c in 0..self.lo {
            for oy in self.rows.start + 1..self.rows.end {
                cols[oy * ow + c] = E::zero();
            }
        }
        for c in self.hi..ow {
            for oy in self.rows.start..self.rows.end - 1 {
                cols[oy * ow + c] = E::zero();
            }
        }
    }
}

/// Writes the im2col rows of `group` for one image into `col` (row stride `ld`, columns from
/// `off`): row (ci, ky, kx), column (oy, ox) holds x[ci, oy*s + ky*d - p, ox*s + kx*d - p].
fn im2col<E: Real>(g: &ConvGeom, x: &[E], group: usize, col: &mut [E], ld: usize, off: usize) {
    simd::run(
        #[inline(always)]
        || im2col_body(g, x, group, col, ld, off),
    )
}

#[inline(always)]
fn im2col_body<E: Real>(g: &ConvGeom, x: &[E], group: usize, col: &mut [E], ld: usize, off: usize) {
    let (k, p) = (g.k, g.out_pixels());
    if g.same_size() {
        // One block copy per tap, then zeros where a row wrapped.
        for ci in 0..g.ipg() {
            let plane = &x[(group * g.ipg() + ci) * g.h * g.w..][..g.h * g.w];
            for ky in 0..k {
                for kx in 0..k {
                    let dst = &mut col[((ci * k + ky) * k + kx) * ld + off..][..p];
                    let Some(s) = g.shift(ky, kx) else {
                        dst.fill(E::zero());
                        continue;
                    };
                    dst[..s.start].fill(E::zero());
                    dst[s.end..].fill(E::zero());
                    dst[s.start..s.end].copy_from_slice(&plane[s.source()]);
                    s.zero_wrapped(g.ow, dst);
                }
            }
        }
        return;
    }
    for ci in 0..g.ipg() {
        let plane = &x[(group * g.ipg() + ci) * g.h * g.w..][..g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let dst = &mut col[row * ld + off..][..p];
                let (lo, hi) = g.valid_cols(kx);
                let x0 = (kx * g.dil) as isize - g.pad as isize;
                // Zeros first, then the valid part of each row: no per-row fills of an element
                // or two (a `memset` call each).
                dst.fill(E::zero());
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.oh {
                    let iy = (oy * g.stride + ky * g.dil) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let drow = &mut dst[oy * g.ow..][..g.ow];
                    let src = &plane[iy as usize * g.w..][..g.w];
                    if g.stride == 1 {
                        let start = (lo as isize + x0) as usize;
                        drow[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                    } else {
                        // Strided reads without an index product or bounds check each.
                        let first = ((lo * g.stride) as isize + x0) as usize;
                        for (d, s) in drow[lo..hi].iter_mut().zip(src[first..].iter().step_by(g.stride)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry back onto the input pixel it came from.
/// `col`'s entries that read padding may be overwritten.
fn col2im<E: Real>(g: &ConvGeom, col: &mut [E], ld: usize, off: usize, group: usize, dx: &mut [E]) {
    simd::run(
        #[inline(always)]
        || col2im_body(g, col, ld, off, group, dx),
    )
}

#[inline(always)]
fn col2im_body<E: Real>(g: &ConvGeom, col: &mut [E], ld: usize, off: usize, group: usize, dx: &mut [E]) {
    let (k, p) = (g.k, g.out_pixels());
    if g.same_size() {
        // The wrapped columns are zeroed in `col` (nothing reads them after), then one block
        // addition per tap.
        for ci in 0..g.ipg() {
            let plane = &mut dx[(group * g.ipg() + ci) * g.h * g.w..][..g.h * g.w];
            for ky in 0..k {
                for kx in 0..k {
                    let src = &mut col[((ci * k + ky) * k + kx) * ld + off..][..p];
                    let Some(s) = g.shift(ky, kx) else { continue };
                    s.zero_wrapped(g.ow, src);
                    for (d, v) in plane[s.source()].iter_mut().zip(&src[s.start..s.end]) {
                        *d += *v;
                    }
                }
            }
        }
        return;
    }
    for ci in 0..g.ipg() {
        let plane = &mut dx[(group * g.ipg() + ci) * g.h * g.w..][..g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &col[row * ld + off..][..p];
                let (lo, hi) = g.valid_cols(kx);
                let x0 = (kx * g.dil) as isize - g.pad as isize;
                for oy in 0..g.oh {
                    let iy = (oy * g.stride + ky * g.dil) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize || lo >= hi {
                        continue;
                    }
                    let srow = &src[oy * g.ow..][..g.ow];
                    let drow = &mut plane[iy as usize * g.w..][..g.w];
                    if g.stride == 1 {
                        let start = (lo as isize + x0) as usize;
                        for (d, s) in drow[start..start + hi - lo].iter_mut().zip(&srow[lo..hi]) {
                            *d += *s;
                        }
                    } else {
                        let first = ((lo * g.stride) as isize + x0) as usize;
                        for (d, s) in drow[first..].iter_mut().step_by(g.stride).zip(&srow[lo..hi]) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// Fills `col` ([rows, b * P]) with the im2col of `group` for the `b` images in `xs`.
fn im2col_chunk<E: Real>(g: &ConvGeom, xs: &[E], group: usize, col: &mut Vec<E>) -> usize {
    let (p, b) = (g.out_pixels(), xs.len() / g.in_len());
    let ld = b * p;
    col.resize(g.rows() * ld, E::zero());
    for (i, x) in xs.chunks_exact(g.in_len()).enumerate() {
        im2col(g, x, group, col, ld, i * p);
    }
    ld
}

/// Forward: `y = conv(x, w)`. `x` is [N, C_in, H, W], `w` [C_out, C_in / groups, K, K],
/// `y` [N, C_out, OH, OW] (overwritten). Depthwise geometries and the 3x3 convolutions of
/// ResNets, stride 1 or 2 (in f32, on a CPU with AVX2), take direct kernels.
pub fn forward<E: Real>(g: &ConvGeom, x: &[E], w: &[E], y: &mut [E]) {
    if depthwise::applicable(g) {
        return depthwise::forward(g, x, w, y);
    }
    #[cfg(target_arch = "x86_64")]
    if super::direct::forward(g, x, w, y) {
        return;
    }
    forward_im2col(g, x, w, y)
}

/// Backward: stores the input gradient in `dx` (when given) as `store` says, and adds the
/// weight gradient into `dw`.
pub fn backward<E: Real>(g: &ConvGeom, x: &[E], w: &[E], dy: &[E], mut dx: Option<&mut [E]>, store: Store, dw: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    if super::direct::backward(g, x, w, dy, dx.as_deref_mut(), store, dw) {
        return;
    }
    // The other kernels add: into zeros, to write.
    if let (Some(dx), Store::Write) = (dx.as_deref_mut(), store) {
        dx.par_chunks_mut(1 << 15).for_each(|c| c.fill(E::zero()));
    }
    if depthwise::applicable(g) {
        return depthwise::backward(g, x, w, dy, dx, dw);
    }
    backward_im2col(g, x, w, dy, dx, dw)
}

/// The im2col + GEMM forward, for every geometry.
pub fn forward_im2col<E: Real>(g: &ConvGeom, x: &[E], w: &[E], y: &mut [E]) {
    let (p, opg, rows) = (g.out_pixels(), g.opg(), g.rows());
    let ci = g.chunk_images();
    x.par_chunks(ci * g.in_len()).zip(y.par_chunks_mut(ci * g.out_len())).for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, tmp), (xs, ys)| {
            let b = xs.len() / g.in_len();
            for group in 0..g.groups {
                let ld = im2col_chunk(g, xs, group, col);
                let wg = Mat::rows(&w[group * opg * rows..], opg, rows, rows);
                let cm = Mat::rows(col, rows, ld, ld);
                if b == 1 {
                    matmul(&mut ys[group * opg * p..], p, wg, cm, false);
                } else {
                    tmp.resize(opg * ld, E::zero());
                    matmul(tmp, ld, wg, cm, false);
                    for (i, yimg) in ys.chunks_exact_mut(g.out_len()).enumerate() {
                        for o in 0..opg {
                            yimg[(group * opg + o) * p..][..p].copy_from_slice(&tmp[o * ld + i * p..][..p]);
                        }
                    }
                }
            }
        },
    );
}

/// The im2col + GEMM backward, for every geometry.
pub fn backward_im2col<E: Real>(g: &ConvGeom, x: &[E], w: &[E], dy: &[E], dx: Option<&mut [E]>, dw: &mut [E]) {
    let (p, opg, rows) = (g.out_pixels(), g.opg(), g.rows());
    let ci = g.chunk_images();
    let chunks = g.batch.div_ceil(ci);
    let task_images = chunks.div_ceil(REDUCE_TASKS) * ci;
    let dw_len = dw.len();
    let run_task = |xs: &[E], dys: &[E], mut dxs: Option<&mut [E]>| -> Vec<E> {
        let mut dw_part = vec![E::zero(); dw_len];
        let (mut col, mut dyc, mut dcol) = (Vec::new(), Vec::new(), Vec::new());
        for (c, (xc, dyck)) in xs.chunks(ci * g.in_len()).zip(dys.chunks(ci * g.out_len())).enumerate() {
            let b = xc.len() / g.in_len();
            for group in 0..g.groups {
                let ld = im2col_chunk(g, xc, group, &mut col);
                // The chunk's output gradient for this group as [opg, b * P].
                let dym = if b == 1 {
                    Mat::rows(&dyck[group * opg * p..], opg, p, p)
                } else {
                    dyc.resize(opg * ld, E::zero());
                    for (i, dyimg) in dyck.chunks_exact(g.out_len()).enumerate() {
                        for o in 0..opg {
                            dyc[o * ld + i * p..][..p].copy_from_slice(&dyimg[(group * opg + o) * p..][..p]);
                        }
                    }
                    Mat::rows(&dyc, opg, ld, ld)
                };
                let wg = Mat::rows(&w[group * opg * rows..], opg, rows, rows);
                matmul(&mut dw_part[group * opg * rows..], rows, dym, Mat::rows(&col, rows, ld, ld).t(), true);
                if let Some(dxs) = dxs.as_deref_mut() {
                    dcol.resize(rows * ld, E::zero());
                    matmul(&mut dcol, ld, wg.t(), dym, false);
                    let dx_chunk = &mut dxs[c * ci * g.in_len()..][..b * g.in_len()];
                    for (i, dximg) in dx_chunk.chunks_exact_mut(g.in_len()).enumerate() {
                        col2im(g, &mut dcol, ld, i * p, group, dximg);
                    }
                }
            }
        }
        dw_part
    };
    let xs = x.par_chunks(task_images * g.in_len());
    let dys = dy.par_chunks(task_images * g.out_len());
    let parts: Vec<Vec<E>> = match dx {
        Some(dx) => xs
            .zip(dys)
            .zip(dx.par_chunks_mut(task_images * g.in_len()))
            .map(|((xs, dys), dxs)| run_task(xs, dys, Some(dxs)))
            .collect(),
        None => xs.zip(dys).map(|(xs, dys)| run_task(xs, dys, None)).collect(),
    };
    for part in parts {
        dw.iter_mut().zip(&part).for_each(|(d, s)| *d += *s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution in f64, the reference for the GEMM path.
    fn naive(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0f64; g.batch * g.out_len()];
        let (ipg, opg) = (g.ipg(), g.opg());
        for n in 0..g.batch {
            for co in 0..g.c_out {
                let grp = co / opg;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = 0.0f64;
                        for ci in 0..ipg {
                            for ky in 0..g.k {
                                for kx in 0..g.k {
                                    let iy = (oy * g.stride + ky * g.dil) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kx * g.dil) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xv = x[((n * g.c_in + grp * ipg + ci) * g.h + iy as usize) * g.w + ix as usize];
                                    let wv = w[((co * ipg + ci) * g.k + ky) * g.k + kx];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * g.c_out + co) * g.oh + oy) * g.ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn gemm_path_matches_direct_convolution() {
        // (batch, c_in, h, w, c_out, k, stride, pad, dil, groups)
        let cases = [
            (3, 2, 5, 6, 4, 3, 1, 1, 1, 1),
            (2, 3, 7, 7, 6, 3, 2, 1, 1, 1),
            (20, 4, 4, 4, 8, 1, 2, 0, 1, 1),
            (2, 4, 6, 5, 4, 3, 1, 2, 2, 2),
            (2, 4, 6, 6, 4, 3, 1, 1, 1, 4),
            (1, 1, 3, 3, 1, 3, 1, 0, 1, 1),
            (3, 5, 7, 6, 4, 3, 1, 0, 1, 1),
            (2, 3, 5, 8, 2, 3, 1, 2, 1, 1),
            (40, 3, 3, 3, 5, 3, 1, 1, 1, 1),
            (3, 6, 7, 7, 6, 3, 2, 1, 1, 6),
            (2, 4, 6, 5, 4, 3, 1, 2, 2, 4),
            (5, 2, 9, 9, 3, 5, 3, 2, 1, 1),
            // Same size at stride 1: 1x1, a kernel larger than the image, one row, one column.
            (3, 4, 5, 5, 4, 1, 1, 0, 1, 1),
            (2, 2, 2, 2, 3, 5, 1, 2, 1, 1),
            (2, 3, 1, 4, 2, 3, 1, 1, 1, 1),
            (2, 3, 4, 1, 2, 3, 1, 1, 1, 1),
        ];
        for (b, c, h, w_, o, k, s, p, d, gr) in cases {
            let g = ConvGeom::new(b, c, h, w_, o, k, s, p, d, gr).unwrap();
            let x: Vec<f32> = (0..b * c * h * w_).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
            let w: Vec<f32> = (0..o * c / gr * k * k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0).collect();
            let want = naive(&g, &x, &w);
            for path in [forward::<f32> as fn(&ConvGeom, &[f32], &[f32], &mut [f32]), forward_im2col::<f32>] {
                let mut y = vec![f32::NAN; b * g.out_len()];
                path(&g, &x, &w, &mut y);
                for (a, e) in y.iter().zip(&want) {
                    assert!((*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "{g:?}: {a} vs {e}");
                }
            }
        }
    }

    /// im2col by its definition, in f64.
    fn naive_im2col(g: &ConvGeom, x: &[f64], group: usize) -> Vec<f64> {
        let (k, p) = (g.k, g.out_pixels());
        let mut col = vec![0.0; g.rows() * p];
        for ci in 0..g.ipg() {
            for (ky, kx) in (0..k).flat_map(|ky| (0..k).map(move |kx| (ky, kx))) {
                for (oy, ox) in (0..g.oh).flat_map(|oy| (0..g.ow).map(move |ox| (oy, ox))) {
                    let iy = (oy * g.stride + ky * g.dil) as isize - g.pad as isize;
                    let ix = (ox * g.stride + kx * g.dil) as isize - g.pad as isize;
                    if iy >= 0 && ix >= 0 && iy < g.h as isize && ix < g.w as isize {
                        col[((ci * k + ky) * k + kx) * p + oy * g.ow + ox] =
                            x[((group * g.ipg() + ci) * g.h + iy as usize) * g.w + ix as usize];
                    }
                }
            }
        }
        col
    }

    /// Geometries of both im2col paths: (c_in, h, w, c_out, k, stride, pad, dil, groups).
    const IM2COL_CASES: [(usize, usize, usize, usize, usize, usize, usize, usize, usize); 14] = [
        (2, 5, 6, 2, 3, 1, 1, 1, 1),
        (2, 4, 4, 2, 1, 1, 0, 1, 1),
        (1, 2, 2, 1, 5, 1, 2, 1, 1),
        (2, 1, 4, 2, 3, 1, 1, 1, 1),
        (2, 4, 1, 2, 3, 1, 1, 1, 1),
        (2, 5, 5, 2, 2, 1, 1, 2, 1),
        (1, 6, 5, 1, 4, 1, 3, 2, 1),
        (1, 2, 2, 1, 3, 1, 3, 3, 1),
        (4, 5, 5, 4, 3, 1, 1, 1, 2),
        (2, 7, 7, 2, 3, 2, 1, 1, 1),
        (2, 6, 5, 2, 1, 2, 0, 1, 1),
        (2, 7, 6, 2, 3, 1, 0, 1, 1),
        (1, 9, 9, 1, 7, 2, 3, 1, 1),
        (2, 6, 6, 2, 3, 1, 2, 2, 2),
    ];

    #[test]
    fn im2col_writes_every_column_and_col2im_is_its_adjoint() {
        for (c, h, w_, o, k, s, p, d, gr) in IM2COL_CASES {
            let g = ConvGeom::new(1, c, h, w_, o, k, s, p, d, gr).unwrap();
            let x: Vec<f64> = (0..c * h * w_).map(|i| ((i * 37 % 23) as f64 - 11.0) / 7.0).collect();
            let (n, ld, off) = (g.out_pixels(), g.out_pixels() + 3, 2);
            for group in 0..gr {
                // Into a buffer of NaN with other columns around: every column of the image is
                // written (padding as zeros), nothing else.
                let mut col = vec![f64::NAN; g.rows() * ld];
                im2col(&g, &x, group, &mut col, ld, off);
                let want = naive_im2col(&g, &x, group);
                for r in 0..g.rows() {
                    assert_eq!(&col[r * ld + off..][..n], &want[r * n..][..n], "{g:?} group {group} row {r}");
                    assert!(col[r * ld..][..off].iter().chain(&col[r * ld + off + n..][..ld - off - n]).all(|v| v.is_nan()));
                }
                // <im2col(x), c> = <x, col2im(c)> for any c, its padding entries included.
                let cv: Vec<f64> = (0..g.rows() * ld).map(|i| ((i * 53 % 29) as f64 - 14.0) / 5.0).collect();
                let lhs: f64 = (0..g.rows()).flat_map(|r| (0..n).map(move |j| (r, j))).map(|(r, j)| want[r * n + j] * cv[r * ld + off + j]).sum();
                let mut dx = vec![0.0; x.len()];
                col2im(&g, &mut cv.clone(), ld, off, group, &mut dx);
                let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
                assert!((lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()), "{g:?} group {group}: {lhs} vs {rhs}");
                let others = (0..c).filter(|ch| ch / g.ipg() != group).flat_map(|ch| dx[ch * h * w_..][..h * w_].to_vec());
                assert!(others.into_iter().all(|v| v == 0.0), "{g:?}: col2im touched another group");
            }
        }
    }

    #[test]
    fn output_size_and_rejection() {
        let g = ConvGeom::new(1, 1, 32, 32, 1, 3, 2, 1, 1, 1).unwrap();
        assert_eq!((g.oh, g.ow), (16, 16));
        assert!(ConvGeom::new(1, 1, 2, 2, 1, 5, 1, 0, 1, 1).is_none());
    }
}
