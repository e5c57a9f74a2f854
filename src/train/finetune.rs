//! `ssl finetune`: a backbone (pretrained or random) and a linear classifier trained on labels,
//! with early stopping on a validation split, then one evaluation on the test split.
//! Run folder: the resolved recipe, `metrics.jsonl`, checkpoints, `best/` (the best weights on
//! validation) and `result.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::augment::Pipeline;
use crate::data::split::{stratified_fraction, stratified_split};
use crate::data::{Split, Store};
use crate::error::{Error, Result};
use crate::method::StepAt;
use crate::metrics::{evaluate, Evaluation};
use crate::models::encoder::extract;
use crate::models::registry::check_input;
use crate::recipe::{FinetuneRecipe, PretrainRecipe};
use crate::run::folder as run_dir;
use crate::run::BACKBONE_FILE;

use super::classifier_net::{self, ClassifierNet, ClassifierSpec};
use super::pretrain::Outcome;
use super::trainer::{self, EarlyStopping, End, EpochReport, Plan, StepReport, Task};

/// What `result.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneResult {
    pub name: String,
    pub model: String,
    /// The backbone's origin: a pretraining run or file, or "random".
    pub init: String,
    pub frozen: bool,
    pub label_fraction: f64,
    pub train_images: usize,
    pub val_images: usize,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub best_epoch: usize,
    pub best_val_top1: Option<f64>,
    pub classes: Vec<String>,
    pub test: Evaluation,
    pub elapsed_s: f64,
}

/// The fewest images a fine-tuning step takes: BatchNorm in training mode needs more than one
/// value per channel (PyTorch refuses less), so a last batch of one image joins the one before.
const MIN_BATCH: usize = 2;

/// Evaluation batch size.
const EVAL_BATCH: usize = 256;

/// Scores of `net` on the images at `indices`.
fn scores(net: &dyn ClassifierNet, pipeline: &Pipeline, split: &Split, indices: &[usize], label: &str) -> Result<Vec<f32>> {
    let s = pipeline.output_shape();
    extract(pipeline, split, indices, EVAL_BATCH, label, |x| net.logits(x, (s.channels, s.height, s.width)))
}

/// The backbone file of `pretrained` (a run folder or a file), checked against `model` when a
/// run folder says which model made it.
pub fn pretrained_backbone(pretrained: &Path, model: &str) -> Result<PathBuf> {
    if pretrained.is_dir() {
        let recipe = pretrained.join("recipe.ron");
        if recipe.exists() {
            let r: PretrainRecipe = crate::recipe::load(&recipe, &[])?;
            if r.model != model {
                return Err(Error::invalid(
                    "pretrained",
                    format!("{} holds a '{}' backbone, the recipe's model is '{model}'", pretrained.display(), r.model),
                ));
            }
        }
        let file = pretrained.join(BACKBONE_FILE);
        if !file.exists() {
            return Err(Error::invalid("pretrained", format!("{}: no {BACKBONE_FILE} (has the pretraining finished?)", pretrained.display())));
        }
        return Ok(file);
    }
    if !pretrained.exists() {
        return Err(Error::invalid("pretrained", format!("{}: no such file or run folder", pretrained.display())));
    }
    Ok(pretrained.to_path_buf())
}

