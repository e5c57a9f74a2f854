//! The HDF5 dataset store.
//!
//! Layout of one file:
//! ```text
//! /                     attrs: ssl_store_version, source_format, source_path, import_time, tool_version,
//!                       history (strings: what was done to the store since the import, optional)
//! /classes              [K] strings (absent when no split is labeled)
//! /SPLIT/images         u8 [N, H, W, C], chunked, deflate
//! /SPLIT/labels         i32 [N] (absent for unlabeled splits)
//! /SPLIT                attrs: mean [C], std [C] (per channel, pixels in [0, 1])
//! ```
//! Writing goes to a temporary file beside the output, renamed over it only when complete, so a
//! failed import never leaves a partial file nor clobbers an existing one.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5::types::VarLenUnicode;

use super::{ImageShape, Split};
use crate::error::{Context, Error, Result};

const STORE_VERSION: u32 = 1;
/// Images written per HDF5 call while importing.
const WRITE_BLOCK: usize = 4096;

/// Where a store's data came from.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// Importer name: `idx`, `cifar10`, `cifar100`, `stl10`, `folder`.
    pub format: String,
    pub source: PathBuf,
}

/// Checks that `out` may be written: absent (or `force`), in an existing folder.
pub fn check_target(out: &Path, force: bool) -> Result<()> {
    if out.is_dir() {
        return Err(Error::bad_input(out, "output path is a directory"));
    }
    if out.exists() && !force {
        return Err(Error::OutputExists { path: out.to_path_buf() });
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::bad_input(out, "the output's folder does not exist"));
    }
    Ok(())
}

/// Streams splits into a new store file.
pub struct StoreWriter {
    out: PathBuf,
    tmp: PathBuf,
    file: Option<hdf5::File>,
    num_classes: usize,
}

impl StoreWriter {
    /// Starts a store at `out`; refused when `out` exists unless `force`.
    pub fn create(out: &Path, force: bool, provenance: &Provenance, classes: &[String]) -> Result<Self> {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Self::create_with_history(out, force, provenance, &now, &[], classes)
    }

    /// Starts a store derived from another (see `ssl data split`): its provenance and import
    /// time, and `history`, what has been done to it since, one line per change.
    pub fn create_with_history(out: &Path, force: bool, provenance: &Provenance, import_time: &str, history: &[String], classes: &[String]) -> Result<Self> {
        check_target(out, force)?;
        let tmp = crate::fsutil::tmp_beside(out);
        let file = hdf5::File::create(&tmp).at(&tmp)?;
        let writer = StoreWriter { out: out.to_path_buf(), tmp, file: Some(file), num_classes: classes.len() };
        let f = writer.file();
        f.new_attr::<u32>().create("ssl_store_version").and_then(|a| a.write_scalar(&STORE_VERSION)).at(&writer.tmp)?;
        write_str_attr(f, "source_format", &provenance.format).at(&writer.tmp)?;
        write_str_attr(f, "source_path", &provenance.source.display().to_string()).at(&writer.tmp)?;
        write_str_attr(f, "import_time", import_time).at(&writer.tmp)?;
        if !history.is_empty() {
            let lines: Vec<VarLenUnicode> = history.iter().map(|c| to_h5_str(c)).collect();
            f.new_attr_builder().with_data(&lines[..]).create("history").at(&writer.tmp)?;
        }
        write_str_attr(f, "tool_version", concat!("ssl ", env!("CARGO_PKG_VERSION"))).at(&writer.tmp)?;
        if !classes.is_empty() {
            let names: Vec<VarLenUnicode> = classes.iter().map(|c| to_h5_str(c)).collect();
            f.new_dataset_builder().with_data(&names[..]).create("classes").at(&writer.tmp)?;
        }
        Ok(writer)
    }

    fn file(&self) -> &hdf5::File {
        self.file.as_ref().expect("store writer used after finish")
    }

