//! The update rules of [`super::Optim`] as tensor operations on the parameters' own device, so
//! that a GPU step moves no parameter, gradient or optimiser moment to the host: the moments
//! live beside the weights, and the weights change in place (`axpy`). The same formulas as the
//! host loop of `optimizer.rs` (LARS: You et al. 2017 as SimCLR's code writes it; SGD with
//! classic or Nesterov momentum as PyTorch; AdamW: Loshchilov and Hutter 2019, algorithm 2), in
//! float32 throughout where the host computes LARS's norms in float64: the two agree within
//! float rounding, tested on the CPU.

use std::any::Any;

use dfdx::prelude::*;

use super::optimizer::{OptimConfig, OptimizerKind};

/// One state buffer (a momentum or moment) of one parameter tensor, flat.
pub(super) type Flat<D> = Tensor<(usize,), f32, D>;

/// Where one state buffer lives: on the host (from a checkpoint, or the host update) or on the
/// device of its parameter.
pub(super) enum Buf {
    Host(Vec<f32>),
    Device(Box<dyn DeviceBuf>),
}

impl Buf {
    /// Its values on the host.
    pub(super) fn to_host(&self) -> Vec<f32> {
        match self {
            Buf::Host(v) => v.clone(),
            Buf::Device(b) => b.to_host(),
        }
    }
}

impl Clone for Buf {
    fn clone(&self) -> Self {
        match self {
            Buf::Host(v) => Buf::Host(v.clone()),
            Buf::Device(b) => Buf::Device(b.clone_box()),
        }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Buf::Host(v) => write!(f, "Host({} values)", v.len()),
            Buf::Device(b) => write!(f, "Device({} values)", b.len()),
        }
    }
}

/// A [`Flat`] buffer of some device, behind a type the optimiser can hold without naming it.
pub(super) trait DeviceBuf {
    fn to_host(&self) -> Vec<f32>;
    fn len(&self) -> usize;
    fn clone_box(&self) -> Box<dyn DeviceBuf>;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<D: Device<f32> + 'static> DeviceBuf for Flat<D> {
    fn to_host(&self) -> Vec<f32> {
        self.as_vec()
    }
    fn len(&self) -> usize {
        self.shape().0
    }
    fn clone_box(&self) -> Box<dyn DeviceBuf> {
        Box::new(self.clone())
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Takes buffer `index` of `bufs` onto `dev` as `n` values: uploaded once if it is on the host
/// (a resumed run), zeros if there is none yet or it has another length.
pub(super) fn take<D: Device<f32> + 'static>(bufs: &mut Vec<Buf>, index: usize, dev: &D, n: usize) -> Result<Flat<D>, D::Err> {
    if bufs.len() <= index {
        bufs.resize(index + 1, Buf::Host(Vec::new()));
    }
    let on_device = match std::mem::replace(&mut bufs[index], Buf::Host(Vec::new())) {
        Buf::Host(v) if v.len() == n => Some(dev.try_tensor_from_vec(v, (n,))?),
        Buf::Device(b) if b.len() == n => b.into_any().downcast::<Flat<D>>().ok().map(|t| *t),
        _ => None,
    };
    match on_device {
        Some(t) => Ok(t),
        None => dev.try_zeros_like(&(n,)),
    }
}

/// Puts buffer `index` back after an update.
pub(super) fn put<D: Device<f32> + 'static>(bufs: &mut [Buf], index: usize, t: Flat<D>) {
    bufs[index] = Buf::Device(Box::new(t));
}

/// One LARS or SGD update of `p` from its gradient `g` and momentum `v` (updated in place) at
/// rate `lr`; `matrix`: weight decay (L2, added to the gradient) and, under LARS, the trust
/// ratio eta |w| / |g + wd w| apply (not to biases and BatchNorm parameters).
pub(super) fn momentum_step<S: Shape, D: Device<f32>>(
    cfg: &OptimConfig,
    lr: f64,
    matrix: bool,
    p: &mut Tensor<S, f32, D>,
    g: Tensor<S, f32, D>,
    v: &mut Flat<D>,
) -> Result<(), D::Err> {
    let n = p.shape().num_elements();
    let mut g = g.try_reshape_like(&(n,))?;
    let wd = if matrix { cfg.weight_decay } else { 0.0 };
    let mut trust = None;
    {
        let w = p.clone().try_reshape_like(&(n,))?;
        if wd > 0.0 {
            g.try_axpy(1.0, &w, wd)?;
        }
        if cfg.kind == OptimizerKind::Lars && matrix {
            let wn = w.try_square()?.try_sum::<Rank0, _>()?.try_sqrt()?;
            let gn = g.clone().try_square()?.try_sum::<Rank0, _>()?.try_sqrt()?;
            // eta |w| / |g| where both norms are positive, else 1 (a zero tensor, a zero gradient).
            let both = wn.clone().try_minimum(gn.clone())?.try_gt(0.0)?;
            let ratio = wn.try_mul(cfg.trust_coefficient as f32)?.try_div(gn)?;
            trust = Some(both.try_choose(ratio, p.device().try_ones()?)?);
        }
    }
    let m = cfg.momentum;
    match (cfg.kind, trust) {
        (OptimizerKind::Lars, trust) => {
            // SimCLR's LARS: the rate (and trust ratio) sits inside the momentum buffer.
            let scaled = match trust {
                Some(t) => g.try_mul(t.try_broadcast_like(&(n,))?)?,
                None => g,
            };
            v.try_axpy(m, &scaled, lr)?;
            p.try_axpy(1.0, &v.clone().try_reshape_like(p.shape())?, -1.0)
        }
        _ => {
            v.try_axpy(m, &g, 1.0)?;
            let d = if cfg.nesterov {
                let mut d = g;
                d.try_axpy(1.0, &*v, m)?;
                d
            } else {
                v.clone()
            };
            p.try_axpy(1.0, &d.try_reshape_like(p.shape())?, -lr)
        }
    }
}

/// One AdamW update of `p` from `g`, its moments `m1` and `m2` (updated in place): the first
/// moment's correction folded into `step` = lr / (1 - beta1^t), the second's as `inv_c2` =
/// 1 / (1 - beta2^t), decoupled decay as the factor `decay` = 1 - lr wd.
#[allow(clippy::too_many_arguments)]
pub(super) fn adamw_step<S: Shape, D: Device<f32>>(
    cfg: &OptimConfig,
    step: f32,
    inv_c2: f32,
    decay: f32,
    p: &mut Tensor<S, f32, D>,
    g: Tensor<S, f32, D>,
    m1: &mut Flat<D>,
    m2: &mut Flat<D>,
) -> Result<(), D::Err> {
    let n = p.shape().num_elements();
    let g = g.try_reshape_like(&(n,))?;
    let (b1, b2) = cfg.betas;
    m1.try_axpy(b1 as f32, &g, (1.0 - b1) as f32)?;
    m2.try_axpy(b2 as f32, &g.clone().try_square()?, (1.0 - b2) as f32)?;
    let denom = m2.clone().try_mul(inv_c2)?.try_sqrt()?.try_add(cfg.eps as f32)?;
    let update = m1.clone().try_div(denom)?;
    p.try_axpy(decay, &update.try_reshape_like(p.shape())?, -step)
}
