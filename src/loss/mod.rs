//! Losses, one per file: NT-Xent (SimCLR), BYOL's regression loss, SimSiam's negative cosine
//! (both on `cross_view`'s pairing of views), label-smoothed cross entropy for fine-tuning.

pub mod byol;
pub mod cross_entropy;
pub mod cross_view;
pub mod nt_xent;
pub mod simsiam;

pub use byol::byol_loss;
pub use cross_entropy::smoothed_cross_entropy;
pub use nt_xent::nt_xent;
pub use simsiam::simsiam_loss;
