//! Model names a recipe can use, mapped to compiled types. Adding a model is one type and one
//! line in the `registry!` call below.

use dfdx::prelude::*;

use super::resnet::{ResNet18Cifar, SmallFmnist};
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
    };
}

registry! {
    "resnet18_cifar" => ResNet18Cifar, (32, 32, 3), 512, "ResNet-18, CIFAR stem (3x3 s1, no max-pool)";
    "small_fmnist" => SmallFmnist, (28, 28, 1), 128, "small ResNet for 28x28x1: 32, 64, 128 wide";
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
