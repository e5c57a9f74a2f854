//! The collapse monitor: two measures of how much of the feature space a set of embeddings
//! uses, computed on the monitor's evaluated images each epoch.
//!
//! - The effective rank, RankMe (Garrido et al. 2023, "RankMe: Assessing the Downstream
//!   Performance of Pretrained Self-Supervised Representations by Their Rank", eq. 1):
//!   exp of the entropy of the normalised singular values of the embeddings [N, F]; between 1
//!   (every embedding on one line) and min(N, F).
//! - The per-dimension standard deviation of the L2-normalised embeddings (SimSiam, Chen and
//!   He 2021, section 4.1), averaged over dimensions and scaled by sqrt(F): 1 for zero-mean
//!   embeddings spread over the unit sphere, 0 when they all coincide. A backbone's features
//!   (after ReLU and pooling) are non-negative, so spread ones score well below 1 (about 0.6
//!   measured on the small ResNet's); SimSiam measures its projector's zero-mean outputs.
//!
//! Non-finite features give NaN for both (the eigenvalue solver is not run on them).

use nalgebra::{DMatrix, SymmetricEigen};

/// Added to each normalised singular value (RankMe's epsilon).
const EPSILON: f64 = 1e-7;

/// Below this effective rank, or this scaled standard deviation, a run has collapsed: its
/// embeddings lie on about one line, or nearly coincide.
pub const COLLAPSED_RANK: f64 = 2.0;
pub const COLLAPSED_STD: f64 = 0.05;

/// Iterations the eigenvalue solver may take before the rank is given up as NaN.
const MAX_ITERATIONS: usize = 10_000;

/// RankMe of `z` [rows, width] (row-major). Its singular values are the square roots of the
/// eigenvalues of the smaller Gram matrix (z^T z or z z^T), computed by nalgebra in f64. NaN
/// when `z` is not finite or the solver does not converge.
pub fn effective_rank(z: &[f32], width: usize) -> f64 {
    let rows = z.len() / width.max(1);
    if rows == 0 || width == 0 {
        return 0.0;
    }
    if z.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let m = DMatrix::from_row_slice(rows, width, &z.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let gram = if width <= rows { m.transpose() * &m } else { &m * m.transpose() };
    let Some(eigen) = SymmetricEigen::try_new(gram, f64::EPSILON, MAX_ITERATIONS) else {
        return f64::NAN;
    };
    let sigma: Vec<f64> = eigen.eigenvalues.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let total: f64 = sigma.iter().sum();
    if total == 0.0 {
        return 0.0;
    }
    let entropy: f64 = sigma.iter().map(|s| s / total + EPSILON).map(|p| -p * p.ln()).sum();
    entropy.exp()
}

/// The mean over dimensions of the standard deviation (over rows) of the L2-normalised rows of
/// `z` [rows, width], times sqrt(width) (see the module docs); NaN when `z` is not finite.
pub fn normalised_std(z: &[f32], width: usize) -> f64 {
    let rows = z.len() / width.max(1);
    if rows == 0 || width == 0 {
        return 0.0;
    }
    if z.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let (mut sum, mut sq) = (vec![0.0f64; width], vec![0.0f64; width]);
    for row in z.chunks(width) {
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
        for (j, &v) in row.iter().enumerate() {
            let u = v as f64 / norm;
            sum[j] += u;
            sq[j] += u * u;
        }
    }
    let n = rows as f64;
    let mean_std = sum.iter().zip(&sq).map(|(s, q)| (q / n - (s / n).powi(2)).max(0.0).sqrt()).sum::<f64>() / width as f64;
    mean_std * (width as f64).sqrt()
}

/// Whether embeddings with these measures have collapsed (see [`COLLAPSED_RANK`]); not
/// finite measures (features that are not) count as collapsed.
pub fn collapsed(rank: f64, std: f64) -> bool {
    !(rank >= COLLAPSED_RANK && std >= COLLAPSED_STD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_counts_the_directions_used() {
        // Orthogonal rows of equal norm: every singular value equal, rank = their number.
        let z = [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        assert!((effective_rank(&z, 3) - 3.0).abs() < 1e-5, "{}", effective_rank(&z, 3));
        // Singular values 3 and 1 (rows (3, 0) and (0, 1)): p = (3/4, 1/4),
        // rank = exp(-(3/4 ln 3/4 + 1/4 ln 1/4)) = 1.7548.
        let want = (-(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln())).exp();
        assert!((effective_rank(&[3.0, 0.0, 0.0, 1.0], 2) - want).abs() < 1e-5);
        // Wider than tall: the same through z z^T.
        assert!((effective_rank(&[3.0, 0.0, 0.0, 0.0, 1.0, 0.0], 3) - want).abs() < 1e-5);
        // Every row a multiple of one: rank 1, collapsed.
        let line: Vec<f32> = (0..40).map(|i| (i / 4) as f32 * [1.0, -2.0, 0.5, 3.0][i % 4]).collect();
        let r = effective_rank(&line, 4);
        assert!((r - 1.0).abs() < 1e-5 && collapsed(r, 1.0), "{r}");
    }

    #[test]
    fn std_is_one_on_the_sphere_and_zero_when_rows_coincide() {
        // ±e_j: each normalised dimension is ±1 on 2 of 2W rows, std sqrt(1 / W) exactly.
        let w = 4;
        let z: Vec<f32> = (0..2 * w).flat_map(|r| (0..w).map(move |j| if j == r % w { if r < w { 1.0 } else { -1.0 } } else { 0.0 })).collect();
        assert!((normalised_std(&z, w) - 1.0).abs() < 1e-12, "{}", normalised_std(&z, w));
        let same: Vec<f32> = (0..20).map(|i| [1.0, 2.0][i % 2] * (1 + i / 2) as f32).collect();
        assert!(normalised_std(&same, 2) < 1e-6);
        assert!(collapsed(2.5, normalised_std(&same, 2)));
        assert!(!collapsed(2.5, 0.5));
        // Features that are not finite: NaN measures, counted as collapsed.
        let bad = [1.0, f32::NAN, 0.0, 1.0];
        assert!(effective_rank(&bad, 2).is_nan() && normalised_std(&bad, 2).is_nan());
        assert!(collapsed(f64::NAN, f64::NAN));
    }
}
