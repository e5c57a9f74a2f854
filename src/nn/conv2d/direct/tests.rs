use super::super::cpu_kernel::{backward_im2col, forward_im2col};
use super::*;
use crate::nn::tape::Store;

/// (batch, c_in, c_out, h, w, stride): the tiles the dispatch takes at both instruction sets
/// (wide rows, several or one output or input block, channels a multiple of 8 but not 16 under
/// AVX2) and small ones only tests reach, a batch that leaves the last chunk of images short,
/// one row, one column; at stride 2, the small ResNet's downsampling convolutions (28 -> 14,
/// 14 -> 7) and ResNet-18's (32 -> 16) at their channels, the same maps at other channel counts
/// (the other tiles of both kernels), an odd multiple of 8 channels, and the fallback tile.
const CASES: [(usize, usize, usize, usize, usize, usize); 22] = [
    (3, 16, 32, 28, 28, 1),
    (9, 32, 64, 7, 7, 1),
    (2, 48, 16, 14, 14, 1),
    (2, 16, 64, 8, 8, 1),
    (2, 32, 16, 12, 12, 1),
    (2, 16, 128, 2, 6, 1),
    (2, 16, 256, 5, 3, 1),
    (3, 16, 16, 1, 9, 1),
    (2, 32, 32, 9, 1, 1),
    (2, 16, 16, 7, 7, 1),
    (2, 16, 64, 3, 12, 1),
    (2, 24, 24, 4, 8, 1),
    (3, 16, 32, 28, 28, 2),
    (9, 32, 64, 14, 14, 2),
    (2, 16, 16, 16, 16, 2),
    (2, 16, 48, 4, 16, 2),
    (2, 32, 16, 8, 8, 2),
    (2, 16, 32, 10, 6, 2),
    (2, 32, 64, 28, 28, 2),
    (2, 64, 128, 14, 14, 2),
    (2, 64, 128, 32, 32, 2),
    (2, 24, 24, 8, 16, 2),
];

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 997.0).collect()
}

fn geom(b: usize, c: usize, o: usize, h: usize, w: usize, s: usize) -> ConvGeom {
    ConvGeom::new(b, c, h, w, o, 3, s, 1, 1, 1).unwrap()
}

/// The levels with direct kernels on this CPU.
fn levels() -> Vec<Level> {
    simd::available().into_iter().filter(|&l| l != Level::Baseline).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 2e-5 * scale, "{what}[{i}]: {a} vs {b} (scale {scale})");
    }
}

#[test]
fn direct_kernels_match_im2col_at_every_level() {
    for level in levels() {
        for (b, c, o, h, w, s) in CASES {
            if c % lanes_of(level) != 0 || o % lanes_of(level) != 0 {
                continue;
            }
            let g = geom(b, c, o, h, w, s);
            let (x, wt, dy) = (values(b * c * h * w, 1), values(o * c * 9, 2), values(b * o * g.oh * g.ow, 3));
            let what = format!("{level:?} {g:?}");
            let (mut y, mut y_ref) = (vec![f32::NAN; dy.len()], vec![f32::NAN; dy.len()]);
            forward_at(level, &g, &x, &wt, &mut y);
            forward_im2col(&g, &x, &wt, &mut y_ref);
            assert_close(&format!("{what} y"), &y, &y_ref);
            // Both gradients are added into what the buffers hold.
            let (mut dx, mut dw) = (values(x.len(), 4), values(wt.len(), 5));
            let (mut dx_ref, mut dw_ref) = (dx.clone(), dw.clone());
            backward_at(level, &g, &x, &wt, &dy, Some(&mut dx), Store::Add, &mut dw);
            backward_im2col(&g, &x, &wt, &dy, Some(&mut dx_ref), &mut dw_ref);
            assert_close(&format!("{what} dx"), &dx, &dx_ref);
            assert_close(&format!("{what} dw"), &dw, &dw_ref);
            // Written over stale values: the input gradient alone.
            let (mut dx_written, mut dx_alone) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
            backward_at(level, &g, &x, &wt, &dy, Some(&mut dx_written), Store::Write, &mut values(wt.len(), 5));
            backward_im2col(&g, &x, &wt, &dy, Some(&mut dx_alone), &mut values(wt.len(), 5));
            assert_close(&format!("{what} dx written"), &dx_written, &dx_alone);
            // Without the input gradient, the same weight gradient to the bit.
            let mut dw_alone = values(wt.len(), 5);
            backward_at(level, &g, &x, &wt, &dy, None, Store::Add, &mut dw_alone);
            assert!(dw_alone.iter().zip(&dw).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}");
        }
    }
}

