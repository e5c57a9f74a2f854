//! Pretraining methods through the one seam, driven through the real `ssl` binary: BYOL,
//! SimSiam, MoCo v2, Barlow Twins, VICReg and DINO end to end (exact resume with BYOL's target
//! network, MoCo's queue and DINO's centre; thread independence; the online probe and the
//! collapse measures; BYOL's decay and DINO's teacher temperature logged), multi-crop refused
//! by a model that cannot take it, `ssl methods`, a resume with another method refused, the
//! report naming the method, and a SimCLR projector of a width no list of compiled widths had.

mod common;

use std::path::Path;

use common::{finetune_recipe, labeled_store, pretrain_recipe as recipe, records, s, ssl, ssl_fails, ssl_ok};

/// Small BYOL heads, chosen from the command line over the test recipe's SimCLR.
const BYOL: [&str; 8] = ["--set", "method=Byol", "--set", "method.projector.hidden=64", "--set", "method.projector.out=32", "--set", "method.predictor.hidden=48"];

/// Each step's loss and online-probe accuracy, as written.
fn losses(run: &Path) -> Vec<String> {
    records(run, "step").iter().map(|v| format!("{} {}", v["loss"], v["accuracy"])).collect()
}

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

/// Runs `method` (set from the command line) for 3 epochs, then again stopped after 6 steps
/// and resumed, then on one thread: the same losses, online-probe accuracies and backbone
/// every time, bit for bit, and every file in `files` in a checkpoint. Returns the uninterrupted run's folder.
fn resumes_exactly_and_does_not_depend_on_threads(r: &Path, runs: &Path, name: &str, method: &[&str], files: &[&str]) -> std::path::PathBuf {
    let full = ssl_ok(&args(&["pretrain", s(r), "--threads", "2", "--set", &format!("name={name}")], method));
    assert!(full.stdout.contains("kNN top-1"), "{}", full.stdout);
    let a = runs.join(name);
    let base = losses(&a);
    assert_eq!(base.len(), 12, "64 images / 16 per step x 3 epochs");
    // The online probe's accuracy with every step; each epoch its top-1 on the monitor's
    // images and the collapse measures.
    assert!(records(&a, "step").iter().all(|v| v["accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a))));
    for e in records(&a, "epoch") {
        assert!(e["online_probe_top1"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{e}");
        assert!(e["effective_rank"].as_f64().is_some_and(|r| r >= 1.0), "{e}");
        assert!(e["feature_std"].as_f64().is_some_and(|s| s >= 0.0), "{e}");
    }
    assert!(full.stdout.contains("online probe top-1") && full.stdout.contains("effective rank"), "{}", full.stdout);
    let ckpt = std::fs::read_dir(a.join("checkpoints")).unwrap().next().unwrap().unwrap().path();
    for f in files.iter().chain(&["online_probe.safetensors", "online_probe_optimizer.safetensors"]) {
        assert!(ckpt.join(f).exists(), "{f}");
    }

    // Stopped mid-epoch and resumed: the same losses and backbone, bit for bit.
    let cut = format!("{name}_cut");
    let stop = ssl(&args(&["pretrain", s(r), "--set", &format!("name={cut}"), "--stop-after-steps", "6"], method));
    assert!(!stop.ok, "{}", stop.stderr);
    let b = runs.join(&cut);
    ssl_ok(&["pretrain", "--resume", s(&b)]);
    assert_eq!(losses(&b), base, "the resumed run repeats the uninterrupted one");
    assert_eq!(std::fs::read(a.join("backbone.safetensors")).unwrap(), std::fs::read(b.join("backbone.safetensors")).unwrap());

    // One thread gives the same numbers as two.
    let one = format!("{name}_one");
    ssl_ok(&args(&["pretrain", s(r), "--threads", "1", "--set", &format!("name={one}")], method));
    assert_eq!(losses(&runs.join(one)), base);
    a
}

#[test]
fn byol_resumes_exactly_and_does_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let runs = d.path().join("runs");
    let files = ["backbone.safetensors", "projector.safetensors", "predictor.safetensors", "target_backbone.safetensors", "target_projector.safetensors", "optimizer.safetensors"];
    let a = resumes_exactly_and_does_not_depend_on_threads(&r, &runs, "full", &BYOL, &files);
    // BYOL's loss lies in [0, 8]; its target decay is logged and rises from 0.996.
    let steps = records(&a, "step");
    assert!(steps.iter().all(|v| (0.0..=8.0).contains(&v["loss"].as_f64().unwrap())));
    let tau: Vec<f64> = steps.iter().map(|v| v["tau"].as_f64().unwrap()).collect();
    assert_eq!(tau[0], 0.996);
    assert!(tau.windows(2).all(|w| w[1] > w[0]) && tau[11] < 1.0, "{tau:?}");
    let ckpt = std::fs::read_dir(a.join("checkpoints")).unwrap().next().unwrap().unwrap().path();
    assert!(std::fs::read_to_string(ckpt.join("state.json")).unwrap().contains("\"BYOL\""));

    // Another method, or other settings of this one, on resume: refused, nothing written.
    let c = runs.join("cut2");
    assert!(!ssl(&args(&["pretrain", s(&r), "--set", "name=cut2", "--stop-after-steps", "2"], &BYOL)).ok);
    ssl_fails(&["pretrain", "--resume", s(&c), "--set", "method=SimClr"], &["--resume", "method BYOL", "SimCLR"]);
    ssl_fails(&["pretrain", "--resume", s(&c), "--set", "method.tau_base=0.99"], &["--resume", "tau_base", "0.996", "0.99"]);

    // The report names the method and its settings, and sets a SimCLR run beside it.
    ssl_ok(&["pretrain", s(&r), "--set", "name=simclr"]);
    ssl_ok(&["report", s(&a), "--compare", s(&runs.join("simclr"))]);
    let md = std::fs::read_to_string(a.join("report/report.md")).unwrap();
    for needle in ["BYOL report", "target decay 0.996", "Methods compared", "BYOL (`full`)", "SimCLR (`simclr`)", "SimCLR (temperature 0.5", "Online probe top-1 (%)", "Effective rank", "Budget (min)"] {
        assert!(md.contains(needle), "report lacks {needle}:\n{md}");
    }
    for png in ["knn_compare.png", "online_probe_compare.png", "rank_compare.png"] {
        assert!(image::open(a.join("report").join(png)).is_ok(), "{png}");
    }
    // A fine-tuning run from the SimCLR run, in the BYOL run's report: labelled SimCLR, not as
    // this run's backbone.
    let simclr = runs.join("simclr");
    let ft = finetune_recipe(d.path(), &data, "ft_simclr", &format!("Some(\"{}\")", s(&simclr)), "");
    ssl_ok(&["finetune", s(&ft), "--set", "epochs=1"]);
    ssl_ok(&["report", s(&a), "--finetune", s(&runs.join("ft_simclr"))]);
    let md = std::fs::read_to_string(a.join("report/report.md")).unwrap();
    assert!(md.contains(&format!("| SimCLR (`{}`) | fine-tuned", simclr.display())), "{md}");
    assert!(!md.contains("| BYOL (this run) | fine-tuned"), "{md}");
    // Compared with it, the SimCLR run's row carries that fine-tuning's top-1, BYOL's none.
    ssl_ok(&["report", s(&a), "--compare", s(&simclr), "--finetune", s(&runs.join("ft_simclr"))]);
    let md = std::fs::read_to_string(a.join("report/report.md")).unwrap();
    let row = |name: &str| md.lines().find(|l| l.starts_with(&format!("| {name}"))).unwrap_or_else(|| panic!("no row {name}:\n{md}")).to_string();
    assert!(!row("SimCLR (`simclr`)").trim_end().ends_with("| – |"), "{md}");
    assert!(row("BYOL (`full`)").trim_end().ends_with("| – |"), "{md}");
    ssl_fails(&["report", s(&a), "--compare", s(&d.path().join("nope"))], &["--compare", "nope"]);
}

#[test]
fn simsiam_resumes_exactly_and_does_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let runs = d.path().join("runs");
    let method = ["--set", "method=SimSiam", "--set", "method.projector.hidden=64", "--set", "method.projector.out=32", "--set", "method.predictor.hidden=8"];
    let a = resumes_exactly_and_does_not_depend_on_threads(&r, &runs, "simsiam", &method, &["projector.safetensors", "predictor.safetensors"]);
    // SimSiam's loss, a negative cosine, lies in [-1, 1].
    assert!(records(&a, "step").iter().all(|v| (-1.0..=1.0).contains(&v["loss"].as_f64().unwrap())));
}

#[test]
fn moco_v2_resumes_exactly_with_its_queue_and_does_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let runs = d.path().join("runs");
    // A queue of 40 keys wraps around after 3 steps of 16: the resumed run must restore its
    // contents and its write position.
    let method = ["--set", "method=MocoV2", "--set", "method.projector.hidden=64", "--set", "method.projector.out=32", "--set", "method.queue_size=40", "--set", "method.shuffle_bn_groups=2"];
    let files = ["projector.safetensors", "target_backbone.safetensors", "target_projector.safetensors", "queue.safetensors"];
    let a = resumes_exactly_and_does_not_depend_on_threads(&r, &runs, "moco", &method, &files);
    let steps = records(&a, "step");
    let m: Vec<f64> = steps.iter().map(|v| v["momentum"].as_f64().unwrap()).collect();
    assert!(m.iter().all(|&m| m == 0.999), "{m:?}");
    // InfoNCE over 41 candidates: log 41 = 3.71 for an uninformed query, 0 at best.
    assert!(steps.iter().all(|v| (0.0..=20.0).contains(&v["loss"].as_f64().unwrap())));
    // A batch smaller than two keys per shuffled group is refused before anything runs.
    ssl_fails(&args(&["pretrain", s(&r), "--set", "name=moco_small", "--set", "batch_size=3"], &method), &["batch", "4"]);
}

#[test]
fn dino_with_multi_crop_resumes_exactly_and_does_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let runs = d.path().join("runs");
    let method = [
        "--set", "method=Dino", "--set", "method.head.hidden=32", "--set", "method.head.bottleneck=8", "--set", "method.head.prototypes=16",
        "--set", "method.multi_crop.local_crops=2", "--set", "method.multi_crop.local_size=6", "--set", "method.teacher_warmup_epochs=1",
    ];
    let files = ["head.safetensors", "target_backbone.safetensors", "target_projector.safetensors", "center.safetensors"];
    // The paper's 96 px local crops on 12 px images: refused, naming the field and a size.
    ssl_fails(&["pretrain", s(&r), "--set", "method=Dino"], &["method.multi_crop.local_size", "96 px", "12x12", "about 6"]);
    let a = resumes_exactly_and_does_not_depend_on_threads(&r, &runs, "dino", &method, &files);
    // The teacher's temperature warms up over the first epoch (4 steps), then holds.
    let t: Vec<f64> = records(&a, "step").iter().map(|v| v["teacher_temperature"].as_f64().unwrap()).collect();
    assert_eq!(t[0], 0.04);
    assert!(t[..4].windows(2).all(|w| w[1] > w[0]) && t[4..].iter().all(|&x| (x - 0.07).abs() < 1e-12), "{t:?}");
}

/// A model that cannot take DINO's local crops is refused before anything is written, naming
/// the crops' size.
#[test]
fn multi_crop_is_refused_by_a_model_of_one_input_size() {
    let d = tempfile::tempdir().unwrap();
    let folder = d.path().join("rgb");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..4 {
        common::write_png(&folder.join(format!("{i}.png")), 32, 32, 40 * i as u8);
    }
    let data = d.path().join("rgb.h5");
    ssl_ok(&["data", "import", "folder", s(&folder), s(&data)]);
    let r = recipe(d.path(), &data, "");
    let args = ["pretrain", s(&r), "--set", "data.split=unlabeled", "--set", "model=vit_tiny_cifar", "--set", "method=Dino", "--set", "method.multi_crop.local_size=16", "--set", "knn.every_epochs=0", "--set", "batch_size=2"];
    ssl_fails(&args, &["DINO's views of 16x16x3", "vit_tiny_cifar"]);
    assert!(!d.path().join("runs/t").exists());
}

/// VICReg's invariance term alone has a trivial minimum: every image one embedding. The
/// collapse monitor says so in one line after the epoch and in the report.
#[test]
fn a_collapsing_run_says_so_in_its_progress_and_its_report() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let run = ssl_ok(&[
        "pretrain", s(&r), "--set", "name=collapse", "--set", "method=VicReg", "--set", "method.variance=0", "--set", "method.covariance=0",
        "--set", "method.projector.hidden=64", "--set", "method.projector.out=32", "--set", "epochs=2", "--set", "optimizer.kind=AdamW", "--set", "lr.base=1.0",
    ]);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("warning: the embeddings have collapsed: effective rank"), "{all}");
    let a = d.path().join("runs/collapse");
    ssl_ok(&["report", s(&a)]);
    let md = std::fs::read_to_string(a.join("report/report.md")).unwrap();
    assert!(md.contains("Warning: the embeddings have collapsed (effective rank"), "{md}");
}

