//! 2-D max and average pooling as dfdx modules (window `K`, stride `S`, padding `P`, all
//! compile-time), on NCHW tensors with runtime spatial sizes.
//!
//! ```
//! use dfdx::prelude::*;
//! use ssl::nn::builders::MaxPool2D;
//! let dev: Cpu = Default::default();
//! let x: Tensor<(usize, Const<2>, usize, usize), f32, _> = dev.zeros_like(&(1, Const, 8, 8));
//! let y = MaxPool2D::<3, 2, 1>::default().forward(x);
//! assert_eq!(y.shape().2, 4);
//! ```

mod cpu_kernel;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) mod cuda_kernel;

pub use cpu_kernel::PoolGeom;

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};

use super::gemm::Real;
use super::tape::{copied, put_grad, take_grad, zeros};

/// Max pooling: window `K`, stride `S`, padding `P` (padding never wins the max).
#[derive(Debug, Default, Clone, Copy)]
pub struct MaxPool2D<const K: usize, const S: usize = K, const P: usize = 0>;

/// Average pooling: window `K`, stride `S`, padding `P` (counted in the divisor, as PyTorch).
#[derive(Debug, Default, Clone, Copy)]
pub struct AvgPool2D<const K: usize, const S: usize = K, const P: usize = 0>;

impl<const K: usize, const S: usize, const P: usize> ZeroSizedModule for MaxPool2D<K, S, P> {}
impl<const K: usize, const S: usize, const P: usize> NonMutableModule for MaxPool2D<K, S, P> {}

/// No fused form: a residual block holding it runs layer by layer.
impl<const K: usize, const S: usize, const P: usize, E: Dtype, D: Storage<E>> crate::nn::fused::FusableLayers<E, D> for MaxPool2D<K, S, P> {}

/// No fused form: a residual block holding it runs layer by layer.
impl<const K: usize, const S: usize, const P: usize, E: Dtype, D: Storage<E>> crate::nn::fused::FusableLayers<E, D> for AvgPool2D<K, S, P> {}
impl<const K: usize, const S: usize, const P: usize> ZeroSizedModule for AvgPool2D<K, S, P> {}
impl<const K: usize, const S: usize, const P: usize> NonMutableModule for AvgPool2D<K, S, P> {}

/// Which pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A device that runs the pooling layers: the CPU with the project's kernels, CUDA (with the
/// `cuda` feature) with dfdx's device-generic ops.
pub trait Pool2DKernel<E: Dtype>: Storage<E> {
    /// Pools `x` with window, stride and padding `ksp`.
    fn pool2d<B: Dim, const C: usize, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(B, Const<C>, H, W), E, Self, T>,
        kind: PoolKind,
        ksp: (usize, usize, usize),
    ) -> Result<Tensor<(B, Const<C>, usize, usize), E, Self, T>, Self::Err>;
}

fn geometry<B: Dim, const C: usize, H: Dim, W: Dim>(s: &(B, Const<C>, H, W), (k, st, p): (usize, usize, usize)) -> PoolGeom {
    PoolGeom::new(s.0.size() * C, s.2.size(), s.3.size(), k, st, p).unwrap_or_else(|| {
        panic!("pool window {k} (stride {st}, padding {p}) does not fit input {}x{}", s.2.size(), s.3.size())
    })
}

impl<E: Dtype + Real> Pool2DKernel<E> for Cpu {
    fn pool2d<B: Dim, const C: usize, H: Dim, W: Dim, T: Tape<E, Cpu>>(
        x: Tensor<(B, Const<C>, H, W), E, Cpu, T>,
        kind: PoolKind,
        ksp: (usize, usize, usize),
    ) -> Result<Tensor<(B, Const<C>, usize, usize), E, Cpu, T>, CpuError> {
        match kind {
            PoolKind::Max => pool(
                x,
                ksp,
                |g, x, y| {
                    let mut arg = vec![0u32; y.len()];
                    cpu_kernel::max_forward(g, x, y, &mut arg);
                    arg
                },
                |g, arg, dy, dx| cpu_kernel::max_backward(g, arg, dy, dx),
            ),
            PoolKind::Avg => pool(x, ksp, cpu_kernel::avg_forward, |g, _, dy, dx| cpu_kernel::avg_backward(g, dy, dx)),
        }
    }
}

/// Runs a CPU pooling kernel on the tape: `forward` fills the output and returns what its
/// `backward` needs.
fn pool<B: Dim, const C: usize, H: Dim, W: Dim, E: Dtype + Real, T: Tape<E, Cpu>, State: 'static>(
    x: Tensor<(B, Const<C>, H, W), E, Cpu, T>,
    ksp: (usize, usize, usize),
    forward: impl FnOnce(&PoolGeom, &[E], &mut [E]) -> State,
    backward: impl FnOnce(&PoolGeom, &State, &[E], &mut [E]) + 'static,
) -> Result<Tensor<(B, Const<C>, usize, usize), E, Cpu, T>, CpuError> {
    let s = *x.shape();
    let g = geometry(&s, ksp);
    let (x, mut tape) = x.split_tape();
    let mut y = zeros(g.planes * g.oh * g.ow);
    let state = forward(&g, &copied(&x), &mut y);
    let out = x.device().tensor_from_vec(y, (s.0, Const::<C>, g.oh, g.ow));
    if T::OWNS_TAPE {
        let (x_ghost, out_ghost) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &out_ghost);
            let mut dx = take_grad!(grads, &x_ghost);
            backward(&g, &state, &dy, &mut dx);
            put_grad!(grads, &x_ghost, dx);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// [`cuda_kernel::pool2d`] with the layer's types.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn generic_pool2d<B: Dim, const C: usize, H: Dim, W: Dim, E, D, T>(
    x: Tensor<(B, Const<C>, H, W), E, D, T>,
    kind: PoolKind,
    ksp: (usize, usize, usize),
) -> Result<Tensor<(B, Const<C>, usize, usize), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E> + TensorFromVec<usize>,
    T: Tape<E, D>,
{
    let s = *x.shape();
    let g = geometry(&s, ksp);
    let x = x.try_reshape_like(&(s.0.size(), C, s.2.size(), s.3.size()))?;
    cuda_kernel::pool2d(x, kind, ksp)?.try_reshape_like(&(s.0, Const::<C>, g.oh, g.ow))
}

