//! `ssl export`: a pretraining run's backbone in a form other tools load (PyTorch's names,
//! [`crate::weights::torch`]), with what it is in the file's metadata.

use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::torch::{self, ExportInfo, Exported};

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// PyTorch's names and layouts (see [`crate::weights::torch`]).
    Torch,
}

/// Writes the backbone of pretraining run `run` to `out` in `format`, through a temporary
/// file that is read back into the model before it replaces `out` (so a file that would not
/// load is never written).
///
/// # Errors
/// A folder that is not a finished pretraining run; a model with no mapping for the format;
/// an `out` in no existing folder or equal to the backbone; I/O.
pub fn export(run: &Path, format: ExportFormat, out: &Path) -> Result<Exported> {
    let (recipe, backbone) = super::folder::finished_pretraining(run)?;
    super::folder::check_output(out, &[&backbone])?;
    // The steps, for BatchNorm's `num_batches_tracked`; 0 when the log is gone.
    let steps = super::records::read_steps_and_epochs(&run.join("metrics.jsonl")).ok().and_then(|(s, _)| s.last().map(|s| s.step)).unwrap_or(0);
    let info = ExportInfo {
        model: recipe.model.clone(),
        method: recipe.method()?.name().to_string(),
        run: super::folder::absolute(run),
        backbone: crate::fsutil::file_digest(&backbone),
        steps,
    };
    match format {
        ExportFormat::Torch => {
            let (bytes, exported) = torch::to_torch(&backbone, &info)?;
            crate::fsutil::replace_atomic(out, |tmp| {
                std::fs::write(tmp, &bytes).map_err(|e| Error::Io { path: tmp.to_path_buf(), source: e })?;
                crate::models::encoder::load(&recipe.model, Some(tmp), recipe.seed, crate::device::DeviceSpec::Cpu).map(|_| ())
            })?;
            Ok(exported)
        }
    }
}
