//! DINO's loss (Caron et al. 2021, eq. 1-3 and the authors' `DINOLoss`): the cross entropy
//! between the teacher's sharpened, centred distribution over K prototypes for each global
//! view and the student's distribution for every other view of the same image.

use dfdx::prelude::*;

/// The teacher's distributions [2N, K] over prototypes from its outputs `teacher` [2N, K]:
/// softmax((t - center) / temperature) per row (eq. 2 with centring, section 3.1).
pub fn teacher_targets(teacher: &[f32], center: &[f32], temperature: f64) -> Vec<f32> {
    let k = center.len();
    let mut out = Vec::with_capacity(teacher.len());
    for row in teacher.chunks(k) {
        let logits: Vec<f64> = row.iter().zip(center).map(|(&t, &c)| (t as f64 - c as f64) / temperature).collect();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        out.extend(exp.iter().map(|e| (e / sum) as f32));
    }
    out
}

/// The centre after a step: momentum c + (1 - momentum) mean of the teacher's outputs [2N, K]
/// over its rows (eq. 4).
pub fn updated_center(center: &[f32], teacher: &[f32], momentum: f64) -> Vec<f32> {
    center_from_sums(center, &teacher_sums(teacher, center.len()), momentum)
}

/// The column sums of the teacher's outputs [rows, K], then the row count: K + 1 values, which
/// add up over parts of a batch (data-parallel ranks).
pub fn teacher_sums(teacher: &[f32], k: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; k + 1];
    for row in teacher.chunks(k) {
        for (m, &t) in sums.iter_mut().zip(row) {
            *m += t as f64;
        }
    }
    sums[k] = (teacher.len() / k) as f64;
    sums
}

/// [`updated_center`] from [`teacher_sums`].
pub fn center_from_sums(center: &[f32], sums: &[f64], momentum: f64) -> Vec<f32> {
    let rows = sums[center.len()].max(1.0);
    center.iter().zip(sums).map(|(&c, &m)| (momentum * c as f64 + (1.0 - momentum) * m / rows) as f32).collect()
}

