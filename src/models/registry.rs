//! Model names a recipe can use, mapped to compiled types. Adding a model is one type and one
//! line in the `registry!` call below.

use dfdx::prelude::*;

use super::classic::{AlexNetCifar, MobileNetCifar, MobileNetCifarHalf, Vgg11Cifar};
use super::inception::GoogLeNetCifar;
use super::vit::VitTinyCifar;
use super::resnet::{ResNet18Cifar, ResNet18Imagenet, ResNet34Cifar, ResNet50Cifar, SmallFmnist, SmallFmnistE512};
use super::backbone::{Backbone, BackboneType, WithBackbone};
use crate::device::DeviceSpec;
use crate::nn::NnDevice;
use super::summary::{ActShape, LayerRow, Summary};
use crate::data::ImageShape;
use crate::error::{Error, Result};

/// What the registry knows of a model.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ModelInfo {
    pub name: &'static str,
    /// The input shape it is designed for.
    pub input: ImageShape,
    /// Width of its feature vector.
    pub features: usize,
    pub description: &'static str,
}

macro_rules! registry {
    ($($name:literal => $ty:ty, ($h:expr, $w:expr, $c:expr), $features:expr, $desc:literal;)*) => {
        /// Every registered model.
        pub const MODELS: &[ModelInfo] = &[$(ModelInfo {
            name: $name,
            input: ImageShape { height: $h, width: $w, channels: $c },
            features: $features,
            description: $desc,
        }),*];

        /// The per-layer summary of model `name` on an input of `shape`.
        pub fn summary(name: &str, shape: ImageShape) -> Result<Vec<LayerRow>> {
            let dev: Cpu = Default::default();
            let mut rows = Vec::new();
            let x = ActShape::Map { c: shape.channels, h: shape.height, w: shape.width };
            let fits = match name {
                $($name => dev.build_module::<$ty, f32>().summarize(x, &mut rows),)*
                _ => return Err(unknown(name)),
            };
            fits.map_err(|why| Error::invalid(format!("model {name}"), format!("input {shape} does not fit: {why}")))?;
            Ok(rows)
        }

        /// Runs `job` with the compiled type of model `name`.
        pub fn with_backbone<J: WithBackbone>(name: &str, job: J) -> Result<J::Out> {
            match name {
                $($name => Ok(job.run::<$ty, $c, $features>()),)*
                _ => Err(unknown(name)),
            }
        }
    };
}

registry! {
    "resnet18_cifar" => ResNet18Cifar, (32, 32, 3), 512, "ResNet-18, CIFAR stem (3x3 s1, no max-pool)";
    "small_fmnist" => SmallFmnist, (28, 28, 1), 128, "small ResNet for 28x28x1: 32, 64, 128 wide";
    "small_fmnist_e512" => SmallFmnistE512, (28, 28, 1), 512, "small_fmnist + 1x1 expansion to 512 before pooling";
    "resnet34_cifar" => ResNet34Cifar, (32, 32, 3), 512, "ResNet-34, CIFAR stem";
    "resnet50_cifar" => ResNet50Cifar, (32, 32, 3), 2048, "ResNet-50 (Bottleneck), CIFAR stem";
    "resnet18_imagenet" => ResNet18Imagenet, (96, 96, 3), 512, "ResNet-18, ImageNet stem (7x7 s2 + max-pool), e.g. STL-10";
    "vgg11_cifar" => Vgg11Cifar, (32, 32, 3), 512, "VGG-11 with BatchNorm: stacked 3x3";
    "alexnet_cifar" => AlexNetCifar, (32, 32, 3), 256, "small AlexNet: 5x5 and 3x3, ReLU, overlapping max-pools";
    "googlenet_cifar" => GoogLeNetCifar, (32, 32, 3), 512, "small GoogLeNet: Inception blocks (1x1, 3x3, 5x5, pool branches)";
    "vit_tiny_cifar" => VitTinyCifar, (32, 32, 3), 192, "tiny ViT: 4x4 patches, width 192, 6 layers, 3 heads, mean pooling";
    "mobilenet_cifar" => MobileNetCifar, (32, 32, 3), 1024, "MobileNet v1, width 1.0: depthwise + pointwise";
    "mobilenet_cifar_w0.5" => MobileNetCifarHalf, (32, 32, 3), 512, "MobileNet v1, width 0.5";
}

