//! ResNets (He et al. 2016) built from the project's `Conv2D` and `BatchNorm2D`:
//! BasicBlocks with a 1x1 projection shortcut where the shape changes, global average pooling
//! at the end. Inputs are NCHW `(B, Const<C>, H, W)`; features are `(B, Const<WIDTH>)`.

use dfdx::nn::builders::AvgPoolGlobal;

use crate::nn::builders::{BatchNorm2D, BatchNormReLU2D, Conv2D, GeneralizedResidualReLU, MaxPool2D, ResidualReLU};

/// Two 3x3 convolutions with BatchNorm (the first with its ReLU fused) and an identity
/// shortcut, then ReLU (fused with the addition).
pub type BasicBlock<const C: usize> =
    ResidualReLU<(Conv2D<C, C, 3, 1, 1>, BatchNormReLU2D<C>, Conv2D<C, C, 3, 1, 1>, BatchNorm2D<C>)>;

/// A BasicBlock that changes width and halves the resolution: its shortcut is a strided 1x1
/// convolution with BatchNorm.
pub type DownBlock<const I: usize, const O: usize> = GeneralizedResidualReLU<
    (Conv2D<I, O, 3, 2, 1>, BatchNormReLU2D<O>, Conv2D<O, O, 3, 1, 1>, BatchNorm2D<O>),
    (Conv2D<I, O, 1, 2, 0>, BatchNorm2D<O>),
>;

/// The CIFAR stem: 3x3 stride 1 convolution, BatchNorm, ReLU, no max-pool.
pub type CifarStem<const I: usize, const O: usize> = (Conv2D<I, O, 3, 1, 1>, BatchNormReLU2D<O>);

/// The ImageNet stem: 7x7 stride-2 convolution, BatchNorm, ReLU, 3x3 stride-2 max-pool (a
/// quarter of the resolution), for inputs such as 96x96 STL-10.
pub type ImagenetStem<const I: usize, const O: usize> = (Conv2D<I, O, 7, 2, 3>, BatchNormReLU2D<O>, MaxPool2D<3, 2, 1>);

/// Bottleneck (ResNet-50): 1x1 down to M, 3x3 at M, 1x1 up to O = 4M, identity shortcut.
pub type Bottleneck<const O: usize, const M: usize> =
    ResidualReLU<(Conv2D<O, M, 1>, BatchNormReLU2D<M>, Conv2D<M, M, 3, 1, 1>, BatchNormReLU2D<M>, Conv2D<M, O, 1>, BatchNorm2D<O>)>;

/// A Bottleneck that changes width (and resolution when S = 2): projection shortcut.
pub type DownBottleneck<const I: usize, const M: usize, const O: usize, const S: usize> = GeneralizedResidualReLU<
    (Conv2D<I, M, 1>, BatchNormReLU2D<M>, Conv2D<M, M, 3, S, 1>, BatchNormReLU2D<M>, Conv2D<M, O, 1>, BatchNorm2D<O>),
    (Conv2D<I, O, 1, S, 0>, BatchNorm2D<O>),
>;

/// ResNet-18 with the CIFAR stem (32x32x3 input, 512 features).
pub type ResNet18Cifar = (
    CifarStem<3, 64>,
    (BasicBlock<64>, BasicBlock<64>),
    (DownBlock<64, 128>, BasicBlock<128>),
    (DownBlock<128, 256>, BasicBlock<256>),
    (DownBlock<256, 512>, BasicBlock<512>),
    AvgPoolGlobal,
);

/// ResNet-18 with the ImageNet stem, for larger inputs (96x96x3 STL-10; 512 features).
pub type ResNet18Imagenet = (
    ImagenetStem<3, 64>,
    (BasicBlock<64>, BasicBlock<64>),
    (DownBlock<64, 128>, BasicBlock<128>),
    (DownBlock<128, 256>, BasicBlock<256>),
    (DownBlock<256, 512>, BasicBlock<512>),
    AvgPoolGlobal,
);

