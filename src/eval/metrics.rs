//! Classification metrics from class scores: top-1, top-5, per-class accuracy, confusion matrix.

use serde::{Deserialize, Serialize};

/// What an evaluation on a labeled split gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub top1: f64,
    /// Top-5 accuracy (equal to 1 with 5 classes or fewer).
    pub top5: f64,
    /// Accuracy within each class (recall), in class order.
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    pub count: usize,
}

/// Scores all rows of `scores` ([N, classes]) against `labels`.
pub fn evaluate(scores: &[f32], labels: &[u32], classes: usize) -> Evaluation {
    let mut confusion = vec![vec![0u64; classes]; classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    for (row, &y) in scores.chunks(classes).zip(labels) {
        let y = y as usize;
        let mine = row[y];
        // Rank of the true class: how many score strictly higher (ties favour the lower index).
        let above = row.iter().enumerate().filter(|&(j, &v)| v > mine || (v == mine && j < y)).count();
        top1 += usize::from(above == 0);
        top5 += usize::from(above < 5);
        let pred = row.iter().enumerate().fold(0, |b, (j, &v)| if v > row[b] { j } else { b });
        confusion[y][pred] += 1;
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
}