/// Code that runs with a backbone built on a device: the one dispatch point from a model name
/// and a device to compiled types, for every method and loop.
pub trait WithBuiltBackbone {
    type Out;
    /// `backbone` takes C-channel images to F features on `dev`.
    fn run<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(self, dev: D, backbone: B) -> Self::Out;
}

struct OnDevice<J> {
    job: J,
    device: DeviceSpec,
    seed: u64,
}

impl<J: WithBuiltBackbone> WithBackbone for OnDevice<J> {
    type Out = Result<J::Out>;

    fn run<B: BackboneType<C, F>, const C: usize, const F: usize>(self) -> Self::Out {
        Ok(match self.device {
            DeviceSpec::Cpu => {
                let dev = Cpu::seed_from_u64(self.seed);
                let backbone = dev.build_module::<B, f32>();
                self.job.run(dev, backbone)
            }
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(n) => {
                let dev = crate::device::cuda(n, self.seed)?;
                let backbone = dev.build_module::<B, f32>();
                self.job.run(dev, backbone)
            }
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(n) => match crate::device::cuda(n, self.seed)? {},
        })
    }
}

/// Builds model `name` on `device`, its weights drawn from `seed` (the first draws of the
/// device's generator), and runs `job` with it.
pub fn with_built_backbone<J: WithBuiltBackbone>(name: &str, device: DeviceSpec, seed: u64, job: J) -> Result<J::Out> {
    with_backbone(name, OnDevice { job, device, seed })?
}

fn unknown(name: &str) -> Error {
    let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    Error::invalid("model", format!("unknown model '{name}' (known: {})", names.join(", ")))
}

/// The registry entry of `name`.
pub fn find(name: &str) -> Result<&'static ModelInfo> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| unknown(name))
}

