//! Layers run back to back on the project's own buffers as one op on dfdx's tape (CPU
//! training): a residual block's convolutions and batch norms hand their activations to each
//! other directly instead of through dfdx tensors.
//!
//! Every dfdx tensor between two of the project's ops costs a single-threaded copy out of it
//! (dfdx 0.13 lends no view of a tensor's data), and in the backward a single-threaded,
//! zero-filled gradient buffer from dfdx. At two threads these were a sixth of the small
//! ResNet's training step (measured with `perf`, 2026-12-01), run on one core while the other
//! waited. Inside a fused op the activations and gradients are the project's buffers,
//! zero-filled in parallel; only the block's input and output cross into dfdx. The
//! numbers are the same bits as the layers run one by one (each layer calls the same kernels
//! in the same order; tested in `residual`).
//!
//! A layer takes part by implementing [`CpuLayer`] for the CPU and [`FusableLayers`] for every
//! device (on others it answers `false`, and the block runs layer by layer).

use std::sync::Arc;

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};
use rayon::prelude::*;

use crate::simd;

use super::gemm::Real;
use super::tape::{copied, put_grad, take_grad, zeros, Copied};

/// Elements per parallel task of the element-wise loops.
const CHUNK: usize = 1 << 15;

/// An activation between fused layers: NCHW elements and their shape `[n, c, h, w]`, shared by
/// the layer that made it and the backward of the layer that reads it.
#[derive(Clone)]
pub struct Act<E: 'static + Send> {
    pub data: Arc<Copied<E>>,
    pub shape: [usize; 4],
}

/// The backward of one fused layer: given the output gradient (which it may overwrite), *adds*
/// the input gradient into `dx` (`input_len` elements) and the parameter gradients into
/// `Gradients`.
pub struct LayerBackward<E: Dtype> {
    pub input_len: usize,
    #[allow(clippy::type_complexity)]
    pub run: Box<dyn FnOnce(&mut [E], &mut [E], &mut Gradients<E, Cpu>) -> Result<(), CpuError>>,
}

/// A layer that trains on the project's buffers: the forward of `ModuleMut` (batch statistics,
/// running statistics updated) on `x`, returning the output and its backward.
pub trait CpuLayer<E: Dtype> {
    fn forward_train(&mut self, x: &Act<E>) -> Result<(Act<E>, LayerBackward<E>), CpuError>;
}

/// A module made of layers that can run fused on the CPU: pushes them, in order, and answers
/// `true`; on another device, or with a layer that cannot, answers `false`.
pub trait FusableLayers<E: Dtype, D: Storage<E>> {
    fn cpu_layers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn CpuLayer<E>>) -> bool;
}

macro_rules! tuple_impls {
    ($($name:ident),+) => {
        impl<E: Dtype, D: Storage<E>, $($name: FusableLayers<E, D>),+> FusableLayers<E, D> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn cpu_layers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn CpuLayer<E>>) -> bool {
                let ($($name,)+) = self;
                $($name.cpu_layers(out))&&+
            }
        }
    };
}
tuple_impls!(A);
tuple_impls!(A, B);
tuple_impls!(A, B, C);
tuple_impls!(A, B, C, D2);
tuple_impls!(A, B, C, D2, F);
tuple_impls!(A, B, C, D2, F, G);

/// Runs `layers` forward from `x`: the last output and the backwards, in forward order.
fn forward_chain<E: Dtype + Real>(layers: &mut [&mut dyn CpuLayer<E>], x: &Act<E>) -> Result<(Act<E>, Vec<LayerBackward<E>>), CpuError> {
    let mut act = x.clone();
    let mut backs = Vec::with_capacity(layers.len());
    for layer in layers.iter_mut() {
        let (next, back) = layer.forward_train(&act)?;
        act = next;
        backs.push(back);
    }
    Ok((act, backs))
}

