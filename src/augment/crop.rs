//! Random resized crop: a region of random area fraction and aspect ratio (sampled in log
//! space, as torchvision), ten tries then a centre-crop fallback, resampled to the output size
//! with a separable bilinear or bicubic filter that widens when shrinking (antialiasing, as
//! PIL does).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::Image;
use crate::simd;

/// Resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

/// A crop window in source pixels: top, left, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// torchvision's `RandomResizedCrop.get_params`.
pub fn sample_window(rng: &mut impl Rng, h: usize, w: usize, scale: (f32, f32), ratio: (f32, f32)) -> Window {
    let area = (h * w) as f32;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(lr0..=lr1).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let top = rng.gen_range(0..=h - ch);
            let left = rng.gen_range(0..=w - cw);
            return Window { top, left, height: ch, width: cw };
        }
    }
    center_window(h, w, ratio)
}

/// The fallback: the largest centred window whose aspect ratio is inside `ratio`.
pub fn center_window(h: usize, w: usize, ratio: (f32, f32)) -> Window {
    let in_ratio = w as f32 / h as f32;
    let (ch, cw) = if in_ratio < ratio.0 {
        (((w as f32) / ratio.0).round() as usize, w)
    } else if in_ratio > ratio.1 {
        (h, ((h as f32) * ratio.1).round() as usize)
    } else {
        (h, w)
    };
    Window { top: (h - ch) / 2, left: (w - cw) / 2, height: ch, width: cw }
}

