//! Direct kernels for the 3x3 convolutions of ResNets (stride 1 or 2, padding 1, no groups or
//! dilation, input and output channels multiples of the vector width, f32) with FMA intrinsics,
//! where im2col + GEMM writes nine copies of the input and multiplies small matrices.
//!
//! The scheme is oneDNN's direct convolution (its `jit_avx512_common_conv` kernels) on a
//! channel-blocked layout: an image is converted to `[C/V][H+2][W+2][V]` (V = 16 lanes of
//! AVX-512, 8 of AVX2, a zero halo around each plane), the weights to `[O/V][C/V][3][3][V][V]`
//! (input lane, then output lane). The forward keeps R output pixels of a row x B blocks of V
//! output channels as accumulators in registers; each weight vector is loaded once for R pixels
//! and each input value broadcast once for B blocks. At stride 1 the input gradient is the same
//! kernel over the padded output gradient with the weights flipped and transposed; at stride 2
//! (not a convolution of the output gradient) a scatter kernel sums each tap's products over the
//! output channels in registers and adds them to the input pixels the tap read. The weight
//! gradient keeps three taps of a kernel row x IL input lanes in registers over every pixel of
//! an image. The conversions are per image, in scratch buffers that stay in cache.
//!
//! Determinism: the forward and the input gradient are per image; the weight gradient is summed
//! over at most [`super::cpu_kernel::REDUCE_TASKS`] chunks of images (their size from the batch
//! alone), the chunks' partial sums added in order: the bits do not depend on the thread count.
//! They do depend on the instruction set (lanes and FMA), as the GEMM's do, and differ from the
//! im2col path's by rounding.

use std::any::TypeId;

use rayon::prelude::*;

use super::cpu_kernel::{ConvGeom, REDUCE_TASKS};
use crate::nn::gemm::Real;
use crate::nn::tape::Store;
use crate::simd::{self, Level};

/// The instruction set the direct kernels would take for `g` with element type `E` in this
/// process, or `None` when they do not apply (the geometry, the type, or a CPU without AVX2).
pub fn applicable<E: 'static>(g: &ConvGeom) -> Option<Level> {
    if TypeId::of::<E>() != TypeId::of::<f32>() {
        return None;
    }
    // Below 7 output pixels a row, the R-pixel tiles reuse each weight vector too few times:
    // the weights stream from L2 faster than the kernel multiplies (ResNet-18's 4x4 maps at 512
    // channels ran 40% slower than im2col + GEMM on 2 threads), so those keep the GEMM, as do
    // rows that no tile of 4 or 7 pixels divides.
    let rows = g.ow >= 7 && (g.ow.is_multiple_of(7) || g.ow.is_multiple_of(4));
    // Stride 2 (the downsampling convolutions) on even maps: its weight gradient pairs the
    // input columns 2 ox and 2 ox + 1.
    let stride = g.stride == 1 || (g.stride == 2 && g.h.is_multiple_of(2) && g.w.is_multiple_of(2));
    let resnet_3x3 = g.k == 3 && stride && g.pad == 1 && g.dil == 1 && g.groups == 1;
    let shape = resnet_3x3 && g.batch > 0 && g.c_in > 0 && g.c_out > 0 && rows;
    let lanes = match simd::level() {
        Level::Avx512 => 16,
        Level::Avx2 => 8,
        Level::Baseline => return None,
    };
    (shape && g.c_in.is_multiple_of(lanes) && g.c_out.is_multiple_of(lanes)).then(simd::level)
}

/// `s` as f32, for `E` = f32.
fn as_f32<E: 'static>(s: &[E]) -> &[f32] {
    assert_eq!(TypeId::of::<E>(), TypeId::of::<f32>());
    // SAFETY: E is f32 (checked above).
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) }
}

fn as_f32_mut<E: 'static>(s: &mut [E]) -> &mut [f32] {
    assert_eq!(TypeId::of::<E>(), TypeId::of::<f32>());
    // SAFETY: E is f32 (checked above), the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) }
}

/// Forward `y = conv(x, w)` ([`super::cpu_kernel::forward`]'s arguments, NCHW), when
/// [`applicable`]; `false` (nothing done) otherwise.
pub fn forward<E: Real>(g: &ConvGeom, x: &[E], w: &[E], y: &mut [E]) -> bool {
    match applicable::<E>(g) {
        Some(level) => {
            forward_at(level, g, as_f32(x), as_f32(w), as_f32_mut(y));
            true
        }
        None => false,
    }
}

/// Backward: stores the input gradient in `dx` (when given) as `store` says and adds the weight
/// gradient into `dw`, when [`applicable`]; `false` (nothing done) otherwise.
pub fn backward<E: Real>(g: &ConvGeom, x: &[E], w: &[E], dy: &[E], dx: Option<&mut [E]>, store: Store, dw: &mut [E]) -> bool {
    match applicable::<E>(g) {
        Some(level) => {
            backward_at(level, g, as_f32(x), as_f32(w), as_f32(dy), dx.map(as_f32_mut), store, as_f32_mut(dw));
            true
        }
        None => false,
    }
}

