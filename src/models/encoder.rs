//! A backbone seen only as features: the interface the kNN monitor, the linear probe, kNN
//! evaluation and every method share, and feature extraction over a split (images as
//! evaluation sees them: whole, resized, normalised; forwarded in batches without a tape).

use std::path::Path;

use crate::augment::Pipeline;
use crate::data::Split;
use crate::device::DeviceSpec;
use crate::error::Result;
use crate::nn::NnDevice;

use super::backbone::Backbone;
use super::registry::{with_built_backbone, WithBuiltBackbone};

/// Images in, features out, in evaluation mode (BatchNorm on running statistics).
pub trait Encoder {
    /// Features of N images [N, C, H, W] (host buffer; `shape` = (C, H, W)): [N, F].
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>>;
    /// The feature width F.
    fn feature_width(&self) -> usize;
}

/// A classifier on an encoder's features: pretraining's online linear probe, which the
/// monitor evaluates on its held-out images.
pub trait FeatureClassifier {
    /// The predicted class of each row of `features` [N, F].
    fn predict(&self, features: &[f32]) -> Result<Vec<u32>>;
}

/// One value a monitor measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    /// Its key in epoch records (`knn_top1`) and its name in messages (`kNN top-1`).
    pub key: &'static str,
    pub label: &'static str,
    pub value: f64,
    /// A fraction shown as a percentage (else shown as is).
    pub percent: bool,
    /// What this value shows is wrong (collapsed embeddings), in one line.
    pub warning: Option<String>,
}

impl Measure {
    /// `label value` as the progress output shows it.
    pub fn text(&self) -> String {
        if self.percent {
            format!("{} {:.2}%", self.label, 100.0 * self.value)
        } else {
            format!("{} {:.3}", self.label, self.value)
        }
    }
}

/// Something measured on an encoder between epochs (pretraining's kNN, online-probe and
/// collapse measures): training calls it without knowing what it is, evaluation provides it.
pub trait Monitor {
    /// The shape of the images it shows the encoder (checked against training's views
    /// before any work).
    fn input_shape(&self) -> crate::data::ImageShape;
    /// Its measures of `encoder`, and of `probe` on the encoder's features when given.
    fn measure(&self, encoder: &dyn Encoder, probe: Option<&dyn FeatureClassifier>) -> Result<Vec<Measure>>;
}

/// Makes the monitor a run asks for, if any, once its data is loaded: the store and the split
/// training reads (the kNN monitor normalises with that split's statistics).
pub type MonitorFactory<'a> = dyn Fn(&crate::data::Store, &crate::data::Split) -> Result<Option<Box<dyn Monitor>>> + 'a;

struct Frozen<B, D, const C: usize, const F: usize> {
    dev: D,
    backbone: B,
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Encoder for Frozen<B, D, C, F> {
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        super::backbone::features(&self.dev, &self.backbone, images, shape)
    }

    fn feature_width(&self) -> usize {
        F
    }
}

struct Load<'a> {
    weights: Option<&'a Path>,
}

impl WithBuiltBackbone for Load<'_> {
    type Out = Result<Box<dyn Encoder>>;

    fn run<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(self, dev: D, mut backbone: B) -> Self::Out {
        if let Some(path) = self.weights {
            crate::weights::load_module(&mut backbone, path)?;
        }
        Ok(Box::new(Frozen { dev, backbone }))
    }
}

/// Model `model` on `device`: its weights drawn from `seed` (a random initialisation), then
/// read from `weights` when given (a backbone file; one of another model is refused).
pub fn load(model: &str, weights: Option<&Path>, seed: u64, device: DeviceSpec) -> Result<Box<dyn Encoder>> {
    with_built_backbone(model, device, seed, Load { weights })?
}

/// The features of the images at `indices`, [N, F] row-major; `forward` maps a batch
/// [n, C, H, W] to [n, F]. Shows a progress bar labelled `label`.
pub fn extract(pipeline: &Pipeline, split: &Split, indices: &[usize], batch: usize, label: &str, mut forward: impl FnMut(Vec<f32>) -> Result<Vec<f32>>) -> Result<Vec<f32>> {
    let bar = crate::progress::bar(indices.len() as u64, label);
    let mut out = Vec::new();
    let mut images = Vec::new();
    for chunk in indices.chunks(batch.max(1)) {
        pipeline.eval_into(split, chunk, &mut images);
        out.extend(forward(std::mem::take(&mut images))?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