/// Runs (or resumes) the fine-tuning that `recipe` describes.
pub fn finetune(recipe: &FinetuneRecipe, opts: &super::RunOptions) -> Result<Outcome> {
    recipe.validate()?;
    let run = opts.resume.clone().unwrap_or_else(|| recipe.run_dir.join(&recipe.name));
    let resume_from = opts.resume_point(recipe, &recipe.model, "")?;
    let d = &recipe.data;
    let store = Store::open(&d.file)?;
    let train = store.load_split(&d.train_split).map_err(|e| Error::invalid("data.train_split", e.to_string()))?;
    let train_labels = train.labels_for(&d.file, "data.train_split")?;
    let test = store.load_split(&d.test_split).map_err(|e| Error::invalid("data.test_split", e.to_string()))?;
    let test_labels = test.labels_for(&d.file, "data.test_split")?.to_vec();
    let classes = train.class_count();
    if train.shape != test.shape {
        return Err(Error::invalid("data.test_split", format!("images of {} differ from the training split's {}", test.shape, train.shape)));
    }
    // The labeled pool (a stratified fraction), then the validation split out of it.
    let pool = if d.label_fraction < 1.0 {
        stratified_fraction(train_labels, classes, d.label_fraction, recipe.seed).map_err(|e| e.for_field("data.label_fraction"))?
    } else {
        (0..train.len()).collect()
    };
    // Stratified, so that no class loses its few labeled images to validation by chance.
    let (train_idx, val_idx): (Vec<usize>, Vec<usize>) = if d.val_fraction > 0.0 {
        let pool_labels: Vec<u32> = pool.iter().map(|&i| train_labels[i]).collect();
        let parts = stratified_split(Some(&pool_labels), pool.len(), &[d.val_fraction, 1.0 - d.val_fraction], recipe.seed)
            .map_err(|e| Error::invalid("data.val_fraction", format!("{} of {} labeled images: {e}", d.val_fraction, pool.len())))?;
        (parts[1].iter().map(|&i| pool[i]).collect(), parts[0].iter().map(|&i| pool[i]).collect())
    } else {
        (pool, Vec::new())
    };
    let mut per_class = vec![0usize; classes];
    train_idx.iter().for_each(|&i| per_class[train_labels[i] as usize] += 1);
    if let Some(k) = per_class.iter().position(|&c| c == 0) {
        return Err(Error::invalid("data", format!("no training image of class {k} is left after the label fraction and the validation split")));
    }
    if recipe.batch_size > train_idx.len() {
        return Err(Error::invalid("batch_size", format!("{} is larger than the {} training images", recipe.batch_size, train_idx.len())));
    }
    let pipeline = Pipeline::for_split(recipe.augment.clone(), &train)?;
    let eval_pipeline = Pipeline::for_split(recipe.augment.evaluation(), &train)?;
    let backbone_file = recipe.pretrained.as_deref().map(|p| pretrained_backbone(p, &recipe.model)).transpose()?;
    let shape = pipeline.output_shape();
    check_input(&recipe.model, shape)?;
    let spec = ClassifierSpec {
        classes,
        dropout: recipe.dropout,
        frozen: recipe.backbone.freeze,
        opt: recipe.optimizer.at(recipe.lr.peak(recipe.batch_size)),
        seed: recipe.seed,
        device: recipe.device,
    };
    let mut net = classifier_net::build(&recipe.model, spec)?;
    if let Some(f) = &backbone_file {
        net.load_backbone(f)?;
    }
    let ranks = crate::dist::join(recipe.batch_size, 1, "fine-tuning", recipe.sync_batchnorm, recipe.device)?;
    let batching = trainer::batching(recipe.batch_size, false, MIN_BATCH, ranks);
    let steps = batching.steps(train_idx.len());
    // Few labels make short epochs: the schedule's epochs (warmup, milestones, annealing) are
    // stretched to `min_steps` steps in all, and as many real epochs are run as that takes.
    let schedule_epoch = steps.max(recipe.min_steps.div_ceil(recipe.epochs));
    let epochs = (recipe.epochs * schedule_epoch).div_ceil(steps);
    let sched = recipe.lr.schedule(recipe.batch_size, recipe.epochs, schedule_epoch)?;
    let stretched = (epochs > recipe.epochs).then(|| {
        format!(
            "min_steps {}: {steps} steps per epoch on {} training images, so {epochs} epochs instead of {} (the learning-rate schedule stretches with them)",
            recipe.min_steps,
            train_idx.len(),
            recipe.epochs
        )
    });
    if let Some((_, state, changes)) = &resume_from {
        if state.format == 0 && (d.val_fraction > 0.0 || train_idx.len() % recipe.batch_size == 1) {
            return Err(run_dir::stale_checkpoint(&run, "validation splits are now stratified and a last batch of one image is folded"));
        }
        run_dir::refuse_fewer_epochs(&run, epochs, state.epoch)?;
        trainer::check_resume_ranks(&run, state, train_idx.len(), batching, MIN_BATCH)?;
        let stopped = state.loop_state.stopped_early;
        if (state.epoch >= epochs || stopped) && changes.is_empty() && run.join("result.json").exists() {
            let summary = format!("nothing left to do: the run is finished; results in {}", run.join("result.json").display());
            return Ok(Outcome::Finished { run, summary });
        }
    }

    if let Some((dir, _, _)) = &resume_from {
        net.load(dir, true)?;
    }
    let (mut log, start) = trainer::open(&run, resume_from.as_ref(), opts.force, recipe)?;
    if let Some(line) = &stretched {
        crate::progress::message(line);
    }
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let best_dir = run.join("best");
    let val_labels: Vec<u32> = val_idx.iter().map(|&i| train_labels[i]).collect();
    let plan = Plan {
        run: &run,
        model: &recipe.model,
        method: "",
        split: &train,
        images: Some(&train_idx),
        views: &[&pipeline],
        batching,
        seed: recipe.seed,
        epochs,
        schedule: &sched,
        checkpoint_every: recipe.checkpoint.every_epochs,
        keep_checkpoints: recipe.checkpoint.keep,
        early_stopping: Some(EarlyStopping { patience: recipe.early_stopping.patience, min_delta: recipe.early_stopping.min_delta, min_steps: recipe.min_steps as u64 }),
    };
    let mut task = FineTuning {
        net,
        shape: (c, h, w),
        labels: train_labels,
        recipe,
        eval_pipeline: &eval_pipeline,
        split: &train,
        val_idx: &val_idx,
        val_labels: &val_labels,
        classes,
        best_dir: &best_dir,
    };
    let (epoch, state, elapsed_s) = match trainer::train(&plan, &mut task, start, &mut log, opts)? {
        End::Interrupted { checkpoint, step } => return Ok(Outcome::Interrupted { run, checkpoint, step }),
        End::Finished { epochs_run, state, elapsed_s, .. } => (epochs_run, state, elapsed_s),
    };
    if !crate::dist::is_writer() {
        // Rank 0 evaluates the kept weights and writes the result.
        return Ok(Outcome::Finished { run, summary: String::new() });
    }
    let mut net = task.net;
    let (best_val, best_epoch, stopped_early) = (state.best_val, state.best_epoch, state.stopped_early);
    if best_val.is_some() {
        net.load(&best_dir, false)?;
    } else {
        save_weights(net.as_ref(), &best_dir)?;
    }
    let all: Vec<usize> = (0..test.len()).collect();
    let result_test = evaluate(&scores(net.as_ref(), &eval_pipeline, &test, &all, "test")?, &test_labels, classes);
    let result = FinetuneResult {
        name: recipe.name.clone(),
        model: recipe.model.clone(),
        init: backbone_file.map_or("random".into(), |f| f.display().to_string()),
        frozen: recipe.backbone.freeze,
        label_fraction: d.label_fraction,
        train_images: train_idx.len(),
        val_images: val_idx.len(),
        epochs_run: epoch,
        stopped_early,
        best_epoch,
        best_val_top1: best_val,
        classes: train.classes.clone(),
        test: result_test,
        elapsed_s,
    };
    crate::fsutil::write_json(&run.join("result.json"), &result)?;
    let summary = format!("done in {:.0} s: test top-1 {:.2}%; results in {}", result.elapsed_s, 100.0 * result.test.top1, run.join("result.json").display());
    Ok(Outcome::Finished { run, summary })
}