/// The sizes of one call in blocks.
#[derive(Clone, Copy)]
struct Dims {
    /// Lanes a vector (channels a block).
    v: usize,
    /// Input and output channel blocks.
    icb: usize,
    ocb: usize,
    /// Input rows and columns.
    h: usize,
    w: usize,
    /// Output rows and columns.
    oh: usize,
    ow: usize,
    /// The stride: 1 or 2.
    s: usize,
}

impl Dims {
    fn new(v: usize, g: &ConvGeom) -> Self {
        assert!(matches!(g.stride, 1 | 2) && g.k == 3 && g.pad == 1, "no direct kernel for {g:?}");
        Dims { v, icb: g.c_in / v, ocb: g.c_out / v, h: g.h, w: g.w, oh: g.oh, ow: g.ow, s: g.stride }
    }
    /// Floats of a padded blocked input image.
    fn padded_len(&self) -> usize {
        self.icb * (self.h + 2) * (self.w + 2) * self.v
    }
    /// Floats of a blocked output image.
    fn out_len(&self) -> usize {
        self.ocb * self.oh * self.ow * self.v
    }
    fn weights_len(&self) -> usize {
        self.ocb * self.icb * 9 * self.v * self.v
    }
    /// The sizes with input and output exchanged: at stride 1 those of the input gradient's
    /// convolution; at any stride, the output gradient's padded layout is the transposed
    /// [`Self::padded_len`], the blocked input gradient's the transposed [`Self::out_len`].
    fn transposed(&self) -> Self {
        Dims { icb: self.ocb, ocb: self.icb, h: self.oh, w: self.ow, oh: self.h, ow: self.w, ..*self }
    }
}

/// One image `[C, H, W]` into the interior of `dst` (`[C/V][H+2][W+2][V]`, halo untouched):
/// V consecutive pixels of the V planes of a block loaded as V vectors and transposed in
/// registers, each pixel's V channels then stored as one vector; the last `H W mod V` pixels
/// gathered. (Gathers for every pixel had been a sixth of the small ResNet's step on an AMD
/// EPYC, where they are slow; element-by-element stores before them a tenth.)
///
/// # Safety
/// The CPU has `L`'s instructions.
#[inline(always)]
unsafe fn to_padded<L: Lanes>(d: &Dims, src: &[f32], dst: &mut [f32]) {
    let (v, h, w, wp, hw) = (L::V, d.h, d.w, d.w + 2, d.h * d.w);
    assert!(d.v == v && src.len() >= d.icb * v * hw && dst.len() >= d.padded_len());
    let whole = hw / v * v;
    // SAFETY: the loads and gathers read src[(cb V + l) H W + p] for l < V, p < H W, the stores
    // write the interior of dst: inside both, by the lengths asserted above.
    unsafe {
        let index = L::lane_index(hw as i32);
        let mut rows = [L::zero(); 16];
        for cb in 0..d.icb {
            let from = src.as_ptr().add(cb * v * hw);
            let to = dst.as_mut_ptr().add(cb * (h + 2) * wp * v);
            // The pixel (y, x) the next store is for, in plane order.
            let (mut y, mut x) = (0, 0);
            let mut next = || {
                let at = to.add(((y + 1) * wp + x + 1) * v);
                x += 1;
                if x == w {
                    (x, y) = (0, y + 1);
                }
                at
            };
            for p in (0..whole).step_by(v) {
                for (l, row) in rows.iter_mut().enumerate().take(v) {
                    *row = L::load(from.add(l * hw + p));
                }
                L::transpose(&mut rows);
                for row in rows.iter().take(v) {
                    L::store(next(), *row);
                }
            }
            for p in whole..hw {
                L::store(next(), L::gather(from.add(p), index));
            }
        }
    }
}

/// One blocked output image `[O/V][OH][OW][V]` into `dst` `[O, OH, OW]`: written, or added when
/// `add`; V pixels of a plane gathered at a time.
///
/// # Safety
/// The CPU has `L`'s instructions.
#[inline(always)]
unsafe fn from_blocked<L: Lanes>(d: &Dims, src: &[f32], dst: &mut [f32], add: bool) {
    let (v, hw) = (L::V, d.oh * d.ow);
    assert!(d.v == v && src.len() >= d.out_len() && dst.len() >= d.ocb * v * hw);
    let whole = hw / v * v;
    // SAFETY: the reads are src[(ob OH OW + p) V + l] for p < OH OW, the writes
    // dst[(ob V + l) OH OW + p]: inside both, by the lengths asserted above.
    unsafe {
        let index = L::lane_index(v as i32);
        for ob in 0..d.ocb {
            for l in 0..v {
                let from = src.as_ptr().add(ob * hw * v + l);
                let to = dst.as_mut_ptr().add((ob * v + l) * hw);
                for p in (0..whole).step_by(v) {
                    let g = L::gather(from.add(p * v), index);
                    L::store(to.add(p), if add { L::add(L::load(to.add(p)), g) } else { g });
                }
                for p in whole..hw {
                    let value = *from.add(p * v);
                    *to.add(p) = if add { *to.add(p) + value } else { value };
                }
            }
        }
    }
}

