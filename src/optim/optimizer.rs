//! The optimisers of a run, over any dfdx module: LARS (You et al. 2017, as SimCLR uses it),
//! SGD with classic or Nesterov momentum, and AdamW (decoupled weight decay).
//!
//! Every 1-D parameter (biases, BatchNorm scales and shifts) is excluded from weight decay, and
//! under LARS from the trust-ratio adaptation too, as in SimCLR's and solo-learn's code. The
//! state (momentum buffers, Adam moments, step count) is plain data so a checkpoint can hold it
//! and a resumed run continues exactly. dfdx's own optimisers keep it private and decay every
//! parameter, so they are not used for training.
//!
//! On the CPU the update is a loop over host memory. On a GPU it runs as tensor operations on
//! the device (`resident.rs`), the moments kept there beside the weights, so that a step moves
//! no parameter or moment between host and device; a checkpoint downloads them (same format).

use dfdx::nn::tensor_collection::{RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut};
use std::any::{Any, TypeId};

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::resident::{self, Buf};
use crate::error::{Error, Result};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// LARS: momentum SGD whose step per weight tensor is scaled by eta |w| / |g + wd w|.
    Lars,
    /// SGD with momentum (classic or Nesterov, PyTorch's formulation), L2 weight decay.
    Sgd,
    /// Adam with decoupled weight decay (Loshchilov and Hutter 2019).
    AdamW,
}

/// Hyper-parameters of an [`Optim`]; `lr` is set every step from a schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub trust_coefficient: f64,
    pub betas: (f64, f64),
    pub eps: f64,
}

impl Default for OptimConfig {
    /// SimCLR's LARS: momentum 0.9, weight decay 1e-6, eta 0.001.
    fn default() -> Self {
        OptimConfig {
            kind: OptimizerKind::Lars,
            lr: 0.3,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-6,
            trust_coefficient: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
        }
    }
}

/// An optimiser with its state: one or two buffers per trainable tensor, in the module's
/// visiting order.
#[derive(Clone, Debug)]
pub struct Optim {
    pub cfg: OptimConfig,
    /// Momentum (LARS, SGD) or Adam's first moment, per parameter tensor.
    first: Vec<Buf>,
    /// Adam's second moment (empty otherwise).
    second: Vec<Buf>,
    /// Updates taken so far.
    steps: u64,
    /// Where the update runs: `None` by the parameters' device (the host loop for the CPU,
    /// device tensor operations for any other).
    on_device: Option<bool>,
}

impl Optim {
    pub fn new(cfg: OptimConfig) -> Self {
        Optim { cfg, first: Vec::new(), second: Vec::new(), steps: 0, on_device: None }
    }

    /// The same optimiser, its update made as device tensor operations (`true`) or as the
    /// host loop (`false`) whatever the device: to test one against the other on the CPU.
    pub fn updating_on_device(mut self, yes: bool) -> Self {
        self.on_device = Some(yes);
        self
    }

    /// Updates every trainable tensor of `module` from `grads` (one gradient each, as
    /// `alloc_grads` makes them). Tensors that are not trainable (BatchNorm running statistics)
    /// are left alone.
    /// A device failure is returned (the tensors after the failing one keep their values).
    pub fn update<D: Device<f32>, M: TensorCollection<f32, D>>(&mut self, module: &mut M, grads: &Gradients<f32, D>) -> Result<(), D::Err>
    where
        D::Err: 'static,
    {
        let mut u = self.begin();
        u.module(module, grads);
        u.finish()
    }