/// Fine-tuning as the loop sees it: labeled steps, validation after epochs.
struct FineTuning<'a> {
    net: Box<dyn ClassifierNet>,
    shape: (usize, usize, usize),
    labels: &'a [u32],
    recipe: &'a FinetuneRecipe,
    eval_pipeline: &'a Pipeline,
    split: &'a Split,
    val_idx: &'a [usize],
    val_labels: &'a [u32],
    classes: usize,
    best_dir: &'a Path,
}

impl Task for FineTuning<'_> {
    fn step(&mut self, images: Vec<f32>, indices: &[usize], at: StepAt) -> Result<StepReport> {
        let labels: Vec<u32> = indices.iter().map(|&i| self.labels[i]).collect();
        let r = self.recipe;
        // Dropout masks from (seed, step): a resumed run draws the same ones.
        let dropout_seed = r.seed ^ (at.step + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let net = &mut self.net;
        let (loss, correct) = crate::device::guarded(r.device, "a fine-tuning step", || net.step(images, self.shape, &labels, r.label_smoothing, at.lr, at.lr * r.backbone.lr_factor, dropout_seed))?;
        Ok(StepReport { loss, weight: labels.len() as f64, correct: Some(correct), logs: Vec::new() })
    }

    fn end_epoch(&mut self, _done: usize, _last: bool) -> Result<EpochReport> {
        if self.val_idx.is_empty() {
            return Ok(EpochReport::default());
        }
        // Data-parallel, rank 0 validates and every rank follows its measure (without
        // synchronised batch norm the ranks' running statistics, and so their measures, differ).
        let val = match crate::dist::is_writer() {
            true => evaluate(&scores(self.net.as_ref(), self.eval_pipeline, self.split, self.val_idx, "validation")?, self.val_labels, self.classes).top1,
            false => 0.0,
        };
        let val = crate::dist::from_rank0(val);
        Ok(EpochReport { values: vec![("val_top1", val)], text: format!(", validation top-1 {:.2}%", 100.0 * val), validation: Some(val), warnings: Vec::new() })
    }

    fn predicts_labels(&self) -> bool {
        true
    }

    fn on_best(&mut self) -> Result<()> {
        match crate::dist::is_writer() {
            true => save_weights(self.net.as_ref(), self.best_dir),
            false => Ok(()),
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        crate::device::guarded(self.recipe.device, "saving a checkpoint", || self.net.save(dir, true))
    }

    fn nan_advice(&self) -> &'static str {
        "try a lower lr.base"
    }
}

/// Writes the weights into `dir` through a temporary folder.
fn save_weights(net: &dyn ClassifierNet, dir: &Path) -> Result<()> {
    crate::fsutil::replace_dir_atomic(dir, |tmp| net.save(tmp, false))
}

