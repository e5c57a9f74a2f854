//! IDX files, the MNIST / Fashion-MNIST / KMNIST layout: `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, raw or gzipped.

use std::path::Path;

use super::import::{ImportOptions, Imported};
use super::source::{check_labels, find_in, read_maybe_gz, source_dir};
use super::store::{Provenance, StoreWriter};
use super::ImageShape;
use crate::error::{Error, Result};

/// Fashion-MNIST's class names, used when the source path names Fashion-MNIST.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// A parsed IDX array of unsigned bytes.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses IDX bytes, expecting `ndim` dimensions of u8.
pub fn parse(path: &Path, bytes: Vec<u8>, ndim: usize) -> Result<IdxArray> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::bad_input(path, "not an IDX file (wrong magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(Error::bad_input(path, format!("unsupported IDX element type 0x{:02x} (only u8)", bytes[2])));
    }
    if bytes[3] as usize != ndim {
        return Err(Error::bad_input(
            path,
            format!("wrong IDX magic number: {} dimensions, expected {ndim}", bytes[3]),
        ));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Error::bad_input(path, "truncated IDX header"));
    }
    let dims: Vec<usize> =
        (0..ndim).map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize).collect();
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let have = bytes.len() - header;
    match expected {
        Some(e) if e == have => {}
        Some(e) if e > have => {
            return Err(Error::bad_input(path, format!("truncated: header declares {e} bytes of data, file holds {have}")))
        }
        Some(e) => return Err(Error::bad_input(path, format!("{} trailing bytes after the declared data", have - e))),
        None => return Err(Error::bad_input(path, format!("header declares impossible dimensions {dims:?}"))),
    }
    let mut data = bytes;
    data.drain(..header);
    Ok(IdxArray { dims, data })
}

fn read_pair(dir: &Path, prefix: &str) -> Result<(ImageShape, Vec<u8>, Vec<u32>, std::path::PathBuf)> {
    let img_path = find_in(dir, &[&format!("{prefix}-images-idx3-ubyte"), &format!("{prefix}-images.idx3-ubyte")])?;
    let lbl_path = find_in(dir, &[&format!("{prefix}-labels-idx1-ubyte"), &format!("{prefix}-labels.idx1-ubyte")])?;
    let images = parse(&img_path, read_maybe_gz(&img_path)?, 3)?;
    let labels = parse(&lbl_path, read_maybe_gz(&lbl_path)?, 1)?;
    if images.dims[0] != labels.dims[0] {
        return Err(Error::bad_input(
            &lbl_path,
            format!("{} labels for {} images in {}", labels.dims[0], images.dims[0], img_path.display()),
        ));
    }
    let shape = ImageShape { height: images.dims[1], width: images.dims[2], channels: 1 };
    Ok((shape, images.data, labels.data.into_iter().map(u32::from).collect(), lbl_path))
}

/// Imports the train and test splits of an IDX folder.
pub fn import(src: &Path, out: &Path, opts: &ImportOptions) -> Result<Imported> {
    let dir = source_dir(src, None)?;
    let train = read_pair(&dir, "train")?;
    let test = read_pair(&dir, "t10k")?;
    let is_fashion = src.to_string_lossy().to_lowercase().contains("fashion");
    let classes = opts.class_names(if is_fashion {
        FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..10).map(|d| d.to_string()).collect()
    })?;
    for (_, _, labels, path) in [&train, &test] {
        check_labels(path, labels, classes.len())?;
    }
    let prov = Provenance { format: "idx".into(), source: dir.clone() };
    let mut writer = StoreWriter::create(out, opts.force, &prov, &classes)?;
    let mut imported = Imported::default();
    for (name, (shape, images, labels, _)) in [("train", train), ("test", test)] {
        writer.add_split_from(name, shape, &images, Some(&labels))?;
        imported.splits.push((name.to_string(), labels.len()));
    }
    writer.finish()?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| v.extend_from_slice(&d.to_be_bytes()));
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_dims_and_data() {
        let a = parse(Path::new("x"), idx(&[2, 1, 3], &[1, 2, 3, 4, 5, 6]), 3).unwrap();
        assert_eq!(a.dims, vec![2, 1, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_bad_magic_truncation_and_trailing_bytes() {
        let p = Path::new("x");
        let mut wrong = idx(&[1], &[1]);
        wrong[0] = 7;
        assert!(parse(p, wrong, 1).unwrap_err().to_string().contains("magic"));
        assert!(parse(p, idx(&[3], &[1, 2, 3]), 3).unwrap_err().to_string().contains("magic"));
        assert!(parse(p, idx(&[4], &[1, 2]), 1).unwrap_err().to_string().contains("truncated"));
        assert!(parse(p, idx(&[1], &[1, 2]), 1).unwrap_err().to_string().contains("trailing"));
        assert!(parse(p, idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), 3).is_err());
    }
}
