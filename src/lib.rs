//! `ssl`: self-supervised pretraining (SimCLR) and fine-tuning of image classifiers on dfdx.
//!
//! The flow is one-way: [`data`] (HDF5 store, importers, splits) feeds augmentation, models,
//! losses, optimisers, training loops, evaluation and reports.

pub mod alloc;
pub mod augment;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod loss;
pub mod method;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod optim;
pub mod progress;
pub mod recipe;
pub mod report;
pub mod run;
pub mod simd;
pub mod tensors_file;
pub mod train;
pub mod viz;
pub mod weights;

pub use error::{Error, Result};
