//! Training loops and the pieces they are made of: loader, networks behind object-safe
//! traits, checkpoints, metrics, Ctrl-C handling.

pub mod classifier_net;
pub mod finetune;
pub mod loader;
pub mod online_probe;
pub mod pretrain;
pub mod signal;
pub mod trainer;

pub use finetune::finetune;
pub use pretrain::{pretrain, Outcome, RunOptions};
