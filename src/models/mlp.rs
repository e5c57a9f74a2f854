//! Heads of run-time width: the multi-layer perceptrons SSL methods put on a backbone
//! (SimCLR's projector, BYOL's projector and predictor, ...) and the fine-tuning classifier (one
//! linear layer). Widths come from the recipe, so
//! any width works without a compiled type per width; backbones keep their compile-time shapes.
//!
//! A head is a sequence of linear layers (with bias), each but the last followed by ReLU, with
//! optional BatchNorm (Ioffe and Szegedy 2015; momentum 0.1, epsilon 1e-5 as PyTorch) after the
//! hidden linear layers or after all of them. The arithmetic is dfdx's own `Linear`,
//! `BatchNorm1D` and `ReLU` on run-time shapes, so a head here gives the same numbers as the
//! compiled tuple it replaces, and reads the files that tuple wrote (the same tensor names).

use std::path::Path;

use dfdx::optim::UnusedTensors;
use dfdx::prelude::*;
use rand_distr::Uniform;

use crate::error::{Error, Result};
use crate::optim::Update;

/// Where a head has BatchNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Norm {
    /// None (SimCLR v1, MoCo v2).
    None,
    /// After each hidden linear layer, before its ReLU (BYOL, SimSiam's predictor, Barlow Twins,
    /// VICReg).
    Hidden,
    /// After every linear layer, the last included (SimCLR v2, SimSiam's projector).
    All,
}

/// The shape of a head: `input -> hidden (x layers - 1) -> out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlpSpec {
    pub input: usize,
    pub hidden: usize,
    pub out: usize,
    /// Linear layers, at least 1.
    pub layers: usize,
    pub norm: Norm,
}

impl MlpSpec {
    /// Refuses widths of 0 and heads without a layer, naming `field`.
    pub fn check(&self, field: &str) -> Result<()> {
        if self.layers == 0 {
            return Err(Error::invalid(format!("{field}.layers"), "must be at least 1"));
        }
        if self.layers > 1 && self.hidden == 0 {
            return Err(Error::invalid(format!("{field}.hidden"), "must be at least 1"));
        }
        if self.out == 0 {
            return Err(Error::invalid(format!("{field}.out"), "must be at least 1"));
        }
        Ok(())
    }

    /// Trainable parameters: weights and biases, plus BatchNorm's scale and shift.
    pub fn params(&self) -> usize {
        let mut total = 0;
        let mut width = self.input;
        for l in 0..self.layers {
            let out = if l + 1 == self.layers { self.out } else { self.hidden };
            total += width * out + out;
            if self.norm == Norm::All || (self.norm == Norm::Hidden && l + 1 < self.layers) {
                total += 2 * out;
            }
            width = out;
        }
        total
    }
}

const EPSILON: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// A batch of N rows of run-time width.
pub type Rows<D> = Tensor<(usize, usize), f32, D>;
/// The same, recording a tape.
pub type TapedRows<D> = Tensor<(usize, usize), f32, D, OwnedTape<f32, D>>;
type Vector<D> = Tensor<(usize,), f32, D>;

#[derive(Clone, Debug)]
enum Layer<D: Storage<f32>> {
    Linear { weight: Tensor<(usize, usize), f32, D>, bias: Vector<D> },
    BatchNorm { scale: Vector<D>, bias: Vector<D>, running_mean: Vector<D>, running_var: Vector<D> },
    Relu,
    /// GELU, erf form (PyTorch's `nn.GELU()`).
    Gelu,
    /// Each row divided by its L2 norm (clamped at 1e-12).
    L2Normalize,
    /// A linear layer without bias whose weight rows are L2-normalised in the forward pass:
    /// weight normalisation with the gain fixed at 1 (DINO's last layer, `norm_last_layer`).
    NormedLinear { weight: Tensor<(usize, usize), f32, D> },
}

