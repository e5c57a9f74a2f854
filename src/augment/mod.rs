//! SimCLR's augmentations (Chen et al. 2020, appendix A) on u8 H x W x C images (C = 1 or 3).
//!
//! Each transform is a function on an [`Image`] of f32 values in [0, 1], kept H x W x C:
//! the random resized crop reads the u8 source and resamples straight to the output size, the
//! colour transforms and the blur work in float without rounding between steps (as
//! torchvision's tensor path), and the last step normalises into the C x H x W slot of the
//! batch buffer. For 1-channel images saturation, hue and grayscale are identities.
//!
//! The views of image i in epoch e depend only on (seed, e, i, view): see [`pipeline`].

pub mod blur;
pub mod color;
pub mod crop;
pub mod flip;
pub mod pipeline;
pub mod preview;
pub mod rng;

pub use pipeline::{AugmentConfig, Pipeline};

/// An image being augmented: H x W x C f32 values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// A u8 H x W x C image scaled to [0, 1].
    pub fn from_u8(pixels: &[u8], height: usize, width: usize, channels: usize) -> Self {
        Image { height, width, channels, data: pixels.iter().map(|&v| v as f32 / 255.0).collect() }
    }
    /// Back to u8 (rounded, clamped).
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect()
    }
}
