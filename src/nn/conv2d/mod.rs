//! 2-D convolution as a dfdx module, on stable Rust.
//!
//! Channels, kernel, stride, padding, dilation and groups are compile-time constants, so a
//! channel mismatch between layers fails to compile; spatial sizes are runtime (`usize`), and
//! the output of a convolution is `(B, Const<O>, usize, usize)`.
//!
//! ```
//! use dfdx::prelude::*;
//! use ssl::nn::builders::Conv2D;
//! let dev: Cpu = Default::default();
//! let conv = dev.build_module::<Conv2D<3, 8, 3, 1, 1>, f32>();
//! let x: Tensor<(usize, Const<3>, usize, usize), f32, _> = dev.zeros_like(&(2, Const, 32, 32));
//! let y = conv.forward(x);
//! assert_eq!(y.shape().2, 32);
//! ```
//!
//! Groups are given as the number of input channels per group (`IPG`): `IPG = I` is an
//! ordinary convolution, `IPG = 1` a depthwise one (see the aliases in `builder`), because
//! stable Rust cannot compute `I / G` in a type. A bias is a separate layer, dfdx's `Bias2D`,
//! as in dfdx itself.
//!
//! On the CPU (`cpu_kernel.rs`): im2col + GEMM for every geometry, direct kernels for depthwise
//! convolutions (`depthwise.rs`) and for the 3x3 convolutions of ResNets, stride 1 or 2 (`direct.rs`).
//!
//! Initialisation: PyTorch's default, `kaiming_uniform_(a = sqrt(5))`, which is uniform in
//! ±1/sqrt(fan_in) with fan_in = IPG * K * K.

mod cpu_kernel;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) mod cuda_kernel;
mod depthwise;
#[cfg(target_arch = "x86_64")]
mod direct;

pub use cpu_kernel::ConvGeom;

use std::sync::Arc;

use dfdx::prelude::*;
use dfdx::tensor::{Cpu, CpuError};
use rand_distr::Uniform;

use super::fused::{Act, CpuLayer, FusableLayers, LayerBackward};
use super::gemm::Real;
use super::tape::{buffer, copied, put_grad, take_grad, to_vec, zeros, Store};

pub mod builder {
    /// A grouped convolution: `IPG` input channels per group (groups = I / IPG).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct GroupedConv2D<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const L: usize,
        const IPG: usize,
    >;
    /// A dense convolution: `I` to `O` channels, `K`x`K` kernel, stride `S`, padding `P`,
    /// dilation `L`.
    pub type Conv2D<const I: usize, const O: usize, const K: usize, const S: usize = 1, const P: usize = 0, const L: usize = 1> =
        GroupedConv2D<I, O, K, S, P, L, I>;
    /// A depthwise convolution (groups = channels), as in MobileNet.
    pub type DepthwiseConv2D<const C: usize, const K: usize, const S: usize = 1, const P: usize = 0> =
        GroupedConv2D<C, C, K, S, P, 1, 1>;
}

/// The built convolution: weight `[O, IPG, K, K]`.
#[derive(Debug, Clone)]
pub struct GroupedConv2D<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const L: usize,
    const IPG: usize,
    E: Dtype,
    D: Storage<E>,
> {
    pub weight: Tensor<Rank4<O, IPG, K, K>, E, D>,
}