#[cfg(feature = "cuda")]
impl<E: Dtype> Pool2DKernel<E> for dfdx::tensor::Cuda
where
    dfdx::tensor::Cuda: Device<E>,
{
    fn pool2d<B: Dim, const C: usize, H: Dim, W: Dim, T: Tape<E, Self>>(
        x: Tensor<(B, Const<C>, H, W), E, Self, T>,
        kind: PoolKind,
        ksp: (usize, usize, usize),
    ) -> Result<Tensor<(B, Const<C>, usize, usize), E, Self, T>, Self::Err> {
        generic_pool2d(x, kind, ksp)
    }
}

impl<const K: usize, const S: usize, const P: usize, B: Dim, const C: usize, H: Dim, W: Dim, E, D, T>
    Module<Tensor<(B, Const<C>, H, W), E, D, T>> for MaxPool2D<K, S, P>
where
    E: Dtype,
    D: Pool2DKernel<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(B, Const<C>, usize, usize), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, Const<C>, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        D::pool2d(x, PoolKind::Max, (K, S, P))
    }
}

impl<const K: usize, const S: usize, const P: usize, B: Dim, const C: usize, H: Dim, W: Dim, E, D, T>
    Module<Tensor<(B, Const<C>, H, W), E, D, T>> for AvgPool2D<K, S, P>
where
    E: Dtype,
    D: Pool2DKernel<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(B, Const<C>, usize, usize), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, Const<C>, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        D::pool2d(x, PoolKind::Avg, (K, S, P))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gradcheck::{assert_grad_close, values};

    type X<E> = Tensor<(usize, Const<1>, usize, usize), E, Cpu>;

    #[test]
    fn hand_computed_forward() {
        let dev: Cpu = Default::default();
        let x: X<f32> = dev.tensor_from_vec((1..=16).map(|v| v as f32).collect(), (1, Const, 4, 4));
        assert_eq!(MaxPool2D::<2>.forward(x.clone()).as_vec(), vec![6.0, 8.0, 14.0, 16.0]);
        assert_eq!(AvgPool2D::<2>.forward(x.clone()).as_vec(), vec![3.5, 5.5, 11.5, 13.5]);
        // 3x3 window, stride 2, padding 1: ResNet's ImageNet max-pool.
        let y = MaxPool2D::<3, 2, 1>.forward(x.clone());
        assert_eq!(y.as_vec(), vec![6.0, 8.0, 14.0, 16.0]);
        let y = AvgPool2D::<3, 2, 1>.forward(x);
        assert_eq!(y.as_vec()[0], (1.0 + 2.0 + 5.0 + 6.0) / 9.0);
    }

    macro_rules! pool_grad_check {
        ($pool:expr) => {{
            let dev: Cpu = Default::default();
            let shape = (2usize, Const::<3>, 7usize, 6usize);
            let xv = values(2 * 3 * 7 * 6, 5);
            let x = dev.tensor_from_vec(xv.clone(), shape);
            let y = $pool.forward(x.leaky_trace());
            let r = values(y.shape().num_elements(), 6);
            let rt = dev.tensor_from_vec(r.clone(), *y.shape());
            let g = (y * rt).sum().backward();
            let loss = |v: &[f64]| -> f64 {
                let y = $pool.forward(dev.tensor_from_vec(v.to_vec(), shape));
                y.as_vec().iter().zip(&r).map(|(a, b)| a * b).sum()
            };
            assert_grad_close(stringify!($pool), &g.get(&x).as_vec(), &xv, loss, 120);
        }};
    }

    #[test]
    fn gradients_match_finite_differences() {
        pool_grad_check!(MaxPool2D::<2>);
        pool_grad_check!(MaxPool2D::<3, 2, 1>);
        pool_grad_check!(AvgPool2D::<2>);
        pool_grad_check!(AvgPool2D::<3, 1, 1>);
    }

    /// The device path (what CUDA runs) computes what the CPU kernel does, gradients included.
    #[test]
    fn device_path_matches_the_cpu_kernel() {
        use crate::nn::gradcheck::assert_same;
        let dev: Cpu = Default::default();
        for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)] {
            for kind in [PoolKind::Max, PoolKind::Avg] {
                let x: X<f64> = dev.tensor_from_vec(values(2 * 7 * 6, 11), (2, Const, 7, 6));
                let a = Cpu::pool2d(x.leaky_trace(), kind, (k, s, p)).unwrap();
                let b = generic_pool2d(x.leaky_trace(), kind, (k, s, p)).unwrap();
                let what = format!("{kind:?} {k} {s} {p}");
                assert_same(&what, &a.as_vec(), &b.as_vec());
                let r = dev.tensor_from_vec(values(a.shape().num_elements(), 12), *a.shape());
                let (ga, gb) = ((a * r.clone()).sum().backward(), (b * r).sum().backward());
                assert_same(&format!("{what} dx"), &ga.get(&x).as_vec(), &gb.get(&x).as_vec());
            }
        }
    }
}
