//! Weighted k-nearest-neighbour classification on cosine similarity (Wu et al. 2018), as
//! lightly and solo-learn monitor SSL runs: each of the k most similar training features votes
//! for its class with weight exp(similarity / T). Features are L2-normalised here; the
//! similarities are one GEMM per block of test features, parallel over blocks.

use rayon::prelude::*;

use crate::metrics::predicted;
use crate::error::{Error, Result};
use crate::nn::gemm::{matmul, Mat};

/// k and the temperature (lightly, solo-learn: k = 200, T = 0.1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnParams {
    pub k: usize,
    pub temperature: f32,
}

impl Default for KnnParams {
    fn default() -> Self {
        KnnParams { k: 200, temperature: 0.1 }
    }
}

/// Test rows per similarity block.
const BLOCK: usize = 256;

fn normalized(x: &[f32], d: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= n);
    }
    out
}

/// Class votes of each test feature, [M, classes] row-major: the sum of exp((s - s_max) / T)
/// over the k most similar training features of that class, where s is the cosine similarity
/// and s_max the row's highest (the common factor exp(s_max / T) of Wu et al.'s weights is left
/// out, so a low temperature cannot overflow). A class that no neighbour votes for scores -inf,
/// so it is never counted as a top-k hit. `train` is [N, d], `test` [M, d], row-major.
pub fn knn_scores(train: &[f32], labels: &[u32], test: &[f32], d: usize, classes: usize, p: KnnParams) -> Result<Vec<f32>> {
    let n = labels.len();
    if d == 0 || train.len() != n * d || test.len() % d != 0 {
        return Err(Error::invalid("knn", format!("features of width {d} do not match {n} labels")));
    }
    if n == 0 || p.k == 0 || p.temperature.is_nan() || p.temperature <= 0.0 {
        return Err(Error::invalid("knn", "needs training features, k >= 1 and a positive temperature"));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(Error::invalid("knn", format!("label {bad} out of range for {classes} classes")));
    }
    let (tr, te) = (normalized(train, d), normalized(test, d));
    let k = p.k.min(n);
    let blocks: Vec<Vec<f32>> = te
        .par_chunks(BLOCK * d)
        .map(|tb| {
            let m = tb.len() / d;
            let mut sims = vec![0.0f32; m * n];
            matmul(&mut sims, n, Mat::rows(tb, m, d, d), Mat::rows(&tr, n, d, d).t(), false);
            let mut votes = vec![f32::NEG_INFINITY; m * classes];
            for (row, out) in sims.chunks_exact(n).zip(votes.chunks_exact_mut(classes)) {
                let mut idx: Vec<usize> = (0..n).collect();
                // The k most similar, ties broken by index so the result is deterministic.
                idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                let top = idx[..k].iter().map(|&j| row[j]).fold(f32::NEG_INFINITY, f32::max);
                for &j in &idx[..k] {
                    let v = &mut out[labels[j] as usize];
                    *v = v.max(0.0) + ((row[j] - top) / p.temperature).exp();
                }
            }
            votes
        })
        .collect();
    Ok(blocks.concat())
}

/// Predicted class of each test feature: the class with the most votes of [`knn_scores`] (the
/// lowest index on ties).
pub fn knn_predict(train: &[f32], labels: &[u32], test: &[f32], d: usize, classes: usize, p: KnnParams) -> Result<Vec<u32>> {
    let votes = knn_scores(train, labels, test, d, classes, p)?;
    Ok(votes.chunks_exact(classes).map(|row| predicted(row) as u32).collect())
}

/// Top-1 accuracy of [`knn_predict`] against `test_labels`.
pub fn knn_accuracy(
    train: &[f32],
    labels: &[u32],
    test: &[f32],
    test_labels: &[u32],
    d: usize,
    classes: usize,
    p: KnnParams,
) -> Result<f64> {
    let pred = knn_predict(train, labels, test, d, classes, p)?;
    if pred.len() != test_labels.len() || pred.is_empty() {
        return Err(Error::invalid("knn", "test features and labels differ in number, or are empty"));
    }
    Ok(pred.iter().zip(test_labels).filter(|(a, b)| a == b).count() as f64 / pred.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn separable_clusters_are_classified_and_votes_are_weighted() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let centers = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let mut make = |n: usize| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for i in 0..n {
                let c = i % 3;
                for v in centers[c] {
                    x.push(v * rng.gen_range(0.5..2.0) + rng.gen_range(-0.2..0.2));
                }
                y.push(c as u32);
            }
            (x, y)
        };
        let (tr, ytr) = make(300);
        let (te, yte) = make(600);
        let acc = knn_accuracy(&tr, &ytr, &te, &yte, 3, 3, KnnParams { k: 20, temperature: 0.1 }).unwrap();
        assert!(acc > 0.98, "{acc}");
        // One very close neighbour of class 1 outvotes two far ones of class 0 at low temperature.
        let train = [1.0, 0.0, 0.8, 0.6, 0.8, -0.6];
        let pred = knn_predict(&train, &[1, 0, 0], &[1.0, 0.0], 2, 2, KnnParams { k: 3, temperature: 0.05 }).unwrap();
        assert_eq!(pred, vec![1]);
        // At a high temperature the votes are nearly equal and the majority wins.
        let pred = knn_predict(&train, &[1, 0, 0], &[1.0, 0.0], 2, 2, KnnParams { k: 3, temperature: 100.0 }).unwrap();
        assert_eq!(pred, vec![0]);
        assert!(knn_predict(&train, &[1, 0, 5], &[1.0, 0.0], 2, 2, KnnParams::default()).is_err());
    }
}