/// The backwards of a chain, last layer first, from the output gradient `dy`: the first
/// layer's input gradient is added into `dx`.
fn backward_chain<E: Dtype + Real>(
    backs: Vec<LayerBackward<E>>,
    dy: &mut [E],
    dx: &mut [E],
    grads: &mut Gradients<E, Cpu>,
) -> Result<(), CpuError> {
    let mut between: Option<Vec<E>> = None;
    for (i, back) in backs.into_iter().enumerate().rev() {
        let d_out: &mut [E] = match &mut between {
            Some(b) => b,
            None => &mut *dy,
        };
        if i == 0 {
            return (back.run)(d_out, dx, grads);
        }
        let mut d_in = zeros(back.input_len);
        (back.run)(d_out, &mut d_in, grads)?;
        between = Some(d_in);
    }
    add_into(dx, dy);
    Ok(())
}

/// `dst += src`, in parallel.
fn add_into<E: Real>(dst: &mut [E], src: &[E]) {
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

/// `relu(f(x) + r(x))`, with `r` the identity when `None`, as one op on the tape: the fused
/// form of `ResidualReLU` and `GeneralizedResidualReLU` in training. `x` is NCHW (rank 4);
/// `O` is the output's shape type (that of `f`'s output).
pub fn residual<S: Shape, O: Shape, E: Dtype + Real, T: Tape<E, Cpu>>(
    f: &mut [&mut dyn CpuLayer<E>],
    r: Option<&mut [&mut dyn CpuLayer<E>]>,
    x: Tensor<S, E, Cpu, T>,
) -> Result<Tensor<O, E, Cpu, T>, CpuError> {
    let dims = x.shape().concrete();
    let dims = dims.as_ref();
    if dims.len() != 4 || O::NUM_DIMS != 4 {
        return Err(CpuError::WrongNumElements);
    }
    let (x, mut tape) = x.split_tape();
    let input = Act { data: Arc::new(copied(&x)), shape: [dims[0], dims[1], dims[2], dims[3]] };
    let (a, f_back) = forward_chain(f, &input)?;
    let (b, r_back) = match r {
        Some(r) => {
            let (b, back) = forward_chain(r, &input)?;
            (b, Some(back))
        }
        None => (input.clone(), None),
    };
    drop(input);
    if a.shape != b.shape {
        return Err(CpuError::WrongNumElements);
    }
    // y = relu(a + b), and where it passes the gradient (a + b > 0), for the backward.
    let mut y = zeros::<E>(a.data.len());
    let mut pass = zeros::<u8>(a.data.len());
    y.par_chunks_mut(CHUNK).zip(pass.par_chunks_mut(CHUNK)).zip(a.data.par_chunks(CHUNK).zip(b.data.par_chunks(CHUNK))).for_each(
        |((y, pass), (a, b))| {
            simd::run(
                #[inline(always)]
                || {
                    for (((y, p), &a), &b) in y.iter_mut().zip(pass.iter_mut()).zip(a).zip(b) {
                        let s = a + b;
                        *y = s.max(E::zero());
                        *p = u8::from(s > E::zero());
                    }
                },
            )
        },
    );
    let mut concrete = O::Concrete::default();
    for (i, &d) in a.shape.iter().enumerate() {
        concrete[i] = d;
    }
    drop((a, b));
    let shape = O::from_concrete(&concrete).ok_or(CpuError::WrongNumElements)?;
    let out = x.device().try_tensor_from_vec(y, shape)?;
    if T::OWNS_TAPE {
        let (x_ghost, out_ghost) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let mut dy = take_grad!(grads, &out_ghost);
            dy.par_chunks_mut(CHUNK).zip(pass.par_chunks(CHUNK)).for_each(|(d, p)| {
                simd::run(
                    #[inline(always)]
                    || {
                        for (d, &p) in d.iter_mut().zip(p) {
                            *d = if p == 0 { E::zero() } else { *d };
                        }
                    },
                )
            });
            drop(pass);
            // The order of the unfused backward: the addition's (the shortcut's gradient into
            // x when it is the identity), then r's layers, then f's.
            let mut dx = take_grad!(grads, &x_ghost);
            match r_back {
                None => add_into(&mut dx, &dy),
                Some(r_back) => {
                    let mut dr = Vec::with_capacity(dy.len());
                    dr.par_extend(dy.par_iter().copied());
                    backward_chain(r_back, &mut dr, &mut dx, grads)?;
                }
            }
            backward_chain(f_back, &mut dy, &mut dx, grads)?;
            put_grad!(grads, &x_ghost, dx);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
