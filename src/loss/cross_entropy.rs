//! Cross entropy with label smoothing (Szegedy et al. 2016), over the first `classes` of a
//! classifier's outputs: a classifier compiled with more outputs than the dataset has classes
//! masks the extra ones out.

use dfdx::prelude::*;

/// Added to the logits of outputs beyond the dataset's classes.
pub const MASKED: f32 = -1e9;

/// Target distributions for `labels`: 1 - smoothing on the label, smoothing spread evenly
/// over the `classes` real classes (as PyTorch's `label_smoothing`), 0 on padded outputs.
pub fn smoothed_targets(labels: &[u32], outputs: usize, classes: usize, smoothing: f64) -> Vec<f32> {
    let mut t = vec![0.0f32; labels.len() * outputs];
    let spread = (smoothing / classes as f64) as f32;
    for (row, &y) in t.chunks_mut(outputs).zip(labels) {
        row[..classes].iter_mut().for_each(|v| *v = spread);
        row[y as usize] += (1.0 - smoothing) as f32;
    }
    t
}

/// The bias that masks outputs `classes..outputs` out, one row per sample.
pub fn class_mask(rows: usize, outputs: usize, classes: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; rows * outputs];
    for row in m.chunks_mut(outputs) {
        row[classes..].iter_mut().for_each(|v| *v = MASKED);
    }
    m
}

/// Mean label-smoothed cross entropy of `logits` [N, K] for `labels`, over the first
/// `classes` outputs.
pub fn smoothed_cross_entropy<const K: usize, D: Device<f32>, T: Tape<f32, D>>(
    logits: Tensor<(usize, Const<K>), f32, D, T>,
    labels: &[u32],
    classes: usize,
    smoothing: f64,
) -> Tensor<Rank0, f32, D, T> {
    let dev = logits.device().clone();
    let n = labels.len();
    let masked = logits + dev.tensor_from_vec(class_mask(n, K, classes), (n, Const::<K>));
    let targets = dev.tensor_from_vec(smoothed_targets(labels, K, classes, smoothing), (n, Const::<K>));
    cross_entropy_with_logits_loss(masked, targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_label_smoothing_and_ignores_padding() {
        let dev = Cpu::default();
        // PyTorch: F.cross_entropy(torch.tensor([[2., 0., -1.]]), torch.tensor([0]), label_smoothing=0.3)
        let logits: Tensor<(usize, Const<3>), f32, _> = dev.tensor_from_vec(vec![2.0, 0.0, -1.0], (1, Const));
        let lse = (2.0f64.exp() + 1.0 + (-1.0f64).exp()).ln();
        let want = 0.8 * (lse - 2.0) + 0.1 * (lse - 0.0) + 0.1 * (lse + 1.0);
        let got = smoothed_cross_entropy(logits, &[0], 3, 0.3).array() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // A fourth, padded output changes nothing, whatever its logit.
        let padded: Tensor<(usize, Const<4>), f32, _> = dev.tensor_from_vec(vec![2.0, 0.0, -1.0, 50.0], (1, Const));
        assert!((smoothed_cross_entropy(padded, &[0], 3, 0.3).array() as f64 - want).abs() < 1e-5);
        // The gradient on the padded output is zero.
        let padded: Tensor<(usize, Const<4>), f32, _> = dev.tensor_from_vec(vec![2.0, 0.0, -1.0, 5.0], (1, Const));
        let g = smoothed_cross_entropy(padded.leaky_trace(), &[1], 3, 0.1).backward();
        assert_eq!(g.get(&padded).as_vec()[3], 0.0);
    }
}
