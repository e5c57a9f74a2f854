//! The faults found trying ssl as a new user would (issue 16): each failing input is a test here,
//! driving the real binary on small generated data and asserting the right value.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{finetune_recipe, labeled_store, pretrain_recipe, records, s, ssl_fails, ssl_ok, write_png};
use ssl::data::Store;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every file below `dir` with its bytes: a refused command must leave this unchanged.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// A minimal EXIF block (little-endian TIFF) holding only the orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut v = b"II*\0".to_vec();
    v.extend_from_slice(&8u32.to_le_bytes()); // first IFD at offset 8
    v.extend_from_slice(&1u16.to_le_bytes()); // one entry
    v.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    v.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    v.extend_from_slice(&1u32.to_le_bytes()); // count
    v.extend_from_slice(&value.to_le_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    v
}

/// 1. The stored pixels are the displayed image: EXIF orientation is applied on folder import.
#[test]
fn exif_orientation_is_applied_on_folder_import() {
    use image::ImageEncoder;
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("photos");
    std::fs::create_dir_all(src.join("a")).unwrap();
    // Upright photos, 8 wide by 16 tall.
    write_png(&src.join("a/0.png"), 8, 16, 100);
    write_png(&src.join("a/1.png"), 8, 16, 120);
    // A JPEG stored 16 wide by 8 tall, left half white, right half black, tagged "rotate 90
    // degrees clockwise to display": shown 8 wide by 16 tall with the white half on top.
    let raw = image::GrayImage::from_fn(16, 8, |x, _| image::Luma([if x < 8 { 255 } else { 0 }]));
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    enc.set_exif_metadata(exif_orientation(6)).unwrap();
    enc.write_image(raw.as_raw(), 16, 8, image::ExtendedColorType::L8).unwrap();
    std::fs::write(src.join("a/2.jpg"), bytes).unwrap();

    let out = t.path().join("p.h5");
    ssl_ok(&["data", "import", "folder", s(&src), s(&out), "--grayscale"]);
    let split = Store::open(&out).unwrap().load_split("train").unwrap();
    assert_eq!((split.shape.height, split.shape.width), (16, 8), "stored as displayed");
    let img = split.image(2);
    let mean = |rows: std::ops::Range<usize>| rows.clone().flat_map(|y| (0..8).map(move |x| img[y * 8 + x] as f64)).sum::<f64>() / (8 * rows.len()) as f64;
    assert!(mean(0..8) > 200.0 && mean(8..16) < 50.0, "white half on top: {} {}", mean(0..8), mean(8..16));
}

/// 2. A batch that cannot form the loss is never stepped nor averaged, in both loops.
#[test]
fn degenerate_last_batches_are_folded_not_trained() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 17, 20);
    let r = pretrain_recipe(d.path(), &data, "");
    let out = ssl_ok(&["pretrain", s(&r), "--set", "batch_size=8", "--set", "drop_last=false", "--set", "epochs=1", "--set", "knn.every_epochs=0"]);
    let run = d.path().join("runs/t");
    let steps = records(&run, "step");
    assert_eq!(steps.len(), 2, "17 images in batches of 8 make 2 steps, not a third of one image");
    let sizes: Vec<u64> = steps.iter().map(|v| v["images"].as_u64().unwrap()).collect();
    assert_eq!(sizes, vec![8, 9], "17 images in batches of 8: the lone image joins the last batch");
    assert!(steps.iter().all(|v| v["loss"].as_f64().unwrap() > 0.1), "{steps:?}");
    let mean = (steps[0]["loss"].as_f64().unwrap() + steps[1]["loss"].as_f64().unwrap()) / 2.0;
    assert!((records(&run, "epoch")[0]["loss"].as_f64().unwrap() - mean).abs() < 1e-6);
    assert!(!out.stdout.contains("final loss -0"), "{}", out.stdout);

    // Fine-tuning: 13 training images in batches of 6 train as 6 and 7.
    let ft = finetune_recipe(d.path(), &data, "ft", "None", "");
    ssl_ok(&["finetune", s(&ft), "--set", "batch_size=6", "--set", "epochs=1"]);
    let sizes: Vec<u64> = records(&d.path().join("runs/ft"), "step").iter().map(|v| v["images"].as_u64().unwrap()).collect();
    assert_eq!(sizes, vec![6, 7]);
}

