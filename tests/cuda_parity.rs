//! CPU vs CUDA parity: forward and backward of every layer the project owns, the optimisers' updates,
//! and whole SimCLR and fine-tuning steps, agree within float tolerance. Built only with `--features cuda`
//! (`cargo test --release --features cuda --test cuda_parity`); where no GPU answers, each
//! test says so on stderr and passes without checking anything.
#![cfg(feature = "cuda")]

use std::io::Write;

use dfdx::nn::ToDevice;
use dfdx::prelude::*;
use ssl::device::DeviceSpec;
use ssl::nn::builders;
use ssl::method::simclr::ProjectorConfig;
use ssl::method::{MethodConfig, SimClrConfig, StepAt};

/// The GPU, or `None` after a visible message (not captured by the test harness).
fn gpu() -> Option<Cuda> {
    match ssl::device::cuda(0, 0) {
        Ok(d) => Some(d),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED (no usable CUDA device: {e})");
            None
        }
    }
}

/// Values agree to `tol` relative to the larger magnitude (or absolute below 1).
fn close(what: &str, cpu: &[f32], gpu: &[f32], tol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths");
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        let err = (a - b).abs() / a.abs().max(b.abs()).max(1.0);
        if !(err <= worst.1) {
            worst = (i, err);
        }
    }
    assert!(worst.1 <= tol, "{what}: [{}] cpu {} vs cuda {} (relative error {:e})", worst.0, cpu[worst.0], gpu[worst.0], worst.1);
    let _ = writeln!(std::io::stderr(), "{what}: max relative error {:.1e}", worst.1);
}

type Map<const C: usize, D> = Tensor<(usize, Const<C>, usize, usize), f32, D>;

/// Forward (training mode, taped) and backward of `layer` on both devices, from the same
/// weights and input; compares outputs and input gradients.
macro_rules! layer_parity {
    ($gpu:expr, $builder:ty, $c:expr, $shape:expr) => {{
        let cpu = Cpu::seed_from_u64(1);
        let mut a = cpu.build_module::<$builder, f32>();
        let mut b = ToDevice::<f32, Cpu, Cuda>::to_device(&a, $gpu);
        let x: Map<$c, Cpu> = cpu.sample_normal_like(&$shape);
        let xg: Map<$c, Cuda> = x.to_device($gpu);
        let ya = a.forward_mut(x.leaky_trace());
        let yb = b.forward_mut(xg.leaky_trace());
        let what = stringify!($builder);
        close(&format!("{what} forward"), &ya.as_vec(), &yb.as_vec(), 1e-4);
        let r: Tensor<_, f32, Cpu> = cpu.sample_normal_like(ya.shape());
        let rg = r.to_device($gpu);
        let ga = (ya * r).sum().backward();
        let gb = (yb * rg).sum().backward();
        close(&format!("{what} dx"), &ga.get(&x).as_vec(), &gb.get(&xg).as_vec(), 1e-4);
    }};
}

