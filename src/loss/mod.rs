//! Losses, one per file: NT-Xent (SimCLR), BYOL's regression loss, label-smoothed cross
//! entropy for fine-tuning.

pub mod byol;
pub mod cross_entropy;
pub mod nt_xent;

pub use byol::byol_loss;
pub use cross_entropy::smoothed_cross_entropy;
pub use nt_xent::nt_xent;
