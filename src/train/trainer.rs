//! The one training loop, for pretraining (every method) and fine-tuning alike: epochs of
//! shuffled batches with their views augmented in the background, the learning-rate schedule,
//! a guard against a non-finite loss, step and epoch records in `metrics.jsonl`, a progress
//! bar, checkpoints every N epochs, early stopping on a validation measure, and Ctrl-C (or
//! `--stop-after-steps`) saving a checkpoint a resume continues from exactly. What differs
//! between kinds of training is a [`Task`]: its step, what it measures after an epoch, what it
//! saves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::augment::Pipeline;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::method::StepAt;
use crate::optim::Schedule;
use crate::run::checkpoint::{self, CheckpointState, LoopState};
use crate::run::folder::{self as run_dir, Change};
use crate::run::records::{EpochRecord, MetricsLog, Record, StepRecord};

use super::loader::{epoch_order, Batching, Epoch};
use super::RunOptions;

/// What one step gives the loop.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The loss before the update (not finite: the loop stops with an error).
    pub loss: f32,
    /// Its weight in the epoch's mean loss: 1 per step (a pretraining method's loss is already
    /// a batch mean) or the batch's images (fine-tuning: a mean over images).
    pub weight: f64,
    /// Correct predictions, for tasks that predict labels.
    pub correct: Option<usize>,
    /// Other values for the step record (e.g. BYOL's `tau`).
    pub logs: Vec<(&'static str, f64)>,
}

/// What a task measures after an epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochReport {
    /// Values for the epoch record (`knn_top1`, `val_top1`) and their text for the epoch's line.
    pub values: Vec<(&'static str, f64)>,
    pub text: String,
    /// The measure early stopping watches (higher is better), when there is one.
    pub validation: Option<f64>,
    /// Problems the measures show (collapsed embeddings), one line each after the epoch's.
    pub warnings: Vec<String>,
}

/// The part of a training run the loop does not know.
pub trait Task {
    /// One step on the images at `indices` of the split, their views laid out [V N, C, H, W].
    fn step(&mut self, views: Vec<f32>, indices: &[usize], at: StepAt) -> Result<StepReport>;
    /// After epoch `done` (1-based; `last` when it is the run's final one): monitors, validation.
    fn end_epoch(&mut self, done: usize, last: bool) -> Result<EpochReport>;
    /// Whether steps report correct predictions (the epoch record then has a training accuracy).
    fn predicts_labels(&self) -> bool {
        false
    }
    /// What the epoch line calls that accuracy.
    fn accuracy_label(&self) -> &'static str {
        "train top-1"
    }
    /// Called when the validation measure improved (fine-tuning keeps those weights).
    fn on_best(&mut self) -> Result<()> {
        Ok(())
    }
    /// Writes everything a resume needs into the checkpoint folder `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// What to try after a non-finite loss.
    fn nan_advice(&self) -> &'static str;
}

/// Early stopping on the task's validation measure (Prechelt 1998's patience rule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    /// Epochs without a gain of more than `min_delta` before stopping; 0 never stops.
    pub patience: usize,
    pub min_delta: f64,
    /// No early stop before this many steps.
    pub min_steps: u64,
}

/// A run to train: the data, the schedule and where it writes.
pub struct Plan<'a> {
    pub run: &'a Path,
    /// Model and method names for checkpoints (method empty for fine-tuning).
    pub model: &'a str,
    pub method: &'a str,
    pub split: &'a Split,
    /// The images of `split` trained on (fine-tuning's labeled pool), all when `None`.
    pub images: Option<&'a [usize]>,
    /// One pipeline per view.
    pub views: &'a [&'a Pipeline],
    pub batching: Batching,
    pub seed: u64,
    pub epochs: usize,
    pub schedule: &'a Schedule,
    /// Checkpoint every this many epochs (and at the end); keep the newest `keep_checkpoints`.
    pub checkpoint_every: usize,
    pub keep_checkpoints: usize,
    pub early_stopping: Option<EarlyStopping>,
}

/// Where the run starts: from scratch or from a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct Start {
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub global: u64,
    pub elapsed_s: f64,
    pub state: LoopState,
}

