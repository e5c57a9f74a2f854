//! SimCLR's augmentations (Chen et al. 2020, appendix A) on u8 H x W x C images (C = 1 or 3).
//!
//! Each transform is a function on an [`Image`] of f32 values in [0, 1], kept planar
//! (C x H x W, so every loop runs over contiguous pixels of one channel): the random resized
//! crop reads the u8 H x W x C source and resamples straight to the output size, the colour
//! transforms and the blur work in float without rounding between steps (as torchvision's
//! tensor path), and the last step normalises into the C x H x W slot of the batch buffer.
//! For 1-channel images saturation, hue and grayscale are identities.
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

/// An image being augmented: C x H x W f32 values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// A u8 H x W x C image scaled to [0, 1], made planar.
    pub fn from_u8(pixels: &[u8], height: usize, width: usize, channels: usize) -> Self {
        let hw = height * width;
        let mut data = vec![0.0; hw * channels];
        for (p, px) in pixels.chunks_exact(channels).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                data[ch * hw + p] = v as f32 / 255.0;
            }
        }
        Image { height, width, channels, data }
    }
    /// Back to u8 H x W x C (rounded, clamped).
    pub fn to_u8(&self) -> Vec<u8> {
        let hw = self.height * self.width;
        let mut out = vec![0u8; hw * self.channels];
        for (ch, plane) in self.data.chunks_exact(hw.max(1)).enumerate() {
            for (p, &v) in plane.iter().enumerate() {
                out[p * self.channels + ch] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }
    /// The pixels of channel `ch`.
    pub fn plane(&self, ch: usize) -> &[f32] {
        let hw = self.height * self.width;
        &self.data[ch * hw..(ch + 1) * hw]
    }
    /// The three planes of an RGB image, mutably.
    pub fn rgb_mut(&mut self) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let hw = self.height * self.width;
        let (r, rest) = self.data.split_at_mut(hw);
        let (g, b) = rest.split_at_mut(hw);
        (r, g, &mut b[..hw])
    }
}
