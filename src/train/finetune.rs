//! `ssl finetune`: a backbone (pretrained or random) and a linear classifier trained on labels,
//! with early stopping on a validation split, then one evaluation on the test split.
//! Run folder: the resolved recipe, `metrics.jsonl`, checkpoints, `best/` (the best weights on
//! validation) and `result.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::augment::Pipeline;
use crate::data::split::{stratified_fraction, stratified_split};
use crate::data::{Split, Store};
use crate::error::{Error, Result};
use crate::models::encoder::extract;
use crate::metrics::{evaluate, Evaluation};
use crate::models::registry::check_input;
use crate::recipe::{FinetuneRecipe, PretrainRecipe};

use crate::run::checkpoint::{self, CheckpointState};
use super::classifier_net::{self, ClassifierNet, ClassifierSpec};
use super::loader::{epoch_order, Batching, Epoch};
use super::pretrain::Outcome;
use crate::run::folder as run_dir;
use super::signal;
use crate::weights::BACKBONE_FILE;

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
    extract(pipeline, split, indices, EVAL_BATCH, label, |x| Ok(net.logits(x, (s.channels, s.height, s.width))))
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
    let batching = Batching { batch: recipe.batch_size, drop_last: false, min_batch: MIN_BATCH };
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
        let stopped = state.extra.get("stopped_early").and_then(|v| v.as_bool()).unwrap_or(false);
        if (state.epoch >= epochs || stopped) && changes.is_empty() && run.join("result.json").exists() {
            let summary = format!("nothing left to do: the run is finished; results in {}", run.join("result.json").display());
            return Ok(Outcome::Finished { run, summary });
        }
    }

    if let Some((dir, _, _)) = &resume_from {
        net.load(dir, true)?;
    }
    let mut log = run_dir::open(&run, resume_from.as_ref().map(|(_, s, _)| s), opts.force, recipe)?;
    let (mut epoch, mut first_step, mut global, elapsed0, mut extra) = (0, 0, 0u64, resume_from.as_ref().map_or(0.0, |r| r.1.elapsed_s), json!({}));
    if let Some((dir, state, changes)) = &resume_from {
        (epoch, first_step, global, extra) = (state.epoch, state.step_in_epoch, state.global_step, state.extra.clone());
        crate::progress::message(&format!("resuming {} at epoch {} step {} ({})", run.display(), epoch + 1, first_step, dir.display()));
        if let Some(line) = run_dir::record_changes(&run, global, changes)? {
            crate::progress::message(&line);
        }
    }
    if let Some(line) = &stretched {
        crate::progress::message(&line);
    }
    signal::install();
    let get = |extra: &serde_json::Value, k: &str| extra.get(k).and_then(|v| v.as_f64());
    let mut best_val = get(&extra, "best_val");
    let mut best_epoch = get(&extra, "best_epoch").unwrap_or(0.0) as usize;
    let mut bad_epochs = get(&extra, "bad_epochs").unwrap_or(0.0) as usize;
    let mut stopped_early = extra.get("stopped_early").and_then(|v| v.as_bool()).unwrap_or(false);
    let start = Instant::now();
    let elapsed = |t: &Instant| elapsed0 + t.elapsed().as_secs_f64();
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let best_dir = run.join("best");
    let lr_factor = recipe.backbone.lr_factor;
    while epoch < epochs && !stopped_early {
        let order: Vec<usize> = epoch_order(train_idx.len(), recipe.seed, epoch).into_iter().map(|i| train_idx[i]).collect();
        let ep = Epoch { pipelines: &[&pipeline], split: &train, order: &order, batching, seed: recipe.seed, epoch };
        let mut loss_sum = get(&extra, "epoch_loss_sum").unwrap_or(0.0);
        let mut correct = get(&extra, "epoch_correct").unwrap_or(0.0) as usize;
        let mut seen = get(&extra, "epoch_seen").unwrap_or(0.0) as usize;
        let bar = crate::progress::bar(steps as u64, &format!("epoch {}/{epochs}", epoch + 1));
        bar.set_position(first_step as u64);
        let mut stopped_at = None;
        let mut tick = Instant::now();
        ep.run(first_step..steps, |step, images| {
            let labels: Vec<u32> = ep.indices(step).iter().map(|&i| train_labels[i]).collect();
            let lr = sched.lr(global as usize);
            let dropout_seed = recipe.seed ^ (global + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (loss, ok) = net.step(images, (c, h, w), &labels, recipe.label_smoothing, lr, lr * lr_factor, dropout_seed);
            if !loss.is_finite() {
                return Err(Error::invalid("loss", format!("{loss} at epoch {} step {} (lr {lr:.4e}); the run stopped; try a lower lr.base", epoch + 1, global + 1)));
            }
            global += 1;
            loss_sum += loss as f64 * labels.len() as f64;
            correct += ok;
            seen += labels.len();
            let ips = labels.len() as f64 / tick.elapsed().as_secs_f64();
            tick = Instant::now();
            log.log(&json!({"kind": "step", "epoch": epoch + 1, "step": global, "images": labels.len(), "loss": loss, "accuracy": ok as f64 / labels.len() as f64,
                "lr": lr, "images_per_s": ips, "elapsed_s": elapsed(&start)}))?;
            bar.set_message(format!("epoch {}/{epochs} loss {loss:.4} acc {:.1}% lr {lr:.4}", epoch + 1, 100.0 * correct as f64 / seen as f64));
            bar.inc(1);
            if opts.stop_now(global) {
                stopped_at = Some(step + 1);
                return Ok(false);
            }
            Ok(true)
        })?;
        bar.finish_and_clear();
        let keep = |best_val: Option<f64>, best_epoch: usize, bad_epochs: usize, stopped_early: bool| {
            json!({"best_val": best_val, "best_epoch": best_epoch, "bad_epochs": bad_epochs, "stopped_early": stopped_early})
        };
        if let Some(step_in_epoch) = stopped_at {
            let mut x = keep(best_val, best_epoch, bad_epochs, false);
            x["epoch_loss_sum"] = json!(loss_sum);
            x["epoch_correct"] = json!(correct);
            x["epoch_seen"] = json!(seen);
            let st = CheckpointState::new(&recipe.model, "", epoch, step_in_epoch, global, elapsed(&start), x);
            let dir = checkpoint::write(&run, &st, recipe.checkpoint.keep, |d| net.save(d, true))?;
            return Ok(Outcome::Interrupted { run, checkpoint: dir, step: global });
        }
        let done = epoch + 1;
        let train_loss = loss_sum / seen.max(1) as f64;
        let train_acc = correct as f64 / seen.max(1) as f64;
        let mut record = json!({"kind": "epoch", "epoch": done, "step": global, "loss": train_loss, "accuracy": train_acc,
            "lr": sched.lr(global.saturating_sub(1) as usize), "elapsed_s": elapsed(&start)});
        let mut line = format!("epoch {done}/{epochs}: loss {train_loss:.4}, train top-1 {:.2}%", 100.0 * train_acc);
        if !val_idx.is_empty() {
            let val_labels: Vec<u32> = val_idx.iter().map(|&i| train_labels[i]).collect();
            let val = evaluate(&scores(net.as_ref(), &eval_pipeline, &train, &val_idx, "validation")?, &val_labels, classes).top1;
            record["val_top1"] = json!(val);
            line += &format!(", validation top-1 {:.2}%", 100.0 * val);
            if best_val.is_none_or(|b| val > b + recipe.early_stopping.min_delta) {
                best_val = Some(val);
                best_epoch = done;
                bad_epochs = 0;
                save_weights(net.as_ref(), &best_dir)?;
            } else {
                bad_epochs += 1;
                // Not before `min_steps`, and not on the last epoch (that is no early stop).
                let may_stop = global >= recipe.min_steps as u64 && done < epochs;
                if recipe.early_stopping.patience > 0 && bad_epochs >= recipe.early_stopping.patience && may_stop {
                    stopped_early = true;
                    line += &format!("; no gain for {bad_epochs} epochs: early stop, best epoch {best_epoch}");
                }
            }
        }
        log.log(&record)?;
        crate::progress::message(&format!("{line}, {:.0} s elapsed", elapsed(&start)));
        epoch += 1;
        first_step = 0;
        extra = json!({});
        if epoch % recipe.checkpoint.every_epochs.max(1) == 0 || epoch == epochs || stopped_early {
            let st = CheckpointState::new(&recipe.model, "", epoch, 0, global, elapsed(&start), keep(best_val, best_epoch, bad_epochs, stopped_early));
            checkpoint::write(&run, &st, recipe.checkpoint.keep, |d| net.save(d, true))?;
        }
    }
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
        elapsed_s: elapsed(&start),
    };
    crate::fsutil::write_json(&run.join("result.json"), &result)?;
    let summary = format!("done in {:.0} s: test top-1 {:.2}%; results in {}", result.elapsed_s, 100.0 * result.test.top1, run.join("result.json").display());
    Ok(Outcome::Finished { run, summary })
}

/// Writes the weights into `dir` through a temporary folder.
fn save_weights(net: &dyn ClassifierNet, dir: &Path) -> Result<()> {
    crate::fsutil::replace_dir_atomic(dir, |tmp| net.save(tmp, false))
}

