use super::*;
use crate::nn::builders;
use crate::nn::gradcheck::{assert_grad_close, values};

type X4<E, const C: usize, T = NoneTape> = Tensor<(usize, Const<C>, usize, usize), E, Cpu, T>;

#[test]
fn forward_matches_hand_computed_cases() {
    let dev: Cpu = Default::default();
    let mut conv = dev.build_module::<builders::Conv2D<1, 1, 2>, f32>();
    conv.weight.copy_from(&[1.0, 1.0, 1.0, 1.0]);
    let x: X4<f32, 1> = dev.tensor_from_vec((1..=9).map(|v| v as f32).collect(), (1, Const, 3, 3));
    assert_eq!(conv.forward(x.clone()).as_vec(), vec![12.0, 16.0, 24.0, 28.0]);
    // Padding 1, stride 2: the corners see one, two or four pixels.
    let mut conv = dev.build_module::<builders::Conv2D<1, 1, 2, 2, 1>, f32>();
    conv.weight.copy_from(&[1.0, 2.0, 3.0, 4.0]);
    let y = conv.forward(x);
    assert_eq!(y.shape(), &(1, Const::<1>, 2, 2));
    assert_eq!(y.as_vec(), vec![4.0, 3.0 * 2.0 + 4.0 * 3.0, 2.0 * 4.0 + 4.0 * 7.0, 5.0 + 2.0 * 6.0 + 3.0 * 8.0 + 4.0 * 9.0]);
}

/// Loss = sum(conv(x) * r) for a fixed random r; checks dL/dx and dL/dw against central
/// differences in f64.
macro_rules! conv_grad_check {
    ($builder:ty, $cin:expr, $batch:expr, $h:expr, $w:expr) => {{
        let dev: Cpu = Default::default();
        let conv = dev.build_module::<$builder, f64>();
        let shape = ($batch, Const::<$cin>, $h, $w);
        let xv = values($batch * $cin * $h * $w, 1);
        let x = dev.tensor_from_vec(xv.clone(), shape);
        let y0 = conv.forward(x.clone());
        let r = values(y0.shape().num_elements(), 2);
        let rt = dev.tensor_from_vec(r.clone(), *y0.shape());
        type Built = <$builder as BuildOnDevice<Cpu, f64>>::Built;
        let loss_of = |c: &Built, xv: &[f64]| -> f64 {
            let y = c.forward(dev.tensor_from_vec(xv.to_vec(), shape));
            y.as_vec().iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        let y = conv.forward(x.leaky_trace());
        let g = (y * rt).sum().backward();
        let what = stringify!($builder);
        assert_grad_close(&format!("{what} dx"), &g.get(&x).as_vec(), &xv, |v| loss_of(&conv, v), 80);
        let wv = conv.weight.as_vec();
        assert_grad_close(
            &format!("{what} dw"),
            &g.get(&conv.weight).as_vec(),
            &wv,
            |v| {
                let mut c = conv.clone();
                c.weight.copy_from(v);
                loss_of(&c, &xv)
            },
            80,
        );
    }};
}

#[test]
fn gradients_match_finite_differences() {
    // ResNet's shapes: 3x3 stride 1 pad 1; 3x3 stride 2 pad 1; 1x1 stride 2 projection.
    conv_grad_check!(builders::Conv2D<3, 4, 3, 1, 1>, 3, 2, 6, 5);
    conv_grad_check!(builders::Conv2D<2, 3, 3, 2, 1>, 2, 3, 7, 7);
    conv_grad_check!(builders::Conv2D<4, 6, 1, 2, 0>, 4, 2, 5, 6);
    // The 7x7 stride-2 ImageNet stem.
    conv_grad_check!(builders::Conv2D<1, 2, 7, 2, 3>, 1, 2, 9, 9);
    // Dilation, groups, depthwise.
    conv_grad_check!(builders::Conv2D<2, 2, 3, 1, 2, 2>, 2, 2, 6, 6);
    conv_grad_check!(builders::GroupedConv2D<4, 6, 3, 1, 1, 1, 2>, 4, 2, 5, 5);
    conv_grad_check!(builders::DepthwiseConv2D<3, 3, 2, 1>, 3, 2, 6, 6);
    conv_grad_check!(builders::DepthwiseConv2D<4, 3, 1, 1>, 4, 3, 5, 7);
    // Padding 0 and 2 with odd sizes.
    conv_grad_check!(builders::Conv2D<2, 3, 3, 1, 0>, 2, 2, 7, 6);
    conv_grad_check!(builders::Conv2D<2, 3, 3, 1, 2>, 2, 2, 5, 3);
    // Many small images: multi-image chunks and several reduction tasks.
    conv_grad_check!(builders::Conv2D<2, 3, 3, 1, 1>, 2, 70, 3, 3);
    // Same-size convolutions (the shifted-plane path): 1x1, a 5x5 kernel larger than the
    // image, a one-row image.
    conv_grad_check!(builders::Conv2D<2, 3, 1, 1, 0>, 2, 2, 4, 3);
    conv_grad_check!(builders::Conv2D<2, 2, 5, 1, 2>, 2, 2, 2, 3);
    conv_grad_check!(builders::Conv2D<2, 2, 3, 1, 1>, 2, 3, 1, 4);
    conv_grad_check!(builders::Conv2D<2, 2, 3, 1, 1>, 2, 3, 4, 1);
    // Even kernels with dilation 2, and a dilation wider than the image.
    conv_grad_check!(builders::Conv2D<2, 2, 2, 1, 1, 2>, 2, 2, 4, 5);
    conv_grad_check!(builders::Conv2D<1, 2, 4, 1, 3, 2>, 1, 2, 5, 4);
    conv_grad_check!(builders::Conv2D<1, 2, 3, 1, 3, 3>, 1, 2, 2, 2);
}

/// Runs forward and backward of a small conv in a pool of `threads` threads.
fn run_in_pool(threads: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let dev = Cpu::seed_from_u64(3);
        let conv = dev.build_module::<builders::Conv2D<8, 16, 3, 1, 1>, f32>();
        let x: X4<f32, 8> = dev.sample_uniform_like(&(64, Const, 8, 8));
        let y = conv.forward(x.leaky_trace());
        let out = y.as_vec();
        let g = y.square().sum().backward();
        (out, g.get(&x).as_vec(), g.get(&conv.weight).as_vec())
    })
}

