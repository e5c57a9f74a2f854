//! Cross entropy with label smoothing (Szegedy et al. 2016, section 7), as PyTorch's
//! `F.cross_entropy(..., label_smoothing=ε)`.

use dfdx::prelude::*;

/// Target distributions [N, classes] for `labels`: 1 - smoothing on the label, smoothing
/// spread evenly over the classes (PyTorch's `label_smoothing`).
pub fn smoothed_targets(labels: &[u32], classes: usize, smoothing: f64) -> Vec<f32> {
    let mut t = vec![(smoothing / classes as f64) as f32; labels.len() * classes];
    for (row, &y) in t.chunks_mut(classes).zip(labels) {
        row[y as usize] += (1.0 - smoothing) as f32;
    }
    t
}

/// Mean label-smoothed cross entropy of `logits` [N, classes] for `labels` (each below
/// `classes`).
pub fn smoothed_cross_entropy<E: Dtype, D: Device<E>, T: Tape<E, D>>(logits: Tensor<(usize, usize), E, D, T>, labels: &[u32], smoothing: f64) -> Tensor<Rank0, E, D, T> {
    let shape = *logits.shape();
    debug_assert_eq!(shape.0, labels.len());
    let targets = smoothed_targets(labels, shape.1, smoothing).into_iter().map(|t| E::from_f32(t).unwrap()).collect();
    let targets = logits.device().tensor_from_vec(targets, shape);
    cross_entropy_with_logits_loss(logits, targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::assert_grad_close;

    #[test]
    fn matches_pytorch_label_smoothing() {
        let dev = Cpu::default();
        // PyTorch: F.cross_entropy(torch.tensor([[2., 0., -1.]]), torch.tensor([0]), label_smoothing=0.3)
        let logits = dev.tensor_from_vec(vec![2.0f32, 0.0, -1.0], (1, 3));
        let lse = (2.0f64.exp() + 1.0 + (-1.0f64).exp()).ln();
        let want = 0.8 * (lse - 2.0) + 0.1 * (lse - 0.0) + 0.1 * (lse + 1.0);
        let got = smoothed_cross_entropy(logits, &[0], 0.3).array() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Cpu::default();
        let v: Vec<f64> = vec![0.3, -1.2, 0.8, 2.0, 0.1, -0.4, 1.5, -2.2];
        let (rows, classes) = (2, 4);
        let x = dev.tensor_from_vec(v.clone(), (rows, classes));
        let g = smoothed_cross_entropy(x.leaky_trace(), &[2, 0], 0.1).backward();
        let loss = |w: &[f64]| smoothed_cross_entropy(Cpu::default().tensor_from_vec(w.to_vec(), (rows, classes)), &[2, 0], 0.1).array();
        assert_grad_close("smoothed_cross_entropy", &g.get(&x).as_vec(), &v, loss, 8);
    }
}
