//! Evaluation on frozen features: extraction and caching, weighted kNN, the linear probe, and
//! classification metrics.

pub mod feature_cache;
pub mod features;
pub mod frozen;
pub mod knn;
pub mod metrics;
pub mod on_run;
pub mod probe;

pub use knn::{knn_accuracy, knn_predict, knn_scores, KnnParams};
pub use metrics::{evaluate, Evaluation};
