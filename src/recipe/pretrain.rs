//! The SimCLR pretraining recipe (`ssl pretrain`), with SimCLR's defaults (Chen et al. 2020).

use std::path::PathBuf;

use crate::device::DeviceSpec;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::error::{Error, Result};
pub use super::common::{AnnealingKind, CheckpointConfig, LrConfig, OptimizerConfig};
pub use crate::optim::OptimizerKind;

/// Where the images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The HDF5 store (`ssl data import`).
    pub file: PathBuf,
    /// The split to pretrain on (its labels, if any, are not used).
    pub split: String,
    /// Use a seeded random subset of this many images (0: all).
    pub subset: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { file: PathBuf::from("data/fashion-mnist.h5"), split: "train".into(), subset: 0 }
    }
}

/// The projection head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadConfig {
    /// Hidden width (SimCLR: the backbone's width, 2048 for ResNet-50).
    pub hidden: usize,
    /// Output width (SimCLR: 128).
    pub out: usize,
    /// 2 (SimCLR v1) or 3 layers with BatchNorm (v2).
    pub layers: usize,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig { hidden: 512, out: 128, layers: 2 }
    }
}

/// The online kNN monitor (weighted kNN on cosine similarity, as lightly and solo-learn).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnnConfig {
    /// Every N epochs; 0 turns it off.
    pub every_epochs: usize,
    /// Labeled split whose features form the memory bank.
    pub train_split: String,
    /// Labeled split evaluated against it.
    pub test_split: String,
    pub k: usize,
    pub temperature: f64,
    /// Seeded random subsets of the memory bank and the evaluated split (0: all).
    pub max_train: usize,
    pub max_test: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig { every_epochs: 1, train_split: "train".into(), test_split: "test".into(), k: 200, temperature: 0.1, max_train: 0, max_test: 0 }
    }
}

/// A whole pretraining experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainRecipe {
    /// Run name: results go to `run_dir/name/`.
    pub name: String,
    pub run_dir: PathBuf,
    pub data: DataConfig,
    /// A model name from `ssl models`.
    pub model: String,
    pub head: HeadConfig,
    pub augment: AugmentConfig,
    /// Images per step (each gives two views).
    pub batch_size: usize,
    /// Drop the last partial batch of an epoch (SimCLR, solo-learn) or train on it.
    pub drop_last: bool,
    pub epochs: usize,
    pub optimizer: OptimizerConfig,
    pub lr: LrConfig,
    /// NT-Xent temperature (SimCLR: 0.5 for CIFAR, 0.1 for ImageNet with large batches).
    pub temperature: f64,
    pub seed: u64,
    /// Where the model runs: "cpu" or "cuda[:N]" (needs a binary built with `--features cuda`).
    pub device: DeviceSpec,
    pub checkpoint: CheckpointConfig,
    pub knn: KnnConfig,
}

impl Default for PretrainRecipe {
    fn default() -> Self {
        PretrainRecipe {
            name: "simclr".into(),
            run_dir: PathBuf::from("runs"),
            data: DataConfig::default(),
            model: "small_fmnist".into(),
            head: HeadConfig::default(),
            augment: AugmentConfig::simclr(),
            batch_size: 256,
            drop_last: true,
            epochs: 100,
            optimizer: OptimizerConfig::default(),
            lr: LrConfig::default(),
            temperature: 0.5,
            seed: 0,
            device: DeviceSpec::Cpu,
            checkpoint: CheckpointConfig::default(),
            knn: KnnConfig::default(),
        }
    }
}

impl PretrainRecipe {
    /// Checks what can be checked without the data, naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::invalid(field, format!("{v} must be a positive number")))
            }
        };
        super::common::check_training(&self.lr, &self.optimizer, self.batch_size, self.epochs, &self.model)?;
        self.device.check()?;
        self.checkpoint.check()?;
        positive("temperature", self.temperature)?;
        if !(2..=3).contains(&self.head.layers) {
            return Err(Error::invalid("head.layers", format!("{} must be 2 or 3", self.head.layers)));
        }
        if self.knn.every_epochs > 0 && self.knn.k == 0 {
            return Err(Error::invalid("knn.k", "must be at least 1"));
        }
        self.augment.validate()
    }

    /// The peak learning rate after batch scaling.
    pub fn peak_lr(&self) -> f64 {
        self.lr.peak(self.batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{load, to_ron};

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.ron");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn the_reference_recipe_round_trips() {
        // (Every shipped recipe parses and validates: `recipe::tests`.)
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/simclr_resnet.ron");
        let r: PretrainRecipe = load(&path, &[]).unwrap();
        r.validate().unwrap();
        assert_eq!(r.model, "small_fmnist");
        // The resolved recipe round-trips through RON.
        let (_d, p) = write(&to_ron(&r));
        assert_eq!(load::<PretrainRecipe>(&p, &[]).unwrap(), r);
    }

    #[test]
    fn overrides_and_errors_name_the_field() {
        let (_d, p) = write("(epochs: 5, lr: (base: 0.5))");
        let r: PretrainRecipe = load(&p, &["lr.warmup_epochs=2".into(), "optimizer.kind=Sgd".into(), "augment.flip_p=0.0".into()]).unwrap();
        assert_eq!((r.epochs, r.lr.base, r.lr.warmup_epochs), (5, 0.5, 2));
        assert_eq!(r.optimizer.kind, OptimizerKind::Sgd);
        assert!((r.peak_lr() - 0.5).abs() < 1e-12);
        let e = load::<PretrainRecipe>(&p, &["lr.nope=1".into()]).unwrap_err().to_string();
        assert!(e.contains("lr.nope"), "{e}");
        let e = load::<PretrainRecipe>(&p, &["epochs=many".into()]).unwrap_err().to_string();
        assert!(e.contains("--set"), "{e}");

        let (_d, p) = write("(epochs: 5,\n  lr: (bse: 0.5))");
        let e = load::<PretrainRecipe>(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("bse") && e.contains("2:"), "unknown field with its line: {e}");
        let (_d, p) = write("(epochs: \"five\")");
        assert!(load::<PretrainRecipe>(&p, &[]).unwrap_err().to_string().contains("r.ron"));

        let bad = |f: fn(&mut PretrainRecipe), field: &str| {
            let mut r = PretrainRecipe::default();
            f(&mut r);
            let e = r.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(|r| r.lr.base = 0.0, "lr.base");
        bad(|r| r.temperature = -1.0, "temperature");
        bad(|r| r.model = "nope".into(), "model");
        bad(|r| r.batch_size = 1, "batch_size");
        bad(|r| r.lr.warmup_epochs = 1000, "lr.warmup_epochs");
    }
}
