//! The fine-tuning recipe (`ssl finetune`): a backbone (pretrained or random), a linear
//! classifier with dropout, label smoothing, a small annealed rate with warmup, and early
//! stopping on a validation split. Defaults follow SimCLR's fine-tuning (Nesterov SGD,
//! momentum 0.9) and common practice for small images.

use std::path::PathBuf;

use crate::device::DeviceSpec;
use serde::{Deserialize, Serialize};

use super::common::{CheckpointConfig, LrConfig, OptimizerConfig};
use crate::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::optim::{LrScaling, OptimizerKind};

/// Labeled data and how it is divided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneData {
    pub file: PathBuf,
    pub train_split: String,
    pub test_split: String,
    /// Fraction of the training labels used (stratified per class): 1.0, or 0.1 / 0.01 for
    /// the semi-supervised protocol.
    pub label_fraction: f64,
    /// Fraction of those held out for validation and early stopping (0: none).
    pub val_fraction: f64,
}

impl Default for FinetuneData {
    fn default() -> Self {
        FinetuneData {
            file: PathBuf::from("data/fashion-mnist.h5"),
            train_split: "train".into(),
            test_split: "test".into(),
            label_fraction: 1.0,
            val_fraction: 0.1,
        }
    }
}

/// How the backbone trains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackboneTraining {
    /// Keep the backbone fixed (evaluation mode, no optimiser): only the classifier learns.
    pub freeze: bool,
    /// The backbone's rate as a fraction of the classifier's (e.g. 0.1).
    pub lr_factor: f64,
}

impl Default for BackboneTraining {
    fn default() -> Self {
        BackboneTraining { freeze: false, lr_factor: 1.0 }
    }
}

/// Early stopping on validation top-1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping (0: never stop early); counted only once
    /// the run has taken `min_steps` steps.
    pub patience: usize,
    /// The improvement that counts.
    pub min_delta: f64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping { patience: 5, min_delta: 0.0 }
    }
}

/// The fine-tuning `augment` section: fields left out take [`AugmentConfig::light`]'s values
/// (crop and flip, no colour), not SimCLR's, so `augment: (flip_p: 0.0)` in a file means what
/// `--set augment.flip_p=0.0` means. The field list is checked against `AugmentConfig` by the
/// compiler (serde's remote derive).
#[derive(Deserialize)]
#[serde(remote = "AugmentConfig", deny_unknown_fields, default = "AugmentConfig::light")]
struct LightAugment {
    size: Option<usize>,
    crop_scale: (f32, f32),
    crop_ratio: (f32, f32),
    interpolation: crate::augment::crop::Interpolation,
    flip_p: f32,
    strength: f32,
    jitter_p: f32,
    grayscale_p: f32,
    blur_p: f32,
    blur_sigma: (f32, f32),
    blur_kernel_fraction: f32,
    solarize_p: f32,
    solarize_threshold: f32,
    normalize: bool,
}

/// A whole fine-tuning experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneRecipe {
    pub name: String,
    pub run_dir: PathBuf,
    /// A pretraining run folder (or a backbone .safetensors file); None trains from random
    /// initialisation (the supervised baseline).
    pub pretrained: Option<PathBuf>,
    pub data: FinetuneData,
    pub model: String,
    /// Training augmentation; fields left out take `AugmentConfig::light()`'s values.
    #[serde(deserialize_with = "LightAugment::deserialize")]
    pub augment: AugmentConfig,
    pub batch_size: usize,
    /// Data-parallel (`mpirun -np R ssl finetune ...`): batch norm over the global batch, as
    /// in pretraining (see the pretraining recipe's `sync_batchnorm`). No effect on one process.
    pub sync_batchnorm: bool,
    pub epochs: usize,
    /// The fewest optimiser steps the run takes (0: no minimum). With few labels (1%, 10%) an
    /// epoch is a handful of steps: the schedule's epochs (warmup, milestones, annealing) are
    /// then stretched to `min_steps` steps in all, as many epochs are run as that takes, and
    /// early stopping cannot fire before it.
    pub min_steps: usize,
    pub optimizer: OptimizerConfig,
    pub lr: LrConfig,
    pub backbone: BackboneTraining,
    /// Label smoothing epsilon (Szegedy et al. 2016: 0.1).
    pub label_smoothing: f64,
    /// Dropout before the classifier.
    pub dropout: f64,
    pub early_stopping: EarlyStopping,
    pub seed: u64,
    /// Where the model runs: "cpu" or "cuda[:N]" (needs a binary built with `--features cuda`).
    pub device: DeviceSpec,
    pub checkpoint: CheckpointConfig,
}

