//! A probe for the CPU engine's convolutions (issue 17), not part of the product.
//!
//! `cargo run --release --example direct_conv_probe -- THREADS`: how fast direct 3x3 stride-1
//! convolutions on a channel-blocked layout (16 channels a vector, a zero halo around each plane)
//! run on the small ResNet's shapes: a plain-Rust kernel (autovectorised multiply then add), and
//! AVX-512 FMA kernels (R pixels x B output blocks of accumulators) forward and for the weight
//! gradient; beside the product's convolution (`Conv2D`) forward, and forward + backward.
//! `... -- THREADS layers`: only the product's convolution, on the 3x3 stride-1 shapes of both
//! reference backbones at 256 views (run it from two builds to compare them).
//!
//! Measured on the 2-core Xeon (2026-12-02), 1 thread: im2col + GEMM ran 37-58 GFLOP/s forward
//! and 40-56 forward + backward; the plain-Rust direct kernel 26-31 forward; the FMA kernels
//! 82-87 forward and 65-113 for the weight gradient (layout changes excluded). Those became the
//! product's `nn::conv2d::direct` kernels.

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

use dfdx::prelude::*;
use rayon::prelude::*;
use ssl::nn::builders::Conv2D;

/// Channels a block (one AVX-512 vector of f32).
const V: usize = 16;

/// x [N, C, H, W] to [N][C/V][H+2][W+2][V], zero halo.
fn to_blocked(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let (hp, wp) = (h + 2, w + 2);
    let mut out = vec![0.0f32; n * c * hp * wp];
    out.par_chunks_mut(c * hp * wp).enumerate().for_each(|(img, o)| {
        for ch in 0..c {
            let (cb, l) = (ch / V, ch % V);
            for y in 0..h {
                for xx in 0..w {
                    o[((cb * hp + y + 1) * wp + xx + 1) * V + l] = x[((img * c + ch) * h + y) * w + xx];
                }
            }
        }
    });
    out
}

/// w [O, C, 3, 3] to [O/V][C/V][3][3][V in][V out].
fn weights_blocked(w: &[f32], o: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; o * c * 9];
    for oc in 0..o {
        for ic in 0..c {
            for t in 0..9 {
                let (ob, ol, ib, il) = (oc / V, oc % V, ic / V, ic % V);
                out[((((ob * (c / V) + ib) * 9 + t) * V + il) * V) + ol] = w[(oc * c + ic) * 9 + t];
            }
        }
    }
    out
}

