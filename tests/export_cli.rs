//! `ssl export` and `ssl embed` through the real binary: PyTorch's names in the exported file,
//! fine-tuning from it exactly as from the run's own backbone, embeddings in three formats
//! equal to the features the evaluation uses, and one-line refusals.

mod common;

use std::path::Path;

use common::{finetune_recipe, labeled_store, pretrain_recipe, records, s, ssl_fails, ssl_ok};

fn values(run: &Path, key: &str) -> Vec<serde_json::Value> {
    records(run, "step").iter().map(|r| r[key].clone()).collect()
}

#[test]
fn export_for_pytorch_and_fine_tune_from_it() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 40, 20);
    ssl_ok(&["pretrain", s(&pretrain_recipe(d.path(), &data, "")), "--set", "epochs=1", "--set", "knn.every_epochs=0"]);
    let run = d.path().join("runs/t");
    let out = d.path().join("torch.safetensors");
    let r = ssl_ok(&["export", s(&run), "--out", s(&out)]);
    // small_fmnist: 13 convolutions and 13 BatchNorms of 5 tensors each.
    assert!(r.stdout.contains("78 tensors") && r.stdout.contains("small_fmnist()"), "{}", r.stdout);
    let buf = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(names.len(), 78);
    for key in ["conv1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer2.0.downsample.1.weight", "layer3.1.bn2.num_batches_tracked"] {
        assert!(names.iter().any(|n| n.as_str() == key), "{key} missing from {names:?}");
    }
    assert_eq!(st.tensor("layer2.0.downsample.0.weight").unwrap().shape(), &[64, 32, 1, 1]);
    // 40 images of 16 a step, the last partial batch dropped: 2 steps.
    assert_eq!(st.tensor("bn1.num_batches_tracked").unwrap().data(), &2i64.to_le_bytes());
    let (_, meta) = safetensors::SafeTensors::read_metadata(&buf).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!((meta["model"].as_str(), meta["method"].as_str(), meta["format"].as_str()), ("small_fmnist", "SimCLR", "pt"));

    // Fine-tuning from the export takes exactly the steps it takes from the run's backbone.
    let from_run = finetune_recipe(d.path(), &data, "from_run", &format!("Some(\"{}\")", s(&run.join("backbone.safetensors"))), "");
    let from_torch = finetune_recipe(d.path(), &data, "from_torch", &format!("Some(\"{}\")", s(&out)), "");
    ssl_ok(&["finetune", s(&from_run), "--set", "epochs=1"]);
    ssl_ok(&["finetune", s(&from_torch), "--set", "epochs=1"]);
    let (a, b) = (d.path().join("runs/from_run"), d.path().join("runs/from_torch"));
    assert_eq!(values(&a, "loss"), values(&b, "loss"));
    assert!(!values(&a, "loss").is_empty());

    // Refusals, one line each.
    ssl_fails(&["export", s(&d.path().join("nope"))], &["nope", "recipe.ron"]);
    let r = common::ssl(&["export", s(&run), "--format", "onnx"]);
    assert!(!r.ok && r.stderr.contains("'onnx'") && r.stderr.contains("torch"), "{}", r.stderr);
    ssl_fails(&["export", s(&run), "--out", s(&run.join("backbone.safetensors"))], &["backbone.safetensors", "input"]);
    ssl_fails(&["export", s(&run), "--out", s(&d.path().join("no/such/dir/x.safetensors"))], &["no folder"]);
    // small_fmnist_e512 would take the file's tensors and leave its expansion unread.
    ssl_fails(&["finetune", s(&from_torch), "--set", "model=small_fmnist_e512"], &["torch.safetensors", "expand.0.weight", "does not fit"]);
    // A model with no PyTorch mapping: refused after the run is read, the existing file untouched.
    let vgg = d.path().join("vgg_run");
    std::fs::create_dir_all(&vgg).unwrap();
    std::fs::copy(run.join("backbone.safetensors"), vgg.join("backbone.safetensors")).unwrap();
    let recipe = std::fs::read_to_string(run.join("recipe.ron")).unwrap().replace("model: \"small_fmnist\"", "model: \"vgg11_cifar\"");
    assert!(recipe.contains("vgg11_cifar"));
    std::fs::write(vgg.join("recipe.ron"), recipe).unwrap();
    std::fs::write(&out, b"kept").unwrap();
    ssl_fails(&["export", s(&vgg), "--out", s(&out)], &["vgg11_cifar has no PyTorch mapping", "resnet18_cifar"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"kept");
}