impl Default for FinetuneRecipe {
    fn default() -> Self {
        FinetuneRecipe {
            name: "finetune".into(),
            run_dir: PathBuf::from("runs"),
            pretrained: None,
            data: FinetuneData::default(),
            model: "small_fmnist".into(),
            augment: AugmentConfig::light(),
            batch_size: 256,
            sync_batchnorm: true,
            epochs: 30,
            min_steps: 0,
            optimizer: OptimizerConfig { kind: OptimizerKind::Sgd, nesterov: true, weight_decay: 5e-4, ..OptimizerConfig::default() },
            lr: LrConfig { base: 0.05, scaling: LrScaling::Linear, warmup_epochs: 1, ..LrConfig::default() },
            backbone: BackboneTraining::default(),
            label_smoothing: 0.1,
            dropout: 0.2,
            early_stopping: EarlyStopping::default(),
            seed: 0,
            device: DeviceSpec::Cpu,
            checkpoint: CheckpointConfig::default(),
        }
    }
}

impl FinetuneRecipe {
    /// Checks what can be checked without the data, naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        super::common::check_training(&self.lr, &self.optimizer, self.batch_size, self.epochs, &self.model)?;
        self.device.check()?;
        self.checkpoint.check()?;
        if self.min_steps > 100_000_000 {
            return Err(Error::invalid("min_steps", format!("{} is more than 100,000,000", self.min_steps)));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::invalid("label_smoothing", format!("{} must be in [0, 1)", self.label_smoothing)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid("dropout", format!("{} must be in [0, 1)", self.dropout)));
        }
        if !(self.data.label_fraction > 0.0 && self.data.label_fraction <= 1.0) {
            return Err(Error::invalid("data.label_fraction", format!("{} must be in (0, 1]", self.data.label_fraction)));
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) {
            return Err(Error::invalid("data.val_fraction", format!("{} must be in [0, 1)", self.data.val_fraction)));
        }
        if self.early_stopping.patience > 0 && self.data.val_fraction == 0.0 {
            return Err(Error::invalid("early_stopping.patience", "needs a validation split (data.val_fraction > 0)"));
        }
        if !(self.backbone.lr_factor >= 0.0 && self.backbone.lr_factor.is_finite()) {
            return Err(Error::invalid("backbone.lr_factor", "must be >= 0"));
        }
        if self.backbone.freeze && self.backbone.lr_factor != 1.0 {
            return Err(Error::invalid("backbone.lr_factor", "has no effect with backbone.freeze: a frozen backbone is not trained"));
        }
        let es = &self.early_stopping;
        if !(es.min_delta >= 0.0 && es.min_delta < 1.0) {
            return Err(Error::invalid("early_stopping.min_delta", format!("{} must be in [0, 1) (validation top-1 is a fraction)", es.min_delta)));
        }
        if es.min_delta != 0.0 && self.data.val_fraction == 0.0 {
            return Err(Error::invalid("early_stopping.min_delta", "needs a validation split (data.val_fraction > 0)"));
        }
        self.augment.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_overrides_and_validation_errors() {
        // (Every shipped recipe parses and validates: `recipe::tests`.)
        // `None` clears an option and names an enum variant, in one command line.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/finetune_resnet.ron");
        let r: FinetuneRecipe = crate::recipe::load(&path, &["pretrained=None".into(), "lr.scaling=None".into()]).unwrap();
        assert_eq!(r.pretrained, None);
        assert_eq!(r.lr.scaling, LrScaling::None);
        let bad = FinetuneRecipe { label_smoothing: 1.0, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("label_smoothing"));
        let bad = FinetuneRecipe { data: FinetuneData { val_fraction: 0.0, ..Default::default() }, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("early_stopping"));
    }
}
