//! Evaluation on frozen features: extraction and caching, weighted kNN, the linear probe, the
//! collapse measures, and classification metrics.

pub mod collapse;
pub mod embed;
pub mod feature_cache;
pub mod frozen;
pub mod knn;
pub mod monitor;
pub mod on_run;
pub mod probe;

pub use knn::{knn_accuracy, knn_predict, knn_scores, KnnParams};
pub use crate::metrics::{evaluate, Evaluation};