    /// Writes split `name` of `n` images. `fill(start, buf)` writes images `start..start + k`
    /// into `buf` (k = `buf.len() / shape.len()`). Labels, when given, must be below the number
    /// of classes.
    pub fn add_split(
        &mut self,
        name: &str,
        shape: ImageShape,
        n: usize,
        labels: Option<&[u32]>,
        mut fill: impl FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let tmp = self.tmp.clone();
        if let Some(l) = labels {
            if l.len() != n {
                return Err(Error::invalid(format!("split {name}"), format!("{} labels for {n} images", l.len())));
            }
            if let Some(bad) = l.iter().find(|&&x| x as usize >= self.num_classes) {
                return Err(Error::invalid(
                    format!("split {name}"),
                    format!("label {bad} out of range for {} classes", self.num_classes),
                ));
            }
        }
        let group = self.file().create_group(name).at(&tmp)?;
        let per = shape.len();
        let chunk_n = (256 * 1024 / per.max(1)).clamp(1, n.max(1));
        let images = group
            .new_dataset::<u8>()
            .shape((n, shape.height, shape.width, shape.channels))
            .chunk((chunk_n, shape.height, shape.width, shape.channels))
            .deflate(4)
            .create("images")
            .at(&tmp)?;
        let mut stats = PixelStats::new(shape.channels);
        let mut buf = vec![0u8; WRITE_BLOCK.min(n.max(1)) * per];
        let mut start = 0;
        while start < n {
            let k = WRITE_BLOCK.min(n - start);
            let block = &mut buf[..k * per];
            fill(start, block)?;
            stats.add(block);
            let view = ndarray::ArrayView4::from_shape((k, shape.height, shape.width, shape.channels), &*block)
                .expect("block shape matches its length");
            images.write_slice(view, ndarray::s![start..start + k, .., .., ..]).at(&tmp)?;
            start += k;
        }
        if let Some(l) = labels {
            let l: Vec<i32> = l.iter().map(|&x| x as i32).collect();
            group.new_dataset_builder().with_data(&l[..]).create("labels").at(&tmp)?;
        }
        let (mean, std) = stats.mean_std();
        group.new_attr_builder().with_data(&mean[..]).create("mean").at(&tmp)?;
        group.new_attr_builder().with_data(&std[..]).create("std").at(&tmp)?;
        Ok(())
    }

    /// Writes split `name` from images already in memory (`images.len()` a multiple of
    /// `shape.len()`).
    pub fn add_split_from(&mut self, name: &str, shape: ImageShape, images: &[u8], labels: Option<&[u32]>) -> Result<()> {
        let per = shape.len();
        self.add_split(name, shape, images.len() / per.max(1), labels, |start, buf| {
            buf.copy_from_slice(&images[start * per..start * per + buf.len()]);
            Ok(())
        })
    }

    /// Closes the file and moves it into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.close().at(&self.tmp)?;
        }
        std::fs::rename(&self.tmp, &self.out).at(&self.out)
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            drop(f);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Exact per-channel pixel sums, for mean and std at import.
struct PixelStats {
    sum: Vec<u64>,
    sumsq: Vec<u64>,
    count: u64,
}

impl PixelStats {
    fn new(channels: usize) -> Self {
        PixelStats { sum: vec![0; channels], sumsq: vec![0; channels], count: 0 }
    }
    fn add(&mut self, pixels: &[u8]) {
        let c = self.sum.len();
        for px in pixels.chunks_exact(c) {
            for (ch, &v) in px.iter().enumerate() {
                self.sum[ch] += v as u64;
                self.sumsq[ch] += (v as u64) * (v as u64);
            }
        }
        self.count += (pixels.len() / c) as u64;
    }
    fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.count.max(1) as f64;
        let mean: Vec<f64> = self.sum.iter().map(|&s| s as f64 / n / 255.0).collect();
        let std = self
            .sumsq
            .iter()
            .zip(&mean)
            .map(|(&sq, &m)| (sq as f64 / n / (255.0 * 255.0) - m * m).max(0.0).sqrt())
            .collect();
        (mean, std)
    }
}

fn to_h5_str(s: &str) -> VarLenUnicode {
    // Interior NULs cannot be stored; class names come from file names and text files.
    VarLenUnicode::from_str(&s.replace('\0', "")).expect("string without NUL")
}

fn write_str_attr(loc: &hdf5::Location, name: &str, value: &str) -> hdf5::Result<()> {
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&to_h5_str(value))
}

fn read_str_attr(loc: &hdf5::Location, name: &str) -> hdf5::Result<String> {
    Ok(loc.attr(name)?.read_scalar::<VarLenUnicode>()?.as_str().to_string())
}

/// An open store, for reading.
pub struct Store {
    path: PathBuf,
    file: hdf5::File,
}

/// What `ssl data info` shows about one split.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SplitInfo {
    pub name: String,
    pub len: usize,
    pub shape: ImageShape,
    /// Images per class, for labeled splits.
    pub class_counts: Option<Vec<usize>>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// What `ssl data info` shows about a store.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoreInfo {
    pub path: PathBuf,
    pub source_format: String,
    pub source_path: String,
    pub import_time: String,
    pub tool_version: String,
    /// What was done to the store since its import (e.g. `ssl data split`), oldest first.
    pub history: Vec<String>,
    pub classes: Vec<String>,
    pub splits: Vec<SplitInfo>,
}

