//! `ssl report`: a pretraining run, its frozen-feature evaluations and any fine-tuning runs,
//! written up as `report.md` (PNG plots beside it) and one self-contained `report.html`.

pub mod document;
pub mod embedding;
pub mod plots;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};



use crate::error::{Context, Error, Result};
use crate::eval::feature_cache;
use crate::eval::collapse::collapsed;
use crate::eval::monitor::{KNN_KEY, ONLINE_PROBE_KEY, RANK_KEY, STD_KEY};
use crate::eval::on_run::{read, KnnEntry, ProbeEntry};
use crate::recipe::FinetuneRecipe;
use crate::train::finetune::FinetuneResult;
use crate::run::records::{self, EpochRecord};
use document::Block;
use plots::Series;

/// Points in the embedding map.
const MAP_POINTS: usize = 1500;

/// A finished fine-tuning run.
struct Finetune {
    dir: PathBuf,
    recipe: FinetuneRecipe,
    result: FinetuneResult,
    epochs: Vec<EpochRecord>,
}

fn load_finetune(dir: &Path) -> Result<Finetune> {
    let result_path = dir.join("result.json");
    if !result_path.exists() {
        return Err(Error::invalid("--finetune", format!("{}: no result.json (not a finished fine-tuning run)", dir.display())));
    }
    let text = std::fs::read_to_string(&result_path).at(&result_path)?;
    let result = serde_json::from_str(&text).map_err(|e| Error::bad_input(&result_path, e.to_string()))?;
    let recipe = crate::recipe::load(&dir.join("recipe.ron"), &[])?;
    let (_, epochs) = records::read_steps_and_epochs(&dir.join("metrics.jsonl"))?;
    Ok(Finetune { dir: dir.to_path_buf(), recipe, result, epochs })
}

fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or("–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// (epoch, value of `key`) of the epochs that have it.
fn epoch_points(epochs: &[EpochRecord], key: &str) -> Vec<(f64, f64)> {
    epochs.iter().filter_map(|e| Some((e.epoch as f64, e.get(key)?))).collect()
}

/// Moving average over `w` points.
fn smooth(p: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    (0..p.len()).map(|i| {
        let lo = i.saturating_sub(w - 1);
        let ys = &p[lo..=i];
        (p[i].0, ys.iter().map(|q| q.1).sum::<f64>() / ys.len() as f64)
    }).collect()
}

/// How a feature source is called in the report (`method`: the run's method).
fn source_name(key: &str, method: &str) -> String {
    match key {
        "ssl" => format!("{method} (this run)"),
        "random" => "random init".into(),
        "pixels" => "raw pixels".into(),
        other => other.into(),
    }
}

/// The pretraining run a fine-tuning run loaded its backbone from: its `pretrained` folder,
/// or the folder of the backbone file it names; `None` when it started from random weights.
fn pretrained_run(f: &Finetune) -> Option<PathBuf> {
    let p = f.recipe.pretrained.as_ref()?;
    Some(if p.is_file() { p.parent().map_or_else(PathBuf::new, Path::to_path_buf) } else { p.clone() })
}

/// Whether a fine-tuning run loaded the backbone of pretraining run `run`.
fn loaded_from(f: &Finetune, run: &Path) -> bool {
    pretrained_run(f).is_some_and(|p| match (p.canonicalize(), run.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => p == run,
    })
}

/// Where a fine-tuning run's backbone came from: the method of the pretraining run it loaded
/// (read from that run's recipe), "pretrained" when that run cannot be read, or random init.
fn init_label(f: &Finetune) -> String {
    match pretrained_run(f) {
        None => "random init".into(),
        Some(run) => crate::recipe::load_pretraining_run(&run, "pretrained").and_then(|r| r.method()).map_or_else(|_| "pretrained".into(), |m| m.name().into()),
    }
}

/// A row of "What pretraining bought" for a fine-tuning run on backbone `name`.
fn finetune_row(name: String, f: &Finetune) -> Vec<String> {
    let how = if f.recipe.backbone.freeze { "classifier on frozen backbone" } else if f.recipe.pretrained.is_some() { "fine-tuned" } else { "trained from scratch (supervised)" };
    vec![name, format!("{how}, {:.0}% labels (`{}`)", 100.0 * f.recipe.data.label_fraction, f.recipe.name), pct(Some(f.result.test.top1)), pct(Some(f.result.test.top5))]
}

/// Another pretraining run shown beside this one (`ssl report RUN --compare OTHER`).
struct Compared {
    dir: PathBuf,
    name: String,
    /// The method's name and its settings in one line.
    method: String,
    settings: String,
    epochs: Vec<EpochRecord>,
    planned_epochs: usize,
    probe: Option<ProbeEntry>,
    knn: Option<KnnEntry>,
}

fn load_compared(run: &Path) -> Result<Compared> {
    let recipe = crate::recipe::load_pretraining_run(run, "--compare")?;
    let (_, epochs) = records::read_steps_and_epochs(&run.join("metrics.jsonl"))?;
    let probe = read::<ProbeEntry>(run, "probe")?.remove("ssl");
    let knn = read::<KnnEntry>(run, "knn")?.remove("ssl");
    let method = recipe.method()?;
    Ok(Compared { dir: run.to_path_buf(), name: recipe.name.clone(), method: method.name().into(), settings: method.summary(), epochs, planned_epochs: recipe.epochs, probe, knn })
}

/// The last value of `key` in `epochs`.
fn last_value(epochs: &[EpochRecord], key: &str) -> Option<f64> {
    epochs.iter().rev().find_map(|e| e.get(key))
}

/// Whether the last collapse measures of `epochs` say the embeddings collapsed, in words.
fn collapse_note(epochs: &[EpochRecord]) -> Option<String> {
    let (rank, std) = (last_value(epochs, RANK_KEY)?, last_value(epochs, STD_KEY)?);
    collapsed(rank, std).then(|| format!("collapsed (effective rank {rank:.2}, feature std {std:.3})"))
}

/// Over training time (minutes) for each run: the values of `key` (times `scale`).
fn time_series(runs: &[Compared], key: &str, scale: f64) -> Vec<Series> {
    runs.iter()
        .map(|r| Series { name: format!("{} ({})", r.method, r.name), points: r.epochs.iter().filter_map(|e| Some((e.elapsed_s / 60.0, scale * e.get(key)?))).collect() })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// The "Methods compared" section: one row per run (its budget, steps, frozen evaluations,
/// the online probe and collapse measures of its last epoch, the best fine-tuning run from its
/// backbone among `fts`), the baselines, each run's settings, and the monitor's curves over
/// training time overlaid.
fn compare_section(runs: &[Compared], fts: &[Finetune], probes_here: &BTreeMap<String, ProbeEntry>, knns_here: &BTreeMap<String, KnnEntry>, out: &Path, blocks: &mut Vec<Block>) -> Result<()> {
    blocks.push(Block::Heading(2, "Methods compared".into()));
    let mut rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let minutes = r.epochs.last().map_or(0.0, |e| e.elapsed_s / 60.0);
            let steps = r.epochs.last().map_or(0, |e| e.step);
            let fine = fts.iter().filter(|f| loaded_from(f, &r.dir) && !f.recipe.backbone.freeze).map(|f| f.result.test.top1).fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))));
            let rank = last_value(&r.epochs, RANK_KEY).map_or("–".into(), |v| format!("{v:.1}"));
            vec![
                format!("{} (`{}`)", r.method, r.name),
                format!("{minutes:.1}"),
                format!("{steps} ({} of {} epochs)", r.epochs.len(), r.planned_epochs),
                pct(r.probe.as_ref().map(|p| p.test.top1)),
                pct(r.knn.as_ref().map(|k| k.test.top1)),
                pct(last_value(&r.epochs, ONLINE_PROBE_KEY)),
                rank + &collapse_note(&r.epochs).map_or(String::new(), |n| format!(" — {n}")),
                pct(fine),
            ]
        })
        .collect();
    for key in ["random", "pixels"] {
        let (probe, knn) = (probes_here.get(key).map(|p| p.test.top1), knns_here.get(key).map(|k| k.test.top1));
        if probe.is_some() || knn.is_some() {
            rows.push(vec![format!("{} (baseline)", source_name(key, "")), "–".into(), "–".into(), pct(probe), pct(knn), "–".into(), "–".into(), "–".into()]);
        }
    }
    let head = ["Run", "Budget (min)", "Steps", "Linear probe top-1 (%)", "kNN top-1 (%)", "Online probe top-1 (%)", "Effective rank", "Fine-tuned top-1 (%)"];
    blocks.push(Block::Table(head.iter().map(|h| h.to_string()).collect(), rows));
    blocks.push(Block::Paragraph(
        "Linear probe and kNN: `ssl probe` and `ssl knn` on the test split; online probe and effective rank (RankMe): the last epoch's, on the monitor's evaluated images; fine-tuned: the best `--finetune` run from that backbone.".into(),
    ));
    let settings = runs.iter().map(|r| vec![format!("`{}`", r.name), r.settings.clone()]).collect();
    blocks.push(Block::Table(vec!["Run".into(), "Settings".into()], settings));
    let curves = [
        ("knn_compare.png", KNN_KEY, 100.0, "kNN monitor", "kNN top-1 (%)"),
        ("online_probe_compare.png", ONLINE_PROBE_KEY, 100.0, "Online linear probe", "online probe top-1 (%)"),
        ("rank_compare.png", RANK_KEY, 1.0, "Effective rank of the features (RankMe)", "effective rank"),
    ];
    for (file, key, scale, title, axis) in curves {
        let series = time_series(runs, key, scale);
        if !series.is_empty() {
            plots::lines(&out.join(file), &format!("{title} over training time"), "minutes", axis, &series)?;
            blocks.push(Block::Image(format!("{title} of each run over its training time"), file.into()));
        }
    }
    Ok(())
}

