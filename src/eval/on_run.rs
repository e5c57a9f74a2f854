//! `ssl probe` and `ssl knn` on a pretraining run: frozen features of the pretrained backbone
//! and, as baselines, of the random initialisation and of the raw pixels; results merged into
//! `RUN/eval/probe.json` and `RUN/eval/knn.json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::frozen::{features, FeatureRequest, Source};
use super::knn::{knn_scores, KnnParams};
use crate::metrics::{evaluate, Evaluation};
use super::probe::{probe, Labeled, ProbeConfig};
use crate::error::{Context, Error, Result};

/// One linear-probe result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeEntry {
    pub train: Evaluation,
    pub test: Evaluation,
    pub dim: usize,
    pub config: ProbeConfig,
    pub classes: Vec<String>,
    pub seconds: f64,
    /// The images evaluated (see [`merge`]); empty in files written before it was recorded.
    #[serde(default)]
    pub data: String,
    /// `frozen::file_digest` of the backbone evaluated (empty for baselines and older files).
    #[serde(default)]
    pub backbone: String,
}

/// One kNN result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnEntry {
    pub test: Evaluation,
    pub k: usize,
    pub temperature: f32,
    pub train_images: usize,
    pub seconds: f64,
    /// The images evaluated (see [`merge`]).
    #[serde(default)]
    pub data: String,
    /// `frozen::file_digest` of the backbone evaluated (empty for baselines and older files).
    #[serde(default)]
    pub backbone: String,
}

/// Writes `entry` under `key` into the results file at `path`. The entries of one file are
/// measured on the same images, so they compare as baselines: entries measured on other data
/// (another store, split or subset) are dropped.
fn merge<T: Serialize>(path: &Path, key: &str, entry: &T) -> Result<()> {
    let entry = serde_json::to_value(entry).expect("a result serialises");
    let mut all: BTreeMap<String, serde_json::Value> = if path.exists() {
        let text = std::fs::read_to_string(path).at(path)?;
        serde_json::from_str(&text).map_err(|e| Error::bad_input(path, e.to_string()))?
    } else {
        BTreeMap::new()
    };
    all.retain(|_, e| e.get("data") == entry.get("data"));
    all.insert(key.to_string(), entry);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    crate::fsutil::write_json(path, &all)
}

/// Reads `RUN/eval/NAME.json` if present.
pub fn read<T: DeserializeOwned>(run: &Path, name: &str) -> Result<BTreeMap<String, T>> {
    let path = run.join("eval").join(format!("{name}.json"));
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(&path).at(&path)?;
    serde_json::from_str(&text).map_err(|e| Error::bad_input(&path, e.to_string()))
}

/// Linear probe of each source; returns (source, entry) in order.
pub fn probe_run(run: &Path, sources: &[Source], req: &FeatureRequest, cfg: ProbeConfig) -> Result<Vec<(Source, ProbeEntry)>> {
    let mut out = Vec::new();
    for &source in sources {
        let t = Instant::now();
        let f = features(run, source, req)?;
        let classes = f.classes.len();
        let bar = crate::progress::bar(cfg.epochs as u64, &format!("{} probe", source.key()));
        let (train, test) = probe(
            &Labeled { x: &f.train.x, y: &f.train.y },
            &Labeled { x: &f.test.x, y: &f.test.y },
            f.train.dim,
            classes,
            cfg,
            |_, loss| {
                bar.set_message(format!("{} probe loss {loss:.4}", source.key()));
                bar.inc(1);
            },
        )?;
        bar.finish_and_clear();
        let entry = ProbeEntry { train, test, dim: f.train.dim, config: cfg, classes: f.classes, seconds: t.elapsed().as_secs_f64(), data: f.data, backbone: f.backbone };
        merge(&run.join("eval/probe.json"), source.key(), &entry)?;
        out.push((source, entry));
    }
    Ok(out)
}

/// Weighted kNN of each source.
pub fn knn_run(run: &Path, sources: &[Source], req: &FeatureRequest, params: KnnParams) -> Result<Vec<(Source, KnnEntry)>> {
    let mut out = Vec::new();
    for &source in sources {
        let t = Instant::now();
        let f = features(run, source, req)?;
        let classes = f.classes.len();
        let scores = knn_scores(&f.train.x, &f.train.y, &f.test.x, f.train.dim, classes, params)?;
        let entry = KnnEntry { test: evaluate(&scores, &f.test.y, classes), k: params.k, temperature: params.temperature, train_images: f.train.y.len(), seconds: t.elapsed().as_secs_f64(), data: f.data, backbone: f.backbone };
        merge(&run.join("eval/knn.json"), source.key(), &entry)?;
        out.push((source, entry));
    }
    Ok(out)
}
