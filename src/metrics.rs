//! Classification metrics from class scores: top-1, top-5, per-class accuracy, confusion matrix.

use serde::{Deserialize, Serialize};

/// What an evaluation on a labeled split gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub top1: f64,
    /// Top-5 accuracy (1 with 5 classes or fewer, unless a true class had no score at all, as
    /// a kNN class without a vote).
    pub top5: f64,
    /// Accuracy within each class (recall), in class order.
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    pub count: usize,
}

/// Rank of class `y` among the scores of one image: how many classes score strictly higher,
/// plus the tied ones of lower index (the order [`predicted`] breaks ties in). `None` when
/// `row[y]` is NaN or -inf: a class without evidence (no kNN vote) is never a top-k hit, however
/// few classes there are.
pub fn rank(row: &[f32], y: usize) -> Option<usize> {
    let mine = row[y];
    if mine.is_nan() || mine == f32::NEG_INFINITY {
        return None;
    }
    Some(row.iter().enumerate().filter(|&(j, &v)| v > mine || (v == mine && j < y)).count())
}

/// Whether class `y` is among the `k` best scores of `row` (see [`rank`]).
pub fn in_top_k(row: &[f32], y: usize, k: usize) -> bool {
    rank(row, y).is_some_and(|r| r < k)
}

/// The predicted class: the highest score, the lowest index on ties (NaN never wins).
pub fn predicted(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] || row[best].is_nan() && !v.is_nan() { i } else { best })
}

/// Scores all rows of `scores` ([N, classes]) against `labels`. The one top-k routine of the
/// project: the probe, fine-tuning and kNN (votes, -inf where a class got none) all report
/// through it.
pub fn evaluate(scores: &[f32], labels: &[u32], classes: usize) -> Evaluation {
    let mut confusion = vec![vec![0u64; classes]; classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    for (row, &y) in scores.chunks(classes).zip(labels) {
        let y = y as usize;
        top1 += usize::from(in_top_k(row, y, 1));
        top5 += usize::from(in_top_k(row, y, 5));
        confusion[y][predicted(row)] += 1;
    }
    let n = labels.len().max(1) as f64;
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: u64 = row.iter().sum();
            if total == 0 { f64::NAN } else { row[c] as f64 / total as f64 }
        })
        .collect();
    Evaluation { top1: top1 as f64 / n, top5: top5 as f64 / n, per_class, confusion, count: labels.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_hand() {
        // 3 classes; rows: correct, wrong (true 1 predicted 0), correct.
        let scores = [0.9, 0.1, 0.0, 0.6, 0.3, 0.1, 0.0, 0.2, 0.8];
        let e = evaluate(&scores, &[0, 1, 2], 3);
        assert!((e.top1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.top5, 1.0);
        assert_eq!(e.confusion, vec![vec![1, 0, 0], vec![1, 0, 0], vec![0, 0, 1]]);
        assert_eq!(e.per_class, vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn classes_without_a_score_are_never_hits() {
        let none = f32::NEG_INFINITY;
        // kNN with k = 1: one class voted per row; rows 0 and 2 right, row 1 wrong.
        let votes = [5.0, none, none, none, none, none, none, 3.0, none, none, none, none, none, none, 2.0];
        let e = evaluate(&votes, &[0, 0, 4], 5);
        assert_eq!((e.top1, e.top5), (2.0 / 3.0, 2.0 / 3.0), "top-5 equals top-1 with one vote each");
        assert_eq!(e.confusion[0], vec![1, 0, 1, 0, 0]);
        // Ties among finite scores go to the lower index, as the prediction does.
        assert_eq!(rank(&[1.0, 1.0, 0.0], 1), Some(1));
        assert_eq!(rank(&[1.0, 1.0, 0.0], 0), Some(0));
        assert_eq!(rank(&[0.0, f32::NAN], 1), None);
        assert_eq!(predicted(&[f32::NAN, 0.5, 2.0, 2.0]), 2);
        assert!(in_top_k(&[3.0, 2.0, 1.0, 0.0], 2, 3) && !in_top_k(&[3.0, 2.0, 1.0, 0.0], 3, 3));
    }
}