impl Store {
    /// Opens a store written by `ssl data import`.
    pub fn open(path: &Path) -> Result<Store> {
        std::fs::metadata(path).at(path)?;
        if !path.is_file() {
            return Err(Error::bad_input(path, "not a file"));
        }
        let file = hdf5::File::open(path)
            .map_err(|e| Error::bad_input(path, format!("not an HDF5 file, or a corrupt one ({e})")))?;
        if file.attr("ssl_store_version").is_err() {
            return Err(Error::bad_input(path, "an HDF5 file, but not an ssl dataset store (no ssl_store_version)"));
        }
        Ok(Store { path: path.to_path_buf(), file })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the splits, in the file's order.
    pub fn split_names(&self) -> Result<Vec<String>> {
        let groups = self.file.groups().at(&self.path)?;
        Ok(groups.iter().map(|g| g.name().trim_start_matches('/').to_string()).collect())
    }

    /// What was done to the store since its import, oldest first.
    pub fn history(&self) -> Result<Vec<String>> {
        if !self.file.attr_names().at(&self.path)?.iter().any(|n| n == "history") {
            return Ok(Vec::new());
        }
        let lines: Vec<VarLenUnicode> = self.file.attr("history").and_then(|a| a.read_raw()).at(&self.path)?;
        Ok(lines.iter().map(|s| s.as_str().to_string()).collect())
    }

    /// Class names (empty for an unlabeled store).
    pub fn classes(&self) -> Result<Vec<String>> {
        if !self.file.link_exists("classes") {
            return Ok(Vec::new());
        }
        let names: Vec<VarLenUnicode> = self.file.dataset("classes").and_then(|d| d.read_raw()).at(&self.path)?;
        Ok(names.iter().map(|s| s.as_str().to_string()).collect())
    }

    fn group(&self, name: &str) -> Result<hdf5::Group> {
        if !self.file.link_exists(name) {
            let have = self.split_names()?.join(", ");
            return Err(Error::bad_input(&self.path, format!("no split named '{name}' (splits: {have})")));
        }
        self.file.group(name).at(&self.path)
    }

    fn split_shape(&self, group: &hdf5::Group) -> Result<(usize, ImageShape)> {
        let shape = group.dataset("images").at(&self.path)?.shape();
        if shape.len() != 4 {
            return Err(Error::bad_input(&self.path, format!("{}/images is not 4-D", group.name())));
        }
        Ok((shape[0], ImageShape { height: shape[1], width: shape[2], channels: shape[3] }))
    }

    fn read_labels(&self, group: &hdf5::Group, n: usize, num_classes: usize) -> Result<Option<Vec<u32>>> {
        if !group.link_exists("labels") {
            return Ok(None);
        }
        let raw: Vec<i32> = group.dataset("labels").and_then(|d| d.read_raw()).at(&self.path)?;
        if raw.len() != n || raw.iter().any(|&l| l < 0 || l as usize >= num_classes) {
            return Err(Error::bad_input(&self.path, format!("{}/labels do not match images and classes", group.name())));
        }
        Ok(Some(raw.into_iter().map(|l| l as u32).collect()))
    }

    fn read_stats(&self, group: &hdf5::Group) -> Result<(Vec<f64>, Vec<f64>)> {
        let mean = group.attr("mean").and_then(|a| a.read_raw::<f64>()).at(&self.path)?;
        let std = group.attr("std").and_then(|a| a.read_raw::<f64>()).at(&self.path)?;
        Ok((mean, std))
    }

    /// The per-channel mean and std of split `name` (of pixel values in [0, 1]), without
    /// reading its images.
    pub fn split_stats(&self, name: &str) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mean, std) = self.read_stats(&self.group(name)?)?;
        Ok((mean.iter().map(|&v| v as f32).collect(), std.iter().map(|&v| v as f32).collect()))
    }

    /// Loads split `name` whole into memory.
    pub fn load_split(&self, name: &str) -> Result<Split> {
        let group = self.group(name)?;
        let (n, shape) = self.split_shape(&group)?;
        let classes = self.classes()?;
        let images: Vec<u8> = group.dataset("images").and_then(|d| d.read_raw()).at(&self.path)?;
        let labels = self.read_labels(&group, n, classes.len())?;
        let (mean, std) = self.read_stats(&group)?;
        Ok(Split {
            name: name.to_string(),
            shape,
            images,
            labels,
            classes,
            mean: mean.iter().map(|&v| v as f32).collect(),
            std: std.iter().map(|&v| v as f32).collect(),
        })
    }

    /// Everything `ssl data info` shows, without reading the images.
    pub fn info(&self) -> Result<StoreInfo> {
        let classes = self.classes()?;
        let mut splits = Vec::new();
        for name in self.split_names()? {
            let group = self.group(&name)?;
            let (len, shape) = self.split_shape(&group)?;
            let class_counts = self.read_labels(&group, len, classes.len())?.map(|labels| {
                let mut counts = vec![0; classes.len()];
                labels.iter().for_each(|&l| counts[l as usize] += 1);
                counts
            });
            let (mean, std) = self.read_stats(&group)?;
            splits.push(SplitInfo { name, len, shape, class_counts, mean, std });
        }
        let attr = |n: &str| read_str_attr(&self.file, n).at(&self.path);
        Ok(StoreInfo {
            path: self.path.clone(),
            source_format: attr("source_format")?,
            source_path: attr("source_path")?,
            import_time: attr("import_time")?,
            tool_version: attr("tool_version")?,
            history: self.history()?,
            classes,
            splits,
        })
    }
}
