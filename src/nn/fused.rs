//! Layers run back to back on the project's own buffers, as one op on dfdx's tape in training
//! and as one pass in evaluation (CPU): a residual block's convolutions and batch norms hand
//! their activations to each other directly instead of through dfdx tensors.
//!
//! Every dfdx tensor between two of the project's ops costs a single-threaded copy out of it
//! (dfdx 0.13 lends no view of a tensor's data), and in the backward a single-threaded,
//! zero-filled gradient buffer from dfdx. At two threads these were a sixth of the small
//! ResNet's training step (measured with `perf`, 2026-12-01), run on one core while the other
//! waited. Inside a fused op the activations and gradients are the project's pooled buffers
//! (`super::tape::buffer`), which the kernels write whole (the direct convolutions and batch
//! norm without a zero fill before); only the block's input and output cross into dfdx. The
//! numbers are the same bits as the layers run one by one (each layer calls the same kernels
//! in the same order; tested in `residual`).
//!
//! A layer takes part by implementing [`CpuLayer`] for the CPU and [`FusableLayers`] for every
//! device (on others it answers `false`, and the block runs layer by layer). Every layer inside
//! a residual block must implement [`FusableLayers`]; the project's layers that have no fused
//! form (ReLU, pooling, flatten) answer `false`, so a block holding one runs layer by layer.

use std::sync::Arc;

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};
use rayon::prelude::*;

use crate::simd;

use super::gemm::Real;
use super::relu::add_into;
use super::tape::{buffer, copied, put_grad, take_grad, zeros, Copied, Store};

/// Elements per parallel task of the element-wise loops.
const CHUNK: usize = 1 << 15;

/// An activation between fused layers: NCHW elements and their shape `[n, c, h, w]`, shared by
/// the layer that made it and the backward of the layer that reads it.
#[derive(Clone)]
pub struct Act<E: 'static + Send> {
    pub data: Arc<Copied<E>>,
    pub shape: [usize; 4],
}

/// The backward of one fused layer: given the output gradient (which it may overwrite), stores
/// the input gradient in `dx` (`input_len` elements) as the [`Store`] says, and adds the
/// parameter gradients into `Gradients`.
pub struct LayerBackward<E: Dtype> {
    pub input_len: usize,
    #[allow(clippy::type_complexity)]
    pub run: Box<dyn FnOnce(&mut [E], &mut [E], Store, &mut Gradients<E, Cpu>) -> Result<(), CpuError>>,
}

/// A layer that runs on the project's buffers.
pub trait CpuLayer<E: Dtype> {
    /// The forward of `Module` (evaluation: running statistics) on `x`.
    fn forward_eval(&self, x: &Act<E>) -> Result<Act<E>, CpuError>;
    /// The forward of `ModuleMut` (training: batch statistics, running statistics updated) on
    /// `x`, returning the output and its backward.
    fn forward_train(&mut self, x: &Act<E>) -> Result<(Act<E>, LayerBackward<E>), CpuError>;
}

/// A module made of layers that can run fused on the CPU: pushes them, in order, and answers
/// `true`; on another device, or with a layer that cannot, answers `false` (the default).
pub trait FusableLayers<E: Dtype, D: Storage<E>> {
    /// The layers, to train.
    fn cpu_layers<'a>(&'a mut self, _out: &mut Vec<&'a mut dyn CpuLayer<E>>) -> bool {
        false
    }
    /// The layers, to evaluate.
    fn cpu_layers_ref<'a>(&'a self, _out: &mut Vec<&'a dyn CpuLayer<E>>) -> bool {
        false
    }
}

/// The [`FusableLayers`] methods of a layer that is itself its [`CpuLayer`] (element type `E`).
macro_rules! fusable_as_itself {
    () => {
        fn cpu_layers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn $crate::nn::fused::CpuLayer<E>>) -> bool {
            out.push(self);
            true
        }
        fn cpu_layers_ref<'a>(&'a self, out: &mut Vec<&'a dyn $crate::nn::fused::CpuLayer<E>>) -> bool {
            out.push(self);
            true
        }
    };
}
pub(crate) use fusable_as_itself;