#[test]
fn every_owned_layer_agrees() {
    let Some(gpu) = gpu() else { return };
    let gpu = &gpu;
    layer_parity!(gpu, builders::Conv2D<3, 16, 3, 1, 1>, 3, (4, Const, 12, 10));
    layer_parity!(gpu, builders::Conv2D<8, 16, 3, 2, 1>, 8, (4, Const, 11, 11));
    layer_parity!(gpu, builders::Conv2D<8, 16, 1, 2, 0>, 8, (4, Const, 10, 10));
    layer_parity!(gpu, builders::Conv2D<3, 8, 7, 2, 3>, 3, (2, Const, 20, 20));
    layer_parity!(gpu, builders::Conv2D<4, 4, 3, 1, 2, 2>, 4, (2, Const, 9, 9));
    layer_parity!(gpu, builders::DepthwiseConv2D<8, 3, 2, 1>, 8, (3, Const, 9, 9));
    layer_parity!(gpu, builders::GroupedConv2D<8, 12, 3, 1, 1, 1, 4>, 8, (3, Const, 7, 7));
    layer_parity!(gpu, builders::MaxPool2D<3, 2, 1>, 4, (3, Const, 9, 9));
    layer_parity!(gpu, builders::AvgPool2D<2>, 4, (3, Const, 8, 8));
    layer_parity!(gpu, builders::BatchNorm2D<4>, 4, (5, Const, 6, 6));
    layer_parity!(gpu, builders::BatchNormReLU2D<4>, 4, (5, Const, 6, 6));
    layer_parity!(gpu, builders::ReLU, 4, (5, Const, 6, 6));
    layer_parity!(gpu, builders::ResidualReLU<(builders::Conv2D<4, 4, 3, 1, 1>, builders::BatchNorm2D<4>)>, 4, (3, Const, 6, 6));
    layer_parity!(gpu, ssl::models::resnet::SmallFmnist, 1, (4, Const, 28, 28));
}

#[test]
fn batch_norm_running_statistics_agree() {
    let Some(gpu) = gpu() else { return };
    let cpu = Cpu::seed_from_u64(1);
    let mut a = cpu.build_module::<builders::BatchNorm2D<4>, f32>();
    let mut b = a.to_device(&gpu);
    for _ in 0..3 {
        let x: Map<4, Cpu> = cpu.sample_normal_like(&(6, Const, 5, 5));
        let _ = a.forward_mut(x.leaky_trace());
        let _ = b.forward_mut(x.to_device(&gpu).leaky_trace());
    }
    close("running mean", &a.running_mean.as_vec(), &b.running_mean.as_vec(), 1e-5);
    close("running var", &a.running_var.as_vec(), &b.running_var.as_vec(), 1e-5);
    let x: Map<4, Cpu> = cpu.sample_normal_like(&(2, Const, 5, 5));
    close("evaluation", &a.forward(x.clone()).as_vec(), &b.forward(x.to_device(&gpu)).as_vec(), 1e-5);
}

/// The optimisers' update on the GPU (device tensor operations, the moments kept there)
/// against the CPU's host loop: LARS, SGD with Nesterov momentum, AdamW, 3 steps of a small net
/// with weights, biases and BatchNorm (no decay or trust ratio on 1-D tensors).
#[test]
fn optimiser_updates_agree() {
    let Some(gpu) = gpu() else { return };
    use ssl::optim::{Optim, OptimConfig, OptimizerKind};
    type Net = (dfdx::nn::builders::Linear<8, 16>, dfdx::nn::builders::ReLU, dfdx::nn::builders::BatchNorm1D<16>, dfdx::nn::builders::Linear<16, 4>);
    let configs = [
        OptimConfig { lr: 0.5, weight_decay: 1e-4, ..Default::default() },
        OptimConfig { kind: OptimizerKind::Sgd, lr: 0.05, nesterov: true, weight_decay: 1e-4, ..Default::default() },
        OptimConfig { kind: OptimizerKind::AdamW, lr: 1e-3, weight_decay: 0.05, ..Default::default() },
    ];
    for cfg in configs {
        let cpu = Cpu::seed_from_u64(3);
        let mut a = cpu.build_module::<Net, f32>();
        let mut b = ToDevice::<f32, Cpu, Cuda>::to_device(&a, &gpu);
        let (mut oa, mut ob) = (Optim::new(cfg), Optim::new(cfg));
        for _ in 0..3 {
            let x: Tensor<Rank2<6, 8>, f32, Cpu> = cpu.sample_normal();
            let xg = x.to_device(&gpu);
            let ga = a.forward_mut(x.trace(a.alloc_grads())).square().mean().backward();
            let gb = b.forward_mut(xg.trace(b.alloc_grads())).square().mean().backward();
            oa.update(&mut a, &ga).unwrap();
            ob.update(&mut b, &gb).unwrap();
        }
        let what = format!("{:?} update", cfg.kind);
        close(&format!("{what}, first weight"), &a.0.weight.as_vec(), &b.0.weight.as_vec(), 1e-4);
        close(&format!("{what}, BatchNorm scale"), &a.2.scale.as_vec(), &b.2.scale.as_vec(), 1e-4);
        close(&format!("{what}, last bias"), &a.3.bias.as_vec(), &b.3.bias.as_vec(), 1e-4);
        let (sa, sb) = (oa.state().0, ob.state().0);
        for ((name, va), (_, vb)) in sa.iter().zip(&sb) {
            close(&format!("{what}, state {name}"), va, vb, 1e-4);
        }
    }
}

