//! `ssl augment preview` through the real binary.

mod common;

use common::*;

#[test]
fn preview_with_default_and_recipe_augmentations() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_idx_dataset(&src, 12, 4, false);
    let h5 = t.path().join("d.h5");
    ssl_ok(&["data", "import", "idx", s(&src), s(&h5)]);
    let png = t.path().join("views.png");
    ssl_ok(&["augment", "preview", s(&h5), "--out", s(&png), "--count", "3", "--pairs", "2"]);
    let img = image::open(&png).unwrap();
    assert!(img.width() > 5 * 6 && img.height() > 3 * 5);

    let recipe = t.path().join("r.ron");
    std::fs::write(&recipe, "(name: \"x\", lr: (base: 0.1), augment: (strength: 1.0, interpolation: Bicubic, blur_p: 0.0, size: Some(16)))").unwrap();
    let png2 = t.path().join("views2.png");
    ssl_ok(&["augment", "preview", s(&h5), "--recipe", s(&recipe), "--out", s(&png2), "--count", "2"]);

    std::fs::write(&recipe, "(augment: (strenght: 1.0))").unwrap();
    ssl_fails(&["augment", "preview", s(&h5), "--recipe", s(&recipe), "--out", s(&png2)], &["r.ron", "strenght"]);
    std::fs::write(&recipe, "(augment: (flip_p: 2.0))").unwrap();
    ssl_fails(&["augment", "preview", s(&h5), "--recipe", s(&recipe), "--out", s(&png2)], &["augment.flip_p", "probability"]);
    std::fs::write(&recipe, "(augment: (flip_p: ").unwrap();
    ssl_fails(&["augment", "preview", s(&h5), "--recipe", s(&recipe), "--out", s(&png2)], &["r.ron"]);
    // The shipped recipe works as it is.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/simclr_resnet.ron");
    ssl_ok(&["augment", "preview", s(&h5), "--recipe", shipped, "--out", s(&png2), "--count", "2"]);
}