    /// Starts one update of several parts (a backbone, then heads of run-time width): each
    /// part passes its tensors to the [`Update`] in a fixed order, so the state lines up from
    /// step to step and across a resume.
    pub fn begin(&mut self) -> Update<'_> {
        self.steps += 1;
        Update { opt: self, index: 0, source: Source::Gradients, error: None }
    }

    /// Starts a pass that changes nothing and collects the gradients, flattened in the order
    /// an update visits them ([`Update::into_collected`]); with the sum over ranks of that,
    /// [`Optim::begin_from`] makes the update (data-parallel training).
    pub fn collect(&mut self) -> Update<'_> {
        Update { opt: self, index: 0, source: Source::Collect(Vec::new()), error: None }
    }

    /// Starts an update whose gradients are read from `flat` (as [`Optim::collect`] laid them
    /// out) instead of from the `Gradients` passed along.
    pub fn begin_from(&mut self, flat: Vec<f32>) -> Update<'_> {
        self.steps += 1;
        Update { opt: self, index: 0, source: Source::Flat(flat, 0), error: None }
    }

    /// One update of the parts `visit` passes to the [`Update`], if `finite` (the loss was).
    /// Data-parallel ([`crate::dist`]): the gradients are first summed over ranks (each rank
    /// backpropagated its share of the global loss, so the sum is the global loss's gradient),
    /// in one collective that also tells every rank whether any rank's loss was not finite;
    /// then every rank updates, or none does. `visit` is called once per pass with the same
    /// parts in the same order. Whether the update was made, or the device's error `E` (the
    /// `D::Err` of the parameters' device).
    pub fn apply<E: 'static>(&mut self, finite: bool, mut visit: impl FnMut(&mut Update)) -> Result<bool, E> {
        let Some(group) = crate::dist::current() else {
            if finite {
                let mut u = self.begin();
                visit(&mut u);
                u.finish::<E>()?;
            }
            return Ok(finite);
        };
        let mut collect = self.collect();
        visit(&mut collect);
        let mut flat = collect.into_collected::<E>()?;
        flat.push(if finite { 0.0 } else { 1.0 });
        group.all_reduce_sum(&mut flat);
        let all_finite = flat.pop() == Some(0.0);
        if all_finite {
            let mut u = self.begin_from(flat);
            visit(&mut u);
            u.finish::<E>()?;
        }
        Ok(all_finite)
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The state as named buffers (for a checkpoint) and the step count.
    pub fn state(&self) -> (Vec<(String, Vec<f32>)>, u64) {
        let named = |prefix: &str, bufs: &[Buf]| -> Vec<(String, Vec<f32>)> {
            bufs.iter().enumerate().map(|(i, b)| (format!("{prefix}.{i}"), b.to_host())).collect()
        };
        let mut out = named("first", &self.first);
        out.extend(named("second", &self.second));
        (out, self.steps)
    }

    /// Restores a state saved with [`Optim::state`].
    pub fn set_state(&mut self, named: Vec<(String, Vec<f32>)>, steps: u64) -> Result<()> {
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for (name, buf) in named {
            let (which, index) = name.split_once('.').ok_or_else(|| Error::invalid("optimizer state", format!("bad entry '{name}'")))?;
            let index: usize = index.parse().map_err(|_| Error::invalid("optimizer state", format!("bad entry '{name}'")))?;
            let list = match which {
                "first" => &mut first,
                "second" => &mut second,
                _ => return Err(Error::invalid("optimizer state", format!("bad entry '{name}'"))),
            };
            if list.len() <= index {
                list.resize(index + 1, Buf::Host(Vec::new()));
            }
            list[index] = Buf::Host(buf);
        }
        self.first = first;
        self.second = second;
        self.steps = steps;
        Ok(())
    }
}

/// One optimiser update in progress (see [`Optim::begin`]); [`Update::finish`] says whether a
/// device failed during it.
#[must_use = "a device error is only reported by `finish` (or `Optim::apply`)"]
pub struct Update<'a> {
    opt: &'a mut Optim,
    index: usize,
    source: Source,
    /// The first device error (a `D::Err`); the tensors after it are left alone.
    error: Option<Box<dyn Any>>,
}

/// Where an [`Update`] reads gradients from.
enum Source {
    /// The `Gradients` of each call.
    Gradients,
    /// Nowhere: the pass only appends them here.
    Collect(Vec<f32>),
    /// A flat buffer and the position of the next tensor's gradient in it.
    Flat(Vec<f32>, usize),
}