/// The one walk over a head's tensors behind [`Mlp::tensors`] and [`Mlp::tensors_mut`]:
/// `$layers` borrowed shared or mutably, each tensor wrapped in `$P` (`Param` or `ParamMut`).
macro_rules! named_tensors {
    ($layers:expr, $P:ident) => {{
        let mut out = Vec::new();
        for (name, layer) in $layers {
            let mut add = |field: &str, p, trained| out.push((if name.is_empty() { field.to_string() } else { format!("{name}.{field}") }, p, trained));
            match layer {
                Layer::Linear { weight, bias } => {
                    add("weight", $P::Matrix(weight), true);
                    add("bias", $P::Vector(bias), true);
                }
                Layer::BatchNorm { scale, bias, running_mean, running_var } => {
                    add("scale", $P::Vector(scale), true);
                    add("bias", $P::Vector(bias), true);
                    add("running_mean", $P::Vector(running_mean), false);
                    add("running_var", $P::Vector(running_var), false);
                }
                Layer::NormedLinear { weight } => add("weight", $P::Matrix(weight), true),
                Layer::Relu | Layer::Gelu | Layer::L2Normalize => {}
            }
        }
        out
    }};
}

/// A head of run-time width (see the module docs).
#[derive(Clone, Debug)]
pub struct Mlp<D: Storage<f32>> {
    spec: MlpSpec,
    /// Each layer with the name its tensors carry in a file.
    layers: Vec<(String, Layer<D>)>,
}

impl<D: Device<f32> + crate::dist::ops::HostGrad> Mlp<D> {
    /// A head of shape `spec` on `dev`, its linear layers drawn uniformly in ±1/sqrt(fan-in)
    /// (PyTorch's and dfdx's rule) from the device's generator, in layer order.
    pub fn new(dev: &D, spec: MlpSpec) -> Result<Self, D::Err> {
        // File names follow dfdx's tuples: blocks `i.0` (linear) and `i.1` (BatchNorm) when
        // every linear layer has BatchNorm, otherwise one index per layer, ReLUs counted.
        let blocks = spec.norm == Norm::All;
        let mut layers = Vec::new();
        let mut width = spec.input;
        for l in 0..spec.layers {
            let last = l + 1 == spec.layers;
            let out = if last { spec.out } else { spec.hidden };
            let bound = 1.0 / (width as f32).sqrt();
            let mut weight = dev.try_zeros_like(&(out, width))?;
            weight.try_fill_with_distr(Uniform::new(-bound, bound))?;
            let mut bias = dev.try_zeros_like(&(out,))?;
            bias.try_fill_with_distr(Uniform::new(-bound, bound))?;
            let name = |pos: usize, flat: usize| if blocks { format!("{l}.{pos}") } else { flat.to_string() };
            layers.push((name(0, layers.len()), Layer::Linear { weight, bias }));
            if spec.norm == Norm::All || (spec.norm == Norm::Hidden && !last) {
                let bn = Layer::BatchNorm {
                    scale: dev.try_ones_like(&(out,))?,
                    bias: dev.try_zeros_like(&(out,))?,
                    running_mean: dev.try_zeros_like(&(out,))?,
                    running_var: dev.try_ones_like(&(out,))?,
                };
                layers.push((name(1, layers.len()), bn));
            }
            if !last {
                layers.push((name(2, layers.len()), Layer::Relu));
            }
            width = out;
        }
        if layers.len() == 1 {
            // A lone linear layer is not a tuple: dfdx names its tensors `weight` and `bias`.
            layers[0].0.clear();
        }
        Ok(Mlp { spec, layers })
    }

