//! STL-10 binary files: `train_X.bin`/`train_y.bin`, `test_X.bin`/`test_y.bin` and the 100k
//! `unlabeled_X.bin` (the standard self-supervised set). Images are 96x96x3, stored channel by
//! channel and column-major; labels are bytes from 1 to 10.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::import::{ImportOptions, Imported};
use super::source::{check_labels, find_in, find_optional, read_maybe_gz, read_names, source_dir};
use super::store::{Provenance, StoreWriter};
use super::ImageShape;
use crate::error::{Context, Error, Result};

const SIDE: usize = 96;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 3 * PLANE;
/// STL-10's class names, used when `class_names.txt` is absent.
pub const STL10_CLASSES: [&str; 10] =
    ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"];

/// Converts one STL-10 record (channel planes, column-major) to H x W x C.
pub fn record_to_hwc(rec: &[u8], out: &mut [u8]) {
    for c in 0..3 {
        for x in 0..SIDE {
            for y in 0..SIDE {
                out[(y * SIDE + x) * 3 + c] = rec[c * PLANE + x * SIDE + y];
            }
        }
    }
}

fn image_count(path: &Path) -> Result<usize> {
    let len = std::fs::metadata(path).at(path)?.len() as usize;
    if len == 0 || len % RECORD != 0 {
        return Err(Error::bad_input(path, format!("truncated: {len} bytes is not a whole number of 96x96x3 images")));
    }
    Ok(len / RECORD)
}

fn read_labels(path: &Path, n: usize, images: &Path) -> Result<Vec<u32>> {
    let raw = read_maybe_gz(path)?;
    if raw.len() != n {
        return Err(Error::bad_input(path, format!("{} labels for {n} images in {}", raw.len(), images.display())));
    }
    if let Some(i) = raw.iter().position(|&l| l == 0) {
        return Err(Error::bad_input(path, format!("label 0 at index {i} is out of range (STL-10 labels are 1-based)")));
    }
    Ok(raw.into_iter().map(|l| l as u32 - 1).collect())
}

/// Imports `train`, `test` and, when present, `unlabeled`.
pub fn import(src: &Path, out: &Path, opts: &ImportOptions) -> Result<Imported> {
    let dir = source_dir(src, Some("stl10_binary"))?;
    let classes = match (&opts.classes, find_optional(&dir, &["class_names.txt"])) {
        (None, Some(f)) => read_names(&f)?,
        _ => opts.class_names(STL10_CLASSES.iter().map(|s| s.to_string()).collect())?,
    };
    let mut plan: Vec<(&str, PathBuf, Option<Vec<u32>>)> = Vec::new();
    for name in ["train", "test"] {
        let x = find_in(&dir, &[&format!("{name}_X.bin")])?;
        let y = find_in(&dir, &[&format!("{name}_y.bin")])?;
        let labels = read_labels(&y, image_count(&x)?, &x)?;
        check_labels(&y, &labels, classes.len())?;
        plan.push((name, x, Some(labels)));
    }
    if let Some(x) = find_optional(&dir, &["unlabeled_X.bin"]) {
        image_count(&x)?;
        plan.push(("unlabeled", x, None));
    }
    let mut writer = StoreWriter::create(out, opts.force, &Provenance { format: "stl10".into(), source: dir }, &classes)?;
    let shape = ImageShape { height: SIDE, width: SIDE, channels: 3 };
    let mut imported = Imported::default();
    let mut rec = vec![0u8; RECORD];
    for (name, x, labels) in plan {
        let n = image_count(&x)?;
        let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&x).at(&x)?);
        writer.add_split(name, shape, n, labels.as_deref(), |_, buf| {
            for img in buf.chunks_exact_mut(RECORD) {
                reader.read_exact(&mut rec).at(&x)?;
                record_to_hwc(&rec, img);
            }
            Ok(())
        })?;
        imported.splits.push((name.to_string(), n));
    }
    writer.finish()?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_planes_become_hwc() {
        let mut rec = vec![0u8; RECORD];
        // Red channel, column x = 1, row y = 0.
        rec[SIDE] = 200;
        let mut out = vec![0u8; RECORD];
        record_to_hwc(&rec, &mut out);
        assert_eq!(out[3], 200); // pixel (y=0, x=1), channel 0
        assert_eq!(out.iter().filter(|&&v| v != 0).count(), 1);
    }
}
