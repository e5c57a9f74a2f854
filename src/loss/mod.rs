//! Losses: NT-Xent for contrastive pretraining.

pub mod nt_xent;

pub use nt_xent::nt_xent;
