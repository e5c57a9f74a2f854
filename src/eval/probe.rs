//! The linear probe: multinomial logistic regression with weight decay on frozen features
//! (standardised with the training features' statistics), trained by mini-batch SGD with
//! Nesterov momentum and a cosine rate over many epochs of cached features.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::metrics::{evaluate, Evaluation};
use crate::error::{Error, Result};
use crate::nn::gemm::{matmul, Mat};

/// Probe hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { epochs: 100, batch_size: 256, lr: 0.1, weight_decay: 1e-4, seed: 0 }
    }
}

/// Features of a labeled split: `x` is [N, dim] row-major.
pub struct Labeled<'a> {
    pub x: &'a [f32],
    pub y: &'a [u32],
}

/// A trained probe: weights [dim, classes], bias, and the standardisation.
pub struct Probe {
    pub dim: usize,
    pub classes: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Probe {
    /// Class scores [N, classes] of features `x`.
    pub fn scores(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() / self.dim;
        let xs = self.standardise(x);
        let mut out: Vec<f32> = (0..n).flat_map(|_| self.b.iter().copied()).collect();
        matmul(&mut out, self.classes, Mat::rows(&xs, n, self.dim, self.dim), Mat::rows(&self.w, self.dim, self.classes, self.classes), true);
        out
    }

    fn standardise(&self, x: &[f32]) -> Vec<f32> {
        x.chunks(self.dim).flat_map(|row| row.iter().zip(&self.mean).zip(&self.inv_std).map(|((v, m), s)| (v - m) * s)).collect()
    }
}

fn check(what: &str, d: &Labeled, dim: usize, classes: usize) -> Result<()> {
    if dim == 0 || d.x.len() != d.y.len() * dim || d.y.is_empty() {
        return Err(Error::invalid(what, format!("{} features of width {dim} for {} labels", d.x.len(), d.y.len())));
    }
    if let Some(bad) = d.y.iter().find(|&&y| y as usize >= classes) {
        return Err(Error::invalid(what, format!("label {bad} out of range for {classes} classes")));
    }
    Ok(())
}

/// Trains a probe on `train`; `on_epoch(epoch, mean_loss)` is called after each epoch.
pub fn train(train: &Labeled, dim: usize, classes: usize, cfg: ProbeConfig, mut on_epoch: impl FnMut(usize, f64)) -> Result<Probe> {
    check("probe train features", train, dim, classes)?;
    let n = train.y.len();
    let mut mean = vec![0.0f64; dim];
    let mut var = vec![0.0f64; dim];
    train.x.chunks(dim).for_each(|r| r.iter().zip(&mut mean).for_each(|(v, m)| *m += *v as f64));
    mean.iter_mut().for_each(|m| *m /= n as f64);
    train.x.chunks(dim).for_each(|r| r.iter().zip(&mean).zip(&mut var).for_each(|((v, m), s)| *s += (*v as f64 - m).powi(2)));
    let inv_std: Vec<f32> = var.iter().map(|v| (v / n as f64).sqrt()).map(|s| if s > 1e-8 { (1.0 / s) as f32 } else { 0.0 }).collect();
    let mut probe = Probe { dim, classes, w: vec![0.0; dim * classes], b: vec![0.0; classes], mean: mean.iter().map(|&m| m as f32).collect(), inv_std };
    let xs = probe.standardise(train.x);
    let (mut vw, mut vb) = (vec![0.0f32; dim * classes], vec![0.0f32; classes]);
    let bs = cfg.batch_size.clamp(1, n);
    let steps_per_epoch = n.div_ceil(bs);
    let total = (cfg.epochs * steps_per_epoch).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (mut xb, mut gw) = (Vec::new(), vec![0.0f32; dim * classes]);
    let momentum = 0.9f32;
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (s, idx) in order.chunks(bs).enumerate() {
            let step = epoch * steps_per_epoch + s;
            let lr = (cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())) as f32;
            let m = idx.len();
            xb.clear();
            idx.iter().for_each(|&i| xb.extend_from_slice(&xs[i * dim..(i + 1) * dim]));
            // Softmax probabilities minus one-hot targets, over the batch mean.
            let mut p: Vec<f32> = (0..m).flat_map(|_| probe.b.iter().copied()).collect();
            matmul(&mut p, classes, Mat::rows(&xb, m, dim, dim), Mat::rows(&probe.w, dim, classes, classes), true);
            for (row, &i) in p.chunks_mut(classes).zip(idx) {
                let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let z: f32 = row.iter_mut().map(|v| { *v = (*v - mx).exp(); *v }).sum();
                row.iter_mut().for_each(|v| *v /= z);
                let y = train.y[i] as usize;
                loss_sum += -(row[y].max(1e-30) as f64).ln();
                row[y] -= 1.0;
                row.iter_mut().for_each(|v| *v /= m as f32);
            }
            matmul(&mut gw, classes, Mat::rows(&xb, m, dim, dim).t(), Mat::rows(&p, m, classes, classes), false);
            let wd = cfg.weight_decay as f32;
            for ((w, v), g) in probe.w.iter_mut().zip(&mut vw).zip(&gw) {
                let g = g + wd * *w;
                *v = momentum * *v + g;
                *w -= lr * (g + momentum * *v);
            }
            for (j, (b, v)) in probe.b.iter_mut().zip(&mut vb).enumerate() {
                let g: f32 = p.chunks(classes).map(|r| r[j]).sum();
                *v = momentum * *v + g;
                *b -= lr * (g + momentum * *v);
            }
        }
        on_epoch(epoch, loss_sum / n as f64);
    }
    Ok(probe)
}

