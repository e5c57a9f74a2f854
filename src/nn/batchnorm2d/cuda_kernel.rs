//! Batch normalisation for devices other than the CPU (CUDA), written with dfdx's
//! device-generic ops (per-channel means over batch, height and width; broadcasts). dfdx's
//! autodiff gives the backward; the tests check it against [`super::cpu_kernel`] on the CPU.
//! Running statistics move in place (`axpy`), so the layer's tensors keep their ids.

use dfdx::prelude::*;

use super::BatchNorm2DImpl;

type Map<B, const C: usize, H, W, E, D, T = NoneTape> = Tensor<(B, Const<C>, H, W), E, D, T>;

/// `y * scale + bias`, then ReLU when `RELU`, all broadcast per channel.
fn affine<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    layer: &BatchNorm2DImpl<C, RELU, E, D>,
    y: Map<B, C, H, W, E, D, T>,
) -> Result<Map<B, C, H, W, E, D, T>, D::Err> {
    let shape = *y.shape();
    let scale = layer.scale.retaped::<T>().try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
    let bias = layer.bias.retaped::<T>().try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
    let y = y.try_mul(scale)?.try_add(bias)?;
    if RELU {
        y.try_relu()
    } else {
        Ok(y)
    }
}

/// Evaluation: `(x - running_mean) / sqrt(running_var + eps)`, then the affine map.
pub fn eval<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool, E: Dtype, D: Device<E>>(
    layer: &BatchNorm2DImpl<C, RELU, E, D>,
    x: Map<B, C, H, W, E, D>,
) -> Result<Map<B, C, H, W, E, D>, D::Err> {
    let shape = *x.shape();
    let eps = E::from_f64(layer.epsilon).expect("float type");
    let mean = layer.running_mean.clone().try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
    let std = layer.running_var.clone().try_add(eps)?.try_sqrt()?.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
    affine(layer, x.try_sub(mean)?.try_div(std)?)
}

/// Training: normalises with the batch mean and biased variance; the running mean and
/// variance move by `momentum` towards the batch mean and the unbiased variance (PyTorch).
pub fn train<B: Dim, const C: usize, H: Dim, W: Dim, const RELU: bool, E: Dtype, D: Device<E>>(
    layer: &mut BatchNorm2DImpl<C, RELU, E, D>,
    x: Map<B, C, H, W, E, D, OwnedTape<E, D>>,
) -> Result<Map<B, C, H, W, E, D, OwnedTape<E, D>>, D::Err> {
    let shape = *x.shape();
    let m = (shape.0.size() * shape.2.size() * shape.3.size()) as f64;
    let eps = E::from_f64(layer.epsilon).expect("float type");
    let mean = x.retaped::<OwnedTape<E, D>>().try_mean::<Rank1<C>, Axes3<0, 2, 3>>()?;
    let mom = layer.momentum;
    layer.running_mean.try_axpy(1.0 - mom, &mean, mom)?;
    let centered = x.try_sub(mean.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?)?;
    let var = centered.retaped::<OwnedTape<E, D>>().try_square()?.try_mean::<Rank1<C>, Axes3<0, 2, 3>>()?;
    let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
    layer.running_var.try_axpy(1.0 - mom, &var, mom * unbias)?;
    let std = var.try_add(eps)?.try_sqrt()?.try_broadcast_like::<_, Axes3<0, 2, 3>>(&shape)?;
    let y = centered.try_div(std)?;
    let layer: &BatchNorm2DImpl<C, RELU, E, D> = layer;
    affine(layer, y)
}