#[test]
fn embeddings_in_three_formats() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 40, 20);
    ssl_ok(&["pretrain", s(&pretrain_recipe(d.path(), &data, "")), "--set", "epochs=1", "--set", "knn.every_epochs=0"]);
    let run = d.path().join("runs/t");
    let h5 = d.path().join("e.h5");
    let r = ssl_ok(&["embed", s(&run), "--split", "test", "--out", s(&h5), "--inputs"]);
    assert!(r.stdout.contains("20 images of split test, 128 features"), "{}", r.stdout);
    let f = hdf5::File::open(&h5).unwrap();
    let x = f.dataset("features").unwrap();
    assert_eq!(x.shape(), vec![20, 128]);
    let features: Vec<f32> = x.read_raw().unwrap();
    assert_eq!(f.dataset("labels").unwrap().read_raw::<i32>().unwrap(), (0..20).map(|i| i % 10).collect::<Vec<i32>>());
    assert_eq!(f.dataset("indices").unwrap().read_raw::<u64>().unwrap(), (0..20).collect::<Vec<u64>>());
    assert_eq!(f.dataset("inputs").unwrap().shape(), vec![20, 1, 12, 12]);
    assert_eq!(f.dataset("classes").unwrap().shape(), vec![10]);
    let model: hdf5::types::VarLenUnicode = f.attr("model").unwrap().read_scalar().unwrap();
    assert_eq!(model.as_str(), "small_fmnist");
    drop(f);

    // The same features the kNN evaluation (and the report's t-SNE map) reads.
    ssl_ok(&["knn", s(&run), "--k", "5"]);
    let cache = hdf5::File::open(run.join("eval/features-ssl.h5")).unwrap();
    assert_eq!(cache.group("test").unwrap().dataset("features").unwrap().read_raw::<f32>().unwrap(), features);
    drop(cache);

    // NumPy: the first 5 images, labels beside.
    let npy = d.path().join("e.npy");
    ssl_ok(&["embed", s(&run), "--split", "test", "--format", "npy", "--limit", "5", "--out", s(&npy)]);
    let a: ndarray::Array2<f32> = ndarray_npy::read_npy(&npy).unwrap();
    assert_eq!(a.shape(), &[5, 128]);
    assert_eq!(a.as_slice().unwrap(), &features[..5 * 128]);
    let y: ndarray::Array1<i32> = ndarray_npy::read_npy(d.path().join("e_labels.npy")).unwrap();
    assert_eq!(y.to_vec(), vec![0, 1, 2, 3, 4]);

    // CSV: a header and one row per image.
    let csv = d.path().join("e.csv");
    ssl_ok(&["embed", s(&run), "--split", "test", "--format", "csv", "--out", s(&csv)]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21);
    assert!(lines[0].starts_with("index,label,f0,f1,") && lines[0].ends_with(",f127"));
    let row: Vec<f32> = lines[2].split(',').skip(2).map(|v| v.parse().unwrap()).collect();
    assert_eq!((lines[2].split(',').next(), row.as_slice()), (Some("1"), &features[128..256]));

    ssl_fails(&["embed", s(&run), "--format", "csv", "--inputs", "--out", s(&d.path().join("x.csv"))], &["--inputs", "HDF5"]);
    ssl_fails(&["embed", s(&run), "--limit", "21", "--out", s(&d.path().join("x.h5"))], &["--limit", "21", "20"]);
    ssl_fails(&["embed", s(&run), "--split", "val", "--out", s(&d.path().join("x.h5"))], &["--split", "val"]);
    ssl_fails(&["embed", s(&run), "--out", s(&data)], &["data.h5", "input"]);

    // An unlabeled store: no labels anywhere, and no stale labels file left beside.
    let unlabeled = common::unlabeled_store(d.path());
    let args = |format: &str, out: &Path| -> Vec<String> {
        ["embed", s(&run), "--data", s(&unlabeled), "--split", "unlabeled", "--format", format, "--out", s(out)].iter().map(|a| a.to_string()).collect()
    };
    let run_args = |a: Vec<String>| ssl_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let h5u = d.path().join("u.h5");
    run_args(args("h5", &h5u));
    let f = hdf5::File::open(&h5u).unwrap();
    assert_eq!(f.dataset("features").unwrap().shape(), vec![6, 128]);
    assert!(!f.link_exists("labels") && !f.link_exists("classes"));
    drop(f);
    let csvu = d.path().join("u.csv");
    run_args(args("csv", &csvu));
    assert!(std::fs::read_to_string(&csvu).unwrap().lines().nth(1).unwrap().starts_with("0,,"));
    std::fs::copy(d.path().join("e_labels.npy"), d.path().join("e2_labels.npy")).unwrap();
    run_args(args("npy", &d.path().join("e2.npy")));
    assert!(d.path().join("e2.npy").exists() && !d.path().join("e2_labels.npy").exists());
}
