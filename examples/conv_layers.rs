//! The speed of the product's 3x3 stride-1 convolutions (issue 17): forward, and forward +
//! backward (input and weight gradients) through dfdx's tape, on the shapes of both reference
//! backbones at 256 views, in GFLOP/s. Run it from two builds to compare them (the machine's
//! speed drifts: alternate them).
//!
//! `cargo run --release --example conv_layers -- THREADS`
//!
//! Measured on the 2-core Xeon (2026-12-02), 1 thread: im2col + GEMM ran 37-58 GFLOP/s forward
//! and 40-56 forward + backward; a plain-Rust direct kernel on a 16-channel blocked layout
//! (autovectorised multiply then add) 26-31 forward; with AVX-512 FMA intrinsics and register
//! tiles 82-87 forward and 65-113 for the weight gradient, layout changes excluded (the probe
//! this example replaced, 4420741). Those became `nn::conv2d::direct`.

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

use dfdx::prelude::*;
use ssl::nn::builders::Conv2D;

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
    // The small Fashion-MNIST ResNet's, then ResNet-18's (CIFAR).
    layer::<32>(256, 28, 3);
    layer::<64>(256, 14, 3);
    layer::<128>(256, 7, 3);
    layer::<64>(256, 32, 2);
    layer::<128>(256, 16, 2);
    layer::<256>(256, 8, 2);
    layer::<512>(256, 4, 2);
}