/// Checks, before any work, that images of `shape` fit model `name`.
pub fn check_input(name: &str, shape: ImageShape) -> Result<()> {
    summary(name, shape).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::summary::totals;

    #[test]
    fn totals_match_dfdx_and_independent_counts() {
        let dev: Cpu = Default::default();
        let rows = summary("resnet18_cifar", find("resnet18_cifar").unwrap().input).unwrap();
        assert_eq!(totals(&rows), (11_168_832, 555_417_600));
        assert_eq!(dev.build_module::<ResNet18Cifar, f32>().num_trainable_params(), 11_168_832);
        assert_eq!(rows.last().unwrap().output, ActShape::Flat(512));
        let rows = summary("small_fmnist", find("small_fmnist").unwrap().input).unwrap();
        assert_eq!(totals(&rows), (676_192, 66_056_704));
        assert_eq!(dev.build_module::<SmallFmnist, f32>().num_trainable_params(), 676_192);
        assert_eq!(rows.last().unwrap().output, ActShape::Flat(128));
        // The 1x1 expansion adds 128x512 weights (no bias: BatchNorm follows), 2x512 BatchNorm
        // parameters and 7x7x128x512 multiply-adds.
        let rows = summary("small_fmnist_e512", find("small_fmnist_e512").unwrap().input).unwrap();
        assert_eq!(totals(&rows), (676_192 + 65_536 + 1_024, 66_056_704 + 3_211_264));
        assert_eq!(rows.last().unwrap().output, ActShape::Flat(512));
        // Every model's summary agrees with dfdx's own parameter count.
        macro_rules! same_params {
            ($($name:literal => $ty:ty),*) => {$(
                let rows = summary($name, find($name).unwrap().input).unwrap();
                assert_eq!(totals(&rows).0, dev.build_module::<$ty, f32>().num_trainable_params(), $name);
            )*};
        }
        same_params!("small_fmnist_e512" => SmallFmnistE512, "resnet50_cifar" => ResNet50Cifar,
            "vgg11_cifar" => Vgg11Cifar, "alexnet_cifar" => AlexNetCifar, "googlenet_cifar" => GoogLeNetCifar,
            "vit_tiny_cifar" => VitTinyCifar, "mobilenet_cifar" => MobileNetCifar);
    }

    /// Builds `$model` with a 10-class linear head, runs it forward on 4 images of `$shape`,
    /// then takes Adam steps on that fixed batch: the loss must fall.
    macro_rules! trains {
        ($model:ty, $features:expr, $c:expr, $h:expr, $w:expr) => {{
            use dfdx::optim::{Adam, AdamConfig, Optimizer};
            let dev = Cpu::seed_from_u64(0);
            let mut m = dev.build_module::<($model, dfdx::nn::builders::Linear<$features, 10>), f32>();
            let x: Tensor<(usize, Const<$c>, usize, usize), f32, _> = dev.sample_normal_like(&(4, Const, $h, $w));
            let y = m.forward(x.clone());
            assert_eq!(y.shape(), &(4, Const::<10>));
            let mut target = vec![0.0f32; 40];
            (0..4).for_each(|i| target[i * 10 + i * 2] = 1.0);
            let target: Tensor<(usize, Const<10>), f32, _> = dev.tensor_from_vec(target, (4, Const));
            let mut opt = Adam::new(&m, AdamConfig { lr: 1e-3, ..Default::default() });
            let mut grads = m.alloc_grads();
            let mut losses = Vec::new();
            for _ in 0..6 {
                let loss = cross_entropy_with_logits_loss(m.forward_mut(x.trace(grads)), target.clone());
                losses.push(loss.array());
                grads = loss.backward();
                opt.update(&mut m, &grads).unwrap();
                m.zero_grads(&mut grads);
            }
            assert!(losses[5] < losses[0], "{}: loss did not fall: {losses:?}", stringify!($model));
        }};
    }

    #[test]
    fn every_family_runs_forward_and_learns_a_fixed_batch() {
        trains!(SmallFmnist, 128, 1, 28, 28);
        trains!(SmallFmnistE512, 512, 1, 28, 28);
        trains!(ResNet18Cifar, 512, 3, 32, 32);
        trains!(ResNet50Cifar, 2048, 3, 32, 32);
        trains!(ResNet18Imagenet, 512, 3, 96, 96);
        trains!(Vgg11Cifar, 512, 3, 32, 32);
        trains!(AlexNetCifar, 256, 3, 32, 32);
        trains!(MobileNetCifarHalf, 512, 3, 32, 32);
        trains!(GoogLeNetCifar, 512, 3, 32, 32);
        trains!(VitTinyCifar, 192, 3, 32, 32);
    }

    #[test]
    fn the_remaining_models_run_forward() {
        let dev = Cpu::seed_from_u64(1);
        let x: Tensor<(usize, Const<3>, usize, usize), f32, _> = dev.sample_normal_like(&(2, Const, 32, 32));
        assert_eq!(dev.build_module::<ResNet34Cifar, f32>().forward(x.clone()).shape(), &(2, Const::<512>));
        assert_eq!(dev.build_module::<MobileNetCifar, f32>().forward(x).shape(), &(2, Const::<1024>));
    }

    #[test]
    fn every_registered_model_fits_its_own_input() {
        for m in MODELS {
            let rows = summary(m.name, m.input).unwrap();
            assert_eq!(rows.last().unwrap().output, ActShape::Flat(m.features), "{}", m.name);
        }
    }

    #[test]
    fn inputs_that_do_not_fit_are_refused_clearly() {
        let bad_channels = ImageShape { height: 28, width: 28, channels: 3 };
        let e = check_input("small_fmnist", bad_channels).unwrap_err().to_string();
        assert!(e.contains("small_fmnist") && e.contains("expects 1 channels"), "{e}");
        let tiny = ImageShape { height: 1, width: 1, channels: 3 };
        assert!(check_input("resnet18_cifar", ImageShape { height: 96, width: 96, channels: 3 }).is_ok());
        assert!(check_input("resnet18_cifar", tiny).is_ok(), "a ResNet with global pooling takes any size >= 1");
        assert!(find("nope").unwrap_err().to_string().contains("resnet18_cifar"));
    }
}
