//! Residual connections with the ResNet's final ReLU fused in: relu(f(x) + x) and
//! relu(f(x) + r(x)) in one parallel pass, where dfdx's `Residual` followed by `ReLU` runs two
//! single-threaded passes and keeps one more activation for the backward.

use dfdx::prelude::*;
use dfdx::tensor::WithEmptyTape;

use super::relu::ReluKernel;

/// relu(a + b), on the tape of both.
pub fn add_relu<S: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>>(
    a: Tensor<S, E, D, T>,
    b: Tensor<S, E, D, T>,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    D::add_relu(a, b)
}

/// relu(f(x) + x).
#[derive(Debug, Clone, Default)]
pub struct ResidualReLU<F>(pub F);

/// relu(f(x) + r(x)).
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

impl<S: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>, F> Module<T4<S, E, D, T>> for ResidualReLU<F>
where
    F: Module<T4<S, E, D, T>, Output = T4<S, E, D, T>, Error = D::Err>,
{
    type Output = T4<S, E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        add_relu(self.0.try_forward(x.with_empty_tape())?, x)
    }
}

impl<S: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>, F> ModuleMut<T4<S, E, D, T>> for ResidualReLU<F>
where
    F: ModuleMut<T4<S, E, D, T>, Output = T4<S, E, D, T>, Error = D::Err>,
{
    type Output = T4<S, E, D, T>;
    type Error = D::Err;

    fn try_forward_mut(&mut self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        add_relu(self.0.try_forward_mut(x.with_empty_tape())?, x)
    }
}

impl<S: Shape, O: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>, F, R> Module<T4<S, E, D, T>> for GeneralizedResidualReLU<F, R>
where
    F: Module<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err>,
    R: Module<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err>,
{
    type Output = T4<O, E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        add_relu(self.f.try_forward(x.with_empty_tape())?, self.r.try_forward(x)?)
    }
}

impl<S: Shape, O: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>, F, R> ModuleMut<T4<S, E, D, T>> for GeneralizedResidualReLU<F, R>
where
    F: ModuleMut<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err>,
    R: ModuleMut<T4<S, E, D, T>, Output = T4<O, E, D, T>, Error = D::Err>,
{
    type Output = T4<O, E, D, T>;
    type Error = D::Err;

    fn try_forward_mut(&mut self, x: T4<S, E, D, T>) -> Result<Self::Output, D::Err> {
        add_relu(self.f.try_forward_mut(x.with_empty_tape())?, self.r.try_forward_mut(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::builders::{BatchNorm2D, Conv2D};
    use crate::nn::gradcheck::{assert_grad_close, values};

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
