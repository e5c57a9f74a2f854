//! Frozen features stored in HDF5 for reuse: `features.h5` with one group per split holding
//! `features` f32 [N, F] and `labels` i32 [N], and a root attribute naming the backbone they
//! came from; a cache made from another backbone (or another file version) is recomputed.

use std::path::Path;

use hdf5::types::VarLenUnicode;

use crate::error::{Context, Result};

/// Features and labels of one split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitFeatures {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
    pub dim: usize,
}

/// Reads `splits` from the cache at `path` if it was made for `source` (any source when
/// `source` is None).
pub fn read(path: &Path, source: Option<&str>, splits: &[&str]) -> Result<Option<Vec<SplitFeatures>>> {
    if !path.exists() {
        return Ok(None);
    }
    let Ok(file) = hdf5::File::open(path) else { return Ok(None) };
    let made_for = file.attr("source").and_then(|a| a.read_scalar::<VarLenUnicode>()).map(|s| s.as_str().to_string());
    if source.is_some() && made_for.ok().as_deref() != source {
        return Ok(None);
    }
    let mut out = Vec::new();
    for s in splits {
        if !file.link_exists(s) {
            return Ok(None);
        }
        let g = file.group(s).at(path)?;
        let ds = g.dataset("features").at(path)?;
        let dim = ds.shape().get(1).copied().unwrap_or(0);
        let x: Vec<f32> = ds.read_raw().at(path)?;
        let y: Vec<i32> = g.dataset("labels").and_then(|d| d.read_raw()).at(path)?;
        out.push(SplitFeatures { x, y: y.into_iter().map(|v| v as u32).collect(), dim });
    }
    Ok(Some(out))
}

/// Writes the cache (through a temporary file).
pub fn write(path: &Path, source: &str, splits: &[(&str, &SplitFeatures)]) -> Result<()> {
    crate::fsutil::replace_atomic(path, |tmp| {
        let file = hdf5::File::create(tmp).at(tmp)?;
        let src: VarLenUnicode = source.parse().expect("no NUL in a path");
        file.new_attr::<VarLenUnicode>().create("source").and_then(|a| a.write_scalar(&src)).at(tmp)?;
        for (name, f) in splits {
            let g = file.create_group(name).at(tmp)?;
            let n = f.y.len();
            let arr = ndarray::ArrayView2::from_shape((n, f.dim), &f.x[..]).map_err(|e| crate::error::Error::invalid("features", e.to_string()))?;
            g.new_dataset_builder().with_data(arr).create("features").at(tmp)?;
            let y: Vec<i32> = f.y.iter().map(|&v| v as i32).collect();
            g.new_dataset_builder().with_data(&y[..]).create("labels").at(tmp)?;
        }
        file.close().at(tmp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_invalidation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("features.h5");
        let a = SplitFeatures { x: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], y: vec![0, 2], dim: 3 };
        write(&p, "backbone v1", &[("train", &a), ("test", &a)]).unwrap();
        assert_eq!(read(&p, Some("backbone v1"), &["train", "test"]).unwrap(), Some(vec![a.clone(), a]));
        assert_eq!(read(&p, Some("backbone v2"), &["train"]).unwrap(), None);
        assert_eq!(read(&p, None, &["val"]).unwrap(), None);
    }
}
