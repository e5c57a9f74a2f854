//! Named f32 buffers in a safetensors file (optimiser state, cached features), written through
//! a temporary file and a rename.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Context, Error, Result};
use crate::fsutil::replace_atomic;

/// Writes `tensors` (name, shape, data) to `path`.
pub fn save(path: &Path, tensors: &[(String, Vec<usize>, &[f32])]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| Error::bad_input(path, format!("{e:?}")))?;
        views.push((name.clone(), view));
    }
    replace_atomic(path, |tmp| safetensors::tensor::serialize_to_file(views, &None, tmp).map_err(|e| Error::bad_input(path, format!("cannot write: {e:?}"))))
}

/// Reads every tensor of a file written by [`save`]: (name, shape, data).
pub fn load(path: &Path) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    read(path, false)
}

/// [`load`] for a file dfdx wrote: its scalar hyper-parameters (0-dimensional, e.g. BatchNorm's
/// epsilon and momentum, stored as f64) are skipped.
pub fn load_floats(path: &Path) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    read(path, true)
}

fn read(path: &Path, skip_scalars: bool) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    let buf = std::fs::read(path).at(path)?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| Error::bad_input(path, format!("not a safetensors file: {e:?}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if skip_scalars && view.shape().is_empty() && view.dtype() != Dtype::F32 {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(Error::bad_input(path, format!("tensor {name} is {:?}, not F32", view.dtype())));
        }
        let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        out.push((name, view.shape().to_vec(), data));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        super::save(&p, &[("b".into(), vec![2], &[1.0, 2.0]), ("a".into(), vec![1, 1], &[3.5])]).unwrap();
        let back = super::load(&p).unwrap();
        assert_eq!(back, vec![("a".into(), vec![1, 1], vec![3.5]), ("b".into(), vec![2], vec![1.0, 2.0])]);
        std::fs::write(&p, b"nonsense").unwrap();
        assert!(super::load(&p).unwrap_err().to_string().contains("t.safetensors"));
    }
}
