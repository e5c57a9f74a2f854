//! 2-D batch normalisation with fused, parallel CPU kernels; a drop-in for dfdx's
//! `BatchNorm2D` (same fields, same safetensors names, same semantics), which runs as about
//! ten single-threaded element-wise ops. `BatchNormReLU2D` fuses the ReLU that follows it in
//! a ResNet: one pass instead of two, and one activation fewer kept for the backward.
//!
//! Training is `forward_mut` with a taped input: batch statistics normalise, and the running
//! statistics move by `momentum` (0.1) towards the batch mean and the *unbiased* batch
//! variance, as in PyTorch. Evaluation is `forward` with no tape: running statistics.

mod cpu_kernel;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) mod cuda_kernel;

pub use cpu_kernel::BnGeom;

use std::sync::Arc;

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};

use super::fused::{Act, CpuLayer, FusableLayers, LayerBackward};
use super::gemm::Real;
use super::tape::{buffer, copied, put_grad, take_grad, to_vec, zeros, Store};

pub mod builder {
    /// Batch normalisation over `C` channels; with `RELU`, followed by a fused ReLU.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct BatchNorm2DImpl<const C: usize, const RELU: bool>;
    /// Batch normalisation over `C` channels.
    pub type BatchNorm2D<const C: usize> = BatchNorm2DImpl<C, false>;
    /// Batch normalisation over `C` channels, then ReLU, in one pass.
    pub type BatchNormReLU2D<const C: usize> = BatchNorm2DImpl<C, true>;
}

/// A built batch normalisation.
pub type BatchNorm2D<const C: usize, E, D> = BatchNorm2DImpl<C, false, E, D>;
/// A built batch normalisation with fused ReLU.
pub type BatchNormReLU2D<const C: usize, E, D> = BatchNorm2DImpl<C, true, E, D>;

/// The built layer.
#[derive(Debug, Clone)]
pub struct BatchNorm2DImpl<const C: usize, const RELU: bool, E: Dtype, D: Storage<E>> {
    pub scale: Tensor<Rank1<C>, E, D>,
    pub bias: Tensor<Rank1<C>, E, D>,
    pub running_mean: Tensor<Rank1<C>, E, D>,
    pub running_var: Tensor<Rank1<C>, E, D>,
    pub epsilon: f64,
    pub momentum: f64,
}

impl<const C: usize, const RELU: bool, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::BatchNorm2DImpl<C, RELU>
where
    BatchNorm2DImpl<C, RELU, E, D>: BuildModule<D, E>,
{
    type Built = BatchNorm2DImpl<C, RELU, E, D>;
}

impl<const C: usize, const RELU: bool, E: Dtype, D: Device<E>> TensorCollection<E, D> for BatchNorm2DImpl<C, RELU, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = BatchNorm2DImpl<C, RELU, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("scale", |s| &s.scale, |s| &mut s.scale, TensorOptions::reset_to_ones()),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
                Self::tensor(
                    "running_mean",
                    |s| &s.running_mean,
                    |s| &mut s.running_mean,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
                Self::tensor(
                    "running_var",
                    |s| &s.running_var,
                    |s| &mut s.running_var,
                    TensorOptions::detached(|t| t.try_fill_with_ones()),
                ),
                Self::scalar("epsilon", |s| &s.epsilon, |s| &mut s.epsilon, ScalarOptions::from_default(1e-5)),
                Self::scalar("momentum", |s| &s.momentum, |s| &mut s.momentum, ScalarOptions::from_default(0.1)),
            ),
            |(scale, bias, running_mean, running_var, epsilon, momentum)| BatchNorm2DImpl {
                scale,
                bias,
                running_mean,
                running_var,
                epsilon,
                momentum,
            },
        )
    }
}

fn geom<B: Dim, const C: usize, H: Dim, W: Dim>(s: &(B, Const<C>, H, W)) -> BnGeom {
    BnGeom { n: s.0.size(), c: C, hw: s.2.size() * s.3.size() }
}

/// Input and output of the layer.
type Map<B, const C: usize, H, W, E, D, T = NoneTape> = Tensor<(B, Const<C>, H, W), E, D, T>;

