//! The online kNN monitor of pretraining: weighted kNN (k = 200, temperature 0.1 on cosine
//! similarity, as lightly and solo-learn) of a labeled split's features against another's.

use std::path::Path;

use crate::augment::{AugmentConfig, Pipeline};
use crate::data::split::random_subset;
use crate::data::{Split, Store};
use crate::error::{Error, Result};
use crate::eval::features::extract;
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

    /// The input shape of the evaluated images.
    pub fn input_shape(&self) -> crate::data::ImageShape {
        self.pipeline.output_shape()
    }

    /// Top-1 kNN accuracy of the features `forward` gives.
    pub fn accuracy(&self, width: usize, mut forward: impl FnMut(Vec<f32>) -> Result<Vec<f32>>) -> Result<f64> {
        let bank = extract(&self.pipeline, &self.train.split, &self.train.indices, BATCH, "knn: memory bank", &mut forward)?;
        let test = extract(&self.pipeline, &self.test.split, &self.test.indices, BATCH, "knn: evaluated", &mut forward)?;
        knn_accuracy(&bank, &self.train.labels, &test, &self.test.labels, width, self.classes, self.params)
    }
}