    /// DINO's head (Caron et al. 2021, section 3.1 and the authors' `DINOHead`): `layers`
    /// linear layers input -> hidden -> ... -> bottleneck with GELU between them, no
    /// BatchNorm; the bottleneck L2-normalised; then a weight-normalised linear layer without
    /// bias to `prototypes` outputs, its gain fixed at 1. Linear layers drawn as in
    /// [`Mlp::new`], in order, the prototypes last. Its [`Mlp::spec`] says `input`, `hidden`
    /// and `out` = `prototypes` (`layers` counts the MLP's linear layers).
    pub fn dino_head(dev: &D, input: usize, hidden: usize, bottleneck: usize, prototypes: usize, layers: usize) -> Result<Self, D::Err> {
        let mut m = Mlp::new(dev, MlpSpec { input, hidden, out: bottleneck, layers, norm: Norm::None })?;
        for (_, layer) in &mut m.layers {
            if matches!(layer, Layer::Relu) {
                *layer = Layer::Gelu;
            }
        }
        let bound = 1.0 / (bottleneck as f32).sqrt();
        let mut weight = dev.try_zeros_like(&(prototypes, bottleneck))?;
        weight.try_fill_with_distr(Uniform::new(-bound, bound))?;
        let n = m.layers.len();
        if n == 1 {
            m.layers[0].0 = "0".into();
        }
        m.layers.push((n.to_string(), Layer::L2Normalize));
        m.layers.push(((n + 1).to_string(), Layer::NormedLinear { weight }));
        m.spec = MlpSpec { input, hidden, out: prototypes, layers, norm: Norm::None };
        Ok(m)
    }

    pub fn spec(&self) -> MlpSpec {
        self.spec
    }

    #[cfg(test)]
    fn first_weight(&self) -> &Tensor<(usize, usize), f32, D> {
        match &self.layers[0].1 {
            Layer::Linear { weight, .. } => weight,
            _ => unreachable!("a head starts with a linear layer"),
        }
    }

    /// Training forward: [N, input] -> [N, out]; BatchNorm normalises with the batch's
    /// statistics and updates its running ones.
    pub fn try_forward_mut(&mut self, x: TapedRows<D>) -> Result<TapedRows<D>, D::Err> {
        let mut x = x;
        for (_, layer) in &mut self.layers {
            x = match layer {
                Layer::Linear { weight, bias } => linear(x, weight, bias)?,
                Layer::Relu => x.try_relu()?,
                Layer::Gelu => x.try_accurate_gelu()?,
                Layer::L2Normalize => l2_normalize(x)?,
                Layer::NormedLinear { weight } => normed_linear(x, weight)?,
                Layer::BatchNorm { scale, bias, running_mean, running_var } => {
                    // dfdx's `batchnorm2d::train_fwd`, on a run-time width; synchronised batch
                    // norm sums the statistics over ranks (and so their gradients).
                    let shape = *x.shape();
                    let sync = crate::dist::sync_batchnorm();
                    let n = sync.as_ref().map_or(shape.0, |g| g.counts(shape.0).iter().sum()) as f64;
                    let mean_of = |t: TapedRows<D>| -> Result<Tensor<(usize,), f32, D, OwnedTape<f32, D>>, D::Err> {
                        match &sync {
                            None => t.try_mean::<(usize,), Axis<0>>(),
                            Some(g) => crate::dist::ops::all_reduce(g, t.try_sum::<(usize,), Axis<0>>()?)?.try_div(n as f32),
                        }
                    };
                    let mean = mean_of(x.retaped::<OwnedTape<f32, D>>())?;
                    running_mean.try_axpy(1.0 - MOMENTUM, &mean, MOMENTUM)?;
                    let centered = x.try_sub(mean.try_broadcast_like::<_, Axis<0>>(&shape)?)?;
                    let var = mean_of(centered.retaped::<OwnedTape<f32, D>>().try_square()?)?;
                    // The running variance is the unbiased estimate, as PyTorch.
                    running_var.try_axpy(1.0 - MOMENTUM, &var, MOMENTUM * n / (n - 1.0))?;
                    let std = var.try_add(EPSILON as f32)?.try_sqrt()?;
                    let scale = scale.retaped::<OwnedTape<f32, D>>().try_div(std)?.try_broadcast_like::<_, Axis<0>>(&shape)?;
                    let bias = bias.retaped::<OwnedTape<f32, D>>().try_broadcast_like::<_, Axis<0>>(&shape)?;
                    centered.try_mul(scale)?.try_add(bias)?
                }
            };
        }
        Ok(x)
    }