/// A device that runs the batch normalisation layers: the CPU with the project's fused
/// kernels, CUDA (with the `cuda` feature) with dfdx's device-generic ops.
pub trait BatchNorm2DKernel<E: Dtype>: Storage<E> {
    /// Evaluation: running statistics.
    fn bn_eval<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool>(
        layer: &BatchNorm2DImpl<C, RELU, E, Self>,
        x: Map<B, C, H, W, E, Self>,
    ) -> Result<Map<B, C, H, W, E, Self>, Self::Err>;
    /// Training: batch statistics; the running ones move towards them.
    fn bn_train<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool>(
        layer: &mut BatchNorm2DImpl<C, RELU, E, Self>,
        x: Map<B, C, H, W, E, Self, OwnedTape<E, Self>>,
    ) -> Result<Map<B, C, H, W, E, Self, OwnedTape<E, Self>>, Self::Err>;
}

impl<E: Dtype + Real> BatchNorm2DKernel<E> for Cpu {
    fn bn_eval<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool>(
        layer: &BatchNorm2DImpl<C, RELU, E, Cpu>,
        x: Map<B, C, H, W, E, Cpu>,
    ) -> Result<Map<B, C, H, W, E, Cpu>, CpuError> {
        let mut y = zeros(x.shape().num_elements());
        eval_step(layer, geom(x.shape()), &copied(&x), &mut y);
        Ok(x.device().tensor_from_vec(y, *x.shape()))
    }

    fn bn_train<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool>(
        layer: &mut BatchNorm2DImpl<C, RELU, E, Cpu>,
        x: Map<B, C, H, W, E, Cpu, OwnedTape<E, Cpu>>,
    ) -> Result<Map<B, C, H, W, E, Cpu, OwnedTape<E, Cpu>>, CpuError> {
        let g = geom(x.shape());
        let (x, mut tape) = x.split_tape();
        let xv = copied(&x);
        let mut y = zeros(xv.len());
        let backward = train_step(layer, g, &xv, &mut y);
        let out = x.device().tensor_from_vec(y, *x.shape());
        let (x_ghost, out_ghost) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let mut dy = take_grad!(grads, &out_ghost);
            let mut dx = take_grad!(grads, &x_ghost);
            backward(&xv, &mut dy, &mut dx, Store::Add, grads)?;
            put_grad!(grads, &x_ghost, dx);
            Ok(())
        });
        Ok(out.put_tape(tape))
    }
}

/// An evaluation forward of `layer` on `xv` (geometry `g`) into `y`: the running statistics.
fn eval_step<const C: usize, const RELU: bool, E: Dtype + Real>(layer: &BatchNorm2DImpl<C, RELU, E, Cpu>, g: BnGeom, xv: &[E], y: &mut [E]) {
    let as_f64 = |t: &Tensor<Rank1<C>, E, Cpu>| to_vec(t).iter().map(|v| v.to_f64().unwrap()).collect::<Vec<_>>();
    let (mean, var) = (as_f64(&layer.running_mean), as_f64(&layer.running_var));
    cpu_kernel::normalize(&g, xv, &mean, &var, layer.epsilon, &to_vec(&layer.scale), &to_vec(&layer.bias), RELU, y);
}

