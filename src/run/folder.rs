//! Run folders: refusing to overwrite one by accident, finding where to resume, and saving the
//! resolved recipe.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Context, Error, Result};

use super::checkpoint::{self, CheckpointState};
use super::records::MetricsLog;

/// A finished pretraining run: its recipe and its final backbone file.
///
/// # Errors
/// A folder that is not a pretraining run (no `recipe.ron`, or a fine-tuning run's), or one
/// with no backbone yet.
pub fn finished_pretraining(run: &Path) -> Result<(crate::recipe::PretrainRecipe, PathBuf)> {
    let recipe = crate::recipe::load_pretraining_run(run, "run")?;
    let backbone = run.join(crate::weights::BACKBONE_FILE);
    if !backbone.exists() {
        return Err(Error::bad_input(&backbone, "no backbone yet: the pretraining has not finished"));
    }
    Ok((recipe, backbone))
}

/// `run` as an absolute path for a file's metadata (as given when it cannot be resolved).
pub fn absolute(run: &Path) -> String {
    std::fs::canonicalize(run).unwrap_or_else(|_| run.to_path_buf()).display().to_string()
}

/// Refuses an output file before any work: its folder must exist, and it must not be one of
/// `inputs` (which writing it would destroy).
pub fn check_output(out: &Path, inputs: &[&Path]) -> Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::bad_input(out, format!("no folder {}", parent.display())));
    }
    let same = |a: &Path| std::fs::canonicalize(a).ok().is_some_and(|a| std::fs::canonicalize(out).ok() == Some(a));
    if inputs.iter().any(|p| same(p)) {
        return Err(Error::bad_input(out, "is an input of this command; give another --out"));
    }
    Ok(())
}

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
pub fn resume_point(run: &Path, model: &str, method: &str) -> Result<(PathBuf, CheckpointState)> {
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
    // Pretraining checkpoints from before methods were recorded are SimCLR's.
    let saved = if state.method.is_empty() && !method.is_empty() { "SimCLR" } else { state.method.as_str() };
    if saved != method {
        return Err(Error::invalid("--resume", format!("{} was made with method {saved}, the recipe asks for {method}", run.display())));
    }
    Ok((dir, state))
}

/// Recipe fields a resumed run may change freely: what it runs on, how often it saves, and what
/// the kNN monitor watches; none of them changes the numbers training computes. (`name` and
/// `run_dir` are not among them: the run stays in its folder, so a new value would not act.)
const FREE_ON_RESUME: &[&str] = &["device", "checkpoint", "knn"];
/// Fields a resumed run may change with `--extend`: the length of the schedule.
const EXTENDABLE: &[&str] = &["epochs", "min_steps"];

/// One recipe field a resume changes: its path, the run's value and the new one.
pub type Change = (String, serde_json::Value, serde_json::Value);

/// Leaf fields (dotted paths) where `a` and `b` differ.
fn differences(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<Change>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            for (k, va) in x {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                differences(&path, va, y.get(k).unwrap_or(&serde_json::Value::Null), out);
            }
        }
        _ if a != b => out.push((prefix.to_string(), a.clone(), b.clone())),
        _ => {}
    }
}

/// Compares the recipe a resume asks for with the one `run` was made with (`run/recipe.ron`).
/// Fields that fix the data, model, method or schedule must not change, so a resumed run stays
/// the run it was; `extend` lets `epochs` (and `min_steps`) change. Returns the changes to the schedule (to announce and record); refuses with one line
/// naming the first other changed field. Reads only: nothing is written. (Whether the new
/// length still covers the epochs done is the loop's to check: it knows the real epochs.)
pub fn check_resume<R: Serialize + DeserializeOwned>(run: &Path, recipe: &R, extend: bool) -> Result<Vec<Change>> {
    let saved: R = crate::recipe::load(&run.join("recipe.ron"), &[])?;
    let (old, new) = (serde_json::to_value(&saved).expect("a recipe serialises"), serde_json::to_value(recipe).expect("a recipe serialises"));
    let mut changes = Vec::new();
    differences("", &old, &new, &mut changes);
    let top = |path: &str| path.split('.').next().unwrap_or("").to_string();
    changes.retain(|(path, _, _)| !FREE_ON_RESUME.contains(&top(path).as_str()));
    // Values as a recipe writes them (`None`, not JSON's `null`).
    let show = |v: &serde_json::Value| if v.is_null() { "None".to_string() } else { v.to_string() };
    if let Some((path, a, b)) = changes.iter().find(|(p, _, _)| !EXTENDABLE.contains(&p.as_str())) {
        let advice = if path == "name" || path == "run_dir" {
            "a resumed run stays in its folder (copy the folder to continue it under another name)"
        } else {
            "a resumed run keeps its data, model, method and schedule (start a new run with --set name=...)"
        };
        return Err(Error::invalid("--resume", format!("{} was made with {path} = {}, this command asks for {}; {advice}", run.display(), show(a), show(b))));
    }
    if let Some((path, a, b)) = changes.first() {
        if !extend {
            return Err(Error::invalid(
                "--resume",
                format!("{} was made with {path} = {}, this command asks for {}; changing the schedule of a run needs --extend", run.display(), show(a), show(b)),
            ));
        }
    } else if extend {
        return Err(Error::invalid("--extend", "nothing to extend: the recipe's epochs are those of the run (set a new length with --set epochs=N)"));
    }
    Ok(changes)
}

/// Appends a resume's schedule changes to `run/recipe_history.jsonl` (the step they take
/// effect after, each field's old and new value) and returns one line saying so; with no
/// changes, writes nothing and returns `None`.
pub fn record_changes(run: &Path, step: u64, changes: &[Change]) -> Result<Option<String>> {
    use std::io::Write;
    if changes.is_empty() {
        return Ok(None);
    }
    let fields: serde_json::Map<String, serde_json::Value> = changes.iter().map(|(p, a, b)| (p.clone(), serde_json::json!([a, b]))).collect();
    let line = serde_json::json!({
        "step": step,
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "changes": fields,
    });
    let path = run.join("recipe_history.jsonl");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).at(&path)?;
    writeln!(f, "{line}").at(&path)?;
    let list: Vec<String> = changes.iter().map(|(p, a, b)| format!("{p} {a} -> {b}")).collect();
    Ok(Some(format!("--extend: {}; the learning-rate schedule changes from step {}", list.join(", "), step + 1)))
}

/// The error for resuming a checkpoint of an earlier format (see `CheckpointState::format`)
/// whose data would now be cut differently, so the resume could not be exact.
pub fn stale_checkpoint(run: &Path, why: &str) -> Error {
    Error::invalid("--resume", format!("{} was checkpointed by an earlier ssl and cannot continue exactly ({why}); start a new run", run.display()))
}

/// Refuses a resume whose run (`epochs`, after any `--extend`) is shorter than the `done` epochs.
pub fn refuse_fewer_epochs(run: &Path, epochs: usize, done: usize) -> Result<()> {
    if epochs < done {
        return Err(Error::invalid("--extend", format!("the run would have {epochs} epochs, fewer than the {done} {} has done already", run.display())));
    }
    Ok(())
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
