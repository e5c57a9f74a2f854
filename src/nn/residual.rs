//! Residual connections with the ResNet's final ReLU fused in: relu(f(x) + x) and
//! relu(f(x) + r(x)) in one parallel pass, where dfdx's `Residual` followed by `ReLU` runs two
//! single-threaded passes and keeps one more activation for the backward. On the CPU the whole
//! block is one op on the tape in training, and one pass in evaluation (`super::fused`): its
//! layers pass activations to each other without going through dfdx tensors.

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError, WithEmptyTape};

use super::fused::{self, FusableLayers};
use super::gemm::Real;
use super::relu::ReluKernel;

/// relu(a + b), on the tape of both.
pub fn add_relu<S: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>>(
    a: Tensor<S, E, D, T>,
    b: Tensor<S, E, D, T>,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    D::add_relu(a, b)
}

/// A device that runs a residual block: the CPU as one fused op, others layer by layer.
pub trait ResidualKernel<E: Dtype>: ReluKernel<E> {
    /// relu(f(x) + r(x)), with `r` the identity when `None`, as one op when the device fuses
    /// `f`'s and `r`'s layers (`Ok(Ok(y))`); `Ok(Err(x))` gives `x` back to run them one by one.
    #[allow(clippy::type_complexity)]
    fn fused_residual<S: Shape, O: Shape, T: Tape<E, Self>, F: FusableLayers<E, Self>, R: FusableLayers<E, Self>>(
        f: &mut F,
        r: Option<&mut R>,
        x: Tensor<S, E, Self, T>,
    ) -> Result<Result<Tensor<O, E, Self, T>, Tensor<S, E, Self, T>>, Self::Err>;
    /// The same in evaluation (`Module::forward`, running statistics): one pass over the
    /// block's layers when the device fuses them and `x` has no tape; else gives `x` back.
    #[allow(clippy::type_complexity)]
    fn fused_residual_eval<S: Shape, O: Shape, T: Tape<E, Self>, F: FusableLayers<E, Self>, R: FusableLayers<E, Self>>(
        f: &F,
        r: Option<&R>,
        x: Tensor<S, E, Self, T>,
    ) -> Result<Result<Tensor<O, E, Self, T>, Tensor<S, E, Self, T>>, Self::Err>;
}

impl<E: Dtype + Real> ResidualKernel<E> for Cpu {
    fn fused_residual<S: Shape, O: Shape, T: Tape<E, Cpu>, F: FusableLayers<E, Cpu>, R: FusableLayers<E, Cpu>>(
        f: &mut F,
        r: Option<&mut R>,
        x: Tensor<S, E, Cpu, T>,
    ) -> Result<Result<Tensor<O, E, Cpu, T>, Tensor<S, E, Cpu, T>>, CpuError> {
        let (mut fl, mut rl) = (Vec::new(), Vec::new());
        let has_r = r.is_some();
        if S::NUM_DIMS != 4 || O::NUM_DIMS != 4 || !f.cpu_layers(&mut fl) || !r.is_none_or(|r| r.cpu_layers(&mut rl)) {
            return Ok(Err(x));
        }
        fused::residual(&mut fl, has_r.then_some(&mut rl[..]), x).map(Ok)
    }

    fn fused_residual_eval<S: Shape, O: Shape, T: Tape<E, Cpu>, F: FusableLayers<E, Cpu>, R: FusableLayers<E, Cpu>>(
        f: &F,
        r: Option<&R>,
        x: Tensor<S, E, Cpu, T>,
    ) -> Result<Result<Tensor<O, E, Cpu, T>, Tensor<S, E, Cpu, T>>, CpuError> {
        let (mut fl, mut rl) = (Vec::new(), Vec::new());
        let has_r = r.is_some();
        if T::OWNS_TAPE || S::NUM_DIMS != 4 || O::NUM_DIMS != 4 || !f.cpu_layers_ref(&mut fl) || !r.is_none_or(|r| r.cpu_layers_ref(&mut rl)) {
            return Ok(Err(x));
        }
        let (x, tape) = x.split_tape();
        let y: Tensor<O, E, Cpu> = fused::residual_eval(&fl, has_r.then_some(&rl[..]), x)?;
        Ok(Ok(y.put_tape(tape)))
    }
}