/// Writes the report of `run` (and of the fine-tuning runs `finetunes`) into `out`; returns
/// the files written.
/// `compare`: other pretraining runs to set beside this one (e.g. another method on the same
/// data for the same time).
pub fn write(run: &Path, finetunes: &[PathBuf], compare: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    let recipe = crate::recipe::load_pretraining_run(run, "run")?;
    let (steps, epochs) = records::read_steps_and_epochs(&run.join("metrics.jsonl"))?;
    let probes: std::collections::BTreeMap<String, ProbeEntry> = read(run, "probe")?;
    let knns: std::collections::BTreeMap<String, KnnEntry> = read(run, "knn")?;
    let fts = finetunes.iter().map(|d| load_finetune(d)).collect::<Result<Vec<_>>>()?;
    let compared = compare.iter().map(|d| load_compared(d)).collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(out).at(out)?;
    let mut blocks = Vec::new();
    let method = recipe.method()?;
    let title = format!("{} report: {}", method.name(), recipe.name);
    blocks.push(Block::Heading(1, title.clone()));
    let wall = epochs.last().map_or(0.0, |e| e.elapsed_s);
    blocks.push(Block::Paragraph(format!(
        "Model `{}` pretrained with {} on `{}` split `{}` for {} of {} epochs \
         ({} steps of {} images, {} views each) in {:.1} min; optimiser {:?}, peak learning rate {:.3}.",
        recipe.model, method.summary(), recipe.data.file.display(), recipe.data.split,
        epochs.len(), recipe.epochs, steps.len(), recipe.batch_size, method.views(&recipe.augment).len(), wall / 60.0, recipe.optimizer.kind, recipe.peak_lr()
    )));
    if let Some(note) = collapse_note(&epochs) {
        blocks.push(Block::Paragraph(format!("**Warning: the embeddings have {note} at the last epoch; see the collapse measures below.**")));
    }

    // The comparison table.
    blocks.push(Block::Heading(2, "What pretraining bought".into()));
    let mut rows = Vec::new();
    // A result measured on an earlier backbone (e.g. before `ssl pretrain --resume --extend`)
    // says so rather than passing for this run's. A run folder kept without its weights (an
    // archived result: recipe, metrics and evaluations) has nothing to compare against.
    let now = crate::eval::frozen::file_digest(&run.join(crate::weights::BACKBONE_FILE));
    let stale = |digest: &str| if !digest.is_empty() && !now.is_empty() && digest != now { " — on an earlier backbone: run it again" } else { "" };
    for key in ["ssl", "random", "pixels"] {
        let name = source_name(key, method.name());
        let p = probes.get(key);
        let k = knns.get(key);
        rows.push(vec![name.clone(), format!("linear probe (frozen){}", stale(p.map_or("", |p| &p.backbone))), pct(p.map(|p| p.test.top1)), pct(p.map(|p| p.test.top5))]);
        rows.push(vec![name.clone(), format!("weighted kNN (k = {}){}", k.map_or(recipe.knn.k, |k| k.k), stale(k.map_or("", |k| &k.backbone))), pct(k.map(|k| k.test.top1)), "–".into()]);
        let belongs = |f: &&Finetune| match key {
            "ssl" => loaded_from(f, run),
            "random" => f.recipe.pretrained.is_none(),
            _ => false,
        };
        for f in fts.iter().filter(belongs) {
            rows.push(finetune_row(name.clone(), f));
        }
    }
    // Fine-tuning runs from another pretraining run's backbone, named by its method.
    for f in fts.iter().filter(|f| f.recipe.pretrained.is_some() && !loaded_from(f, run)) {
        let from = pretrained_run(f).unwrap_or_default();
        rows.push(finetune_row(format!("{} (`{}`)", init_label(f), from.display()), f));
    }
    rows.retain(|r| r[2] != "–");
    if rows.is_empty() {
        blocks.push(Block::Paragraph("No evaluation yet: run `ssl probe RUN --baselines`, `ssl knn RUN --baselines` and `ssl finetune`.".into()));
    } else {
        blocks.push(Block::Table(vec!["Backbone".into(), "Evaluation".into(), "Test top-1 (%)".into(), "Test top-5 (%)".into()], rows));
    }
    if let (Some(s), Some(r)) = (probes.get("ssl"), probes.get("random")) {
        let pix = probes.get("pixels").map_or(String::new(), |p| format!(", {:+.2} points over raw pixels", 100.0 * (s.test.top1 - p.test.top1)));
        blocks.push(Block::Paragraph(format!("**Linear probe: {:+.2} points over the random initialisation{pix}.**", 100.0 * (s.test.top1 - r.test.top1))));
    }

    if !compared.is_empty() {
        let here = Compared {
            dir: run.to_path_buf(),
            name: recipe.name.clone(),
            method: method.name().into(),
            settings: method.summary(),
            epochs: epochs.clone(),
            planned_epochs: recipe.epochs,
            probe: probes.get("ssl").cloned(),
            knn: knns.get("ssl").cloned(),
        };
        let all: Vec<Compared> = std::iter::once(here).chain(compared).collect();
        compare_section(&all, &fts, &probes, &knns, out, &mut blocks)?;
    }

    // Pretraining curves.
    blocks.push(Block::Heading(2, "Pretraining".into()));
    let loss: Vec<(f64, f64)> = steps.iter().map(|s| (s.step as f64, s.loss)).collect();
    let w = (loss.len() / 50).max(1);
    let mut loss_series = vec![Series { name: "per step".into(), points: loss.clone() }];
    if w > 1 {
        loss_series.push(Series { name: format!("moving average ({w} steps)"), points: smooth(&loss, w) });
    }
    plots::lines(&out.join("pretrain_loss.png"), &format!("{} loss", method.name()), "step", "loss", &loss_series)?;
    blocks.push(Block::Image("Pretraining loss".into(), "pretrain_loss.png".into()));
    plots::lines(&out.join("pretrain_lr.png"), "Learning rate", "step", "learning rate", &[Series { name: String::new(), points: steps.iter().map(|s| (s.step as f64, s.lr)).collect() }])?;
    blocks.push(Block::Image("Learning-rate schedule".into(), "pretrain_lr.png".into()));
    let knn_curve = epoch_points(&epochs, KNN_KEY).into_iter().map(|(x, y)| (x, 100.0 * y)).collect::<Vec<_>>();
    if !knn_curve.is_empty() {
        plots::lines(&out.join("knn.png"), "Online kNN monitor", "epoch", "kNN top-1 (%)", &[Series { name: String::new(), points: knn_curve }])?;
        blocks.push(Block::Image("kNN accuracy during pretraining".into(), "knn.png".into()));
    }
    let fixed = |key: &str, e: &EpochRecord| e.get(key).map_or("–".into(), |v| format!("{v:.3}"));
    let rows: Vec<Vec<String>> = epochs.iter().map(|e| vec![
        e.epoch.to_string(), format!("{:.4}", e.loss), pct(e.get(KNN_KEY)), pct(e.get(ONLINE_PROBE_KEY)), fixed(RANK_KEY, e), fixed(STD_KEY, e),
        format!("{:.0}", e.views_per_s.unwrap_or(0.0)), format!("{:.0}", e.elapsed_s),
    ]).collect();
    let head = ["Epoch", "Loss", "kNN top-1 (%)", "Online probe top-1 (%)", "Effective rank", "Feature std", "Views/s", "Elapsed (s)"];
    blocks.push(Block::Table(head.map(String::from).to_vec(), rows));
    blocks.push(Block::Paragraph(format!(
        "Online probe: a linear classifier trained beside pretraining on detached features, evaluated on the monitor's images. Effective rank (RankMe) of the monitor's test features, at most {}, and the per-dimension std of the L2-normalised features times sqrt(width): 0 when collapsed, 1 for zero-mean features spread over the sphere (backbone features are non-negative: spread ones score about 0.6).",
        crate::models::registry::find(&recipe.model).map_or(0, |m| m.features)
    )));

    // Frozen-feature evaluations.
    if !probes.is_empty() {
        blocks.push(Block::Heading(2, "Linear probe".into()));
        let names: Vec<String> = probes.keys().map(|k| source_name(k, method.name())).collect();
        let values: Vec<f64> = probes.values().map(|p| p.test.top1).collect();
        plots::bars(&out.join("probe.png"), "Linear probe, test top-1", "top-1 (%)", &names, &values)?;
        blocks.push(Block::Image("Linear-probe accuracy by feature source".into(), "probe.png".into()));
        let rows = probes.iter().map(|(k, p)| vec![source_name(k, method.name()), p.dim.to_string(), pct(Some(p.train.top1)), pct(Some(p.test.top1)), pct(Some(p.test.top5)), p.config.epochs.to_string()]).collect();
        blocks.push(Block::Table(vec!["Features".into(), "Width".into(), "Train top-1 (%)".into(), "Test top-1 (%)".into(), "Test top-5 (%)".into(), "Epochs".into()], rows));
    }

    // Fine-tuning curves.
    if !fts.is_empty() {
        blocks.push(Block::Heading(2, "Fine-tuning".into()));
        let series = |y: &str, scale: f64, suffix: &str| -> Vec<Series> {
            fts.iter().map(|f| Series { name: format!("{} ({}){suffix}", f.recipe.name, init_label(f)), points: epoch_points(&f.epochs, y).into_iter().map(|(x, v)| (x, v * scale)).collect() }).collect()
        };
        plots::lines(&out.join("finetune_loss.png"), "Fine-tuning training loss", "epoch", "loss", &series("loss", 1.0, ""))?;
        blocks.push(Block::Image("Fine-tuning loss".into(), "finetune_loss.png".into()));
        let mut acc = series("accuracy", 100.0, ": train");
        acc.extend(series("val_top1", 100.0, ": validation"));
        plots::lines(&out.join("finetune_accuracy.png"), "Fine-tuning accuracy", "epoch", "top-1 (%)", &acc)?;
        blocks.push(Block::Image("Fine-tuning train and validation accuracy".into(), "finetune_accuracy.png".into()));
        let rows = fts.iter().map(|f| vec![
            format!("`{}`", f.recipe.name), init_label(f), format!("{:.0}%", 100.0 * f.result.label_fraction), f.result.train_images.to_string(),
            format!("{}{}", f.result.epochs_run, if f.result.stopped_early { " (early stop)" } else { "" }), f.result.best_epoch.to_string(),
            pct(f.result.best_val_top1), pct(Some(f.result.test.top1)), pct(Some(f.result.test.top5)), format!("{:.1}", f.result.elapsed_s / 60.0),
        ]).collect();
        blocks.push(Block::Table(["Run", "Init", "Labels", "Train images", "Epochs", "Best epoch", "Val top-1 (%)", "Test top-1 (%)", "Test top-5 (%)", "Minutes"].map(String::from).to_vec(), rows));
    }

    // Per class and confusion: the best fine-tuned model, else the SimCLR probe.
    let best = fts.iter().max_by(|a, b| a.result.test.top1.total_cmp(&b.result.test.top1));
    let detail = best.map(|f| (format!("fine-tuned `{}`", f.recipe.name), f.result.test.clone(), f.result.classes.clone()))
        .or_else(|| probes.get("ssl").map(|p| (format!("the {} linear probe", method.name()), p.test.clone(), p.classes.clone())));
    if let Some((who, eval, names)) = detail {
        blocks.push(Block::Heading(2, "Per class".into()));
        blocks.push(Block::Paragraph(format!("Test accuracy per class and confusion matrix of {who}.")));
        let names = if names.len() == eval.per_class.len() { names } else { (0..eval.per_class.len()).map(|i| i.to_string()).collect() };
        // Beside a fine-tuned model, the probe's column; when the detail is the probe itself,
        // one column (not the same numbers twice).
        let beside = if best.is_some() { probes.get("ssl") } else { None };
        let mut rows = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let mut row = vec![n.clone(), pct(eval.per_class.get(i).copied())];
            if let Some(p) = beside {
                row.push(pct(p.test.per_class.get(i).copied()));
            }
            rows.push(row);
        }
        let mut header = vec!["Class".to_string(), format!("{who} (%)")];
        if beside.is_some() {
            header.push(format!("{} probe (%)", method.name()));
        }
        blocks.push(Block::Table(header, rows));
        plots::bars(&out.join("per_class.png"), "Test accuracy per class", "accuracy (%)", &names, &eval.per_class)?;
        blocks.push(Block::Image("Per-class accuracy".into(), "per_class.png".into()));
        plots::confusion(&out.join("confusion.png"), "Confusion matrix (rows: true class)", &names, &eval.confusion)?;
        blocks.push(Block::Image("Confusion matrix".into(), "confusion.png".into()));
    }

    // The embedding map.
    let cache = run.join("eval/features-ssl.h5");
    if let Some(test) = feature_cache::read(&cache, None, &["test"])?.and_then(|mut v| v.pop()) {
        if !test.y.is_empty() {
            let dim = test.dim;
            let pick = crate::data::split::random_subset(test.y.len(), MAP_POINTS, 0);
            let xs: Vec<f32> = pick.iter().flat_map(|&i| test.x[i * dim..(i + 1) * dim].iter().copied()).collect();
            let ys: Vec<u32> = pick.iter().map(|&i| test.y[i]).collect();
            let map = embedding::tsne(&xs, dim, 0);
            let names = probes.get("ssl").map(|p| p.classes.clone()).unwrap_or_else(|| (0..=ys.iter().copied().max().unwrap_or(0)).map(|c| c.to_string()).collect());
            plots::scatter(&out.join("embedding.png"), &format!("t-SNE of {} test features", method.name()), &map, &ys, &names)?;
            blocks.push(Block::Heading(2, "Embedding map".into()));
            blocks.push(Block::Paragraph(format!("t-SNE (Barnes-Hut, perplexity 30) of {} test images' frozen {} features, coloured by class.", pick.len(), method.name())));
            blocks.push(Block::Image("t-SNE of the test embeddings".into(), "embedding.png".into()));
        }
    }
    blocks.push(Block::Paragraph(format!("Made by ssl {} from `{}`{}.", env!("CARGO_PKG_VERSION"), run.display(),
        fts.iter().map(|f| format!(", `{}`", f.dir.display())).collect::<String>())));

    let md_path = out.join("report.md");
    let html_path = out.join("report.html");
    let md = document::markdown(&blocks);
    let html = document::html(&title, &blocks, out)?;
    // The plots an earlier report here linked and this one does not (its fine-tuning plots, when
    // this report is made without `--finetune`) go, so the folder holds this report's alone;
    // other files in `out` are left as they are.
    let stale: Vec<String> = std::fs::read_to_string(&md_path).map_or_else(|_| Vec::new(), |old| document::linked_images(&old))
        .into_iter()
        .filter(|f| !blocks.iter().any(|b| matches!(b, Block::Image(_, file) if file == f)))
        .collect();
    crate::fsutil::write_atomic(&md_path, md)?;
    crate::fsutil::write_atomic(&html_path, html)?;
    for f in stale {
        let path = out.join(f);
        if path.exists() {
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(vec![md_path, html_path])
}
