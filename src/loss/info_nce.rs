//! InfoNCE with a queue of negatives, MoCo's contrastive loss (He et al. 2020, eq. 1; Oord et
//! al. 2018): each query is classified among its positive key and K negative keys.

use dfdx::prelude::*;

/// MoCo's loss for queries `q` [N, W] (taped), their positive keys `k` [N, W] and the queue's
/// negatives [K, W], both constants with rows of unit norm: the queries are L2-normalised
/// (norm clamped at 1e-12), the logits of query i are (q_i . k_i, q_i . queue_1, ...,
/// q_i . queue_K) / temperature, and the loss is the cross entropy with the positive as the
/// class, log-sum-exp over the K + 1 logits minus the positive's, averaged over the N queries.
/// In nats; log(K + 1) when queries are equally similar to everything.
pub fn info_nce<W: Dim, E: Dtype, Dev: Device<E>, T: Tape<E, Dev> + Merge<T>>(
    q: Tensor<(usize, W), E, Dev, T>,
    k: &Tensor<(usize, W), E, Dev>,
    queue: &Tensor<(usize, W), E, Dev>,
    temperature: f64,
) -> Tensor<Rank0, E, Dev, T> {
    let shape = *q.shape();
    let n = shape.0;
    assert_eq!(k.shape().0, n, "info_nce: one key per query");
    assert!(temperature > 0.0, "info_nce temperature must be positive");
    let norm = q.retaped::<T>().square().sum::<(usize,), Axis<1>>().sqrt().clamp(1e-12, f64::MAX);
    let q = q / norm.broadcast_like::<_, Axis<1>>(&shape);
    let inv_t = E::from_f64(1.0 / temperature).unwrap();
    let positive = (q.retaped::<T>() * k.clone()).sum::<(usize,), Axis<1>>() * inv_t;
    let negatives = q.matmul(queue.clone().permute::<(W, usize), Axes2<1, 0>>()) * inv_t;
    let logits = (positive.retaped::<T>().reshape_like(&(n, 1usize)), negatives).concat_along(Axis::<1>);
    (logits.logsumexp::<(usize,), Axis<1>>() - positive).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    fn unit_rows(v: Vec<f64>, w: usize) -> Vec<f64> {
        v.chunks(w).flat_map(|r| {
            let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter().map(move |x| x / n).collect::<Vec<_>>()
        }).collect()
    }

    #[test]
    fn matches_a_hand_computed_value() {
        // One query (2, 0), normalised (1, 0); its key (0, 1): cosine 0. Queue (1, 0), (-1, 0):
        // cosines 1 and -1. Temperature 0.5: logits (0, 2, -2);
        // loss = ln(e^0 + e^2 + e^-2) - 0.
        let dev: Cpu = Default::default();
        let q = dev.tensor_from_vec(vec![2.0, 0.0], (1, 2));
        let k = dev.tensor_from_vec(vec![0.0, 1.0], (1, 2));
        let queue = dev.tensor_from_vec(vec![1.0, 0.0, -1.0, 0.0], (2, 2));
        let want = (1.0 + 2f64.exp() + (-2f64).exp()).ln();
        let got: f64 = info_nce(q, &k, &queue, 0.5).array();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn gradient_matches_finite_differences_and_stays_finite_when_cold() {
        let dev: Cpu = Default::default();
        let (n, w, kq) = (4, 5, 7);
        let qv = values(n * w, 1);
        let k = dev.tensor_from_vec(unit_rows(values(n * w, 2), w), (n, w));
        let queue = dev.tensor_from_vec(unit_rows(values(kq * w, 3), w), (kq, w));
        let q: Tensor<(usize, usize), f64, _> = dev.tensor_from_vec(qv.clone(), (n, w));
        let g = info_nce(q.leaky_trace(), &k, &queue, 0.2).backward();
        let loss = |v: &[f64]| info_nce(dev.tensor_from_vec(v.to_vec(), (n, w)), &k, &queue, 0.2).array();
        assert_grad_close("info_nce", &g.get(&q).as_vec(), &qv, loss, 20);
        // At temperature 0.005 the logits reach 200: exp of them overflows f32, the loss not.
        let q32 = Cpu::default().tensor_from_vec(qv.iter().map(|&v| v as f32).collect(), (n, w));
        let k32 = Cpu::default().tensor_from_vec(k.as_vec().iter().map(|&v| v as f32).collect(), (n, w));
        let queue32 = Cpu::default().tensor_from_vec(queue.as_vec().iter().map(|&v| v as f32).collect(), (kq, w));
        assert!(info_nce(q32, &k32, &queue32, 0.005).array().is_finite());
    }
}