/// 3. A class without a vote is never a top-k hit: with k = 1, kNN top-5 equals top-1.
#[test]
fn knn_top5_with_one_neighbour_equals_top1() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 60);
    ssl_ok(&["pretrain", s(&pretrain_recipe(d.path(), &data, "")), "--set", "epochs=1", "--set", "knn.every_epochs=0"]);
    let run = d.path().join("runs/t");
    ssl_ok(&["knn", s(&run), "--k", "1", "--baselines"]);
    let knn = json(&run.join("eval/knn.json"));
    for key in ["ssl", "random", "pixels"] {
        let t = &knn[key]["test"];
        assert_eq!(t["top5"], t["top1"], "{key}: {t}");
    }
}

/// 4. A flag either acts or is refused: `--classes` renames a folder import's classes (count
/// checked); `--size`/`--grayscale` are refused where the format has fixed images; `--device`
/// is refused by commands that run no model.
#[test]
fn flags_act_or_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("f");
    for class in ["a", "b"] {
        std::fs::create_dir_all(src.join(class)).unwrap();
        write_png(&src.join(class).join("0.png"), 4, 4, 10);
    }
    let out = t.path().join("o.h5");
    ssl_fails(&["data", "import", "folder", s(&src), s(&out), "--classes", "x,y,z"], &["--classes", "3", "2"]);
    assert!(!out.exists());
    ssl_ok(&["data", "import", "folder", s(&src), s(&out), "--classes", "x,y"]);
    assert_eq!(Store::open(&out).unwrap().classes().unwrap(), vec!["x", "y"]);
    // An unlabeled folder has no classes to rename.
    let flat = t.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    write_png(&flat.join("0.png"), 4, 4, 10);
    ssl_fails(&["data", "import", "folder", s(&flat), s(&t.path().join("u.h5")), "--classes", "x"], &["--classes", "unlabeled"]);
    // Fixed-size formats refuse the folder-only flags.
    let idx = t.path().join("idx");
    common::write_idx_dataset(&idx, 10, 5, false);
    ssl_fails(&["data", "import", "idx", s(&idx), s(&t.path().join("i.h5")), "--size", "8x8"], &["--size", "folder"]);
    ssl_fails(&["data", "import", "idx", s(&idx), s(&t.path().join("i.h5")), "--grayscale"], &["--grayscale", "folder"]);
    ssl_fails(&["data", "import", "idx", s(&idx), s(&t.path().join("i.h5")), "--classes", "a,b"], &["--classes", "2", "10"]);
    ssl_fails(&["data", "import", "folder", s(&src), s(&t.path().join("i.h5")), "--classes", "x,x"], &["--classes", "twice"]);
    // --device on a command that runs no model; counts of 0 that would quietly become 1.
    ssl_fails(&["--device", "cpu", "data", "info", s(&out)], &["--device"]);
    ssl_fails(&["--threads", "0", "data", "info", s(&out)], &["--threads"]);
    ssl_fails(&["data", "preview", s(&out), "--cols", "0", "--out", s(&t.path().join("p.png"))], &["--cols"]);
    ssl_fails(&["augment", "preview", s(&out), "--pairs", "0", "--out", s(&t.path().join("p.png"))], &["--pairs"]);
    ssl_fails(&["data", "preview", s(&out), "--count", "0", "--out", s(&t.path().join("p.png"))], &["--count"]);
    ssl_fails(&["data", "preview", s(&out), "--out", s(&t.path().join("p.jpg"))], &["p.jpg", "PNG"]);
    assert!(!t.path().join("p.jpg").exists() && !t.path().join("p.png").exists());
    ssl_fails(&["probe", s(&t.path().join("no-run")), "--epochs", "0"], &["--epochs"]);
    ssl_fails(&["probe", s(&t.path().join("no-run")), "--batch-size", "0"], &["--batch-size"]);

    // Recipe fields that could not act: refused before anything is written.
    let data = labeled_store(t.path(), 40, 10);
    let r = pretrain_recipe(t.path(), &data, "");
    for (set, field) in [
        ("optimizer.nesterov=true", "optimizer.nesterov"),          // LARS has no Nesterov form
        ("lr.milestones=[2]", "lr.milestones"),                     // only Step annealing reads them
        ("lr.gamma=0.5", "lr.gamma"),
        ("checkpoint.keep=0", "checkpoint.keep"),                   // was quietly 1
        ("checkpoint.every_epochs=0", "checkpoint.every_epochs"),   // was quietly 1
        ("data.subset=1000", "data.subset"),                        // was quietly all 40
    ] {
        ssl_fails(&["pretrain", s(&r), "--set", set], &[field]);
    }
    ssl_fails(&["pretrain", s(&r), "--set", "optimizer.kind=AdamW", "--set", "optimizer.momentum=0.5"], &["optimizer.momentum", "AdamW"]);
    ssl_fails(&["pretrain", s(&r), "--set", "lr.annealing=Step", "--set", "lr.milestones=[3]"], &["lr.milestones", "3"]);
    ssl_fails(&["pretrain", s(&r), "--set", "lr.annealing=Step", "--set", "lr.milestones=[1]", "--set", "lr.final_fraction=0.1"], &["lr.final_fraction", "Step"]);
    ssl_fails(&["pretrain", s(&r), "--set", "optimizer.kind=Sgd", "--set", "optimizer.nesterov=true", "--set", "optimizer.momentum=0.0"], &["optimizer.nesterov", "momentum"]);
    let ft = finetune_recipe(t.path(), &data, "ft", "None", "");
    ssl_fails(&["finetune", s(&ft), "--set", "backbone.freeze=true", "--set", "backbone.lr_factor=0.1"], &["backbone.lr_factor", "freeze"]);
    ssl_fails(&["finetune", s(&ft), "--set", "data.val_fraction=0.0", "--set", "early_stopping.patience=0", "--set", "early_stopping.min_delta=0.01"], &["min_delta"]);
    ssl_fails(&["finetune", s(&ft), "--set", "early_stopping.min_delta=-0.1"], &["early_stopping.min_delta"]);
    ssl_fails(&["knn", s(&t.path().join("runs-elsewhere")), "--k", "1"], &["runs-elsewhere", "no recipe.ron"]);
    assert!(!t.path().join("runs").exists(), "nothing written");
    // A fine-tuning recipe's partial augment section keeps fine-tuning's defaults (no colour):
    // the preview of its views equals that of the same recipe with the colour set off by hand.
    let part = finetune_recipe(t.path(), &data, "part", "None", "augment: (flip_p: 0.0),");
    let (a, b) = (t.path().join("a.png"), t.path().join("b.png"));
    ssl_ok(&["augment", "preview", s(&data), "--recipe", s(&part), "--out", s(&a)]);
    let full = t.path().join("full.ron");
    std::fs::write(&full, std::fs::read_to_string(&part).unwrap().replace("augment: (flip_p: 0.0),", "augment: (flip_p: 0.0, jitter_p: 0.0, grayscale_p: 0.0, blur_p: 0.0, crop_scale: (0.25, 1.0)),")).unwrap();
    ssl_ok(&["augment", "preview", s(&data), "--recipe", s(&full), "--out", s(&b)]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

/// 5 and 6. A refused resume leaves the run byte for byte as it was; a changed schedule needs
/// `--extend`, which says from which step it changes and records it.
#[test]
fn refused_resume_changes_nothing_and_schedule_changes_need_extend() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 32, 20);
    let r = pretrain_recipe(d.path(), &data, "");
    ssl_ok(&["pretrain", s(&r), "--set", "epochs=2", "--set", "knn.every_epochs=0"]);
    let run = d.path().join("runs/t");
    let before = snapshot(&run);
    ssl_fails(&["pretrain", "--resume", s(&run), "--set", "method.projector.hidden=256"], &["projector.hidden", "128", "256"]);
    assert_eq!(snapshot(&run), before, "a refused resume changes no file");
    ssl_fails(&["pretrain", "--resume", s(&run), "--set", "epochs=3"], &["epochs", "--extend"]);
    ssl_fails(&["pretrain", "--resume", s(&run), "--set", "seed=5"], &["seed"]);
    ssl_fails(&["pretrain", "--resume", s(&run), "--set", "augment.flip_p=0.0"], &["augment.flip_p"]);
    assert_eq!(snapshot(&run), before, "a refused resume changes no file");
    ssl_fails(&["pretrain", "--resume", s(&run), "--set", "name=other"], &["name", "stays in its folder"]);
    ssl_fails(&["pretrain", "--resume", s(&run), "--force"], &["--force", "--resume"]);
    ssl_fails(&["pretrain", s(&r), "--set", "name=fresh", "--extend"], &["--extend", "--resume"]);
    ssl_fails(&["pretrain", "--resume", s(&run), "--extend"], &["--extend", "nothing to extend"]);
    assert_eq!(snapshot(&run), before, "a refused resume changes no file");
    // A plain resume still works (nothing left to do), and leaves the run as it was.
    let out = ssl_ok(&["pretrain", "--resume", s(&run)]);
    assert!(out.stdout.contains("nothing left to do"), "{}", out.stdout);
    assert_eq!(snapshot(&run), before);
    // With --extend the schedule change is announced and recorded.
    let out = ssl_ok(&["pretrain", "--resume", s(&run), "--set", "epochs=3", "--extend"]);
    assert!(out.stdout.contains("from step 5") && out.stdout.contains("epochs 2 -> 3"), "{}", out.stdout);
    assert_eq!(records(&run, "epoch").len(), 3);
    let history = std::fs::read_to_string(run.join("recipe_history.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 4);
    assert_eq!(last["changes"]["epochs"], serde_json::json!([2, 3]));
    // A field that is not about the schedule stays refused with --extend.
    ssl_fails(&["pretrain", "--resume", s(&run), "--set", "batch_size=8", "--extend"], &["batch_size"]);

    // Fine-tuning: the same rules.
    let ft = finetune_recipe(d.path(), &data, "ft", "None", "");
    ssl_ok(&["finetune", s(&ft)]);
    let run = d.path().join("runs/ft");
    let before = snapshot(&run);
    ssl_fails(&["finetune", "--resume", s(&run), "--set", "label_smoothing=0.3"], &["label_smoothing"]);
    ssl_fails(&["finetune", "--resume", s(&run), "--set", "epochs=4"], &["epochs", "--extend"]);
    ssl_fails(&["finetune", "--resume", s(&run), "--set", "pretrained=Some(\"x\")"], &["pretrained", "None"]);
    assert_eq!(snapshot(&run), before);
    let out = ssl_ok(&["finetune", "--resume", s(&run)]);
    assert!(out.stdout.contains("nothing left to do"), "{}", out.stdout);
    assert_eq!(snapshot(&run), before, "resuming a finished fine-tuning changes nothing");
    // probe and knn take a pretraining run; a fine-tuning run is named as such.
    ssl_fails(&["knn", s(&run), "--k", "1"], &["is a fine-tuning run"]);
    let out = ssl_ok(&["finetune", "--resume", s(&run), "--set", "epochs=4", "--extend"]);
    assert!(out.stdout.contains("epochs 3 -> 4"), "{}", out.stdout);
    assert_eq!(json(&run.join("result.json"))["epochs_run"], 4);
}

/// 7. A single labeled folder becomes evaluable: `ssl data split` makes a stratified,
/// deterministic test split, atomically, with provenance.
#[test]
fn data_split_makes_a_labeled_folder_evaluable() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("digits");
    for (k, class) in ["a", "b", "c", "d"].iter().enumerate() {
        std::fs::create_dir_all(src.join(class)).unwrap();
        for i in 0..(10 + 5 * k) {
            write_png(&src.join(class).join(format!("{i:02}.png")), 12, 12, (k * 60 + i) as u8);
        }
    }
    let store = t.path().join("d.h5");
    ssl_ok(&["data", "import", "folder", s(&src), s(&store), "--grayscale"]);
    let untouched = std::fs::read(&store).unwrap();
    // Bad requests leave the file as it was.
    ssl_fails(&["data", "split", s(&store), "--from", "train", "--into", "train,test", "--fractions", "0.8,0.3"], &["--fractions", "1"]);
    ssl_fails(&["data", "split", s(&store), "--from", "nope", "--into", "train,test", "--fractions", "0.8,0.2"], &["nope"]);
    ssl_fails(&["data", "split", s(&store), "--from", "train", "--into", "a,b,c", "--fractions", "0.8,0.2"], &["--into", "--fractions"]);
    assert_eq!(std::fs::read(&store).unwrap(), untouched);

    let out = ssl_ok(&["data", "split", s(&store), "--from", "train", "--into", "train,test", "--fractions", "0.8,0.2", "--seed", "0"]);
    assert!(out.stdout.contains("train") && out.stdout.contains("test"), "{}", out.stdout);
    let st = Store::open(&store).unwrap();
    let (train, test) = (st.load_split("train").unwrap(), st.load_split("test").unwrap());
    let count = |sp: &ssl::data::Split| {
        let mut c = vec![0; 4];
        sp.labels.as_ref().unwrap().iter().for_each(|&l| c[l as usize] += 1);
        c
    };
    assert_eq!(count(&test), vec![2, 3, 4, 5], "20% of each class");
    assert_eq!(count(&train), vec![8, 12, 16, 20]);
    let info = json_info(&store);
    assert!(info["history"].as_array().unwrap().iter().any(|h| h.as_str().unwrap().contains("0.8,0.2")), "{info}");
    // Deterministic: the same command on a fresh import gives the same images in each split.
    let again = t.path().join("e.h5");
    ssl_ok(&["data", "import", "folder", s(&src), s(&again), "--grayscale"]);
    ssl_ok(&["data", "split", s(&again), "--from", "train", "--into", "train,test", "--fractions", "0.8,0.2", "--seed", "0"]);
    assert_eq!(Store::open(&again).unwrap().load_split("test").unwrap().images, test.images);
    // Replacing an existing split needs --force, and --force must replace something.
    ssl_fails(&["data", "split", s(&store), "--from", "train", "--into", "train,test", "--fractions", "0.5,0.5"], &["test", "--force"]);
    ssl_fails(&["data", "split", s(&store), "--from", "train", "--into", "train,val", "--fractions", "0.5,0.5", "--force"], &["--force"]);

    // The folder-to-report path: pretraining with the kNN monitor, then kNN and the probe.
    let r = pretrain_recipe(t.path(), &store, "");
    ssl_ok(&["pretrain", s(&r), "--set", "epochs=1", "--set", "batch_size=8"]);
    let run = t.path().join("runs/t");
    ssl_ok(&["knn", s(&run), "--k", "5"]);
    ssl_ok(&["probe", s(&run), "--epochs", "5"]);
}

