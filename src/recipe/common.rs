//! Recipe sections shared by pretraining and fine-tuning: optimiser, learning-rate schedule,
//! checkpoints.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{Annealing, LrScaling, OptimConfig, OptimizerKind, Schedule};

/// What follows the warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnnealingKind {
    Cosine,
    Step,
    Constant,
}

/// The optimiser and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Momentum (LARS, SGD).
    pub momentum: f64,
    /// Nesterov momentum (SGD).
    pub nesterov: bool,
    /// LARS trust coefficient eta (SimCLR: 0.001).
    pub trust_coefficient: f64,
    /// Adam's betas.
    pub betas: (f64, f64),
    /// Weight decay (SimCLR with LARS: 1e-6); never applied to biases and BatchNorm parameters.
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Lars,
            momentum: 0.9,
            nesterov: false,
            trust_coefficient: 1e-3,
            betas: (0.9, 0.999),
            weight_decay: 1e-6,
        }
    }
}

/// The learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LrConfig {
    /// Base rate before batch scaling (SimCLR with LARS: 0.3 with linear scaling).
    pub base: f64,
    /// Linear (base x batch / 256), Sqrt (base x sqrt(batch)) or None.
    pub scaling: LrScaling,
    /// Linear warmup (SimCLR: 10 epochs).
    pub warmup_epochs: usize,
    /// Cosine (SimCLR), Step or Constant after the warmup.
    pub annealing: AnnealingKind,
    /// Cosine: the final rate as a fraction of the peak.
    pub final_fraction: f64,
    /// Step: epochs at which the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl Default for LrConfig {
    fn default() -> Self {
        LrConfig {
            base: 0.3,
            scaling: LrScaling::Linear,
            warmup_epochs: 10,
            annealing: AnnealingKind::Cosine,
            final_fraction: 0.0,
            milestones: Vec::new(),
            gamma: 0.1,
        }
    }
}

/// Checkpoint cadence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Every N epochs (and always at the end).
    pub every_epochs: usize,
    /// How many to keep.
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every_epochs: 1, keep: 3 }
    }
}

impl OptimizerConfig {
    /// The optimiser settings at learning rate `lr`.
    pub fn at(&self, lr: f64) -> OptimConfig {
        OptimConfig {
            kind: self.kind,
            lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            trust_coefficient: self.trust_coefficient,
            betas: self.betas,
            eps: 1e-8,
        }
    }
}

impl LrConfig {
    /// The peak rate after batch scaling.
    pub fn peak(&self, batch: usize) -> f64 {
        crate::optim::scaled_lr(self.base, batch, self.scaling)
    }

    /// The per-step schedule of a run of `epochs` epochs of `steps` steps at `batch`.
    pub fn schedule(&self, batch: usize, epochs: usize, steps: usize) -> Result<Schedule> {
        let annealing = match self.annealing {
            AnnealingKind::Cosine => Annealing::Cosine { final_fraction: self.final_fraction },
            AnnealingKind::Step => Annealing::Step { milestones: self.milestones.clone(), gamma: self.gamma },
            AnnealingKind::Constant => Annealing::Constant,
        };
        Schedule::new(self.peak(batch), self.warmup_epochs, epochs, steps, annealing).map_err(|e| e.for_field("lr"))
    }
}

/// Refuses a field set away from its default when the chosen kind does not use it (as PyTorch
/// refuses `AdamW(momentum=...)`): a value that cannot act is an error, not a silent no-op.
fn check_unused(section: &str, kind: &str, fields: &[(&str, bool)]) -> Result<()> {
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(Error::invalid(format!("{section}.{field}"), format!("is not used by {kind}; leave it out or choose a {section} kind that uses it"))),
        None => Ok(()),
    }
}

