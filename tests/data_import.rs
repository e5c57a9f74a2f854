//! `ssl data import | info | preview` through the real binary, on generated fixtures and on the
//! real Fashion-MNIST files.

mod common;

use std::path::Path;

use common::*;
use ssl::data::Store;

fn info_json(file: &Path) -> serde_json::Value {
    serde_json::from_str(&ssl_ok(&["data", "info", s(file), "--json"]).stdout).unwrap()
}

#[test]
fn idx_raw_and_gz_import_with_info_and_preview() {
    let t = tempfile::tempdir().unwrap();
    for gz in [false, true] {
        let src = t.path().join(format!("src{gz}"));
        write_idx_dataset(&src, 23, 7, gz);
        let out = t.path().join(format!("d{gz}.h5"));
        ssl_ok(&["data", "import", "idx", s(&src), s(&out)]);
        let info = info_json(&out);
        assert_eq!(info["source_format"], "idx");
        let splits = info["splits"].as_array().unwrap();
        let train = splits.iter().find(|x| x["name"] == "train").unwrap();
        assert_eq!(train["len"], 23);
        assert_eq!(train["shape"]["height"], 6);
        assert_eq!(train["shape"]["width"], 5);
        assert_eq!(train["class_counts"][3], 2);
        let split = Store::open(&out).unwrap().load_split("train").unwrap();
        assert_eq!(split.image(1)[0], 30);
        assert_eq!(split.labels.as_ref().unwrap()[12], 2);
        let text = ssl_ok(&["data", "info", s(&out)]).stdout;
        assert!(text.contains("split train: 23 images of 6x5x1"), "{text}");
        let png = t.path().join(format!("p{gz}.png"));
        ssl_ok(&["data", "preview", s(&out), "--out", s(&png), "--count", "9"]);
        let img = image::open(&png).unwrap();
        assert!(img.width() > 8 * 5 && img.height() > 5);
    }
}

#[test]
fn real_fashion_mnist_idx() {
    let src = Path::new("/usr/share/datasets/fashion-mnist");
    assert!(src.is_dir(), "Fashion-MNIST is missing: run scripts/setup.sh (apt: dataset-fashion-mnist)");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("fmnist.h5");
    ssl_ok(&["data", "import", "idx", s(src), s(&out)]);
    let store = Store::open(&out).unwrap();
    let info = store.info().unwrap();
    assert_eq!(info.classes[0], "T-shirt/top");
    let train = info.splits.iter().find(|x| x.name == "train").unwrap();
    let test = info.splits.iter().find(|x| x.name == "test").unwrap();
    assert_eq!((train.len, test.len), (60000, 10000));
    assert_eq!(train.class_counts.as_ref().unwrap(), &vec![6000; 10]);
    // Fashion-MNIST's well-known pixel statistics.
    assert!((train.mean[0] - 0.2860).abs() < 1e-3 && (train.std[0] - 0.3530).abs() < 1e-3);
}

fn cifar_record(label_bytes: &[u8], fill: u8) -> Vec<u8> {
    let mut r = label_bytes.to_vec();
    r.extend(std::iter::repeat_n(fill, 3072));
    r
}

#[test]
fn cifar10_and_cifar100() {
    let t = tempfile::tempdir().unwrap();
    let c10 = t.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&c10).unwrap();
    for i in 1..=5 {
        let recs: Vec<u8> = (0..3u8).flat_map(|k| cifar_record(&[k + i], 10 * k)).collect();
        std::fs::write(c10.join(format!("data_batch_{i}.bin")), recs).unwrap();
    }
    std::fs::write(c10.join("test_batch.bin"), cifar_record(&[9], 1)).unwrap();
    let out = t.path().join("c10.h5");
    // The archive's top folder's parent is accepted too.
    ssl_ok(&["data", "import", "cifar10", s(t.path()), s(&out)]);
    let info = Store::open(&out).unwrap().info().unwrap();
    assert_eq!(info.classes[9], "truck");
    assert_eq!(info.splits.iter().map(|x| x.len).sum::<usize>(), 16);

    let c100 = t.path().join("c100");
    std::fs::create_dir_all(&c100).unwrap();
    std::fs::write(c100.join("train.bin"), [cifar_record(&[1, 99], 5), cifar_record(&[2, 42], 6)].concat()).unwrap();
    std::fs::write(c100.join("test.bin"), cifar_record(&[0, 0], 7)).unwrap();
    let out = t.path().join("c100.h5");
    ssl_ok(&["data", "import", "cifar100", s(&c100), s(&out)]);
    let split = Store::open(&out).unwrap().load_split("train").unwrap();
    assert_eq!(split.labels.unwrap(), vec![99, 42]);
    assert_eq!(split.classes.len(), 100);

    // Truncated batch and out-of-range label.
    std::fs::write(c100.join("test.bin"), &cifar_record(&[0, 0], 7)[..3000]).unwrap();
    ssl_fails(&["data", "import", "cifar100", s(&c100), s(&t.path().join("x.h5"))], &["test.bin", "truncated"]);
    std::fs::write(c100.join("test.bin"), cifar_record(&[0, 100], 7)).unwrap();
    ssl_fails(&["data", "import", "cifar100", s(&c100), s(&t.path().join("x.h5"))], &["test.bin", "out of range"]);
    assert!(!t.path().join("x.h5").exists());
}

