//! `ssl export`: a pretraining run's backbone in a form other tools load (PyTorch's names,
//! [`crate::weights::torch`]), with what it is in the file's metadata.

use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::torch::{self, ExportInfo, Exported};
use crate::weights::BACKBONE_FILE;

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// PyTorch's names and layouts (see [`crate::weights::torch`]).
    Torch,
}

/// Writes the backbone of pretraining run `run` to `out` in `format`.
///
/// # Errors
/// A folder that is not a pretraining run or has no backbone yet; a model with no mapping
/// for the format; I/O.
pub fn export(run: &Path, format: ExportFormat, out: &Path) -> Result<Exported> {
    let recipe = crate::recipe::load_pretraining_run(run, "run")?;
    let backbone = run.join(BACKBONE_FILE);
    if !backbone.exists() {
        return Err(Error::bad_input(&backbone, "no backbone yet: the run has not finished"));
    }
    let (steps, _) = super::records::read_steps_and_epochs(&run.join("metrics.jsonl"))?;
    let info = ExportInfo { model: recipe.model.clone(), method: recipe.method()?.name().to_string(), run: run.display().to_string(), steps: steps.last().map_or(0, |s| s.step) };
    match format {
        ExportFormat::Torch => torch::export(&backbone, &info, out),
    }
}
