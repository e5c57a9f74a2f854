//! GoogLeNet's Inception block (Szegedy et al. 2015): four branches on the same input —
//! 1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max-pool then 1x1 — concatenated along channels, and
//! a small GoogLeNet-style backbone for 32x32 built from it.
//!
//! Stable Rust cannot add const generics in a type, so the block names its output width `O`
//! and a compile-time assertion checks O = C1 + C3 + C5 + CP.

use dfdx::nn::builders::AvgPoolGlobal;
use dfdx::prelude::*;

use crate::nn::builders::{BatchNormReLU2D as BnReLU, Conv2D};
use crate::nn::{MaxPool2D, NnDevice};

type Cv<const I: usize, const O: usize, const K: usize, const P: usize, E, D> = crate::nn::Conv2D<I, O, K, 1, P, 1, E, D>;
type Bn<const C: usize, E, D> = crate::nn::BatchNormReLU2D<C, E, D>;
type Branch1<const I: usize, const C: usize, E, D> = (Cv<I, C, 1, 0, E, D>, Bn<C, E, D>);
type BranchK<const I: usize, const R: usize, const C: usize, const K: usize, const P: usize, E, D> =
    (Cv<I, R, 1, 0, E, D>, Bn<R, E, D>, Cv<R, C, K, P, E, D>, Bn<C, E, D>);
type BranchPool<const I: usize, const C: usize, E, D> = (MaxPool2D<3, 1, 1>, Cv<I, C, 1, 0, E, D>, Bn<C, E, D>);

pub mod builder {
    /// Inception block: I input channels; branch widths C1, (R3 -> C3), (R5 -> C5), CP; output O.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Inception<
        const I: usize,
        const C1: usize,
        const R3: usize,
        const C3: usize,
        const R5: usize,
        const C5: usize,
        const CP: usize,
        const O: usize,
    >;
}

/// The built block.
#[derive(Debug, Clone)]
pub struct Inception<
    const I: usize,
    const C1: usize,
    const R3: usize,
    const C3: usize,
    const R5: usize,
    const C5: usize,
    const CP: usize,
    const O: usize,
    E: Dtype,
    D: Storage<E>,
> {
    pub b1: Branch1<I, C1, E, D>,
    pub b3: BranchK<I, R3, C3, 3, 1, E, D>,
    pub b5: BranchK<I, R5, C5, 5, 2, E, D>,
    pub bp: BranchPool<I, CP, E, D>,
}

impl<const I: usize, const C1: usize, const R3: usize, const C3: usize, const R5: usize, const C5: usize, const CP: usize, const O: usize, E: Dtype, D: Storage<E>>
    Inception<I, C1, R3, C3, R5, C5, CP, O, E, D>
{
    /// Compile-time: the output width is the sum of the branch widths.
    pub const CHECK: () = assert!(O == C1 + C3 + C5 + CP, "Inception: O must equal C1 + C3 + C5 + CP");
}

impl<const I: usize, const C1: usize, const R3: usize, const C3: usize, const R5: usize, const C5: usize, const CP: usize, const O: usize, E, D>
    BuildOnDevice<D, E> for builder::Inception<I, C1, R3, C3, R5, C5, CP, O>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type Built = Inception<I, C1, R3, C3, R5, C5, CP, O, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = Self::Built::CHECK;
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const C1: usize, const R3: usize, const C3: usize, const R5: usize, const C5: usize, const CP: usize, const O: usize, E, D>
    TensorCollection<E, D> for Inception<I, C1, R3, C3, R5, C5, CP, O, E, D>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Inception<I, C1, R3, C3, R5, C5, CP, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("b1", |s| &s.b1, |s| &mut s.b1),
                Self::module("b3", |s| &s.b3, |s| &mut s.b3),
                Self::module("b5", |s| &s.b5, |s| &mut s.b5),
                Self::module("bp", |s| &s.bp, |s| &mut s.bp),
            ),
            |(b1, b3, b5, bp)| Inception { b1, b3, b5, bp },
        )
    }
}

type Dyn4<B, D, T> = Tensor<(B, usize, usize, usize), f32, D, T>;
type Map4<B, const C: usize, D, T> = Tensor<(B, Const<C>, usize, usize), f32, D, T>;

