//! Times the SimCLR training step on the two reference backbones, like
//! `../shared/bench/torch_simclr_step.py`:
//! `cargo run --release --example simclr_step -- THREADS BATCH STEPS [BACKBONE|all] [cpu|cuda]`
//! (`cuda` needs `--features cuda`). The step is the product's: `ssl::method`'s SimCLR. Prints views/s and peak RSS per backbone.

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

use ssl::device::DeviceSpec;
use ssl::method::simclr::{ProjectorConfig, SimClrConfig};
use ssl::method::{MethodConfig, StepAt};
use ssl::optim::{OptimConfig, OptimizerKind};

/// Times `steps` steps (after one untimed) of the product's SimCLR method (the network
/// `ssl pretrain` builds: backbone, run-time-width projector 512 -> 128, NT-Xent at 0.5, SGD
/// with momentum 0.9 and weight decay 1e-4 as the PyTorch script) on random views.
fn time_step(model: &str, (c, hw): (usize, usize), batch: usize, steps: usize, threads: usize, device: DeviceSpec) -> ssl::Result<()> {
    let method = MethodConfig::SimClr(SimClrConfig { temperature: 0.5, projector: ProjectorConfig { hidden: 512, out: 128, layers: 2 } });
    let opt = OptimConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut net = method.build(model, opt, 0, device)?;
    let views: Vec<f32> = (0..2 * batch * c * hw * hw).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
    let at = StepAt { lr: 0.1, step: 0, total_steps: 1, steps_per_epoch: 1 };
    net.step(views.clone(), (c, hw, hw), at)?;
    let t0 = std::time::Instant::now();
    for _ in 0..steps {
        net.step(views.clone(), (c, hw, hw), at)?;
    }
    let dt = t0.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{model} {hw}x{hw}x{c}: batch {batch} (x2 views) {:.0} ms/step, {:.1} views/s, threads {threads}, peak RSS {:.0} MiB, {device}",
        dt * 1000.0,
        2.0 * batch as f64 / dt,
        ssl::alloc::peak_rss_mib()
    );
    Ok(())
}

fn main() {
    ssl::alloc::keep_freed_memory();
    if let Err(e) = ssl::simd::kernels_asked() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let which = args.get(4).cloned().unwrap_or_else(|| "all".into());
    let device = args.get(5).cloned().unwrap_or_else(|| "cpu".into());
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    let device = match device.as_str() {
        "cpu" => DeviceSpec::Cpu,
        "cuda" => DeviceSpec::Cuda(0),
        other => panic!("device '{other}': cpu or cuda"),
    };
    for (model, shape) in [("resnet18_cifar", (3, 32)), ("small_fmnist", (1, 28))] {
        if which == "all" || which == model {
            time_step(model, shape, batch, steps, threads, device).unwrap_or_else(|e| panic!("{model}: {e}"));
        }
    }
}