    /// Evaluation forward: BatchNorm on its running statistics, nothing updated.
    pub fn try_forward(&self, x: Rows<D>) -> Result<Rows<D>, D::Err> {
        let mut x = x;
        for (_, layer) in &self.layers {
            x = match layer {
                Layer::Linear { weight, bias } => linear(x, weight, bias)?,
                Layer::Relu => x.try_relu()?,
                Layer::Gelu => x.try_accurate_gelu()?,
                Layer::L2Normalize => l2_normalize(x)?,
                Layer::NormedLinear { weight } => normed_linear(x, weight)?,
                Layer::BatchNorm { scale, bias, running_mean, running_var } => {
                    let shape = *x.shape();
                    let std = running_var.clone().try_add(EPSILON as f32)?.try_sqrt()?;
                    let scale = scale.clone().try_div(std)?.try_broadcast_like::<_, Axis<0>>(&shape)?;
                    let x = x.try_sub(running_mean.clone().try_broadcast_like::<_, Axis<0>>(&shape)?)?;
                    x.try_mul(scale)?.try_add(bias.clone().try_broadcast_like::<_, Axis<0>>(&shape)?)?
                }
            };
        }
        Ok(x)
    }

    /// Every tensor with its name in a file and whether it is trained (BatchNorm's running
    /// statistics are not), in dfdx's visiting order: weight then bias; BatchNorm's scale,
    /// shift, running mean, running variance.
    fn tensors(&self) -> Vec<(String, Param<'_, D>, bool)> {
        named_tensors!(&self.layers, Param)
    }

    /// [`Mlp::tensors`], mutable.
    fn tensors_mut(&mut self) -> Vec<(String, ParamMut<'_, D>, bool)> {
        named_tensors!(&mut self.layers, ParamMut)
    }

    /// Passes every trainable tensor to the optimiser update `u`, in a fixed order.
    pub fn update(&mut self, u: &mut Update, grads: &Gradients<f32, D>) {
        for (_, p, trained) in self.tensors_mut() {
            match (p, trained) {
                (ParamMut::Matrix(t), true) => u.tensor(t, grads),
                (ParamMut::Vector(t), true) => u.tensor(t, grads),
                _ => {}
            }
        }
    }

    /// Zeroes this head's gradients in `grads` (allocating them the first time), as dfdx's
    /// `zero_grads` does for a module.
    pub fn try_zero_grads(&self, grads: &mut Gradients<f32, D>) -> Result<(), D::Err> {
        // Also marks them as leaves, so `backward` keeps their gradients (what dfdx's
        // `zero_grads` does for a module; `UnusedTensors` is its public way to a tensor's id).
        let mut leaves = UnusedTensors::default();
        for (_, p, trained) in self.tensors() {
            match (p, trained) {
                (Param::Matrix(t), true) => {
                    t.device().try_fill_with_zeros(grads.get_or_alloc_mut(t)?)?;
                    leaves.add(t);
                }
                (Param::Vector(t), true) => {
                    t.device().try_fill_with_zeros(grads.get_or_alloc_mut(t)?)?;
                    leaves.add(t);
                }
                _ => {}
            }
        }
        grads.retain_leafs(&leaves.ids);
        Ok(())
    }

    /// Moves each trainable tensor towards `online`'s: `self = decay self + (1 - decay) online`
    /// (BYOL's target update, eq. 1 of Grill et al. 2020); running statistics are left to the
    /// head's own forward passes, as dfdx's `ModelEMA` and solo-learn do.
    pub fn try_ema(&mut self, online: &Self, decay: f64) -> Result<(), D::Err> {
        for ((_, p, trained), (_, q, _)) in self.tensors_mut().into_iter().zip(online.tensors()) {
            match (p, q, trained) {
                (ParamMut::Matrix(t), Param::Matrix(o), true) => t.try_axpy(decay, o, 1.0 - decay)?,
                (ParamMut::Vector(t), Param::Vector(o), true) => t.try_axpy(decay, o, 1.0 - decay)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        self.tensors().iter().filter(|(_, _, trained)| *trained).map(|(_, p, _)| p.len()).sum()
    }

    /// Writes every tensor (running statistics included) to a safetensors file, through a
    /// temporary file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let held: Vec<(String, Vec<usize>, Vec<f32>)> = self.tensors().into_iter().map(|(name, p, _)| (name, p.dims(), p.host())).collect();
        let views: Vec<(String, Vec<usize>, &[f32])> = held.iter().map(|(n, s, d)| (n.clone(), s.clone(), d.as_slice())).collect();
        crate::tensors_file::save(path, &views)
    }

    /// Reads what [`Mlp::save`] wrote (or dfdx wrote for the same head as a compiled tuple); a
    /// file of another shape is refused, naming the tensor.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(Error::bad_input(path, "no such file"));
        }
        let stored = crate::tensors_file::load_floats(path)?;
        for (name, p, _) in self.tensors_mut() {
            let Some((_, dims, data)) = stored.iter().find(|(n, _, _)| *n == name) else {
                return Err(Error::bad_input(path, format!("does not fit this head: no tensor {name}")));
            };
            let want = p.view().dims();
            if *dims != want {
                return Err(Error::bad_input(path, format!("does not fit this head: {name} is {dims:?}, this head's is {want:?}")));
            }
            match p {
                ParamMut::Matrix(t) => t.copy_from(data),
                ParamMut::Vector(t) => t.copy_from(data),
            }
        }
        Ok(())
    }
}