/// A built dense convolution.
pub type Conv2D<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const L: usize, E, D> =
    GroupedConv2D<I, O, K, S, P, L, I, E, D>;

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const L: usize,
        const IPG: usize,
        E: Dtype,
        D: Storage<E>,
    > GroupedConv2D<I, O, K, S, P, L, IPG, E, D>
{
    /// Compile-time validity: groups divide both channel counts; kernel, stride and dilation
    /// are positive. Evaluated when the layer is built or run, so a bad layer fails to compile.
    pub const CHECK: () = assert!(
        IPG > 0 && I % IPG == 0 && O % (I / IPG) == 0 && K > 0 && S > 0 && L > 0,
        "Conv2D: IPG must divide I, I / IPG must divide O, and K, S, L must be positive"
    );
    /// Number of groups.
    pub const GROUPS: usize = I / IPG;

    /// The geometry of a call on `batch` images of `h` x `w`, or `None` when the kernel does
    /// not fit.
    pub fn geometry(batch: usize, h: usize, w: usize) -> Option<ConvGeom> {
        ConvGeom::new(batch, I, h, w, O, K, S, P, L, Self::GROUPS)
    }

    /// [`Self::geometry`]; panics when the kernel does not fit (model registries check input
    /// shapes before any work starts).
    fn fitting_geometry(batch: usize, h: usize, w: usize) -> ConvGeom {
        Self::geometry(batch, h, w).unwrap_or_else(|| {
            panic!("Conv2D<{I}, {O}, kernel {K}, dilation {L}, padding {P}>: input {h}x{w} is smaller than the kernel")
        })
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const L: usize,
        const IPG: usize,
        E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
        D: Device<E>,
    > BuildOnDevice<D, E> for builder::GroupedConv2D<I, O, K, S, P, L, IPG>
{
    type Built = GroupedConv2D<I, O, K, S, P, L, IPG, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = Self::Built::CHECK;
        Self::Built::try_build(device)
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const L: usize,
        const IPG: usize,
        E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
        D: Device<E>,
    > TensorCollection<E, D> for GroupedConv2D<I, O, K, S, P, L, IPG, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = GroupedConv2D<I, O, K, S, P, L, IPG, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "weight",
                |s| &s.weight,
                |s| &mut s.weight,
                TensorOptions::reset_with(|t| {
                    let b = E::ONE / E::from_usize(IPG * K * K).unwrap().sqrt();
                    t.try_fill_with_distr(Uniform::new(-b, b))
                }),
            ),
            |weight| GroupedConv2D { weight },
        )
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const L: usize,
        const IPG: usize,
        E: Dtype,
        D: Storage<E>,
    > NonMutableModule for GroupedConv2D<I, O, K, S, P, L, IPG, E, D>
{
}

/// A device that runs [`GroupedConv2D`]: the CPU with the project's kernels, CUDA (with the
/// `cuda` feature) with dfdx's device-generic ops.
pub trait Conv2DKernel<E: Dtype>: Storage<E> {
    /// `weight` [O, IPG, K, K] over `x` (B, I, H, W) with the geometry of the call.
    fn conv2d<B: Dim, const I: usize, H: Dim, W: Dim, const O: usize, const IPG: usize, const K: usize, T: Tape<E, Self>>(
        x: Tensor<(B, Const<I>, H, W), E, Self, T>,
        weight: &Tensor<Rank4<O, IPG, K, K>, E, Self>,
        geom: ConvGeom,
    ) -> Result<Tensor<(B, Const<O>, usize, usize), E, Self, T>, Self::Err>;
}

impl<E: Dtype + Real> Conv2DKernel<E> for Cpu {
    fn conv2d<B: Dim, const I: usize, H: Dim, W: Dim, const O: usize, const IPG: usize, const K: usize, T: Tape<E, Cpu>>(
        x: Tensor<(B, Const<I>, H, W), E, Cpu, T>,
        weight: &Tensor<Rank4<O, IPG, K, K>, E, Cpu>,
        geom: ConvGeom,
    ) -> Result<Tensor<(B, Const<O>, usize, usize), E, Cpu, T>, CpuError> {
        let b = x.shape().0;
        let (x, mut tape) = x.split_tape();
        let xv = copied(&x);
        let wv = to_vec(weight);
        let mut y = zeros(geom.batch * O * geom.oh * geom.ow);
        cpu_kernel::forward(&geom, &xv, &wv, &mut y);
        // The backward copies the input again rather than keep this copy: the tensor itself is
        // usually held by the op before (a ReLU), so keeping it costs no memory.
        drop(xv);
        let out = x.device().tensor_from_vec(y, (b, Const::<O>, geom.oh, geom.ow));
        if T::OWNS_TAPE {
            let (x_ghost, w_ghost, out_ghost) = (x.ghost(), weight.ghost(), out.ghost());
            tape.add_backward_op(move |grads| {
                let dy = take_grad!(grads, &out_ghost);
                let mut dx = take_grad!(grads, &x_ghost);
                let mut dw = take_grad!(grads, &w_ghost);
                cpu_kernel::backward(&geom, &copied(&x), &wv, &dy, Some(&mut dx), Store::Add, &mut dw);
                put_grad!(grads, &x_ghost, dx);
                put_grad!(grads, &w_ghost, dw);
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const L: usize, const IPG: usize, E>
    CpuLayer<E> for GroupedConv2D<I, O, K, S, P, L, IPG, E, Cpu>
where
    E: Dtype + Real,
{
    fn forward_eval(&self, x: &Act<E>) -> Result<Act<E>, CpuError> {
        Ok(self.forward_act(x)?.0)
    }

    fn forward_train(&mut self, x: &Act<E>) -> Result<(Act<E>, LayerBackward<E>), CpuError> {
        let (out, geom, wv) = self.forward_act(x)?;
        let (input, w_ghost) = (x.data.clone(), self.weight.ghost());
        let run = move |dy: &mut [E], dx: &mut [E], store: Store, grads: &mut Gradients<E, Cpu>| {
            let mut dw = take_grad!(grads, &w_ghost);
            cpu_kernel::backward(&geom, &input, &wv, dy, Some(dx), store, &mut dw);
            put_grad!(grads, &w_ghost, dw);
            Ok(())
        };
        Ok((out, LayerBackward { input_len: x.data.len(), run: Box::new(run) }))
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const L: usize, const IPG: usize, E>
    GroupedConv2D<I, O, K, S, P, L, IPG, E, Cpu>
where
    E: Dtype + Real,
{
    /// The forward on a fused activation: the output, the geometry and the weights read.
    fn forward_act(&self, x: &Act<E>) -> Result<(Act<E>, ConvGeom, Vec<E>), CpuError> {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        let [b, c, h, w] = x.shape;
        if c != I || x.data.len() != b * c * h * w {
            return Err(CpuError::WrongNumElements);
        }
        let geom = Self::fitting_geometry(b, h, w);
        let wv = to_vec(&self.weight);
        let mut y = buffer(geom.batch * O * geom.oh * geom.ow);
        cpu_kernel::forward(&geom, &x.data, &wv, &mut y);
        Ok((Act { data: Arc::new(y), shape: [b, O, geom.oh, geom.ow] }, geom, wv))
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const L: usize, const IPG: usize, E>
    FusableLayers<E, Cpu> for GroupedConv2D<I, O, K, S, P, L, IPG, E, Cpu>
where
    E: Dtype + Real,
{
    super::fused::fusable_as_itself!();
}

/// On CUDA a residual block runs layer by layer.
#[cfg(feature = "cuda")]
impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const L: usize, const IPG: usize, E>
    FusableLayers<E, dfdx::tensor::Cuda> for GroupedConv2D<I, O, K, S, P, L, IPG, E, dfdx::tensor::Cuda>
where
    E: Dtype,
    dfdx::tensor::Cuda: Storage<E>,
{
}

#[cfg(feature = "cuda")]
impl<E: Dtype> Conv2DKernel<E> for dfdx::tensor::Cuda
where
    dfdx::tensor::Cuda: Device<E>,
{
    fn conv2d<B: Dim, const I: usize, H: Dim, W: Dim, const O: usize, const IPG: usize, const K: usize, T: Tape<E, Self>>(
        x: Tensor<(B, Const<I>, H, W), E, Self, T>,
        weight: &Tensor<Rank4<O, IPG, K, K>, E, Self>,
        geom: ConvGeom,
    ) -> Result<Tensor<(B, Const<O>, usize, usize), E, Self, T>, Self::Err> {
        generic_conv2d(x, weight, geom)
    }
}

/// [`cuda_kernel::conv2d`] with the layer's types.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn generic_conv2d<B: Dim, const I: usize, H: Dim, W: Dim, const O: usize, const IPG: usize, const K: usize, E, D, T>(
    x: Tensor<(B, Const<I>, H, W), E, D, T>,
    weight: &Tensor<Rank4<O, IPG, K, K>, E, D>,
    geom: ConvGeom,
) -> Result<Tensor<(B, Const<O>, usize, usize), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E> + TensorFromVec<usize>,
    T: Tape<E, D>,
{
    let (b, _, h, w) = *x.shape();
    let x = x.try_reshape_like(&(b.size(), I, h.size(), w.size()))?;
    let wt = weight.retaped::<T>().try_reshape_like(&(O, IPG, K, K))?;
    let y = cuda_kernel::conv2d(x, wt, (geom.stride, geom.pad, geom.dil))?;
    y.try_reshape_like(&(b, Const::<O>, geom.oh, geom.ow))
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const L: usize,
        const IPG: usize,
        B: Dim,
        H: Dim,
        W: Dim,
        E: Dtype,
        D: Conv2DKernel<E>,
        T: Tape<E, D>,
    > Module<Tensor<(B, Const<I>, H, W), E, D, T>> for GroupedConv2D<I, O, K, S, P, L, IPG, E, D>
{
    type Output = Tensor<(B, Const<O>, usize, usize), E, D, T>;
    type Error = D::Err;

    /// Panics when the kernel does not fit in the padded input; model registries check input
    /// shapes before any work starts.
    fn try_forward(&self, x: Tensor<(B, Const<I>, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        let (b, _, h, w) = *x.shape();
        D::conv2d(x, &self.weight, Self::fitting_geometry(b.size(), h.size(), w.size()))
    }
}

#[cfg(test)]
mod tests;
