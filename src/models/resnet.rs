//! ResNets (He et al. 2016) built from the project's `Conv2D` and `BatchNorm2D`:
//! BasicBlocks with a 1x1 projection shortcut where the shape changes, global average pooling
//! at the end. Inputs are NCHW `(B, Const<C>, H, W)`; features are `(B, Const<WIDTH>)`.

use dfdx::nn::builders::{AvgPoolGlobal, GeneralizedResidual, Residual};

use crate::nn::builders::{BatchNorm2D, BatchNormReLU2D, Conv2D, ReLU};

/// Two 3x3 convolutions with BatchNorm (the first with its ReLU fused) and an identity
/// shortcut, then ReLU.
pub type BasicBlock<const C: usize> = (
    Residual<(Conv2D<C, C, 3, 1, 1>, BatchNormReLU2D<C>, Conv2D<C, C, 3, 1, 1>, BatchNorm2D<C>)>,
    ReLU,
);

/// A BasicBlock that changes width and halves the resolution: its shortcut is a strided 1x1
/// convolution with BatchNorm.
pub type DownBlock<const I: usize, const O: usize> = (
    GeneralizedResidual<
        (Conv2D<I, O, 3, 2, 1>, BatchNormReLU2D<O>, Conv2D<O, O, 3, 1, 1>, BatchNorm2D<O>),
        (Conv2D<I, O, 1, 2, 0>, BatchNorm2D<O>),
    >,
    ReLU,
);

/// The CIFAR stem: 3x3 stride 1 convolution, BatchNorm, ReLU, no max-pool.
pub type CifarStem<const I: usize, const O: usize> = (Conv2D<I, O, 3, 1, 1>, BatchNormReLU2D<O>);

/// ResNet-18 with the CIFAR stem (32x32x3 input, 512 features).
pub type ResNet18Cifar = (
    CifarStem<3, 64>,
    (BasicBlock<64>, BasicBlock<64>),
    (DownBlock<64, 128>, BasicBlock<128>),
    (DownBlock<128, 256>, BasicBlock<256>),
    (DownBlock<256, 512>, BasicBlock<512>),
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
