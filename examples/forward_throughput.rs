//! Times feature extraction (the backbone in evaluation mode, no gradient: the work `ssl probe`
//! and `ssl knn` do before their classifiers) on the two reference backbones, like
//! `../shared/bench/torch_forward.py`:
//! `cargo run --release --example forward_throughput -- THREADS BATCH IMAGES [BACKBONE|all]`.
//! Prints images/s and peak RSS per backbone.

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

use dfdx::prelude::*;
use ssl::models::resnet::{ResNet18Cifar, SmallFmnist};

macro_rules! time_forward {
    ($name:expr, $model:ty, $c:expr, $hw:expr, $batch:expr, $images:expr, $threads:expr) => {{
        let dev = Cpu::seed_from_u64(0);
        let model = dev.build_module::<$model, f32>();
        let x: Tensor<(usize, Const<$c>, usize, usize), f32, _> = dev.sample_normal_like(&($batch, Const, $hw, $hw));
        let _ = model.forward(x.clone()); // warm-up
        let t0 = std::time::Instant::now();
        let mut done = 0;
        while done < $images {
            let features = model.forward(x.clone());
            std::hint::black_box(&features);
            done += $batch;
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "{}: forward batch {}, {:.1} images/s, threads {}, peak RSS {:.0} MiB",
            $name,
            $batch,
            done as f64 / dt,
            $threads,
            ssl::alloc::peak_rss_mib()
        );
    }};
}

fn main() {
    ssl::alloc::keep_freed_memory();
    if let Err(e) = ssl::simd::kernels_asked() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let images: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let which = args.get(4).cloned().unwrap_or_else(|| "all".into());
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    if which == "all" || which == "resnet18_cifar" {
        time_forward!("resnet18_cifar 32x32x3", ResNet18Cifar, 3, 32, batch, images, threads);
    }
    if which == "all" || which == "small_fmnist" {
        time_forward!("small_fmnist 28x28x1", SmallFmnist, 1, 28, batch, images, threads);
    }
}
