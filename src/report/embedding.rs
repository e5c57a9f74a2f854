//! A 2-D map of embeddings: Barnes-Hut t-SNE (bhtsne) from a seeded starting layout. bhtsne
//! draws random numbers of its own, so the picture varies a little from run to run (the
//! report's numbers do not).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// t-SNE of `x` ([N, dim]) to 2-D points.
pub fn tsne(x: &[f32], dim: usize, seed: u64) -> Vec<(f64, f64)> {
    let rows: Vec<&[f32]> = x.chunks(dim).collect();
    let n = rows.len();
    if n < 4 {
        return rows.iter().enumerate().map(|(i, _)| (i as f64, 0.0)).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let init: Vec<f32> = (0..2 * n).map(|_| rng.gen_range(-1e-2f32..1e-2)).collect();
    let perplexity = 30.0f32.min((n as f32 - 1.0) / 3.0);
    let mut t = bhtsne::tSNE::new(&rows);
    t.embedding_dim(2).perplexity(perplexity).epochs(750).initial_embedding(init).barnes_hut(0.5, |a: &&[f32], b: &&[f32]| {
        a.iter().zip(b.iter()).map(|(p, q)| (p - q) * (p - q)).sum::<f32>().sqrt()
    });
    t.embedding().chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn separated_clusters_stay_apart() {
        // Two tight clusters far apart in 5-D.
        let mut x = Vec::new();
        for i in 0..60 {
            let base = if i < 30 { 0.0 } else { 10.0 };
            for d in 0..5 {
                x.push(base + ((i * 7 + d * 3) % 11) as f32 * 0.01);
            }
        }
        let p = super::tsne(&x, 5, 0);
        assert_eq!(p.len(), 60);
        let centre = |r: std::ops::Range<usize>| {
            let k = r.len() as f64;
            r.fold((0.0, 0.0), |(a, b), i| (a + p[i].0 / k, b + p[i].1 / k))
        };
        let (a, b) = (centre(0..30), centre(30..60));
        let spread = (0..30).map(|i| ((p[i].0 - a.0).powi(2) + (p[i].1 - a.1).powi(2)).sqrt()).fold(0.0, f64::max);
        let gap = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
        assert!(gap > spread, "clusters overlap: gap {gap}, spread {spread}");
    }
}
