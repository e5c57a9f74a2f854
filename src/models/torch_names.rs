//! The names PyTorch gives the tensors of a ResNet (`torchvision.models.resnet18`'s
//! `state_dict` keys: `conv1.weight`, `bn1.running_mean`, `layer1.0.conv2.weight`,
//! `layer2.0.downsample.1.bias`, ...) for the tensors of the project's ResNets, whose dfdx
//! keys are tuple indices (`0.0.weight`, `1.0.0.1.scale`, ...).
//!
//! The rule reads the structure off the dfdx key, so it holds for every model built from
//! [`super::resnet`]'s parts: the top-level tuple is the stem (index 0: convolution,
//! BatchNorm, max-pool), then the stages (`layer1` ...), each a tuple of blocks or one bare
//! block, then optionally a 1x1 expansion (`expand.0`, `expand.1`: convolution and BatchNorm,
//! as `small_fmnist_e512`), then the global pool. In a block the main path alternates
//! convolution and BatchNorm (`conv1`, `bn1`, `conv2`, ...) and the projection shortcut is
//! `downsample.0` and `downsample.1`, as torchvision's `BasicBlock` and `Bottleneck` name
//! them. `scripts/torch_models.py` defines the PyTorch modules with these names.

/// Models whose tensors have PyTorch names, and the PyTorch definition that loads them
/// (in `scripts/torch_models.py`; the four standard ResNets are also torchvision's, the
/// `*_cifar` ones with the small-image stem written there, `resnet18_imagenet` as it is).
pub const TORCH_MODELS: &[(&str, &str)] = &[
    ("resnet18_cifar", "resnet18_cifar()"),
    ("resnet34_cifar", "resnet34_cifar()"),
    ("resnet50_cifar", "resnet50_cifar()"),
    ("resnet18_imagenet", "resnet18_imagenet()"),
    ("small_fmnist", "small_fmnist()"),
    ("small_fmnist_e512", "small_fmnist_e512()"),
];

/// The PyTorch definition of `model` (see [`TORCH_MODELS`]), or None when it has no mapping.
pub fn torch_definition(model: &str) -> Option<&'static str> {
    TORCH_MODELS.iter().find(|(m, _)| *m == model).map(|(_, d)| *d)
}

/// What a dfdx key stands for in PyTorch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorchKey {
    /// A tensor, under this PyTorch name (same shape and layout: convolution weights are
    /// [out, in, k, k] on both sides).
    Tensor(String),
    /// A BatchNorm hyper-parameter PyTorch keeps on the module, not in the state dict
    /// (`epsilon` 1e-5 and `momentum` 0.1, PyTorch's defaults); `module` is the BatchNorm's
    /// PyTorch name.
    Hyper { module: String, name: String },
}

/// The PyTorch name of dfdx key `key` of a ResNet, or None when the key does not have the
/// structure described in the module docs.
pub fn torch_key(key: &str) -> Option<TorchKey> {
    let parts: Vec<&str> = key.split('.').collect();
    let (param, path) = parts.split_last()?;
    let index = |s: &str| s.parse::<usize>().ok();
    let top = index(path.first()?)?;
    // (PyTorch module name, whether it is a BatchNorm): the layers alternate convolution and
    // BatchNorm in the stem, the expansion, a block's main path and its shortcut.
    let (module, is_bn) = match path {
        // The stem: convolution, BatchNorm (then a max-pool without tensors).
        [_, i] if top == 0 => {
            let i = index(i)?;
            (["conv1", "bn1"].get(i)?.to_string(), i == 1)
        }
        // A convolution and BatchNorm after the stages.
        [_, i] => {
            let i = index(i)?;
            (i < 2).then(|| (format!("expand.{i}"), i == 1))?
        }
        // A block: a bare one (the stage is that block) or one of the stage's tuple.
        [_, field, i] => block_layer(&format!("layer{top}.0"), field, index(i)?)?,
        [_, b, field, i] => block_layer(&format!("layer{top}.{}", index(b)?), field, index(i)?)?,
        _ => return None,
    };
    match (*param, is_bn) {
        ("weight", false) | ("scale", true) => Some(TorchKey::Tensor(format!("{module}.weight"))),
        ("bias" | "running_mean" | "running_var", true) => Some(TorchKey::Tensor(format!("{module}.{param}"))),
        ("epsilon" | "momentum", true) => Some(TorchKey::Hyper { module, name: param.to_string() }),
        _ => None,
    }
}

/// Layer `i` of a block named `block`: on the main path (`0` of a residual, `f` of a residual
/// with a projection shortcut) `conv1`, `bn1`, `conv2`, ...; on the shortcut (`r`)
/// `downsample.0` and `downsample.1`. With whether it is a BatchNorm.
fn block_layer(block: &str, field: &str, i: usize) -> Option<(String, bool)> {
    match field {
        "0" | "f" => Some((format!("{block}.{}{}", if i % 2 == 0 { "conv" } else { "bn" }, i / 2 + 1), i % 2 == 1)),
        "r" if i < 2 => Some((format!("{block}.downsample.{i}"), i == 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(key: &str) -> String {
        match torch_key(key) {
            Some(TorchKey::Tensor(n)) => n,
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn torchvision_names_for_each_kind_of_key() {
        assert_eq!(name("0.0.weight"), "conv1.weight");
        assert_eq!(name("0.1.scale"), "bn1.weight");
        assert_eq!(name("0.1.running_var"), "bn1.running_var");
        // A stage of tuple blocks: ResidualReLU (`0`) and the projection-shortcut kind (`f`, `r`).
        assert_eq!(name("1.1.0.2.weight"), "layer1.1.conv2.weight");
        assert_eq!(name("1.1.0.3.bias"), "layer1.1.bn2.bias");
        assert_eq!(name("2.0.f.0.weight"), "layer2.0.conv1.weight");
        assert_eq!(name("2.0.f.5.running_mean"), "layer2.0.bn3.running_mean");
        assert_eq!(name("2.0.r.0.weight"), "layer2.0.downsample.0.weight");
        assert_eq!(name("2.0.r.1.scale"), "layer2.0.downsample.1.weight");
        // A bare block (small_fmnist's first stage) and the expansion (small_fmnist_e512).
        assert_eq!(name("1.0.1.scale"), "layer1.0.bn1.weight");
        assert_eq!(name("4.0.weight"), "expand.0.weight");
        assert_eq!(name("4.1.running_mean"), "expand.1.running_mean");
        assert_eq!(torch_key("3.0.r.1.epsilon"), Some(TorchKey::Hyper { module: "layer3.0.downsample.1".into(), name: "epsilon".into() }));
    }

    #[test]
    fn keys_of_another_structure_have_no_name() {
        for key in ["weight", "0.2.weight", "x.0.weight", "1.0.r.2.weight", "1.0.0.0.scale", "1.0.1.weight", "0.0.bias", "1.2.3.4.5.weight"] {
            assert_eq!(torch_key(key), None, "{key}");
        }
    }

    #[test]
    fn every_mapped_model_is_registered() {
        for (m, _) in TORCH_MODELS {
            assert!(crate::models::registry::MODELS.iter().any(|i| i.name == *m), "{m}");
        }
    }
}
