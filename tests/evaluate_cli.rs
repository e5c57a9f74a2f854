//! `ssl finetune`, `ssl probe`, `ssl knn` and `ssl report` end to end on a small labeled store,
//! and their bad inputs.

mod common;

use std::path::{Path, PathBuf};

use common::{finetune_recipe, labeled_store, pretrain_recipe, s, ssl_fails, ssl_ok};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn pretrain_probe_knn_finetune_report() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 80, 40);
    ssl_ok(&["pretrain", s(&pretrain_recipe(d.path(), &data, "")), "--set", "epochs=2"]);
    let run = d.path().join("runs/t");
    let backbone = std::fs::read(run.join("backbone.safetensors")).unwrap();

    let out = ssl_ok(&["probe", s(&run), "--baselines", "--epochs", "30"]).stdout;
    assert!(out.contains("probe    ssl") && out.contains("probe random") && out.contains("probe pixels"), "{out}");
    let probe = json(&run.join("eval/probe.json"));
    for key in ["ssl", "random", "pixels"] {
        let top1 = probe[key]["test"]["top1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&top1));
        assert_eq!(probe[key]["test"]["count"], 40);
    }
    // The squares are linearly separable from the pixels.
    assert!(probe["pixels"]["test"]["top1"].as_f64().unwrap() > 0.9, "{probe}");
    assert!(run.join("eval/features-ssl.h5").exists() && run.join("eval/features-random.h5").exists());
    assert_eq!(std::fs::read(run.join("backbone.safetensors")).unwrap(), backbone, "the probe leaves the backbone alone");

    let out = ssl_ok(&["knn", s(&run), "--baselines", "--k", "5"]).stdout;
    assert!(out.contains("knn    ssl"), "{out}");
    assert!(json(&run.join("eval/knn.json"))["pixels"]["test"]["top1"].as_f64().unwrap() > 0.9);

    // Fine-tuning from the run, from scratch, and with the backbone frozen.
    let ft = finetune_recipe(d.path(), &data, "ft", &format!("Some(\"{}\")", s(&run)), "");
    let out = ssl_ok(&["finetune", s(&ft)]).stdout;
    assert!(out.contains("validation top-1") && out.contains("test top-1"), "{out}");
    let result = json(&d.path().join("runs/ft/result.json"));
    assert_eq!(result["train_images"], 60);
    assert_eq!(result["val_images"], 20);
    assert_eq!(result["test"]["confusion"].as_array().unwrap().len(), 10);
    assert!(result["init"].as_str().unwrap().ends_with("backbone.safetensors"));
    ssl_ok(&["finetune", s(&finetune_recipe(d.path(), &data, "scratch", "None", ""))]);
    assert_eq!(json(&d.path().join("runs/scratch/result.json"))["init"], "random");
    let frozen = finetune_recipe(d.path(), &data, "frozen", &format!("Some(\"{}\")", s(&run)), "backbone: (freeze: true),");
    ssl_ok(&["finetune", s(&frozen), "--set", "optimizer.weight_decay=0.1"]);
    // A frozen backbone comes out bit for bit as it went in, BatchNorm statistics included.
    assert_eq!(std::fs::read(d.path().join("runs/frozen/best/backbone.safetensors")).unwrap(), backbone);
    let same = |a: &str, b: &str| std::fs::read(d.path().join(a)).unwrap() == std::fs::read(d.path().join(b)).unwrap();
    assert!(!same("runs/ft/best/backbone.safetensors", "runs/t/backbone.safetensors"), "fine-tuning moves it");

    // Early stopping: patience 1 with a rate that cannot improve stops before 10 epochs.
    ssl_ok(&["finetune", s(&ft), "--set", "name=stop", "--set", "epochs=10", "--set", "early_stopping.patience=1", "--set", "lr.base=1e-9"]);
    let r = json(&d.path().join("runs/stop/result.json"));
    assert!(r["stopped_early"].as_bool().unwrap() && r["epochs_run"].as_u64().unwrap() < 10, "{r}");

    // Resume of a fine-tuning run gives the same numbers.
    let cut = ssl_common_stop(&ft, "cut", 5);
    ssl_ok(&["finetune", "--resume", s(&cut)]);
    let losses = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| json_line(l)["loss"].to_string()).collect()
    };
    assert_eq!(losses(&cut), losses(&d.path().join("runs/ft")));
    assert_eq!(json(&cut.join("result.json"))["test"], result["test"]);

    // The report.
    let out = ssl_ok(&["report", s(&run), "--finetune", s(&d.path().join("runs/ft")), "--finetune", s(&d.path().join("runs/scratch"))]).stdout;
    assert!(out.contains("report.html"), "{out}");
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    for needle in ["What pretraining bought", "linear probe", "raw pixels", "trained from scratch", "fine-tuned", "Confusion matrix", "t-SNE"] {
        assert!(md.contains(needle), "report lacks {needle}:\n{md}");
    }
    for png in ["pretrain_loss.png", "pretrain_lr.png", "knn.png", "probe.png", "finetune_loss.png", "finetune_accuracy.png", "per_class.png", "confusion.png", "embedding.png"] {
        assert!(image::open(run.join("report").join(png)).is_ok(), "{png}");
    }
    let html = std::fs::read_to_string(run.join("report/report.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 9, "every plot embedded");
    // Made again without the fine-tuning runs: their plots go, a file of the user's stays.
    std::fs::write(run.join("report/notes.png"), b"mine").unwrap();
    ssl_ok(&["report", s(&run)]);
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(!md.contains("finetune_loss.png"), "{md}");
    for png in ["finetune_loss.png", "finetune_accuracy.png"] {
        assert!(!run.join("report").join(png).exists(), "{png} left from the earlier report");
    }
    // Per class and confusion now of the linear probe; the user's file untouched.
    for f in ["pretrain_loss.png", "per_class.png", "confusion.png", "notes.png"] {
        assert!(run.join("report").join(f).exists(), "{f}");
    }
}

fn json_line(l: &str) -> serde_json::Value {
    serde_json::from_str(l).unwrap()
}

/// Runs the fine-tuning recipe under another name, stopped after `steps` steps.
fn ssl_common_stop(recipe: &Path, name: &str, steps: u64) -> PathBuf {
    let r = common::ssl(&["finetune", s(recipe), "--set", &format!("name={name}"), "--stop-after-steps", &steps.to_string()]);
    assert!(!r.ok && r.stderr.contains("ssl finetune --resume"), "{}", r.stderr);
    recipe.parent().unwrap().join("runs").join(name)
}

#[test]
fn evaluation_bad_inputs() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 40, 20);
    ssl_ok(&["pretrain", s(&pretrain_recipe(d.path(), &data, "")), "--set", "epochs=1", "--set", "knn.every_epochs=0"]);
    let run = d.path().join("runs/t");
    let ft = finetune_recipe(d.path(), &data, "ft", &format!("Some(\"{}\")", s(&run)), "");

    // A backbone of another model: named by the run's recipe, or refused by its tensors.
    ssl_fails(&["finetune", s(&ft), "--set", "model=resnet18_cifar"], &["pretrained", "small_fmnist", "resnet18_cifar"]);
    let other = d.path().join("other.safetensors");
    std::fs::copy(run.join("checkpoints").read_dir().unwrap().next().unwrap().unwrap().path().join("projector.safetensors"), &other).unwrap();
    ssl_fails(&["finetune", s(&ft), "--set", &format!("pretrained={}", s(&other))], &["other.safetensors", "does not fit"]);
    ssl_fails(&["finetune", s(&ft), "--set", "pretrained=/nonexistent/run"], &["pretrained", "/nonexistent/run"]);

    // Data without labels.
    let unlabeled = common::unlabeled_store(d.path());
    let file = format!("data.file={}", s(&unlabeled));
    ssl_fails(&["finetune", s(&ft), "--set", &file, "--set", "data.train_split=unlabeled"], &["data.train_split", "no labels"]);
    ssl_fails(&["probe", s(&run), "--data", s(&unlabeled), "--train-split", "unlabeled"], &["no labels"]);
    ssl_fails(&["knn", s(&run), "--data", s(&unlabeled), "--train-split", "unlabeled"], &["no labels"]);

    // A label fraction that empties a class; an empty validation split.
    ssl_fails(&["finetune", s(&ft), "--set", "data.label_fraction=0.01"], &["data.label_fraction", "empty"]);
    ssl_fails(&["finetune", s(&ft), "--set", "data.val_fraction=0.001"], &["data.val_fraction", "empty"]);
    ssl_fails(&["finetune", s(&ft), "--set", "data.val_fraction=0", "--set", "early_stopping.patience=3"], &["early_stopping.patience"]);
    ssl_fails(&["finetune", s(&ft), "--set", "label_smoothing=1.5"], &["label_smoothing"]);
    ssl_fails(&["probe", &d.path().join("nope").display().to_string()], &["nope", "recipe.ron"]);
    ssl_fails(&["report", s(&run), "--finetune", s(&d.path().join("runs"))], &["--finetune", "result.json"]);
}
