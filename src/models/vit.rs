//! A tiny Vision Transformer (Dosovitskiy et al. 2021): patch embedding by a strided
//! convolution, learned position embeddings, dfdx's Transformer encoder, mean pooling over
//! tokens. The token count `N` is part of the type (stable Rust cannot compute (H/P)·(W/P)), and
//! the registry checks the input against it before any work.

use dfdx::nn::builders::{LayerNorm1D, TransformerEncoder};
use dfdx::prelude::*;
use rand_distr::Normal;

use crate::nn::builders::Conv2D;

pub mod builder {
    /// Patch features (B, D, h, w) to tokens (B, N, D) plus learned position embeddings.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Tokens<const N: usize, const D: usize>;
}

/// The built token layer: position embeddings `[N, D]`.
#[derive(Debug, Clone)]
pub struct Tokens<const N: usize, const D: usize, E: Dtype, Dev: Storage<E>> {
    pub pos: Tensor<Rank2<N, D>, E, Dev>,
}

impl<const N: usize, const D: usize, E: Dtype, Dev: Device<E>> BuildOnDevice<Dev, E> for builder::Tokens<N, D>
where
    Tokens<N, D, E, Dev>: BuildModule<Dev, E>,
{
    type Built = Tokens<N, D, E, Dev>;
}

impl<const N: usize, const D: usize, E: Dtype + num_traits::Float, Dev: Device<E>> TensorCollection<E, Dev> for Tokens<N, D, E, Dev>
where
    rand_distr::StandardNormal: rand_distr::Distribution<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Tokens<N, D, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Dev>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "pos",
                |s| &s.pos,
                |s| &mut s.pos,
                TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::new(E::zero(), E::from(0.02).unwrap()).unwrap())),
            ),
            |pos| Tokens { pos },
        )
    }
}

impl<const N: usize, const D: usize, E: Dtype, Dev: Storage<E>> NonMutableModule for Tokens<N, D, E, Dev> {}

impl<const N: usize, const D: usize, B: Dim, Dev: Device<f32>, T: Tape<f32, Dev>> Module<Tensor<(B, Const<D>, usize, usize), f32, Dev, T>>
    for Tokens<N, D, f32, Dev>
{
    type Output = Tensor<(B, Const<N>, Const<D>), f32, Dev, T>;
    type Error = Dev::Err;

    /// Panics when the patch grid is not N tokens; the registry checks input shapes first.
    fn try_forward(&self, x: Tensor<(B, Const<D>, usize, usize), f32, Dev, T>) -> Result<Self::Output, Dev::Err> {
        let (b, _, h, w) = *x.shape();
        assert_eq!(h * w, N, "Tokens<{N}>: a {h}x{w} patch grid");
        let seq = x.try_reshape_like(&(b, Const::<D>, Const::<N>))?.try_permute::<(B, Const<N>, Const<D>), Axes3<0, 2, 1>>()?;
        let pos = self.pos.retaped::<T>().try_broadcast_like(seq.shape())?;
        seq.try_add(pos)
    }
}

/// Mean over the token axis: (B, N, D) to (B, D).
#[derive(Debug, Default, Clone, Copy)]
pub struct MeanTokens;

impl ZeroSizedModule for MeanTokens {}
impl NonMutableModule for MeanTokens {}

impl<B: Dim, S: Dim, const D: usize, E: Dtype, Dev: Device<E>, T: Tape<E, Dev>> Module<Tensor<(B, S, Const<D>), E, Dev, T>> for MeanTokens {
    type Output = Tensor<(B, Const<D>), E, Dev, T>;
    type Error = Dev::Err;

    fn try_forward(&self, x: Tensor<(B, S, Const<D>), E, Dev, T>) -> Result<Self::Output, Dev::Err> {
        x.try_mean::<(B, Const<D>), Axis<1>>()
    }
}

/// ViT-Tiny-like for 32x32x3: 4x4 patches (64 tokens), width 192, 3 heads, MLP 768, 6 layers;
/// 192 features.
pub type VitTinyCifar = (
    Conv2D<3, 192, 4, 4, 0>,
    builder::Tokens<64, 192>,
    TransformerEncoder<192, 3, 768, 6>,
    LayerNorm1D<192>,
    MeanTokens,
);
