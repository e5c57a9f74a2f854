//! `ssl models` and `ssl models summary` through the real binary.

mod common;

use common::*;

#[test]
fn lists_models_and_summarises_one() {
    let out = ssl_ok(&["models"]).stdout;
    assert!(out.contains("resnet18_cifar") && out.contains("11,168,832") && out.contains("555,417,600"), "{out}");
    assert!(out.contains("small_fmnist") && out.contains("676,192") && out.contains("66,056,704"), "{out}");
    let out = ssl_ok(&["models", "summary", "small_fmnist"]).stdout;
    assert!(out.contains("Conv2D 32->64 3x3 s2 p1") && out.contains("64x14x14"), "{out}");
    assert!(out.contains("total: 676,192 parameters, 66,056,704 multiply-adds"), "{out}");
    let out = ssl_ok(&["models", "summary", "resnet18_cifar", "--input", "64x64x3"]).stdout;
    assert!(out.contains("2,221,670,400 multiply-adds"), "four times the 32x32 cost: {out}");
}

#[test]
fn bad_models_and_inputs_get_one_clear_line() {
    ssl_fails(&["models", "summary", "vgg99"], &["unknown model 'vgg99'", "resnet18_cifar"]);
    ssl_fails(&["models", "summary", "small_fmnist", "--input", "28x28x3"], &["small_fmnist", "expects 1 channels, got 3"]);
    ssl_fails(&["models", "summary", "small_fmnist", "--input", "28x28"], &["--input", "HxWxC"]);
}
