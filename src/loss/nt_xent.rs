//! NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Chen et al. 2020).
//!
//! For 2N projections where rows i and i + N are the two views of image i: cosine similarity
//! over temperature, self-similarity masked out, and cross entropy whose positive for row i is
//! row (i + N) mod 2N, computed through log-softmax (log-sum-exp), so it stays finite at
//! temperature 0.05 and below.

use dfdx::prelude::*;

/// The fewest images NT-Xent is defined on: each needs one other image as a negative.
pub const MIN_BATCH: usize = 2;

/// Added to the self-similarity logits; exp() of it underflows to exactly zero.
const MASK: f64 = -1e9;

/// NT-Xent over `z` = [2N, W] (views of image i at rows i and i + N), averaged over the 2N rows.
pub fn nt_xent<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev>>(
    z: Tensor<(usize, W), E, Dev, T>,
    temperature: f64,
) -> Tensor<Rank0, E, Dev, T> {
    let (rows, _) = *z.shape();
    assert!(rows >= 2 && rows % 2 == 0, "nt_xent needs an even number (>= 2) of rows, got {rows}");
    assert!(temperature > 0.0, "nt_xent temperature must be positive");
    let n = rows / 2;
    let dev = z.device().clone();
    let shape = *z.shape();
    // L2-normalise each row (PyTorch's F.normalize: norm clamped at 1e-12).
    let norm = z.retaped::<T>().square().sum::<(usize,), Axis<1>>().sqrt().clamp(1e-12, f64::MAX);
    let zn = z / norm.broadcast_like(&shape);
    // A second handle with its own id: dfdx's matmul cannot take one tensor on both sides.
    let zt = (zn.retaped::<T>() * E::ONE).permute::<(W, usize), Axes2<1, 0>>();
    let logits = zn.matmul(zt) * E::from_f64(1.0 / temperature).unwrap();
    let mut mask = vec![E::default(); rows * rows];
    let mut target = vec![E::default(); rows * rows];
    for i in 0..rows {
        mask[i * rows + i] = E::from_f64(MASK).unwrap();
        target[i * rows + (i + n) % rows] = E::ONE;
    }
    let logits = logits + dev.tensor_from_vec(mask, (rows, rows));
    cross_entropy_with_logits_loss(logits, dev.tensor_from_vec(target, (rows, rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    /// Direct evaluation in f64 for comparison.
    fn reference(z: &[f64], rows: usize, d: usize, t: f64) -> f64 {
        let zn: Vec<Vec<f64>> = (0..rows)
            .map(|i| {
                let r = &z[i * d..(i + 1) * d];
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                r.iter().map(|v| v / norm).collect()
            })
            .collect();
        let mut total = 0.0;
        for i in 0..rows {
            let sims: Vec<f64> = (0..rows).map(|j| zn[i].iter().zip(&zn[j]).map(|(a, b)| a * b).sum::<f64>() / t).collect();
            let lse = (0..rows).filter(|&j| j != i).map(|j| sims[j].exp()).sum::<f64>().ln();
            total += lse - sims[(i + rows / 2) % rows];
        }
        total / rows as f64
    }

    #[test]
    fn matches_a_hand_computed_value() {
        let dev: Cpu = Default::default();
        // Two images: views 0 and 2 are identical, 1 and 3 orthogonal to them.
        let z: Tensor<(usize, Const<2>), f64, _> = dev.tensor_from_vec(vec![1.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0, 1.0], (4, Const));
        let loss = nt_xent(z, 1.0).array();
        // Row 0: sims to rows 1, 2, 3 = 0, 1, 0; positive is row 2: -1 + ln(e^0 + e^1 + e^0).
        let want = -1.0 + (2.0 + 1f64.exp()).ln();
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
    }

    #[test]
    fn agrees_with_reference_and_stays_finite_at_low_temperature() {
        let dev: Cpu = Default::default();
        let (rows, d) = (8, 5);
        let zv = values(rows * d, 11);
        for t in [0.5, 0.1, 0.05, 0.01] {
            let z: Tensor<(usize, Const<5>), f64, _> = dev.tensor_from_vec(zv.clone(), (rows, Const));
            let loss = nt_xent(z, t).array();
            let want = reference(&zv, rows, d, t);
            assert!(loss.is_finite() && (loss - want).abs() < 1e-9 * want.abs().max(1.0), "t={t}: {loss} vs {want}");
        }
        // f32 at temperature 0.05 with aligned views: large logits, no overflow.
        let dev: Cpu = Default::default();
        let z: Tensor<(usize, Const<5>), f32, _> = dev.tensor_from_vec(vec![3.0f32; rows * d], (rows, Const));
        let loss = nt_xent(z.leaky_trace(), 0.05);
        assert!(loss.array().is_finite());
        let g = loss.backward();
        assert!(g.get(&z).as_vec().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev: Cpu = Default::default();
        let (rows, d) = (6, 4);
        let zv = values(rows * d, 3);
        let z: Tensor<(usize, Const<4>), f64, _> = dev.tensor_from_vec(zv.clone(), (rows, Const));
        let g = nt_xent(z.leaky_trace(), 0.1).backward();
        let loss = |v: &[f64]| nt_xent(dev.tensor_from_vec(v.to_vec(), (rows, Const::<4>)), 0.1).array();
        assert_grad_close("nt_xent", &g.get(&z).as_vec(), &zv, loss, 24);
    }
}
