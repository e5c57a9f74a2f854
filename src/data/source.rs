//! Reading importer inputs: plain or gzipped files, located inside a source folder.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

/// Largest decoded size accepted from one source file (a gzip bomb stops here).
pub const MAX_DECODED_BYTES: u64 = 4 << 30;

/// Reads `path` whole, gunzipping it when it starts with the gzip magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).at(path)?;
    if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_input(path, format!("truncated or corrupt gzip stream ({e})")))?;
    if out.len() as u64 > MAX_DECODED_BYTES {
        return Err(Error::bad_input(path, format!("decompresses to more than {MAX_DECODED_BYTES} bytes")));
    }
    Ok(out)
}

/// The first of `names` (each also tried with a `.gz` suffix) that exists in `dir`.
pub fn find_in(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    for name in names {
        for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::bad_input(dir, format!("missing {} (or .gz)", names.join(" or "))))
}

/// Like [`find_in`], but `None` when none exists.
pub fn find_optional(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    find_in(dir, names).ok()
}

/// Checks that `src` is a readable folder, descending into `nested` when the archive's own
/// top folder (such as `cifar-10-batches-bin`) was given one level up.
pub fn source_dir(src: &Path, nested: Option<&str>) -> Result<PathBuf> {
    let meta = std::fs::metadata(src).at(src)?;
    if !meta.is_dir() {
        return Err(Error::bad_input(src, "expected a folder"));
    }
    std::fs::read_dir(src).at(src)?;
    Ok(match nested.map(|n| src.join(n)) {
        Some(inner) if inner.is_dir() => inner,
        _ => src.to_path_buf(),
    })
}

/// Non-empty, trimmed lines of a text file such as `batches.meta.txt`.
pub fn read_names(path: &Path) -> Result<Vec<String>> {
    let text = String::from_utf8(read_maybe_gz(path)?).map_err(|_| Error::bad_input(path, "not UTF-8 text"))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// Checks labels against the number of classes, naming the file and index of the first bad one.
pub fn check_labels(path: &Path, labels: &[u32], num_classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= num_classes) {
        Some(i) => Err(Error::bad_input(
            path,
            format!("label {} at index {i} is out of range for {num_classes} classes", labels[i]),
        )),
        None => Ok(()),
    }
}
