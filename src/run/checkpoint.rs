//! Checkpoints: `RUN/checkpoints/step-NNNNNNNN/` holding the model and optimiser files and
//! `state.json` (model name, position in the run, elapsed time). A checkpoint is written into
//! a temporary folder and renamed into place, so a crash never leaves half of one; the newest
//! `keep` are kept.
//!
//! There is no random-number state to save: the shuffle of an epoch depends only on (seed,
//! epoch) and each view only on (seed, epoch, image, view), so the position in the run is what
//! a resume needs to continue exactly.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The model name (a resume with another model is refused).
    pub model: String,
    /// The pretraining method's name (a resume with another method is refused); empty for
    /// fine-tuning, and in pretraining checkpoints written before methods were recorded
    /// (SimCLR was the only one then).
    #[serde(default)]
    pub method: String,
    /// The epoch in progress (0-based) and the steps of it already taken.
    pub epoch: usize,
    pub step_in_epoch: usize,
    /// Steps taken in the whole run.
    pub global_step: u64,
    /// Training time so far, seconds.
    pub elapsed_s: f64,
    /// The loop's sums and early-stopping state (`extra` in the file, as before it was typed).
    #[serde(default, rename = "extra")]
    pub loop_state: LoopState,
    pub tool_version: String,
    /// How the loop cut its data when it wrote this: 0 (absent) before last batches too small
    /// for the loss were folded and fine-tuning's validation split was stratified, then
    /// [`FORMAT`]. A resume refuses a checkpoint whose run would not continue exactly.
    #[serde(default)]
    pub format: u32,
    /// The ranks of the data-parallel job that wrote it (1 on one process, and before jobs had
    /// ranks). A resume on another number of ranks continues the same run (the global batch is
    /// the recipe's); it says so.
    #[serde(default = "one")]
    pub ranks: usize,
}

fn one() -> usize {
    1
}

/// The checkpoint format this build writes (see [`CheckpointState::format`]).
pub const FORMAT: u32 = 1;

impl CheckpointState {
    /// Where a run of `model` trained by `method` stands, written by this build (its version
    /// and [`FORMAT`]).
    pub fn new(model: &str, method: &str, epoch: usize, step_in_epoch: usize, global_step: u64, elapsed_s: f64, loop_state: LoopState) -> Self {
        CheckpointState {
            model: model.to_string(),
            method: method.to_string(),
            epoch,
            step_in_epoch,
            global_step,
            elapsed_s,
            loop_state,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            format: FORMAT,
            ranks: crate::dist::rank_and_size().1,
        }
    }
}

/// Where the training loop stands within an epoch and in early stopping: what a checkpoint
/// keeps besides the position and the weights. Field names are those older checkpoints used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopState {
    /// The epoch so far: sum of weighted losses, their weights, correct predictions, images.
    pub epoch_loss_sum: f64,
    pub epoch_weight: f64,
    pub epoch_correct: usize,
    pub epoch_seen: usize,
    /// Early stopping.
    pub best_val: Option<f64>,
    pub best_epoch: usize,
    pub bad_epochs: usize,
    pub stopped_early: bool,
}

const STATE_FILE: &str = "state.json";

fn dir_of(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Writes a checkpoint: `save` fills the folder with the model's files.
pub fn write(run: &Path, state: &CheckpointState, keep: usize, save: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let dir = dir_of(run);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let target = folder(run, state.global_step);
    crate::fsutil::replace_dir_atomic(&target, |tmp| {
        save(tmp)?;
        let json = serde_json::to_string_pretty(state).expect("state serialises");
        std::fs::write(tmp.join(STATE_FILE), json).at(tmp.join(STATE_FILE))
    })?;
    let all = list(run)?;
    for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        std::fs::remove_dir_all(old).at(old)?;
    }
    Ok(target)
}

/// The folder of the checkpoint at global step `step`.
pub fn folder(run: &Path, step: u64) -> PathBuf {
    dir_of(run).join(format!("step-{step:08}"))
}

/// The checkpoint folders of a run, oldest first.
pub fn list(run: &Path) -> Result<Vec<PathBuf>> {
    let dir = dir_of(run);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .at(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")) && p.join(STATE_FILE).exists())
        .collect();
    out.sort();
    Ok(out)
}

/// The newest checkpoint of a run and its state.
pub fn latest(run: &Path) -> Result<Option<(PathBuf, CheckpointState)>> {
    let Some(dir) = list(run)?.pop() else { return Ok(None) };
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).at(&path)?;
    let state = serde_json::from_str(&text).map_err(|e| Error::bad_input(&path, e.to_string()))?;
    Ok(Some((dir, state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let mut st = CheckpointState {
            model: "m".into(),
            method: "SimCLR".into(),
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            elapsed_s: 0.0,
            loop_state: LoopState::default(),
            tool_version: "t".into(),
            format: FORMAT,
            ranks: 1,
        };
        for s in 1..=4 {
            st.global_step = s * 10;
            write(d.path(), &st, 2, |dir| std::fs::write(dir.join("w"), b"x").at(dir)).unwrap();
        }
        let names: Vec<String> = list(d.path()).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, vec!["step-00000030", "step-00000040"]);
        let (dir, back) = latest(d.path()).unwrap().unwrap();
        assert_eq!(back, st);
        assert!(dir.join("w").exists());
        // A failing save leaves no checkpoint behind and the older ones intact.
        st.global_step = 50;
        assert!(write(d.path(), &st, 2, |dir| Err(Error::bad_input(dir, "disk full"))).is_err());
        assert_eq!(latest(d.path()).unwrap().unwrap().1.global_step, 40);
    }
}
