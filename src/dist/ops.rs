//! The differentiable collectives of data-parallel training, as ops on dfdx's tape:
//! [`gather_views`] (embeddings of the global batch for a loss over it) and [`all_reduce`]
//! (synchronised batch norm's statistics in the heads). Their data cross ranks through host
//! buffers on every device (CUDA included; NCCL would be the next step).

use std::rc::Rc;

use dfdx::prelude::*;

use super::{current, Group};

/// What a device needs for the collectives' backward passes: adding host data into a
/// gradient buffer.
pub trait HostGrad: Storage<f32> {
    /// `v += data`, element-wise (`data.len()` equals the buffer's length).
    fn add_host(&self, v: &mut Self::Vec, data: &[f32]) -> Result<(), Self::Err>;
}

impl HostGrad for Cpu {
    fn add_host(&self, v: &mut Self::Vec, data: &[f32]) -> Result<(), Self::Err> {
        v.iter_mut().zip(data).for_each(|(a, &b)| *a += b);
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl HostGrad for dfdx::tensor::Cuda {
    fn add_host(&self, v: &mut Self::Vec, data: &[f32]) -> Result<(), Self::Err> {
        let dev = v.device();
        let mut host = dev.dtoh_sync_copy(&**v)?;
        host.iter_mut().zip(data).for_each(|(a, &b)| *a += b);
        dev.htod_sync_copy_into(&host, &mut **v)?;
        Ok(())
    }
}

type Rows<D, T> = Tensor<(usize, usize), f32, D, T>;

/// The rows of `z` = [V n, F] (view v of this rank's image i at row v n + i) gathered from
/// every rank into [V N, F] with view v of global image k at row v N + k, the global images in
/// rank order: the layout a single process gives the loss, so a loss over the global batch is
/// the loss function unchanged. On one process, `z` itself.
///
/// Backward: every rank's gradient of the gathered rows is summed over ranks and this rank
/// keeps its own rows. With each rank backpropagating its share of the global loss
/// ([`super::scale_loss`]), that is exactly this rank's part of the global loss's gradient
/// (Chen et al. 2020's global negatives; solo-learn's `GatherLayer`).
pub fn gather_views<D: Device<f32> + HostGrad>(z: Rows<D, OwnedTape<f32, D>>, views: usize) -> Result<Rows<D, OwnedTape<f32, D>>, D::Err> {
    let Some(group) = current() else { return Ok(z) };
    let (rows, f) = *z.shape();
    let n = rows / views;
    let (all, counts) = group.all_gather(&z.as_vec());
    let images: Vec<usize> = counts.iter().map(|c| c / (views * f)).collect();
    let total: usize = images.iter().sum();
    let offsets: Vec<usize> = images.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
    // Rank r's block holds its views one after the other: [V n_r, F].
    let place = |r: usize, v: usize| (offsets[r] * views * f + v * images[r] * f, (v * total + offsets[r]) * f, images[r] * f);
    let mut out = vec![0.0f32; total * views * f];
    for r in 0..images.len() {
        for v in 0..views {
            let (from, to, len) = place(r, v);
            out[to..to + len].copy_from_slice(&all[from..from + len]);
        }
    }
    let (z, mut tape) = z.split_tape();
    let out = z.device().try_tensor_from_vec(out, (total * views, f))?;
    let (z_ghost, out_ghost, dev) = (z.ghost(), out.ghost(), z.device().clone());
    // Where this rank's rows of each view sit in the gathered rows.
    let own: Vec<(usize, usize)> = (0..views).map(|v| place(group.rank(), v)).map(|(_, at, len)| (at, len)).collect();
    tape.add_backward_op(move |grads| {
        grads.try_alloc_for(&out_ghost)?;
        let mut g = grads.get(&out_ghost).as_vec();
        group.all_reduce_sum(&mut g);
        let mut mine = Vec::with_capacity(views * n * f);
        for &(at, len) in &own {
            mine.extend_from_slice(&g[at..at + len]);
        }
        dev.add_host(grads.get_or_alloc_mut(&z_ghost)?, &mine)
    });
    Ok(out.put_tape(tape))
}

/// The element-wise sum of `x` over the ranks of `group`; its backward sums the gradients over
/// ranks likewise (the adjoint of a sum shared by every rank).
pub fn all_reduce<D: Device<f32> + HostGrad>(group: &Rc<Group>, x: Tensor<(usize,), f32, D, OwnedTape<f32, D>>) -> Result<Tensor<(usize,), f32, D, OwnedTape<f32, D>>, D::Err> {
    let mut v = x.as_vec();
    group.all_reduce_sum(&mut v);
    let (x, mut tape) = x.split_tape();
    let out = x.device().try_tensor_from_vec(v, *x.shape())?;
    let (x_ghost, out_ghost, dev, group) = (x.ghost(), out.ghost(), x.device().clone(), group.clone());
    tape.add_backward_op(move |grads| {
        grads.try_alloc_for(&out_ghost)?;
        let mut g = grads.get(&out_ghost).as_vec();
        group.all_reduce_sum(&mut g);
        dev.add_host(grads.get_or_alloc_mut(&x_ghost)?, &g)
    });
    Ok(out.put_tape(tape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::{scale_loss, shard, threads};
    use crate::loss::nt_xent;

    /// 2N rows of width 5, view v of image k at row v N + k.
    fn embeddings(n: usize) -> Vec<f32> {
        (0..2 * n * 5).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect()
    }

    /// This rank's rows of the global [2N, F]: its images of each view.
    fn local_rows(z: &[f32], n: usize, f: usize, part: std::ops::Range<usize>) -> Vec<f32> {
        (0..2).flat_map(|v| z[(v * n + part.start) * f..(v * n + part.end) * f].to_vec()).collect()
    }

    /// The distributed NT-Xent (each rank gathers, backpropagates its share) against NT-Xent
    /// on the whole batch in one process: the same loss on every rank, and each rank's
    /// gradient equals its rows of the single-process gradient.
    #[test]
    fn gathered_nt_xent_gives_each_rank_its_rows_of_the_global_gradient() {
        let (n, f) = (7, 5);
        let z = embeddings(n);
        let dev = Cpu::default();
        let whole = dev.tensor_from_vec(z.clone(), (2 * n, f));
        let g = nt_xent(whole.leaky_trace(), 0.5);
        let want_loss = g.array();
        let want_grad = g.backward().get(&whole).as_vec();
        for size in [2, 3] {
            let out = threads::run(size, |rank| {
                let part = shard(n, rank, size);
                crate::dist::current().unwrap().set_batch(part.len(), n);
                let dev = Cpu::default();
                let mine = dev.tensor_from_vec(local_rows(&z, n, f, part.clone()), (2 * part.len(), f));
                let all = gather_views(mine.leaky_trace(), 2).unwrap();
                let loss = nt_xent(all, 0.5);
                let value = loss.array();
                let grads = scale_loss(loss).backward();
                (value, grads.get(&mine).as_vec())
            });
            for (rank, (loss, grad)) in out.into_iter().enumerate() {
                assert!((loss - want_loss).abs() < 1e-6, "{size} ranks, rank {rank}: loss {loss} vs {want_loss}");
                let want = local_rows(&want_grad, n, f, shard(n, rank, size));
                for (a, b) in grad.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-6 * (1.0 + b.abs()), "{size} ranks, rank {rank}: {a} vs {b}");
                }
            }
        }
    }

    /// The same for the losses over columns of the global batch (Barlow Twins, VICReg).
    #[test]
    fn gathered_column_losses_give_each_rank_its_rows_of_the_global_gradient() {
        use crate::loss::{barlow_twins_loss, vicreg_loss, VicRegWeights};
        let (n, f) = (7, 5);
        let z = embeddings(n);
        type Loss = fn(Tensor<(usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>) -> Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>;
        let losses: [(&str, Loss); 2] = [
            ("barlow twins", |z| barlow_twins_loss(z, 0.0051)),
            ("vicreg", |z| vicreg_loss(z, VicRegWeights { invariance: 25.0, variance: 25.0, covariance: 1.0 })),
        ];
        for (name, loss) in losses {
            let dev = Cpu::default();
            let whole = dev.tensor_from_vec(z.clone(), (2 * n, f));
            let g = loss(whole.leaky_trace());
            let want_loss = g.array();
            let want_grad = g.backward().get(&whole).as_vec();
            let out = threads::run(2, |rank| {
                let part = shard(n, rank, 2);
                crate::dist::current().unwrap().set_batch(part.len(), n);
                let dev = Cpu::default();
                let mine = dev.tensor_from_vec(local_rows(&z, n, f, part.clone()), (2 * part.len(), f));
                let l = loss(gather_views(mine.leaky_trace(), 2).unwrap());
                let value = l.array();
                (value, scale_loss(l).backward().get(&mine).as_vec())
            });
            for (rank, (l, grad)) in out.into_iter().enumerate() {
                assert!((l - want_loss).abs() < 1e-5 * want_loss.abs(), "{name}, rank {rank}: loss {l} vs {want_loss}");
                let want = local_rows(&want_grad, n, f, shard(n, rank, 2));
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (a, b) in grad.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5 * scale, "{name}, rank {rank}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn all_reduce_sums_values_and_gradients() {
        let out = threads::run(2, |rank| {
            let g = crate::dist::current().unwrap();
            let dev = Cpu::default();
            let x = dev.tensor_from_vec(vec![1.0 + rank as f32, 2.0], (2,));
            let s = all_reduce(&g, x.leaky_trace()).unwrap();
            let v = s.as_vec();
            // Rank r's loss: (r + 1) * sum(s^2 / 2); the global loss is their sum.
            let loss = (s.square() * (0.5 * (rank + 1) as f32)).sum();
            (v, loss.backward().get(&x).as_vec())
        });
        // s = [3, 4] on both; dL/ds = (1 + 2) s on the sum, shared by both inputs.
        for (v, grad) in out {
            assert_eq!(v, vec![3.0, 4.0]);
            assert_eq!(grad, vec![9.0, 12.0]);
        }
    }
}
