//! Evaluation on frozen features.

pub mod features;
pub mod knn;

pub use knn::{knn_accuracy, knn_predict, KnnParams};
