//! What dfdx lacks for SimCLR's optimisation: learning-rate schedules (warmup, cosine or step
//! annealing, batch scaling) and LARS with biases and BatchNorm parameters excluded.

pub mod lars;
pub mod schedule;

pub use lars::{Lars, LarsConfig};
pub use schedule::{scaled_lr, Annealing, LrScaling, Schedule};
