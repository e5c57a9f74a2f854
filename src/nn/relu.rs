//! ReLU that keeps its output, not its input, for the backward (as PyTorch does): in a ResNet
//! the output is the next block's input and is kept anyway, so this saves one activation per
//! block over dfdx's `ReLU`, which keeps its input. Parallel over chunks of the tensor.

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};
use rayon::prelude::*;

use crate::simd;

use super::gemm::Real;
use super::tape::{copied, put_grad, take_grad};

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// `max(x, 0)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReLU;

impl ZeroSizedModule for ReLU {}
impl NonMutableModule for ReLU {}

/// No fused form: a residual block holding it runs layer by layer.
impl<E: Dtype, D: Storage<E>> crate::nn::fused::FusableLayers<E, D> for ReLU {}

/// A device that runs [`ReLU`] and the residual blocks' fused addition + ReLU: the CPU with
/// the project's kernels, CUDA (with the `cuda` feature) with dfdx's ops.
pub trait ReluKernel<E: Dtype>: Storage<E> {
    /// `max(x, 0)`.
    fn relu<S: Shape, T: Tape<E, Self>>(x: Tensor<S, E, Self, T>) -> Result<Tensor<S, E, Self, T>, Self::Err>;
    /// `max(a + b, 0)`.
    fn add_relu<S: Shape, T: Tape<E, Self>>(a: Tensor<S, E, Self, T>, b: Tensor<S, E, Self, T>) -> Result<Tensor<S, E, Self, T>, Self::Err>;
}

