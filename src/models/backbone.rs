//! What a backbone is to the training loops: a module from a batch of C-channel images to
//! F features, trainable with a tape (`forward_mut`) and usable for evaluation without one
//! (`forward`: BatchNorm on running statistics, dropout off).

use dfdx::prelude::*;

/// A batch of images, N x C x H x W (H and W at run time).
pub type Images<const C: usize> = Tensor<(usize, Const<C>, usize, usize), f32, Cpu>;
/// The same, recording a tape for training.
pub type TapedImages<const C: usize> = Tensor<(usize, Const<C>, usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>;
/// N feature vectors of width F.
pub type Features<const F: usize> = Tensor<(usize, Const<F>), f32, Cpu>;
/// The same, recording a tape.
pub type TapedFeatures<const F: usize> = Tensor<(usize, Const<F>), f32, Cpu, OwnedTape<f32, Cpu>>;

/// A backbone from C-channel images to F features.
pub trait Backbone<const C: usize, const F: usize>:
    ModuleMut<TapedImages<C>, Output = TapedFeatures<F>> + Module<Images<C>, Output = Features<F>> + TensorCollection<f32, Cpu> + Clone + 'static
{
}

impl<T, const C: usize, const F: usize> Backbone<C, F> for T where
    T: ModuleMut<TapedImages<C>, Output = TapedFeatures<F>> + Module<Images<C>, Output = Features<F>> + TensorCollection<f32, Cpu> + Clone + 'static
{
}

/// A head trained on top of F features, giving Z outputs.
pub trait Head<const F: usize, const Z: usize>:
    ModuleMut<TapedFeatures<F>, Output = TapedFeatures<Z>> + Module<Features<F>, Output = Features<Z>> + TensorCollection<f32, Cpu> + Clone + 'static
{
}

impl<T, const F: usize, const Z: usize> Head<F, Z> for T where
    T: ModuleMut<TapedFeatures<F>, Output = TapedFeatures<Z>> + Module<Features<F>, Output = Features<Z>> + TensorCollection<f32, Cpu> + Clone + 'static
{
}

/// Code that runs with a backbone's compiled type: the registry calls [`WithBackbone::run`]
/// with the type a model name stands for.
pub trait WithBackbone {
    type Out;
    /// `B` builds the backbone; its input has C channels and its output F features.
    fn run<B: BuildOnDevice<Cpu, f32>, const C: usize, const F: usize>(self) -> Self::Out
    where
        B::Built: Backbone<C, F>;
}