/// A training forward of `layer` on `xv` (geometry `g`) into `y`: normalised with the batch
/// statistics (those of every rank under synchronised batch norm), the running statistics moved
/// towards them. Returns the backward: given `xv` again and the output gradient (masked in
/// place by a fused ReLU), it stores the input gradient in `dx` as told and adds the scale and
/// bias gradients into `Gradients`.
fn train_step<const C: usize, const RELU: bool, E: Dtype + Real>(
    layer: &mut BatchNorm2DImpl<C, RELU, E, Cpu>,
    g: BnGeom,
    xv: &[E],
    y: &mut [E],
) -> impl FnOnce(&[E], &mut [E], &mut [E], Store, &mut Gradients<E, Cpu>) -> Result<(), CpuError> + 'static {
    // Synchronised batch norm: the statistics (and, backward, their gradients) of every rank.
    let sync = crate::dist::sync_batchnorm();
    let reduce = move |v: &mut [f64]| {
        if let Some(group) = &sync {
            group.all_reduce_sum_f64(v);
        }
    };
    let (mean, var, m) = cpu_kernel::batch_stats(&g, xv, &reduce);
    let (scale, bias) = (to_vec(&layer.scale), to_vec(&layer.bias));
    cpu_kernel::normalize(&g, xv, &mean, &var, layer.epsilon, &scale, &bias, RELU, y);
    // Running statistics, off the tape.
    let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
    let mom = layer.momentum;
    let blend = |t: &mut Tensor<Rank1<C>, E, Cpu>, batch: &[f64], k: f64| {
        let old = to_vec(t);
        let new: Vec<E> =
            old.iter().zip(batch).map(|(o, b)| E::from((1.0 - mom) * o.to_f64().unwrap() + mom * b * k).unwrap()).collect();
        t.copy_from(&new);
    };
    blend(&mut layer.running_mean, &mean, 1.0);
    blend(&mut layer.running_var, &var, unbias);
    let (s_ghost, b_ghost) = (layer.scale.ghost(), layer.bias.ghost());
    let eps = layer.epsilon;
    move |xv: &[E], dy: &mut [E], dx: &mut [E], store: Store, grads: &mut Gradients<E, Cpu>| {
        let mut ds = take_grad!(grads, &s_ghost);
        let mut db = take_grad!(grads, &b_ghost);
        cpu_kernel::backward(&g, xv, &mean, &var, eps, &scale, &bias, RELU, dy, dx, store, &mut ds, &mut db, m, &reduce);
        put_grad!(grads, &s_ghost, ds);
        put_grad!(grads, &b_ghost, db);
        Ok(())
    }
}

/// The geometry of a fused activation, checked against the layer's channels.
fn act_geom<E: Dtype>(x: &Act<E>, c: usize) -> Result<BnGeom, CpuError> {
    let g = BnGeom { n: x.shape[0], c, hw: x.shape[2] * x.shape[3] };
    match x.shape[1] == c && x.data.len() == g.n * g.c * g.hw {
        true => Ok(g),
        false => Err(CpuError::WrongNumElements),
    }
}

impl<const C: usize, const RELU: bool, E: Dtype + Real> CpuLayer<E> for BatchNorm2DImpl<C, RELU, E, Cpu> {
    fn forward_eval(&self, x: &Act<E>) -> Result<Act<E>, CpuError> {
        let g = act_geom(x, C)?;
        let mut y = buffer(x.data.len());
        eval_step(self, g, &x.data, &mut y);
        Ok(Act { data: Arc::new(y), shape: x.shape })
    }

    fn forward_train(&mut self, x: &Act<E>) -> Result<(Act<E>, LayerBackward<E>), CpuError> {
        let g = act_geom(x, C)?;
        let mut y = buffer(x.data.len());
        let backward = train_step(self, g, &x.data, &mut y);
        let input = x.data.clone();
        let run = move |dy: &mut [E], dx: &mut [E], store: Store, grads: &mut Gradients<E, Cpu>| backward(&input, dy, dx, store, grads);
        Ok((Act { data: Arc::new(y), shape: x.shape }, LayerBackward { input_len: x.data.len(), run: Box::new(run) }))
    }
}

impl<const C: usize, const RELU: bool, E: Dtype + Real> FusableLayers<E, Cpu> for BatchNorm2DImpl<C, RELU, E, Cpu> {
    super::fused::fusable_as_itself!();
}

/// On CUDA a residual block runs layer by layer.
#[cfg(feature = "cuda")]
impl<const C: usize, const RELU: bool, E: Dtype> FusableLayers<E, dfdx::tensor::Cuda> for BatchNorm2DImpl<C, RELU, E, dfdx::tensor::Cuda>
where
    dfdx::tensor::Cuda: Storage<E>,
{
}

#[cfg(feature = "cuda")]
impl<E: Dtype> BatchNorm2DKernel<E> for dfdx::tensor::Cuda
where
    dfdx::tensor::Cuda: Device<E>,
{
    fn bn_eval<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool>(
        layer: &BatchNorm2DImpl<C, RELU, E, Self>,
        x: Map<B, C, H, W, E, Self>,
    ) -> Result<Map<B, C, H, W, E, Self>, Self::Err> {
        cuda_kernel::eval(layer, x)
    }

    fn bn_train<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool>(
        layer: &mut BatchNorm2DImpl<C, RELU, E, Self>,
        x: Map<B, C, H, W, E, Self, OwnedTape<E, Self>>,
    ) -> Result<Map<B, C, H, W, E, Self, OwnedTape<E, Self>>, Self::Err> {
        cuda_kernel::train(layer, x)
    }
}

