//! Colour transforms with torchvision's semantics on float images: brightness, contrast,
//! saturation and hue jitter (factors drawn as torchvision does, applied in a random order),
//! grayscale and solarize. For 1-channel images saturation, hue and grayscale are identities.

use rand::seq::SliceRandom;
use rand::Rng;

use super::Image;

/// ITU-R 601 luma weights, as torchvision and PIL.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

fn blend(img: &mut Image, other: impl Fn(usize) -> f32, factor: f32) {
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = (factor * *v + (1.0 - factor) * other(i)).clamp(0.0, 1.0);
    }
}

fn gray_of(px: &[f32]) -> f32 {
    LUMA[0] * px[0] + LUMA[1] * px[1] + LUMA[2] * px[2]
}

/// Multiplies every value by `factor`.
pub fn brightness(img: &mut Image, factor: f32) {
    img.data.iter_mut().for_each(|v| *v = (*v * factor).clamp(0.0, 1.0));
}

/// Blends with the mean gray level of the whole image.
pub fn contrast(img: &mut Image, factor: f32) {
    let n = (img.height * img.width) as f32;
    let mean = if img.channels == 3 {
        img.data.chunks_exact(3).map(gray_of).sum::<f32>() / n
    } else {
        img.data.iter().sum::<f32>() / n
    };
    blend(img, |_| mean, factor);
}

/// Blends each pixel with its own gray level.
pub fn saturation(img: &mut Image, factor: f32) {
    if img.channels != 3 {
        return;
    }
    let gray: Vec<f32> = img.data.chunks_exact(3).map(gray_of).collect();
    blend(img, |i| gray[i / 3], factor);
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    let s = if maxc > 0.0 { cr / maxc } else { 0.0 };
    if cr == 0.0 {
        return (0.0, s, maxc);
    }
    let (rc, gc, bc) = ((maxc - r) / cr, (maxc - g) / cr, (maxc - b) / cr);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    ((h / 6.0).rem_euclid(1.0), s, maxc)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Rotates the hue by `shift` turns (in [-0.5, 0.5]), wrapping around.
pub fn hue(img: &mut Image, shift: f32) {
    if img.channels != 3 {
        return;
    }
    for px in img.data.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(px[0], px[1], px[2]);
        let (r, g, b) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
        px.copy_from_slice(&[r, g, b]);
    }
}

/// Replaces colour by its gray level (kept as three equal channels).
pub fn grayscale(img: &mut Image) {
    if img.channels != 3 {
        return;
    }
    for px in img.data.chunks_exact_mut(3) {
        let g = gray_of(px);
        px.copy_from_slice(&[g, g, g]);
    }
}

/// Inverts every value at or above `threshold` (in [0, 1]).
pub fn solarize(img: &mut Image, threshold: f32) {
    img.data.iter_mut().filter(|v| **v >= threshold).for_each(|v| *v = 1.0 - *v);
}

/// Colour-jitter strengths, as torchvision's `ColorJitter(brightness, contrast, saturation, hue)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

/// The factors of one draw: brightness, contrast and saturation in [max(0, 1 - s), 1 + s], hue
/// shift in [-h, h], and the order of the four operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterDraw {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub order: [u8; 4],
}

impl Jitter {
    /// Draws factors and an order as torchvision's `ColorJitter.get_params`.
    pub fn draw(&self, rng: &mut impl Rng) -> JitterDraw {
        let mut order = [0u8, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut dyn rand::RngCore, s: f32| if s > 0.0 { rng.gen_range((1.0 - s).max(0.0)..=1.0 + s) } else { 1.0 };
        let brightness = factor(rng, self.brightness);
        let contrast = factor(rng, self.contrast);
        let saturation = factor(rng, self.saturation);
        let hue = if self.hue > 0.0 { rng.gen_range(-self.hue..=self.hue) } else { 0.0 };
        JitterDraw { brightness, contrast, saturation, hue, order }
    }
}

impl JitterDraw {
    /// Applies the four operations in the drawn order.
    pub fn apply(&self, img: &mut Image) {
        for op in self.order {
            match op {
                0 => brightness(img, self.brightness),
                1 => contrast(img, self.contrast),
                2 => saturation(img, self.saturation),
                _ => hue(img, self.hue),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rgb(px: &[f32]) -> Image {
        Image { height: 1, width: px.len() / 3, channels: 3, data: px.to_vec() }
    }

    #[test]
    fn hue_round_trips_and_wraps() {
        let src = [0.9, 0.2, 0.4, 0.1, 0.7, 0.3, 0.5, 0.5, 0.5, 0.0, 0.0, 1.0];
        let mut img = rgb(&src);
        hue(&mut img, 0.0);
        for (a, b) in img.data.iter().zip(src) {
            assert!((a - b).abs() < 1e-6);
        }
        // A full turn in two halves is the identity; +0.5 and -0.5 agree (wrap-around).
        let (mut a, mut b) = (rgb(&src), rgb(&src));
        hue(&mut a, 0.5);
        hue(&mut b, -0.5);
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!((x - y).abs() < 1e-6);
        }
        hue(&mut a, 0.5);
        for (x, y) in a.data.iter().zip(src) {
            assert!((x - y).abs() < 1e-5);
        }
        // Pure red shifted by a third of a turn is pure green.
        let mut red = rgb(&[1.0, 0.0, 0.0]);
        hue(&mut red, 1.0 / 3.0);
        assert!((red.data[1] - 1.0).abs() < 1e-5 && red.data[0].abs() < 1e-5);
    }

    #[test]
    fn single_channel_saturation_hue_grayscale_are_identities() {
        let mut img = Image { height: 2, width: 2, channels: 1, data: vec![0.1, 0.5, 0.9, 0.3] };
        let orig = img.clone();
        saturation(&mut img, 0.0);
        hue(&mut img, 0.3);
        grayscale(&mut img);
        assert_eq!(img, orig);
    }

    #[test]
    fn jitter_factors_stay_inside_their_ranges() {
        let j = Jitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..5000 {
            let d = j.draw(&mut rng);
            for f in [d.brightness, d.contrast, d.saturation] {
                assert!((0.6..=1.4).contains(&f));
            }
            assert!((-0.1..=0.1).contains(&d.hue));
            orders.insert(d.order);
        }
        assert_eq!(orders.len(), 24, "all 24 orders occur");
        // Strength above 1 clamps the lower bound at 0.
        let d = Jitter { brightness: 1.5, contrast: 0.0, saturation: 0.0, hue: 0.0 }.draw(&mut rng);
        assert!(d.brightness >= 0.0 && d.contrast == 1.0);
    }

    #[test]
    fn contrast_zero_gives_the_mean_and_grayscale_is_luma() {
        let mut img = rgb(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        contrast(&mut img, 0.0);
        let mean = (0.299 + 0.587) / 2.0;
        assert!(img.data.iter().all(|v| (v - mean).abs() < 1e-6));
        let mut img = rgb(&[1.0, 0.0, 0.0]);
        grayscale(&mut img);
        assert!(img.data.iter().all(|v| (v - 0.299).abs() < 1e-6));
        let mut img = rgb(&[0.2, 0.6, 0.9]);
        solarize(&mut img, 0.5);
        assert!((img.data[1] - 0.4).abs() < 1e-6 && (img.data[0] - 0.2).abs() < 1e-6);
    }
}
