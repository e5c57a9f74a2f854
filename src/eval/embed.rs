//! `ssl embed`: a run's frozen features of one split for a user's own analysis, as the
//! linear probe and kNN see them (the evaluation view, the backbone in evaluation mode).
//!
//! Formats:
//! - HDF5 (default): datasets `features` f32 [N, F], `indices` u64 [N] (the images' rows in
//!   the split), `labels` i32 [N] and `classes` (strings) when the split is labeled, and with
//!   `inputs` also `inputs` f32 [N, C, H, W] (the images exactly as the backbone saw them:
//!   resized, normalised); attributes `model`, `method`, `run`, `backbone` (digest of the
//!   backbone file), `data` and `split`.
//! - NumPy: `features` in OUT (.npy, f32 [N, F]); labels in `OUT_labels.npy` (i32 [N]; an
//!   older such file is removed when the split has no labels).
//! - CSV: a header `index,label,f0,...,f{F-1}`, one row per image (label empty when
//!   unlabeled).

use std::io::Write;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;

use super::frozen::{evaluation_pipeline, file_digest, split_features, Source};
use crate::data::Store;
use crate::error::{Context, Error, Result};
use crate::run::folder::finished_pretraining;

/// Which features to write.
#[derive(Clone, Debug)]
pub struct EmbedRequest {
    /// The store (default: the run's pretraining data).
    pub data: Option<PathBuf>,
    pub split: String,
    /// The first this many images of the split (0: all).
    pub limit: usize,
    /// Also keep the network's inputs (HDF5 only; N x C x H x W floats held in memory, so
    /// with `limit` on a large split).
    pub inputs: bool,
    pub device: crate::device::DeviceSpec,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedFormat {
    Hdf5,
    Npy,
    Csv,
}

/// A split's features and what they are.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// [N, F] row-major.
    pub features: Vec<f32>,
    pub dim: usize,
    /// Rows of the split.
    pub indices: Vec<u64>,
    /// Labels, when the split is labeled, and the class names.
    pub labels: Option<Vec<u32>>,
    pub classes: Vec<String>,
    /// The images as the backbone saw them [N, C, H, W] and (C, H, W), when asked.
    pub inputs: Option<(Vec<f32>, [usize; 3])>,
    pub model: String,
    pub method: String,
    pub run: String,
    pub backbone: String,
    pub data: String,
    pub split: String,
}

/// The features of `req.split` from the backbone of pretraining run `run`.
///
/// # Errors
/// A folder that is not a pretraining run or has no backbone yet, an unknown store or split,
/// a limit above the split's size, device failures.
pub fn embed(run: &Path, req: &EmbedRequest) -> Result<Embedding> {
    let (recipe, backbone) = finished_pretraining(run)?;
    let file = req.data.clone().unwrap_or_else(|| recipe.data.file.clone());
    let store = Store::open(&file)?;
    let split = store.load_split(&req.split).map_err(|e| Error::invalid("--split", e.to_string()))?;
    if req.limit > split.len() {
        return Err(Error::invalid("--limit", format!("{} images asked, split {} has {}", req.limit, req.split, split.len())));
    }
    let n = if req.limit == 0 { split.len() } else { req.limit };
    let idx: Vec<usize> = (0..n).collect();
    let pipeline = evaluation_pipeline(&recipe, &split)?;
    let (features, dim) = split_features(run, &recipe.model, recipe.seed, Source::Pretrained, &pipeline, &split, &idx, req.device, &format!("features: {}", req.split))?;
    let inputs = req.inputs.then(|| {
        let mut x = Vec::new();
        pipeline.eval_into(&split, &idx, &mut x);
        let s = pipeline.output_shape();
        (x, [s.channels, s.height, s.width])
    });
    let labels = split.labels.as_ref().map(|all| idx.iter().map(|&i| all[i]).collect());
    Ok(Embedding {
        features,
        dim,
        indices: idx.iter().map(|&i| i as u64).collect(),
        labels,
        classes: split.classes.clone(),
        inputs,
        model: recipe.model.clone(),
        method: recipe.method()?.name().to_string(),
        run: crate::run::folder::absolute(run),
        backbone: file_digest(&backbone),
        data: file.display().to_string(),
        split: req.split.clone(),
    })
}

/// [`embed`] then [`write`], with what can be refused refused before any work: inputs in a
/// format that cannot keep them, an `out` in no existing folder or naming the run's backbone,
/// recipe or the store read. Returns the embedding and the files written.
pub fn embed_to(run: &Path, req: &EmbedRequest, format: EmbedFormat, out: &Path) -> Result<(Embedding, Vec<PathBuf>)> {
    check_format(format, req.inputs)?;
    let (recipe, backbone) = finished_pretraining(run)?;
    let data = req.data.clone().unwrap_or(recipe.data.file);
    crate::run::folder::check_output(out, &[&backbone, &data, &run.join("recipe.ron")])?;
    let e = embed(run, req)?;
    let written = write(&e, out, format)?;
    Ok((e, written))
}