impl Start {
    /// The position a checkpoint records.
    pub fn from_checkpoint(s: &CheckpointState) -> Self {
        let mut state = s.loop_state.clone();
        // Checkpoints from before `epoch_weight`: pretraining weighed steps, fine-tuning images.
        if state.epoch_weight == 0.0 && s.step_in_epoch > 0 {
            state.epoch_weight = if state.epoch_seen > 0 { state.epoch_seen as f64 } else { s.step_in_epoch as f64 };
        }
        Start { epoch: s.epoch, step_in_epoch: s.step_in_epoch, global: s.global_step, elapsed_s: s.elapsed_s, state }
    }
}

/// Opens the run folder (a new one, or the one resumed from `resume`, as
/// [`RunOptions::resume_point`] found it) and its metrics log, and says where the run starts;
/// a resume says so, and records the schedule changes it makes.
/// Data-parallel, the ranks but the first touch no file: they start where the checkpoint says.
pub fn open<R: serde::Serialize>(run: &Path, resume: Option<&(PathBuf, CheckpointState, Vec<Change>)>, force: bool, recipe: &R) -> Result<(MetricsLog, Start)> {
    // Every rank has read the run folder (the resume point, the recipe to compare) before
    // rank 0 changes it.
    crate::dist::barrier();
    if !crate::dist::is_writer() {
        return Ok((MetricsLog::discard(), resume.map_or_else(Start::default, |(_, s, _)| Start::from_checkpoint(s))));
    }
    let log = run_dir::open(run, resume.map(|(_, s, _)| s), force, recipe)?;
    let Some((dir, state, changes)) = resume else { return Ok((log, Start::default())) };
    let start = Start::from_checkpoint(state);
    crate::progress::message(&format!("resuming {} at epoch {} step {} ({})", run.display(), start.epoch + 1, start.step_in_epoch, dir.display()));
    let ranks = crate::dist::rank_and_size().1;
    if state.ranks != ranks {
        crate::progress::message(&format!("the checkpoint was written by {} rank(s), this job has {ranks}: the global batch is unchanged", state.ranks));
    }
    if let Some(line) = run_dir::record_changes(run, start.global, changes)? {
        crate::progress::message(&line);
    }
    Ok((log, start))
}

/// Batches of a run of `batch` images a step whose loss needs `min_batch`, on `ranks` ranks:
/// a last partial batch too small for the loss, or for one image a rank, joins the batch
/// before it (so with R ranks <= `min_batch` the steps are one process's).
pub fn batching(batch: usize, drop_last: bool, min_batch: usize, ranks: usize) -> Batching {
    Batching { batch, drop_last, min_batch: min_batch.max(ranks) }
}

/// Refuses to resume, from `state`, a run whose epochs of `n` images the job that wrote it cut
/// into other steps than this one does (another number of ranks, see [`batching`]).
pub fn check_resume_ranks(run: &Path, state: &CheckpointState, n: usize, now: Batching, min_batch: usize) -> Result<()> {
    let then = batching(now.batch, now.drop_last, min_batch, state.ranks);
    if then.steps(n) == now.steps(n) {
        return Ok(());
    }
    Err(Error::invalid(
        "--resume",
        format!("{}: written by {} rank(s), whose epochs have {} steps, this job's {}: resume it on {} rank(s)", run.display(), state.ranks, then.steps(n), now.steps(n), state.ranks),
    ))
}

