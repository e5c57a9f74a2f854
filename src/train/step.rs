//! One SimCLR optimisation step with a dfdx optimiser (the step benchmarks): forward both
//! views, NT-Xent, backward, update. On any device.

use dfdx::optim::Optimizer;
use dfdx::prelude::*;

use crate::loss::nt_xent;
use crate::nn::NnDevice;

/// Input batch of `B` images with `C` channels (views 0..N then N..2N).
pub type Views<const C: usize, D = Cpu> = Tensor<(usize, Const<C>, usize, usize), f32, D>;
/// The taped input a model sees in training.
pub type TapedViews<const C: usize, D = Cpu> = Tensor<(usize, Const<C>, usize, usize), f32, D, OwnedTape<f32, D>>;

/// Runs one step and returns the loss (which waits for the device); `grads` is reused from
/// call to call.
pub fn simclr_step<const C: usize, const Z: usize, D, M, O>(
    model: &mut M,
    opt: &mut O,
    grads: &mut Option<Gradients<f32, D>>,
    views: Views<C, D>,
    temperature: f64,
) -> f32
where
    D: NnDevice,
    M: ModuleMut<TapedViews<C, D>, Output = Tensor<(usize, Const<Z>), f32, D, OwnedTape<f32, D>>> + TensorCollection<f32, D>,
    O: Optimizer<M, D, f32>,
{
    let g = grads.take().unwrap_or_else(|| model.alloc_grads());
    let z = model.forward_mut(views.trace(g));
    let loss = nt_xent(z, temperature);
    let value = loss.array();
    let mut g = loss.backward();
    opt.update(model, &g).expect("every parameter has a gradient");
    model.zero_grads(&mut g);
    *grads = Some(g);
    value
}
