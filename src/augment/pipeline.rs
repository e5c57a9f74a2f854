//! The recipe-driven pipeline: SimCLR's two views for pretraining, a light crop-and-flip for
//! fine-tuning, none for evaluation. Parallel over a batch with rayon, writing each view
//! straight into its C x H x W slot of the batch buffer.
//!
//! Determinism: view `v` of image `i` in epoch `e` uses the generator
//! `view_rng(seed, e, i, v)`, so it does not depend on the thread count or the batch order.

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::blur::{gaussian_blur, kernel_size};
use super::color::{grayscale, solarize, Jitter};
use super::crop::{crop_resize, sample_window, Interpolation};
use super::flip::hflip;
use super::rng::view_rng;
use super::Image;
use crate::data::{ImageShape, Split};
use crate::error::{Error, Result};
use crate::simd;

/// Every augmentation parameter, with SimCLR's defaults (Chen et al. 2020, appendix A).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Output side in pixels; `None` keeps the dataset's size.
    pub size: Option<usize>,
    /// Random resized crop: area fraction range (paper: 0.08 to 1).
    pub crop_scale: (f32, f32),
    /// Random resized crop: aspect ratio range, sampled in log space (paper: 3/4 to 4/3).
    pub crop_ratio: (f32, f32),
    /// Resampling filter of the crop.
    pub interpolation: Interpolation,
    /// Horizontal flip probability (paper: 0.5).
    pub flip_p: f32,
    /// Colour strength s: jitter is (0.8s, 0.8s, 0.8s, 0.2s) (paper: 1.0 on ImageNet, 0.5 on CIFAR).
    pub strength: f32,
    /// Probability of applying colour jitter (paper: 0.8).
    pub jitter_p: f32,
    /// Probability of grayscale (paper: 0.2).
    pub grayscale_p: f32,
    /// Probability of Gaussian blur (paper: 0.5 on ImageNet; often 0 for 32x32 data).
    pub blur_p: f32,
    /// Blur sigma range in pixels (paper: 0.1 to 2).
    pub blur_sigma: (f32, f32),
    /// Blur kernel side as a fraction of the image side, made odd (paper: 0.1).
    pub blur_kernel_fraction: f32,
    /// Probability of solarisation (SimCLR v1: 0; BYOL / SimCLR v2 use it on one view).
    pub solarize_p: f32,
    /// Solarisation threshold in [0, 1].
    pub solarize_threshold: f32,
    /// Normalise with the dataset's per-channel mean and std.
    pub normalize: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::simclr()
    }
}

