//! Frozen features of a pretraining run's backbone (or of the same model at its random
//! initialisation, or of the raw pixels) on a labeled train and test split, cached in
//! `RUN/eval/features-*.h5` and reused while the backbone file is unchanged.

use std::path::{Path, PathBuf};

use crate::augment::Pipeline;
use crate::data::split::random_subset;
use crate::data::{Split, Store};
use crate::error::{Error, Result};
pub use crate::fsutil::file_digest;
use crate::weights::BACKBONE_FILE;

use super::feature_cache::{self, SplitFeatures};
use crate::models::encoder::extract;

/// Whose features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The run's pretrained backbone.
    Pretrained,
    /// The same model at the initialisation the run started from (its seed).
    RandomInit,
    /// The pixels themselves, through the evaluation view.
    Pixels,
}

impl Source {
    /// The key used in reports and file names.
    pub fn key(self) -> &'static str {
        match self {
            Source::Pretrained => "ssl",
            Source::RandomInit => "random",
            Source::Pixels => "pixels",
        }
    }
}

/// Which labeled data to describe.
#[derive(Clone, Debug)]
pub struct FeatureRequest {
    /// The store (default: the run's pretraining data).
    pub data: Option<PathBuf>,
    pub train_split: String,
    pub test_split: String,
    /// Seeded random subset of the training split (0: all).
    pub max_train: usize,
    /// Where the backbone runs.
    pub device: crate::device::DeviceSpec,
}

/// Features of both splits, and the class names.
pub struct FeatureSet {
    pub train: SplitFeatures,
    pub test: SplitFeatures,
    pub classes: Vec<String>,
    /// Which images: the store, its splits and sizes, and the training subset.
    pub data: String,
    /// [`file_digest`] of the backbone the features came from (empty for the baselines).
    pub backbone: String,
}

fn labeled(store: &Store, name: &str, field: &str) -> Result<Split> {
    let split = store.load_split(name).map_err(|e| Error::invalid(field, e.to_string()))?;
    split.labels_for(store.path(), field)?;
    Ok(split)
}

/// The features of `source` for `run`, from the cache when it is current.
pub fn features(run: &Path, source: Source, req: &FeatureRequest) -> Result<FeatureSet> {
    let recipe = crate::recipe::load_pretraining_run(run, "run")?;
    let file = req.data.clone().unwrap_or_else(|| recipe.data.file.clone());
    let store = Store::open(&file)?;
    let train = labeled(&store, &req.train_split, "--train-split")?;
    let test = labeled(&store, &req.test_split, "--test-split")?;
    let classes = train.class_count();
    let train_idx = random_subset(train.len(), req.max_train, recipe.seed);
    let test_idx: Vec<usize> = (0..test.len()).collect();
    let backbone = run.join(BACKBONE_FILE);
    let stamp = |p: &Path| std::fs::metadata(p).ok().and_then(|m| m.modified().ok()).map(|t| format!("{t:?}")).unwrap_or_default();
    // Which images (kept with every result), and the cache's key: which features of them.
    let data = format!("{} {}:{} {}:{} max {}", file.display(), req.train_split, train.len(), req.test_split, test.len(), req.max_train);
    let source_id = format!(
        "{} of {} ({}); data {data} {}; view {:?}",
        source.key(),
        recipe.model,
        if source == Source::Pretrained { format!("{} {}", backbone.display(), stamp(&backbone)) } else { format!("seed {}", recipe.seed) },
        stamp(&file),
        recipe.augment.evaluation()
    );
    let digest = if source == Source::Pretrained { file_digest(&backbone) } else { String::new() };
    let names: Vec<String> = if train.classes.len() == classes { train.classes.clone() } else { (0..classes).map(|i| i.to_string()).collect() };
    let cache = run.join("eval").join(format!("features-{}.h5", source.key()));
    if let Some(mut v) = feature_cache::read(&cache, Some(&source_id), &["train", "test"])? {
        let test = v.pop().expect("two splits");
        let train = v.pop().expect("two splits");
        return Ok(FeatureSet { train, test, classes: names, data, backbone: digest });
    }
    let pipeline = evaluation_pipeline(&recipe, &train)?;
    let describe = |split: &Split, idx: &[usize], label: &str| -> Result<SplitFeatures> {
        let all = split.labels.as_deref().unwrap_or_default();
        let y: Vec<u32> = idx.iter().map(|&i| all[i]).collect();
        let (x, dim) = split_features(run, &recipe.model, recipe.seed, source, &pipeline, split, idx, req.device, label)?;
        Ok(SplitFeatures { x, y, dim })
    };
    let train_f = describe(&train, &train_idx, &format!("{} features: {}", source.key(), req.train_split))?;
    let test_f = describe(&test, &test_idx, &format!("{} features: {}", source.key(), req.test_split))?;
    if source != Source::Pixels {
        std::fs::create_dir_all(run.join("eval")).map_err(|e| Error::Io { path: run.join("eval"), source: e })?;
        feature_cache::write(&cache, &source_id, &[("train", &train_f), ("test", &test_f)])?;
    }
    Ok(FeatureSet { train: train_f, test: test_f, classes: names, data, backbone: digest })
}

/// How a run's backbone sees `images` in evaluation: the evaluation view of `recipe`'s
/// augmentation (the view pretraining's kNN monitor and fine-tuning evaluate), normalised
/// (when pretraining normalised) with the statistics of the split it pretrained on, read from
/// its store, whichever store the images come from; with `images`' own when that store or
/// split is no longer there.
pub fn evaluation_pipeline(recipe: &crate::recipe::PretrainRecipe, images: &Split) -> Result<Pipeline> {
    let trained_on = Store::open(&recipe.data.file).and_then(|s| s.split_stats(&recipe.data.split)).ok();
    let (mean, std) = trained_on.unwrap_or_else(|| (images.mean.clone(), images.std.clone()));
    Pipeline::new(recipe.augment.evaluation(), images.shape, &mean, &std)
}

/// The features of `split`'s images at `idx` through `pipeline`, from `source` (the backbone
/// of `run`, model `model` at its initialisation from `seed`, or the pixels): [N, F]
/// row-major, and F. Shows a progress bar labelled `label`.
///
/// # Errors
/// An input shape the model refuses, a backbone file that does not fit, device failures.
#[allow(clippy::too_many_arguments)]
pub fn split_features(run: &Path, model: &str, seed: u64, source: Source, pipeline: &Pipeline, split: &Split, idx: &[usize], device: crate::device::DeviceSpec, label: &str) -> Result<(Vec<f32>, usize)> {
    let shape = pipeline.output_shape();
    Ok(match source {
        Source::Pixels => (extract(pipeline, split, idx, 1024, label, Ok)?, shape.len()),
        _ => {
            crate::models::registry::check_input(model, shape)?;
            let backbone = run.join(BACKBONE_FILE);
            let weights = (source == Source::Pretrained).then_some(backbone.as_path());
            let net = crate::models::encoder::load(model, weights, seed, device)?;
            let s = (shape.channels, shape.height, shape.width);
            let forward = |x| crate::device::guarded(device, "feature extraction", || net.features(x, s));
            (extract(pipeline, split, idx, 256, label, forward)?, net.feature_width())
        }
    })
}
