//! The monitor of pretraining, on a labeled split's features against another's each epoch:
//! weighted kNN (k = 200, temperature 0.1 on cosine similarity, as lightly and solo-learn),
//! the online linear probe's top-1 on the evaluated split (as solo-learn's online
//! classifier's validation accuracy), and the collapse measures of the evaluated split's
//! features (`collapse`).

use std::path::Path;

use crate::augment::{AugmentConfig, Pipeline};
use crate::data::split::random_subset;
use crate::data::{Split, Store};
use crate::error::{Error, Result};
use crate::models::encoder::{extract, Encoder, FeatureClassifier, Measure, Monitor};
use crate::recipe::PretrainRecipe;
use crate::eval::collapse::{collapsed, effective_rank, normalised_std};
use crate::eval::{knn_accuracy, KnnParams};

/// Features batch size of the monitor.
const BATCH: usize = 256;

/// A labeled split, optionally subsampled.
pub struct Labeled {
    pub split: Split,
    pub indices: Vec<usize>,
    pub labels: Vec<u32>,
}

impl Labeled {
    /// Loads split `name` of `store`, which must be labeled (`field` names the recipe field that
    /// asked for it), keeping a seeded random subset of `max` images (0: all).
    pub fn load(store: &Store, name: &str, max: usize, seed: u64, field: &str) -> Result<Self> {
        let split = store.load_split(name).map_err(|e| Error::invalid(field, e.to_string()))?;
        let Some(all) = split.labels.clone() else {
            return Err(Error::invalid(field, format!("split '{name}' of {} has no labels", store.path().display())));
        };
        let indices = random_subset(split.len(), max, seed);
        let labels = indices.iter().map(|&i| all[i]).collect();
        Ok(Labeled { split, indices, labels })
    }
}

/// The monitor: a memory bank split and an evaluated split.
pub struct KnnMonitor {
    train: Labeled,
    test: Labeled,
    pipeline: Pipeline,
    params: KnnParams,
    classes: usize,
}

impl KnnMonitor {
    /// `like` is the augmentation of training; images are seen through its evaluation view
    /// ([`AugmentConfig::evaluation`], with the statistics `mean`, `std` of the pretraining split).
    pub fn new(train: Labeled, test: Labeled, like: &AugmentConfig, mean: &[f32], std: &[f32], params: KnnParams, file: &Path) -> Result<Self> {
        if train.split.shape != test.split.shape {
            return Err(Error::bad_input(file, format!("splits '{}' and '{}' differ in image shape", train.split.name, test.split.name)));
        }
        let pipeline = Pipeline::new(like.evaluation(), train.split.shape, mean, std)?;
        let classes = train.split.classes.len().max(1 + train.labels.iter().chain(&test.labels).copied().max().unwrap_or(0) as usize);
        Ok(KnnMonitor { train, test, pipeline, params, classes })
    }

    /// The monitor a pretraining recipe asks for (`knn:`; none when `every_epochs` is 0) on
    /// its `store`, its images seen as pretraining's evaluation view with the statistics of
    /// `split`, the split pretraining reads.
    pub fn for_recipe(recipe: &PretrainRecipe, store: &Store, split: &Split) -> Result<Option<Self>> {
        let k = &recipe.knn;
        if k.every_epochs == 0 {
            return Ok(None);
        }
        let train = Labeled::load(store, &k.train_split, k.max_train, recipe.seed, "knn.train_split")?;
        let test = Labeled::load(store, &k.test_split, k.max_test, recipe.seed + 1, "knn.test_split")?;
        let params = KnnParams { k: k.k, temperature: k.temperature as f32 };
        Self::new(train, test, &recipe.augment, &split.mean, &split.std, params, &recipe.data.file).map(Some)
    }
}

/// The keys of the monitor's measures in epoch records.
pub const KNN_KEY: &str = "knn_top1";
pub const ONLINE_PROBE_KEY: &str = "online_probe_top1";
pub const RANK_KEY: &str = "effective_rank";
pub const STD_KEY: &str = "feature_std";

impl Monitor for KnnMonitor {
    fn input_shape(&self) -> crate::data::ImageShape {
        self.pipeline.output_shape()
    }

    /// Top-1 weighted kNN accuracy of the test split's features against the memory bank's,
    /// the probe's top-1 on the test split (when given), and the test features' effective
    /// rank and normalised standard deviation.
    fn measure(&self, encoder: &dyn Encoder, probe: Option<&dyn FeatureClassifier>) -> Result<Vec<Measure>> {
        let s = self.pipeline.output_shape();
        let width = encoder.feature_width();
        let mut forward = |x| encoder.features(x, (s.channels, s.height, s.width));
        let bank = extract(&self.pipeline, &self.train.split, &self.train.indices, BATCH, "knn: memory bank", &mut forward)?;
        let test = extract(&self.pipeline, &self.test.split, &self.test.indices, BATCH, "knn: evaluated", &mut forward)?;
        let knn = knn_accuracy(&bank, &self.train.labels, &test, &self.test.labels, width, self.classes, self.params)?;
        let mut out = vec![Measure { key: KNN_KEY, label: "kNN top-1", value: knn, percent: true, warning: None }];
        if let Some(p) = probe {
            let predicted = p.predict(&test)?;
            let correct = predicted.iter().zip(&self.test.labels).filter(|(a, b)| a == b).count();
            let value = correct as f64 / self.test.labels.len().max(1) as f64;
            out.push(Measure { key: ONLINE_PROBE_KEY, label: "online probe top-1", value, percent: true, warning: None });
        }
        let (rank, std) = (effective_rank(&test, width), normalised_std(&test, width));
        let warning = if !(rank.is_finite() && std.is_finite()) {
            Some("the features are not finite (NaN or infinite) on the monitor's images".to_string())
        } else {
            collapsed(rank, std).then(|| format!("the embeddings have collapsed: effective rank {rank:.2} of {width} dimensions, normalised feature std {std:.3} (0 when collapsed)"))
        };
        out.push(Measure { key: RANK_KEY, label: "effective rank", value: rank, percent: false, warning });
        out.push(Measure { key: STD_KEY, label: "feature std", value: std, percent: false, warning: None });
        Ok(out)
    }
}
