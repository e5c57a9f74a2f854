//! Module weights and optimiser state on disk (safetensors), written through a temporary file;
//! backbones also under PyTorch's names ([`torch`]).

pub mod torch;

use std::path::Path;

use dfdx::nn::tensor_collection::RecursiveWalker;
use dfdx::prelude::*;

use crate::error::{Error, Result};
use crate::optim::Optim;

use crate::tensors_file;

/// The backbone's file inside a checkpoint or a run folder (what fine-tuning, probe and kNN
/// load).
pub const BACKBONE_FILE: &str = "backbone.safetensors";

/// Saves a dfdx module, through a temporary file.
pub fn save_module<D: Device<f32>, M: TensorCollection<f32, D>>(m: &M, path: &Path) -> Result<()> {
    crate::fsutil::replace_atomic(path, |tmp| m.save_safetensors(tmp).map_err(|e| Error::bad_input(path, format!("cannot write: {e:?}"))))
}

/// Loads a dfdx module saved by [`save_module`], or a ResNet backbone under PyTorch's names
/// (an `ssl export --format torch` file or a PyTorch state dict saved as safetensors, see
/// [`torch`]); a file of another model is refused.
pub fn load_module<D: Device<f32>, M: TensorCollection<f32, D>>(m: &mut M, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::bad_input(path, "no such file"));
    }
    let buf = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let mut st = ::safetensors::SafeTensors::deserialize(&buf).map_err(|e| Error::bad_input(path, format!("not a safetensors file: {e:?}")))?;
    if torch::has_torch_names(&st) {
        return torch::load(m, &st, path);
    }
    M::iter_tensors(&mut RecursiveWalker { m: (m, String::new()), f: &mut st }).map_err(|e| Error::bad_input(path, format!("does not fit this model: {e:?}")))?;
    Ok(())
}

pub fn save_optimizer(opt: &Optim, path: &Path) -> Result<()> {
    let (named, steps) = opt.state();
    let steps_buf = [steps as f32];
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = named.iter().map(|(n, v)| (n.clone(), vec![v.len()], v.as_slice())).collect();
    // The step count fits f32 exactly up to 2^24 updates; also kept in the checkpoint's JSON.
    tensors.push(("steps".into(), vec![1], &steps_buf));
    tensors_file::save(path, &tensors)
}

pub fn load_optimizer(opt: &mut Optim, path: &Path) -> Result<()> {
    let mut steps = 0;
    let mut named = Vec::new();
    for (name, _, data) in tensors_file::load(path)? {
        if name == "steps" {
            steps = data.first().copied().unwrap_or(0.0) as u64;
        } else {
            named.push((name, data));
        }
    }
    opt.set_state(named, steps).map_err(|e| Error::bad_input(path, e.to_string()))
}

