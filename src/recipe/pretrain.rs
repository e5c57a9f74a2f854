//! The pretraining recipe (`ssl pretrain`): data, model, method (SimCLR, BYOL, ... each with
//! its paper's defaults, see `ssl methods`), augmentation, optimiser and schedule.

use std::path::PathBuf;

use crate::device::DeviceSpec;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::data::{Split, Store};
use crate::method::{MethodConfig, SimClrConfig};
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

/// SimCLR's projection head, as older recipes wrote it at the top level (`head:`).
pub use crate::method::simclr::ProjectorConfig as HeadConfig;

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
    /// Train the online linear probe beside pretraining (when the pretraining split has
    /// labels) and report its top-1 on `test_split` with the kNN.
    pub online_probe: bool,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig { every_epochs: 1, train_split: "train".into(), test_split: "test".into(), k: 200, temperature: 0.1, max_train: 0, max_test: 0, online_probe: true }
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
    /// The method and its settings (`ssl methods` lists them with their papers' defaults).
    pub method: MethodConfig,
    /// Views are augmented with this; a method may vary it per view (BYOL's blur and
    /// solarisation differ between its two views).
    pub augment: AugmentConfig,
    /// Images per step (each gives two views).
    pub batch_size: usize,
    /// Drop the last partial batch of an epoch (SimCLR, solo-learn) or train on it.
    pub drop_last: bool,
    /// Data-parallel (`mpirun -np R ssl pretrain ...`): batch norm normalises with the global
    /// batch's statistics, summed over ranks (SimCLR's global BN, PyTorch's SyncBatchNorm), so
    /// R ranks train the model one process would; `false`: each rank's own part's statistics
    /// (PyTorch DDP's default). No effect on one process.
    pub sync_batchnorm: bool,
    pub epochs: usize,
    pub optimizer: OptimizerConfig,
    pub lr: LrConfig,
    pub seed: u64,
    /// Where the model runs: "cpu" or "cuda[:N]" (needs a binary built with `--features cuda`).
    pub device: DeviceSpec,
    pub checkpoint: CheckpointConfig,
    pub knn: KnnConfig,
    /// Older recipes' SimCLR settings at the top level: still read, as
    /// `method: SimClr(temperature: ..., projector: ...)` (see [`PretrainRecipe::method`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

impl Default for PretrainRecipe {
    fn default() -> Self {
        PretrainRecipe {
            name: "simclr".into(),
            run_dir: PathBuf::from("runs"),
            data: DataConfig::default(),
            model: "small_fmnist".into(),
            method: MethodConfig::default(),
            augment: AugmentConfig::simclr(),
            batch_size: 256,
            drop_last: true,
            sync_batchnorm: true,
            epochs: 100,
            optimizer: OptimizerConfig::default(),
            lr: LrConfig::default(),
            seed: 0,
            device: DeviceSpec::Cpu,
            checkpoint: CheckpointConfig::default(),
            knn: KnnConfig::default(),
            head: None,
            temperature: None,
        }
    }
}