/// Trains on `train` and evaluates on `test`.
pub fn probe(train_set: &Labeled, test: &Labeled, dim: usize, classes: usize, cfg: ProbeConfig, on_epoch: impl FnMut(usize, f64)) -> Result<(Evaluation, Evaluation)> {
    check("probe test features", test, dim, classes)?;
    let p = train(train_set, dim, classes, cfg, on_epoch)?;
    Ok((evaluate(&p.scores(train_set.x), train_set.y, classes), evaluate(&p.scores(test.x), test.y, classes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn separates_linear_classes_and_not_a_shuffled_copy() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let make = |rng: &mut ChaCha8Rng, n: usize| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for i in 0..n {
                let c = (i % 4) as u32;
                for d in 0..6 {
                    let signal = if d == c as usize { 3.0 } else { 0.0 };
                    x.push(signal + rng.gen_range(-1.0f32..1.0) + 100.0);
                }
                y.push(c);
            }
            (x, y)
        };
        let (xtr, ytr) = make(&mut rng, 400);
        let (xte, yte) = make(&mut rng, 200);
        let cfg = ProbeConfig { epochs: 20, batch_size: 32, ..Default::default() };
        let mut losses = Vec::new();
        let (tr, te) = probe(&Labeled { x: &xtr, y: &ytr }, &Labeled { x: &xte, y: &yte }, 6, 4, cfg, |_, l| losses.push(l)).unwrap();
        assert!(te.top1 > 0.95 && tr.top1 > 0.95, "{} {}", tr.top1, te.top1);
        assert!(losses[19] < losses[0]);
        // Labels carrying no information: the probe cannot beat chance on held-out data.
        let mut shuffled = ytr.clone();
        shuffled.shuffle(&mut rng);
        let (_, te) = probe(&Labeled { x: &xtr, y: &shuffled }, &Labeled { x: &xte, y: &yte }, 6, 4, cfg, |_, _| {}).unwrap();
        assert!(te.top1 < 0.45, "{}", te.top1);
        assert!(probe(&Labeled { x: &xtr, y: &ytr }, &Labeled { x: &xte[..5], y: &yte }, 6, 4, cfg, |_, _| {}).is_err());
    }
}