/// Concatenates the four branch outputs along channels into O channels.
fn concat<const C1: usize, const C3: usize, const C5: usize, const CP: usize, const O: usize, B: Dim, D: NnDevice, T>(
    y1: Map4<B, C1, D, T>,
    y3: Map4<B, C3, D, T>,
    y5: Map4<B, C5, D, T>,
    yp: Map4<B, CP, D, T>,
) -> Result<Map4<B, O, D, T>, D::Err>
where
    T: Tape<f32, D> + std::fmt::Debug,
    (Dyn4<B, D, T>, Dyn4<B, D, T>): TryConcatAlong<Axis<1>, Output = Dyn4<B, D, T>, Error = D::Err>,
{
    let a: Dyn4<B, D, T> = y1.realize();
    let b: Dyn4<B, D, T> = y3.realize();
    let c: Dyn4<B, D, T> = y5.realize();
    let d: Dyn4<B, D, T> = yp.realize();
    let ab = (a, b).try_concat_along(Axis::<1>)?;
    let cd = (c, d).try_concat_along(Axis::<1>)?;
    let all = (ab, cd).try_concat_along(Axis::<1>)?;
    Ok(all.realize())
}

impl<const I: usize, const C1: usize, const R3: usize, const C3: usize, const R5: usize, const C5: usize, const CP: usize, const O: usize, B: Dim, H: Dim, W: Dim, D: NnDevice>
    Module<Tensor<(B, Const<I>, H, W), f32, D>> for Inception<I, C1, R3, C3, R5, C5, CP, O, f32, D>
{
    type Output = Tensor<(B, Const<O>, usize, usize), f32, D>;
    type Error = D::Err;

    /// Evaluation (BatchNorm with running statistics).
    fn try_forward(&self, x: Tensor<(B, Const<I>, H, W), f32, D>) -> Result<Self::Output, D::Err> {
        let y1 = self.b1.try_forward(x.clone())?;
        let y3 = self.b3.try_forward(x.clone())?;
        let y5 = self.b5.try_forward(x.clone())?;
        let yp = self.bp.try_forward(x)?;
        concat(y1, y3, y5, yp)
    }
}

impl<const I: usize, const C1: usize, const R3: usize, const C3: usize, const R5: usize, const C5: usize, const CP: usize, const O: usize, B: Dim, H: Dim, W: Dim, D: NnDevice>
    ModuleMut<Tensor<(B, Const<I>, H, W), f32, D, OwnedTape<f32, D>>> for Inception<I, C1, R3, C3, R5, C5, CP, O, f32, D>
{
    type Output = Tensor<(B, Const<O>, usize, usize), f32, D, OwnedTape<f32, D>>;
    type Error = D::Err;

    /// Training: every branch sees the same input; the gradients of the four add up.
    fn try_forward_mut(&mut self, x: Tensor<(B, Const<I>, H, W), f32, D, OwnedTape<f32, D>>) -> Result<Self::Output, D::Err> {
        let y3 = self.b3.try_forward_mut(x.retaped())?;
        let y5 = self.b5.try_forward_mut(x.retaped())?;
        let yp = self.bp.try_forward_mut(x.retaped())?;
        let y1 = self.b1.try_forward_mut(x)?;
        concat(y1, y3, y5, yp)
    }
}

/// A small GoogLeNet for 32x32 (the CIFAR variant's widths, fewer blocks): a 3x3 stem, two
/// Inception blocks at 32x32, max-pool, two at 16x16, max-pool, one at 8x8, global average
/// pooling; 512 features.
pub type GoogLeNetCifar = (
    (Conv2D<3, 192, 3, 1, 1>, BnReLU<192>),
    (builder::Inception<192, 64, 96, 128, 16, 32, 32, 256>, builder::Inception<256, 128, 128, 192, 32, 96, 64, 480>, MaxPool2D<3, 2, 1>),
    (builder::Inception<480, 192, 96, 208, 16, 48, 64, 512>, builder::Inception<512, 160, 112, 224, 24, 64, 64, 512>, MaxPool2D<3, 2, 1>),
    builder::Inception<512, 128, 128, 256, 24, 64, 64, 512>,
    AvgPoolGlobal,
);