impl PretrainRecipe {
    /// Checks what can be checked without the data, naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        super::common::check_training(&self.lr, &self.optimizer, self.batch_size, self.epochs, &self.model)?;
        self.device.check()?;
        self.checkpoint.check()?;
        let method = self.method()?;
        method.validate()?;
        if self.batch_size < method.min_batch() {
            return Err(Error::invalid("batch_size", format!("{} is below the {} images a {} step needs", self.batch_size, method.min_batch(), method.name())));
        }
        if self.knn.every_epochs > 0 && self.knn.k == 0 {
            return Err(Error::invalid("knn.k", "must be at least 1"));
        }
        self.augment.validate()
    }

    /// The method: `method`, or for an older recipe with `head` or `temperature` at the top
    /// level, SimCLR with those. Both forms at once are refused.
    pub fn method(&self) -> Result<MethodConfig> {
        if self.head.is_none() && self.temperature.is_none() {
            return Ok(self.method.clone());
        }
        let field = if self.head.is_some() { "head" } else { "temperature" };
        if self.method != MethodConfig::default() {
            return Err(Error::invalid(
                field,
                "a top-level field of older SimCLR recipes; with `method:` give it there, e.g. method: SimClr(temperature: 0.5, projector: (hidden: 512, out: 128, layers: 2))",
            ));
        }
        let d = SimClrConfig::default();
        Ok(MethodConfig::SimClr(SimClrConfig { temperature: self.temperature.unwrap_or(d.temperature), projector: self.head.clone().unwrap_or(d.projector) }))
    }

    /// The store and the split pretraining reads (`data.subset` of it when set), each error
    /// naming its field.
    pub fn load_data(&self) -> Result<(Store, Split)> {
        let store = Store::open(&self.data.file)?;
        let full = store.load_split(&self.data.split).map_err(|e| Error::invalid("data.split", e.to_string()))?;
        let split = match self.data.subset {
            0 => full,
            k if k > full.len() => {
                return Err(Error::invalid("data.subset", format!("{k} is more than the {} images of {}:{}", full.len(), self.data.file.display(), full.name)))
            }
            k => full.subset(&full.name, &crate::data::split::random_subset(full.len(), k, self.seed)),
        };
        Ok((store, split))
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
    fn methods_are_chosen_by_content_and_older_recipes_still_read() {
        // An older recipe: SimCLR's head and temperature at the top level.
        let (_d, p) = write("(head: (hidden: 256, out: 64, layers: 3), temperature: 0.2)");
        let r: PretrainRecipe = load(&p, &[]).unwrap();
        let want = SimClrConfig { temperature: 0.2, projector: HeadConfig { hidden: 256, out: 64, layers: 3 } };
        assert_eq!(r.method().unwrap(), MethodConfig::SimClr(want));
        // With `method:` as well, the top-level fields are refused.
        let (_d, p) = write("(method: Byol(), temperature: 0.2)");
        let e = load::<PretrainRecipe>(&p, &[]).unwrap().validate().unwrap_err().to_string();
        assert!(e.starts_with("temperature") && e.contains("method: SimClr("), "{e}");
        // `--set` reaches a method's settings without naming the variant, and switches method.
        let (_d, p) = write("(method: SimClr(temperature: 0.1))");
        let r: PretrainRecipe = load(&p, &["method.projector.hidden=300".into()]).unwrap();
        assert_eq!(r.method, MethodConfig::SimClr(SimClrConfig { temperature: 0.1, projector: HeadConfig { hidden: 300, ..Default::default() } }));
        let r: PretrainRecipe = load(&p, &["method=Byol".into(), "method.tau_base=0.99".into()]).unwrap();
        assert_eq!(r.method, MethodConfig::Byol(crate::method::ByolConfig { tau_base: 0.99, ..Default::default() }));
        let e = load::<PretrainRecipe>(&p, &["method.tau_base=0.99".into()]).unwrap_err().to_string();
        assert!(e.contains("method.tau_base"), "{e}");
        // The saved recipe reads back as written.
        let (_d, p) = write(&to_ron(&r));
        assert!(std::fs::read_to_string(&p).unwrap().contains("method: Byol("));
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
        assert!(e.contains("--set epochs=many"), "{e}");
        // Among several, the one at fault is named.
        let e = load::<PretrainRecipe>(&p, &["lr.base=0.1".into(), "augment.flip_p=often".into(), "lr.scaling=None".into()]).unwrap_err().to_string();
        assert!(e.contains("--set augment.flip_p=often") && !e.contains("lr.base"), "{e}");

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
        bad(|r| r.method = MethodConfig::SimClr(SimClrConfig { temperature: -1.0, ..Default::default() }), "method.temperature");
        bad(|r| r.temperature = Some(-1.0), "method.temperature");
        bad(|r| r.model = "nope".into(), "model");
        bad(|r| r.batch_size = 1, "batch_size");
        bad(|r| r.lr.warmup_epochs = 1000, "lr.warmup_epochs");
    }
}
