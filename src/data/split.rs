//! Deterministic index splits: train/validation by fraction, and stratified label fractions
//! for semi-supervised fine-tuning. The same seed gives the same indices on every machine
//! (ChaCha8, a portable generator, drives the shuffles).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

fn check_fraction(what: &str, f: f64) -> Result<()> {
    if !(f > 0.0 && f < 1.0) {
        return Err(Error::invalid(what, format!("{f} is not a fraction strictly between 0 and 1")));
    }
    Ok(())
}

/// Splits `0..n` into (train, val), val holding `round(n * val_fraction)` indices; both sorted.
pub fn train_val_split(n: usize, val_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    check_fraction("validation fraction", val_fraction)?;
    let n_val = (n as f64 * val_fraction).round() as usize;
    if n_val == 0 || n_val == n {
        return Err(Error::invalid(
            "validation fraction",
            format!("{val_fraction} of {n} images leaves an empty train or validation split"),
        ));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut val = idx[..n_val].to_vec();
    let mut train = idx[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

/// `k` of `0..n` chosen at random, sorted (all of them when `k` is 0 or at least `n`).
pub fn random_subset(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if k > 0 && k < n {
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        idx.truncate(k);
        idx.sort_unstable();
    }
    idx
}

/// Keeps `round(count * fraction)` indices of each class, chosen at random; sorted. A class
/// that would be left empty is an error naming it.
pub fn stratified_fraction(labels: &[u32], num_classes: usize, fraction: f64, seed: u64) -> Result<Vec<usize>> {
    if fraction == 1.0 {
        return Ok((0..labels.len()).collect());
    }
    check_fraction("label fraction", fraction)?;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = Vec::new();
    for (k, members) in by_class.iter_mut().enumerate() {
        let take = (members.len() as f64 * fraction).round() as usize;
        if take == 0 {
            return Err(Error::invalid(
                "label fraction",
                format!("{fraction} of class {k}'s {} labeled images keeps none; the class would be left empty", members.len()),
            ));
        }
        members.shuffle(&mut rng);
        keep.extend_from_slice(&members[..take.min(members.len())]);
    }
    keep.sort_unstable();
    Ok(keep)
}

/// Image counts of each part: the largest-remainder rounding of `n x fractions` (ties to the
/// earlier part), so they sum to `n`.
fn part_totals(n: usize, fractions: &[f64]) -> Vec<usize> {
    let quotas: Vec<f64> = fractions.iter().map(|f| n as f64 * f).collect();
    let mut totals: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..fractions.len()).collect();
    order.sort_by(|&a, &b| (quotas[b] - quotas[b].floor()).total_cmp(&(quotas[a] - quotas[a].floor())).then(a.cmp(&b)));
    let short = n.saturating_sub(totals.iter().sum());
    order.iter().take(short).for_each(|&i| totals[i] += 1);
    totals
}

/// Splits `0..labels.len()` into parts of the given `fractions` (each in (0, 1), summing to
/// 1), stratified: each class is shared out in the same proportions as nearly as whole images
/// allow, and each part holds the largest-remainder rounding of its share of all images. With
/// `labels` None the images form one class (a plain random split). Which images go where
/// depends only on `seed` (ChaCha8), so it is the same on every machine. Each part is sorted;
/// a part left empty is an error. As scikit-learn's `StratifiedShuffleSplit` apportions.
pub fn stratified_split(labels: Option<&[u32]>, n: usize, fractions: &[f64], seed: u64) -> Result<Vec<Vec<usize>>> {
    if fractions.len() < 2 {
        return Err(Error::invalid("fractions", "give at least two parts"));
    }
    for &f in fractions {
        check_fraction("fractions", f)?;
    }
    let sum: f64 = fractions.iter().sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(Error::invalid("fractions", format!("{} sum to {sum:.6}, not 1", fractions.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(","))));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let classes = labels.map_or(1, |l| l.iter().map(|&y| y as usize + 1).max().unwrap_or(0));
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    (0..n).for_each(|i| members[labels.map_or(0, |l| l[i] as usize)].push(i));
    members.iter_mut().for_each(|m| m.shuffle(&mut rng));
    // counts[c][p]: images of class c in part p. Parts but the last take their total from the
    // classes' quotas (floors, then one more for the largest remainders, ties in a seeded
    // order); the last part takes what is left.
    let totals = part_totals(n, fractions);
    let mut left: Vec<usize> = members.iter().map(Vec::len).collect();
    let mut counts = vec![vec![0usize; fractions.len()]; classes];
    let mut tie_order: Vec<usize> = (0..classes).collect();
    for (p, &f) in fractions.iter().enumerate().take(fractions.len() - 1) {
        let quota: Vec<f64> = members.iter().map(|m| m.len() as f64 * f).collect();
        for c in 0..classes {
            counts[c][p] = (quota[c].floor() as usize).min(left[c]);
        }
        tie_order.shuffle(&mut rng);
        let mut order = tie_order.clone();
        order.sort_by(|&a, &b| (quota[b] - quota[b].floor()).total_cmp(&(quota[a] - quota[a].floor())));
        let mut short = totals[p].saturating_sub(counts.iter().map(|row| row[p]).sum());
        for &c in order.iter().cycle().take(2 * classes) {
            if short == 0 {
                break;
            }
            if counts[c][p] < left[c] && (counts[c][p] as f64) < quota[c].ceil() {
                counts[c][p] += 1;
                short -= 1;
            }
        }
        (0..classes).for_each(|c| left[c] -= counts[c][p]);
    }
    let last = fractions.len() - 1;
    (0..classes).for_each(|c| counts[c][last] = left[c]);
    let mut parts = vec![Vec::new(); fractions.len()];
    for (c, m) in members.iter().enumerate() {
        let mut at = 0;
        for (p, part) in parts.iter_mut().enumerate() {
            part.extend_from_slice(&m[at..at + counts[c][p]]);
            at += counts[c][p];
        }
    }
    for (p, part) in parts.iter_mut().enumerate() {
        if part.is_empty() {
            return Err(Error::invalid("fractions", format!("part {} ({} of {n} images) would be empty", p + 1, fractions[p])));
        }
        part.sort_unstable();
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_val_partition_is_disjoint_complete_and_seeded() {
        let (t, v) = train_val_split(1000, 0.1, 7).unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(t.len(), 900);
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(train_val_split(1000, 0.1, 7).unwrap().1, v);
        assert_ne!(train_val_split(1000, 0.1, 8).unwrap().1, v);
    }

    #[test]
    fn same_seed_same_indices_pinned() {
        // Pinned values: a change of generator or algorithm would silently change every split.
        let (_, v) = train_val_split(20, 0.2, 0).unwrap();
        assert_eq!(v.len(), 4);
        let again = train_val_split(20, 0.2, 0).unwrap().1;
        assert_eq!(v, again);
        assert_eq!(v, PINNED);
    }
    const PINNED: [usize; 4] = [0, 2, 6, 12];

    #[test]
    fn stratified_keeps_each_class() {
        let labels: Vec<u32> = (0..1000).map(|i| (i % 10) as u32).collect();
        let keep = stratified_fraction(&labels, 10, 0.01, 3).unwrap();
        assert_eq!(keep.len(), 10);
        let mut seen: Vec<u32> = keep.iter().map(|&i| labels[i]).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let ten = stratified_fraction(&labels, 10, 0.1, 3).unwrap();
        assert_eq!(ten.len(), 100);
        let e = stratified_fraction(&labels, 10, 0.001, 3).unwrap_err().to_string();
        assert!(e.contains("class 0") && e.contains("empty"), "{e}");
        assert!(stratified_fraction(&labels, 11, 0.1, 3).is_err());
        assert!(stratified_fraction(&labels, 10, 0.0, 3).is_err());
        assert!(train_val_split(10, 0.01, 0).is_err());
    }

    #[test]
    fn stratified_split_shares_each_class_and_is_seeded() {
        // Classes of 10, 15, 20 and 25 images: 20% of each exactly.
        let labels: Vec<u32> = [10, 15, 20, 25].iter().enumerate().flat_map(|(c, &m)| std::iter::repeat_n(c as u32, m)).collect();
        let parts = stratified_split(Some(&labels), labels.len(), &[0.8, 0.2], 0).unwrap();
        let count = |p: &[usize]| {
            let mut c = [0; 4];
            p.iter().for_each(|&i| c[labels[i] as usize] += 1);
            c
        };
        assert_eq!((count(&parts[0]), count(&parts[1])), ([8, 12, 16, 20], [2, 3, 4, 5]));
        let mut all: Vec<usize> = parts.concat();
        all.sort_unstable();
        assert_eq!(all, (0..70).collect::<Vec<_>>());
        assert_eq!(stratified_split(Some(&labels), 70, &[0.8, 0.2], 0).unwrap(), parts);
        assert_ne!(stratified_split(Some(&labels), 70, &[0.8, 0.2], 1).unwrap(), parts);
        // Few images per class: the total is still round(n f), no class loses its only image
        // while another can give one, and the classes that give are drawn by the seed.
        let labels: Vec<u32> = (0..17).map(|i| i % 10).collect();
        let parts = stratified_split(Some(&labels), 17, &[0.25, 0.75], 3).unwrap();
        assert_eq!((parts[0].len(), parts[1].len()), (4, 13));
        assert!((0..10).all(|c| parts[1].iter().any(|&i| labels[i] == c)), "every class keeps an image");
        // Three parts, unlabeled.
        let parts = stratified_split(None, 10, &[0.5, 0.3, 0.2], 0).unwrap();
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 3, 2]);
        assert!(stratified_split(None, 10, &[0.5, 0.6], 0).unwrap_err().to_string().contains("sum"));
        assert!(stratified_split(None, 10, &[1.0], 0).is_err());
        assert!(stratified_split(None, 3, &[0.9, 0.1], 0).unwrap_err().to_string().contains("empty"));
    }
}
