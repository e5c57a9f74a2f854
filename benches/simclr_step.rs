//! One whole SimCLR training step as `ssl pretrain` runs it (batch 128, so 256 views; the
//! method's network with a 512 -> 128 projector; NT-Xent at temperature 0.5; SGD with momentum
//! 0.9) on the two reference backbones. Throughput is in views.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssl::device::DeviceSpec;
use ssl::method::simclr::{ProjectorConfig, SimClrConfig};
use ssl::method::{MethodConfig, StepAt};
use ssl::optim::{OptimConfig, OptimizerKind};

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

const BATCH: usize = 128;

fn step_case(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, model: &str, (c, hw): (usize, usize)) {
    let method = MethodConfig::SimClr(SimClrConfig { temperature: 0.5, projector: ProjectorConfig { hidden: 512, out: 128, layers: 2 } });
    let opt = OptimConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut net = method.build(model, opt, 0, DeviceSpec::Cpu).expect("a reference backbone builds");
    let views: Vec<f32> = (0..2 * BATCH * c * hw * hw).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
    let at = StepAt { lr: 0.1, step: 0, total_steps: 1, steps_per_epoch: 1 };
    g.throughput(Throughput::Elements(2 * BATCH as u64));
    g.bench_function(name, |b| b.iter(|| net.step(views.clone(), (c, hw, hw), at).expect("a CPU step")));
}

fn bench(c: &mut Criterion) {
    ssl::alloc::keep_freed_memory();
    let mut g = c.benchmark_group("simclr_step_b128");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_secs(1));
    step_case(&mut g, "small_fmnist 28x28x1", "small_fmnist", (1, 28));
    g.measurement_time(std::time::Duration::from_secs(120));
    step_case(&mut g, "resnet18_cifar 32x32x3", "resnet18_cifar", (3, 32));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