/// The loss `sum(r * conv(x, w))` in f64.
fn loss(g: &ConvGeom, level: Level, x: &[f32], w: &[f32], r: &[f32]) -> f64 {
    let mut y = vec![0.0f32; r.len()];
    forward_at(level, g, x, w, &mut y);
    y.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Central differences against the direct backward, at stride 1 and 2. The convolution is linear
/// in x and in w, so the differences are exact but for rounding, which only the outputs a
/// perturbed value reaches see.
#[test]
fn direct_kernels_pass_gradient_checks() {
    for (level, s) in levels().into_iter().flat_map(|l| [(l, 1), (l, 2)]) {
        let g = geom(2, 32, 16, 8, 14, s);
        let (x, w, r) = (values(2 * 32 * 8 * 14, 6), values(16 * 32 * 9, 7), values(2 * 16 * g.oh * g.ow, 8));
        let (mut dx, mut dw) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
        backward_at(level, &g, &x, &w, &r, Some(&mut dx), Store::Add, &mut dw);
        let step = 0.5f32;
        let check = |i: usize, wrt_x: bool, analytic: f32| {
            let (mut xp, mut wp) = (x.clone(), w.clone());
            let (mut xm, mut wm) = (x.clone(), w.clone());
            if wrt_x {
                xp[i] += step;
                xm[i] -= step;
            } else {
                wp[i] += step;
                wm[i] -= step;
            }
            let numeric = (loss(&g, level, &xp, &wp, &r) - loss(&g, level, &xm, &wm, &r)) / (2.0 * step as f64);
            let what = if wrt_x { "dx" } else { "dw" };
            assert!((numeric - analytic as f64).abs() <= 1e-4 * (1.0 + numeric.abs()), "{level:?} s{s} {what}[{i}]: {numeric} vs {analytic}");
        };
        // Corners, edges and the interior of the planes (odd and even rows and columns); every
        // tap of some weights.
        for i in [0, 13, 14 * 7 + 13, 14 * 3 + 5, 14 * 4 + 6, 8 * 14 * 31 + 20, x.len() - 1, x.len() / 2 + 3] {
            check(i, true, dx[i]);
        }
        for i in (0..9).chain([9 * 31 + 4, w.len() - 1, w.len() / 2]) {
            check(i, false, dw[i]);
        }
    }
}

#[test]
fn direct_kernels_give_the_same_bits_on_any_thread_count() {
    for (level, s) in levels().into_iter().flat_map(|l| [(l, 1), (l, 2)]) {
        let g = geom(11, 32, 32, 14, 14, s);
        let (x, w, dy) = (values(11 * 32 * 196, 9), values(32 * 32 * 9, 10), values(11 * 32 * g.oh * g.ow, 11));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (mut y, mut dx, mut dw) = (vec![0.0f32; dy.len()], vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
                forward_at(level, &g, &x, &w, &mut y);
                backward_at(level, &g, &x, &w, &dy, Some(&mut dx), Store::Add, &mut dw);
                [y, dx, dw].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
            })
        };
        assert_eq!(run(1), run(3), "{level:?} s{s}");
    }
}

#[test]
fn only_resnet_3x3_convolutions_in_f32_take_the_direct_kernels() {
    let Some(level) = applicable::<f32>(&geom(2, 64, 64, 8, 8, 1)) else {
        assert_eq!(simd::level(), Level::Baseline);
        return;
    };
    assert_eq!(level, simd::level());
    assert!(applicable::<f64>(&geom(2, 64, 64, 8, 8, 1)).is_none());
    // The public entry points take the process's level, and refuse f64.
    let g = geom(3, 32, 16, 7, 7, 1);
    let (x, w, dy) = (values(3 * 32 * 49, 12), values(16 * 32 * 9, 13), values(3 * 16 * 49, 14));
    let (mut y, mut y_at) = (vec![0.0f32; dy.len()], vec![0.0f32; dy.len()]);
    assert!(forward(&g, &x, &w, &mut y));
    forward_at(level, &g, &x, &w, &mut y_at);
    assert_eq!(y, y_at);
    let (mut dx, mut dw) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
    let (mut dx_at, mut dw_at) = (dx.clone(), dw.clone());
    assert!(backward(&g, &x, &w, &dy, Some(&mut dx), Store::Add, &mut dw));
    backward_at(level, &g, &x, &w, &dy, Some(&mut dx_at), Store::Add, &mut dw_at);
    assert_eq!((dx, dw), (dx_at, dw_at));
    let as64 = |v: &[f32]| v.iter().map(|&f| f as f64).collect::<Vec<f64>>();
    assert!(!forward(&g, &as64(&x), &as64(&w), &mut vec![0.0f64; dy.len()]));
    let refused = [
        ConvGeom::new(2, 64, 8, 8, 64, 3, 2, 1, 1, 1),
        ConvGeom::new(2, 64, 15, 15, 64, 3, 2, 1, 1, 1),
        ConvGeom::new(2, 64, 22, 22, 64, 3, 3, 1, 1, 1),
        ConvGeom::new(2, 64, 8, 8, 64, 1, 1, 0, 1, 1),
        ConvGeom::new(2, 64, 8, 8, 64, 3, 1, 2, 1, 1),
        ConvGeom::new(2, 64, 8, 8, 64, 3, 1, 1, 2, 1),
        ConvGeom::new(2, 64, 8, 8, 64, 3, 1, 2, 2, 1),
        ConvGeom::new(2, 64, 8, 8, 64, 3, 1, 1, 1, 2),
        ConvGeom::new(2, 3, 8, 8, 64, 3, 1, 1, 1, 1),
        ConvGeom::new(2, 64, 8, 8, 12, 3, 1, 1, 1, 1),
        ConvGeom::new(2, 64, 4, 4, 64, 3, 1, 1, 1, 1),
        ConvGeom::new(2, 64, 9, 9, 64, 3, 1, 1, 1, 1),
    ];
    for (h, s) in [(28, 1), (7, 1), (28, 2), (14, 2)] {
        assert!(applicable::<f32>(&geom(2, 32, 32, h, h, s)).is_some(), "{h} {s}");
    }
    for g in refused {
        assert!(applicable::<f32>(&g.unwrap()).is_none(), "{g:?}");
    }
}
