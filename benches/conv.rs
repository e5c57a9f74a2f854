//! Forward + backward of each convolution shape in ResNet-18 (CIFAR) at batch 32, and of the
//! 3x3 stride-1 shapes of the small Fashion-MNIST ResNet at batch 256; NCHW f32.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dfdx::prelude::*;
use ssl::nn::builders::Conv2D;

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};


macro_rules! conv_case {
    ($g:expr, $dev:expr, $name:expr, $conv:ty, $cin:expr, $hw:expr) => {
        conv_case!($g, $dev, $name, $conv, $cin, $hw, 32)
    };
    ($g:expr, $dev:expr, $name:expr, $conv:ty, $cin:expr, $hw:expr, $batch:expr) => {{
        let batch: usize = $batch;
        let conv = $dev.build_module::<$conv, f32>();
        let x: Tensor<(usize, Const<$cin>, usize, usize), f32, _> = $dev.sample_normal_like(&(batch, Const, $hw, $hw));
        let macs = {
            let y = conv.forward(x.clone());
            let (_, _, oh, ow) = *y.shape();
            (batch * oh * ow * conv.weight.shape().num_elements()) as u64
        };
        // Forward + backward is about three forward passes of multiply-adds.
        $g.throughput(Throughput::Elements(3 * macs));
        $g.bench_function($name, |b| {
            b.iter(|| {
                let y = conv.forward(x.leaky_trace());
                y.sum().backward()
            })
        });
    }};
}

fn bench(c: &mut Criterion) {
    ssl::alloc::keep_freed_memory();
    let dev = Cpu::seed_from_u64(0);
    let mut g = c.benchmark_group("conv_fwd_bwd_resnet18_cifar_b32");
    g.sample_size(10);
    conv_case!(g, dev, "stem 3-64 3x3 s1 @32", Conv2D<3, 64, 3, 1, 1>, 3, 32);
    conv_case!(g, dev, "64-64 3x3 s1 @32", Conv2D<64, 64, 3, 1, 1>, 64, 32);
    conv_case!(g, dev, "64-128 3x3 s2 @32", Conv2D<64, 128, 3, 2, 1>, 64, 32);
    conv_case!(g, dev, "64-128 1x1 s2 @32", Conv2D<64, 128, 1, 2, 0>, 64, 32);
    conv_case!(g, dev, "128-128 3x3 s1 @16", Conv2D<128, 128, 3, 1, 1>, 128, 16);
    conv_case!(g, dev, "128-256 3x3 s2 @16", Conv2D<128, 256, 3, 2, 1>, 128, 16);
    conv_case!(g, dev, "128-256 1x1 s2 @16", Conv2D<128, 256, 1, 2, 0>, 128, 16);
    conv_case!(g, dev, "256-256 3x3 s1 @8", Conv2D<256, 256, 3, 1, 1>, 256, 8);
    conv_case!(g, dev, "256-512 3x3 s2 @8", Conv2D<256, 512, 3, 2, 1>, 256, 8);
    conv_case!(g, dev, "256-512 1x1 s2 @8", Conv2D<256, 512, 1, 2, 0>, 256, 8);
    conv_case!(g, dev, "512-512 3x3 s1 @4", Conv2D<512, 512, 3, 1, 1>, 512, 4);
    g.finish();
    let mut g = c.benchmark_group("conv_fwd_bwd_small_fmnist_b256");
    g.sample_size(10);
    conv_case!(g, dev, "32-32 3x3 s1 @28", Conv2D<32, 32, 3, 1, 1>, 32, 28, 256);
    conv_case!(g, dev, "64-64 3x3 s1 @14", Conv2D<64, 64, 3, 1, 1>, 64, 14, 256);
    conv_case!(g, dev, "128-128 3x3 s1 @7", Conv2D<128, 128, 3, 1, 1>, 128, 7, 256);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
