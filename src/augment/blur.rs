//! Gaussian blur: separable, reflect padding (as torchvision), kernel size given odd.

use super::Image;
use crate::simd;

/// The kernel size SimCLR uses: about 10% of the image side, made odd, at least 3.
pub fn kernel_size(side: usize, fraction: f32) -> usize {
    (((side as f32 * fraction) as usize) | 1).max(3)
}

#[inline(always)]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Blurs in place with a `k`-tap Gaussian of standard deviation `sigma` (pixels). Both passes
/// run over contiguous memory: rows are reflect-padded once, and the vertical pass adds whole
/// rows.
pub fn gaussian_blur(img: &mut Image, k: usize, sigma: f32) {
    let half = k / 2;
    let mut w: Vec<f32> = (0..k)
        .map(|t| {
            let x = t as f32 - half as f32;
            (-(x * x) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f32 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= sum);
    let (h, wd) = (img.height, img.width);
    let mut padded = vec![0.0f32; wd + 2 * half];
    let mut tmp = vec![0.0f32; h * wd];
    simd::run(
        #[inline(always)]
        || {
            for plane in img.data.chunks_exact_mut(h * wd) {
                // Horizontal: out[x] = sum_t w[t] * padded[x + t].
                for y in 0..h {
                    let row = &plane[y * wd..][..wd];
                    padded[half..half + wd].copy_from_slice(row);
                    for e in 0..half {
                        padded[e] = row[reflect(e as isize - half as isize, wd)];
                        padded[half + wd + e] = row[reflect((wd + e) as isize, wd)];
                    }
                    let out = &mut tmp[y * wd..][..wd];
                    out.fill(0.0);
                    for (t, &wt) in w.iter().enumerate() {
                        for (o, &p) in out.iter_mut().zip(&padded[t..t + wd]) {
                            *o += wt * p;
                        }
                    }
                }
                // Vertical: each output row is a weighted sum of reflected rows.
                for y in 0..h {
                    let out = &mut plane[y * wd..][..wd];
                    out.fill(0.0);
                    for (t, &wt) in w.iter().enumerate() {
                        let sy = reflect(y as isize + t as isize - half as isize, h);
                        for (o, &p) in out.iter_mut().zip(&tmp[sy * wd..][..wd]) {
                            *o += wt * p;
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_constant_image_constant() {
        let mut img = Image { height: 9, width: 7, channels: 3, data: vec![0.37; 9 * 7 * 3] };
        gaussian_blur(&mut img, 5, 1.7);
        assert!(img.data.iter().all(|v| (v - 0.37).abs() < 1e-6));
    }

    #[test]
    fn spreads_an_impulse_symmetrically_and_keeps_the_sum() {
        let mut img = Image { height: 9, width: 9, channels: 1, data: vec![0.0; 81] };
        img.data[40] = 1.0;
        gaussian_blur(&mut img, 5, 1.0);
        assert!((img.data.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!((img.data[39] - img.data[41]).abs() < 1e-7 && (img.data[31] - img.data[49]).abs() < 1e-7);
        assert!(img.data[40] < 1.0 && img.data[39] > 0.0);
        assert_eq!(kernel_size(28, 0.1), 3);
        assert_eq!(kernel_size(96, 0.1), 9);
        assert_eq!(kernel_size(224, 0.1), 23);
    }
}