fn bicubic(x: f32) -> f32 {
    // Keys' cubic with a = -0.5, as PIL.
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Resampling weights along one axis: output coordinate o reads `taps` source pixels from
/// `first[o]` with weights `w[o * taps..]` (zero-padded).
struct AxisWeights {
    first: Vec<usize>,
    taps: usize,
    w: Vec<f32>,
}

fn weights(src_len: usize, src_off: usize, win: usize, out: usize, interp: Interpolation) -> AxisWeights {
    let scale = win as f32 / out as f32;
    let (support, kernel): (f32, fn(f32) -> f32) = match interp {
        Interpolation::Bilinear => (1.0, |x: f32| (1.0 - x.abs()).max(0.0)),
        Interpolation::Bicubic => (2.0, bicubic),
    };
    let filter_scale = scale.max(1.0);
    let support = support * filter_scale;
    // Every read stays inside the source: a window of `taps` pixels starting at `start`.
    let taps = ((2.0 * support).ceil() as usize + 1).min(src_len);
    let mut first = Vec::with_capacity(out);
    let mut w = vec![0.0f32; out * taps];
    for o in 0..out {
        let center = src_off as f32 + (o as f32 + 0.5) * scale;
        let lo = ((center - support).floor().max(0.0)) as usize;
        let hi = ((center + support).ceil() as usize).min(src_len);
        let start = lo.min(src_len - taps);
        let ws = &mut w[o * taps..][..taps];
        for i in lo..hi.min(start + taps) {
            ws[i - start] = kernel((i as f32 + 0.5 - center) / filter_scale);
        }
        let sum: f32 = ws.iter().sum();
        if sum != 0.0 {
            ws.iter_mut().for_each(|v| *v /= sum);
        }
        first.push(start);
    }
    AxisWeights { first, taps, w }
}

/// One row of the horizontal pass: output column `x` is the sum, in tap order from 0, of
/// `w[x * taps + k] * row[offs[x] + k]`. Inlined, so a literal `taps` compiles its loop for
/// that count.
#[inline(always)]
fn resample_row(out: &mut [f32], row: &[f32], offs: &[usize], w: &[f32], taps: usize) {
    for ((t, &o), ws) in out.iter_mut().zip(offs).zip(w.chunks_exact(taps.max(1))) {
        let mut acc = 0.0f32;
        for (&wt, &v) in ws.iter().zip(&row[o..o + taps]) {
            acc += wt * v;
        }
        *t = acc;
    }
}

/// Crops `win` from the u8 H x W x C `src` and resamples it to `out_h` x `out_w`, planar.
#[allow(clippy::too_many_arguments)]
pub fn crop_resize(
    src: &[u8],
    h: usize,
    w: usize,
    c: usize,
    win: Window,
    out_h: usize,
    out_w: usize,
    interp: Interpolation,
) -> Image {
    let wx = weights(w, win.left, win.width, out_w, interp);
    let wy = weights(h, win.top, win.height, out_h, interp);
    // Horizontal pass, planar, over the rows the vertical pass reads.
    let row_lo = wy.first.iter().copied().min().unwrap_or(0);
    let row_hi = wy.first.iter().map(|&f| f + wy.taps).max().unwrap_or(0).min(h);
    let rows = row_hi - row_lo;
    let col_lo = wx.first.iter().copied().min().unwrap_or(0);
    let col_hi = wx.first.iter().map(|&f| f + wx.taps).max().unwrap_or(0).min(w);
    let cols = col_hi - col_lo;
    let mut tmp = vec![0.0f32; c * rows * out_w];
    let mut planar = vec![0.0f32; c * cols];
    let offs: Vec<usize> = wx.first.iter().map(|&f| f - col_lo).collect();
    let taps = wx.taps;
    let data = simd::run(
        #[inline(always)]
        || {
            for y in row_lo..row_hi {
                // The source row's used columns as f32, one plane per channel.
                let srow = &src[(y * w + col_lo) * c..(y * w + col_hi) * c];
                match c {
                    1 => {
                        for (p, &v) in planar.iter_mut().zip(srow) {
                            *p = v as f32;
                        }
                    }
                    3 => {
                        let (r, gb) = planar.split_at_mut(cols);
                        let (g, b) = gb.split_at_mut(cols);
                        for (((px, r), g), b) in srow.chunks_exact(3).zip(r).zip(g).zip(b) {
                            (*r, *g, *b) = (px[0] as f32, px[1] as f32, px[2] as f32);
                        }
                    }
                    _ => {
                        for (i, px) in srow.chunks_exact(c).enumerate() {
                            for (ch, &v) in px.iter().enumerate() {
                                planar[ch * cols + i] = v as f32;
                            }
                        }
                    }
                }
                for ch in 0..c {
                    let prow = &planar[ch * cols..][..cols];
                    let trow = &mut tmp[(ch * rows + y - row_lo) * out_w..][..out_w];
                    // The usual counts (bilinear and bicubic when enlarging) as literals.
                    match taps {
                        3 => resample_row(trow, prow, &offs, &wx.w, 3),
                        5 => resample_row(trow, prow, &offs, &wx.w, 5),
                        _ => resample_row(trow, prow, &offs, &wx.w, taps),
                    }
                }
            }
            // Vertical pass: each output row is a weighted sum of whole rows.
            let mut data = vec![0.0f32; c * out_h * out_w];
            for ch in 0..c {
                for y in 0..out_h {
                    let drow = &mut data[(ch * out_h + y) * out_w..][..out_w];
                    let (first, ws) = (wy.first[y], &wy.w[y * wy.taps..][..wy.taps]);
                    for (k, &wt) in ws.iter().enumerate() {
                        if wt == 0.0 {
                            continue;
                        }
                        let trow = &tmp[(ch * rows + first + k - row_lo) * out_w..][..out_w];
                        for (d, s) in drow.iter_mut().zip(trow) {
                            *d += wt * s;
                        }
                    }
                    for v in drow.iter_mut() {
                        *v = (*v / 255.0).clamp(0.0, 1.0);
                    }
                }
            }
            data
        },
    );
    Image { height: out_h, width: out_w, channels: c, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn full_crop_to_the_same_size_is_the_identity() {
        let src: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 4) as u8).collect();
        let win = Window { top: 0, left: 0, height: 5, width: 4 };
        for interp in [Interpolation::Bilinear, Interpolation::Bicubic] {
            let img = crop_resize(&src, 5, 4, 3, win, 5, 4, interp);
            assert_eq!(img.to_u8(), src);
        }
    }

    /// The separable passes (3 and 5 taps specialised, other counts generic) against the
    /// resampling written out pixel by pixel from the same axis weights.
    #[test]
    fn matches_the_weights_applied_pixel_by_pixel() {
        let (h, w, c) = (23, 31, 3);
        let src: Vec<u8> = (0..h * w * c).map(|i| (i * 7919 % 251) as u8).collect();
        let cases = [
            (Window { top: 2, left: 5, height: 9, width: 12 }, 17, 19, Interpolation::Bilinear),
            (Window { top: 0, left: 9, height: 10, width: 8 }, 16, 16, Interpolation::Bicubic),
            (Window { top: 1, left: 0, height: 22, width: 30 }, 7, 6, Interpolation::Bilinear),
        ];
        for (win, oh, ow, interp) in cases {
            let img = crop_resize(&src, h, w, c, win, oh, ow, interp);
            let (wx, wy) = (weights(w, win.left, win.width, ow, interp), weights(h, win.top, win.height, oh, interp));
            for ch in 0..c {
                for y in 0..oh {
                    for x in 0..ow {
                        let mut v = 0.0f32;
                        for ky in 0..wy.taps {
                            for kx in 0..wx.taps {
                                let (sy, sx) = (wy.first[y] + ky, wx.first[x] + kx);
                                v += wy.w[y * wy.taps + ky] * wx.w[x * wx.taps + kx] * src[(sy * w + sx) * c + ch] as f32;
                            }
                        }
                        let got = img.data[(ch * oh + y) * ow + x];
                        assert!((got - (v / 255.0).clamp(0.0, 1.0)).abs() < 1e-5, "{interp:?} {ch} {y} {x}: {got} vs {v}");
                    }
                }
            }
        }
    }

    #[test]
    fn scale_one_aspect_one_is_a_plain_resize() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for _ in 0..20 {
            let win = sample_window(&mut rng, 28, 28, (1.0, 1.0), (1.0, 1.0));
            assert_eq!(win, Window { top: 0, left: 0, height: 28, width: 28 });
        }
    }

    #[test]
    fn windows_stay_inside_and_respect_ranges() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..2000 {
            let win = sample_window(&mut rng, 32, 48, (0.08, 1.0), (0.75, 4.0 / 3.0));
            assert!(win.top + win.height <= 32 && win.left + win.width <= 48);
            let frac = (win.height * win.width) as f32 / (32.0 * 48.0);
            assert!(frac > 0.05 && frac <= 1.0, "{frac}");
        }
        // Impossible ranges fall back to a centred crop of the allowed aspect.
        let win = sample_window(&mut rng, 10, 100, (0.9, 1.0), (1.0, 1.0));
        assert_eq!(win, Window { top: 0, left: 45, height: 10, width: 10 });
    }

    #[test]
    fn downscaling_a_constant_stays_constant() {
        let src = vec![77u8; 40 * 40];
        let img = crop_resize(&src, 40, 40, 1, Window { top: 3, left: 5, height: 30, width: 33 }, 7, 7, Interpolation::Bicubic);
        assert!(img.to_u8().iter().all(|&v| v == 77));
        // Windows at the far edges, up- and downscaled, and a source narrower than the filter.
        for (win, out) in [(Window { top: 30, left: 35, height: 10, width: 5 }, 16), (Window { top: 0, left: 37, height: 40, width: 3 }, 2)] {
            let img = crop_resize(&src, 40, 40, 1, win, out, out, Interpolation::Bicubic);
            assert!(img.to_u8().iter().all(|&v| v == 77));
        }
        let tiny = vec![5u8; 2 * 3];
        let img = crop_resize(&tiny, 2, 3, 1, Window { top: 0, left: 0, height: 2, width: 3 }, 1, 1, Interpolation::Bicubic);
        assert_eq!(img.to_u8(), vec![5]);
    }
}