/// Weights `[O, C, 3, 3]` blocked as `[O/V][C/V][3][3][V in][V out]`; with `transpose`, those of
/// the input gradient's convolution (input and output exchanged, the kernel turned by 180°).
fn weights_blocked(d: &Dims, w: &[f32], transpose: bool) -> Vec<f32> {
    let (v, c) = (d.v, d.icb * d.v);
    // a: the output channel of the convolution these weights are for, b: its input.
    let b_blocks = if transpose { d.ocb } else { d.icb };
    let mut out = vec![0.0f32; d.weights_len()];
    out.par_chunks_mut(b_blocks * 9 * v * v).enumerate().for_each(|(ab, block)| {
        // Nested loops in the destination's order (index arithmetic with divisions by a run-time
        // V per element had been a few per cent of the step).
        let mut values = block.iter_mut();
        for bb in 0..b_blocks {
            for tap in 0..9 {
                for bl in 0..v {
                    for al in 0..v {
                        let (a, b) = (ab * v + al, bb * v + bl);
                        let value = if transpose { w[(b * c + a) * 9 + 8 - tap] } else { w[(a * c + b) * 9 + tap] };
                        if let Some(out) = values.next() {
                            *out = value;
                        }
                    }
                }
            }
        }
    });
    out
}

/// The vector operations the kernels use, per instruction set.
trait Lanes {
    /// f32 lanes a register.
    const V: usize;
    /// Whether an FMA takes a broadcast input value straight from memory (AVX-512's embedded
    /// broadcast), so a broadcast needs no register of its own.
    const BROADCAST_OPERAND: bool;
    type Reg: Copy;
    unsafe fn zero() -> Self::Reg;
    unsafe fn load(p: *const f32) -> Self::Reg;
    unsafe fn store(p: *mut f32, v: Self::Reg);
    /// Every lane `*p`.
    unsafe fn splat(p: *const f32) -> Self::Reg;
    /// `a * b + c`, rounded once.
    unsafe fn fmadd(a: Self::Reg, b: Self::Reg, c: Self::Reg) -> Self::Reg;
    unsafe fn add(a: Self::Reg, b: Self::Reg) -> Self::Reg;
    /// Lane offsets `0, stride, 2 stride, ...` for [`Lanes::gather`].
    type Index: Copy;
    unsafe fn lane_index(stride: i32) -> Self::Index;
    /// Lane j is `*p.add(index[j])`.
    unsafe fn gather(p: *const f32, index: Self::Index) -> Self::Reg;
    /// Transposes the V x V tile `rows[..V]`: lane j of row i becomes lane i of row j. As the
    /// exchange of bit b of the row with bit b of the lane for b = 1, 2, 4 (, 8): exchanges of
    /// different bits commute, and all of them together are the transpose.
    unsafe fn transpose(rows: &mut [Self::Reg; 16]);
}

#[cfg(target_arch = "x86_64")]
mod lanes {
    use std::arch::x86_64::*;

    pub struct Avx512;
    pub struct Avx2;