impl<E: Dtype + Real> ReluKernel<E> for Cpu {
    fn relu<S: Shape, T: Tape<E, Cpu>>(x: Tensor<S, E, Cpu, T>) -> Result<Tensor<S, E, Cpu, T>, CpuError> {
        let (x, mut tape) = x.split_tape();
        let xv = copied(&x);
        let mut y = Vec::with_capacity(xv.len());
        y.par_extend(xv.par_iter().with_min_len(CHUNK).map(|v| v.max(E::zero())));
        drop(xv);
        let out = x.device().tensor_from_vec(y, *x.shape());
        if T::OWNS_TAPE {
            let (x_ghost, kept) = (x.ghost(), out.clone());
            tape.add_backward_op(move |grads| {
                let out_ghost = kept.ghost();
                let dy = take_grad!(grads, &out_ghost);
                let mut dx = take_grad!(grads, &x_ghost);
                let y = copied(&kept);
                dx.par_chunks_mut(CHUNK).zip(dy.par_chunks(CHUNK)).zip(y.par_chunks(CHUNK)).for_each(|((dx, dy), y)| {
                    simd::run(
                        #[inline(always)]
                        || {
                            // A select, not a branch, so that it vectorises.
                            for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
                                *d += if v > E::zero() { g } else { E::zero() };
                            }
                        },
                    )
                });
                put_grad!(grads, &x_ghost, dx);
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }

    fn add_relu<S: Shape, T: Tape<E, Cpu>>(a: Tensor<S, E, Cpu, T>, b: Tensor<S, E, Cpu, T>) -> Result<Tensor<S, E, Cpu, T>, CpuError> {
        let (a, ta) = a.split_tape();
        let (b, tb) = b.split_tape();
        let mut tape = ta.merge(tb);
        let (av, bv) = (copied(&a), copied(&b));
        let mut y = Vec::with_capacity(av.len());
        y.par_extend(av.par_iter().zip(bv.par_iter()).with_min_len(CHUNK).map(|(&a, &b)| (a + b).max(E::zero())));
        drop((av, bv));
        let out = a.device().tensor_from_vec(y, *a.shape());
        if T::OWNS_TAPE {
            let (a_ghost, b_ghost, kept) = (a.ghost(), b.ghost(), out.clone());
            tape.add_backward_op(move |grads| {
                let out_ghost = kept.ghost();
                let mut dy = take_grad!(grads, &out_ghost);
                let y = copied(&kept);
                dy.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(d, y)| {
                    simd::run(
                        #[inline(always)]
                        || {
                            for (d, &v) in d.iter_mut().zip(y) {
                                *d = if v <= E::zero() { E::zero() } else { *d };
                            }
                        },
                    )
                });
                for ghost in [&a_ghost, &b_ghost] {
                    let mut g = take_grad!(grads, ghost);
                    add_into(&mut g, &dy);
                    put_grad!(grads, ghost, g);
                }
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

/// `dst += src`, in parallel (a gradient reaching a tensor from one more consumer).
pub(crate) fn add_into<E: Real>(dst: &mut [E], src: &[E]) {
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
        simd::run(
            #[inline(always)]
            || {
                for (d, &s) in d.iter_mut().zip(s) {
                    *d += s;
                }
            },
        )
    });
}

/// The device path (CUDA): dfdx's own element-wise ops.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) mod generic {
    use dfdx::prelude::*;

    pub fn relu<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err> {
        x.try_relu()
    }

    pub fn add_relu<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
        a: Tensor<S, E, D, T>,
        b: Tensor<S, E, D, T>,
    ) -> Result<Tensor<S, E, D, T>, D::Err> {
        a.try_add(b)?.try_relu()
    }
}

#[cfg(feature = "cuda")]
impl<E: Dtype> ReluKernel<E> for dfdx::tensor::Cuda
where
    dfdx::tensor::Cuda: Device<E>,
{
    fn relu<S: Shape, T: Tape<E, Self>>(x: Tensor<S, E, Self, T>) -> Result<Tensor<S, E, Self, T>, Self::Err> {
        generic::relu(x)
    }
    fn add_relu<S: Shape, T: Tape<E, Self>>(a: Tensor<S, E, Self, T>, b: Tensor<S, E, Self, T>) -> Result<Tensor<S, E, Self, T>, Self::Err> {
        generic::add_relu(a, b)
    }
}

impl<S: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for ReLU {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        D::relu(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    #[test]
    fn matches_dfdx_relu_and_finite_differences() {
        let dev: Cpu = Default::default();
        let xv = values(3 * 50_000, 1);
        let x: Tensor<(usize, Const<3>), f64, _> = dev.tensor_from_vec(xv.clone(), (50_000, Const));
        let ours = ReLU.forward(x.leaky_trace());
        let theirs = dfdx::nn::modules::ReLU.forward(x.leaky_trace());
        assert_eq!(ours.as_vec(), theirs.as_vec());
        let r: Tensor<(usize, Const<3>), f64, _> = dev.tensor_from_vec(values(xv.len(), 2), (50_000, Const));
        let ga = (ours * r.clone()).sum().backward();
        let gb = (theirs * r.clone()).sum().backward();
        assert_eq!(ga.get(&x).as_vec(), gb.get(&x).as_vec());
        let rv = r.as_vec();
        let loss = |v: &[f64]| -> f64 {
            let y = ReLU.forward(dev.tensor_from_vec(v.to_vec(), (50_000, Const::<3>)));
            y.as_vec().iter().zip(&rv).map(|(a, b)| a * b).sum()
        };
        assert_grad_close("relu", &ga.get(&x).as_vec(), &xv, loss, 50);
    }

    /// The device path (what CUDA runs) computes what the CPU kernels do.
    #[test]
    fn device_path_matches_the_cpu_kernel() {
        use crate::nn::gradcheck::assert_same;
        let dev: Cpu = Default::default();
        let shape = (3usize, 5usize);
        let (x, y): (Tensor<(usize, usize), f64, Cpu>, Tensor<(usize, usize), f64, Cpu>) =
            (dev.tensor_from_vec(values(15, 1), shape), dev.tensor_from_vec(values(15, 2), shape));
        let r = dev.tensor_from_vec(values(15, 3), shape);
        let a = Cpu::add_relu(x.leaky_trace(), y.retaped()).unwrap();
        let b = generic::add_relu(x.leaky_trace(), y.retaped()).unwrap();
        assert_same("add_relu", &a.as_vec(), &b.as_vec());
        let (ga, gb) = ((a * r.clone()).sum().backward(), (b * r.clone()).sum().backward());
        assert_same("add_relu dx", &ga.get(&x).as_vec(), &gb.get(&x).as_vec());
        let a = Cpu::relu(x.leaky_trace()).unwrap();
        let b = generic::relu(x.leaky_trace()).unwrap();
        assert_same("relu", &a.as_vec(), &b.as_vec());
        let (ga, gb) = ((a * r.clone()).sum().backward(), (b * r).sum().backward());
        assert_same("relu dx", &ga.get(&x).as_vec(), &gb.get(&x).as_vec());
    }
}
