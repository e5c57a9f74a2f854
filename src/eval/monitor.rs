//! The online kNN monitor of pretraining: weighted kNN (k = 200, temperature 0.1 on cosine
//! similarity, as lightly and solo-learn) of a labeled split's features against another's.

use std::path::Path;

use crate::augment::{AugmentConfig, Pipeline};
use crate::data::split::random_subset;
use crate::data::{Split, Store};
use crate::error::{Error, Result};
use crate::models::encoder::{extract, Encoder, Monitor};
use crate::recipe::PretrainRecipe;
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

impl Monitor for KnnMonitor {
    fn key(&self) -> &'static str {
        "knn_top1"
    }

    fn label(&self) -> &'static str {
        "kNN top-1"
    }

    fn input_shape(&self) -> crate::data::ImageShape {
        self.pipeline.output_shape()
    }

    /// Top-1 weighted kNN accuracy of the test split's features against the memory bank's.
    fn measure(&self, encoder: &dyn Encoder) -> Result<f64> {
        let s = self.pipeline.output_shape();
        let mut forward = |x| encoder.features(x, (s.channels, s.height, s.width));
        let bank = extract(&self.pipeline, &self.train.split, &self.train.indices, BATCH, "knn: memory bank", &mut forward)?;
        let test = extract(&self.pipeline, &self.test.split, &self.test.indices, BATCH, "knn: evaluated", &mut forward)?;
        knn_accuracy(&bank, &self.train.labels, &test, &self.test.labels, encoder.feature_width(), self.classes, self.params)
    }
}
