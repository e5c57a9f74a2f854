//! One whole SimCLR training step (batch 128, so 256 views; NT-Xent at temperature 0.5; SGD
//! with momentum 0.9) on the two reference backbones. Throughput is in views.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dfdx::optim::{Momentum, Sgd, SgdConfig, WeightDecay};
use dfdx::prelude::*;
use ssl::models::heads::ProjectionMlp;
use ssl::models::resnet::{ResNet18Cifar, SmallFmnist};
use ssl::train::step::simclr_step;

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

const BATCH: usize = 128;

macro_rules! step_case {
    ($g:expr, $name:expr, $model:ty, $c:expr, $hw:expr) => {{
        let dev = Cpu::seed_from_u64(0);
        let mut model = dev.build_module::<$model, f32>();
        let cfg = SgdConfig { lr: 0.1, momentum: Some(Momentum::Classic(0.9)), weight_decay: Some(WeightDecay::L2(1e-4)) };
        let mut opt = Sgd::new(&model, cfg);
        let x: Tensor<(usize, Const<$c>, usize, usize), f32, _> = dev.sample_normal_like(&(2 * BATCH, Const, $hw, $hw));
        let mut grads = None;
        $g.throughput(Throughput::Elements(2 * BATCH as u64));
        $g.bench_function($name, |b| b.iter(|| simclr_step(&mut model, &mut opt, &mut grads, x.clone(), 0.5)));
    }};
}

fn bench(c: &mut Criterion) {
    ssl::alloc::keep_freed_memory();
    let mut g = c.benchmark_group("simclr_step_b128");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_secs(1));
    step_case!(g, "small_fmnist 28x28x1", (SmallFmnist, ProjectionMlp<128, 512, 128>), 1, 28);
    g.measurement_time(std::time::Duration::from_secs(120));
    step_case!(g, "resnet18_cifar 32x32x3", (ResNet18Cifar, ProjectionMlp<512, 512, 128>), 3, 32);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