/// How the loop ended.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// Every epoch done, or stopped early.
    Finished { epochs_run: usize, state: LoopState, last_loss: Option<f32>, last_values: Vec<(&'static str, f64)>, elapsed_s: f64 },
    /// Stopped by Ctrl-C (or the test hook) after saving `checkpoint`.
    Interrupted { checkpoint: PathBuf, step: u64 },
}

/// Runs `plan` from `start` with `task`, writing records to `log`.
pub fn train(plan: &Plan, task: &mut dyn Task, start: Start, log: &mut MetricsLog, opts: &RunOptions) -> Result<End> {
    let Start { mut epoch, step_in_epoch: mut first_step, mut global, elapsed_s: elapsed0, mut state } = start;
    let pool: Vec<usize> = plan.images.map_or_else(|| (0..plan.split.len()).collect(), <[usize]>::to_vec);
    let steps = plan.batching.steps(pool.len());
    let total_steps = (steps * plan.epochs) as u64;
    let nviews = plan.views.len().max(1);
    let clock = Instant::now();
    let elapsed = || elapsed0 + clock.elapsed().as_secs_f64();
    let checkpoint_state = |epoch, step_in_epoch, global, state: &LoopState| {
        CheckpointState::new(plan.model, plan.method, epoch, step_in_epoch, global, elapsed(), state.clone())
    };
    let (mut last_loss, mut last_values) = (None, Vec::new());
    super::signal::install();
    while epoch < plan.epochs && !state.stopped_early {
        let order: Vec<usize> = epoch_order(pool.len(), plan.seed, epoch).into_iter().map(|i| pool[i]).collect();
        let ep = Epoch { pipelines: plan.views, split: plan.split, order: &order, batching: plan.batching, seed: plan.seed, epoch, part: crate::dist::rank_and_size() };
        let bar = crate::progress::bar(steps as u64, &format!("epoch {}/{}", epoch + 1, plan.epochs));
        bar.set_position(first_step as u64);
        let (mut tick, epoch_clock, mut epoch_rows) = (Instant::now(), Instant::now(), 0usize);
        let mut stopped_at = None;
        ep.run(first_step..steps, |step, views| {
            // This rank's images (all of the batch on one process) and the global batch's.
            let (indices, batch) = (ep.local_indices(step), ep.indices(step).len());
            let rows = batch * nviews;
            let lr = plan.schedule.lr(global as usize);
            let group = crate::dist::current();
            let comm0 = group.as_ref().map_or(0.0, |g| g.comm_seconds());
            if let Some(g) = &group {
                g.set_batch(indices.len(), batch);
            }
            let r = task.step(views, indices, StepAt { lr, step: global, total_steps, steps_per_epoch: steps as u64 })?;
            let (mut r, stop) = global_report(r, opts.stop_now(global + 1));
            if let Some(g) = &group {
                // Rank 0's time in collectives this step (data-parallel only).
                r.logs.push(("comm_s", g.comm_seconds() - comm0));
            }
            if !r.loss.is_finite() {
                let last = checkpoint::latest(plan.run)?.map_or("none".to_string(), |(d, _)| d.display().to_string());
                return Err(Error::invalid(
                    "loss",
                    format!(
                        "{} at epoch {} step {} (lr {lr:.4e}); the run stopped, the last good checkpoint is {last}; {}",
                        r.loss,
                        epoch + 1,
                        global + 1,
                        task.nan_advice()
                    ),
                ));
            }
            global += 1;
            state.epoch_loss_sum += r.loss as f64 * r.weight;
            state.epoch_weight += r.weight;
            state.epoch_seen += batch;
            if let Some(c) = r.correct {
                state.epoch_correct += c;
            }
            epoch_rows += rows;
            let per_s = rows as f64 / tick.elapsed().as_secs_f64();
            tick = Instant::now();
            log.write(&Record::Step(StepRecord {
                epoch: epoch + 1,
                step: global,
                images: batch,
                loss: r.loss as f64,
                accuracy: r.correct.map(|c| c as f64 / batch as f64),
                lr,
                views_per_s: (nviews > 1).then_some(per_s),
                images_per_s: (nviews == 1).then_some(per_s),
                elapsed_s: elapsed(),
                values: r.logs.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            }))?;
            let acc = if task.predicts_labels() { format!(" acc {:.1}%", 100.0 * state.epoch_correct as f64 / state.epoch_seen.max(1) as f64) } else { String::new() };
            let unit = if nviews > 1 { "views" } else { "images" };
            let rate = epoch_rows as f64 / epoch_clock.elapsed().as_secs_f64();
            bar.set_message(format!("epoch {}/{} loss {:.4}{acc} lr {lr:.4} {rate:.0} {unit}/s", epoch + 1, plan.epochs, r.loss));
            bar.inc(1);
            last_loss = Some(r.loss);
            if stop {
                stopped_at = Some(step + 1);
                return Ok(false);
            }
            Ok(true)
        })?;
        bar.finish_and_clear();
        if let Some(step_in_epoch) = stopped_at {
            let st = checkpoint_state(epoch, step_in_epoch, global, &state);
            let dir = save_checkpoint(plan, &st, task)?;
            return Ok(End::Interrupted { checkpoint: dir, step: global });
        }
        let done = epoch + 1;
        let loss = state.epoch_loss_sum / state.epoch_weight.max(f64::MIN_POSITIVE);
        let accuracy = task.predicts_labels().then(|| state.epoch_correct as f64 / state.epoch_seen.max(1) as f64);
        let mut line = format!("epoch {done}/{}: loss {loss:.4}", plan.epochs);
        if let Some(a) = accuracy {
            line += &format!(", {} {:.2}%", task.accuracy_label(), 100.0 * a);
        }
        let report = task.end_epoch(done, done == plan.epochs)?;
        line += &report.text;
        if let (Some(val), Some(es)) = (report.validation, plan.early_stopping) {
            if state.best_val.is_none_or(|b| val > b + es.min_delta) {
                (state.best_val, state.best_epoch, state.bad_epochs) = (Some(val), done, 0);
                task.on_best()?;
            } else {
                state.bad_epochs += 1;
                // Not before `min_steps`, and not on the last epoch (that is no early stop).
                let may_stop = global >= es.min_steps && done < plan.epochs;
                if es.patience > 0 && state.bad_epochs >= es.patience && may_stop {
                    state.stopped_early = true;
                    line += &format!("; no gain for {} epochs: early stop, best epoch {}", state.bad_epochs, state.best_epoch);
                }
            }
        }
        log.write(&Record::Epoch(EpochRecord {
            epoch: done,
            step: global,
            loss,
            accuracy,
            lr: plan.schedule.lr(global.saturating_sub(1) as usize),
            views_per_s: (nviews > 1).then(|| epoch_rows as f64 / epoch_clock.elapsed().as_secs_f64()),
            elapsed_s: elapsed(),
            values: report.values.iter().map(|&(k, v)| (k.to_string(), v)).collect::<BTreeMap<_, _>>(),
        }))?;
        crate::progress::message(&format!("{line}, {:.0} s elapsed", elapsed()));
        for w in &report.warnings {
            crate::progress::message(&format!("warning: {w}"));
        }
        last_values = report.values;
        epoch += 1;
        first_step = 0;
        state = LoopState { epoch_loss_sum: 0.0, epoch_weight: 0.0, epoch_correct: 0, epoch_seen: 0, ..state };
        if epoch % plan.checkpoint_every.max(1) == 0 || epoch == plan.epochs || state.stopped_early {
            let st = checkpoint_state(epoch, 0, global, &state);
            save_checkpoint(plan, &st, task)?;
        }
    }
    Ok(End::Finished { epochs_run: epoch, state, last_loss, last_values, elapsed_s: elapsed() })
}

/// Writes a checkpoint of `task` at `state` (data-parallel: rank 0 alone; every rank holds
/// the same weights); its folder.
fn save_checkpoint(plan: &Plan, state: &CheckpointState, task: &dyn Task) -> Result<PathBuf> {
    if crate::dist::is_writer() {
        checkpoint::write(plan.run, state, plan.keep_checkpoints, |d| task.save(d))
    } else {
        Ok(checkpoint::folder(plan.run, state.global_step))
    }
}

/// A step's report for the global batch, and whether any rank was asked to stop (`stop`:
/// this rank's answer): data-parallel, the loss is the global batch's (each rank's weighed
/// by its share), the correct predictions and the weights are summed, in one collective; on
/// one process, `r` and `stop` as they are.
fn global_report(mut r: StepReport, stop: bool) -> (StepReport, bool) {
    let Some(g) = crate::dist::current() else { return (r, stop) };
    let mut v = [r.loss as f64 * crate::dist::loss_share(), r.correct.unwrap_or(0) as f64, stop as u8 as f64, r.weight];
    g.all_reduce_sum_f64(&mut v);
    r.loss = v[0] as f32;
    r.correct = r.correct.map(|_| v[1] as usize);
    r.weight = v[3];
    (r, v[2] > 0.0)
}
