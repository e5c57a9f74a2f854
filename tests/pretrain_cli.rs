//! `ssl pretrain` end to end on a small labeled store: resume exactness, thread independence,
//! Ctrl-C, and every bad input of the issue.

mod common;

use std::path::Path;

use common::{labeled_store, pretrain_recipe as recipe, records, s, ssl, ssl_fails, ssl_ok};

/// (step, loss) of every step record, losses as their exact f32 text.
fn losses(run: &Path) -> Vec<(u64, String)> {
    records(run, "step").iter().map(|v| (v["step"].as_u64().unwrap(), v["loss"].to_string())).collect()
}

#[test]
fn pretrains_resumes_exactly_and_does_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let runs = d.path().join("runs");

    let full = ssl_ok(&["pretrain", s(&r), "--threads", "2", "--set", "name=full"]);
    assert!(full.stdout.contains("done in") && full.stdout.contains("kNN top-1"), "{}", full.stdout);
    let a = runs.join("full");
    for f in ["recipe.ron", "metrics.jsonl", "backbone.safetensors"] {
        assert!(a.join(f).exists(), "{f}");
    }
    let ckpts: Vec<_> = std::fs::read_dir(a.join("checkpoints")).unwrap().collect();
    assert_eq!(ckpts.len(), 2, "keeps the last 2");
    let epochs = records(&a, "epoch");
    assert_eq!(epochs.len(), 3);
    assert!(epochs.iter().all(|e| e["knn_top1"].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v))));
    let base = losses(&a);
    assert_eq!(base.len(), 12, "64 images / 16 per step x 3 epochs");
    let step = &records(&a, "step")[0];
    for key in ["epoch", "loss", "lr", "views_per_s", "elapsed_s"] {
        assert!(step.get(key).is_some(), "step records carry {key}");
    }

    // Stopped mid-epoch as Ctrl-C would, then resumed: the same losses, bit for bit.
    let stop = ssl(&["pretrain", s(&r), "--set", "name=cut", "--stop-after-steps", "6"]);
    assert!(!stop.ok && stop.stderr.contains("--resume"), "{}", stop.stderr);
    let b = runs.join("cut");
    assert!(!b.join("backbone.safetensors").exists());
    let resumed = ssl_ok(&["pretrain", "--resume", s(&b)]);
    assert!(resumed.stdout.contains("resuming"), "{}", resumed.stdout);
    assert_eq!(losses(&b), base, "the resumed run repeats the uninterrupted one");
    assert_eq!(records(&b, "epoch").len(), 3);
    assert_eq!(std::fs::read(a.join("backbone.safetensors")).unwrap(), std::fs::read(b.join("backbone.safetensors")).unwrap());

    // One thread gives the same numbers as two.
    ssl_ok(&["pretrain", s(&r), "--threads", "1", "--set", "name=one"]);
    assert_eq!(losses(&runs.join("one")), base);
    let knn = |run: &Path| records(run, "epoch").iter().map(|e| e["knn_top1"].to_string()).collect::<Vec<_>>();
    assert_eq!(knn(&runs.join("one")), knn(&a));

    // Every optimiser runs (SGD with Nesterov, AdamW) with step annealing; the drop-last policy
    // can keep the partial batch.
    ssl_ok(&["pretrain", s(&r), "--set", "name=sgd", "--set", "optimizer.kind=Sgd", "--set", "optimizer.nesterov=true",
        "--set", "lr.annealing=Step", "--set", "lr.milestones=[2]", "--set", "lr.base=0.05"]);
    ssl_ok(&["pretrain", s(&r), "--set", "name=adamw", "--set", "optimizer.kind=AdamW", "--set", "lr.base=0.001",
        "--set", "batch_size=20", "--set", "drop_last=false", "--set", "knn.every_epochs=0"]);
    assert_eq!(losses(&runs.join("adamw")).len(), 12, "ceil(64 / 20) = 4 steps per epoch");
    let saved = std::fs::read_to_string(runs.join("adamw/recipe.ron")).unwrap();
    assert!(saved.contains("AdamW") && saved.contains("batch_size: 20"), "the resolved recipe is saved");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 10);
    let r = recipe(d.path(), &data, "");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(["pretrain", s(&r), "--set", "epochs=100000", "--set", "knn.every_epochs=0", "--set", "lr.warmup_epochs=0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = d.path().join("runs/t/metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 2 {
        assert!(t0.elapsed().as_secs() < 120, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("continue with: ssl pretrain --resume"), "{err}");
    let ckpts = std::fs::read_dir(d.path().join("runs/t/checkpoints")).unwrap().count();
    assert_eq!(ckpts, 1);
}

#[test]
fn bad_input_gets_one_clear_line_and_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 40, 10);
    let r = recipe(d.path(), &data, "");

    let bad = d.path().join("bad.ron");
    std::fs::write(&bad, "(\n  epochs: 2,\n  lr: (bse: 0.1),\n)").unwrap();
    ssl_fails(&["pretrain", s(&bad)], &["bad.ron", "bse", "3:"]);
    std::fs::write(&bad, "(epochs: \"two\")").unwrap();
    ssl_fails(&["pretrain", s(&bad)], &["bad.ron"]);
    ssl_fails(&["pretrain", s(&r), "--set", "data.file=/nonexistent/x.h5"], &["/nonexistent/x.h5"]);
    ssl_fails(&["pretrain", s(&r), "--set", "data.split=nope"], &["data.split", "nope"]);
    ssl_fails(&["pretrain", s(&r), "--set", "model=resnet18_cifar"], &["resnet18_cifar", "channels"]);
    ssl_fails(&["pretrain", s(&r), "--set", "batch_size=64"], &["batch_size", "64", "40 images"]);
    ssl_fails(&["pretrain", s(&r), "--set", "lr.base=0"], &["lr.base"]);
    ssl_fails(&["pretrain", s(&r), "--set", "lr.base=-1"], &["lr.base"]);
    ssl_fails(&["pretrain", s(&r), "--set", "method.temperature=0"], &["method.temperature"]);
    ssl_fails(&["pretrain", s(&r), "--set", "method.projector.layers=1"], &["method.projector.layers", "2 or 3"]);
    ssl_fails(&["pretrain", s(&r), "--set", "method.tau_base=0.9"], &["--set", "tau_base"]);
    ssl_fails(&["pretrain", s(&r), "--set", "nope=1"], &["--set", "nope"]);
    ssl_fails(&["pretrain"], &["recipe"]);
    // Devices: a bad name, and CUDA in a CPU-only build (from the command line or the recipe).
    ssl_fails(&["--device", "tpu", "pretrain", s(&r)], &["device", "tpu", "cuda:N"]);
    if !cfg!(feature = "cuda") {
        ssl_fails(&["--device", "cuda", "pretrain", s(&r)], &["cuda:0", "without CUDA", "--features cuda"]);
        ssl_fails(&["pretrain", s(&r), "--set", "device=\"cuda:1\""], &["cuda:1", "without CUDA"]);
    }

    // A run folder is never overwritten by accident; --resume refuses another model.
    ssl_ok(&["pretrain", s(&r), "--set", "epochs=1"]);
    let run = d.path().join("runs/t");
    let before = std::fs::read(run.join("backbone.safetensors")).unwrap();
    ssl_fails(&["pretrain", s(&r), "--set", "epochs=1"], &["runs/t", "--resume"]);
    ssl_fails(&["pretrain", s(&r), "--resume", s(&run), "--set", "model=resnet18_cifar"], &["--resume", "small_fmnist", "resnet18_cifar"]);
    ssl_fails(&["pretrain", "--resume", s(&d.path().join("runs/none"))], &["runs/none"]);
    assert_eq!(std::fs::read(run.join("backbone.safetensors")).unwrap(), before);

    // A loss that blows up stops the run with a message; the checkpoints made before it stay.
    let msg = ssl_fails(
        &["pretrain", s(&r), "--set", "name=nan", "--set", "optimizer.kind=Sgd", "--set", "lr.base=1e30", "--set", "lr.scaling=None",
            "--set", "lr.warmup_epochs=0", "--set", "epochs=20", "--set", "checkpoint.every_epochs=1"],
        &["loss", "lr.base"],
    );
    assert!(msg.contains("NaN") || msg.contains("inf"), "{msg}");
}