#[cfg(feature = "cuda")]
impl<E: Dtype> ResidualKernel<E> for dfdx::tensor::Cuda
where
    dfdx::tensor::Cuda: Device<E>,
{
    fn fused_residual<S: Shape, O: Shape, T: Tape<E, Self>, F: FusableLayers<E, Self>, R: FusableLayers<E, Self>>(
        _: &mut F,
        _: Option<&mut R>,
        x: Tensor<S, E, Self, T>,
    ) -> Result<Result<Tensor<O, E, Self, T>, Tensor<S, E, Self, T>>, Self::Err> {
        Ok(Err(x))
    }

    fn fused_residual_eval<S: Shape, O: Shape, T: Tape<E, Self>, F: FusableLayers<E, Self>, R: FusableLayers<E, Self>>(
        _: &F,
        _: Option<&R>,
        x: Tensor<S, E, Self, T>,
    ) -> Result<Result<Tensor<O, E, Self, T>, Tensor<S, E, Self, T>>, Self::Err> {
        Ok(Err(x))
    }
}

/// relu(f(x) + x). Every layer of `f` implements `fused::FusableLayers` (the project's layers
/// do; those with no fused form make the block run layer by layer).
#[derive(Debug, Clone, Default)]
pub struct ResidualReLU<F>(pub F);

/// relu(f(x) + r(x)). Every layer of `f` and `r` implements `fused::FusableLayers`, as for
/// [`ResidualReLU`].
#[derive(Debug, Clone, Default)]
pub struct GeneralizedResidualReLU<F, R> {
    pub f: F,
    pub r: R,
}

impl<D: Device<E>, E: Dtype, F: BuildOnDevice<D, E>> BuildOnDevice<D, E> for ResidualReLU<F> {
    type Built = ResidualReLU<F::Built>;
}

impl<D: Device<E>, E: Dtype, F: BuildOnDevice<D, E>, R: BuildOnDevice<D, E>> BuildOnDevice<D, E> for GeneralizedResidualReLU<F, R> {
    type Built = GeneralizedResidualReLU<F::Built, R::Built>;
}

impl<E: Dtype, D: Device<E>, F: TensorCollection<E, D>> TensorCollection<E, D> for ResidualReLU<F> {
    type To<E2: Dtype, D2: Device<E2>> = ResidualReLU<F::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("0", |s| &s.0, |s| &mut s.0), ResidualReLU)
    }
}

impl<E: Dtype, D: Device<E>, F: TensorCollection<E, D>, R: TensorCollection<E, D>> TensorCollection<E, D>
    for GeneralizedResidualReLU<F, R>
{
    type To<E2: Dtype, D2: Device<E2>> = GeneralizedResidualReLU<F::To<E2, D2>, R::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (Self::module("f", |s| &s.f, |s| &mut s.f), Self::module("r", |s| &s.r, |s| &mut s.r)),
            |(f, r)| GeneralizedResidualReLU { f, r },
        )
    }
}

type T4<S, E, D, T> = Tensor<S, E, D, T>;

impl<S: Shape, E: Dtype, D: ResidualKernel<E>, T: Tape<E, D>, F> Module<T4<S, E, D, T>> for ResidualReLU<F>
where
    F: Module<T4<S, E, D, T>, Output = T4<S, E, D, T>, Error = D::Err> + FusableLayers<E, D>,
{
    type Output = T4<S, E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        match D::fused_residual_eval(&self.0, None::<&F>, x)? {
            Ok(y) => Ok(y),
            Err(x) => add_relu(self.0.try_forward(x.with_empty_tape())?, x),
        }
    }
}

