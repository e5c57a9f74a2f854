//! Backbones and heads as compile-time-shaped dfdx types.

pub mod backbone;
pub mod classic;
pub mod encoder;
pub mod heads;
pub mod inception;
pub mod mlp;
pub mod registry;
pub mod resnet;
pub mod summary;
pub mod vit;
