//! `ssl pretrain`: the pretraining loop, for every method behind [`crate::method::Method`].
//! Recipe in, run folder out: the resolved recipe, `metrics.jsonl`, checkpoints, and
//! `backbone.safetensors` at the end.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::augment::Pipeline;
use crate::error::{Error, Result};
use crate::method::StepAt;
use crate::models::encoder::Monitor;
use crate::models::registry::check_input;
use crate::recipe::pretrain::PretrainRecipe;
use crate::run::checkpoint::{self, CheckpointState};
use crate::run::folder as run_dir;
use crate::run::BACKBONE_FILE;

use super::loader::{epoch_order, Batching, Epoch};
use super::signal;

/// How to start a pretraining or fine-tuning run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Continue the run in this folder from its newest checkpoint.
    pub resume: Option<PathBuf>,
    /// Replace an existing run folder.
    pub force: bool,
    /// Behave as if Ctrl-C came after this many steps of the whole run (for tests).
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
        signal::stop_requested() || self.stop_after == Some(global)
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

/// Runs (or resumes) the pretraining that `recipe` describes; `monitor` (the kNN monitor of
/// `eval`, when the recipe asks for one) is measured on the backbone every
/// `knn.every_epochs` epochs and after the last.
pub fn pretrain(recipe: &PretrainRecipe, opts: &RunOptions, monitor: Option<&dyn Monitor>) -> Result<Outcome> {
    recipe.validate()?;
    let method = recipe.method()?;
    let run = opts.resume.clone().unwrap_or_else(|| recipe.run_dir.join(&recipe.name));
    let resume_from = opts.resume_point(recipe, &recipe.model, method.name())?;

    // Data, model and monitor are all checked before anything is written.
    let (_, split) = recipe.load_data()?;
    let pipelines = method.views(&recipe.augment).into_iter().map(|cfg| Pipeline::for_split(cfg, &split)).collect::<Result<Vec<_>>>()?;
    let view_plan: Vec<&Pipeline> = pipelines.iter().collect();
    let shape = pipelines[0].output_shape();
    check_input(&recipe.model, shape)?;
    if recipe.batch_size > split.len() {
        return Err(Error::invalid(
            "batch_size",
            format!("{} is larger than the dataset ({} images in {}:{})", recipe.batch_size, split.len(), recipe.data.file.display(), split.name),
        ));
    }
    if let Some(m) = monitor {
        if m.input_shape() != shape {
            return Err(Error::invalid("knn", format!("its splits give {} images, pretraining {}", m.input_shape(), shape)));
        }
    }
    let batching = Batching { batch: recipe.batch_size, drop_last: recipe.drop_last, min_batch: method.min_batch() };
    let steps = batching.steps(split.len());
    if let Some((_, state, _)) = &resume_from {
        // Before format 1 a last batch of one image was a step of its own.
        let old_steps = if recipe.drop_last { split.len() / recipe.batch_size } else { split.len().div_ceil(recipe.batch_size) };
        if state.format == 0 && old_steps != steps {
            return Err(run_dir::stale_checkpoint(&run, "its last batch of one image is now folded into the one before"));
        }
        run_dir::refuse_fewer_epochs(&run, recipe.epochs, state.epoch)?;
    }
    let sched = recipe.lr.schedule(recipe.batch_size, recipe.epochs, steps)?;
    let mut net = method.build(&recipe.model, recipe.optimizer.at(recipe.peak_lr()), recipe.seed, recipe.device)?;
    let total_steps = (steps * recipe.epochs) as u64;

    if let Some((dir, _, _)) = &resume_from {
        net.load(dir)?;
    }
    let mut log = run_dir::open(&run, resume_from.as_ref().map(|(_, s, _)| s), opts.force, recipe)?;
    let (mut epoch, mut first_step, mut global, mut elapsed0, mut extra) = (0, 0, 0u64, 0.0, json!({}));
    if let Some((dir, state, changes)) = &resume_from {
        (epoch, first_step, global, elapsed0, extra) = (state.epoch, state.step_in_epoch, state.global_step, state.elapsed_s, state.extra.clone());
        crate::progress::message(&format!("resuming {} at epoch {} step {} ({})", run.display(), epoch + 1, first_step, dir.display()));
        if let Some(line) = run_dir::record_changes(&run, global, changes)? {
            crate::progress::message(&line);
        }
    }
    signal::install();

    let start = Instant::now();
    let elapsed = |t: &Instant| elapsed0 + t.elapsed().as_secs_f64();
    let state = |epoch, step_in_epoch, global, elapsed_s, extra| CheckpointState::new(&recipe.model, method.name(), epoch, step_in_epoch, global, elapsed_s, extra);
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let mut last_loss = f64::NAN;
    let mut last_measure = None;
    while epoch < recipe.epochs {
        let order = epoch_order(split.len(), recipe.seed, epoch);
        let ep = Epoch { pipelines: &view_plan, split: &split, order: &order, batching, seed: recipe.seed, epoch };
        let mut loss_sum = extra.get("epoch_loss_sum").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let bar = crate::progress::bar(steps as u64, &format!("epoch {}/{}", epoch + 1, recipe.epochs));
        bar.set_position(first_step as u64);
        let (mut tick, epoch_t, mut epoch_views) = (Instant::now(), Instant::now(), 0usize);
        let mut stopped_at = None;
        ep.run(first_step..steps, |step, views| {
            let rows = views.len() / (c * h * w);
            let lr = sched.lr(global as usize);
            let out = net.step(views, (c, h, w), StepAt { lr, step: global, total_steps })?;
            let loss = out.loss;
            if !loss.is_finite() {
                let last = checkpoint::latest(&run)?.map_or("none".to_string(), |(d, _)| d.display().to_string());
                return Err(Error::invalid(
                    "loss",
                    format!(
                        "{loss} at epoch {} step {} (lr {lr:.4e}); the run stopped, the last good checkpoint is {last}; try a lower lr.base or a higher temperature",
                        epoch + 1,
                        global + 1
                    ),
                ));
            }
            global += 1;
            loss_sum += loss as f64;
            epoch_views += rows;
            let vps = rows as f64 / tick.elapsed().as_secs_f64();
            tick = Instant::now();
            let mut record = json!({"kind": "step", "epoch": epoch + 1, "step": global, "images": rows / view_plan.len(), "loss": loss, "lr": lr, "views_per_s": vps, "elapsed_s": elapsed(&start)});
            for (name, value) in &out.logs {
                record[*name] = json!(value);
            }
            log.log(&record)?;
            bar.set_message(format!("epoch {}/{} loss {loss:.4} lr {lr:.4} {:.0} views/s", epoch + 1, recipe.epochs, epoch_views as f64 / epoch_t.elapsed().as_secs_f64()));
            bar.inc(1);
            last_loss = loss as f64;
            if opts.stop_now(global) {
                stopped_at = Some(step + 1);
                return Ok(false);
            }
            Ok(true)
        })?;
        bar.finish_and_clear();
        if let Some(step_in_epoch) = stopped_at {
            let st = state(epoch, step_in_epoch, global, elapsed(&start), json!({"epoch_loss_sum": loss_sum}));
            let dir = checkpoint::write(&run, &st, recipe.checkpoint.keep, |d| net.save(d))?;
            return Ok(Outcome::Interrupted { run, checkpoint: dir, step: global });
        }
        let epoch_loss = loss_sum / steps.max(1) as f64;
        let done = epoch + 1;
        let mut record = json!({"kind": "epoch", "epoch": done, "step": global, "loss": epoch_loss, "lr": sched.lr(global.saturating_sub(1) as usize),
            "views_per_s": epoch_views as f64 / epoch_t.elapsed().as_secs_f64(), "elapsed_s": elapsed(&start)});
        let mut line = format!("epoch {done}/{}: loss {epoch_loss:.4}", recipe.epochs);
        if let Some(m) = monitor {
            if done % recipe.knn.every_epochs.max(1) == 0 || done == recipe.epochs {
                let t = Instant::now();
                let value = m.measure(net.as_encoder())?;
                record[m.key()] = json!(value);
                line += &format!(", {} {:.2}% ({:.0} s)", m.label(), 100.0 * value, t.elapsed().as_secs_f64());
                last_measure = Some((m.label(), value));
            }
        }
        log.log(&record)?;
        crate::progress::message(&format!("{line}, {:.0} s elapsed", elapsed(&start)));
        epoch += 1;
        first_step = 0;
        extra = json!({});
        if epoch % recipe.checkpoint.every_epochs.max(1) == 0 || epoch == recipe.epochs {
            let st = state(epoch, 0, global, elapsed(&start), json!({}));
            checkpoint::write(&run, &st, recipe.checkpoint.keep, |d| net.save(d))?;
        }
    }
    net.save_backbone(&run.join(BACKBONE_FILE))?;
    let knn = last_measure.map_or(String::new(), |(label, v)| format!(", {label} {:.2}%", 100.0 * v));
    let summary = if last_loss.is_nan() {
        format!("nothing left to do: all {} epochs were done; backbone at {}", recipe.epochs, run.join(BACKBONE_FILE).display())
    } else {
        format!("done in {:.0} s: final loss {last_loss:.4}{knn}; backbone at {}", elapsed(&start), run.join(BACKBONE_FILE).display())
    };
    Ok(Outcome::Finished { run, summary })
}