impl<S: Shape, E: Dtype, D: ResidualKernel<E>, T: Tape<E, D>, F> ModuleMut<T4<S, E, D, T>> for ResidualReLU<F>
where
    F: ModuleMut<T4<S, E, D, T>, Output = T4<S, E, D, T>, Error = D::Err> + FusableLayers<E, D>,
{
    type Output = T4<S, E, D, T>;
    type Error = D::Err;

    fn try_forward_mut(&mut self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        match D::fused_residual(&mut self.0, None::<&mut F>, x)? {
            Ok(y) => Ok(y),
            Err(x) => add_relu(self.0.try_forward_mut(x.with_empty_tape())?, x),
        }
    }
}

impl<S: Shape, O: Shape, E: Dtype, D: ResidualKernel<E>, T: Tape<E, D>, F, R> Module<T4<S, E, D, T>> for GeneralizedResidualReLU<F, R>
where
    F: Module<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err> + FusableLayers<E, D>,
    R: Module<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err> + FusableLayers<E, D>,
{
    type Output = T4<O, E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        match D::fused_residual_eval(&self.f, Some(&self.r), x)? {
            Ok(y) => Ok(y),
            Err(x) => add_relu(self.f.try_forward(x.with_empty_tape())?, self.r.try_forward(x)?),
        }
    }
}

impl<S: Shape, O: Shape, E: Dtype, D: ResidualKernel<E>, T: Tape<E, D>, F, R> ModuleMut<T4<S, E, D, T>>
    for GeneralizedResidualReLU<F, R>
