//! A ResNet backbone under PyTorch's names: `ssl export --format torch` writes one, and a
//! backbone file with PyTorch's names (that export, or a state dict a PyTorch user saved with
//! `safetensors.torch.save_file`) loads into the project's model.
//!
//! The file holds the state dict of the PyTorch module `scripts/torch_models.py` defines (for
//! the standard ResNets, torchvision's with the stem as written there, `fc` replaced by
//! `nn.Identity()`): convolution weights [out, in, k, k] f32, BatchNorm `weight`, `bias`,
//! `running_mean`, `running_var` f32 [C] and `num_batches_tracked` i64 [] (the run's optimiser
//! steps: PyTorch counts training-mode forwards, more than one a step for methods that forward
//! views apart; it matters only to a BatchNorm with `momentum=None`), so
//! `load_state_dict(strict=True)` takes it. Its metadata names the model, the PyTorch
//! definition, the method, the run and the backbone file's digest. Names follow
//! [`crate::models::torch_names`].

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use dfdx::nn::tensor_collection::{RecursiveWalker, ScalarOptions, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName};
use dfdx::prelude::*;
use ::safetensors::tensor::{Dtype as SDtype, SafeTensors, TensorView};

use crate::error::{Context, Error, Result};
use crate::models::torch_names::{torch_definition, torch_key, TorchKey, TORCH_MODELS};

/// PyTorch's `BatchNorm2d` defaults, which the exported module has and the project's
/// BatchNorm must therefore have too.
const BN_DEFAULTS: [(&str, f64); 2] = [("epsilon", 1e-5), ("momentum", 0.1)];

/// What the exported file says of itself (its safetensors metadata).
#[derive(Clone, Debug)]
pub struct ExportInfo {
    /// The registry's model name.
    pub model: String,
    /// The method that trained it (e.g. "SimCLR").
    pub method: String,
    /// The run folder it came from.
    pub run: String,
    /// The digest of the backbone file (`fsutil::file_digest`), as `ssl embed` records it.
    pub backbone: String,
    /// Optimiser steps of the run: every BatchNorm's `num_batches_tracked`.
    pub steps: u64,
}

/// What [`export`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    /// Tensors in the file (`num_batches_tracked` included).
    pub tensors: usize,
    /// Parameters (convolution and BatchNorm weights and biases; running statistics not).
    pub parameters: usize,
    /// The PyTorch definition that loads it, in `scripts/torch_models.py`.
    pub definition: &'static str,
}