fn json_info(store: &Path) -> serde_json::Value {
    serde_json::from_str(&ssl_ok(&["data", "info", s(store), "--json"]).stdout).unwrap()
}

/// 8. Early stopping cannot fire before `min_steps`, and few labels get at least that many steps.
#[test]
fn tiny_label_fractions_train_at_least_min_steps() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 3000, 20);
    let ft = finetune_recipe(d.path(), &data, "ft", "None", "min_steps: 40,");
    // 1% of 3000 = 30 labeled images, 22 after validation: 3 steps of 8 per epoch, so the
    // 2 epochs of the recipe are raised to 14 (42 steps), and patience 1 cannot stop it early.
    let out = ssl_ok(&["finetune", s(&ft), "--set", "batch_size=8", "--set", "epochs=2", "--set", "data.label_fraction=0.01", "--set", "early_stopping.patience=1", "--set", "lr.base=1e-9"]);
    assert!(out.stdout.contains("min_steps 40"), "{}", out.stdout);
    let r = json(&d.path().join("runs/ft/result.json"));
    assert_eq!(r["train_images"], 22);
    assert!(!r["stopped_early"].as_bool().unwrap(), "{r}");
    assert_eq!(r["epochs_run"], 14);
    assert_eq!(records(&d.path().join("runs/ft"), "step").len(), 42);
    // Past min_steps early stopping acts again: 3 steps an epoch, min_steps 10, so the first
    // epoch that may stop is the 4th (12 steps), and with a rate too small to improve it does.
    let out = ssl_ok(&["finetune", s(&ft), "--force", "--set", "batch_size=8", "--set", "epochs=20", "--set", "min_steps=10", "--set", "data.label_fraction=0.01",
        "--set", "early_stopping.patience=1", "--set", "lr.base=1e-9"]);
    assert!(!out.stdout.contains("min_steps 10:"), "20 epochs are more than 10 steps: {}", out.stdout);
    let r = json(&d.path().join("runs/ft/result.json"));
    let ran = r["epochs_run"].as_u64().unwrap();
    assert!(r["stopped_early"].as_bool().unwrap() && (4..20).contains(&ran), "{r}");
}

