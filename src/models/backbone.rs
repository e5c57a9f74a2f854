//! What a backbone is to the training loops: a module from a batch of C-channel images to
//! F features, trainable with a tape (`forward_mut`) and usable for evaluation without one
//! (`forward`: BatchNorm on running statistics, dropout off), on a device `D` (the CPU, or
//! CUDA with the `cuda` feature).

use dfdx::prelude::*;

use crate::nn::NnDevice;

/// A batch of images, N x C x H x W (H and W at run time).
pub type Images<const C: usize, D = Cpu> = Tensor<(usize, Const<C>, usize, usize), f32, D>;
/// The same, recording a tape for training.
pub type TapedImages<const C: usize, D = Cpu> = Tensor<(usize, Const<C>, usize, usize), f32, D, OwnedTape<f32, D>>;
/// N feature vectors of width F.
pub type Features<const F: usize, D = Cpu> = Tensor<(usize, Const<F>), f32, D>;
/// The same, recording a tape.
pub type TapedFeatures<const F: usize, D = Cpu> = Tensor<(usize, Const<F>), f32, D, OwnedTape<f32, D>>;

/// A backbone from C-channel images to F features.
pub trait Backbone<const C: usize, const F: usize, D: NnDevice = Cpu>:
    ModuleMut<TapedImages<C, D>, Output = TapedFeatures<F, D>, Error = D::Err>
    + Module<Images<C, D>, Output = Features<F, D>, Error = D::Err>
    + TensorCollection<f32, D>
    + Clone
    + 'static
{
}

impl<T, const C: usize, const F: usize, D: NnDevice> Backbone<C, F, D> for T where
    T: ModuleMut<TapedImages<C, D>, Output = TapedFeatures<F, D>, Error = D::Err>
        + Module<Images<C, D>, Output = Features<F, D>, Error = D::Err>
        + TensorCollection<f32, D>
        + Clone
        + 'static
{
}

/// A head trained on top of F features, giving Z outputs.
pub trait Head<const F: usize, const Z: usize, D: NnDevice = Cpu>:
    ModuleMut<TapedFeatures<F, D>, Output = TapedFeatures<Z, D>, Error = D::Err>
    + Module<Features<F, D>, Output = Features<Z, D>, Error = D::Err>
    + TensorCollection<f32, D>
    + Clone
    + 'static
{
}

impl<T, const F: usize, const Z: usize, D: NnDevice> Head<F, Z, D> for T where
    T: ModuleMut<TapedFeatures<F, D>, Output = TapedFeatures<Z, D>, Error = D::Err>
        + Module<Features<F, D>, Output = Features<Z, D>, Error = D::Err>
        + TensorCollection<f32, D>
        + Clone
        + 'static
{
}

/// A backbone type that builds on every device this binary supports.
#[cfg(not(feature = "cuda"))]
pub trait BackboneType<const C: usize, const F: usize>: BuildOnDevice<Cpu, f32, Built: Backbone<C, F, Cpu>> {}
#[cfg(not(feature = "cuda"))]
impl<T, const C: usize, const F: usize> BackboneType<C, F> for T where T: BuildOnDevice<Cpu, f32, Built: Backbone<C, F, Cpu>> {}

/// A backbone type that builds on every device this binary supports.
#[cfg(feature = "cuda")]
pub trait BackboneType<const C: usize, const F: usize>:
    BuildOnDevice<Cpu, f32, Built: Backbone<C, F, Cpu>> + BuildOnDevice<Cuda, f32, Built: Backbone<C, F, Cuda>>
{
}
#[cfg(feature = "cuda")]
impl<T, const C: usize, const F: usize> BackboneType<C, F> for T where
    T: BuildOnDevice<Cpu, f32, Built: Backbone<C, F, Cpu>> + BuildOnDevice<Cuda, f32, Built: Backbone<C, F, Cuda>>
{
}

/// Code that runs with a backbone's compiled type: the registry calls [`WithBackbone::run`]
/// with the type a model name stands for.
pub trait WithBackbone {
    type Out;
    /// `B` builds the backbone; its input has C channels and its output F features.
    fn run<B: BackboneType<C, F>, const C: usize, const F: usize>(self) -> Self::Out;
}

/// A head type that builds on every device this binary supports.
#[cfg(not(feature = "cuda"))]
pub trait HeadType<const F: usize, const Z: usize>: BuildOnDevice<Cpu, f32, Built: Head<F, Z, Cpu>> {}
#[cfg(not(feature = "cuda"))]
impl<T, const F: usize, const Z: usize> HeadType<F, Z> for T where T: BuildOnDevice<Cpu, f32, Built: Head<F, Z, Cpu>> {}

/// A head type that builds on every device this binary supports.
#[cfg(feature = "cuda")]
pub trait HeadType<const F: usize, const Z: usize>:
    BuildOnDevice<Cpu, f32, Built: Head<F, Z, Cpu>> + BuildOnDevice<Cuda, f32, Built: Head<F, Z, Cuda>>
{
}
#[cfg(feature = "cuda")]
impl<T, const F: usize, const Z: usize> HeadType<F, Z> for T where
    T: BuildOnDevice<Cpu, f32, Built: Head<F, Z, Cpu>> + BuildOnDevice<Cuda, f32, Built: Head<F, Z, Cuda>>
{
}

/// Features of N images [N, C, H, W] (host buffer; `shape` = (C, H, W)) through `backbone` in
/// evaluation mode: [N, F].
pub fn features<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize>(dev: &D, backbone: &B, images: Vec<f32>, (c, h, w): (usize, usize, usize)) -> crate::Result<Vec<f32>> {
    debug_assert_eq!(c, C);
    let n = images.len() / (c * h * w);
    let x: Images<C, D> = dev.try_tensor_from_vec(images, (n, Const, h, w)).map_err(|e| crate::Error::device("copying images to the device", e))?;
    let f = backbone.try_forward(x).map_err(|e| crate::Error::device("a forward pass", e))?;
    Ok(f.as_vec())
}
