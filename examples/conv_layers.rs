//! The speed of the product's 3x3 convolutions (issue 17), stride 1 and the downsampling
//! stride 2: forward, and forward + backward (input and weight gradients) through dfdx's tape,
//! on the shapes of both reference backbones at 256 views, in GFLOP/s, from the fastest of a
//! few repetitions. Run it from two builds to compare them (the machine's speed drifts:
//! alternate them).
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

/// The product's 3x3 convolution `C -> O` at stride `S` (whatever path it takes) on one shape:
/// forward, and forward + backward (input and weight gradients) through the tape.
fn layer<const C: usize, const O: usize, const S: usize>(n: usize, hw: usize, reps: usize) {
    let dev = Cpu::seed_from_u64(0);
    let conv = dev.build_module::<Conv2D<C, O, 3, S, 1>, f32>();
    let x: Tensor<(usize, Const<C>, usize, usize), f32, _> = dev.sample_normal_like(&(n, Const, hw, hw));
    let _ = conv.forward(x.clone());
    // The fastest of the repetitions: the machine's speed drifts, the minimum least.
    let best = |run: &dyn Fn()| {
        (0..reps)
            .map(|_| {
                let t0 = std::time::Instant::now();
                run();
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let t_fwd = best(&|| drop(std::hint::black_box(conv.forward(x.clone()))));
    let t_train = best(&|| drop(std::hint::black_box(conv.forward(x.leaky_trace()).sum().backward())));
    let out = (hw - 1) / S + 1;
    let flops = 2.0 * (n * O * C * 9 * out * out) as f64;
    println!(
        "layer 3x3 {C}->{O} stride {S} at {hw}x{hw}, batch {n}: forward {:.1} ms ({:.0} GFLOP/s), forward+backward {:.1} ms ({:.0} GFLOP/s)",
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
    layer::<32, 32, 1>(256, 28, 5);
    layer::<32, 64, 2>(256, 28, 5);
    layer::<64, 64, 1>(256, 14, 5);
    layer::<64, 128, 2>(256, 14, 5);
    layer::<128, 128, 1>(256, 7, 5);
    layer::<64, 64, 1>(256, 32, 3);
    layer::<64, 128, 2>(256, 32, 3);
    layer::<128, 128, 1>(256, 16, 3);
    layer::<128, 256, 2>(256, 16, 3);
    layer::<256, 256, 1>(256, 8, 3);
    layer::<256, 512, 2>(256, 8, 3);
    layer::<512, 512, 1>(256, 4, 3);
}