/// 9. One evaluation view: the online kNN monitor, `ssl knn` and its pixel baseline all see the
/// images as pretraining was told to (here without normalisation), so the monitor and `ssl knn`
/// agree, and the pixel baseline is kNN on the raw pixels.
#[test]
fn one_evaluation_view_for_monitor_and_frozen_evaluation() {
    let d = tempfile::tempdir().unwrap();
    // Noise images with labels unrelated to them: any change of input changes the neighbours.
    let src = d.path().join("idx");
    std::fs::create_dir_all(&src).unwrap();
    let mut state = 7u32;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 24) as u8
            })
            .collect()
    };
    let mut sets = Vec::new();
    for (prefix, n) in [("train", 48u32), ("t10k", 200)] {
        let images = noise(n as usize * 144);
        std::fs::write(src.join(format!("{prefix}-images-idx3-ubyte")), common::idx_bytes(&[n, 12, 12], &images)).unwrap();
        let labels: Vec<u8> = noise(n as usize).iter().map(|v| v % 10).collect();
        std::fs::write(src.join(format!("{prefix}-labels-idx1-ubyte")), common::idx_bytes(&[n], &labels)).unwrap();
        sets.push((images, labels));
    }
    let data = d.path().join("noise.h5");
    ssl_ok(&["data", "import", "idx", s(&src), s(&data)]);
    let r = pretrain_recipe(d.path(), &data, "");
    ssl_ok(&["pretrain", s(&r), "--set", "epochs=1", "--set", "augment.normalize=false", "--set", "knn.k=5"]);
    let run = d.path().join("runs/t");
    let monitor = records(&run, "epoch")[0]["knn_top1"].as_f64().unwrap();
    ssl_ok(&["knn", s(&run), "--k", "5", "--temperature", "0.1"]);
    let frozen = json(&run.join("eval/knn.json"))["ssl"]["test"]["top1"].as_f64().unwrap();
    assert_eq!(frozen, monitor, "ssl knn and the monitor evaluate the same view");

    // The pixel baseline with k = 1 is the nearest raw image by cosine similarity.
    ssl_ok(&["knn", s(&run), "--k", "1", "--baselines"]);
    let pixels = json(&run.join("eval/knn.json"))["pixels"]["test"]["top1"].as_f64().unwrap();
    let ((train, train_y), (test, test_y)) = (&sets[0], &sets[1]);
    let rows = |x: &[u8]| -> Vec<Vec<f64>> {
        x.chunks(144)
            .map(|r| {
                let v: Vec<f64> = r.iter().map(|&p| p as f64 / 255.0).collect();
                let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
                v.iter().map(|a| a / n).collect()
            })
            .collect()
    };
    let (tr, te) = (rows(train), rows(test));
    let hits = te
        .iter()
        .zip(test_y)
        .filter(|(q, &y)| {
            let sim = |t: &Vec<f64>| t.iter().zip(q.iter()).map(|(a, b)| a * b).sum::<f64>();
            let best = (0..tr.len()).max_by(|&a, &b| sim(&tr[a]).total_cmp(&sim(&tr[b]))).unwrap();
            train_y[best] == y
        })
        .count();
    assert_eq!(pixels, hits as f64 / te.len() as f64, "kNN on the raw pixels, as pretraining saw them");
}