enum Param<'a, D: Storage<f32>> {
    Matrix(&'a Tensor<(usize, usize), f32, D>),
    Vector(&'a Vector<D>),
}

impl<D: Device<f32>> Param<'_, D> {
    fn dims(&self) -> Vec<usize> {
        match self {
            Param::Matrix(t) => vec![t.shape().0, t.shape().1],
            Param::Vector(t) => vec![t.shape().0],
        }
    }

    fn len(&self) -> usize {
        self.dims().iter().product()
    }

    fn host(&self) -> Vec<f32> {
        match self {
            Param::Matrix(t) => t.as_vec(),
            Param::Vector(t) => t.as_vec(),
        }
    }
}

enum ParamMut<'a, D: Storage<f32>> {
    Matrix(&'a mut Tensor<(usize, usize), f32, D>),
    Vector(&'a mut Vector<D>),
}

impl<D: Device<f32>> ParamMut<'_, D> {
    /// The same tensor, shared.
    fn view(&self) -> Param<'_, D> {
        match self {
            ParamMut::Matrix(t) => Param::Matrix(t),
            ParamMut::Vector(t) => Param::Vector(t),
        }
    }
}

/// Each row of `x` over its L2 norm, clamped at 1e-12 (PyTorch's F.normalize).
fn l2_normalize<D: Device<f32>, T: Tape<f32, D>>(x: Tensor<(usize, usize), f32, D, T>) -> Result<Tensor<(usize, usize), f32, D, T>, D::Err> {
    let shape = *x.shape();
    let norm = x.retaped::<T>().try_square()?.try_sum::<(usize,), Axis<1>>()?.try_sqrt()?.try_clamp(1e-12, f32::MAX)?;
    x.try_div(norm.try_broadcast_like::<_, Axis<1>>(&shape)?)
}

/// x V^T with each row of V over its L2 norm (weight normalisation, gain 1), no bias.
fn normed_linear<D: Device<f32>, T: Tape<f32, D>>(x: Tensor<(usize, usize), f32, D, T>, weight: &Tensor<(usize, usize), f32, D>) -> Result<Tensor<(usize, usize), f32, D, T>, D::Err> {
    let w = l2_normalize(weight.retaped::<T>())?;
    x.try_matmul(w.try_permute::<_, Axes2<1, 0>>()?)
}

