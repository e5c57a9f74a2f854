//! Self-supervised methods behind one seam. A method owns its networks (online and target),
//! its heads of run-time width, its loss call, its optimiser state and its plan of views; the
//! pretraining loop knows only the [`Method`] trait. Adding a method is its own file here, its
//! loss in `loss/`, one variant of [`MethodConfig`] and a recipe. A method whose state is the
//! online network alone implements [`online_loss::OnlineLoss`] (its heads and its loss) and
//! gets its [`Method`] from there; one with more (a target network, a queue) implements
//! [`Method`] on [`online::Online`] itself, with [`target::Target`] for its moving-average
//! copy, as BYOL and MoCo v2.

pub mod barlow_twins;
pub mod byol;
#[cfg(test)]
mod data_parallel_tests;
pub mod dino;
pub mod expander;
pub mod moco;
pub mod online;
pub mod online_loss;
pub mod simclr;
pub mod simsiam;
pub mod target;
pub mod vicreg;
pub mod view_pair;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::data::ImageShape;
use crate::device::DeviceSpec;
use crate::error::Result;
use crate::models::backbone::Backbone;
use crate::models::encoder::Encoder;
use crate::models::registry::{with_built_backbone, WithBuiltBackbone};
use crate::nn::NnDevice;
use crate::optim::OptimConfig;

pub use barlow_twins::BarlowTwinsConfig;
pub use byol::ByolConfig;
pub use dino::DinoConfig;
pub use moco::MocoConfig;
pub use simclr::SimClrConfig;
pub use simsiam::SimSiamConfig;
pub use vicreg::VicRegConfig;

/// The optimiser state's file inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Where the loop stands when it asks for a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepAt {
    /// Learning rate of this step (from the schedule).
    pub lr: f64,
    /// Steps taken before this one, in the whole run and in an epoch (for schedules a method
    /// keeps itself, e.g. BYOL's target decay, DINO's teacher temperature).
    pub step: u64,
    pub total_steps: u64,
    pub steps_per_epoch: u64,
}

/// What a step gives back.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOut {
    /// The loss before the update.
    pub loss: f32,
    /// Other values worth logging, e.g. BYOL's `tau`.
    pub logs: Vec<(&'static str, f64)>,
    /// The online backbone's features of the views this step trained on, detached, [R, F]
    /// (R = V N, view v of image k at row v N + k; MoCo: view 1's N): what the online linear
    /// probe learns from.
    pub features: Vec<f32>,
}

/// What the pretraining loop needs of a method. Images and views are host buffers
/// [rows, C, H, W]; `shape` is (C, H, W), of view 0 (and of every view but DINO's local
/// crops, which follow the global ones as blocks of their own size). As an [`Encoder`] a method is its online backbone
/// (what monitors see and `save_backbone` writes; `&dyn Method` coerces to `&dyn Encoder`).
pub trait Method: Encoder {
    /// One optimisation step on V views of N images laid out [V N, C, H, W] (view v of image k
    /// at row v N + k; views of another size, DINO's local crops, as blocks [N, C, h, w] after
    /// the others). A non-finite loss leaves every weight as it was and is returned as is.
    /// A device failure is an error.
    fn step(&mut self, views: Vec<f32>, shape: (usize, usize, usize), at: StepAt) -> Result<StepOut>;
    /// Writes everything the method owns (networks, heads, optimiser state) into `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// Reads what [`Method::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<()>;
    /// Writes the (online) backbone alone: what fine-tuning, probe and kNN load.
    fn save_backbone(&self, path: &Path) -> Result<()>;
}

/// A pretraining recipe's `method:`, each with its own settings and the paper's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MethodConfig {
    /// SimCLR (Chen et al. 2020): NT-Xent between two views through a projector.
    SimClr(SimClrConfig),
    /// BYOL (Grill et al. 2020): an online network with a predictor regresses a moving-average
    /// target network's projection of the other view.
    Byol(ByolConfig),
    /// SimSiam (Chen and He 2021): each view's prediction regresses the other view's
    /// projection under stop-gradient; no negatives, no moving average.
    SimSiam(SimSiamConfig),
    /// Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views'
    /// batch-normalised embeddings is pulled towards the identity.
    BarlowTwins(BarlowTwinsConfig),
    /// MoCo v2 (He et al. 2020; Chen et al. 2020): InfoNCE of each query against its key from a
    /// momentum encoder and a queue of earlier keys as negatives.
    MocoV2(MocoConfig),
    /// DINO (Caron et al. 2021): a student matches a moving-average teacher's sharpened,
    /// centred distribution over prototypes, across global and local crops (multi-crop).
    Dino(DinoConfig),
    /// VICReg (Bardes et al. 2022): invariance between the views, variance kept in every
    /// dimension, covariance between dimensions pushed to zero.
    VicReg(VicRegConfig),
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::SimClr(SimClrConfig::default())
    }
}