#[test]
fn stl10_with_unlabeled_split() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("stl10_binary");
    std::fs::create_dir_all(&d).unwrap();
    let img = |v: u8| vec![v; 3 * 96 * 96];
    std::fs::write(d.join("train_X.bin"), [img(1), img(2)].concat()).unwrap();
    std::fs::write(d.join("train_y.bin"), [1u8, 10]).unwrap();
    std::fs::write(d.join("test_X.bin"), img(3)).unwrap();
    std::fs::write(d.join("test_y.bin"), [5u8]).unwrap();
    std::fs::write(d.join("unlabeled_X.bin"), [img(4), img(5), img(6)].concat()).unwrap();
    let out = t.path().join("stl.h5");
    ssl_ok(&["data", "import", "stl10", s(t.path()), s(&out)]);
    let store = Store::open(&out).unwrap();
    let train = store.load_split("train").unwrap();
    assert_eq!(train.labels.unwrap(), vec![0, 9]);
    assert_eq!(train.shape.width, 96);
    let unl = store.load_split("unlabeled").unwrap();
    assert_eq!(unl.len(), 3);
    assert!(unl.labels.is_none());
    assert_eq!(unl.image(2)[0], 6);

    std::fs::write(d.join("train_y.bin"), [1u8]).unwrap();
    ssl_fails(&["data", "import", "stl10", s(&d), s(&t.path().join("y.h5"))], &["train_y.bin", "1 labels for 2 images"]);
}

#[test]
fn image_folders_labeled_unlabeled_and_resized() {
    let t = tempfile::tempdir().unwrap();
    let lab = t.path().join("lab");
    for (k, class) in ["cat", "dog"].iter().enumerate() {
        std::fs::create_dir_all(lab.join(class)).unwrap();
        for i in 0..3 {
            write_png(&lab.join(class).join(format!("{i}.png")), 8, 6, (k * 100 + i) as u8);
        }
    }
    let out = t.path().join("lab.h5");
    ssl_ok(&["data", "import", "folder", s(&lab), s(&out)]);
    let split = Store::open(&out).unwrap().load_split("train").unwrap();
    assert_eq!(split.classes, vec!["cat", "dog"]);
    assert_eq!(split.labels.as_ref().unwrap(), &vec![0, 0, 0, 1, 1, 1]);
    assert_eq!((split.shape.height, split.shape.width, split.shape.channels), (6, 8, 3));
    assert_eq!(&split.image(4)[..3], &[101, 50, 154]);

    let flat = t.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    write_png(&flat.join("a.png"), 10, 10, 1);
    write_png(&flat.join("b.png"), 12, 9, 2);
    ssl_fails(&["data", "import", "folder", s(&flat), s(&t.path().join("f.h5"))], &["b.png", "--size"]);
    let out = t.path().join("flat.h5");
    ssl_ok(&["data", "import", "folder", s(&flat), s(&out), "--size", "16x16", "--grayscale"]);
    let split = Store::open(&out).unwrap().load_split("unlabeled").unwrap();
    assert_eq!((split.len(), split.shape.height, split.shape.channels), (2, 16, 1));
    assert!(split.labels.is_none());
}
