//! The `ssl` binary: parses the command line, calls the library, prints one clear line on error.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{AugmentCommand, Cli, Command, DataCommand, EmbedFormatArg, ExportFormatArg, FormatArg, ImportArgs, ModelsCommand, TrainArgs};
use ssl::data::import::{import, Format, ImportOptions};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl::augment::{AugmentConfig, Pipeline};
use ssl::data::Store;
use ssl::models::registry;
use ssl::models::summary::totals;
use ssl::{Error, Result};

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`ssl models | head`), as Unix tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    ssl::alloc::keep_freed_memory();
    // Started by `mpirun` / `srun`: one rank of a data-parallel job.
    #[cfg(feature = "mpi")]
    if let Some(world) = ssl::dist::mpi::MpiWorld::init() {
        return ssl::dist::with_group(Box::new(world), main_of_rank);
    }
    #[cfg(not(feature = "mpi"))]
    if ssl::dist::launched_ranks() > 1 {
        say(&format!("error: started as one of {} MPI ranks, but this ssl was built without MPI (build with the default feature `mpi`)", ssl::dist::launched_ranks()));
        return ExitCode::FAILURE;
    }
    main_of_rank()
}

/// The command, on one process or as one rank of a job: rank 0 prints, and a rank that fails
/// prints one line and ends the whole job (the others would wait for it forever).
fn main_of_rank() -> ExitCode {
    let (rank, ranks) = ssl::dist::rank_and_size();
    // The library prints nothing itself: its messages and progress bars come here.
    let message: Box<dyn Fn(&str) + Send + Sync> = if rank == 0 { Box::new(|line| println!("{line}")) } else { Box::new(|_| {}) };
    ssl::progress::set_reporter(ssl::progress::Reporter { message, bars: rank == 0 });
    let cli = Cli::parse();
    if let Err(e) = ssl::simd::kernels_asked() {
        // Every rank meets it; rank 0 says it.
        if rank == 0 {
            say(&format!("error: {e}"));
        }
        return ExitCode::FAILURE;
    }
    if let Some(n) = cli.threads {
        if n == 0 {
            say("error: --threads: must be at least 1");
            return ExitCode::FAILURE;
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            say(&format!("error: --threads: {e}"));
            return ExitCode::FAILURE;
        }
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) if ranks > 1 => {
            // An error every rank meets (a bad recipe) is said once, by rank 0: the others wait
            // a moment, in which rank 0's abort ends them. A rank that fails alone says so.
            if rank > 0 {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            say(&format!("error (rank {rank} of {ranks}): {e}"));
            match ssl::dist::current() {
                Some(g) => g.comm().abort(1),
                None => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            say(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes `line` and a newline to standard error in one write: under `mpirun`, whose own
/// messages (an abort's banner) share the stream, a line written in pieces (as `eprintln!`
/// writes its format's parts) could be cut by them.
fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
}

fn run(cli: Cli) -> Result<ExitCode> {
    let device: Option<ssl::device::DeviceSpec> = cli.device.as_deref().map(str::parse).transpose()?;
    if let Some(d) = device {
        if !matches!(cli.command, Command::Pretrain(_) | Command::Finetune(_) | Command::Probe { .. } | Command::Knn { .. }) {
            return Err(Error::invalid("--device", "this command runs no model (it applies to pretrain, finetune, probe and knn)"));
        }
        d.check()?;
    }
    let ranks = ssl::dist::rank_and_size().1;
    if ranks > 1 && !matches!(cli.command, Command::Pretrain(_) | Command::Finetune(_)) {
        return Err(Error::invalid("mpirun", format!("{ranks} ranks: only `ssl pretrain` and `ssl finetune` run data-parallel; run this command as one process")));
    }
    match cli.command {
        Command::Pretrain(a) => train_command(a, device, |r: &ssl::recipe::PretrainRecipe, o| {
            use ssl::models::encoder::Monitor;
            let knn = |store: &_, split: &_| Ok(ssl::eval::monitor::KnnMonitor::for_recipe(r, store, split)?.map(|m| Box::new(m) as Box<dyn Monitor>));
            ssl::train::pretrain(r, o, &knn)
        }),
        Command::Finetune(a) => train_command(a, device, ssl::train::finetune),
        other => run_tool(other, device.unwrap_or_default()).map(|()| ExitCode::SUCCESS),
    }
}

/// `ssl pretrain` and `ssl finetune`: exit 130 when stopped by Ctrl-C (after saving a
/// checkpoint).
fn train_command<R: serde::Serialize + serde::de::DeserializeOwned>(
    mut a: TrainArgs,
    device: Option<ssl::device::DeviceSpec>,
    go: impl FnOnce(&R, &ssl::train::RunOptions) -> Result<ssl::train::Outcome>,
) -> Result<ExitCode> {
    use ssl::train::{Outcome, RunOptions};
    if let Some(d) = device {
        a.set.push(format!("device={:?}", d.to_string()));
    }
    let recipe: R = match (&a.recipe, &a.resume) {
        (Some(path), _) => ssl::recipe::load(path, &a.set)?,
        (None, Some(run)) => ssl::recipe::load(&run.join("recipe.ron"), &a.set)?,
        (None, None) => return Err(Error::invalid("recipe", "give a recipe file (e.g. recipes/simclr_resnet.ron) or --resume RUN")),
    };
    let opts = RunOptions { resume: a.resume, force: a.force, stop_after: a.stop_after_steps, extend: a.extend };
    match go(&recipe, &opts)? {
        Outcome::Finished { summary, .. } => {
            if !summary.is_empty() {
                ssl::progress::message(&summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted { run, checkpoint, step } => {
            let cmd = std::env::args().find(|a| a == "pretrain" || a == "finetune").unwrap_or_default();
            let (rank, ranks) = ssl::dist::rank_and_size();
            let launcher = if ranks > 1 { format!("mpirun -np {ranks} ") } else { String::new() };
            if rank == 0 {
                say(&format!("stopped at step {step}: saved {}; continue with: {launcher}ssl {cmd} --resume {}", checkpoint.display(), run.display()));
            }
            Ok(ExitCode::from(130))
        }
    }
}

fn run_tool(command: Command, device: ssl::device::DeviceSpec) -> Result<()> {
    match command {
        Command::Pretrain(_) | Command::Finetune(_) => Err(Error::invalid("command", "training commands run through train_command")),
        Command::Probe { features, epochs, lr, weight_decay, batch_size } => {
            at_least_one(&[("--epochs", epochs), ("--batch-size", batch_size)])?;
            let (sources, req) = feature_request(&features, device);
            let cfg = ssl::eval::probe::ProbeConfig { epochs, lr, weight_decay, batch_size, seed: 0 };
            for (source, e) in ssl::eval::on_run::probe_run(&features.run, &sources, &req, cfg)? {
                println!("probe {:>6}: test top-1 {:.2}%, top-5 {:.2}% (train top-1 {:.2}%, {} features)", source.key(), 100.0 * e.test.top1, 100.0 * e.test.top5, 100.0 * e.train.top1, e.dim);
            }
            println!("wrote {}", features.run.join("eval/probe.json").display());
            Ok(())
        }
        Command::Knn { features, k, temperature } => {
            let (sources, req) = feature_request(&features, device);
            for (source, e) in ssl::eval::on_run::knn_run(&features.run, &sources, &req, ssl::eval::KnnParams { k, temperature })? {
                println!("knn {:>6}: test top-1 {:.2}% (k {k}, temperature {temperature}, {} neighbours to choose from)", source.key(), 100.0 * e.test.top1, e.train_images);
            }
            println!("wrote {}", features.run.join("eval/knn.json").display());
            Ok(())
        }
        Command::Report { run, finetune, compare, out } => {
            let out = out.unwrap_or_else(|| run.join("report"));
            let written = ssl::report::write(&run, &finetune, &compare, &out)?;
            written.iter().for_each(|p| println!("wrote {}", p.display()));
            Ok(())
        }
        Command::Export { run, format, out } => {
            let out = out.unwrap_or_else(|| run.join("backbone_torch.safetensors"));
            let format = match format {
                ExportFormatArg::Torch => ssl::run::export::ExportFormat::Torch,
            };
            let e = ssl::run::export::export(&run, format, &out)?;
            println!("wrote {}: {} tensors, {} parameters; in PyTorch: m = {}; m.load_state_dict(safetensors.torch.load_file(\"{}\")) (scripts/torch_models.py)", out.display(), e.tensors, group(e.parameters as u64), e.definition, out.display());
            Ok(())
        }
        Command::Embed { run, split, data, out, format, limit, inputs } => {
            use ssl::eval::embed::{EmbedFormat, EmbedRequest};
            let (format, ext) = match format {
                EmbedFormatArg::H5 => (EmbedFormat::Hdf5, "h5"),
                EmbedFormatArg::Npy => (EmbedFormat::Npy, "npy"),
                EmbedFormatArg::Csv => (EmbedFormat::Csv, "csv"),
            };
            let out = out.unwrap_or_else(|| format!("embeddings.{ext}").into());
            let (e, written) = ssl::eval::embed::embed_to(&run, &EmbedRequest { data, split, limit, inputs, device }, format, &out)?;
            for p in written {
                println!("wrote {}", p.display());
            }
            println!("{} images of split {}, {} features each ({} backbone of {})", e.indices.len(), e.split, e.dim, e.method, e.model);
            Ok(())
        }
        Command::Data(DataCommand::Import(args)) => data_import(args),
        Command::Data(DataCommand::Info { file, json }) => data_info(&file, json),
        Command::Data(DataCommand::Split { file, from, into, fractions, seed, force }) => {
            let req = ssl::data::split_file::SplitRequest { from, into, fractions, seed, force };
            let sizes = ssl::data::split_file::split_store(&file, &req)?;
            let parts: Vec<String> = sizes.iter().map(|(n, k)| format!("{n} {k}")).collect();
            println!("split '{}' of {} into {}", req.from, file.display(), parts.join(", "));
            Ok(())
        }
        Command::Data(DataCommand::Preview { file, out, split, count, cols, seed }) => {
            at_least_one(&[("--count", count), ("--cols", cols)])?;
            ssl::data::preview::preview(&load_split(&file, split)?, count, cols, seed, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Augment(AugmentCommand::Preview { file, recipe, out, split, count, pairs, seed }) => {
            at_least_one(&[("--count", count), ("--pairs", pairs)])?;
            let cfg = match recipe {
                Some(r) => ssl::recipe::augment_of(&r)?,
                None => AugmentConfig::simclr(),
            };
            let split = load_split(&file, split)?;
            let pipeline = Pipeline::for_split(cfg, &split)?;
            let picks = sample(&mut ChaCha8Rng::seed_from_u64(seed), split.len(), count.min(split.len())).into_vec();
            ssl::augment::preview::preview(&pipeline, &split, &picks, pairs, seed, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Methods => {
            for m in ssl::method::MethodConfig::all() {
                let info = m.info();
                println!("{}: {}\n    method: {}\n", info.name, info.paper, info.defaults.replace('\n', "\n    "));
            }
            Ok(())
        }
        Command::Models { command: None } => {
            println!("{:<22} {:>9} {:>9} {:>12} {:>15}  description", "model", "input", "features", "params", "MACs");
            for m in registry::MODELS {
                let (params, macs) = totals(&registry::summary(m.name, m.input)?);
                println!("{:<22} {:>9} {:>9} {:>12} {:>15}  {}", m.name, m.input.to_string(), m.features, group(params as u64), group(macs), m.description);
            }
            Ok(())
        }
        Command::Models { command: Some(ModelsCommand::Summary { name, input }) } => {
            let shape = match input {
                Some(s) => parse_shape(&s)?,
                None => registry::find(&name)?.input,
            };
            let rows = registry::summary(&name, shape)?;
            println!("{name} on {shape} (HxWxC)");
            println!("{:<4} {:<36} {:>12} {:>12} {:>15}", "#", "layer", "output", "params", "MACs");
            for (i, r) in rows.iter().enumerate() {
                println!("{:<4} {:<36} {:>12} {:>12} {:>15}", i, r.layer, r.output.to_string(), group(r.params as u64), group(r.macs));
            }
            let (params, macs) = totals(&rows);
            println!("total: {} parameters, {} multiply-adds", group(params as u64), group(macs));
            Ok(())
        }
    }
}

/// Refuses a count flag set to 0 where 0 would mean nothing (rather than quietly using 1).
fn at_least_one(flags: &[(&str, usize)]) -> Result<()> {
    match flags.iter().find(|(_, v)| *v == 0) {
        Some((flag, _)) => Err(Error::invalid(*flag, "must be at least 1")),
        None => Ok(()),
    }
}

/// 1234567 -> "1,234,567".
fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Parses `AxB[xC...]` into exactly `N` positive integers, naming `flag`, `form` and an example
/// on error.
fn parse_dims<const N: usize>(flag: &str, form: &str, example: &str, s: &str) -> Result<[usize; N]> {
    let bad = || Error::invalid(flag, format!("'{s}' is not {form} with positive integers, e.g. {example}"));
    let parts: Vec<usize> = s.split(['x', 'X']).map(|p| p.trim().parse().map_err(|_| bad())).collect::<Result<_>>()?;
    let dims: [usize; N] = parts.try_into().map_err(|_| bad())?;
    if dims.contains(&0) {
        return Err(bad());
    }
    Ok(dims)
}

fn parse_shape(s: &str) -> Result<ssl::data::ImageShape> {
    let [height, width, channels] = parse_dims("--input", "HxWxC", "32x32x3", s)?;
    Ok(ssl::data::ImageShape { height, width, channels })
}

/// Loads split `name` of a store, or its first split.
fn load_split(file: &std::path::Path, name: Option<String>) -> Result<ssl::data::Split> {
    let store = Store::open(file)?;
    let name = match name {
        Some(s) => s,
        None => store.split_names()?.into_iter().next().ok_or_else(|| Error::bad_input(file, "no splits"))?,
    };
    store.load_split(&name)
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let [h, w] = parse_dims("--size", "HxW", "64x64", s)?;
    let max = ssl::data::folder::MAX_SIDE as usize;
    if h > max || w > max {
        return Err(Error::invalid("--size", format!("'{s}' exceeds the {max} pixel limit")));
    }
    Ok((h as u32, w as u32))
}

fn data_import(args: ImportArgs) -> Result<()> {
    let format = match args.format {
        FormatArg::Idx => Format::Idx,
        FormatArg::Cifar10 => Format::Cifar10,
        FormatArg::Cifar100 => Format::Cifar100,
        FormatArg::Stl10 => Format::Stl10,
        FormatArg::Folder => Format::Folder,
    };
    let opts = ImportOptions {
        force: args.force,
        resize: args.size.as_deref().map(parse_size).transpose()?,
        grayscale: args.grayscale,
        classes: args.classes,
    };
    let t0 = std::time::Instant::now();
    let imported = import(format, &args.src, &args.out, &opts)?;
    let splits: Vec<String> = imported.splits.iter().map(|(n, k)| format!("{n} {k}")).collect();
    println!("imported {} into {} ({}) in {:.1} s", args.src.display(), args.out.display(), splits.join(", "), t0.elapsed().as_secs_f64());
    Ok(())
}

fn data_info(file: &std::path::Path, json: bool) -> Result<()> {
    let info = Store::open(file)?.info()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info).expect("info serialises"));
        return Ok(());
    }
    println!("{}", info.path.display());
    println!("  source: {} {}", info.source_format, info.source_path);
    println!("  imported: {} by {}", info.import_time, info.tool_version);
    info.history.iter().for_each(|h| println!("  then: {h}"));
    println!("  classes ({}): {}", info.classes.len(), info.classes.join(", "));
    for s in &info.splits {
        let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
        println!("  split {}: {} images of {} (HxWxC), mean [{}], std [{}]", s.name, s.len, s.shape, fmt(&s.mean), fmt(&s.std));
        if let Some(counts) = &s.class_counts {
            let per: Vec<String> = info.classes.iter().zip(counts).map(|(c, n)| format!("{c} {n}")).collect();
            println!("    per class: {}", per.join(", "));
        } else {
            println!("    unlabeled");
        }
    }
    Ok(())
}

fn feature_request(a: &cli::FeatureArgs, device: ssl::device::DeviceSpec) -> (Vec<ssl::eval::frozen::Source>, ssl::eval::frozen::FeatureRequest) {
    use ssl::eval::frozen::{FeatureRequest, Source};
    let sources = if a.baselines { vec![Source::Pretrained, Source::RandomInit, Source::Pixels] } else { vec![Source::Pretrained] };
    let req = FeatureRequest { data: a.data.clone(), train_split: a.train_split.clone(), test_split: a.test_split.clone(), max_train: a.max_train, device };
    (sources, req)
}