#[test]
fn barlow_twins_resumes_exactly_and_does_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let runs = d.path().join("runs");
    let method = ["--set", "method=BarlowTwins", "--set", "method.projector.hidden=64", "--set", "method.projector.out=32"];
    let a = resumes_exactly_and_does_not_depend_on_threads(&r, &runs, "barlow", &method, &["projector.safetensors"]);
    // The loss is a sum of squares: at most W (the diagonal) + lambda W (W - 1) for
    // correlations within [-1, 1].
    let most = 32.0 * 4.0 + 0.0051 * 32.0 * 31.0;
    assert!(records(&a, "step").iter().all(|v| (0.0..=most).contains(&v["loss"].as_f64().unwrap())));
}

#[test]
fn vicreg_resumes_exactly_and_does_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 64, 30);
    let r = recipe(d.path(), &data, "");
    let runs = d.path().join("runs");
    let method = ["--set", "method=VicReg", "--set", "method.projector.hidden=64", "--set", "method.projector.out=32"];
    let a = resumes_exactly_and_does_not_depend_on_threads(&r, &runs, "vicreg", &method, &["projector.safetensors"]);
    let loss: Vec<f64> = records(&a, "step").iter().map(|v| v["loss"].as_f64().unwrap()).collect();
    assert!(loss.iter().all(|l| l.is_finite() && *l >= 0.0), "{loss:?}");
}

