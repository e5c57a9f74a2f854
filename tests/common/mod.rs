//! Helpers shared by the integration tests: run the real `ssl` binary, write small fixtures.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Output of one `ssl` run.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ssl` with `args`.
pub fn ssl(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ssl")).args(args).output().expect("ssl runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `ssl` and asserts success.
pub fn ssl_ok(args: &[&str]) -> Run {
    let r = ssl(args);
    assert!(r.ok, "ssl {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// Runs `ssl`, asserts a non-zero exit and one error line containing every one of `needles`.
pub fn ssl_fails(args: &[&str], needles: &[&str]) -> String {
    let r = ssl(args);
    assert!(!r.ok, "ssl {args:?} should fail; stdout:\n{}", r.stdout);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{}", r.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "error line {:?} lacks {n:?}", lines[0]);
    }
    lines[0].to_string()
}

/// Bytes of an IDX u8 file.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| v.extend_from_slice(&d.to_be_bytes()));
    v.extend_from_slice(data);
    v
}

/// Gzips `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Writes an MNIST-style IDX folder with `n_train` and `n_test` images of 6x5 whose labels cycle
/// through 0..10; `gz` chooses gzipped files.
pub fn write_idx_dataset(dir: &Path, n_train: u32, n_test: u32, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let images: Vec<u8> = (0..n * 30).map(|i| (i % 251) as u8).collect();
        write_idx_split(dir, prefix, n, 6, 5, &images, gz);
    }
}

/// Writes one IDX split (images and labels cycling through 0..10).
fn write_idx_split(dir: &Path, prefix: &str, n: u32, h: u32, w: u32, images: &[u8], gz: bool) {
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write_maybe_gz(&dir.join(format!("{prefix}-images-idx3-ubyte")), &idx_bytes(&[n, h, w], images), gz);
    write_maybe_gz(&dir.join(format!("{prefix}-labels-idx1-ubyte")), &idx_bytes(&[n], &labels), gz);
}

/// Imports a labeled store of `n_train` + `n_test` 12x12 gray images into `dir/data.h5`: class
/// k is a bright square at a position of its own plus noise, so features can separate classes.
pub fn labeled_store(dir: &Path, n_train: u32, n_test: u32) -> std::path::PathBuf {
    let src = dir.join("idx");
    std::fs::create_dir_all(&src).unwrap();
    let mut state = 12345u32;
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let mut images = Vec::new();
        for i in 0..n {
            let (cy, cx) = (((i % 10) / 4) * 4, ((i % 10) % 4) * 3);
            for y in 0..12 {
                for x in 0..12 {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let noise = (state >> 26) as u8;
                    let inside = (cy..cy + 4).contains(&y) && (cx..cx + 3).contains(&x);
                    images.push(if inside { 200 + noise / 2 } else { noise });
                }
            }
        }
        write_idx_split(&src, prefix, n, 12, 12, &images, false);
    }
    let out = dir.join("data.h5");
    ssl_ok(&["data", "import", "idx", s(&src), s(&out)]);
    out
}

/// Imports 6 gray 12x12 images without labels (a flat folder) into `dir/unlabeled.h5`, split
/// `unlabeled`.
pub fn unlabeled_store(dir: &Path) -> std::path::PathBuf {
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for i in 0..6 {
        write_png(&flat.join(format!("{i}.png")), 12, 12, 40 * i as u8);
    }
    let out = dir.join("unlabeled.h5");
    ssl_ok(&["data", "import", "folder", s(&flat), s(&out), "--grayscale"]);
    out
}

/// Writes `data` at `path`, or gzipped at `path.gz`.
pub fn write_maybe_gz(path: &Path, data: &[u8], gz: bool) {
    if gz {
        let mut p = path.as_os_str().to_owned();
        p.push(".gz");
        std::fs::write(p, gzip(data)).unwrap();
    } else {
        std::fs::write(path, data).unwrap();
    }
}

/// Writes a `w` x `h` RGB PNG filled with `value`.
pub fn write_png(path: &Path, w: u32, h: u32, value: u8) {
    image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value])).save(path).unwrap();
}

/// A path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small recipe over `data`, writing runs under `dir/runs`.
pub fn pretrain_recipe(dir: &Path, data: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"(
    name: "t",
    run_dir: "{runs}",
    data: (file: "{data}", split: "train"),
    model: "small_fmnist",
    method: SimClr(projector: (hidden: 128, out: 64, layers: 2)),
    augment: (blur_p: 0.0),
    batch_size: 16,
    epochs: 3,
    lr: (warmup_epochs: 1),
    checkpoint: (every_epochs: 1, keep: 2),
    knn: (every_epochs: 1, k: 5),
    {extra}
)"#,
        runs = s(&dir.join("runs")),
        data = s(data)
    );
    let p = dir.join("recipe.ron");
    std::fs::write(&p, text).unwrap();
    p
}

/// A fine-tuning recipe over `data`; `pretrained` is RON (`None` or `Some("...")`).
pub fn finetune_recipe(dir: &Path, data: &Path, name: &str, pretrained: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"(
    name: "{name}",
    run_dir: "{runs}",
    pretrained: {pretrained},
    data: (file: "{data}", val_fraction: 0.25),
    model: "small_fmnist",
    batch_size: 16,
    epochs: 3,
    lr: (base: 0.2, warmup_epochs: 0),
    early_stopping: (patience: 2),
    {extra}
)"#,
        runs = s(&dir.join("runs")),
        data = s(data)
    );
    let p = dir.join(format!("{name}.ron"));
    std::fs::write(&p, text).unwrap();
    p
}

/// The records of one `kind` ("step", "epoch") of a run's `metrics.jsonl`.
pub fn records(run: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}
