//! ReLU that keeps its output, not its input, for the backward (as PyTorch does): in a ResNet
//! the output is the next block's input and is kept anyway, so this saves one activation per
//! block over dfdx's `ReLU`, which keeps its input. Parallel over chunks of the tensor.

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};
use rayon::prelude::*;

use super::gemm::Real;
use super::tape::{put_grad, take_grad, to_vec};

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// `max(x, 0)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReLU;

impl ZeroSizedModule for ReLU {}
impl NonMutableModule for ReLU {}

impl<S: Shape, E: Dtype + Real, T: Tape<E, Cpu>> Module<Tensor<S, E, Cpu, T>> for ReLU {
    type Output = Tensor<S, E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, E, Cpu, T>) -> Result<Self::Output, CpuError> {
        let (x, mut tape) = x.split_tape();
        let mut y = to_vec(&x);
        y.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v = v.max(E::zero())));
        let out = x.device().tensor_from_vec(y, *x.shape());
        if T::OWNS_TAPE {
            let (x_ghost, kept) = (x.ghost(), out.clone());
            tape.add_backward_op(move |grads| {
                let out_ghost = kept.ghost();
                let dy = take_grad!(grads, &out_ghost);
                let mut dx = take_grad!(grads, &x_ghost);
                let y = to_vec(&kept);
                dx.par_chunks_mut(CHUNK).zip(dy.par_chunks(CHUNK)).zip(y.par_chunks(CHUNK)).for_each(|((dx, dy), y)| {
                    for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
                        if v > E::zero() {
                            *d += g;
                        }
                    }
                });
                put_grad!(grads, &x_ghost, dx);
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
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
}