macro_rules! tuple_impls {
    ($($name:ident),+) => {
        impl<E: Dtype, D: Storage<E>, $($name: FusableLayers<E, D>),+> FusableLayers<E, D> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn cpu_layers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn CpuLayer<E>>) -> bool {
                let ($($name,)+) = self;
                $($name.cpu_layers(out))&&+
            }
            #[allow(non_snake_case)]
            fn cpu_layers_ref<'a>(&'a self, out: &mut Vec<&'a dyn CpuLayer<E>>) -> bool {
                let ($($name,)+) = self;
                $($name.cpu_layers_ref(out))&&+
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
/// layer's input gradient is added into `dx`. The gradients between layers are written into
/// pooled buffers (each has one part), each freed as soon as the layer before has used it.
fn backward_chain<E: Dtype + Real>(
    backs: Vec<LayerBackward<E>>,
    dy: Vec<E>,
    dx: &mut [E],
    grads: &mut Gradients<E, Cpu>,
) -> Result<(), CpuError> {
    let mut dy = Copied::unpooled(dy);
    for (i, back) in backs.into_iter().enumerate().rev() {
        if i == 0 {
            return (back.run)(&mut dy, dx, Store::Add, grads);
        }
        let mut d_in = buffer(back.input_len);
        (back.run)(&mut dy, &mut d_in, Store::Write, grads)?;
        dy = d_in;
    }
    add_into(dx, &dy);
    Ok(())
}

/// The layers' evaluation forwards from `x`.
fn eval_chain<E: Dtype + Real>(layers: &[&dyn CpuLayer<E>], x: &Act<E>) -> Result<Act<E>, CpuError> {
    let mut act = x.clone();
    for layer in layers {
        act = layer.forward_eval(&act)?;
    }
    Ok(act)
}

/// `relu(a + b)` (shapes checked), and where it passes the gradient (a + b > 0).
fn add_relu<E: Dtype + Real>(a: &Act<E>, b: &Act<E>) -> Result<(Vec<E>, Copied<u8>), CpuError> {
    if a.shape != b.shape {
        return Err(CpuError::WrongNumElements);
    }
    let mut y = zeros::<E>(a.data.len());
    let mut pass = buffer::<u8>(a.data.len());
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
    Ok((y, pass))
}

/// The NCHW dimensions of a rank-4 tensor, as a fused activation's shape.
fn dims4<S: Shape>(s: &S) -> Result<[usize; 4], CpuError> {
    match s.concrete().as_ref() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(CpuError::WrongNumElements),
    }
}

/// A rank-4 shape type's value from a fused activation's shape.
fn shape_of<O: Shape>(dims: [usize; 4]) -> Result<O, CpuError> {
    let mut concrete = O::Concrete::default();
    if O::NUM_DIMS != 4 {
        return Err(CpuError::WrongNumElements);
    }
    for (i, d) in dims.into_iter().enumerate() {
        concrete[i] = d;
    }
    O::from_concrete(&concrete).ok_or(CpuError::WrongNumElements)
}

/// `relu(f(x) + r(x))`, with `r` the identity when `None`, in evaluation (no tape): the fused
/// form of `ResidualReLU` and `GeneralizedResidualReLU`'s `forward`.
pub fn residual_eval<S: Shape, O: Shape, E: Dtype + Real>(
    f: &[&dyn CpuLayer<E>],
    r: Option<&[&dyn CpuLayer<E>]>,
    x: Tensor<S, E, Cpu>,
) -> Result<Tensor<O, E, Cpu>, CpuError> {
    let input = Act { data: Arc::new(copied(&x)), shape: dims4(x.shape())? };
    let dev = x.device().clone();
    drop(x);
    let a = eval_chain(f, &input)?;
    let b = match r {
        Some(r) => eval_chain(r, &input)?,
        None => input.clone(),
    };
    drop(input);
    let (y, _) = add_relu(&a, &b)?;
    dev.try_tensor_from_vec(y, shape_of(a.shape)?)
}

/// `relu(f(x) + r(x))`, with `r` the identity when `None`, as one op on the tape: the fused
/// form of `ResidualReLU` and `GeneralizedResidualReLU` in training. `x` is NCHW (rank 4);
/// `O` is the output's shape type (that of `f`'s output).
pub fn residual<S: Shape, O: Shape, E: Dtype + Real, T: Tape<E, Cpu>>(
    f: &mut [&mut dyn CpuLayer<E>],
    r: Option<&mut [&mut dyn CpuLayer<E>]>,
    x: Tensor<S, E, Cpu, T>,
) -> Result<Tensor<O, E, Cpu, T>, CpuError> {
    let shape = dims4(x.shape())?;
    let (x, mut tape) = x.split_tape();
    let input = Act { data: Arc::new(copied(&x)), shape };
    // The dfdx input is not read again: its data goes now, not after the block.
    let (dev, x_ghost) = (x.device().clone(), x.ghost());
    drop(x);
    let (a, f_back) = forward_chain(f, &input)?;
    let (b, r_back) = match r {
        Some(r) => {
            let (b, back) = forward_chain(r, &input)?;
            (b, Some(back))
        }
        None => (input.clone(), None),
    };
    drop(input);
    let (y, pass) = add_relu(&a, &b)?;
    let out = dev.try_tensor_from_vec(y, shape_of(a.shape)?)?;
    drop((a, b));
    if T::OWNS_TAPE {
        let out_ghost = out.ghost();
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
                    backward_chain(r_back, dr, &mut dx, grads)?;
                }
            }
            backward_chain(f_back, dy, &mut dx, grads)?;
            put_grad!(grads, &x_ghost, dx);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
