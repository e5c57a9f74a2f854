//! Layers the project owns on top of dfdx: convolution, pooling and flatten, which dfdx 0.13
//! has only behind its nightly feature, and faster batch norm and ReLU. Each op: the API in `mod.rs`, the kernel beside it.

pub mod batchnorm2d;
pub mod conv2d;
pub mod flatten;
pub mod fused;
pub mod gemm;
pub mod pool2d;
pub mod relu;
pub mod residual;
#[cfg(test)]
pub mod gradcheck;
pub mod tape;
pub mod windows;

pub use batchnorm2d::{BatchNorm2D, BatchNormReLU2D};

/// A device every model of the registry runs on: dfdx's ops plus the project's layer kernels.
/// The CPU always; `dfdx::tensor::Cuda` with the `cuda` feature.
pub trait NnDevice:
    dfdx::tensor_ops::Device<f32>
    + conv2d::Conv2DKernel<f32>
    + pool2d::Pool2DKernel<f32>
    + batchnorm2d::BatchNorm2DKernel<f32>
    + residual::ResidualKernel<f32>
    + crate::dist::ops::HostGrad
    + dfdx::tensor::TensorFromVec<usize>
    + dfdx::tensor::TensorToArray<(), f32, Array = f32>
    + dfdx::nn::DeviceBuildExt
{
}

impl<D> NnDevice for D where
    D: dfdx::tensor_ops::Device<f32>
        + conv2d::Conv2DKernel<f32>
        + pool2d::Pool2DKernel<f32>
        + batchnorm2d::BatchNorm2DKernel<f32>
        + residual::ResidualKernel<f32>
        + crate::dist::ops::HostGrad
        + dfdx::tensor::TensorFromVec<usize>
        + dfdx::tensor::TensorToArray<(), f32, Array = f32>
        + dfdx::nn::DeviceBuildExt
{
}
pub use conv2d::{Conv2D, GroupedConv2D};
pub use flatten::Flatten2D;
pub use pool2d::{AvgPool2D, MaxPool2D};
pub use relu::ReLU;
pub use residual::{GeneralizedResidualReLU, ResidualReLU};

/// Builder types, used with `dev.build_module::<Model, f32>()`, in dfdx's style.
pub mod builders {
    pub use super::batchnorm2d::builder::{BatchNorm2D, BatchNormReLU2D};
    pub use super::conv2d::builder::{Conv2D, DepthwiseConv2D, GroupedConv2D};
    pub use super::flatten::Flatten2D;
    pub use super::pool2d::{AvgPool2D, MaxPool2D};
    pub use super::relu::ReLU;
    pub use super::residual::{GeneralizedResidualReLU, ResidualReLU};
}