impl Update<'_> {
    /// The gradients a [`Optim::collect`] pass gathered (empty for an update), or the device
    /// error that stopped it.
    pub fn into_collected<E: 'static>(mut self) -> Result<Vec<f32>, E> {
        self.take_error()?;
        Ok(match self.source {
            Source::Collect(v) => v,
            _ => Vec::new(),
        })
    }

    /// Ends the pass: the device error `E` that stopped it, if one did.
    pub fn finish<E: 'static>(mut self) -> Result<(), E> {
        self.take_error()
    }

    fn take_error<E: 'static>(&mut self) -> Result<(), E> {
        match self.error.take().map(|e| e.downcast::<E>()) {
            None => Ok(()),
            Some(Ok(e)) => Err(*e),
            Some(Err(_)) => panic!("an optimiser update of one device finished as another's ({})", std::any::type_name::<E>()),
        }
    }

    /// Updates every trainable tensor of a dfdx module, in its visiting order.
    pub fn module<D: Device<f32>, M: TensorCollection<f32, D>>(&mut self, module: &mut M, grads: &Gradients<f32, D>)
    where
        D::Err: 'static,
    {
        let mut v = Visit { update: self, grads };
        if let Err(e) = M::iter_tensors(&mut RecursiveWalker { m: module, f: &mut v }) {
            self.fail(e);
        }
    }

    fn fail<E: 'static>(&mut self, e: E) {
        if self.error.is_none() {
            self.error = Some(Box::new(e));
        }
    }

    /// Updates one trainable tensor `p` from its gradient in `grads`. Tensors of more than one
    /// dimension are weights (weight decay, LARS trust ratio); 1-D ones are biases and
    /// BatchNorm parameters (neither).
    /// A device failure is kept for [`Update::finish`] and the remaining tensors are skipped.
    pub fn tensor<S: Shape, D: Device<f32>>(&mut self, p: &mut Tensor<S, f32, D>, grads: &Gradients<f32, D>)
    where
        D::Err: 'static,
    {
        if self.error.is_some() {
            return;
        }
        let on_device = self.opt.on_device.unwrap_or_else(|| TypeId::of::<D>() != TypeId::of::<Cpu>());
        let g = match &mut self.source {
            Source::Gradients if on_device => Grad::Device(grads.get(p)),
            Source::Gradients => Grad::Host(grads.get(p).as_vec()),
            Source::Collect(all) => {
                all.extend(grads.get(p).as_vec());
                return;
            }
            Source::Flat(all, at) => {
                let n = p.shape().num_elements();
                *at += n;
                Grad::Host(all[*at - n..*at].to_vec())
            }
        };
        let index = self.index;
        self.index += 1;
        if !on_device {
            let g = match g {
                Grad::Host(g) => g,
                Grad::Device(t) => t.as_vec(),
            };
            return self.host_update(index, p, g);
        }
        if let Err(e) = self.device_update(index, p, g) {
            self.fail(e);
        }
    }

    /// The update of tensor `index` as tensor operations on its device (`resident.rs`).
    fn device_update<S: Shape, D: Device<f32>>(&mut self, index: usize, p: &mut Tensor<S, f32, D>, g: Grad<S, D>) -> Result<(), D::Err> {
        let dev = p.device().clone();
        let n = p.shape().num_elements();
        let g = match g {
            Grad::Device(t) => t,
            Grad::Host(v) => dev.try_tensor_from_vec(v, *p.shape())?,
        };
        let cfg = self.opt.cfg;
        let matrix = S::NUM_DIMS > 1;
        let opt = &mut *self.opt;
        // The buffers go back whatever happens, so a failed update leaves no hole in the state.
        let mut first = resident::take(&mut opt.first, index, &dev, n)?;
        let done = if cfg.kind == OptimizerKind::AdamW {
            let (step, inv_c2, decay) = adam_factors(&cfg, opt.steps, matrix);
            match resident::take(&mut opt.second, index, &dev, n) {
                Ok(mut second) => {
                    let done = resident::adamw_step(&cfg, step, inv_c2, decay, p, g, &mut first, &mut second);
                    resident::put(&mut opt.second, index, second);
                    done
                }
                Err(e) => Err(e),
            }
        } else {
            resident::momentum_step(&cfg, cfg.lr, matrix, p, g, &mut first)
        };
        resident::put(&mut opt.first, index, first);
        done
    }

    /// The update of tensor `index` as a loop over host memory.
    fn host_update<S: Shape, D: Device<f32>>(&mut self, index: usize, p: &mut Tensor<S, f32, D>, mut g: Vec<f32>) {
        let cfg = self.opt.cfg;
        let mut w = p.as_vec();
        // Biases and BatchNorm parameters: no weight decay, no trust ratio.
        let matrix = S::NUM_DIMS > 1;
        let wd = if matrix { cfg.weight_decay } else { 0.0 };
        match cfg.kind {
            OptimizerKind::Lars | OptimizerKind::Sgd => {
                if wd > 0.0 {
                    g.iter_mut().zip(&w).for_each(|(g, &w)| *g += (wd * w as f64) as f32);
                }
                let mut lr = cfg.lr;
                if cfg.kind == OptimizerKind::Lars && matrix {
                    let wn = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                    let gn = g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                    if wn > 0.0 && gn > 0.0 {
                        lr *= cfg.trust_coefficient * wn / gn;
                    }
                }
                let v = slot(&mut self.opt.first, index, w.len());
                let (m, lr) = (cfg.momentum as f32, lr as f32);
                for ((wi, vi), &gi) in w.iter_mut().zip(v.iter_mut()).zip(&g) {
                    if cfg.kind == OptimizerKind::Lars {
                        // SimCLR's LARS: the rate sits inside the momentum buffer.
                        *vi = m * *vi + lr * gi;
                        *wi -= *vi;
                    } else {
                        *vi = m * *vi + gi;
                        let d = if cfg.nesterov { gi + m * *vi } else { *vi };
                        *wi -= lr * d;
                    }
                }
            }
            OptimizerKind::AdamW => {
                let (b1, b2) = cfg.betas;
                let (step, inv_c2, decay) = adam_factors(&cfg, self.opt.steps, matrix);
                let m = slot(&mut self.opt.first, index, w.len());
                m.iter_mut().zip(&g).for_each(|(m, &g)| *m = b1 as f32 * *m + (1.0 - b1) as f32 * g);
                let m = m.clone();
                let v = slot(&mut self.opt.second, index, w.len());
                let eps = cfg.eps as f32;
                for (((wi, vi), &gi), &mi) in w.iter_mut().zip(v.iter_mut()).zip(&g).zip(&m) {
                    *vi = b2 as f32 * *vi + (1.0 - b2) as f32 * gi * gi;
                    *wi = *wi * decay - step * mi / ((*vi * inv_c2).sqrt() + eps);
                }
            }
        }
        p.copy_from(&w);
    }
}

