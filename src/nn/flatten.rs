//! Flatten (B, C, H, W) to (B, F) with F = C * H * W known at compile time, so a `Linear<F, _>`
//! can follow; the product is checked when the layer runs.

use dfdx::prelude::*;

/// Flattens (B, C, H, W) to (B, Const<F>).
#[derive(Debug, Default, Clone, Copy)]
pub struct Flatten2D<const F: usize>;

impl<const F: usize> ZeroSizedModule for Flatten2D<F> {}
impl<const F: usize> NonMutableModule for Flatten2D<F> {}

/// No fused form: a residual block holding it runs layer by layer.
impl<const F: usize, E: Dtype, D: Storage<E>> crate::nn::fused::FusableLayers<E, D> for Flatten2D<F> {}

impl<const F: usize, B: Dim, C: Dim, H: Dim, W: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, C, H, W), E, D, T>> for Flatten2D<F>
{
    type Output = Tensor<(B, Const<F>), E, D, T>;
    type Error = D::Err;

    /// Panics when C * H * W is not F; model registries check input shapes first.
    fn try_forward(&self, x: Tensor<(B, C, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        let (b, c, h, w) = *x.shape();
        assert_eq!(c.size() * h.size() * w.size(), F, "Flatten2D<{F}>: input is {}x{}x{}", c.size(), h.size(), w.size());
        x.try_reshape_like(&(b, Const::<F>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_and_passes_gradients() {
        let dev: Cpu = Default::default();
        let x: Tensor<(usize, Const<2>, usize, usize), f32, _> = dev.tensor_from_vec((0..12).map(|v| v as f32).collect(), (1, Const, 2, 3));
        let y = Flatten2D::<12>.forward(x.leaky_trace());
        assert_eq!(y.as_vec(), (0..12).map(|v| v as f32).collect::<Vec<_>>());
        let g = y.sum().backward();
        assert_eq!(g.get(&x).as_vec(), vec![1.0; 12]);
    }
}
