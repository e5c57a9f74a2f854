//! Training loops and the pieces they are made of: loader, networks behind object-safe
//! traits, checkpoints, metrics, Ctrl-C handling.

pub mod checkpoint;
pub mod loader;
pub mod metrics;
pub mod monitor;
pub mod pretrain;
pub mod run_dir;
pub mod signal;
pub mod simclr_net;
pub mod step;
pub mod tensors_file;

pub use pretrain::{pretrain, Outcome, PretrainOptions};