/// DINO's loss for the student's outputs `student` [V N, K] over V >= 2 views of N images
/// (the 2 global views first, then the local ones; view v of image k at row v N + k) against
/// the teacher's distributions `targets` [2N, K] of the global views (constants, from
/// [`teacher_targets`]): the mean over the 2V - 2 pairs (global view g, student view v != g) of
/// the mean over images of -sum_k P_g,k log softmax(s_v / temperature)_k. In nats.
pub fn dino_loss<E: Dtype, D: Device<E>, T: Tape<E, D>>(student: Tensor<(usize, usize), E, D, T>, targets: &[E], temperature: f64) -> Tensor<Rank0, E, D, T> {
    let (rows, k) = *student.shape();
    let n = targets.len() / (2 * k).max(1);
    assert!(n > 0 && rows % n == 0 && rows / n >= 2, "dino_loss: {rows} student rows for the teacher's {} of 2 views", 2 * n);
    let views = rows / n;
    // The loss is linear in the targets: view v's rows are weighed by the sum of the targets
    // of the global views other than v.
    let mut weights = vec![E::default(); rows * k];
    for v in 0..views {
        for g in (0..2).filter(|&g| g != v) {
            for (w, &t) in weights[v * n * k..(v + 1) * n * k].iter_mut().zip(&targets[g * n * k..(g + 1) * n * k]) {
                *w += t;
            }
        }
    }
    let pairs = 2 * views - 2;
    let weights = student.device().tensor_from_vec(weights, (rows, k));
    let log_p = (student * E::from_f64(1.0 / temperature).unwrap()).log_softmax::<Axis<1>>();
    (log_p * weights).sum().negate() * E::from_f64(1.0 / (n * pairs) as f64).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    fn log_softmax(row: &[f64], t: f64) -> Vec<f64> {
        let m = row.iter().map(|x| x / t).fold(f64::MIN, f64::max);
        let lse = m + row.iter().map(|x| (x / t - m).exp()).sum::<f64>().ln();
        row.iter().map(|x| x / t - lse).collect()
    }

    /// Direct evaluation: the authors' double loop over (teacher view, student view) pairs.
    fn reference(s: &[f64], p: &[f64], n: usize, k: usize, t: f64) -> f64 {
        let views = s.len() / (n * k);
        let (mut total, mut terms) = (0.0, 0);
        for g in 0..2 {
            for v in (0..views).filter(|&v| v != g) {
                let mut sum = 0.0;
                for i in 0..n {
                    let ls = log_softmax(&s[(v * n + i) * k..(v * n + i + 1) * k], t);
                    sum -= (0..k).map(|j| p[(g * n + i) * k + j] * ls[j]).sum::<f64>();
                }
                total += sum / n as f64;
                terms += 1;
            }
        }
        total / terms as f64
    }

    #[test]
    fn matches_a_hand_computed_value() {
        // One image, K = 2, two global views and no local one, student temperature 1.
        // Targets: view 0 (1, 0), view 1 (1/2, 1/2). Student: view 0 (0, 0), view 1 (ln 3, 0).
        // Pair (g 0, v 1): -ln(3/4); pair (g 1, v 0): -(1/2 ln 1/2 + 1/2 ln 1/2) = ln 2.
        // Loss = (ln(4/3) + ln 2) / 2.
        let dev: Cpu = Default::default();
        let s = dev.tensor_from_vec(vec![0.0, 0.0, 3f64.ln(), 0.0], (2, 2));
        let want = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
        let got = dino_loss(s, &[1.0, 0.0, 0.5, 0.5], 1.0).array();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn matches_the_pairs_and_its_gradient() {
        let dev: Cpu = Default::default();
        let (n, k, views) = (3, 5, 4);
        let s = values(views * n * k, 4);
        let p: Vec<f64> = values(2 * n * k, 5).chunks(k).flat_map(|r| {
            let e: Vec<f64> = r.iter().map(|x| (3.0 * x).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / z)
        }).collect();
        let st: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(s.clone(), (views * n, k));
        let got = dino_loss(st.clone(), &p, 0.1).array();
        assert!((got - reference(&s, &p, n, k, 0.1)).abs() < 1e-10, "{got} vs {}", reference(&s, &p, n, k, 0.1));
        let g = dino_loss(st.leaky_trace(), &p, 0.1).backward();
        let loss = |v: &[f64]| dino_loss(dev.tensor_from_vec(v.to_vec(), (views * n, k)), &p, 0.1).array();
        assert_grad_close("dino_loss", &g.get(&st).as_vec(), &s, loss, 40);
    }

    #[test]
    fn centre_and_sharpening_follow_their_formulas() {
        // Centre: 0.9 (1, 2) + 0.1 mean((3, 0), (5, 2)) = (0.9 + 0.4, 1.8 + 0.1) = (1.3, 1.9).
        let c = updated_center(&[1.0, 2.0], &[3.0, 0.0, 5.0, 2.0], 0.9);
        assert!((c[0] - 1.3).abs() < 1e-6 && (c[1] - 1.9).abs() < 1e-6, "{c:?}");
        // Targets: softmax(((3, 0) - (1, 2)) / 0.5) = softmax(4, -4).
        let t = teacher_targets(&[3.0, 0.0], &[1.0, 2.0], 0.5);
        let want = 1.0 / (1.0 + (-8f64).exp());
        assert!((t[0] as f64 - want).abs() < 1e-7 && (t[0] + t[1] - 1.0).abs() < 1e-7, "{t:?}");
        // A lower temperature sharpens.
        assert!(teacher_targets(&[3.0, 0.0], &[1.0, 2.0], 0.1)[0] > t[0]);
    }
}
