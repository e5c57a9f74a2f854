//! A SimCLR network: a backbone and a projection head of compiled types, behind an object-safe
//! trait so the training loop is written once for every model in the registry.

use std::path::Path;

use dfdx::prelude::*;

use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::loss::nt_xent;
use crate::models::backbone::{Backbone, BackboneType, Head, HeadType, Images};
use crate::models::heads::{ProjectionMlp, ProjectionMlpV2};
use crate::models::registry::with_backbone;
use crate::models::backbone::WithBackbone;
use crate::nn::NnDevice;
use crate::optim::{Optim, OptimConfig};
use crate::recipe::pretrain::HeadConfig;

use super::module_file::{load_module, load_optimizer, save_module, save_optimizer};

/// What the pretraining loop needs of a network.
pub trait SimclrNet {
    /// One optimisation step on 2N views ([2N, C, H, W], positives N rows apart) at
    /// learning rate `lr`; returns the NT-Xent loss before the update.
    fn step(&mut self, views: Vec<f32>, shape: (usize, usize, usize), temperature: f64, lr: f64) -> f32;
    /// Backbone features of N images [N, C, H, W] in evaluation mode: [N, F].
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Vec<f32>;
    /// The backbone's feature width F.
    fn feature_width(&self) -> usize;
    /// Writes backbone.safetensors, head.safetensors and optimizer.safetensors into `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// Reads what [`SimclrNet::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<()>;
    /// Writes the backbone alone (what finetune and probe load).
    fn save_backbone(&self, path: &Path) -> Result<()>;
    /// Optimiser updates taken so far.
    fn updates(&self) -> u64;
}

/// The backbone file inside a checkpoint or run folder.
pub const BACKBONE_FILE: &str = "backbone.safetensors";
const HEAD_FILE: &str = "head.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

struct Simclr<B, H, D: NnDevice, const C: usize, const F: usize, const Z: usize> {
    dev: D,
    model: (B, H),
    opt: Optim,
    grads: Option<Gradients<f32, D>>,
}

impl<B, H, D, const C: usize, const F: usize, const Z: usize> SimclrNet for Simclr<B, H, D, C, F, Z>
where
    B: Backbone<C, F, D>,
    H: Head<F, Z, D>,
    D: NnDevice,
{
    fn step(&mut self, views: Vec<f32>, (c, h, w): (usize, usize, usize), temperature: f64, lr: f64) -> f32 {
        debug_assert_eq!(c, C);
        let rows = views.len() / (c * h * w);
        let x: Images<C, D> = self.dev.tensor_from_vec(views, (rows, Const, h, w));
        let g = self.grads.take().unwrap_or_else(|| self.model.alloc_grads());
        let f = self.model.0.forward_mut(x.trace(g));
        let z = self.model.1.forward_mut(f);
        let loss = nt_xent(z, temperature);
        let value = loss.array();
        let mut g = loss.backward();
        if value.is_finite() {
            self.opt.cfg.lr = lr;
            self.opt.update(&mut self.model, &g);
        }
        self.model.zero_grads(&mut g);
        self.grads = Some(g);
        value
    }

    fn features(&self, images: Vec<f32>, (c, h, w): (usize, usize, usize)) -> Vec<f32> {
        let n = images.len() / (c * h * w);
        let x: Images<C, D> = self.dev.tensor_from_vec(images, (n, Const, h, w));
        self.model.0.forward(x).as_vec()
    }

    fn feature_width(&self) -> usize {
        F
    }

    fn save(&self, dir: &Path) -> Result<()> {
        save_module(&self.model.0, &dir.join(BACKBONE_FILE))?;
        save_module(&self.model.1, &dir.join(HEAD_FILE))?;
        save_optimizer(&self.opt, &dir.join(OPTIMIZER_FILE))
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        load_module(&mut self.model.0, &dir.join(BACKBONE_FILE))?;
        load_module(&mut self.model.1, &dir.join(HEAD_FILE))?;
        load_optimizer(&mut self.opt, &dir.join(OPTIMIZER_FILE))
    }

    fn save_backbone(&self, path: &Path) -> Result<()> {
        save_module(&self.model.0, path)
    }

    fn updates(&self) -> u64 {
        self.opt.steps()
    }
}

struct Build<'a> {
    head: &'a HeadConfig,
    opt: OptimConfig,
    seed: u64,
    device: DeviceSpec,
}

fn boxed<B, H, D, const C: usize, const F: usize, const Z: usize>(b: &Build, dev: D) -> Box<dyn SimclrNet>
where
    D: NnDevice,
    B: BuildOnDevice<D, f32>,
    B::Built: Backbone<C, F, D>,
    H: BuildOnDevice<D, f32>,
    H::Built: Head<F, Z, D>,
{
    let model = (dev.build_module::<B, f32>(), dev.build_module::<H, f32>());
    Box::new(Simclr::<B::Built, H::Built, D, C, F, Z> { dev, model, opt: Optim::new(b.opt), grads: None })
}

