//! Losses, one per file: NT-Xent (SimCLR), InfoNCE with a queue (MoCo), BYOL's regression loss, SimSiam's negative cosine
//! (both on `cross_view`'s pairing of views), Barlow Twins' cross-correlation and VICReg's three
//! terms (both on `columns`' batch statistics), DINO's cross entropy between teacher and student
//! views, label-smoothed cross entropy for fine-tuning.

pub mod barlow_twins;
pub mod byol;
pub mod columns;
pub mod cross_entropy;
pub mod cross_view;
pub mod dino;
pub mod info_nce;
pub mod nt_xent;
pub mod simsiam;
pub mod vicreg;

pub use barlow_twins::barlow_twins_loss;
pub use byol::byol_loss;
pub use cross_entropy::smoothed_cross_entropy;
pub use dino::{dino_loss, teacher_targets, updated_center};
pub use info_nce::info_nce;
pub use nt_xent::nt_xent;
pub use simsiam::simsiam_loss;
pub use vicreg::{vicreg_loss, VicRegWeights};
