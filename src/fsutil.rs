//! Small file-system helpers for atomic writes.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// A temporary path in the same folder as `path` (so a rename is atomic), unique to this process.
pub fn tmp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `contents` to `path` through a temporary file beside it and a rename, so a reader
/// never sees half a file and a failed write leaves the old one.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    let tmp = tmp_beside(path);
    std::fs::write(&tmp, contents).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}
