//! Times the SimCLR training step on the two reference backbones, like
//! `../shared/bench/torch_simclr_step.py`:
//! `cargo run --release --example simclr_step -- THREADS BATCH STEPS [BACKBONE|all] [cpu|cuda]`
//! (`cuda` needs `--features cuda`). Prints views/s and peak RSS per backbone.

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

use dfdx::optim::{Momentum, Sgd, SgdConfig, WeightDecay};
use dfdx::prelude::*;
use ssl::models::heads::ProjectionMlp;
use ssl::models::resnet::{ResNet18Cifar, SmallFmnist};
use ssl::train::step::simclr_step;

macro_rules! time_step {
    ($dev:expr, $name:expr, $model:ty, $c:expr, $hw:expr, $batch:expr, $steps:expr, $threads:expr) => {{
        let dev = $dev;
        let mut model = dev.build_module::<$model, f32>();
        let cfg = SgdConfig { lr: 0.1, momentum: Some(Momentum::Classic(0.9)), weight_decay: Some(WeightDecay::L2(1e-4)) };
        let mut opt = Sgd::new(&model, cfg);
        let x: Tensor<(usize, Const<$c>, usize, usize), f32, _> = dev.sample_normal_like(&(2 * $batch, Const, $hw, $hw));
        let mut grads = None;
        simclr_step(&mut model, &mut opt, &mut grads, x.clone(), 0.5);
        let t0 = std::time::Instant::now();
        for _ in 0..$steps {
            simclr_step(&mut model, &mut opt, &mut grads, x.clone(), 0.5);
        }
        let dt = t0.elapsed().as_secs_f64() / $steps as f64;
        println!(
            "{}: batch {} (x2 views) {:.0} ms/step, {:.1} views/s, threads {}, peak RSS {:.0} MiB, {}",
            $name,
            $batch,
            dt * 1000.0,
            2.0 * $batch as f64 / dt,
            $threads,
            ssl::alloc::peak_rss_mib(),
            std::any::type_name_of_val(&dev).rsplit("::").next().unwrap_or("?").to_lowercase()
        );
    }};
}

fn main() {
    ssl::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let which = args.get(4).cloned().unwrap_or_else(|| "all".into());
    let device = args.get(5).cloned().unwrap_or_else(|| "cpu".into());
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    macro_rules! both {
        ($dev:expr) => {{
            if which == "all" || which == "resnet18_cifar" {
                time_step!($dev, "resnet18_cifar 32x32x3", (ResNet18Cifar, ProjectionMlp<512, 512, 128>), 3, 32, batch, steps, threads);
            }
            if which == "all" || which == "small_fmnist" {
                time_step!($dev, "small_fmnist 28x28x1", (SmallFmnist, ProjectionMlp<128, 512, 128>), 1, 28, batch, steps, threads);
            }
        }};
    }
    match device.as_str() {
        "cpu" => both!(Cpu::seed_from_u64(0)),
        #[cfg(feature = "cuda")]
        "cuda" => both!(ssl::device::cuda(0, 0).unwrap_or_else(|e| panic!("{e}"))),
        other => panic!("device '{other}': cpu, or cuda in a build with --features cuda"),
    }
}