#[test]
fn methods_are_listed_and_any_projector_width_trains() {
    let list = ssl_ok(&["methods"]).stdout;
    for needle in ["SimCLR", "Chen et al. 2020", "SimClr(", "temperature: 0.5", "BYOL", "Grill et al. 2020", "Byol(", "tau_base: 0.996", "blur_p: (1.0, 0.1)", "SimSiam", "Chen and He 2021", "SimSiam(", "Barlow Twins", "Zbontar et al. 2021", "BarlowTwins(", "lambda: 0.0051", "VICReg", "Bardes et al. 2022", "VicReg(", "invariance: 25.0", "MoCo v2", "He et al. 2020", "MocoV2(", "queue_size: 65536", "DINO", "Caron et al. 2021", "Dino(", "local_crops: 8"] {
        assert!(list.contains(needle), "`ssl methods` lacks {needle}:\n{list}");
    }
    let d = tempfile::tempdir().unwrap();
    let data = labeled_store(d.path(), 32, 10);
    let r = recipe(d.path(), &data, "");
    ssl_ok(&["pretrain", s(&r), "--set", "name=w300", "--set", "method.projector.hidden=300", "--set", "method.projector.out=37", "--set", "epochs=1", "--set", "knn.every_epochs=0"]);
    let saved = std::fs::read_to_string(d.path().join("runs/w300/recipe.ron")).unwrap();
    assert!(saved.contains("method: SimClr(") && saved.contains("hidden: 300"), "{saved}");
    ssl_fails(&["pretrain", s(&r), "--set", "method.projector.out=0"], &["method.projector.out"]);
}