/// A parameter's gradient: still on its device, or on the host (summed over ranks).
enum Grad<S: Shape, D: Device<f32>> {
    Device(Tensor<S, f32, D>),
    Host(Vec<f32>),
}

/// AdamW's factors at update `t` (1-based): the step lr / (1 - beta1^t), the second moment's
/// correction 1 / (1 - beta2^t), and the decoupled decay 1 - lr wd (1 for 1-D tensors).
fn adam_factors(cfg: &OptimConfig, t: u64, matrix: bool) -> (f32, f32, f32) {
    let (b1, b2) = cfg.betas;
    let t = t as i32;
    let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let wd = if matrix { cfg.weight_decay } else { 0.0 };
    ((cfg.lr / c1) as f32, (1.0 / c2) as f32, (1.0 - cfg.lr * wd) as f32)
}

/// Host buffer `index` of `bufs` as `len` values (downloaded if it was on a device, zeros if
/// there is none yet or it has another length).
fn slot(bufs: &mut Vec<Buf>, index: usize, len: usize) -> &mut Vec<f32> {
    if bufs.len() <= index {
        bufs.resize(index + 1, Buf::Host(Vec::new()));
    }
    let b = &mut bufs[index];
    if let Buf::Device(d) = b {
        *b = Buf::Host(d.to_host());
    }
    let Buf::Host(v) = b else { unreachable!("made a host buffer above") };
    if v.len() != len {
        *v = vec![0.0; len];
    }
    v
}

