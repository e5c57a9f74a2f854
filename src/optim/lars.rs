//! LARS (You et al. 2017) as SimCLR uses it: momentum SGD whose step for each weight tensor is
//! scaled by the trust ratio eta * |w| / |g + wd w|. Biases and BatchNorm parameters (every
//! 1-D parameter) are excluded from weight decay and from the adaptation, as in SimCLR's code.

use std::marker::PhantomData;

use dfdx::nn::tensor_collection::{RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut};
use dfdx::optim::{Optimizer, OptimizerUpdateError};
use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};

use crate::nn::tape::to_vec;

/// LARS hyper-parameters (SimCLR: momentum 0.9, weight decay 1e-6, eta 0.001).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LarsConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub trust_coefficient: f64,
}

impl Default for LarsConfig {
    fn default() -> Self {
        LarsConfig { lr: 0.3, momentum: 0.9, weight_decay: 1e-6, trust_coefficient: 1e-3 }
    }
}

/// The optimiser (f32); build it for a model, set `cfg.lr` every step from a schedule.
pub struct Lars<M, E: Dtype> {
    pub cfg: LarsConfig,
    velocity: Gradients<E, Cpu>,
    marker: PhantomData<*const M>,
}

impl<M, E: Dtype> Lars<M, E> {
    /// A LARS optimiser for `model` (the model only fixes the type).
    pub fn new(_model: &M, cfg: LarsConfig) -> Self {
        Lars { cfg, velocity: Gradients::leaky(), marker: PhantomData }
    }
}

struct Step<'a, M, E: Dtype> {
    opt: &'a mut Lars<M, E>,
    grads: &'a Gradients<E, Cpu>,
}

impl<'a, M> TensorVisitor<f32, Cpu> for Step<'a, M, f32> {
    type Viewer = ViewTensorMut;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        p: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        let cfg = self.opt.cfg;
        let mut w = to_vec(p);
        let mut g: Vec<f64> = to_vec(&self.grads.get(p)).iter().map(|&v| v as f64).collect();
        let excluded = S::NUM_DIMS <= 1;
        let mut trust = 1.0;
        if !excluded {
            g.iter_mut().zip(&w).for_each(|(g, &w)| *g += cfg.weight_decay * w as f64);
            let wn = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            if wn > 0.0 && gn > 0.0 {
                trust = cfg.trust_coefficient * wn / gn;
            }
        }
        let v = self.opt.velocity.get_or_alloc_mut(p)?;
        let step = cfg.lr * trust;
        for ((wi, vi), gi) in w.iter_mut().zip(v.iter_mut()).zip(&g) {
            let nv = cfg.momentum * *vi as f64 + step * gi;
            *vi = nv as f32;
            *wi = (*wi as f64 - nv) as f32;
        }
        p.copy_from(&w);
        Ok(None)
    }
}

impl<M: TensorCollection<f32, Cpu>> Optimizer<M, Cpu, f32> for Lars<M, f32> {
    /// Updates every trainable parameter; `gradients` must hold one for each (as
    /// `alloc_grads` makes them).
    fn update(&mut self, module: &mut M, gradients: &Gradients<f32, Cpu>) -> Result<(), OptimizerUpdateError<CpuError>> {
        let mut step = Step { opt: self, grads: gradients };
        M::iter_tensors(&mut RecursiveWalker { m: module, f: &mut step }).map_err(OptimizerUpdateError::DeviceError)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_adapt_and_biases_do_not() {
        let dev = Cpu::seed_from_u64(0);
        let mut lin = dev.build_module::<dfdx::nn::builders::Linear<3, 2>, f32>();
        lin.weight.copy_from(&[1.0, 2.0, 2.0, 0.0, 0.0, 0.0]);
        lin.bias.copy_from(&[0.5, -0.5]);
        let x: Tensor<Rank2<1, 3>, f32, _> = dev.tensor([[1.0, 1.0, 1.0]]);
        let cfg = LarsConfig { lr: 0.5, momentum: 0.9, weight_decay: 0.1, trust_coefficient: 0.01 };
        let mut opt = Lars::new(&lin, cfg);
        let g = lin.forward(x.trace(lin.alloc_grads())).sum().backward();
        // d/dW = 1 everywhere, d/db = 1.
        opt.update(&mut lin, &g).unwrap();
        let w0 = [1.0, 2.0, 2.0, 0.0, 0.0, 0.0];
        let gw: Vec<f64> = w0.iter().map(|w| 1.0 + 0.1 * w).collect();
        let wn = w0.iter().map(|v| v * v).sum::<f64>().sqrt();
        let gn = gw.iter().map(|v| v * v).sum::<f64>().sqrt();
        let trust = 0.01 * wn / gn;
        for (i, (got, w)) in lin.weight.as_vec().iter().zip(w0).enumerate() {
            assert!((*got as f64 - (w - 0.5 * trust * gw[i])).abs() < 1e-6, "weight {i}");
        }
        // The bias: plain momentum SGD, no decay, no trust ratio.
        assert_eq!(lin.bias.as_vec(), vec![0.5 - 0.5, -0.5 - 0.5]);
        // Second step: momentum carries.
        let g = lin.forward(x.trace(lin.alloc_grads())).sum().backward();
        opt.update(&mut lin, &g).unwrap();
        assert!((lin.bias.as_vec()[0] - (0.0 - (0.9 * 0.5 + 0.5))).abs() < 1e-6);
    }
}
