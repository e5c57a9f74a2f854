//! Small file-system helpers for atomic writes.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// A temporary path in the same folder as `path` (so a rename is atomic), unique to this process.
pub fn tmp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `path` by `write(tmp)` into a temporary file beside it, renamed over `path` only when
/// `write` succeeds: a reader never sees half a file, and a failure removes the temporary file
/// and leaves the old one.
pub fn replace_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_beside(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).at(path)
}

/// Writes `value` as pretty JSON to `path` through [`replace_atomic`].
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value).expect("serialises"))
}

/// Writes `contents` to `path` through [`replace_atomic`].
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    replace_atomic(path, |tmp| std::fs::write(tmp, contents).at(tmp))
}

/// The same for a folder: `fill(tmp)` fills a fresh temporary folder beside `dir`, which then
/// replaces `dir` (a failure removes it and leaves `dir` as it was).
pub fn replace_dir_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_beside(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).at(dir)?;
    }
    std::fs::rename(&tmp, dir).at(dir)
}

/// A digest of the file's bytes (FNV-1a, 64 bits, hex), empty when it cannot be read: tells
/// whether a result was measured on the backbone a run has now (its mtime would change with a
/// plain copy of the run folder).
pub fn file_digest(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::new() };
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{h:016x}")
}

