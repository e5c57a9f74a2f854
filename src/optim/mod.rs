//! What dfdx lacks for SimCLR's optimisation: learning-rate schedules (warmup, cosine or step
//! annealing, batch scaling) and optimisers (LARS, SGD, AdamW) that exclude biases and
//! BatchNorm parameters from weight decay and keep their state in checkpoints.

pub mod optimizer;
mod resident;
pub mod schedule;

pub use optimizer::{Update, Optim, OptimConfig, OptimizerKind};
pub use schedule::{scaled_lr, Annealing, LrScaling, Schedule};