impl AugmentConfig {
    /// SimCLR's pretraining augmentation (strength 0.5, as for CIFAR and the PyTorch reference).
    pub fn simclr() -> Self {
        AugmentConfig {
            size: None,
            crop_scale: (0.08, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: Interpolation::Bilinear,
            flip_p: 0.5,
            strength: 0.5,
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur_p: 0.5,
            blur_sigma: (0.1, 2.0),
            blur_kernel_fraction: 0.1,
            solarize_p: 0.0,
            solarize_threshold: 0.5,
            normalize: true,
        }
    }
    /// Fine-tuning: a milder crop and a flip, no colour.
    pub fn light() -> Self {
        AugmentConfig { crop_scale: (0.25, 1.0), jitter_p: 0.0, grayscale_p: 0.0, blur_p: 0.0, ..Self::simclr() }
    }
    /// Evaluation: the image as it is, normalised.
    pub fn none() -> Self {
        AugmentConfig { crop_scale: (1.0, 1.0), crop_ratio: (1.0, 1.0), flip_p: 0.0, ..Self::light() }
    }

    /// The evaluation view of images trained with this configuration: the same output size,
    /// interpolation and normalisation, and nothing random. The one definition used by
    /// fine-tuning's validation and test, the online kNN monitor, `ssl probe` and `ssl knn`.
    pub fn evaluation(&self) -> Self {
        AugmentConfig { size: self.size, normalize: self.normalize, interpolation: self.interpolation, ..Self::none() }
    }

    /// Checks every range and probability, naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        let prob = |name: &str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(Error::invalid(format!("augment.{name}"), format!("{p} is not a probability in [0, 1]")))
            }
        };
        prob("flip_p", self.flip_p)?;
        prob("jitter_p", self.jitter_p)?;
        prob("grayscale_p", self.grayscale_p)?;
        prob("blur_p", self.blur_p)?;
        prob("solarize_p", self.solarize_p)?;
        prob("solarize_threshold", self.solarize_threshold)?;
        let (s0, s1) = self.crop_scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(Error::invalid("augment.crop_scale", format!("({s0}, {s1}) must satisfy 0 < min <= max <= 1")));
        }
        let (r0, r1) = self.crop_ratio;
        if !(r0 > 0.0 && r0 <= r1) {
            return Err(Error::invalid("augment.crop_ratio", format!("({r0}, {r1}) must satisfy 0 < min <= max")));
        }
        let (b0, b1) = self.blur_sigma;
        if !(b0 > 0.0 && b0 <= b1) {
            return Err(Error::invalid("augment.blur_sigma", format!("({b0}, {b1}) must satisfy 0 < min <= max")));
        }
        if self.strength.is_nan() || self.strength < 0.0 {
            return Err(Error::invalid("augment.strength", format!("{} must be >= 0", self.strength)));
        }
        if self.size == Some(0) {
            return Err(Error::invalid("augment.size", "must be positive"));
        }
        if !(self.blur_kernel_fraction > 0.0 && self.blur_kernel_fraction <= 1.0) {
            return Err(Error::invalid("augment.blur_kernel_fraction", "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// A configured pipeline for one source shape.
#[derive(Clone, Debug)]
pub struct Pipeline {
    cfg: AugmentConfig,
    src: ImageShape,
    out: ImageShape,
    jitter: Jitter,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Pipeline {
    /// A pipeline for images of shape `src`, normalising with `mean` and `std` when the config
    /// asks for it.
    pub fn new(cfg: AugmentConfig, src: ImageShape, mean: &[f32], std: &[f32]) -> Result<Self> {
        cfg.validate()?;
        let side = cfg.size;
        let out = ImageShape { height: side.unwrap_or(src.height), width: side.unwrap_or(src.width), channels: src.channels };
        let s = cfg.strength;
        let jitter = Jitter { brightness: 0.8 * s, contrast: 0.8 * s, saturation: 0.8 * s, hue: (0.2 * s).min(0.5) };
        let (mean, inv_std) = if cfg.normalize {
            if mean.len() != src.channels || std.len() != src.channels {
                return Err(Error::invalid("augment.normalize", "mean and std must have one value per channel"));
            }
            (mean.to_vec(), std.iter().map(|&v| if v > 0.0 { 1.0 / v } else { 1.0 }).collect())
        } else {
            (vec![0.0; src.channels], vec![1.0; src.channels])
        };
        Ok(Pipeline { cfg, src, out, jitter, mean, inv_std })
    }

    /// A pipeline for a split, normalising with its statistics.
    pub fn for_split(cfg: AugmentConfig, split: &Split) -> Result<Self> {
        Self::new(cfg, split.shape, &split.mean, &split.std)
    }

    /// The shape of each view.
    pub fn output_shape(&self) -> ImageShape {
        self.out
    }

    /// One augmented view of a u8 image, values in [0, 1].
    pub fn view(&self, pixels: &[u8], rng: &mut impl Rng) -> Image {
        let (s, c) = (self.src, &self.cfg);
        let win = sample_window(rng, s.height, s.width, c.crop_scale, c.crop_ratio);
        let mut img = crop_resize(pixels, s.height, s.width, s.channels, win, self.out.height, self.out.width, c.interpolation);
        if rng.gen::<f32>() < c.flip_p {
            hflip(&mut img);
        }
        if rng.gen::<f32>() < c.jitter_p {
            self.jitter.draw(rng).apply(&mut img);
        }
        if rng.gen::<f32>() < c.grayscale_p {
            grayscale(&mut img);
        }
        if rng.gen::<f32>() < c.blur_p {
            let sigma = rng.gen_range(c.blur_sigma.0..=c.blur_sigma.1);
            gaussian_blur(&mut img, kernel_size(self.out.height.min(self.out.width), c.blur_kernel_fraction), sigma);
        }
        if rng.gen::<f32>() < c.solarize_p {
            solarize(&mut img, c.solarize_threshold);
        }
        img
    }

    /// Normalises a view into its C x H x W slot.
    pub fn write_chw(&self, img: &Image, out: &mut [f32]) {
        let hw = img.height * img.width;
        simd::run(
            #[inline(always)]
            || {
                for ch in 0..img.channels {
                    let (m, k) = (self.mean[ch], self.inv_std[ch]);
                    for (o, &v) in out[ch * hw..(ch + 1) * hw].iter_mut().zip(img.plane(ch)) {
                        *o = (v - m) * k;
                    }
                }
            },
        )
    }

    /// Fills `out` with `views` views of each image at `indices`: [views * N, C, H, W], view v
    /// of the k-th image at row v * N + k (so NT-Xent's positives sit N rows apart).
    pub fn views_into(&self, split: &Split, indices: &[usize], views: usize, seed: u64, epoch: u64, out: &mut Vec<f32>) {
        views_into(&vec![self; views], split, indices, seed, epoch, out)
    }

    /// Fills `out` with the images at `indices` as evaluation sees them: [N, C, H, W], whole,
    /// resized to the output size, normalised; no randomness.
    pub fn eval_into(&self, split: &Split, indices: &[usize], out: &mut Vec<f32>) {
        let (s, chw) = (self.src, self.out.len());
        let whole = super::crop::Window { top: 0, left: 0, height: s.height, width: s.width };
        out.resize(indices.len() * chw, 0.0);
        out.par_chunks_mut(chw).zip(indices).for_each(|(slot, &i)| {
            let img = super::crop::crop_resize(split.image(i), s.height, s.width, s.channels, whole, self.out.height, self.out.width, self.cfg.interpolation);
            self.write_chw(&img, slot);
        });
    }
}

/// Fills `out` with one view per pipeline of each image at `indices` (a method whose views
/// differ, e.g. BYOL's, or differ in size, DINO's multi-crop): view v of the N images is the
/// block [N, C, H_v, W_v] after the blocks of views 0..v (for one shape, [V N, C, H, W] with
/// view v of the k-th image at row v N + k), drawn by `pipelines[v]` from the generator of
/// (seed, epoch, image, v), whatever the thread count or batch order.
pub fn views_into(pipelines: &[&Pipeline], split: &Split, indices: &[usize], seed: u64, epoch: u64, out: &mut Vec<f32>) {
    let n = indices.len();
    out.resize(pipelines.iter().map(|p| n * p.out.len()).sum(), 0.0);
    let mut rest = out.as_mut_slice();
    for (v, p) in pipelines.iter().enumerate() {
        let chw = p.out.len();
        let (block, tail) = rest.split_at_mut(n * chw);
        rest = tail;
        block.par_chunks_mut(chw).enumerate().for_each(|(k, slot)| {
            let mut rng = view_rng(seed, epoch, indices[k] as u64, v as u64);
            let img = p.view(split.image(indices[k]), &mut rng);
            p.write_chw(&img, slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_depend_only_on_seed_epoch_and_index() {
        let shape = ImageShape { height: 12, width: 10, channels: 3 };
        let s = Split::random(20, shape, 1);
        let p = Pipeline::for_split(AugmentConfig::simclr(), &s).unwrap();
        let run = |threads: usize, idx: &[usize]| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = Vec::new();
            pool.install(|| p.views_into(&s, idx, 2, 9, 3, &mut out));
            out
        };
        let a = run(1, &[4, 7, 1]);
        assert_eq!(a, run(3, &[4, 7, 1]));
        // Another batch order: image 7's first view is the same numbers.
        let b = run(2, &[7, 1, 4]);
        let chw = shape.len();
        assert_eq!(&a[chw..2 * chw], &b[..chw]);
        // The two views differ, and another epoch differs.
        assert_ne!(&a[..chw], &a[3 * chw..4 * chw]);
        let mut c = Vec::new();
        p.views_into(&s, &[4, 7, 1], 2, 9, 4, &mut c);
        assert_ne!(a, c);
    }

    /// Multi-crop: views of two sizes in one batch, each block of its own shape, each view
    /// the same numbers whatever the batch, the thread count or the other views.
    #[test]
    fn views_of_different_sizes_lie_in_blocks() {
        let shape = ImageShape { height: 12, width: 12, channels: 1 };
        let s = Split::random(10, shape, 2);
        let global = Pipeline::for_split(AugmentConfig::simclr(), &s).unwrap();
        let local = Pipeline::for_split(AugmentConfig { size: Some(5), crop_scale: (0.05, 0.4), ..AugmentConfig::simclr() }, &s).unwrap();
        assert_eq!(local.output_shape(), ImageShape { height: 5, width: 5, channels: 1 });
        let plan = [&global, &global, &local, &local, &local];
        let run = |threads: usize, idx: &[usize]| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = Vec::new();
            pool.install(|| views_into(&plan, &s, idx, 4, 0, &mut out));
            out
        };
        let a = run(1, &[3, 8]);
        assert_eq!(a.len(), 2 * 2 * 144 + 3 * 2 * 25);
        assert_eq!(a, run(2, &[3, 8]));
        // Image 8's third local view (view 4) alone, in a batch of its own: the same numbers.
        let b = run(2, &[8]);
        let (at_a, at_b) = (2 * 2 * 144 + 2 * 2 * 25 + 25, 2 * 144 + 2 * 25);
        assert_eq!(&a[at_a..at_a + 25], &b[at_b..at_b + 25]);
        // A global view of image 3 is what one pipeline of the same view number draws.
        let mut one = Vec::new();
        views_into(&[&global, &global], &s, &[3, 8], 4, 0, &mut one);
        assert_eq!(&a[..2 * 2 * 144], &one[..]);
    }

    #[test]
    fn probability_zero_is_identity_and_one_always_applies() {
        let shape = ImageShape { height: 8, width: 8, channels: 3 };
        let s = Split::random(1, shape, 1);
        let p = Pipeline::new(AugmentConfig { normalize: false, ..AugmentConfig::none() }, shape, &[], &[]).unwrap();
        let mut out = Vec::new();
        p.views_into(&s, &[0], 1, 0, 0, &mut out);
        let want = Image::from_u8(s.image(0), 8, 8, 3);
        let mut chw = vec![0.0; 192];
        p.write_chw(&want, &mut chw);
        for (a, b) in out.iter().zip(&chw) {
            assert!((a - b).abs() < 1e-6);
        }
        // Flip with p = 1 always mirrors.
        let cfg = AugmentConfig { flip_p: 1.0, normalize: false, ..AugmentConfig::none() };
        let p = Pipeline::new(cfg, shape, &[], &[]).unwrap();
        let mut rng = view_rng(0, 0, 0, 0);
        let mut flipped = want.clone();
        hflip(&mut flipped);
        for _ in 0..10 {
            let v = p.view(s.image(0), &mut rng);
            for (a, b) in v.data.iter().zip(&flipped.data) {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        let bad = AugmentConfig { jitter_p: 1.5, ..AugmentConfig::simclr() };
        assert!(bad.validate().unwrap_err().to_string().contains("augment.jitter_p"));
        let bad = AugmentConfig { crop_scale: (0.5, 0.2), ..AugmentConfig::simclr() };
        assert!(bad.validate().unwrap_err().to_string().contains("augment.crop_scale"));
    }
}
