//! CIFAR-10 and CIFAR-100 binary batches: records of label byte(s) then 3072 bytes of
//! 32x32 red, green and blue planes.

use std::path::{Path, PathBuf};

use super::import::{ImportOptions, Imported};
use super::source::{check_labels, find_in, find_optional, read_maybe_gz, read_names, source_dir};
use super::store::{Provenance, StoreWriter};
use super::ImageShape;
use crate::error::{Error, Result};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
/// CIFAR-10's class names, used when `batches.meta.txt` is absent.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Which CIFAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    /// Label bytes before each image: CIFAR-100 has a coarse then a fine label.
    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }
    fn num_classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }
}

/// Decodes a batch file into HWC images and labels (CIFAR-100: the fine labels).
pub fn parse_batch(path: &Path, bytes: &[u8], variant: Variant) -> Result<(Vec<u8>, Vec<u32>)> {
    let record = variant.label_bytes() + 3 * PLANE;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(Error::bad_input(
            path,
            format!("truncated: {} bytes is not a whole number of {record}-byte records", bytes.len()),
        ));
    }
    let n = bytes.len() / record;
    let mut images = vec![0u8; n * 3 * PLANE];
    let mut labels = Vec::with_capacity(n);
    for (rec, img) in bytes.chunks_exact(record).zip(images.chunks_exact_mut(3 * PLANE)) {
        labels.push(rec[variant.label_bytes() - 1] as u32);
        let planes = &rec[variant.label_bytes()..];
        for p in 0..PLANE {
            for c in 0..3 {
                img[p * 3 + c] = planes[c * PLANE + p];
            }
        }
    }
    check_labels(path, &labels, variant.num_classes())?;
    Ok((images, labels))
}

fn read_split(dir: &Path, files: &[PathBuf], variant: Variant) -> Result<(Vec<u8>, Vec<u32>)> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let (i, l) = parse_batch(f, &read_maybe_gz(f)?, variant)?;
        images.extend_from_slice(&i);
        labels.extend_from_slice(&l);
    }
    if labels.is_empty() {
        return Err(Error::bad_input(dir, "no images in the batch files"));
    }
    Ok((images, labels))
}

/// Imports CIFAR-10 (`data_batch_1..5.bin`, `test_batch.bin`) or CIFAR-100 (`train.bin`,
/// `test.bin`) into `train` and `test` splits.
pub fn import(src: &Path, out: &Path, variant: Variant, opts: &ImportOptions) -> Result<Imported> {
    let (dir, train_files, test_files, names_file) = match variant {
        Variant::Cifar10 => {
            let dir = source_dir(src, Some("cifar-10-batches-bin"))?;
            let train: Result<Vec<_>> = (1..=5).map(|i| find_in(&dir, &[&format!("data_batch_{i}.bin")])).collect();
            let test = find_in(&dir, &["test_batch.bin"])?;
            let names = find_optional(&dir, &["batches.meta.txt"]);
            (dir, train?, vec![test], names)
        }
        Variant::Cifar100 => {
            let dir = source_dir(src, Some("cifar-100-binary"))?;
            let train = find_in(&dir, &["train.bin"])?;
            let test = find_in(&dir, &["test.bin"])?;
            let names = find_optional(&dir, &["fine_label_names.txt"]);
            (dir, vec![train], vec![test], names)
        }
    };
    let own: Vec<String> = match names_file {
        Some(f) if opts.classes.is_none() => {
            let names = read_names(&f)?;
            if names.len() != variant.num_classes() {
                return Err(Error::bad_input(&f, format!("{} class names, expected {}", names.len(), variant.num_classes())));
            }
            names
        }
        _ if variant == Variant::Cifar10 => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        _ => (0..100).map(|i| i.to_string()).collect(),
    };
    let classes = opts.class_names(own)?;
    let train = read_split(&dir, &train_files, variant)?;
    let test = read_split(&dir, &test_files, variant)?;
    let format = match variant {
        Variant::Cifar10 => "cifar10",
        Variant::Cifar100 => "cifar100",
    };
    let mut writer = StoreWriter::create(out, opts.force, &Provenance { format: format.into(), source: dir }, &classes)?;
    let shape = ImageShape { height: SIDE, width: SIDE, channels: 3 };
    let mut imported = Imported::default();
    for (name, (images, labels)) in [("train", train), ("test", test)] {
        writer.add_split_from(name, shape, &images, Some(&labels))?;
        imported.splits.push((name.to_string(), labels.len()));
    }
    writer.finish()?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_become_hwc() {
        let mut rec = vec![3u8];
        rec.extend(std::iter::repeat_n(10u8, PLANE));
        rec.extend(std::iter::repeat_n(20u8, PLANE));
        rec.extend(std::iter::repeat_n(30u8, PLANE));
        let (img, lbl) = parse_batch(Path::new("b"), &rec, Variant::Cifar10).unwrap();
        assert_eq!(lbl, vec![3]);
        assert_eq!(&img[..6], &[10, 20, 30, 10, 20, 30]);
        assert!(parse_batch(Path::new("b"), &rec[..100], Variant::Cifar10).is_err());
    }
}
