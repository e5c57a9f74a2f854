//! Plumbing for the project's own ops on dfdx's tape: reading tensor data, and borrowing
//! gradient buffers inside a backward op without copying them.

use dfdx::shapes::{Dtype, HasShape, Shape};
use dfdx::tensor::{Cpu, Tensor};
use dfdx::tensor_ops::ReshapeTo;

/// The tensor's elements in row-major order (a copy; a non-contiguous tensor is made
/// contiguous first).
pub fn to_vec<S: Shape, E: Dtype, T>(t: &Tensor<S, E, Cpu, T>) -> Vec<E> {
    let t = t.retaped::<dfdx::tensor::NoneTape>().reshape_like(t.shape());
    let mut v = vec![E::default(); t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Moves the gradient buffer of a tensor or ghost out of `Gradients` (zeros if it had none),
/// as a `Vec<f32>`; give it back with [`put_grad!`]. Use inside a backward op returning
/// `Result<_, CpuError>`.
///
/// An op takes its *output's* gradient and does not give it back: backward ops run in reverse
/// order, so every consumer of the output has already added its part, and nothing reads it
/// again. Freeing it there keeps dfdx from holding every intermediate gradient until the end
/// of the backward pass (PyTorch frees them as it goes too); the entry stays, empty.
macro_rules! take_grad {
    ($grads:expr, $t:expr) => {
        std::mem::take(&mut **$grads.get_or_alloc_mut($t)?)
    };
}

/// Returns a gradient buffer taken with [`take_grad!`].
macro_rules! put_grad {
    ($grads:expr, $t:expr, $v:expr) => {
        **$grads.get_or_alloc_mut($t)? = $v
    };
}

pub(crate) use {put_grad, take_grad};
