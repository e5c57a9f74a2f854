//! A probe for the next step of the CPU engine (issue 17), not part of the product: how fast a
//! direct 3x3 stride-1 convolution on a channel-blocked layout (16 channels a vector, a zero halo
//! around each plane, a row of output pixels x 16 output channels of accumulators) runs against
//! the product's im2col + GEMM convolution, forward, on the small ResNet's shapes.
//! `cargo run --release --example direct_conv_probe -- THREADS`.
//! Prints the time of each, the largest difference of their outputs, and the product's
//! convolution forward + backward (input and weight gradients) for the same shape.
//!
//! Measured on the 2-core Xeon (2026-12-02): the product's convolution runs at 37-58 GFLOP/s
//! forward and 40-56 forward + backward on 1 thread (78-93 on 2); this plain-Rust direct kernel
//! (autovectorised, multiply then add) at 26-31 forward on 1 thread. A direct kernel pays only
//! with FMA intrinsics and register tiling as oneDNN's.

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

fn probe<const C: usize, const R: usize>(n: usize, hw: usize, reps: usize) {
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

fn main() {
    ssl::alloc::keep_freed_memory();
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    println!("threads {threads}, instruction set {:?}", ssl::simd::level());
    probe::<32, 14>(256, 28, 5);
    probe::<64, 14>(256, 14, 5);
    probe::<128, 7>(256, 7, 5);
}
