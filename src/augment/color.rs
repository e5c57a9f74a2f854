//! Colour transforms with torchvision's semantics on float images: brightness, contrast,
//! saturation and hue jitter (factors drawn as torchvision does, applied in a random order),
//! grayscale and solarize. For 1-channel images saturation, hue and grayscale are identities.

use rand::seq::SliceRandom;
use rand::Rng;

use super::Image;
use crate::simd;

/// ITU-R 601 luma weights, as torchvision and PIL.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Multiplies every value by `factor`.
pub fn brightness(img: &mut Image, factor: f32) {
    simd::run(
        #[inline(always)]
        || {
            for v in img.data.iter_mut() {
                *v = (*v * factor).clamp(0.0, 1.0);
            }
        },
    )
}

/// The sum of `values` in 16 independent lanes (lane `i` adds every 16th value from `i`), then
/// the lanes and the tail in order: a fixed order, so the same bits at every vector width,
/// without the one-add-at-a-time chain of a sequential sum.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    let mut sum = 0.0f32;
    for &v in lanes.iter().chain(tail) {
        sum += v;
    }
    sum
}

/// Blends with the mean gray level of the whole image.
pub fn contrast(img: &mut Image, factor: f32) {
    let n = (img.height * img.width) as f32;
    simd::run(
        #[inline(always)]
        || {
            let mut total = 0.0f32;
            if img.channels == 3 {
                for (ch, luma) in LUMA.iter().enumerate() {
                    total += luma * lane_sum(img.plane(ch));
                }
            } else {
                total = lane_sum(&img.data);
            }
            let shift = (1.0 - factor) * (total / n);
            for v in img.data.iter_mut() {
                *v = (factor * *v + shift).clamp(0.0, 1.0);
            }
        },
    )
}

/// Blends each pixel with its own gray level.
pub fn saturation(img: &mut Image, factor: f32) {
    if img.channels != 3 {
        return;
    }
    let (r, g, b) = img.rgb_mut();
    let keep = 1.0 - factor;
    simd::run(
        #[inline(always)]
        || {
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let gray = keep * (LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b);
                *r = (factor * *r + gray).clamp(0.0, 1.0);
                *g = (factor * *g + gray).clamp(0.0, 1.0);
                *b = (factor * *b + gray).clamp(0.0, 1.0);
            }
        },
    )
}

/// x mod 1 in [0, 1] (1.0 only by rounding, for a tiny negative x) for |x| < 2^31. `trunc`
/// (SSE4.1's `roundps`, in the x86-64-v3 baseline) rather than `x as i32`, whose saturating
/// conversion does not vectorise.
#[inline(always)]
fn fract01(x: f32) -> f32 {
    let f = x - x.trunc();
    if f < 0.0 {
        f + 1.0
    } else {
        f
    }
}

/// Rotates the hue by `shift` turns (in [-0.5, 0.5]), wrapping around: torchvision's RGB to
/// HSV and back, written without branches (the max channel of a pixel is unpredictable) so
/// the loop vectorises. Equal to the direct round trip kept in the tests.
pub fn hue(img: &mut Image, shift: f32) {
    if img.channels != 3 {
        return;
    }
    #[inline(always)]
    fn sel(c: bool, a: f32, b: f32) -> f32 {
        if c {
            a
        } else {
            b
        }
    }
    let (r, g, b) = img.rgb_mut();
    simd::run(
        #[inline(always)]
        || {
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let (rv, gv, bv) = (*r, *g, *b);
                let maxc = rv.max(gv).max(bv);
                let minc = rv.min(gv).min(bv);
                let cr = maxc - minc;
                // Gray pixels (cr = 0) have s = 0 and come back unchanged whatever the hue.
                let s = cr / sel(maxc > 0.0, maxc, 1.0);
                let inv = 1.0 / sel(cr > 0.0, cr, 1.0);
                let (rc, gc, bc) = ((maxc - rv) * inv, (maxc - gv) * inv, (maxc - bv) * inv);
                let is_r = maxc == rv;
                let is_g = maxc == gv && !is_r;
                let h6 = sel(is_r, bc - gc, sel(is_g, 2.0 + rc - bc, 4.0 + gc - rc));
                let h = fract01(h6 / 6.0 + shift);
                let h6 = h * 6.0;
                // The sector 0..=5 as a float (h6 >= 0, so trunc is floor).
                let i = h6.trunc().clamp(0.0, 5.0);
                let f = h6 - i;
                let (v, p, q, t) = (maxc, maxc * (1.0 - s), maxc * (1.0 - s * f), maxc * (1.0 - s * (1.0 - f)));
                *r = sel(i == 0.0 || i == 5.0, v, sel(i == 1.0, q, sel(i == 4.0, t, p)));
                *g = sel(i == 1.0 || i == 2.0, v, sel(i == 0.0, t, sel(i == 3.0, q, p)));
                *b = sel(i == 3.0 || i == 4.0, v, sel(i == 2.0, t, sel(i == 5.0, q, p)));
            }
        },
    )
}

