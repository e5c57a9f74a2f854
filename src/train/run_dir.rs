//! Run folders: refusing to overwrite one by accident, finding where to resume, and saving the
//! resolved recipe.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Context, Error, Result};

use super::checkpoint::{self, CheckpointState};
use super::metrics::MetricsLog;

/// A new run may go to `run` unless something is there already (or `force`).
pub fn check_new(run: &Path, force: bool) -> Result<()> {
    let occupied = run.exists() && std::fs::read_dir(run).at(run)?.next().is_some();
    if occupied && !force {
        return Err(Error::invalid(
            format!("run folder {}", run.display()),
            "already exists: continue it with --resume, pick another name with --set name=..., or replace it with --force",
        ));
    }
    Ok(())
}

/// The newest checkpoint of `run`, which must have been made with model `model`.
pub fn resume_point(run: &Path, model: &str) -> Result<(PathBuf, CheckpointState)> {
    if !run.is_dir() {
        return Err(Error::invalid("--resume", format!("{}: no such run folder", run.display())));
    }
    let (dir, state) = checkpoint::latest(run)?.ok_or_else(|| Error::invalid("--resume", format!("{}: no checkpoint to resume from", run.display())))?;
    if state.model != model {
        return Err(Error::invalid(
            "--resume",
            format!("{} was made with model '{}', the recipe asks for '{model}'", run.display(), state.model),
        ));
    }
    Ok((dir, state))
}

/// Writes the resolved recipe as `run/recipe.ron`.
pub fn save_recipe<R: Serialize>(run: &Path, recipe: &R) -> Result<()> {
    let path = run.join("recipe.ron");
    crate::fsutil::write_atomic(&path, crate::recipe::to_ron(recipe))
}

/// Opens the run folder once every input has been checked: a new run (an occupied folder is
/// refused unless `force`, which empties it) or the resumed one; saves the resolved recipe and
/// opens `metrics.jsonl`, dropping what was logged after the checkpoint resumed from.
pub fn open<R: Serialize>(run: &Path, resumed: Option<&CheckpointState>, force: bool, recipe: &R) -> Result<MetricsLog> {
    if resumed.is_none() {
        check_new(run, force)?;
        if run.exists() {
            std::fs::remove_dir_all(run).at(run)?;
        }
    }
    std::fs::create_dir_all(run).at(run)?;
    save_recipe(run, recipe)?;
    MetricsLog::open(&run.join("metrics.jsonl"), resumed.map(|s| s.global_step))
}