/// Three SimCLR steps (AdamW) on each reference backbone: same losses, same features after.
#[test]
fn simclr_steps_agree() {
    if gpu().is_none() {
        return;
    }
    let opt = ssl::optim::OptimConfig { kind: ssl::optim::OptimizerKind::AdamW, lr: 1e-3, ..Default::default() };
    for (model, (c, hw)) in [("small_fmnist", (1, 28)), ("resnet18_cifar", (3, 32))] {
        let method = MethodConfig::SimClr(SimClrConfig { temperature: 0.5, projector: ProjectorConfig { hidden: 512, out: 128, layers: 2 } });
        let mut a = method.build(model, opt, 0, DeviceSpec::Cpu).unwrap();
        let mut b = method.build(model, opt, 0, DeviceSpec::Cuda(0)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        a.save(dir.path()).unwrap();
        b.load(dir.path()).unwrap();
        let n = 16;
        let views: Vec<f32> = (0..2 * n * c * hw * hw).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
        for step in 0..3 {
            let at = StepAt { lr: 1e-3, step: step as u64, total_steps: 3, steps_per_epoch: 3 };
            let la = a.step(views.clone(), (c, hw, hw), at).unwrap().loss;
            let lb = b.step(views.clone(), (c, hw, hw), at).unwrap().loss;
            close(&format!("{model} step {step} loss"), &[la], &[lb], 1e-3);
        }
        let img = views[..n * c * hw * hw].to_vec();
        close(&format!("{model} features after 3 steps"), &a.features(img.clone(), (c, hw, hw)).unwrap(), &b.features(img, (c, hw, hw)).unwrap(), 1e-2);
    }
}

/// Fine-tuning steps (SGD, dropout, label smoothing) agree too.
#[test]
fn finetune_steps_agree() {
    if gpu().is_none() {
        return;
    }
    use ssl::train::classifier_net::{build, ClassifierSpec};
    let opt = ssl::optim::OptimConfig { kind: ssl::optim::OptimizerKind::Sgd, lr: 0.05, ..Default::default() };
    let spec = |device| ClassifierSpec { classes: 10, dropout: 0.2, frozen: false, opt, seed: 0, device };
    let mut a = build("small_fmnist", spec(DeviceSpec::Cpu)).unwrap();
    let mut b = build("small_fmnist", spec(DeviceSpec::Cuda(0))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path(), false).unwrap();
    b.load(dir.path(), false).unwrap();
    let n = 32;
    let images: Vec<f32> = (0..n * 28 * 28).map(|i| ((i * 104729) % 255) as f32 / 255.0).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    for step in 0..3 {
        let (la, _) = a.step(images.clone(), (1, 28, 28), &labels, 0.1, 0.05, 0.05, step).unwrap();
        let (lb, _) = b.step(images.clone(), (1, 28, 28), &labels, 0.1, 0.05, 0.05, step).unwrap();
        close(&format!("finetune step {step} loss"), &[la], &[lb], 1e-3);
    }
    close("logits", &a.logits(images.clone(), (1, 28, 28)).unwrap(), &b.logits(images, (1, 28, 28)).unwrap(), 1e-2);
}
