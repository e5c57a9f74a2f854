//! Gaussian blur: separable, reflect padding (as torchvision), kernel size given odd.

use super::Image;

/// The kernel size SimCLR uses: about 10% of the image side, made odd, at least 3.
pub fn kernel_size(side: usize, fraction: f32) -> usize {
    (((side as f32 * fraction) as usize) | 1).max(3)
}

fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Blurs in place with a `k`-tap Gaussian of standard deviation `sigma` (pixels).
pub fn gaussian_blur(img: &mut Image, k: usize, sigma: f32) {
    let half = (k / 2) as isize;
    let mut w: Vec<f32> = (-half..=half).map(|x| (-(x * x) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= sum);
    let (h, wd, c) = (img.height, img.width, img.channels);
    let mut tmp = vec![0.0f32; img.data.len()];
    for y in 0..h {
        for x in 0..wd {
            for ch in 0..c {
                let mut acc = 0.0;
                for (t, wt) in w.iter().enumerate() {
                    let xx = reflect(x as isize + t as isize - half, wd);
                    acc += wt * img.data[(y * wd + xx) * c + ch];
                }
                tmp[(y * wd + x) * c + ch] = acc;
            }
        }
    }
    for y in 0..h {
        for x in 0..wd {
            for ch in 0..c {
                let mut acc = 0.0;
                for (t, wt) in w.iter().enumerate() {
                    let yy = reflect(y as isize + t as isize - half, h);
                    acc += wt * tmp[(yy * wd + x) * c + ch];
                }
                img.data[(y * wd + x) * c + ch] = acc;
            }
        }
    }
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