    impl super::Lanes for Avx512 {
        const V: usize = 16;
        const BROADCAST_OPERAND: bool = true;
        type Reg = __m512;
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn splat(p: *const f32) -> __m512 {
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        type Index = __m512i;
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn lane_index(stride: i32) -> __m512i {
            _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(stride))
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn gather(p: *const f32, index: __m512i) -> __m512 {
            unsafe { _mm512_i32gather_ps::<4>(index, p) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn transpose(rows: &mut [__m512; 16]) {
            // For rows i and i + b (bit b of i clear): lane c of the first takes, where bit b of c
            // is set, lane c - b of the second; lane c of the second, where it is clear, lane
            // c + b of the first (indices 16.. pick from the second operand).
            const fn index(b: usize, second: bool) -> [i32; 16] {
                let mut out = [0; 16];
                let mut c = 0;
                while c < 16 {
                    out[c] = match (c & b == 0, second) {
                        (true, false) => c,
                        (false, false) => 16 + c - b,
                        (true, true) => c + b,
                        (false, true) => 16 + c,
                    } as i32;
                    c += 1;
                }
                out
            }
            const INDEX: [[[i32; 16]; 2]; 4] = [
                [index(1, false), index(1, true)],
                [index(2, false), index(2, true)],
                [index(4, false), index(4, true)],
                [index(8, false), index(8, true)],
            ];
            for (level, [first, second]) in INDEX.iter().enumerate() {
                let b = 1 << level;
                // SAFETY: the index arrays are 16 i32s.
                let (first, second) = unsafe { (_mm512_loadu_epi32(first.as_ptr()), _mm512_loadu_epi32(second.as_ptr())) };
                for i in (0..16).filter(|i| i & b == 0) {
                    let (lo, hi) = (rows[i], rows[i + b]);
                    rows[i] = _mm512_permutex2var_ps(lo, first, hi);
                    rows[i + b] = _mm512_permutex2var_ps(lo, second, hi);
                }
            }
        }
    }

    impl super::Lanes for Avx2 {
        const V: usize = 8;
        const BROADCAST_OPERAND: bool = false;
        type Reg = __m256;
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn splat(p: *const f32) -> __m256 {
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        type Index = __m256i;
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn lane_index(stride: i32) -> __m256i {
            _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride))
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn gather(p: *const f32, index: __m256i) -> __m256 {
            unsafe { _mm256_i32gather_ps::<4>(p, index) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn transpose(rows: &mut [__m256; 16]) {
            // Rows i and i + b, bit b of i clear: b = 1 by duplicated lanes and blends, b = 2 by
            // in-lane shuffles, b = 4 by exchanging 128-bit halves.
            for i in (0..8).step_by(2) {
                let (lo, hi) = (rows[i], rows[i + 1]);
                rows[i] = _mm256_blend_ps::<0xAA>(lo, _mm256_moveldup_ps(hi));
                rows[i + 1] = _mm256_blend_ps::<0xAA>(_mm256_movehdup_ps(lo), hi);
            }
            for i in [0, 1, 4, 5] {
                let (lo, hi) = (rows[i], rows[i + 2]);
                rows[i] = _mm256_shuffle_ps::<0x44>(lo, hi);
                rows[i + 2] = _mm256_shuffle_ps::<0xEE>(lo, hi);
            }
            for i in 0..4 {
                let (lo, hi) = (rows[i], rows[i + 4]);
                rows[i] = _mm256_permute2f128_ps::<0x20>(lo, hi);
                rows[i + 4] = _mm256_permute2f128_ps::<0x31>(lo, hi);
            }
        }
    }
}

/// Adds pixel r's value (at `pixels + r * step`, broadcast) times block b's weights `wv[b]`
/// into `acc[b][r]`: one input lane of a register tile of R pixels x B blocks.
///
/// # Safety
/// The CPU has `L`'s instructions; the R values are readable.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // acc[b][r] indexed by both: plain loops keep the tile in registers
unsafe fn tile_fmas<L: Lanes, const R: usize, const B: usize>(acc: &mut [[L::Reg; R]; B], pixels: *const f32, step: usize, wv: [L::Reg; B]) {
    // SAFETY: the caller's.
    unsafe {
        for r in 0..R {
            let xv = L::splat(pixels.add(r * step));
            for b in 0..B {
                acc[b][r] = L::fmadd(xv, wv[b], acc[b][r]);
            }
        }
    }
}

/// The forward of one image at stride S: `x` padded blocked, `wb` blocked, `y` blocked
/// `[O/V][OH][OW][V]` (overwritten). R output pixels x B output blocks a register tile;
/// `d.ow % R == 0`, `d.ocb % B == 0`.
///
/// # Safety
/// The CPU has `L`'s instructions; the slices have [`Dims`]' lengths (asserted).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // acc[b][r] indexed by both: plain loops keep the tile in registers
unsafe fn forward_image<L: Lanes, const R: usize, const B: usize, const S: usize>(d: &Dims, x: &[f32], wb: &[f32], y: &mut [f32]) {
    let (v, hp, wp, icb) = (L::V, d.h + 2, d.w + 2, d.icb);
    assert!(d.v == v && d.s == S && d.ow.is_multiple_of(R) && d.ocb.is_multiple_of(B));
    assert!(S * (d.oh - 1) + 3 <= hp && S * (d.ow - 1) + 3 <= wp);
    assert!(x.len() >= d.padded_len() && wb.len() >= d.weights_len() && y.len() >= d.out_len());
    let block_stride = icb * 9 * v * v;
    for ob0 in (0..d.ocb).step_by(B) {
        for oy in 0..d.oh {
            for ox0 in (0..d.ow).step_by(R) {
                // SAFETY: every offset below is inside the slices, by the sizes asserted above.
                unsafe {
                    let mut acc = [[L::zero(); R]; B];
                    for ib in 0..icb {
                        for ky in 0..3 {
                            let row = x.as_ptr().add(((ib * hp + S * oy + ky) * wp + S * ox0) * v);
                            let taps = wb.as_ptr().add(((ob0 * icb + ib) * 9 + ky * 3) * v * v);
                            // Block b's weights of input lane i at tap kx.
                            let weights = |b: usize, kx: usize, i: usize| L::load(taps.add(b * block_stride + (kx * v + i) * v));
                            // The tile's products of input lane i at tap kx.
                            let mut products = |kx: usize, i: usize, wv| tile_fmas::<L, R, B>(&mut acc, row.add(kx * v + i), S * v, wv);
                            if L::BROADCAST_OPERAND {
                                for kx in 0..3 {
                                    for i in 0..v {
                                        products(kx, i, std::array::from_fn(|b| weights(b, kx, i)));
                                    }
                                }
                            } else {
                                // Each broadcast takes a register and a load: the three taps'
                                // weights held, so that at stride 1 pixel r + 1's value at tap
                                // kx - 1 is pixel r's at tap kx, one load the compiler merges:
                                // R + 2 broadcasts for 3 R B FMAs instead of 3 R (the step at
                                // AVX2 was 8-12% faster, 2026-12-02).
                                for i in 0..v {
                                    let wv: [[L::Reg; B]; 3] = std::array::from_fn(|kx| std::array::from_fn(|b| weights(b, kx, i)));
                                    for (kx, wv) in wv.into_iter().enumerate() {
                                        products(kx, i, wv);
                                    }
                                }
                            }
                        }
                    }
                    for (b, tile) in acc.iter().enumerate() {
                        for (r, a) in tile.iter().enumerate() {
                            L::store(y.as_mut_ptr().add((((ob0 + b) * d.oh + oy) * d.ow + ox0 + r) * v), *a);
                        }
                    }
                }
            }
        }
    }
}

/// The weight gradient's register tiles over one image: for each output block `ob`, input block
/// `ib`, kernel row `ky` and IL input lanes from `il0`, the 3 x IL accumulators (taps kx x input
/// lanes, V output channels each) loaded from `dwb` (blocked as [`weights_blocked`]), handed to
/// `add_rows` (ob, ib, ky, il0, accumulators) to add the image's products, and stored back.
///
/// # Safety
/// The CPU has `L`'s instructions; `add_rows` reads inside its slices.
#[inline(always)]
unsafe fn weight_grad_tiles<L: Lanes, const IL: usize>(
    d: &Dims,
    dwb: &mut [f32],
    mut add_rows: impl FnMut(usize, usize, usize, usize, &mut [[L::Reg; IL]; 3]),
) {
    let v = L::V;
    assert!(d.v == v && v.is_multiple_of(IL) && dwb.len() >= d.weights_len());
    for ob in 0..d.ocb {
        for ib in 0..d.icb {
            for ky in 0..3 {
                for il0 in (0..v).step_by(IL) {
                    // SAFETY: the tile's vectors lie inside `dwb`, by the length asserted above.
                    unsafe {
                        let dst = dwb.as_mut_ptr().add(((ob * d.icb + ib) * 9 + ky * 3) * v * v + il0 * v);
                        let mut acc = [[L::zero(); IL]; 3];
                        for (kx, tap) in acc.iter_mut().enumerate() {
                            for (j, a) in tap.iter_mut().enumerate() {
                                *a = L::load(dst.add(kx * v * v + j * v));
                            }
                        }
                        add_rows(ob, ib, ky, il0, &mut acc);
                        for (kx, tap) in acc.iter().enumerate() {
                            for (j, a) in tap.iter().enumerate() {
                                L::store(dst.add(kx * v * v + j * v), *a);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds one image's weight gradient at stride 1 into `dwb` (blocked as [`weights_blocked`]):
/// `x` padded blocked, `dy` padded blocked `[O/V][H+2][W+2][V]`. For a row of kernel taps (ky)
/// and IL input lanes, 3 x IL accumulators of V output channels ([`weight_grad_tiles`]): each
/// input value of the row's interior (the halo is zero) is broadcast once for the three taps kx
/// that read it (with the output gradient at columns q - kx), each gradient vector loaded once for
/// IL lanes. Where q - kx falls outside the row, the gradient read is its zero halo, so the edges
/// need no test.
///
/// # Safety
/// As [`forward_image`].
#[inline(always)]
#[allow(clippy::needless_range_loop)] // acc[kx][j] indexed by both: plain loops keep the tile in registers
unsafe fn weight_grad_image<L: Lanes, const IL: usize>(d: &Dims, x: &[f32], dy: &[f32], dwb: &mut [f32]) {
    let (v, hp, wp) = (L::V, d.h + 2, d.w + 2);
    assert!(d.v == v && d.s == 1);
    assert!(x.len() >= d.padded_len() && dy.len() >= d.transposed().padded_len());
    let add_rows = |ob: usize, ib: usize, ky: usize, il0: usize, acc: &mut [[L::Reg; IL]; 3]| {
        for oy in 0..d.h {
            // SAFETY: every offset below is inside the slices, by the lengths asserted above:
            // input rows oy + ky <= H + 1 and columns 1..=W of the padded image, gradient columns
            // q - 1 >= 0 and q + 1 <= W + 1 of its padded rows.
            unsafe {
                let xrow = x.as_ptr().add(((ib * hp + oy + ky) * wp) * v + il0);
                // Column c of the padded gradient row: the output pixel c - 1.
                let dyrow = dy.as_ptr().add((ob * hp + oy + 1) * wp * v);
                for q in 1..d.w + 1 {
                    // Output pixel q - kx, at padded column q + 1 - kx.
                    let g = [L::load(dyrow.add((q + 1) * v)), L::load(dyrow.add(q * v)), L::load(dyrow.add((q - 1) * v))];
                    for j in 0..IL {
                        let xv = L::splat(xrow.add(q * v + j));
                        for kx in 0..3 {
                            acc[kx][j] = L::fmadd(xv, g[kx], acc[kx][j]);
                        }
                    }
                }
            }
        }
    };
    // SAFETY: as this function's.
    unsafe { weight_grad_tiles::<L, IL>(d, dwb, add_rows) }
}

/// [`weight_grad_image`] at stride 2 (even H and W): padded input column 2 ox holds the value
/// tap 0 reads for output pixel ox and tap 2 for ox - 1, column 2 ox + 1 the value tap 1 reads
/// for ox; each input value is broadcast once for the taps that read it, each gradient vector
/// loaded once for IL lanes. The gradient's columns -1 and OW are its zero halo.
///
/// # Safety
/// As [`forward_image`].
#[inline(always)]
#[allow(clippy::needless_range_loop)] // acc[kx][j] indexed by both: plain loops keep the tile in registers
unsafe fn weight_grad_s2_image<L: Lanes, const IL: usize>(d: &Dims, x: &[f32], dy: &[f32], dwb: &mut [f32]) {
    let (v, hp, wp, ohp, owp) = (L::V, d.h + 2, d.w + 2, d.oh + 2, d.ow + 2);
    assert!(d.v == v && d.s == 2);
    assert!(d.h.is_multiple_of(2) && d.w.is_multiple_of(2) && d.oh == d.h / 2 && d.ow == d.w / 2);
    assert!(x.len() >= d.padded_len() && dy.len() >= d.transposed().padded_len());
    let add_rows = |ob: usize, ib: usize, ky: usize, il0: usize, acc: &mut [[L::Reg; IL]; 3]| {
        for oy in 0..d.oh {
            // SAFETY: every offset below is inside the slices, by the sizes asserted above: input
            // rows 2 oy + ky <= H and columns 2 ox + 1 <= W + 1 of the padded image, gradient
            // columns 0..=OW + 1 of its padded rows.
            unsafe {
                let xrow = x.as_ptr().add((ib * hp + 2 * oy + ky) * wp * v + il0);
                // Column c of the padded gradient row: the output pixel c - 1.
                let dyrow = dy.as_ptr().add((ob * ohp + oy + 1) * owp * v);
                for ox in 0..d.ow + 1 {
                    // Output pixels ox and ox - 1.
                    let g = [L::load(dyrow.add((ox + 1) * v)), L::load(dyrow.add(ox * v))];
                    for j in 0..IL {
                        let even = L::splat(xrow.add(2 * ox * v + j));
                        let odd = L::splat(xrow.add((2 * ox + 1) * v + j));
                        acc[0][j] = L::fmadd(even, g[0], acc[0][j]);
                        acc[1][j] = L::fmadd(odd, g[0], acc[1][j]);
                        acc[2][j] = L::fmadd(even, g[1], acc[2][j]);
                    }
                }
            }
        }
    };
    // SAFETY: as this function's.
    unsafe { weight_grad_tiles::<L, IL>(d, dwb, add_rows) }
}

/// Adds one image's input gradient at stride S into `dx` (blocked `[C/V][H][W][V]`, no halo),
/// from `dy` padded blocked `[O/V][OH+2][OW+2][V]` and the weights `wt` blocked for the input
/// gradient ([`weights_blocked`] with `transpose`: taps turned by 180°, read back here). For
/// each tap, R output pixels x B input blocks of products summed over every output channel in
/// registers, then added to the R input pixels (S apart) the tap read; the halo takes none. At
/// stride 1 the input gradient is a convolution and takes [`forward_image`] instead; this serves
/// the strided convolutions, whose input gradient is not one. `d.ow % R == 0`,
/// `d.icb % B == 0`.
///
/// # Safety
/// As [`forward_image`].
#[inline(always)]
#[allow(clippy::needless_range_loop)] // acc[b][r] indexed by both: plain loops keep the tile in registers
unsafe fn input_grad_image<L: Lanes, const R: usize, const B: usize, const S: usize>(d: &Dims, dy: &[f32], wt: &[f32], dx: &mut [f32]) {
    let (v, ohp, owp, ocb) = (L::V, d.oh + 2, d.ow + 2, d.ocb);
    assert!(d.v == v && d.s == S && d.ow.is_multiple_of(R) && d.icb.is_multiple_of(B));
    assert!(dy.len() >= d.transposed().padded_len() && wt.len() >= d.weights_len() && dx.len() >= d.transposed().out_len());
    let block_stride = ocb * 9 * v * v;
    for cb0 in (0..d.icb).step_by(B) {
        for oy in 0..d.oh {
            for ky in 0..3 {
                // The padded input row the taps ky of output row oy read.
                let iy = S * oy + ky;
                if iy == 0 || iy > d.h {
                    continue;
                }
                for ox0 in (0..d.ow).step_by(R) {
                    for kx in 0..3 {
                        // SAFETY: every offset below is inside the slices, by the sizes asserted
                        // above; the input pixels written are inside the image (tested).
                        unsafe {
                            let mut acc = [[L::zero(); R]; B];
                            for ob in 0..ocb {
                                let row = dy.as_ptr().add(((ob * ohp + oy + 1) * owp + ox0 + 1) * v);
                                let tap = wt.as_ptr().add(((cb0 * ocb + ob) * 9 + 8 - (ky * 3 + kx)) * v * v);
                                for i in 0..v {
                                    let wv = std::array::from_fn(|b| L::load(tap.add(b * block_stride + i * v)));
                                    tile_fmas::<L, R, B>(&mut acc, row.add(i), v, wv);
                                }
                            }
                            for r in 0..R {
                                // The padded input column of output pixel ox0 + r's tap kx.
                                let ix = S * (ox0 + r) + kx;
                                if ix == 0 || ix > d.w {
                                    continue;
                                }
                                for (b, tile) in acc.iter().enumerate() {
                                    let p = dx.as_mut_ptr().add((((cb0 + b) * d.h + iy - 1) * d.w + ix - 1) * v);
                                    L::store(p, L::add(L::load(p), tile[r]));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A kernel for one image with the forward's arguments: [`forward_image`] or
/// [`input_grad_image`] at one instruction set, tile and stride.
type ImageKernel = unsafe fn(&Dims, &[f32], &[f32], &mut [f32]);
/// A weight-gradient kernel for one image, as [`weight_grad_image`] or [`weight_grad_s2_image`].
type GradKernel = unsafe fn(&Dims, &[f32], &[f32], &mut [f32]);
/// [`to_padded`] at one instruction set.
type ToPadded = unsafe fn(&Dims, &[f32], &mut [f32]);
/// [`from_blocked`] at one instruction set.
type FromBlocked = unsafe fn(&Dims, &[f32], &mut [f32], bool);

/// The first tile (R pixels, B blocks) of the list with R dividing `$w` and B dividing `$blocks`,
/// as `$isa::$kernel::<R, B, $s>`; the list ends with (1, 1), which fits every shape.
macro_rules! choose_tile {
    ($isa:ident::$kernel:ident, $s:literal; $w:expr, $blocks:expr; $($r:literal => [$($b:literal),+]),+) => {{
        let (w, blocks) = ($w, $blocks);
        $($(if w.is_multiple_of($r) && blocks.is_multiple_of($b) {
            return $isa::$kernel::<$r, $b, $s> as ImageKernel;
        })+)+
        $isa::$kernel::<1, 1, $s> as ImageKernel
    }};
}

/// The kernels at one instruction set (`$features`, the lanes `$lanes`, IL input lanes a
/// weight-gradient tile): each function only enables the instructions for the generic kernel.
#[cfg(target_arch = "x86_64")]
macro_rules! isa_entries {
    ($isa:ident, $lanes:ident, $features:literal, $il:literal) => {
        mod $isa {
            use super::super::lanes::$lanes;
            use super::super::*;

            #[target_feature(enable = $features)]
            pub(super) unsafe fn forward<const R: usize, const B: usize, const S: usize>(d: &Dims, x: &[f32], wb: &[f32], y: &mut [f32]) {
                unsafe { forward_image::<$lanes, R, B, S>(d, x, wb, y) }
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn input_grad<const R: usize, const B: usize, const S: usize>(d: &Dims, dy: &[f32], wt: &[f32], dx: &mut [f32]) {
                unsafe { input_grad_image::<$lanes, R, B, S>(d, dy, wt, dx) }
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn weight_grad(d: &Dims, x: &[f32], dy: &[f32], dwb: &mut [f32]) {
                unsafe { weight_grad_image::<$lanes, $il>(d, x, dy, dwb) }
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn weight_grad_s2(d: &Dims, x: &[f32], dy: &[f32], dwb: &mut [f32]) {
                unsafe { weight_grad_s2_image::<$lanes, $il>(d, x, dy, dwb) }
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn to_padded(d: &Dims, src: &[f32], dst: &mut [f32]) {
                unsafe { super::super::to_padded::<$lanes>(d, src, dst) }
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn from_blocked(d: &Dims, src: &[f32], dst: &mut [f32], add: bool) {
                unsafe { super::super::from_blocked::<$lanes>(d, src, dst, add) }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod entries {
    use super::*;

    isa_entries!(avx512, Avx512, "avx512f,avx2,fma", 8);
    isa_entries!(avx2, Avx2, "avx2,fma", 4);

    /// The forward kernel for `d` at `level`: tiles of at most 28 accumulators of 32 registers
    /// (AVX-512), 8 of 16 (AVX2, which also holds 3 B weights: the (4, 2) and (7, 1) tiles the
    /// dispatch takes fit; the narrower ones, for tests' shapes, spill), preferring wide rows and
    /// several output blocks. Strided convolutions have tiles for the rows the dispatch lets
    /// through only.
    pub(super) fn forward_kernel(level: Level, d: &Dims) -> ImageKernel {
        match (level, d.s) {
            (Level::Avx512, 1) => choose_tile!(avx512::forward, 1; d.ow, d.ocb; 14 => [2, 1], 7 => [4, 2, 1],
                8 => [2, 1], 4 => [4, 2, 1], 2 => [8, 4, 2, 1], 1 => [16, 8, 4, 2, 1]),
            (Level::Avx512, _) => choose_tile!(avx512::forward, 2; d.ow, d.ocb; 14 => [2, 1], 7 => [4, 2, 1],
                8 => [2, 1], 4 => [4, 2, 1]),
            (_, 1) => choose_tile!(avx2::forward, 1; d.ow, d.ocb; 4 => [2, 1], 7 => [1], 2 => [4, 2, 1], 1 => [8, 4, 2, 1]),
            _ => choose_tile!(avx2::forward, 2; d.ow, d.ocb; 4 => [2, 1], 7 => [1]),
        }
    }

    /// The input-gradient kernel for `d` at `level`, and the sizes to call it with: at stride 1
    /// the forward kernel of the transposed sizes (it overwrites), at stride 2 the scatter
    /// kernel over `d` (it adds), with the forward's tiles over input blocks.
    pub(super) fn input_grad_kernel(level: Level, d: &Dims) -> (ImageKernel, Dims) {
        // A closure: `choose_tile!` returns the kernel from it.
        let kernel = || match (level, d.s) {
            (_, 1) => forward_kernel(level, &d.transposed()),
            (Level::Avx512, _) => choose_tile!(avx512::input_grad, 2; d.ow, d.icb; 14 => [2, 1], 7 => [4, 2, 1],
                8 => [2, 1], 4 => [4, 2, 1]),
            _ => choose_tile!(avx2::input_grad, 2; d.ow, d.icb; 4 => [2, 1], 7 => [1]),
        };
        (kernel(), if d.s == 1 { d.transposed() } else { *d })
    }

    pub(super) fn grad_kernel(level: Level, d: &Dims) -> GradKernel {
        match (level, d.s) {
            (Level::Avx512, 1) => avx512::weight_grad,
            (Level::Avx512, _) => avx512::weight_grad_s2,
            (_, 1) => avx2::weight_grad,
            _ => avx2::weight_grad_s2,
        }
    }

    /// The layout changes at `level`: into the padded blocked layout, and back out of it.
    pub(super) fn conversions(level: Level) -> (ToPadded, FromBlocked) {
        match level {
            Level::Avx512 => (avx512::to_padded, avx512::from_blocked),
            _ => (avx2::to_padded, avx2::from_blocked),
        }
    }
}

/// The lanes of `level` (AVX-512 or AVX2).
fn lanes_of(level: Level) -> usize {
    if level == Level::Avx512 { 16 } else { 8 }
}

/// Panics unless the CPU runs `level` and it has direct kernels: the kernels' instructions
/// must exist.
fn assert_runs(level: Level) {
    assert!(matches!(level, Level::Avx512 | Level::Avx2) && simd::within(level) == level, "no direct kernels at {level:?} here");
}

/// [`forward`] at `level` (from [`applicable`], or [`simd::available`] in tests).
fn forward_at(level: Level, g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    assert_runs(level);
    let d = Dims::new(lanes_of(level), g);
    let wb = weights_blocked(&d, w, false);
    let kernel = entries::forward_kernel(level, &d);
    let (to_padded, from_blocked) = entries::conversions(level);
    let (in_len, out_len) = (g.c_in * g.h * g.w, g.c_out * g.oh * g.ow);
    x.par_chunks(in_len).zip(y.par_chunks_mut(out_len)).for_each_init(
        || (vec![0.0f32; d.padded_len()], vec![0.0f32; d.out_len()]),
        |(xp, yb), (xi, yi)| {
            // SAFETY: `level` is one the CPU runs (asserted); the buffers have `d`'s lengths.
            unsafe {
                to_padded(&d, xi, xp);
                kernel(&d, xp, &wb, yb);
                from_blocked(&d, yb, yi, false);
            }
        },
    );
}

/// [`backward`] at `level`.
#[allow(clippy::too_many_arguments)] // backward's arguments and the level
fn backward_at(level: Level, g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32], dx: Option<&mut [f32]>, store: Store, dw: &mut [f32]) {
    assert_runs(level);
    let d = Dims::new(lanes_of(level), g);
    let dt = d.transposed();
    let wt = weights_blocked(&d, w, true);
    let ((data_kernel, data_dims), grad_kernel) = (entries::input_grad_kernel(level, &d), entries::grad_kernel(level, &d));
    let (to_padded, from_blocked) = entries::conversions(level);
    let (in_len, out_len) = (g.c_in * g.h * g.w, g.c_out * g.oh * g.ow);
    let task_images = g.batch.div_ceil(REDUCE_TASKS);
    let run_task = |xs: &[f32], dys: &[f32], mut dxs: Option<&mut [f32]>| -> Vec<f32> {
        let mut dwb = vec![0.0f32; d.weights_len()];
        let (mut xp, mut dyp, mut dxb) = (vec![0.0f32; d.padded_len()], vec![0.0f32; dt.padded_len()], vec![0.0f32; dt.out_len()]);
        for (i, (xi, dyi)) in xs.chunks_exact(in_len).zip(dys.chunks_exact(out_len)).enumerate() {
            // SAFETY: `level` is one the CPU runs (asserted); the buffers have `d`'s lengths, or
            // the transposed sizes' for the output gradient and the input gradient.
            unsafe {
                to_padded(&d, xi, &mut xp);
                to_padded(&dt, dyi, &mut dyp);
                grad_kernel(&d, &xp, &dyp, &mut dwb);
                if let Some(dxs) = dxs.as_deref_mut() {
                    // The strided kernel adds (the stride-1 one overwrites).
                    if d.s != 1 {
                        dxb.fill(0.0);
                    }
                    data_kernel(&data_dims, &dyp, &wt, &mut dxb);
                    from_blocked(&dt, &dxb, &mut dxs[i * in_len..][..in_len], store == Store::Add);
                }
            }
        }
        dwb
    };
    let xs = x.par_chunks(task_images * in_len);
    let dys = dy.par_chunks(task_images * out_len);
    let parts: Vec<Vec<f32>> = match dx {
        Some(dx) => xs
            .zip(dys)
            .zip(dx.par_chunks_mut(task_images * in_len))
            .map(|((xs, dys), dxs)| run_task(xs, dys, Some(dxs)))
            .collect(),
        None => xs.zip(dys).map(|(xs, dys)| run_task(xs, dys, None)).collect(),
    };
    // The chunks' sums added in order, back to [O, C, 3, 3], into dw.
    let (v, c) = (d.v, g.c_in);
    dw.par_chunks_mut(c * 9).enumerate().for_each(|(oc, row)| {
        for (ic, taps) in row.chunks_exact_mut(9).enumerate() {
            let first = ((oc / v * d.icb + ic / v) * 9 * v + ic % v) * v + oc % v;
            for (t, out) in taps.iter_mut().enumerate() {
                let at = first + t * v * v;
                let mut sum = parts[0][at];
                for part in &parts[1..] {
                    sum += part[at];
                }
                *out += sum;
            }
        }
    });
}

#[cfg(test)]
mod tests;