/// Found by the new-user tryout, in the report: with no fine-tuning run the per-class table
/// showed the probe's numbers twice under two names; after `--extend` changed the backbone, the
/// probe and kNN measured on the earlier one passed for this run's (now marked until rerun).
#[test]
fn report_shows_the_probe_once_and_marks_results_of_an_earlier_backbone() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 40, 20);
    ssl_ok(&["pretrain", s(&pretrain_recipe(d.path(), &data, "")), "--set", "epochs=1", "--set", "knn.every_epochs=0"]);
    let run = d.path().join("runs/t");
    ssl_ok(&["probe", s(&run), "--epochs", "3"]);
    ssl_ok(&["knn", s(&run), "--k", "3"]);
    let report = || {
        ssl_ok(&["report", s(&run)]);
        std::fs::read_to_string(run.join("report/report.md")).unwrap()
    };
    let md = report();
    let header = md.lines().find(|l| l.starts_with("| Class |")).expect("a per-class table");
    assert_eq!(header.matches("probe").count(), 1, "{header}");
    assert!(!md.contains("earlier backbone"));
    ssl_ok(&["pretrain", "--resume", s(&run), "--set", "epochs=2", "--extend"]);
    assert_eq!(report().matches("on an earlier backbone").count(), 2, "probe and kNN");
    ssl_ok(&["probe", s(&run), "--epochs", "3"]);
    assert_eq!(report().matches("on an earlier backbone").count(), 1, "kNN only");
}

/// `SSL_CPU_ISA` takes `avx2` or `native`; anything else is refused in one line, not ignored.
#[test]
fn an_unknown_instruction_set_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssl")).arg("models").env("SSL_CPU_ISA", "avx512vnni").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(err.contains("SSL_CPU_ISA") && err.contains("avx2, native"), "{err}");
    for ok in ["NATIVE", ""] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssl")).arg("models").env("SSL_CPU_ISA", ok).output().unwrap();
        assert!(out.status.success(), "{ok}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // avx2 where the CPU has gemm's AVX2 kernels, refused in one line where it has not.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssl")).arg("models").env("SSL_CPU_ISA", "avx2").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.success(), ssl::simd::avx2_kernels_run_here(), "{err}");
}