impl<const C: usize, const RELU: bool, B: Dim, H: Dim, W: Dim, E: Dtype, D: BatchNorm2DKernel<E>> Module<Map<B, C, H, W, E, D>>
    for BatchNorm2DImpl<C, RELU, E, D>
{
    type Output = Map<B, C, H, W, E, D>;
    type Error = D::Err;

    /// Evaluation: normalises with the running statistics.
    fn try_forward(&self, x: Map<B, C, H, W, E, D>) -> Result<Self::Output, D::Err> {
        D::bn_eval(self, x)
    }
}

impl<const C: usize, const RELU: bool, B: Dim, H: Dim, W: Dim, E: Dtype, D: BatchNorm2DKernel<E>>
    ModuleMut<Map<B, C, H, W, E, D, OwnedTape<E, D>>> for BatchNorm2DImpl<C, RELU, E, D>
{
    type Output = Map<B, C, H, W, E, D, OwnedTape<E, D>>;
    type Error = D::Err;

    /// Training: normalises with batch statistics and updates the running ones.
    fn try_forward_mut(&mut self, x: Map<B, C, H, W, E, D, OwnedTape<E, D>>) -> Result<Self::Output, D::Err> {
        D::bn_train(self, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    type X<E, T = NoneTape> = Tensor<(usize, Const<3>, usize, usize), E, Cpu, T>;

    #[test]
    fn agrees_with_dfdx_batchnorm_in_training_and_evaluation() {
        let dev = Cpu::seed_from_u64(1);
        let mut ours = dev.build_module::<builder::BatchNorm2D<3>, f64>();
        let mut theirs = dev.build_module::<dfdx::nn::builders::BatchNorm2D<3>, f64>();
        ours.scale.copy_from(&[0.5, 1.5, -2.0]);
        theirs.scale.copy_from(&[0.5, 1.5, -2.0]);
        ours.bias.copy_from(&[0.1, 0.0, 0.3]);
        theirs.bias.copy_from(&[0.1, 0.0, 0.3]);
        let x: X<f64> = dev.tensor_from_vec(values(4 * 3 * 5 * 2, 9), (4, Const, 5, 2));
        let r: X<f64> = dev.tensor_from_vec(values(4 * 3 * 5 * 2, 10), (4, Const, 5, 2));
        for _ in 0..2 {
            let a = ours.forward_mut(x.leaky_trace());
            let b = theirs.forward_mut(x.leaky_trace());
            for (p, q) in a.as_vec().iter().zip(b.as_vec()) {
                assert!((p - q).abs() < 1e-9);
            }
            let ga = (a * r.clone()).sum().backward();
            let gb = (b * r.clone()).sum().backward();
            for (p, q) in ga.get(&x).as_vec().iter().zip(gb.get(&x).as_vec()) {
                assert!((p - q).abs() < 1e-9, "dx {p} vs {q}");
            }
            for (p, q) in ga.get(&ours.scale).as_vec().iter().zip(gb.get(&theirs.scale).as_vec()) {
                assert!((p - q).abs() < 1e-9, "dscale {p} vs {q}");
            }
        }
        for (p, q) in ours.running_var.as_vec().iter().zip(theirs.running_var.as_vec()) {
            assert!((p - q).abs() < 1e-12, "running var {p} vs {q}");
        }
        for (p, q) in ours.forward(x.clone()).as_vec().iter().zip(theirs.forward(x).as_vec()) {
            assert!((p - q).abs() < 1e-9);
        }
    }

    #[test]
    fn fused_relu_equals_batchnorm_then_relu() {
        let dev = Cpu::seed_from_u64(3);
        let mut a = dev.build_module::<builder::BatchNormReLU2D<3>, f64>();
        let mut b = dev.build_module::<(builder::BatchNorm2D<3>, dfdx::nn::builders::ReLU), f64>();
        let x: X<f64> = dev.tensor_from_vec(values(2 * 3 * 4 * 4, 8), (2, Const, 4, 4));
        let r: X<f64> = dev.tensor_from_vec(values(2 * 3 * 4 * 4, 9), (2, Const, 4, 4));
        let ya = a.forward_mut(x.leaky_trace());
        let yb = b.forward_mut(x.leaky_trace());
        assert_eq!(ya.as_vec(), yb.as_vec());
        let ga = (ya * r.clone()).sum().backward();
        let gb = (yb * r).sum().backward();
        for (p, q) in ga.get(&x).as_vec().iter().zip(gb.get(&x).as_vec()) {
            assert!((p - q).abs() < 1e-12);
        }
        assert_eq!(a.forward(x.clone()).as_vec(), b.forward(x).as_vec());
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::seed_from_u64(2);
        let mut bn = dev.build_module::<builder::BatchNormReLU2D<3>, f64>();
        bn.scale.copy_from(&[0.7, -1.2, 2.0]);
        bn.bias.copy_from(&[0.1, 0.2, 0.3]);
        let shape = (3usize, Const::<3>, 4usize, 3usize);
        let xv = values(3 * 3 * 4 * 3, 4);
        let r = values(xv.len(), 5);
        let x = dev.tensor_from_vec(xv.clone(), shape);
        let y = bn.clone().forward_mut(x.leaky_trace());
        let g = (y * dev.tensor_from_vec(r.clone(), shape)).sum().backward();
        let loss = |bn: &BatchNormReLU2D<3, f64, Cpu>, v: &[f64]| -> f64 {
            let y = bn.clone().forward_mut(dev.tensor_from_vec(v.to_vec(), shape).leaky_trace());
            y.as_vec().iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        assert_grad_close("bn dx", &g.get(&x).as_vec(), &xv, |v| loss(&bn, v), 60);
        let sv = bn.scale.as_vec();
        assert_grad_close(
            "bn dscale",
            &g.get(&bn.scale).as_vec(),
            &sv,
            |v| {
                let mut b = bn.clone();
                b.scale.copy_from(v);
                loss(&b, &xv)
            },
            3,
        );
    }

    /// The device path (what CUDA runs) computes what the CPU kernel does: outputs, gradients
    /// and running statistics, in training and evaluation, with and without the fused ReLU.
    #[test]
    fn device_path_matches_the_cpu_kernel() {
        use crate::nn::gradcheck::assert_same;
        fn run<const RELU: bool>() {
            let dev = Cpu::seed_from_u64(2);
            let mut cpu = dev.build_module::<builder::BatchNorm2DImpl<3, RELU>, f64>();
            cpu.scale.copy_from(&[0.5, 1.5, -2.0]);
            cpu.bias.copy_from(&[0.1, 0.0, 0.3]);
            let mut gen = cpu.clone();
            let x: X<f64> = dev.tensor_from_vec(values(4 * 3 * 5 * 2, 9), (4, Const, 5, 2));
            let r: X<f64> = dev.tensor_from_vec(values(4 * 3 * 5 * 2, 10), (4, Const, 5, 2));
            for step in 0..2 {
                let a = cpu.forward_mut(x.leaky_trace());
                let b = cuda_kernel::train(&mut gen, x.leaky_trace()).unwrap();
                let what = format!("relu {RELU} step {step}");
                assert_same(&what, &a.as_vec(), &b.as_vec());
                let ga = (a * r.clone()).sum().backward();
                let gb = (b * r.clone()).sum().backward();
                assert_same(&format!("{what} dx"), &ga.get(&x).as_vec(), &gb.get(&x).as_vec());
                assert_same(&format!("{what} dscale"), &ga.get(&cpu.scale).as_vec(), &gb.get(&gen.scale).as_vec());
                assert_same(&format!("{what} dbias"), &ga.get(&cpu.bias).as_vec(), &gb.get(&gen.bias).as_vec());
                assert_same(&format!("{what} running mean"), &cpu.running_mean.as_vec(), &gen.running_mean.as_vec());
                assert_same(&format!("{what} running var"), &cpu.running_var.as_vec(), &gen.running_var.as_vec());
            }
            assert_same("eval", &cpu.forward(x.clone()).as_vec(), &cuda_kernel::eval(&gen, x).unwrap().as_vec());
        }
        run::<false>();
        run::<true>();
    }
}
