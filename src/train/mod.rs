//! Training loops and the pieces they are made of: loader, networks behind object-safe
//! traits, checkpoints, metrics, Ctrl-C handling.

pub mod checkpoint;
pub mod classifier_net;
pub mod finetune;
pub mod loader;
pub mod metrics;
pub mod monitor;
pub mod pretrain;
pub mod run_dir;
pub mod signal;
pub mod step;

pub use finetune::finetune;
pub use pretrain::{pretrain, Outcome, RunOptions};