/// ResNet-34 with the CIFAR stem: 3, 4, 6, 3 BasicBlocks (512 features).
pub type ResNet34Cifar = (
    CifarStem<3, 64>,
    (BasicBlock<64>, BasicBlock<64>, BasicBlock<64>),
    (DownBlock<64, 128>, BasicBlock<128>, BasicBlock<128>, BasicBlock<128>),
    (DownBlock<128, 256>, BasicBlock<256>, BasicBlock<256>, BasicBlock<256>, BasicBlock<256>, BasicBlock<256>),
    (DownBlock<256, 512>, BasicBlock<512>, BasicBlock<512>),
    AvgPoolGlobal,
);

/// ResNet-50 with the CIFAR stem: 3, 4, 6, 3 Bottlenecks (2048 features).
pub type ResNet50Cifar = (
    CifarStem<3, 64>,
    (DownBottleneck<64, 64, 256, 1>, Bottleneck<256, 64>, Bottleneck<256, 64>),
    (DownBottleneck<256, 128, 512, 2>, Bottleneck<512, 128>, Bottleneck<512, 128>, Bottleneck<512, 128>),
    (
        DownBottleneck<512, 256, 1024, 2>,
        Bottleneck<1024, 256>,
        Bottleneck<1024, 256>,
        Bottleneck<1024, 256>,
        Bottleneck<1024, 256>,
        Bottleneck<1024, 256>,
    ),
    (DownBottleneck<1024, 512, 2048, 2>, Bottleneck<2048, 512>, Bottleneck<2048, 512>),
    AvgPoolGlobal,
);

/// A small ResNet for 28x28x1 (Fashion-MNIST): stem 32, one block at 32, two at 64, two at
/// 128, 128 features.
pub type SmallFmnist = (
    CifarStem<1, 32>,
    BasicBlock<32>,
    (DownBlock<32, 64>, BasicBlock<64>),
    (DownBlock<64, 128>, BasicBlock<128>),
    AvgPoolGlobal,
);

/// `SmallFmnist` with a 1x1 feature expansion to 512 channels (BatchNorm, ReLU) before the
/// global average pool, as MobileNetV2 widens its last layer before pooling: pooling after the
/// nonlinearity gives 512 features instead of 128 for about 5% more multiply-adds, so a linear
/// probe on the frozen features is no longer held back by their width.
pub type SmallFmnistE512 = (
    CifarStem<1, 32>,
    BasicBlock<32>,
    (DownBlock<32, 64>, BasicBlock<64>),
    (DownBlock<64, 128>, BasicBlock<128>),
    (Conv2D<128, 512, 1>, BatchNormReLU2D<512>),
    AvgPoolGlobal,
);

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::prelude::*;

    #[test]
    fn parameter_counts_match_independent_counts() {
        let dev: Cpu = Default::default();
        // Conv weights + BatchNorm scale and shift (running statistics are not trainable).
        assert_eq!(dev.build_module::<SmallFmnist, f32>().num_trainable_params(), 676_192);
        assert_eq!(dev.build_module::<ResNet18Cifar, f32>().num_trainable_params(), 11_168_832);
        let with_head = dev.build_module::<(ResNet18Cifar, dfdx::nn::builders::Linear<512, 10>), f32>();
        assert_eq!(with_head.num_trainable_params(), 11_173_962);
    }

    #[test]
    fn forward_gives_feature_vectors() {
        let dev: Cpu = Default::default();
        let m = dev.build_module::<SmallFmnist, f32>();
        let x: Tensor<(usize, Const<1>, usize, usize), f32, _> = dev.sample_normal_like(&(3, Const, 28, 28));
        let y = m.forward(x);
        assert_eq!(y.shape(), &(3, Const::<128>));
        assert!(y.as_vec().iter().all(|v| v.is_finite()));
    }
}