where
    F: ModuleMut<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err> + FusableLayers<E, D>,
    R: ModuleMut<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err> + FusableLayers<E, D>,
{
    type Output = T4<O, E, D, T>;
    type Error = D::Err;

    fn try_forward_mut(&mut self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        match D::fused_residual(&mut self.f, Some(&mut self.r), x)? {
            Ok(y) => Ok(y),
            Err(x) => add_relu(self.f.try_forward_mut(x.with_empty_tape())?, self.r.try_forward_mut(x)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::builders::{BatchNorm2D, BatchNormReLU2D, Conv2D};
    use crate::nn::gradcheck::{assert_grad_close, values};

    type Built<M, E> = <M as BuildOnDevice<Cpu, E>>::Built;

    type X = Tensor<(usize, Const<2>, usize, usize), f64, Cpu>;

    #[test]
    fn equals_dfdx_residual_then_relu_and_passes_gradient_checks() {
        let dev = Cpu::seed_from_u64(4);
        let ours = dev.build_module::<ResidualReLU<Conv2D<2, 2, 3, 1, 1>>, f64>();
        let mut theirs = dev.build_module::<(dfdx::nn::builders::Residual<Conv2D<2, 2, 3, 1, 1>>, dfdx::nn::builders::ReLU), f64>();
        theirs.0 .0.weight = ours.0.weight.clone();
        let shape = (3usize, Const::<2>, 5usize, 4usize);
        let xv = values(3 * 2 * 5 * 4, 7);
        let x: X = dev.tensor_from_vec(xv.clone(), shape);
        let r = values(xv.len(), 8);
        let rt: X = dev.tensor_from_vec(r.clone(), shape);
        let (a, b) = (ours.forward(x.leaky_trace()), theirs.forward(x.leaky_trace()));
        assert_eq!(a.as_vec(), b.as_vec());
        let (ga, gb) = ((a * rt.clone()).sum().backward(), (b * rt).sum().backward());
        for (p, q) in ga.get(&x).as_vec().iter().zip(gb.get(&x).as_vec()) {
            assert!((p - q).abs() < 1e-12);
        }
        let loss = |v: &[f64]| -> f64 {
            let y = ours.forward(dev.tensor_from_vec(v.to_vec(), shape));
            y.as_vec().iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        assert_grad_close("residual relu dx", &ga.get(&x).as_vec(), &xv, loss, 60);
    }

    type Map<E, const C: usize, T = NoneTape> = Tensor<(usize, Const<C>, usize, usize), E, Cpu, T>;

    /// Every tensor of a module (parameters and running statistics) and, where `grads` has one,
    /// its gradient, in visiting order.
    fn tensors_and_grads<E: Dtype, M: TensorCollection<E, Cpu>>(m: &mut M, grads: &Gradients<E, Cpu>) -> Vec<(Vec<E>, Vec<E>)>
    where
        Cpu: Device<E>,
    {
        use dfdx::nn::tensor_collection::{RecursiveWalker, TensorOptions, TensorVisitor, ViewTensorMut};
        struct Grab<'a, E: Dtype>(&'a Gradients<E, Cpu>, Vec<(Vec<E>, Vec<E>)>);
        impl<E: Dtype> TensorVisitor<E, Cpu> for Grab<'_, E>
        where
            Cpu: Device<E>,
        {
            type Viewer = ViewTensorMut;
            type Err = CpuError;
            type E2 = E;
            type D2 = Cpu;
            fn visit<S: Shape>(&mut self, o: TensorOptions<S, E, Cpu>, t: &mut Tensor<S, E, Cpu>) -> Result<Option<Tensor<S, E, Cpu>>, CpuError> {
                let g = if o.do_gradient_update { self.0.get(&*t).as_vec() } else { Vec::new() };
                self.1.push((t.as_vec(), g));
                Ok(None)
            }
        }
        let mut grab = Grab(grads, Vec::new());
        M::iter_tensors(&mut RecursiveWalker { m, f: &mut grab }).unwrap();
        grab.1
    }

    /// The values' bits (as f64: exact for f32), so that -0.0 and 0.0 differ and NaN equals NaN.
    fn bits<E: Real>(v: &[E]) -> Vec<u64> {
        v.iter().map(|x| x.to_f64().unwrap().to_bits()).collect()
    }

    /// Runs `fused` (the block's `forward_mut`: one op on the CPU) and `layers` (a clone of it
    /// run layer by layer) on the same input in training, and asserts the same output, input
    /// gradient, parameter gradients and running statistics, to the bit.
    fn assert_fused_equals_layers<E, M, const I: usize, const O: usize>(
        mut fused: M,
        one_by_one: impl Fn(&mut M, Map<E, I, OwnedTape<E, Cpu>>) -> Map<E, O, OwnedTape<E, Cpu>>,
        one_by_one_eval: impl Fn(&M, Map<E, I>) -> Map<E, O>,
        (n, h, w): (usize, usize, usize),
    ) where
        E: Dtype + Real,
        Cpu: Device<E>,
        M: Clone
            + TensorCollection<E, Cpu>
            + ModuleMut<Map<E, I, OwnedTape<E, Cpu>>, Output = Map<E, O, OwnedTape<E, Cpu>>, Error = CpuError>
            + Module<Map<E, I>, Output = Map<E, O>, Error = CpuError>,
    {
        let dev: Cpu = Default::default();
        let mut layers = fused.clone();
        let cast = |v: Vec<f64>| v.into_iter().map(|v| E::from(v).unwrap()).collect::<Vec<E>>();
        let x: Map<E, I> = dev.tensor_from_vec(cast(values(n * I * h * w, 21)), (n, Const, h, w));
        let a = fused.forward_mut(x.leaky_trace());
        let b = one_by_one(&mut layers, x.leaky_trace());
        assert_eq!(a.shape(), b.shape());
        assert_eq!(bits(&a.as_vec()), bits(&b.as_vec()), "outputs");
        let r: Map<E, O> = dev.tensor_from_vec(cast(values(a.shape().num_elements(), 22)), *a.shape());
        let (ga, gb) = ((a * r.clone()).sum().backward(), (b * r).sum().backward());
        assert_eq!(bits(&ga.get(&x).as_vec()), bits(&gb.get(&x).as_vec()), "input gradients");
        let (ta, tb) = (tensors_and_grads(&mut fused, &ga), tensors_and_grads(&mut layers, &gb));
        assert_eq!(ta.len(), tb.len());
        for (i, ((va, da), (vb, db))) in ta.iter().zip(&tb).enumerate() {
            assert_eq!(bits(va), bits(vb), "tensor {i} (running statistics)");
            assert_eq!(bits(da), bits(db), "gradient of tensor {i}");
            assert!(da.is_empty() || da.iter().any(|v| *v != E::zero()), "tensor {i} got a gradient");
        }
        // Evaluation (running statistics, moved by the forward above): the same bits too.
        assert_eq!(bits(&fused.forward(x.clone()).as_vec()), bits(&one_by_one_eval(&layers, x).as_vec()), "evaluation outputs");
    }

    type Basic<const C: usize> = (Conv2D<C, C, 3, 1, 1>, BatchNormReLU2D<C>, Conv2D<C, C, 3, 1, 1>, BatchNorm2D<C>);
    type Down<const I: usize, const O: usize> = GeneralizedResidualReLU<
        (Conv2D<I, O, 3, 2, 1>, BatchNormReLU2D<O>, Conv2D<O, O, 3, 1, 1>, BatchNorm2D<O>),
        (Conv2D<I, O, 1, 2, 0>, BatchNorm2D<O>),
    >;

    #[test]
    fn fused_blocks_equal_their_layers_one_by_one() {
        macro_rules! check {
            ($e:ty) => {{
                let dev = Cpu::seed_from_u64(11);
                let m = dev.build_module::<ResidualReLU<Basic<3>>, $e>();
                // Both blocks take the fused path in training and evaluation (else the
                // comparisons below would compare the layer-by-layer path with itself).
                let x3: Map<$e, 3> = dev.tensor_from_vec(vec![0.5; 2 * 3 * 5 * 4], (2, Const, 5, 4));
                let mut c = m.clone();
                let fused = <Cpu as ResidualKernel<$e>>::fused_residual::<_, (usize, Const<3>, usize, usize), _, _, Built<Basic<3>, $e>>(&mut c.0, None, x3.leaky_trace());
                assert!(matches!(fused, Ok(Ok(_))), "basic block trains fused");
                let fused = <Cpu as ResidualKernel<$e>>::fused_residual_eval::<_, (usize, Const<3>, usize, usize), _, _, Built<Basic<3>, $e>>(&c.0, None, x3);
                assert!(matches!(fused, Ok(Ok(_))), "basic block evaluates fused");
                let d = dev.build_module::<Down<2, 4>, $e>();
                let mut c = d.clone();
                let x2: Map<$e, 2> = dev.tensor_from_vec(vec![0.5; 2 * 2 * 6 * 6], (2, Const, 6, 6));
                let fused = <Cpu as ResidualKernel<$e>>::fused_residual::<_, (usize, Const<4>, usize, usize), _, _, _>(&mut c.f, Some(&mut c.r), x2.leaky_trace());
                assert!(matches!(fused, Ok(Ok(_))), "down block trains fused");
                let fused = <Cpu as ResidualKernel<$e>>::fused_residual_eval::<_, (usize, Const<4>, usize, usize), _, _, _>(&c.f, Some(&c.r), x2);
                assert!(matches!(fused, Ok(Ok(_))), "down block evaluates fused");
                let one_by_one = |m: &mut Built<ResidualReLU<Basic<3>>, $e>, x: Map<$e, 3, OwnedTape<$e, Cpu>>| {
                    add_relu(m.0.forward_mut(x.with_empty_tape()), x).unwrap()
                };
                let one_by_one_eval = |m: &Built<ResidualReLU<Basic<3>>, $e>, x: Map<$e, 3>| add_relu(m.0.forward(x.clone()), x).unwrap();
                assert_fused_equals_layers(m, one_by_one, one_by_one_eval, (5, 7, 6));
                let m = d;
                let one_by_one = |m: &mut Built<Down<2, 4>, $e>, x: Map<$e, 2, OwnedTape<$e, Cpu>>| {
                    add_relu(m.f.forward_mut(x.with_empty_tape()), m.r.forward_mut(x)).unwrap()
                };
                let one_by_one_eval = |m: &Built<Down<2, 4>, $e>, x: Map<$e, 2>| add_relu(m.f.forward(x.clone()), m.r.forward(x)).unwrap();
                assert_fused_equals_layers(m, one_by_one, one_by_one_eval, (4, 9, 8));
            }};
        }
        check!(f32);
        check!(f64);
        // At 16 channels the 3x3 convolutions take the direct kernels (their gradients written
        // into pooled buffers, `Store::Write`); twice, so that the second pass gets the stale
        // buffers the first gave back.
        let dev = Cpu::seed_from_u64(13);
        for _ in 0..2 {
            let m = dev.build_module::<ResidualReLU<Basic<16>>, f32>();
            let one_by_one = |m: &mut Built<ResidualReLU<Basic<16>>, f32>, x: Map<f32, 16, OwnedTape<f32, Cpu>>| {
                add_relu(m.0.forward_mut(x.with_empty_tape()), x).unwrap()
            };
            let one_by_one_eval = |m: &Built<ResidualReLU<Basic<16>>, f32>, x: Map<f32, 16>| add_relu(m.0.forward(x.clone()), x).unwrap();
            assert_fused_equals_layers(m, one_by_one, one_by_one_eval, (3, 8, 8));
            let d = dev.build_module::<Down<16, 16>, f32>();
            let one_by_one = |m: &mut Built<Down<16, 16>, f32>, x: Map<f32, 16, OwnedTape<f32, Cpu>>| {
                add_relu(m.f.forward_mut(x.with_empty_tape()), m.r.forward_mut(x)).unwrap()
            };
            let one_by_one_eval = |m: &Built<Down<16, 16>, f32>, x: Map<f32, 16>| add_relu(m.f.forward(x.clone()), m.r.forward(x)).unwrap();
            assert_fused_equals_layers(d, one_by_one, one_by_one_eval, (3, 16, 16));
        }
    }

    #[test]
    fn fused_blocks_pass_gradient_checks() {
        let dev = Cpu::seed_from_u64(12);
        let m = dev.build_module::<Down<2, 3>, f64>();
        let shape = (3usize, Const::<2>, 5usize, 6usize);
        let xv = values(3 * 2 * 5 * 6, 23);
        let x: X = dev.tensor_from_vec(xv.clone(), shape);
        let y = m.clone().forward_mut(x.leaky_trace());
        let r = values(y.shape().num_elements(), 24);
        let rt = dev.tensor_from_vec(r.clone(), *y.shape());
        let g = (y * rt).sum().backward();
        let loss_at = |m: &Built<Down<2, 3>, f64>, v: &[f64]| -> f64 {
            let y = m.clone().forward_mut(dev.tensor_from_vec(v.to_vec(), shape).leaky_trace());
            y.as_vec().iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        assert_grad_close("fused block dx", &g.get(&x).as_vec(), &xv, |v| loss_at(&m, v), 60);
        // A parameter of each branch: the shortcut's convolution and the main path's first.
        let w = m.r.0.weight.as_vec();
        let at_w = |v: &[f64]| {
            let mut m = m.clone();
            m.r.0.weight.copy_from(v);
            loss_at(&m, &xv)
        };
        assert_grad_close("fused block shortcut weight", &g.get(&m.r.0.weight).as_vec(), &w, at_w, 18);
        let w = m.f.0.weight.as_vec();
        let at_w = |v: &[f64]| {
            let mut m = m.clone();
            m.f.0.weight.copy_from(v);
            loss_at(&m, &xv)
        };
        assert_grad_close("fused block main weight", &g.get(&m.f.0.weight).as_vec(), &w, at_w, 30);
    }

    #[test]
    fn generalized_version_trains_both_branches() {
        let dev = Cpu::seed_from_u64(5);
        let mut m = dev.build_module::<GeneralizedResidualReLU<(Conv2D<2, 3, 3, 2, 1>, BatchNorm2D<3>), Conv2D<2, 3, 1, 2, 0>>, f64>();
        let x: X = dev.tensor_from_vec(values(2 * 2 * 6 * 6, 9), (2, Const, 6, 6));
        let y = m.forward_mut(x.leaky_trace());
        assert_eq!(y.shape(), &(2, Const::<3>, 3, 3));
        assert!(y.as_vec().iter().all(|&v| v >= 0.0));
        let g = y.sum().backward();
        assert!(g.get(&m.f.0.weight).as_vec().iter().any(|&v| v != 0.0));
        assert!(g.get(&m.r.weight).as_vec().iter().any(|&v| v != 0.0));
    }
}
