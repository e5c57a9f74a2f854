//! Learning-rate schedules: linear warmup, then cosine or step annealing; and the batch
//! scaling rules of SimCLR (linear: base x batch / 256; square root: base x sqrt(batch)).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the base learning rate scales with the batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrScaling {
    /// base x batch / 256 (SimCLR with LARS: 0.3 x batch / 256).
    Linear,
    /// base x sqrt(batch) (SimCLR's choice for small batches: 0.075 x sqrt(batch)).
    Sqrt,
    /// base as given.
    None,
}

/// The learning rate for `batch` under `rule`.
pub fn scaled_lr(base: f64, batch: usize, rule: LrScaling) -> f64 {
    match rule {
        LrScaling::Linear => base * batch as f64 / 256.0,
        LrScaling::Sqrt => base * (batch as f64).sqrt(),
        LrScaling::None => base,
    }
}

/// What follows the warmup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Annealing {
    /// Half a cosine from the peak down to `final_fraction` of it.
    Cosine { final_fraction: f64 },
    /// Multiply by `gamma` at each milestone (in epochs).
    Step { milestones: Vec<usize>, gamma: f64 },
    /// Keep the peak.
    Constant,
}

/// A per-step schedule over a whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    pub annealing: Annealing,
}

impl Schedule {
    /// A schedule; refuses a non-positive peak or a warmup longer than the run.
    pub fn new(peak: f64, warmup_epochs: usize, epochs: usize, steps_per_epoch: usize, annealing: Annealing) -> Result<Self> {
        if !(peak > 0.0 && peak.is_finite()) {
            return Err(Error::invalid("lr", format!("{peak} must be a positive number")));
        }
        if warmup_epochs > epochs {
            return Err(Error::invalid("warmup_epochs", format!("{warmup_epochs} is longer than the run ({epochs} epochs)")));
        }
        Ok(Schedule {
            peak,
            warmup_steps: warmup_epochs * steps_per_epoch,
            total_steps: epochs * steps_per_epoch,
            steps_per_epoch: steps_per_epoch.max(1),
            annealing,
        })
    }

    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match &self.annealing {
            Annealing::Constant => self.peak,
            Annealing::Cosine { final_fraction } => {
                let span = (self.total_steps - self.warmup_steps).max(1) as f64;
                let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let floor = self.peak * final_fraction;
                floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Annealing::Step { milestones, gamma } => {
                let epoch = step / self.steps_per_epoch;
                self.peak * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = Schedule::new(1.0, 2, 10, 5, Annealing::Cosine { final_fraction: 0.0 }).unwrap();
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(30) - 0.5).abs() < 1e-12, "half way down at the middle of the decay");
        assert!(s.lr(49) < 0.01 && s.lr(49) >= 0.0);
        let monotone = (10..50).all(|i| s.lr(i + 1) <= s.lr(i));
        assert!(monotone);
    }

    #[test]
    fn step_annealing_and_scaling_rules() {
        let s = Schedule::new(0.1, 0, 30, 10, Annealing::Step { milestones: vec![10, 20], gamma: 0.1 }).unwrap();
        assert!((s.lr(99) - 0.1).abs() < 1e-12);
        assert!((s.lr(100) - 0.01).abs() < 1e-12);
        assert!((s.lr(250) - 0.001).abs() < 1e-12);
        assert!((scaled_lr(0.3, 512, LrScaling::Linear) - 0.6).abs() < 1e-12);
        assert!((scaled_lr(0.075, 256, LrScaling::Sqrt) - 1.2).abs() < 1e-12);
        assert!(Schedule::new(-1.0, 0, 1, 1, Annealing::Constant).unwrap_err().to_string().contains("lr"));
        assert!(Schedule::new(1.0, 5, 1, 1, Annealing::Constant).is_err());
    }
}
