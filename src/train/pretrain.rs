//! `ssl pretrain`: the pretraining loop, for every method behind [`crate::method::Method`].
//! Recipe in, run folder out: the resolved recipe, `metrics.jsonl`, checkpoints, and
//! `backbone.safetensors` at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;


use crate::augment::Pipeline;
use crate::error::{Error, Result};
use crate::method::{Method, StepAt};
use crate::models::encoder::{FeatureClassifier, Measure, Monitor, MonitorFactory};
use crate::models::registry::check_input;
use crate::recipe::pretrain::PretrainRecipe;
use crate::run::checkpoint::CheckpointState;
use crate::run::folder as run_dir;
use crate::run::BACKBONE_FILE;

use super::online_probe::OnlineProbe;
use super::signal;
use super::trainer::{self, End, EpochReport, Plan, StepReport, Task};

/// How to start a pretraining or fine-tuning run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Continue the run in this folder from its newest checkpoint.
    pub resume: Option<PathBuf>,
    /// Replace an existing run folder.
    pub force: bool,
    /// Behave as if Ctrl-C came after this many steps of the whole run, or after the first step
    /// of a resume already past it (for tests).
    pub stop_after: Option<u64>,
    /// With `resume`: allow the recipe's `epochs` to change (the schedule is recomputed).
    pub extend: bool,
}

impl RunOptions {
    /// Refuses flags that would not act together.
    pub fn check(&self) -> Result<()> {
        if self.extend && self.resume.is_none() {
            return Err(Error::invalid("--extend", "changes the length of a resumed run; give it with --resume RUN"));
        }
        if self.force && self.resume.is_some() {
            return Err(Error::invalid("--force", "replaces a run folder, --resume continues one; give one of them"));
        }
        Ok(())
    }

    /// The run folder, where it resumes from, and the schedule changes the resume asks for
    /// (see [`run_dir::check_resume`]); reads only.
    /// `method`: the pretraining method's name, empty for fine-tuning.
    pub fn resume_point<R: serde::Serialize + serde::de::DeserializeOwned>(&self, recipe: &R, model: &str, method: &str) -> Result<Option<(PathBuf, CheckpointState, Vec<run_dir::Change>)>> {
        self.check()?;
        let Some(run) = &self.resume else { return Ok(None) };
        let (dir, state) = run_dir::resume_point(run, model, method)?;
        let changes = run_dir::check_resume(run, recipe, self.extend)?;
        Ok(Some((dir, state, changes)))
    }

    /// Whether to stop after step `global` (Ctrl-C, or the test hook).
    pub fn stop_now(&self, global: u64) -> bool {
        signal::stop_requested() || self.stop_after.is_some_and(|n| global >= n)
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs done; `summary` says how it went in one line.
    Finished { run: PathBuf, summary: String },
    /// Stopped by Ctrl-C after saving `checkpoint`.
    Interrupted { run: PathBuf, checkpoint: PathBuf, step: u64 },
}

/// Runs (or resumes) the pretraining that `recipe` describes; the monitor `monitor` makes from
/// the loaded data (the kNN monitor of `eval`, when the recipe asks for one) is measured on the
/// backbone every `knn.every_epochs` epochs and after the last.
pub fn pretrain(recipe: &PretrainRecipe, opts: &RunOptions, monitor: &MonitorFactory) -> Result<Outcome> {
    recipe.validate()?;
    let method = recipe.method()?;
    let run = opts.resume.clone().unwrap_or_else(|| recipe.run_dir.join(&recipe.name));
    let resume_from = opts.resume_point(recipe, &recipe.model, method.name())?;

    // Data, model and monitor are all checked before anything is written.
    let (store, split) = recipe.load_data()?;
    let pipelines = method.views(&recipe.augment).into_iter().map(|cfg| Pipeline::for_split(cfg, &split)).collect::<Result<Vec<_>>>()?;
    let view_plan: Vec<&Pipeline> = pipelines.iter().collect();
    let shape = pipelines[0].output_shape();
    method.check_views(&pipelines.iter().map(|p| p.output_shape()).collect::<Vec<_>>())?;
    check_input(&recipe.model, shape)?;
    // Views of another size (DINO's local crops): a model that cannot take them is refused.
    for other in pipelines.iter().map(|p| p.output_shape()).filter(|s| *s != shape) {
        check_input(&recipe.model, other).map_err(|e| Error::invalid("method", format!("{}'s views of {other}: {e}", method.name())))?;
    }
    if recipe.batch_size > split.len() {
        return Err(Error::invalid(
            "batch_size",
            format!("{} is larger than the dataset ({} images in {}:{})", recipe.batch_size, split.len(), recipe.data.file.display(), split.name),
        ));
    }
    // Data-parallel, rank 0 alone measures (every rank holds the same weights).
    let monitor = if crate::dist::is_writer() { monitor(&store, &split)? } else { None };
    if let Some(m) = &monitor {
        if m.input_shape() != shape {
            return Err(Error::invalid("knn", format!("its splits give {} images, pretraining {}", m.input_shape(), shape)));
        }
    }
    let ranks = crate::dist::join(recipe.batch_size, 1, method.name(), recipe.sync_batchnorm, recipe.device)?;
    let batching = trainer::batching(recipe.batch_size, recipe.drop_last, method.min_batch(), ranks);
    let steps = batching.steps(split.len());
    if let Some((_, state, _)) = &resume_from {
        trainer::check_resume_ranks(&run, state, split.len(), batching, method.min_batch())?;
        // Before format 1 a last batch of one image was a step of its own.
        let old_steps = if recipe.drop_last { split.len() / recipe.batch_size } else { split.len().div_ceil(recipe.batch_size) };
        if state.format == 0 && old_steps != steps {
            return Err(run_dir::stale_checkpoint(&run, "its last batch of one image is now folded into the one before"));
        }
        run_dir::refuse_fewer_epochs(&run, recipe.epochs, state.epoch)?;
    }
    let sched = recipe.lr.schedule(recipe.batch_size, recipe.epochs, steps)?;
    let mut net = method.build(&recipe.model, recipe.optimizer.at(recipe.peak_lr()), recipe.seed, recipe.device)?;

    // The online probe, where the split has labels to learn from.
    let mut probe = match (&split.labels, recipe.knn.online_probe) {
        (Some(_), true) => Some(OnlineProbe::new(net.feature_width(), split.class_count(), recipe.seed)?),
        _ => None,
    };
    if let Some((dir, _, _)) = &resume_from {
        net.load(dir)?;
        if let Some(p) = &mut probe {
            p.load(dir)?;
        }
    }
    let (mut log, start) = trainer::open(&run, resume_from.as_ref(), opts.force, recipe)?;
    let plan = Plan {
        run: &run,
        model: &recipe.model,
        method: method.name(),
        split: &split,
        images: None,
        views: &view_plan,
        batching,
        seed: recipe.seed,
        epochs: recipe.epochs,
        schedule: &sched,
        checkpoint_every: recipe.checkpoint.every_epochs,
        keep_checkpoints: recipe.checkpoint.keep,
        early_stopping: None,
    };
    let shape = (shape.channels, shape.height, shape.width);
    let monitor = monitor.as_deref();
    let labels = split.labels.as_deref();
    let mut task = Pretraining { net, device: recipe.device, shape, monitor, every: recipe.knn.every_epochs, probe, labels, last: Vec::new() };
    let (last_loss, elapsed) = match trainer::train(&plan, &mut task, start, &mut log, opts)? {
        End::Interrupted { checkpoint, step } => return Ok(Outcome::Interrupted { run, checkpoint, step }),
        End::Finished { last_loss, elapsed_s, .. } => (last_loss, elapsed_s),
    };
    if crate::dist::is_writer() {
        task.net.save_backbone(&run.join(BACKBONE_FILE))?;
    }
    let measured: String = task.last.iter().map(|m| format!(", {}", m.text())).collect();
    let summary = match last_loss {
        None => format!("nothing left to do: all {} epochs were done; backbone at {}", recipe.epochs, run.join(BACKBONE_FILE).display()),
        Some(loss) => format!("done in {elapsed:.0} s: final loss {loss:.4}{measured}; backbone at {}", run.join(BACKBONE_FILE).display()),
    };
    Ok(Outcome::Finished { run, summary })
}

/// Pretraining as the loop sees it: a method's steps, the online probe beside them, and the
/// monitor after epochs.
struct Pretraining<'a> {
    net: Box<dyn Method>,
    device: crate::device::DeviceSpec,
    shape: (usize, usize, usize),
    monitor: Option<&'a dyn Monitor>,
    every: usize,
    probe: Option<OnlineProbe>,
    /// The split's labels, for the probe.
    labels: Option<&'a [u32]>,
    /// The monitor's last measures.
    last: Vec<Measure>,
}