/// The network on the device the recipe names.
fn on_device<B: BackboneType<C, F>, H: HeadType<F, Z>, const C: usize, const F: usize, const Z: usize>(b: &Build) -> Result<Box<dyn SimclrNet>> {
    Ok(match b.device {
        DeviceSpec::Cpu => boxed::<B, H, Cpu, C, F, Z>(b, Cpu::seed_from_u64(b.seed)),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => boxed::<B, H, Cuda, C, F, Z>(b, crate::device::cuda(n, b.seed)?),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(n) => match crate::device::cuda(n, b.seed)? {},
    })
}

/// Projection head widths the registry compiles (hidden, out).
pub const HEAD_HIDDEN: [usize; 5] = [128, 256, 512, 1024, 2048];
pub const HEAD_OUT: [usize; 3] = [64, 128, 256];

macro_rules! head_match {
    ($b:expr, $B:ty, $C:expr, $F:expr; $(($hid:literal, $out:literal)),*) => {
        match ($b.head.layers, $b.head.hidden, $b.head.out) {
            $(
                (2, $hid, $out) => on_device::<$B, ProjectionMlp<$F, $hid, $out>, $C, $F, $out>($b),
                (3, $hid, $out) => on_device::<$B, ProjectionMlpV2<$F, $hid, $out>, $C, $F, $out>($b),
            )*
            (l, h, o) => Err(Error::invalid(
                "head",
                format!("layers {l}, hidden {h}, out {o} is not compiled in (layers 2 or 3, hidden one of {HEAD_HIDDEN:?}, out one of {HEAD_OUT:?})"),
            )),
        }
    };
}

impl WithBackbone for Build<'_> {
    type Out = Result<Box<dyn SimclrNet>>;

    fn run<B: BackboneType<C, F>, const C: usize, const F: usize>(self) -> Self::Out {
        head_match!(&self, B, C, F;
            (128, 64), (128, 128), (128, 256), (256, 64), (256, 128), (256, 256), (512, 64), (512, 128), (512, 256),
            (1024, 64), (1024, 128), (1024, 256), (2048, 64), (2048, 128), (2048, 256))
    }
}

/// Builds model `name` with the projection head `head` on `device`, its weights drawn from
/// `seed`.
pub fn build(name: &str, head: &HeadConfig, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn SimclrNet>> {
    with_backbone(name, Build { head, opt, seed, device })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_learns_saves_and_loads() {
        let head = HeadConfig { hidden: 128, out: 64, layers: 2 };
        let cfg = OptimConfig { kind: crate::optim::OptimizerKind::Sgd, lr: 0.1, ..Default::default() };
        let mut a = build("small_fmnist", &head, cfg, 1, DeviceSpec::Cpu).unwrap();
        assert_eq!(a.feature_width(), 128);
        let shape = (1, 12, 12);
        let s = crate::data::Split::random(8, crate::data::ImageShape { height: 12, width: 12, channels: 1 }, 3);
        let views: Vec<f32> = (0..2).flat_map(|_| s.images.iter().map(|&v| v as f32 / 255.0)).collect();
        let before = a.features(views[..4 * 144].to_vec(), shape);
        let first = a.step(views.clone(), shape, 0.5, 0.1);
        for _ in 0..5 {
            a.step(views.clone(), shape, 0.5, 0.1);
        }
        assert!(a.step(views.clone(), shape, 0.5, 0.1) < first, "identical views: the loss falls");
        assert_ne!(before, a.features(views[..4 * 144].to_vec(), shape), "training changes the evaluation features");
        let d = tempfile::tempdir().unwrap();
        a.save(d.path()).unwrap();
        let mut b = build("small_fmnist", &head, cfg, 2, DeviceSpec::Cpu).unwrap();
        b.load(d.path()).unwrap();
        let img: Vec<f32> = views[..4 * 144].to_vec();
        assert_eq!(a.features(img.clone(), shape), b.features(img, shape));
        assert_eq!(a.step(views.clone(), shape, 0.5, 0.1), b.step(views, shape, 0.5, 0.1), "optimiser state restored");
        // Another model's files are refused.
        let mut c = build("resnet18_cifar", &HeadConfig { hidden: 512, out: 128, layers: 3 }, cfg, 0, DeviceSpec::Cpu).unwrap();
        assert!(c.load(d.path()).unwrap_err().to_string().contains("backbone.safetensors"));
        let e = build("small_fmnist", &HeadConfig { hidden: 100, out: 128, layers: 2 }, cfg, 0, DeviceSpec::Cpu).err().unwrap();
        assert!(e.to_string().contains("head"), "{e}");
    }
}