/// Refuses inputs in a format that cannot keep them.
fn check_format(format: EmbedFormat, inputs: bool) -> Result<()> {
    if inputs && format != EmbedFormat::Hdf5 {
        return Err(Error::invalid("--inputs", "only the HDF5 format keeps the inputs"));
    }
    Ok(())
}

/// Writes `e` to `out` in `format` (each file through a temporary file); returns the files
/// written.
pub fn write(e: &Embedding, out: &Path, format: EmbedFormat) -> Result<Vec<PathBuf>> {
    check_format(format, e.inputs.is_some())?;
    let n = e.indices.len();
    let features = ndarray::ArrayView2::from_shape((n, e.dim), &e.features[..]).map_err(|err| Error::invalid("features", err.to_string()))?;
    match format {
        EmbedFormat::Hdf5 => {
            crate::fsutil::replace_atomic(out, |tmp| {
                let f = hdf5::File::create(tmp).at(tmp)?;
                f.new_dataset_builder().with_data(features).create("features").at(tmp)?;
                f.new_dataset_builder().with_data(&e.indices[..]).create("indices").at(tmp)?;
                if let Some(labels) = &e.labels {
                    let y: Vec<i32> = labels.iter().map(|&v| v as i32).collect();
                    f.new_dataset_builder().with_data(&y[..]).create("labels").at(tmp)?;
                    let names = e.classes.iter().map(|c| c.parse::<VarLenUnicode>().map_err(|_| Error::bad_input(&e.data, format!("class name {c:?} holds a NUL")))).collect::<Result<Vec<_>>>()?;
                    f.new_dataset_builder().with_data(&names[..]).create("classes").at(tmp)?;
                }
                if let Some((x, [c, h, w])) = &e.inputs {
                    let x = ndarray::ArrayView4::from_shape((n, *c, *h, *w), &x[..]).map_err(|err| Error::invalid("inputs", err.to_string()))?;
                    f.new_dataset_builder().with_data(x).create("inputs").at(tmp)?;
                }
                for (k, v) in [("model", &e.model), ("method", &e.method), ("run", &e.run), ("backbone", &e.backbone), ("data", &e.data), ("split", &e.split)] {
                    let v: VarLenUnicode = v.parse().map_err(|_| Error::invalid(k, format!("{v:?} holds a NUL")))?;
                    f.new_attr::<VarLenUnicode>().create(k).and_then(|a| a.write_scalar(&v)).at(tmp)?;
                }
                f.close().at(tmp)
            })?;
            Ok(vec![out.to_path_buf()])
        }
        EmbedFormat::Npy => {
            let mut written = vec![out.to_path_buf()];
            let stem = out.file_stem().map_or("embeddings".into(), |s| s.to_string_lossy().into_owned());
            let labels_path = out.with_file_name(format!("{stem}_labels.npy"));
            npy(out, &features)?;
            match &e.labels {
                Some(labels) => {
                    npy(&labels_path, &ndarray::Array1::from_iter(labels.iter().map(|&v| v as i32)))?;
                    written.push(labels_path);
                }
                // An earlier export's labels would pass for these features' labels.
                None if labels_path.exists() => std::fs::remove_file(&labels_path).at(&labels_path)?,
                None => {}
            }
            Ok(written)
        }
        EmbedFormat::Csv => {
            crate::fsutil::replace_atomic(out, |tmp| {
                let mut w = std::io::BufWriter::new(std::fs::File::create(tmp).at(tmp)?);
                let header: Vec<String> = ["index".to_string(), "label".to_string()].into_iter().chain((0..e.dim).map(|j| format!("f{j}"))).collect();
                writeln!(w, "{}", header.join(",")).at(tmp)?;
                for (r, row) in features.outer_iter().enumerate() {
                    let label = e.labels.as_ref().map_or(String::new(), |l| l[r].to_string());
                    let values: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                    writeln!(w, "{},{label},{}", e.indices[r], values.join(",")).at(tmp)?;
                }
                w.flush().at(tmp)
            })?;
            Ok(vec![out.to_path_buf()])
        }
    }
}

/// Writes one array as a `.npy` file, through a temporary file.
fn npy<T: ndarray_npy::WriteNpyExt + ?Sized>(path: &Path, a: &T) -> Result<()> {
    crate::fsutil::replace_atomic(path, |tmp| ndarray_npy::write_npy(tmp, a).map_err(|err| Error::bad_input(path, format!("cannot write: {err}"))))
}