/// The backbone file `from` (as `ssl pretrain` saves it) of model `info.model` under PyTorch's
/// names: the bytes of the safetensors file to write.
///
/// # Errors
/// A model with no PyTorch mapping yet (one line naming the mapped ones); a file that is not
/// a backbone of that model (a tensor without a PyTorch name); a BatchNorm whose epsilon or
/// momentum differs from PyTorch's default; I/O.
pub fn to_torch(from: &Path, info: &ExportInfo) -> Result<(Vec<u8>, Exported)> {
    let definition = torch_definition(&info.model).ok_or_else(|| {
        let mapped: Vec<&str> = TORCH_MODELS.iter().map(|(m, _)| *m).collect();
        Error::invalid("--format torch", format!("model {} has no PyTorch mapping yet (mapped: {})", info.model, mapped.join(", ")))
    })?;
    let buf = std::fs::read(from).at(from)?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| Error::bad_input(from, format!("not a safetensors file: {e:?}")))?;
    let mut tensors: Vec<(String, SDtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut batch_norms = BTreeSet::new();
    let mut parameters = 0;
    for (key, view) in st.tensors() {
        let not_this = || Error::bad_input(from, format!("tensor {key} has no PyTorch name: not a {} backbone", info.model));
        match torch_key(&key).ok_or_else(not_this)? {
            TorchKey::Tensor(name) => {
                if view.dtype() != SDtype::F32 {
                    return Err(Error::bad_input(from, format!("tensor {key} is {:?}, not F32", view.dtype())));
                }
                if let Some(module) = name.strip_suffix(".running_mean") {
                    batch_norms.insert(module.to_string());
                } else if !name.ends_with(".running_var") {
                    parameters += view.shape().iter().product::<usize>();
                }
                tensors.push((name, SDtype::F32, view.shape().to_vec(), view.data().to_vec()));
            }
            TorchKey::Hyper { module, name } => {
                let value = scalar(view.data()).ok_or_else(not_this)?;
                let (_, expected) = BN_DEFAULTS.iter().find(|(n, _)| *n == name).ok_or_else(not_this)?;
                if (value - expected).abs() > 1e-12 {
                    return Err(Error::bad_input(from, format!("BatchNorm {module} has {name} {value}; PyTorch's BatchNorm2d has {expected}, so the export would compute other features")));
                }
            }
        }
    }
    for module in &batch_norms {
        tensors.push((format!("{module}.num_batches_tracked"), SDtype::I64, vec![], (info.steps as i64).to_le_bytes().to_vec()));
    }
    let names: BTreeSet<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    if names.len() != tensors.len() {
        return Err(Error::bad_input(from, format!("two tensors map to one PyTorch name: not a {} backbone", info.model)));
    }
    let metadata: HashMap<String, String> = [
        ("format", "pt".to_string()),
        ("model", info.model.clone()),
        ("pytorch_module", format!("scripts/torch_models.py: {definition}")),
        ("method", info.method.clone()),
        ("run", info.run.clone()),
        ("backbone", info.backbone.clone()),
        ("steps", info.steps.to_string()),
        ("ssl", env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (name, dtype, shape, data) in &tensors {
        views.push((name.clone(), TensorView::new(*dtype, shape.clone(), data).map_err(|e| Error::bad_input(from, format!("{name}: {e:?}")))?));
    }
    let bytes = ::safetensors::tensor::serialize(views, &Some(metadata)).map_err(|e| Error::bad_input(from, format!("cannot serialise: {e:?}")))?;
    Ok((bytes, Exported { tensors: tensors.len(), parameters, definition }))
}

/// A little-endian f64 (dfdx stores its scalars so).
fn scalar(bytes: &[u8]) -> Option<f64> {
    Some(f64::from_le_bytes(bytes.try_into().ok()?))
}

/// Whether the file holds PyTorch's names (it has a stem `conv1.weight`) rather than dfdx's.
pub fn has_torch_names(st: &SafeTensors) -> bool {
    st.names().iter().any(|n| n.as_str() == "conv1.weight")
}

/// Reads a file with PyTorch's names into `m`: every tensor of the model is looked up under
/// its PyTorch name and must have its shape and be F32; BatchNorm hyper-parameters take the
/// defaults. Of the file's other tensors only `num_batches_tracked` and a classifier (`fc.*`)
/// may be left unread: any other is another model's (a deeper or wider ResNet), refused.
pub fn load<D: Device<f32>, M: TensorCollection<f32, D>>(m: &mut M, st: &SafeTensors, path: &Path) -> Result<()> {
    let mut reader = Reader { st, path, read: BTreeSet::new() };
    M::iter_tensors(&mut RecursiveWalker { m: (m, String::new()), f: &mut reader })?;
    let mut extra: Vec<&String> = st.names().into_iter().filter(|n| !reader.read.contains(n.as_str()) && !n.starts_with("fc.") && !n.ends_with(".num_batches_tracked")).collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(Error::bad_input(path, format!("does not fit this model: {} tensors it does not have ({first}, ...), another model's", extra.len())));
    }
    Ok(())
}

struct Reader<'a, 'b> {
    st: &'a SafeTensors<'b>,
    path: &'a Path,
    /// The PyTorch names read.
    read: BTreeSet<String>,
}

impl<D: Device<f32>> TensorVisitor<f32, D> for Reader<'_, '_> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = Error;
    type E2 = f32;
    type D2 = D;

    fn visit<S: Shape>(&mut self, _: TensorOptions<S, f32, D>, (t, key): (&mut Tensor<S, f32, D>, String)) -> Result<Option<Tensor<S, f32, D>>> {
        let Some(TorchKey::Tensor(name)) = torch_key(&key) else {
            return Err(Error::bad_input(self.path, format!("this model's tensor {key} has no PyTorch name: give a backbone file saved by ssl")));
        };
        let view = self.st.tensor(&name).map_err(|_| Error::bad_input(self.path, format!("no tensor {name}: does not fit this model")))?;
        let shape: Vec<usize> = t.shape().concrete().into();
        if view.shape() != &shape[..] || view.dtype() != SDtype::F32 {
            return Err(Error::bad_input(self.path, format!("tensor {name} is {:?} {:?}; this model needs F32 {shape:?}", view.dtype(), view.shape())));
        }
        let data: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        t.copy_from(&data);
        self.read.insert(name);
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(&mut self, opts: ScalarOptions<N>, (n, _): (&mut N, String)) -> Result<Option<N>> {
        *n = opts.default;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::resnet::SmallFmnistE512;

    fn info(model: &str) -> ExportInfo {
        ExportInfo { model: model.into(), method: "SimCLR".into(), run: "runs/x".into(), backbone: "digest".into(), steps: 7 }
    }

    /// [`to_torch`] written to `out`.
    fn export(from: &Path, info: &ExportInfo, out: &Path) -> Result<Exported> {
        let (bytes, e) = to_torch(from, info)?;
        std::fs::write(out, bytes).unwrap();
        Ok(e)
    }

    /// A small_fmnist_e512 with trained-looking weights and running statistics.
    fn backbone(dev: &Cpu, seed: u64) -> <SmallFmnistE512 as BuildOnDevice<Cpu, f32>>::Built {
        let mut m = dev.build_module::<SmallFmnistE512, f32>();
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 40) as f32 / (1u64 << 24) as f32 + 0.25
        };
        struct Fill<'a>(&'a mut dyn FnMut() -> f32);
        impl TensorVisitor<f32, Cpu> for Fill<'_> {
            type Viewer = ViewTensorMut;
            type Err = Error;
            type E2 = f32;
            type D2 = Cpu;
            fn visit<S: Shape>(&mut self, _: TensorOptions<S, f32, Cpu>, t: &mut Tensor<S, f32, Cpu>) -> Result<Option<Tensor<S, f32, Cpu>>> {
                let v: Vec<f32> = (0..t.shape().num_elements()).map(|_| (self.0)()).collect();
                t.copy_from(&v);
                Ok(None)
            }
        }
        <_ as TensorCollection<f32, Cpu>>::iter_tensors(&mut RecursiveWalker { m: &mut m, f: &mut Fill(&mut next) }).unwrap();
        m
    }

    fn read(path: &Path) -> (HashMap<String, (SDtype, Vec<usize>, Vec<u8>)>, HashMap<String, String>) {
        let buf = std::fs::read(path).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&buf).unwrap();
        let st = SafeTensors::deserialize(&buf).unwrap();
        let t = st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
        (t, meta.metadata().clone().unwrap_or_default())
    }

    #[test]
    fn export_names_layouts_and_round_trip() {
        let dev: Cpu = Default::default();
        let d = tempfile::tempdir().unwrap();
        let (ours, torch) = (d.path().join("backbone.safetensors"), d.path().join("torch.safetensors"));
        let m = backbone(&dev, 1);
        crate::weights::save_module(&m, &ours).unwrap();
        let e = export(&ours, &info("small_fmnist_e512"), &torch).unwrap();
        // 14 convolutions (stem 1, stages 2 + 5 + 5 with two shortcuts, expansion 1) and 14
        // BatchNorms x 5 tensors (with num_batches_tracked).
        assert_eq!(e.tensors, 14 + 14 * 5);
        assert_eq!(e.parameters, m.num_trainable_params());
        let (tensors, meta) = read(&torch);
        assert_eq!(meta["model"], "small_fmnist_e512");
        assert_eq!(meta["steps"], "7");
        assert_eq!(tensors["conv1.weight"].1, vec![32, 1, 3, 3]);
        assert_eq!(tensors["layer2.0.downsample.0.weight"].1, vec![64, 32, 1, 1]);
        assert_eq!(tensors["expand.1.running_var"].1, vec![512]);
        assert_eq!(tensors["layer3.1.bn2.num_batches_tracked"], (SDtype::I64, vec![], 7i64.to_le_bytes().to_vec()));
        // The same bytes under the new name.
        let (dfdx_tensors, _) = read(&ours);
        assert_eq!(tensors["layer1.0.conv2.weight"].2, dfdx_tensors["1.0.2.weight"].2);
        assert_eq!(tensors["layer3.0.bn1.weight"].2, dfdx_tensors["3.0.f.1.scale"].2);
        // Read back into another initialisation: every tensor as it was.
        let mut back = backbone(&dev, 2);
        crate::weights::load_module(&mut back, &torch).unwrap();
        crate::weights::save_module(&back, &d.path().join("back.safetensors")).unwrap();
        assert_eq!(read(&d.path().join("back.safetensors")).0, dfdx_tensors);
    }

    #[test]
    fn refusals_name_the_cause() {
        let dev: Cpu = Default::default();
        let d = tempfile::tempdir().unwrap();
        let ours = d.path().join("backbone.safetensors");
        crate::weights::save_module(&backbone(&dev, 1), &ours).unwrap();
        let out = d.path().join("out.safetensors");
        let e = export(&ours, &info("vgg11_cifar"), &out).unwrap_err().to_string();
        assert!(e.contains("vgg11_cifar has no PyTorch mapping") && e.contains("small_fmnist"), "{e}");
        let mlp = d.path().join("mlp.safetensors");
        crate::weights::save_module(&dev.build_module::<dfdx::nn::builders::Linear<3, 2>, f32>(), &mlp).unwrap();
        let e = export(&mlp, &info("small_fmnist"), &out).unwrap_err().to_string();
        assert!(e.contains("has no PyTorch name"), "{e}");
        // A PyTorch file of another model does not load: other shapes, or tensors left over
        // (small_fmnist_e512's expansion, which small_fmnist does not have).
        export(&ours, &info("small_fmnist_e512"), &out).unwrap();
        let mut other = dev.build_module::<crate::models::resnet::ResNet18Cifar, f32>();
        let e = crate::weights::load_module(&mut other, &out).unwrap_err().to_string();
        assert!(e.contains("conv1.weight") && e.contains("[64, 3, 3, 3]"), "{e}");
        let mut smaller = dev.build_module::<crate::models::resnet::SmallFmnist, f32>();
        let e = crate::weights::load_module(&mut smaller, &out).unwrap_err().to_string();
        assert!(e.contains("5 tensors it does not have (expand.0.weight, ...)"), "{e}");
    }
}