/// dfdx's `Linear::forward` on run-time widths: x W^T + b.
fn linear<D: Device<f32>, T: Tape<f32, D>>(x: Tensor<(usize, usize), f32, D, T>, weight: &Tensor<(usize, usize), f32, D>, bias: &Vector<D>) -> Result<Tensor<(usize, usize), f32, D, T>, D::Err> {
    let o = x.try_matmul(weight.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?)?;
    let shape = *o.shape();
    o.try_add(bias.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::nn::builders::{BatchNorm1D, Linear, ReLU};

    /// The compiled heads these run-time ones replaced: SimCLR v1's (Linear, ReLU, Linear) and
    /// v2's three layers with BatchNorm.
    type ProjectionMlp<const F: usize, const H: usize, const Z: usize> = (Linear<F, H>, ReLU, Linear<H, Z>);
    type ProjectionMlpV2<const F: usize, const H: usize, const Z: usize> =
        ((Linear<F, H>, BatchNorm1D<H>, ReLU), (Linear<H, H>, BatchNorm1D<H>, ReLU), (Linear<H, Z>, BatchNorm1D<Z>));

    fn input(dev: &Cpu, n: usize, w: usize) -> Tensor<(usize, usize), f32, Cpu> {
        let v: Vec<f32> = crate::nn::gradcheck::values(n * w, 9).iter().map(|&x| x as f32).collect();
        dev.tensor_from_vec(v, (n, w))
    }

    /// The run-time head gives dfdx's compiled head's numbers bit for bit: the same draws,
    /// outputs, gradients (input and every parameter), running statistics, and file.
    #[test]
    fn matches_the_compiled_heads_it_replaces() {
        let (a_dev, b_dev) = (Cpu::seed_from_u64(5), Cpu::seed_from_u64(5));
        let mut a = a_dev.build_module::<ProjectionMlpV2<16, 24, 8>, f32>();
        let mut b = Mlp::new(&b_dev, MlpSpec { input: 16, hidden: 24, out: 8, layers: 3, norm: Norm::All }).unwrap();
        let x = input(&a_dev, 6, 16);
        let xa: Tensor<(usize, Const<16>), f32, Cpu> = x.clone().reshape_like(&(6, Const));
        let ya = a.forward_mut(xa.leaky_trace());
        let yb = b.try_forward_mut(x.leaky_trace()).unwrap();
        assert_eq!(ya.as_vec(), yb.as_vec(), "training forward");
        let ga = (ya * 1.5).sum().backward();
        let gb = (yb * 1.5).sum().backward();
        assert_eq!(ga.get(&xa).as_vec(), gb.get(&x).as_vec(), "input gradient");
        assert_eq!(ga.get(&a.0 .0.weight).as_vec(), gb.get(b.first_weight()).as_vec(), "first weight's gradient");
        assert_eq!(a.2 .1.running_var.as_vec(), b.tensors().iter().find(|t| t.0 == "2.1.running_var").map(|t| t.1.host()).unwrap());
        // dfdx's file loads into the run-time head, and the evaluation forward agrees.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.safetensors");
        a.save_safetensors(&p).unwrap();
        let mut c = Mlp::new(&b_dev, b.spec()).unwrap();
        c.load(&p).unwrap();
        assert_eq!(a.forward(xa.clone()).as_vec(), c.try_forward(x.clone()).unwrap().as_vec(), "evaluation forward");
        // SimCLR v1's head: flat names 0 and 2.
        let a_dev = Cpu::seed_from_u64(6);
        let v1 = a_dev.build_module::<ProjectionMlp<16, 24, 8>, f32>();
        let p1 = d.path().join("v1.safetensors");
        v1.save_safetensors(&p1).unwrap();
        let mut w = Mlp::new(&Cpu::seed_from_u64(6), MlpSpec { input: 16, hidden: 24, out: 8, layers: 2, norm: Norm::None }).unwrap();
        assert_eq!(v1.forward(xa.clone()).as_vec(), w.try_forward(x.clone()).unwrap().as_vec(), "same draws");
        w.load(&p1).unwrap();
        // Another shape is refused, naming the tensor.
        let mut wide = Mlp::new(&b_dev, MlpSpec { hidden: 300, ..w.spec() }).unwrap();
        let e = wide.load(&p1).unwrap_err().to_string();
        assert!(e.contains("0.weight") && e.contains("300"), "{e}");
        // One linear layer (the fine-tuning classifier): dfdx's `Linear`, names without a prefix.
        let lin = Cpu::seed_from_u64(7).build_module::<Linear<16, 3>, f32>();
        let pl = d.path().join("linear.safetensors");
        lin.save_safetensors(&pl).unwrap();
        let mut one = Mlp::new(&Cpu::seed_from_u64(7), MlpSpec { input: 16, hidden: 3, out: 3, layers: 1, norm: Norm::None }).unwrap();
        assert_eq!(lin.forward(xa.clone()).as_vec(), one.try_forward(x.clone()).unwrap().as_vec(), "same draws");
        assert_eq!(one.tensors().iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["weight", "bias"]);
        one.load(&pl).unwrap();
    }

    /// DINO's head against a direct evaluation: GELU (erf) between linear layers, the
    /// bottleneck on the unit sphere, prototypes of unit norm, so every output is a cosine.
    /// Saved and reloaded, it gives the same outputs; its tensors are the linear layers' and
    /// the prototypes' (no bias).
    #[test]
    fn dino_head_matches_a_direct_evaluation() {
        let dev = Cpu::seed_from_u64(3);
        let mut m = Mlp::dino_head(&dev, 6, 10, 4, 9, 2).unwrap();
        let names: Vec<String> = m.tensors().into_iter().map(|t| t.0).collect();
        assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight"]);
        assert_eq!(m.num_params(), 6 * 10 + 10 + 10 * 4 + 4 + 4 * 9);
        let host: Vec<Vec<f64>> = m.tensors().into_iter().map(|t| t.1.host().iter().map(|&v| v as f64).collect()).collect();
        let x = input(&dev, 3, 6);
        let xs: Vec<f64> = x.as_vec().iter().map(|&v| v as f64).collect();
        let gelu = |v: f64| 0.5 * v * (1.0 + erf_series(v / std::f64::consts::SQRT_2));
        let lin = |x: &[f64], w: &[f64], b: Option<&[f64]>, out: usize| -> Vec<f64> {
            let inp = x.len();
            (0..out).map(|o| (0..inp).map(|i| x[i] * w[o * inp + i]).sum::<f64>() + b.map_or(0.0, |b| b[o])).collect()
        };
        let unit = |v: Vec<f64>| {
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.into_iter().map(|a| a / n).collect::<Vec<f64>>()
        };
        let protos: Vec<f64> = host[4].chunks(4).flat_map(|r| unit(r.to_vec())).collect();
        let want: Vec<f64> = xs
            .chunks(6)
            .flat_map(|row| {
                let h: Vec<f64> = lin(row, &host[0], Some(&host[1]), 10).into_iter().map(gelu).collect();
                let z = unit(lin(&h, &host[2], Some(&host[3]), 4));
                lin(&z, &protos, None, 9)
            })
            .collect();
        let got = m.try_forward_mut(x.clone().leaky_trace()).unwrap().as_vec();
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5 && w.abs() <= 1.0 + 1e-9, "{g} vs {w}");
        }
        let d = tempfile::tempdir().unwrap();
        m.save(&d.path().join("h.safetensors")).unwrap();
        let mut n = Mlp::dino_head(&Cpu::seed_from_u64(4), 6, 10, 4, 9, 2).unwrap();
        n.load(&d.path().join("h.safetensors")).unwrap();
        assert_eq!(n.try_forward(x.clone()).unwrap().as_vec(), m.try_forward(x).unwrap().as_vec());
    }

    /// erf by its Taylor series, exact to f64 rounding for |x| <= 3 in 60 terms (the inputs
    /// here stay below 3).
    fn erf_series(x: f64) -> f64 {
        assert!(x.abs() <= 3.0, "{x}");
        let mut sum = x;
        let mut term = x;
        for n in 1..60 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    /// A head of unusual widths with BatchNorm on its hidden layer: central differences in f32
    /// on the input (loose tolerance: f32 arithmetic), and the parameter count.
    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Cpu::seed_from_u64(2);
        let spec = MlpSpec { input: 7, hidden: 13, out: 5, layers: 2, norm: Norm::Hidden };
        let mut m = Mlp::new(&dev, spec).unwrap();
        assert_eq!(m.num_params(), spec.params());
        assert_eq!(spec.params(), 7 * 13 + 13 + 2 * 13 + 13 * 5 + 5);
        let x = input(&dev, 5, 7);
        let loss = |m: &mut Mlp<Cpu>, v: Vec<f32>| {
            let y = m.try_forward_mut(dev.tensor_from_vec(v, (5, 7)).leaky_trace()).unwrap();
            y.square().sum::<Rank0, _>().array() as f64
        };
        let g = m.try_forward_mut(x.leaky_trace()).unwrap().square().sum::<Rank0, _>().backward().get(&x).as_vec();
        let xv = x.as_vec();
        for i in [0, 3, 11, 20, 34] {
            let (mut up, mut down) = (xv.clone(), xv.clone());
            up[i] += 1e-2;
            down[i] -= 1e-2;
            let numeric = (loss(&mut m, up) - loss(&mut m, down)) / 2e-2;
            assert!((numeric - g[i] as f64).abs() <= 2e-2 * numeric.abs().max(1.0), "d/dx[{i}]: {} vs {numeric}", g[i]);
        }
    }

    /// Synchronised batch norm (a 3-layer head, BatchNorm after the hidden layers) on ranks
    /// holding parts of the rows equals the head on all rows in one process: outputs, input
    /// gradients, and parameter gradients summed over ranks.
    #[test]
    fn synchronised_batch_norm_on_ranks_equals_one_process() {
        use crate::dist::{current, shard, threads};
        use crate::optim::{Optim, OptimConfig};
        let (n, w) = (9, 5);
        let spec = MlpSpec { input: w, hidden: 6, out: 4, layers: 3, norm: Norm::Hidden };
        let xs: Vec<f32> = crate::nn::gradcheck::values(n * w, 3).iter().map(|&v| v as f32).collect();
        let rs: Vec<f32> = crate::nn::gradcheck::values(n * 4, 4).iter().map(|&v| v as f32).collect();
        // Loss: sum(y * r) over the rows (its part of them on a rank; the global loss is the sum).
        let run = |rows: std::ops::Range<usize>| {
            let dev = Cpu::seed_from_u64(5);
            let mut m = Mlp::new(&dev, spec).unwrap();
            let x = dev.tensor_from_vec(xs[rows.start * w..rows.end * w].to_vec(), (rows.len(), w));
            let r = dev.tensor_from_vec(rs[rows.start * 4..rows.end * 4].to_vec(), (rows.len(), 4));
            let mut grads = Gradients::leaky();
            m.try_zero_grads(&mut grads).unwrap();
            // The input's gradient is kept too.
            let mut leaves = UnusedTensors::default();
            leaves.add(&x);
            grads.try_alloc_for(&x).unwrap();
            grads.retain_leafs(&leaves.ids);
            let y = m.try_forward_mut(x.trace(grads)).unwrap();
            let out = y.as_vec();
            let g = (y * r).sum::<Rank0, _>().backward();
            let mut opt = Optim::new(OptimConfig::default());
            let mut c = opt.collect();
            m.update(&mut c, &g);
            let running = m.tensors().into_iter().filter(|(name, _, _)| name.contains("running")).flat_map(|(_, p, _)| p.host()).collect::<Vec<f32>>();
            (out, g.get(&x).as_vec(), c.into_collected::<CpuError>().unwrap(), running)
        };
        let (y, dx, dp, running) = run(0..n);
        let parts = threads::run(2, |rank| {
            current().unwrap().set_sync_batchnorm(true);
            run(shard(n, rank, 2))
        });
        let close = |a: &[f32], b: &[f32], what: &str| {
            let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            for (p, q) in a.iter().zip(b) {
                assert!((p - q).abs() <= 1e-5 * scale, "{what}: {p} vs {q}");
            }
        };
        let cat = |f: &dyn Fn(&(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)) -> &Vec<f32>| parts.iter().flat_map(|p| f(p).clone()).collect::<Vec<f32>>();
        close(&cat(&|p| &p.0), &y, "outputs");
        close(&cat(&|p| &p.1), &dx, "input gradients");
        let summed: Vec<f32> = parts[0].2.iter().zip(&parts[1].2).map(|(a, b)| a + b).collect();
        close(&summed, &dp, "parameter gradients");
        close(&parts[0].3, &running, "running statistics");
        assert_eq!(parts[0].3, parts[1].3);
    }
}