impl OptimizerConfig {
    /// Checks the hyper-parameters against the kind that uses them.
    pub fn check(&self) -> Result<()> {
        let d = OptimizerConfig::default();
        let kind = format!("{:?}", self.kind);
        let (momentum, nesterov, trust, betas) = (self.momentum != d.momentum, self.nesterov, self.trust_coefficient != d.trust_coefficient, self.betas != d.betas);
        match self.kind {
            OptimizerKind::Lars => check_unused("optimizer", &kind, &[("nesterov", nesterov), ("betas", betas)])?,
            OptimizerKind::Sgd => check_unused("optimizer", &kind, &[("trust_coefficient", trust), ("betas", betas)])?,
            OptimizerKind::AdamW => check_unused("optimizer", &kind, &[("momentum", momentum), ("nesterov", nesterov), ("trust_coefficient", trust)])?,
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::invalid("optimizer.momentum", format!("{} must be in [0, 1)", self.momentum)));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::invalid("optimizer.nesterov", "needs momentum > 0 (as in PyTorch)"));
        }
        Ok(())
    }
}

impl LrConfig {
    /// Checks the annealing's own fields against its kind, and Step's milestones against the
    /// run's `epochs`.
    pub fn check(&self, epochs: usize) -> Result<()> {
        let d = LrConfig::default();
        let kind = format!("{:?}", self.annealing);
        let (floor, milestones, gamma) = (self.final_fraction != d.final_fraction, !self.milestones.is_empty(), self.gamma != d.gamma);
        match self.annealing {
            AnnealingKind::Cosine => check_unused("lr", &kind, &[("milestones", milestones), ("gamma", gamma)])?,
            AnnealingKind::Step => check_unused("lr", &kind, &[("final_fraction", floor)])?,
            AnnealingKind::Constant => check_unused("lr", &kind, &[("final_fraction", floor), ("milestones", milestones), ("gamma", gamma)])?,
        }
        if self.annealing == AnnealingKind::Step {
            if self.milestones.is_empty() {
                return Err(Error::invalid("lr.milestones", "Step annealing needs at least one milestone (an epoch)"));
            }
            if let Some(m) = self.milestones.iter().find(|&&m| m == 0 || m >= epochs) {
                return Err(Error::invalid("lr.milestones", format!("{m} is not an epoch inside the run (1 to {})", epochs.saturating_sub(1))));
            }
        }
        if !(0.0..=1.0).contains(&self.final_fraction) {
            return Err(Error::invalid("lr.final_fraction", format!("{} must be in [0, 1]", self.final_fraction)));
        }
        Ok(())
    }
}

impl CheckpointConfig {
    /// Both counts must be at least 1.
    pub fn check(&self) -> Result<()> {
        if self.every_epochs == 0 {
            return Err(Error::invalid("checkpoint.every_epochs", "must be at least 1 (a run always saves at its end)"));
        }
        if self.keep == 0 {
            return Err(Error::invalid("checkpoint.keep", "must be at least 1 (resume needs the newest)"));
        }
        Ok(())
    }
}

/// Checks the fields every training recipe has, naming the one at fault.
pub fn check_training(lr: &LrConfig, optimizer: &OptimizerConfig, batch_size: usize, epochs: usize, model: &str) -> Result<()> {
    optimizer.check()?;
    lr.check(epochs)?;
    if !(lr.base > 0.0 && lr.base.is_finite()) {
        return Err(Error::invalid("lr.base", format!("{} must be a positive number", lr.base)));
    }
    if batch_size < 2 {
        return Err(Error::invalid("batch_size", format!("{batch_size} must be at least 2")));
    }
    if epochs == 0 || epochs > 1_000_000 {
        return Err(Error::invalid("epochs", format!("{epochs} must be between 1 and 1,000,000")));
    }
    if lr.warmup_epochs > epochs {
        return Err(Error::invalid("lr.warmup_epochs", format!("{} is longer than the run ({epochs} epochs)", lr.warmup_epochs)));
    }
    if !(optimizer.weight_decay >= 0.0 && optimizer.weight_decay.is_finite()) {
        return Err(Error::invalid("optimizer.weight_decay", "must be >= 0"));
    }
    crate::models::registry::find(model).map_err(|e| e.for_field("model"))?;
    Ok(())
}
