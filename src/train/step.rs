//! One SimCLR optimisation step: forward both views, NT-Xent, backward, optimiser update.

use dfdx::optim::Optimizer;
use dfdx::prelude::*;

use crate::loss::nt_xent;

/// Input batch of `B` images with `C` channels (views 0..N then N..2N).
pub type Views<const C: usize> = Tensor<(usize, Const<C>, usize, usize), f32, Cpu>;
/// The taped input a model sees in training.
pub type TapedViews<const C: usize> = Tensor<(usize, Const<C>, usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>;

/// Runs one step and returns the loss; `grads` is reused from call to call.
pub fn simclr_step<const C: usize, const Z: usize, M, O>(
    model: &mut M,
    opt: &mut O,
    grads: &mut Option<Gradients<f32, Cpu>>,
    views: Views<C>,
    temperature: f64,
) -> f32
where
    M: ModuleMut<TapedViews<C>, Output = Tensor<(usize, Const<Z>), f32, Cpu, OwnedTape<f32, Cpu>>> + TensorCollection<f32, Cpu>,
    O: Optimizer<M, Cpu, f32>,
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
