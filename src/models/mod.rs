//! Backbones as compile-time-shaped dfdx types; heads (projectors, predictors, classifiers) of run-time width (`mlp`).

pub mod backbone;
pub mod classic;
pub mod encoder;
pub mod inception;
pub mod mlp;
pub mod registry;
pub mod resnet;
pub mod summary;
pub mod torch_names;
pub mod vit;