impl Task for Pretraining<'_> {
    fn step(&mut self, views: Vec<f32>, indices: &[usize], at: StepAt) -> Result<StepReport> {
        let net = &mut self.net;
        let out = crate::device::guarded(self.device, "a pretraining step", || net.step(views, self.shape, at))?;
        let correct = match (&mut self.probe, self.labels) {
            // Row r of the features is a view of image indices[r mod N]; view 1's rows count.
            // Every step, whatever the loss (data-parallel, the ranks must all take part; the
            // probe's update sees non-finite features and skips on every rank).
            (Some(p), Some(labels)) => {
                let rows: Vec<u32> = (0..out.features.len() / self.net.feature_width()).map(|r| labels[indices[r % indices.len()]]).collect();
                Some(p.step(&out.features, &rows, indices.len())?)
            }
            _ => None,
        };
        // Weight 1 a step in all: data-parallel, each rank's share of it.
        Ok(StepReport { loss: out.loss, weight: crate::dist::loss_share(), correct, logs: out.logs })
    }

    fn end_epoch(&mut self, done: usize, last: bool) -> Result<EpochReport> {
        let Some(m) = self.monitor.filter(|_| done % self.every.max(1) == 0 || last) else {
            return Ok(EpochReport::default());
        };
        let t = Instant::now();
        let probe = self.probe.as_ref().map(|p| p as &dyn FeatureClassifier);
        let measures = crate::device::guarded(self.device, "the kNN monitor", || m.measure(&*self.net, probe))?;
        let mut text: String = measures.iter().map(|m| format!(", {}", m.text())).collect();
        text += &format!(" ({:.0} s)", t.elapsed().as_secs_f64());
        let values = measures.iter().map(|m| (m.key, m.value)).collect();
        let warnings = measures.iter().filter_map(|m| m.warning.clone()).collect();
        self.last = measures;
        Ok(EpochReport { values, text, validation: None, warnings })
    }

    fn predicts_labels(&self) -> bool {
        self.probe.is_some()
    }

    fn accuracy_label(&self) -> &'static str {
        "online probe train top-1"
    }

    fn save(&self, dir: &Path) -> Result<()> {
        // The weights and moments come down from the device here.
        crate::device::guarded(self.device, "saving a checkpoint", || self.net.save(dir))?;
        match &self.probe {
            Some(p) => p.save(dir),
            None => Ok(()),
        }
    }

    fn nan_advice(&self) -> &'static str {
        "try a lower lr.base (or, with SimCLR, a higher temperature)"
    }
}