/// The direct forward: x blocked and padded, weights blocked; y [N][O/V][H][W][V]. `R` output
/// pixels of a row a register tile.
fn direct<const R: usize>(x: &[f32], wb: &[f32], n: usize, c: usize, o: usize, h: usize, w: usize) -> Vec<f32> {
    let (hp, wp, icb, ocb) = (h + 2, w + 2, c / V, o / V);
    let mut y = vec![0.0f32; n * o * h * w];
    y.par_chunks_mut(o * h * w).enumerate().for_each(|(img, yi)| {
        let xi = &x[img * c * hp * wp..][..c * hp * wp];
        ssl::simd::run(
            #[inline(always)]
            || {
                for ob in 0..ocb {
                    for oy in 0..h {
                        let mut ox0 = 0;
                        while ox0 < w {
                            let mut acc = [[0.0f32; V]; R];
                            let rr = R.min(w - ox0);
                            for ib in 0..icb {
                                for ky in 0..3 {
                                    let row = &xi[((ib * hp + oy + ky) * wp) * V..][..wp * V];
                                    for kx in 0..3 {
                                        let wt = &wb[((ob * icb + ib) * 9 + ky * 3 + kx) * V * V..][..V * V];
                                        for i in 0..V {
                                            let wv: &[f32; V] = wt[i * V..][..V].try_into().unwrap();
                                            for (r, a) in acc.iter_mut().enumerate().take(rr) {
                                                let s = row[(ox0 + r + kx) * V + i];
                                                // A multiply and an add (Rust never fuses them;
                                                // `f32::mul_add` here became a libm call, 2-6 GFLOP/s).
                                                for l in 0..V {
                                                    a[l] += s * wv[l];
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                            for (r, a) in acc.iter().enumerate().take(rr) {
                                yi[((ob * h + oy) * w + ox0 + r) * V..][..V].copy_from_slice(a);
                            }
                            ox0 += R;
                        }
                    }
                }
            },
        )
    });
    y
}

/// The same direct forward with AVX-512 FMA intrinsics: R output pixels x B blocks of 16 output
/// channels of accumulators in registers; each weight vector loaded once and used R times, each
/// input value broadcast once and used B times. `w` must be a multiple of `R`, the output blocks of `B`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn direct_fma_image<const R: usize, const B: usize>(xi: &[f32], wb: &[f32], yi: &mut [f32], c: usize, o: usize, h: usize, w: usize) {
    use std::arch::x86_64::*;
    let (hp, wp, icb, ocb) = (h + 2, w + 2, c / V, o / V);
    assert!(w % R == 0 && ocb % B == 0 && xi.len() >= c * hp * wp && yi.len() >= o * h * w && wb.len() >= o * c * 9);
    for ob0 in (0..ocb).step_by(B) {
        for oy in 0..h {
            for ox0 in (0..w).step_by(R) {
                let mut acc = [[_mm512_setzero_ps(); R]; B];
                for ib in 0..icb {
                    for ky in 0..3 {
                        let row = xi[((ib * hp + oy + ky) * wp + ox0) * V..].as_ptr();
                        for kx in 0..3 {
                            let tap = (ib * 9 + ky * 3 + kx) * V * V;
                            for i in 0..V {
                                // SAFETY: the assert above bounds every offset read here.
                                unsafe {
                                    let mut wv = [_mm512_setzero_ps(); B];
                                    for (b, v) in wv.iter_mut().enumerate() {
                                        *v = _mm512_loadu_ps(wb.as_ptr().add((ob0 + b) * icb * 9 * V * V + tap + i * V));
                                    }
                                    for r in 0..R {
                                        let xv = _mm512_set1_ps(*row.add((r + kx) * V + i));
                                        for b in 0..B {
                                            acc[b][r] = _mm512_fmadd_ps(xv, wv[b], acc[b][r]);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                for (b, ab) in acc.iter().enumerate() {
                    for (r, a) in ab.iter().enumerate() {
                        // SAFETY: inside yi (the assert above).
                        unsafe { _mm512_storeu_ps(yi[(((ob0 + b) * h + oy) * w + ox0 + r) * V..].as_mut_ptr(), *a) };
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn direct_fma<const R: usize, const B: usize>(x: &[f32], wb: &[f32], n: usize, c: usize, o: usize, h: usize, w: usize) -> Vec<f32> {
    let (hp, wp) = (h + 2, w + 2);
    let mut y = vec![0.0f32; n * o * h * w];
    y.par_chunks_mut(o * h * w).enumerate().for_each(|(img, yi)| {
        let xi = &x[img * c * hp * wp..][..c * hp * wp];
        // SAFETY: only called where the CPU has AVX-512 (checked in `probe`).
        unsafe { direct_fma_image::<R, B>(xi, wb, yi, c, o, h, w) }
    });
    y
}

/// Weight gradient of one image added into `dw` (blocked as `weights_blocked`): for each pair of
/// channel blocks and each tap, 16 accumulators (one per input channel of the block, 16 output
/// channels each) over every output pixel: dy's vector loaded once, x's value broadcast.
/// x padded [C/V][H+2][W+2][V], dy [O/V][H][W][V].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn weight_grad_image(xi: &[f32], dyi: &[f32], dw: &mut [f32], c: usize, o: usize, h: usize, w: usize) {
    use std::arch::x86_64::*;
    let (hp, wp, icb, ocb) = (h + 2, w + 2, c / V, o / V);
    assert!(xi.len() >= c * hp * wp && dyi.len() >= o * h * w && dw.len() >= o * c * 9);
    for ob in 0..ocb {
        for ib in 0..icb {
            for t in 0..9 {
                let (ky, kx) = (t / 3, t % 3);
                let dst = dw[((ob * icb + ib) * 9 + t) * V * V..].as_mut_ptr();
                // SAFETY: every offset is inside the slices (the assert above).
                unsafe {
                    let mut acc = [_mm512_setzero_ps(); V];
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_loadu_ps(dst.add(i * V));
                    }
                    for oy in 0..h {
                        let xrow = xi[((ib * hp + oy + ky) * wp + kx) * V..].as_ptr();
                        let dyrow = dyi[((ob * h + oy) * w) * V..].as_ptr();
                        for ox in 0..w {
                            let g = _mm512_loadu_ps(dyrow.add(ox * V));
                            for (i, a) in acc.iter_mut().enumerate() {
                                *a = _mm512_fmadd_ps(_mm512_set1_ps(*xrow.add(ox * V + i)), g, *a);
                            }
                        }
                    }
                    for (i, a) in acc.iter().enumerate() {
                        _mm512_storeu_ps(dst.add(i * V), *a);
                    }
                }
            }
        }
    }
}

/// The weight gradient over the batch: images in `CHUNKS` fixed chunks (whatever the thread
/// count), each chunk's partial sum in its own buffer, the partials added in chunk order.
#[cfg(target_arch = "x86_64")]
fn weight_grad(x: &[f32], dy: &[f32], n: usize, c: usize, o: usize, h: usize, w: usize) -> Vec<f32> {
    const CHUNKS: usize = 8;
    let (hp, wp) = (h + 2, w + 2);
    let per = n.div_ceil(CHUNKS);
    let mut parts = vec![0.0f32; CHUNKS * o * c * 9];
    parts.par_chunks_mut(o * c * 9).enumerate().for_each(|(k, dw)| {
        for img in (k * per)..((k + 1) * per).min(n) {
            let xi = &x[img * c * hp * wp..][..c * hp * wp];
            let dyi = &dy[img * o * h * w..][..o * h * w];
            // SAFETY: only called where the CPU has AVX-512 (checked in `probe`).
            unsafe { weight_grad_image(xi, dyi, dw, c, o, h, w) }
        }
    });
    let mut out = parts[..o * c * 9].to_vec();
    for p in parts.chunks(o * c * 9).skip(1) {
        out.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    out
}

fn probe<const C: usize, const R: usize, const RF: usize, const B: usize>(n: usize, hw: usize, reps: usize) {
    let dev = Cpu::seed_from_u64(0);
    let conv = dev.build_module::<Conv2D<C, C, 3, 1, 1>, f32>();
    let x: Tensor<(usize, Const<C>, usize, usize), f32, _> = dev.sample_normal_like(&(n, Const, hw, hw));
    let t0 = std::time::Instant::now();
    let mut y = conv.forward(x.clone());
    for _ in 1..reps {
        y = conv.forward(x.clone());
    }
    let t_gemm = t0.elapsed().as_secs_f64() / reps as f64;
    // Forward and backward (input and weight gradients) through the tape, for the same shape.
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        let g = conv.forward(x.leaky_trace()).sum().backward();
        std::hint::black_box(&g);
    }
    let t_train = t0.elapsed().as_secs_f64() / reps as f64;
    let (xv, wv) = (x.as_vec(), conv.weight.as_vec());
    let wb = weights_blocked(&wv, C, C);
    let t0 = std::time::Instant::now();
    let mut yb = Vec::new();
    for _ in 0..reps {
        let xb = to_blocked(&xv, n, C, hw, hw);
        yb = direct::<R>(&xb, &wb, n, C, C, hw, hw);
    }
    let t_direct = t0.elapsed().as_secs_f64() / reps as f64;
    let mut t_fma = f64::NAN;
    if std::arch::is_x86_feature_detected!("avx512f") {
        let xb = to_blocked(&xv, n, C, hw, hw);
        let t0 = std::time::Instant::now();
        let mut yf = Vec::new();
        for _ in 0..reps {
            yf = direct_fma::<RF, B>(&xb, &wb, n, C, C, hw, hw);
        }
        t_fma = t0.elapsed().as_secs_f64() / reps as f64;
        let d = yf.iter().zip(&yb).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        // Weight gradient with dy = the forward output (any values do); checked against dfdx's.
        let t0 = std::time::Instant::now();
        let mut dwb = Vec::new();
        for _ in 0..reps {
            dwb = weight_grad(&xb, &yf, n, C, C, hw, hw);
        }
        let t_wg = t0.elapsed().as_secs_f64() / reps as f64;
        let dy_nchw: Vec<f32> = (0..n * C * hw * hw)
            .map(|k| {
                let (img, oc, p) = (k / (C * hw * hw), (k / (hw * hw)) % C, k % (hw * hw));
                yf[(((img * (C / V) + oc / V) * hw * hw) + p) * V + oc % V]
            })
            .collect();
        let dyt: Tensor<(usize, Const<C>, usize, usize), f32, _> = dev.tensor_from_vec(dy_nchw, (n, Const, hw, hw));
        let g = (conv.forward(x.leaky_trace()) * dyt).sum().backward();
        let dw_ref = weights_blocked(&g.get(&conv.weight).as_vec(), C, C);
        let scale = dw_ref.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let dd = dwb.iter().zip(&dw_ref).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("  AVX-512 weight gradient: {:.1} ms ({:.0} GFLOP/s), max |diff| to dfdx's {:.2e} relative", t_wg * 1e3, 2.0 * (n * C * C * 9 * hw * hw) as f64 / t_wg / 1e9, dd / scale);
        println!("  AVX-512 FMA direct {RF} px x {B} blocks (layout change excluded): {:.1} ms ({:.0} GFLOP/s), max |diff| to plain {d:.2e}", t_fma * 1e3, 2.0 * (n * C * C * 9 * hw * hw) as f64 / t_fma / 1e9);
    }
    let _ = t_fma;
    let yv = y.as_vec();
    let mut worst = 0.0f32;
    for img in 0..n {
        for oc in 0..C {
            for p in 0..hw * hw {
                let a = yv[(img * C + oc) * hw * hw + p];
                let b = yb[(((img * (C / V) + oc / V) * hw * hw) + p) * V + oc % V];
                worst = worst.max((a - b).abs());
            }
        }
    }
    let flops = 2.0 * (n * C * C * 9 * hw * hw) as f64;
    println!(
        "3x3 {C}->{C} at {hw}x{hw}, batch {n}: im2col+GEMM {:.1} ms ({:.0} GFLOP/s); direct, layout change included: {:.1} ms ({:.0} GFLOP/s); max |diff| {worst:.2e}; im2col+GEMM forward+backward {:.1} ms ({:.0} GFLOP/s)",
        t_gemm * 1e3,
        flops / t_gemm / 1e9,
        t_direct * 1e3,
        flops / t_direct / 1e9,
        t_train * 1e3,
        3.0 * flops / t_train / 1e9
    );
}

/// The product's 3x3 convolution (whatever path it takes) on one shape: forward, and forward +
/// backward (input and weight gradients) through the tape.
fn layer<const C: usize>(n: usize, hw: usize, reps: usize) {
    let dev = Cpu::seed_from_u64(0);
    let conv = dev.build_module::<Conv2D<C, C, 3, 1, 1>, f32>();
    let x: Tensor<(usize, Const<C>, usize, usize), f32, _> = dev.sample_normal_like(&(n, Const, hw, hw));
    let _ = conv.forward(x.clone());
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        std::hint::black_box(conv.forward(x.clone()));
    }
    let t_fwd = t0.elapsed().as_secs_f64() / reps as f64;
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        std::hint::black_box(conv.forward(x.leaky_trace()).sum().backward());
    }
    let t_train = t0.elapsed().as_secs_f64() / reps as f64;
    let flops = 2.0 * (n * C * C * 9 * hw * hw) as f64;
    println!(
        "layer 3x3 {C}->{C} at {hw}x{hw}, batch {n}: forward {:.1} ms ({:.0} GFLOP/s), forward+backward {:.1} ms ({:.0} GFLOP/s)",
        t_fwd * 1e3,
        flops / t_fwd / 1e9,
        t_train * 1e3,
        3.0 * flops / t_train / 1e9
    );
}

fn main() {
    ssl::alloc::keep_freed_memory();
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    println!("threads {threads}, instruction set {:?}", ssl::simd::level());
    if std::env::args().nth(2).as_deref() == Some("layers") {
        // The 3x3 stride-1 shapes of the small Fashion-MNIST ResNet and of ResNet-18 (CIFAR), 256 views.
        layer::<32>(256, 28, 3);
        layer::<64>(256, 14, 3);
        layer::<128>(256, 7, 3);
        layer::<64>(256, 32, 2);
        layer::<128>(256, 16, 2);
        layer::<256>(256, 8, 2);
        layer::<512>(256, 4, 2);
        return;
    }
    probe::<32, 14, 14, 2>(256, 28, 5);
    probe::<64, 14, 7, 4>(256, 14, 5);
    probe::<128, 7, 7, 4>(256, 7, 5);
}