#[test]
fn results_do_not_depend_on_thread_count() {
    assert_eq!(run_in_pool(1), run_in_pool(2));
    assert_eq!(run_in_pool(2), run_in_pool(3));
}

#[test]
fn works_as_a_dfdx_module() {
    use dfdx::optim::{Momentum, Optimizer, Sgd, SgdConfig};
    type Block = (
        builders::Conv2D<2, 4, 3, 1, 1>,
        dfdx::nn::builders::BatchNorm2D<4>,
        dfdx::nn::builders::ReLU,
        dfdx::nn::builders::Residual<(builders::Conv2D<4, 4, 3, 1, 1>, dfdx::nn::builders::Bias2D<4>)>,
    );
    let dev = Cpu::seed_from_u64(0);
    let mut model = dev.build_module::<Block, f32>();
    assert_eq!(model.num_trainable_params(), 2 * 4 * 9 + 8 + 4 * 4 * 9 + 4);
    let x: X4<f32, 2> = dev.sample_normal_like(&(4, Const, 6, 6));
    let mut opt = Sgd::new(&model, SgdConfig { lr: 0.1, momentum: Some(Momentum::Classic(0.9)), weight_decay: None });
    let mut grads = model.alloc_grads();
    let before = model.0.weight.as_vec();
    let mut losses = Vec::new();
    for _ in 0..5 {
        let y = model.forward_mut(x.trace(grads));
        let loss = y.square().mean();
        losses.push(loss.array());
        grads = loss.backward();
        opt.update(&mut model, &grads).unwrap();
        model.zero_grads(&mut grads);
    }
    assert_ne!(before, model.0.weight.as_vec(), "the optimizer moves the conv weights");
    assert!(losses[4] < losses[0], "loss falls: {losses:?}");

    // Safetensors round trip into a fresh model.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    model.save_safetensors(&path).unwrap();
    let mut other = dev.build_module::<Block, f32>();
    other.load_safetensors(&path).unwrap();
    assert_eq!(other.0.weight.as_vec(), model.0.weight.as_vec());
    assert_eq!(other.forward(x.clone()).as_vec(), model.forward(x).as_vec());
}

