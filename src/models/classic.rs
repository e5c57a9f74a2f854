//! The other CNN families users compare: VGG (stacked 3x3, widths doubling as the resolution
//! halves), a small AlexNet (large kernels, ReLU, overlapping max-pools), and MobileNet
//! (depthwise + pointwise). Sized for 32x32 inputs; all end in global average pooling.

use dfdx::nn::builders::AvgPoolGlobal;

use crate::nn::builders::{BatchNormReLU2D, Conv2D, DepthwiseConv2D, MaxPool2D, ReLU};

/// 3x3 convolution, BatchNorm, ReLU.
pub type ConvBnReLU<const I: usize, const O: usize, const S: usize = 1> = (Conv2D<I, O, 3, S, 1>, BatchNormReLU2D<O>);

/// VGG-11 (configuration A, with BatchNorm) for 32x32: 64, M, 128, M, 256x2, M, 512x2, M,
/// 512x2, M; 512 features.
pub type Vgg11Cifar = (
    (ConvBnReLU<3, 64>, MaxPool2D<2>),
    (ConvBnReLU<64, 128>, MaxPool2D<2>),
    (ConvBnReLU<128, 256>, ConvBnReLU<256, 256>, MaxPool2D<2>),
    (ConvBnReLU<256, 512>, ConvBnReLU<512, 512>, MaxPool2D<2>),
    (ConvBnReLU<512, 512>, ConvBnReLU<512, 512>, MaxPool2D<2>),
    AvgPoolGlobal,
);

/// A small AlexNet (Krizhevsky et al. 2012) for 32x32: 5x5 then 3x3 convolutions with ReLU and
/// overlapping 3x3 stride-2 max-pools, no BatchNorm; 256 features.
pub type AlexNetCifar = (
    (Conv2D<3, 64, 5, 1, 2>, ReLU, MaxPool2D<3, 2, 1>),
    (Conv2D<64, 192, 5, 1, 2>, ReLU, MaxPool2D<3, 2, 1>),
    (Conv2D<192, 384, 3, 1, 1>, ReLU, Conv2D<384, 256, 3, 1, 1>, ReLU, Conv2D<256, 256, 3, 1, 1>, ReLU),
    MaxPool2D<3, 2, 1>,
    AvgPoolGlobal,
);

/// Depthwise-separable block (MobileNet v1): depthwise 3x3 (stride S), BN, ReLU, then
/// pointwise 1x1 to O, BN, ReLU.
pub type Separable<const I: usize, const O: usize, const S: usize> =
    (DepthwiseConv2D<I, 3, S, 1>, BatchNormReLU2D<I>, Conv2D<I, O, 1>, BatchNormReLU2D<O>);

/// MobileNet v1 for 32x32 at width multiplier 1.0: 32, 64, 128, 128, 256, 256, 512 x 6, 1024.
pub type MobileNetCifar = (
    (ConvBnReLU<3, 32>, Separable<32, 64, 1>, Separable<64, 128, 2>, Separable<128, 128, 1>),
    (Separable<128, 256, 2>, Separable<256, 256, 1>, Separable<256, 512, 2>),
    (Separable<512, 512, 1>, Separable<512, 512, 1>, Separable<512, 512, 1>, Separable<512, 512, 1>, Separable<512, 512, 1>),
    (Separable<512, 1024, 2>, Separable<1024, 1024, 1>),
    AvgPoolGlobal,
);

/// MobileNet v1 at width multiplier 0.5 (every width halved; stable Rust cannot scale const
/// widths in a type, so each multiplier is its own alias).
pub type MobileNetCifarHalf = (
    (ConvBnReLU<3, 16>, Separable<16, 32, 1>, Separable<32, 64, 2>, Separable<64, 64, 1>),
    (Separable<64, 128, 2>, Separable<128, 128, 1>, Separable<128, 256, 2>),
    (Separable<256, 256, 1>, Separable<256, 256, 1>, Separable<256, 256, 1>, Separable<256, 256, 1>, Separable<256, 256, 1>),
    (Separable<256, 512, 2>, Separable<512, 512, 1>),
    AvgPoolGlobal,
);
