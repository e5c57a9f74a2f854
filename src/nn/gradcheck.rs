//! Finite-difference gradient checks in f64, for every hand-written backward pass.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Compares `analytic` (d loss / d values) with central differences of `loss` at up to
/// `max_checks` coordinates of `values` drawn at random; panics naming the worst coordinate.
pub fn assert_grad_close(
    what: &str,
    analytic: &[f64],
    values: &[f64],
    mut loss: impl FnMut(&[f64]) -> f64,
    max_checks: usize,
) {
    assert_eq!(analytic.len(), values.len(), "{what}: gradient length");
    let eps = 1e-5;
    let mut v = values.to_vec();
    let picks = sample(&mut ChaCha8Rng::seed_from_u64(7), v.len(), max_checks.min(v.len()));
    for i in picks.iter() {
        let orig = v[i];
        v[i] = orig + eps;
        let up = loss(&v);
        v[i] = orig - eps;
        let down = loss(&v);
        v[i] = orig;
        let numeric = (up - down) / (2.0 * eps);
        let err = (numeric - analytic[i]).abs();
        assert!(
            err <= 1e-6 + 1e-5 * numeric.abs().max(analytic[i].abs()),
            "{what}: d/d[{i}] analytic {} vs numeric {numeric} (error {err:e})",
            analytic[i]
        );
    }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Asserts two computations of the same values agree to `1e-9` relative (f64): the device path
/// against the CPU kernel.
pub fn assert_same(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())), "{what}: [{i}] {x} vs {y}");
    }
}