/// The device path (dfdx's generic ops, what CUDA runs) computes what the CPU kernel does:
/// output, input gradient and weight gradient, in f64.
macro_rules! device_path_matches {
    ($builder:ty, $cin:expr, $batch:expr, $h:expr, $w:expr) => {{
        use crate::nn::gradcheck::assert_same;
        let dev = Cpu::seed_from_u64(9);
        let conv = dev.build_module::<$builder, f64>();
        type Built = <$builder as BuildOnDevice<Cpu, f64>>::Built;
        let x: X4<f64, $cin> = dev.tensor_from_vec(values($batch * $cin * $h * $w, 3), ($batch, Const, $h, $w));
        let geom = Built::geometry($batch, $h, $w).unwrap();
        let y_cpu = conv.forward(x.leaky_trace());
        let r = dev.tensor_from_vec(values(y_cpu.shape().num_elements(), 4), *y_cpu.shape());
        let y_dev = generic_conv2d(x.leaky_trace(), &conv.weight, geom).unwrap();
        let what = stringify!($builder);
        assert_same(&format!("{what} y"), &y_cpu.as_vec(), &y_dev.as_vec());
        let g_cpu = (y_cpu * r.clone()).sum().backward();
        let g_dev = (y_dev * r).sum().backward();
        assert_same(&format!("{what} dx"), &g_cpu.get(&x).as_vec(), &g_dev.get(&x).as_vec());
        assert_same(&format!("{what} dw"), &g_cpu.get(&conv.weight).as_vec(), &g_dev.get(&conv.weight).as_vec());
    }};
}

#[test]
fn device_path_matches_the_cpu_kernel() {
    device_path_matches!(builders::Conv2D<3, 4, 3, 1, 1>, 3, 2, 6, 5);
    device_path_matches!(builders::Conv2D<2, 3, 3, 2, 1>, 2, 3, 7, 7);
    device_path_matches!(builders::Conv2D<2, 3, 3, 2, 1>, 2, 2, 8, 6);
    device_path_matches!(builders::Conv2D<4, 6, 1, 2, 0>, 4, 2, 5, 6);
    device_path_matches!(builders::Conv2D<1, 2, 7, 2, 3>, 1, 2, 9, 9);
    device_path_matches!(builders::Conv2D<2, 2, 3, 1, 2, 2>, 2, 2, 6, 6);
    device_path_matches!(builders::GroupedConv2D<4, 6, 3, 1, 1, 1, 2>, 4, 2, 5, 5);
    device_path_matches!(builders::DepthwiseConv2D<3, 3, 2, 1>, 3, 2, 6, 6);
    device_path_matches!(builders::DepthwiseConv2D<4, 3, 1, 1>, 4, 3, 5, 7);
    device_path_matches!(builders::Conv2D<2, 3, 3, 1, 0>, 2, 2, 7, 6);
    device_path_matches!(builders::Conv2D<2, 3, 3, 1, 2>, 2, 2, 5, 3);
}

#[test]
fn a_written_input_gradient_is_the_one_added_into_zeros() {
    // The direct kernels (3x3, 16 channels), im2col + GEMM (a 1x1 projection at stride 2), the
    // depthwise kernel: `Store::Write` over stale values (NaN) gives what `Store::Add` gives into
    // zeros, to the bit.
    let cases = [(2, 16, 16, 8, 8, 3, 1, 1, 1), (2, 4, 6, 7, 6, 1, 2, 0, 1), (2, 3, 3, 6, 5, 3, 1, 1, 3)];
    for (b, c, o, h, w, k, s, p, groups) in cases {
        let g = cpu_kernel::ConvGeom::new(b, c, h, w, o, k, s, p, 1, groups).unwrap();
        let f32s = |n: usize, seed: u64| values(n, seed).into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        let (x, wt, dy) = (f32s(b * c * h * w, 1), f32s(o * c / groups * k * k, 2), f32s(b * o * g.oh * g.ow, 3));
        let (mut written, mut added) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
        cpu_kernel::backward(&g, &x, &wt, &dy, Some(&mut written), Store::Write, &mut vec![0.0; wt.len()]);
        cpu_kernel::backward(&g, &x, &wt, &dy, Some(&mut added), Store::Add, &mut vec![0.0; wt.len()]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&written), bits(&added), "{g:?}");
    }
}