/// One line per method for `ssl methods`: name, paper, what its recipe sets.
#[derive(Clone, Debug, Serialize)]
pub struct MethodInfo {
    pub name: &'static str,
    pub paper: &'static str,
    /// The recipe's `method:` with the paper's defaults, as RON.
    pub defaults: String,
}

/// What each method's settings provide: the loop and the recipe reach a method only through
/// this (and [`Method`] once built).
pub trait MethodSettings {
    /// The method's name as checkpoints and reports write it.
    fn name(&self) -> &'static str;
    /// The paper it follows.
    fn paper(&self) -> &'static str;
    /// The settings in one line, for reports.
    fn summary(&self) -> String;
    /// Checks the settings, naming the field at fault (`method.temperature`, ...).
    fn validate(&self) -> Result<()>;
    /// The augmentation of each view, from the recipe's `augment`.
    fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig>;
    /// The fewest images a step is defined on.
    fn min_batch(&self) -> usize;
    /// Checks the shapes the views of [`MethodSettings::views`] come out at on the data
    /// (DINO: local crops smaller than the global ones), naming the field at fault.
    fn check_views(&self, shapes: &[ImageShape]) -> Result<()> {
        let _ = shapes;
        Ok(())
    }
    /// Builds the method for model `model` on `device`, its weights drawn from `seed`.
    fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>>;
}

/// How a method is made from a backbone built on a device: each method's settings implement
/// it once, and [`build_on`] resolves the model name and device to compiled types for it.
pub trait FromBackbone {
    fn make<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(&self, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>>;
}

struct Build<'a, M> {
    settings: &'a M,
    opt: OptimConfig,
}

impl<M: FromBackbone> WithBuiltBackbone for Build<'_, M> {
    type Out = Result<Box<dyn Method>>;

    fn run<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(self, dev: D, backbone: B) -> Self::Out {
        self.settings.make(self.opt, dev, backbone)
    }
}

/// The method of `settings` on model `model` and `device`, its weights drawn from `seed`
/// (the backbone first, then what `make` draws).
pub fn build_on<M: FromBackbone>(settings: &M, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
    with_built_backbone(model, device, seed, Build { settings, opt })?
}

impl MethodConfig {
    /// The chosen method's settings.
    pub fn settings(&self) -> &dyn MethodSettings {
        match self {
            MethodConfig::SimClr(c) => c,
            MethodConfig::Byol(c) => c,
            MethodConfig::SimSiam(c) => c,
            MethodConfig::BarlowTwins(c) => c,
            MethodConfig::MocoV2(c) => c,
            MethodConfig::Dino(c) => c,
            MethodConfig::VicReg(c) => c,
        }
    }

    /// Every method with its paper's defaults.
    pub fn all() -> Vec<MethodConfig> {
        vec![
            MethodConfig::SimClr(SimClrConfig::default()),
            MethodConfig::Byol(ByolConfig::default()),
            MethodConfig::SimSiam(SimSiamConfig::default()),
            MethodConfig::MocoV2(MocoConfig::default()),
            MethodConfig::BarlowTwins(BarlowTwinsConfig::default()),
            MethodConfig::VicReg(VicRegConfig::default()),
            MethodConfig::Dino(DinoConfig::default()),
        ]
    }

    /// For `ssl methods`.
    pub fn info(&self) -> MethodInfo {
        MethodInfo { name: self.name(), paper: self.settings().paper(), defaults: crate::recipe::to_ron(self) }
    }

    pub fn name(&self) -> &'static str {
        self.settings().name()
    }

    pub fn summary(&self) -> String {
        self.settings().summary()
    }

    pub fn validate(&self) -> Result<()> {
        self.settings().validate()
    }

    pub fn views(&self, base: &AugmentConfig) -> Vec<AugmentConfig> {
        self.settings().views(base)
    }

    pub fn min_batch(&self) -> usize {
        self.settings().min_batch()
    }

    pub fn check_views(&self, shapes: &[ImageShape]) -> Result<()> {
        self.settings().check_views(shapes)
    }

    pub fn build(&self, model: &str, opt: OptimConfig, seed: u64, device: DeviceSpec) -> Result<Box<dyn Method>> {
        self.settings().build(model, opt, seed, device)
    }
}