struct Visit<'a, 'b, D: Storage<f32>> {
    update: &'a mut Update<'b>,
    grads: &'a Gradients<f32, D>,
}

impl<D: Device<f32>> TensorVisitor<f32, D> for Visit<'_, '_, D>
where
    D::Err: 'static,
{
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = f32;
    type D2 = D;

    fn visit<S: Shape>(&mut self, opts: TensorOptions<S, f32, D>, p: &mut Tensor<S, f32, D>) -> Result<Option<Tensor<S, f32, D>>, D::Err> {
        if opts.do_gradient_update {
            self.update.tensor(p, self.grads);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::nn::builders::Linear;

    /// A 3 -> 2 linear layer with known weights, and the gradients of sum(W x + b) at x = 1
    /// (1 everywhere).
    fn setup() -> (Cpu, dfdx::nn::modules::Linear<3, 2, f32, Cpu>, Tensor<Rank2<1, 3>, f32, Cpu>) {
        let dev = Cpu::seed_from_u64(0);
        let mut lin = dev.build_module::<Linear<3, 2>, f32>();
        lin.weight.copy_from(&[1.0, 2.0, 2.0, 0.0, 0.0, 0.0]);
        lin.bias.copy_from(&[0.5, -0.5]);
        let x = dev.tensor([[1.0, 1.0, 1.0]]);
        (dev, lin, x)
    }

    fn step(opt: &mut Optim, lin: &mut dfdx::nn::modules::Linear<3, 2, f32, Cpu>, x: &Tensor<Rank2<1, 3>, f32, Cpu>) {
        let g = lin.forward(x.trace(lin.alloc_grads())).sum().backward();
        opt.update(lin, &g).unwrap();
    }

    #[test]
    fn lars_adapts_weights_and_not_biases() {
        let (_dev, mut lin, x) = setup();
        let mut opt = Optim::new(OptimConfig { lr: 0.5, momentum: 0.9, weight_decay: 0.1, trust_coefficient: 0.01, ..Default::default() });
        step(&mut opt, &mut lin, &x);
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
        step(&mut opt, &mut lin, &x);
        assert!((lin.bias.as_vec()[0] - (0.0 - (0.9 * 0.5 + 0.5))).abs() < 1e-6);
    }

    #[test]
    fn sgd_nesterov_and_adamw_follow_pytorch() {
        // SGD, Nesterov, no decay: v1 = g = 1, w1 = w0 - lr (g + m v1); v2 = m + 1, w2 = w1 - lr (1 + m v2).
        let (_dev, mut lin, x) = setup();
        let cfg = OptimConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0, ..Default::default() };
        let mut opt = Optim::new(cfg);
        step(&mut opt, &mut lin, &x);
        step(&mut opt, &mut lin, &x);
        let want = 0.5 - 0.1 * (1.0 + 0.9) - 0.1 * (1.0 + 0.9 * 1.9);
        assert!((lin.bias.as_vec()[0] - want).abs() < 1e-6);
        // AdamW: the first step moves every parameter by lr (|m_hat / sqrt(v_hat)| = 1), and
        // matrices also decay by lr * wd * w; biases do not.
        let (_dev, mut lin, x) = setup();
        let cfg = OptimConfig { kind: OptimizerKind::AdamW, lr: 0.01, weight_decay: 0.5, ..Default::default() };
        let mut opt = Optim::new(cfg);
        step(&mut opt, &mut lin, &x);
        assert!((lin.bias.as_vec()[0] - (0.5 - 0.01)).abs() < 1e-6);
        assert!((lin.weight.as_vec()[1] - (2.0 * (1.0 - 0.005) - 0.01)).abs() < 1e-6);
    }

    #[test]
    fn state_round_trips_and_resumes_exactly() {
        for kind in [OptimizerKind::Lars, OptimizerKind::Sgd, OptimizerKind::AdamW] {
            let cfg = OptimConfig { kind, lr: 0.05, weight_decay: 0.01, ..Default::default() };
            let (_dev, mut a, x) = setup();
            let mut oa = Optim::new(cfg);
            step(&mut oa, &mut a, &x);
            let (state, steps) = oa.state();
            let mut b = a.clone();
            let mut ob = Optim::new(cfg);
            ob.set_state(state, steps).unwrap();
            step(&mut oa, &mut a, &x);
            step(&mut ob, &mut b, &x);
            assert_eq!(a.weight.as_vec(), b.weight.as_vec(), "{kind:?}");
            assert_eq!(a.bias.as_vec(), b.bias.as_vec(), "{kind:?}");
        }
    }

    /// `apply` on 2 thread ranks, each with its rows' gradient, makes the update one process
    /// makes with all rows (SGD with momentum and decay, LARS, AdamW; two steps, so the state
    /// follows); one rank's non-finite loss stops the update on every rank.
    #[test]
    fn apply_sums_the_ranks_gradients_and_every_rank_skips_a_non_finite_step() {
        let rows = [[1.0f32, 2.0, 3.0], [-1.0, 0.5, 2.0]];
        for kind in [OptimizerKind::Lars, OptimizerKind::Sgd, OptimizerKind::AdamW] {
            let cfg = OptimConfig { kind, lr: 0.05, weight_decay: 0.01, ..Default::default() };
            let (dev, mut one, _) = setup();
            let mut o = Optim::new(cfg);
            let both = dev.tensor(rows);
            for _ in 0..2 {
                let g = one.forward(both.trace(one.alloc_grads())).sum().backward();
                assert!(o.apply::<CpuError>(true, |u| u.module(&mut one, &g)).unwrap());
            }
            let out = crate::dist::threads::run(2, |rank| {
                let (dev, mut lin, _) = setup();
                let mut o = Optim::new(cfg);
                let x = dev.tensor([rows[rank]]);
                for _ in 0..2 {
                    let g = lin.forward(x.trace(lin.alloc_grads())).sum().backward();
                    assert!(o.apply::<CpuError>(true, |u| u.module(&mut lin, &g)).unwrap());
                }
                let before = lin.weight.as_vec();
                let g = lin.forward(x.trace(lin.alloc_grads())).sum().backward();
                let applied = o.apply::<CpuError>(rank == 0, |u| u.module(&mut lin, &g)).unwrap();
                (before, lin.weight.as_vec(), lin.bias.as_vec(), applied)
            });
            for (before, weight, bias, applied) in out {
                for (a, b) in before.iter().zip(one.weight.as_vec()) {
                    assert!((a - b).abs() < 1e-6, "{kind:?}: {a} vs {b}");
                }
                assert_eq!(weight, before, "{kind:?}: no rank updates after a non-finite loss on one");
                assert!(!applied);
                for (a, b) in bias.iter().zip(one.bias.as_vec()) {
                    assert!((a - b).abs() < 1e-6, "{kind:?}: bias {a} vs {b}");
                }
            }
        }
    }

    /// A bias followed by ReLU (a bias right before BatchNorm has a gradient of rounding noise,
    /// which Adam's normalisation turns into a full step of either sign).
    type Net = (dfdx::nn::modules::Linear<4, 6, f32, Cpu>, dfdx::nn::modules::ReLU, dfdx::nn::modules::BatchNorm1D<6, f32, Cpu>, dfdx::nn::modules::Linear<6, 3, f32, Cpu>);

    fn params(n: &Net) -> Vec<(&'static str, Vec<f32>)> {
        vec![
            ("weight 0", n.0.weight.as_vec()),
            ("bias 0", n.0.bias.as_vec()),
            ("bn scale", n.2.scale.as_vec()),
            ("bn bias", n.2.bias.as_vec()),
            ("bn running mean", n.2.running_mean.as_vec()),
            ("weight 3", n.3.weight.as_vec()),
            ("bias 3", n.3.bias.as_vec()),
        ]
    }

    /// `steps` updates of a net (matrices, biases, BatchNorm) by `opt`, on batches of seed 7.
    fn train(net: &mut Net, opt: &mut Optim, steps: u64) {
        let dev = Cpu::seed_from_u64(7 + opt.steps());
        for _ in 0..steps {
            let x: Tensor<Rank2<5, 4>, f32, _> = dev.sample_normal();
            let y = net.forward_mut(x.trace(net.alloc_grads()));
            let g = y.square().mean().backward();
            opt.update(net, &g).unwrap();
        }
    }

    /// Within 1e-6 of each tensor's largest value.
    fn assert_close(a: &[(&str, Vec<f32>)], b: &[(&str, Vec<f32>)], what: &str) {
        for ((name, x), (_, y)) in a.iter().zip(b) {
            let scale = y.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() <= 1e-6 * scale, "{what}, {name}: {p} (on the device) vs {q} (host)");
            }
        }
    }

    /// The update made as device tensor operations (as on a GPU) against the host loop, on the
    /// CPU: every optimiser, with decay on matrices only and LARS's trust ratio, over 4 steps;
    /// the state reads back alike, and a device optimiser resumes from a host state.
    #[test]
    fn updates_on_the_device_equal_the_host_loop() {
        let configs = [
            OptimConfig { lr: 0.5, weight_decay: 0.1, trust_coefficient: 0.01, ..Default::default() },
            OptimConfig { kind: OptimizerKind::Sgd, lr: 0.1, weight_decay: 0.01, ..Default::default() },
            OptimConfig { kind: OptimizerKind::Sgd, lr: 0.1, nesterov: true, weight_decay: 0.0, ..Default::default() },
            OptimConfig { kind: OptimizerKind::AdamW, lr: 0.01, weight_decay: 0.05, ..Default::default() },
        ];
        for cfg in configs {
            let what = format!("{:?} nesterov {} wd {}", cfg.kind, cfg.nesterov, cfg.weight_decay);
            let dev = Cpu::seed_from_u64(0);
            let start: Net = dev.build_module::<(Linear<4, 6>, dfdx::nn::builders::ReLU, dfdx::nn::builders::BatchNorm1D<6>, Linear<6, 3>), f32>();
            let mut start = start;
            if cfg.kind == OptimizerKind::Lars {
                // A zero matrix: LARS's trust ratio falls back to 1 there (|w| = 0).
                start.3.weight = dev.zeros();
            }
            let (mut host, mut device) = (start.clone(), start.clone());
            let mut oh = Optim::new(cfg).updating_on_device(false);
            let mut od = Optim::new(cfg).updating_on_device(true);
            train(&mut host, &mut oh, 4);
            train(&mut device, &mut od, 4);
            assert_ne!(params(&host), params(&start), "{what}: trained");
            assert_close(&params(&device), &params(&host), &what);
            let ((sd, nd), (sh, nh)) = (od.state(), oh.state());
            assert_eq!((nd, sd.len()), (nh, sh.len()), "{what}");
            let named = |s: &[(String, Vec<f32>)]| s.iter().map(|(_, v)| ("state", v.clone())).collect::<Vec<_>>();
            assert_close(&named(&sd), &named(&sh), &format!("{what}, state"));
            // A run resumed from a host state (a checkpoint) continues on the device.
            let mut resumed = host.clone();
            let mut or = Optim::new(cfg).updating_on_device(true);
            or.set_state(sh, nh).unwrap();
            train(&mut resumed, &mut or, 2);
            train(&mut host, &mut oh, 2);
            assert_close(&params(&resumed), &params(&host), &format!("{what}, resumed"));
        }
    }

    #[test]
    fn frozen_statistics_are_not_touched() {
        let dev = Cpu::seed_from_u64(0);
        let mut bn = dev.build_module::<crate::nn::builders::BatchNorm2D<2>, f32>();
        let x: Tensor<Rank4<2, 2, 3, 3>, f32, _> = dev.sample_normal();
        let g = bn.forward_mut(x.trace(bn.alloc_grads())).sum().backward();
        let before = bn.running_mean.as_vec();
        let mut opt = Optim::new(OptimConfig { weight_decay: 0.5, ..Default::default() });
        opt.update(&mut bn, &g).unwrap();
        assert_eq!(bn.running_mean.as_vec(), before);
    }
}