/// Replaces colour by its gray level (kept as three equal channels).
pub fn grayscale(img: &mut Image) {
    if img.channels != 3 {
        return;
    }
    let (r, g, b) = img.rgb_mut();
    simd::run(
        #[inline(always)]
        || {
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let gray = LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b;
                (*r, *g, *b) = (gray, gray, gray);
            }
        },
    )
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

/// Hue (in turns), saturation and value of an RGB pixel, as torchvision's `_rgb2hsv`.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    let s = if maxc > 0.0 { cr / maxc } else { 0.0 };
    if cr == 0.0 {
        return (0.0, s, maxc);
    }
    let inv = 1.0 / cr;
    let (rc, gc, bc) = ((maxc - r) * inv, (maxc - g) * inv, (maxc - b) * inv);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    (fract01(h / 6.0), s, maxc)
}

/// RGB of a hue in [0, 1), saturation and value, as torchvision's `_hsv2rgb`.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = (h6 as i32).clamp(0, 5);
    let f = h6 - i as f32;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

    /// A one-row RGB image from interleaved values.
    fn rgb(px: &[f32]) -> Image {
        let n = px.len() / 3;
        let data = (0..3).flat_map(|ch| (0..n).map(move |i| px[i * 3 + ch])).collect();
        Image { height: 1, width: n, channels: 3, data }
    }

    fn interleaved(img: &Image) -> Vec<f32> {
        let n = img.width * img.height;
        (0..n).flat_map(|i| (0..3).map(move |ch| img.data[ch * n + i])).collect()
    }

    #[test]
    fn hue_round_trips_and_wraps() {
        let src = [0.9, 0.2, 0.4, 0.1, 0.7, 0.3, 0.5, 0.5, 0.5, 0.0, 0.0, 1.0];
        let mut img = rgb(&src);
        hue(&mut img, 0.0);
        for (a, b) in interleaved(&img).iter().zip(src) {
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
        for (x, y) in interleaved(&a).iter().zip(src) {
            assert!((x - y).abs() < 1e-5);
        }
        // Pure red shifted by a third of a turn is pure green.
        let mut red = rgb(&[1.0, 0.0, 0.0]);
        hue(&mut red, 1.0 / 3.0);
        let red = interleaved(&red);
        assert!((red[1] - 1.0).abs() < 1e-5 && red[0].abs() < 1e-5);
    }

    #[test]
    fn branch_free_hue_equals_the_hsv_round_trip() {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut px: Vec<f32> = (0..3 * 500).map(|_| rng.gen()).collect();
        px.extend_from_slice(&[0.5, 0.5, 0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.9, 0.9]);
        for shift in [-0.5, -0.13, 0.0, 0.27, 0.5] {
            let mut img = rgb(&px);
            hue(&mut img, shift);
            for (i, got) in interleaved(&img).chunks_exact(3).enumerate() {
                let (h, s, v) = rgb_to_hsv(px[3 * i], px[3 * i + 1], px[3 * i + 2]);
                let (r, g, b) = hsv_to_rgb(fract01(h + shift), s, v);
                for (a, e) in got.iter().zip([r, g, b]) {
                    assert!((a - e).abs() < 1e-5, "pixel {i} shift {shift}: {got:?} vs {:?}", (r, g, b));
                }
            }
        }
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
    fn contrast_blends_with_the_mean_of_a_large_image() {
        // 37 x 29 pixels: 16-lane chunks and a tail of 1 in each plane.
        let n = 37 * 29;
        let data: Vec<f32> = (0..3 * n).map(|i| (i * 7919 % 1000) as f32 / 999.0).collect();
        let mean: f64 = (0..3).map(|ch| LUMA[ch] as f64 * data[ch * n..][..n].iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() / n as f64;
        let mut img = Image { height: 37, width: 29, channels: 3, data: data.clone() };
        contrast(&mut img, 0.25);
        for (&got, &v) in img.data.iter().zip(&data) {
            assert!((got as f64 - (0.25 * v as f64 + 0.75 * mean).clamp(0.0, 1.0)).abs() < 1e-5);
        }
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
        let px = interleaved(&img);
        assert!((px[1] - 0.4).abs() < 1e-6 && (px[0] - 0.2).abs() < 1e-6);
    }
}
