//! The command line: clap definitions only. `main.rs` wires each command to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Self-supervised pretraining and fine-tuning of image classifiers.
#[derive(Parser, Debug)]
#[command(name = "ssl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads (default: one per core). Results do not depend on it.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Where models run: cpu, cuda or cuda:N (overrides a recipe's `device`; CUDA needs a
    /// binary built with `--features cuda`).
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Self-supervised pretraining from a recipe, by the method its `method:` names (`ssl methods`
    /// lists them; e.g. recipes/simclr_resnet.ron).
    Pretrain(TrainArgs),
    /// Supervised fine-tuning of a backbone with a classifier (e.g. recipes/finetune_resnet.ron).
    Finetune(TrainArgs),
    /// Linear probe on a pretraining run's frozen features (top-1, top-5 on the test split).
    Probe {
        #[command(flatten)]
        features: FeatureArgs,
        /// Training epochs over the cached features.
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        /// Peak rate (cosine to zero), SGD with Nesterov momentum.
        #[arg(long, default_value_t = 0.1)]
        lr: f64,
        #[arg(long, default_value_t = 1e-4)]
        weight_decay: f64,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
    },
    /// Weighted kNN accuracy on a pretraining run's frozen features.
    Knn {
        #[command(flatten)]
        features: FeatureArgs,
        #[arg(long, default_value_t = 200)]
        k: usize,
        #[arg(long, default_value_t = 0.1)]
        temperature: f32,
    },
    /// Write the report (Markdown, HTML, PNG plots) of a pretraining run and its evaluations.
    Report {
        /// The pretraining run folder.
        run: PathBuf,
        /// Fine-tuning run folders to include (repeatable).
        #[arg(long)]
        finetune: Vec<PathBuf>,
        /// Other pretraining run folders to compare with this one, e.g. another method
        /// (repeatable).
        #[arg(long)]
        compare: Vec<PathBuf>,
        /// Output folder (default: RUN/report).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a pretraining run's backbone for PyTorch: torchvision's tensor names and
    /// layouts (load it into scripts/torch_models.py's module with load_state_dict).
    Export {
        /// The pretraining run folder.
        run: PathBuf,
        #[arg(long, value_enum, default_value = "torch")]
        format: ExportFormatArg,
        /// Output file (default: RUN/backbone_torch.safetensors).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a pretraining run's frozen features of one split (HDF5, .npy or CSV) for your
    /// own analysis.
    Embed {
        /// The pretraining run folder.
        run: PathBuf,
        /// The split to describe.
        #[arg(long, default_value = "test")]
        split: String,
        /// Labeled or unlabeled store (default: the run's pretraining data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Output file (default: embeddings.h5, .npy or .csv by the format).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "h5")]
        format: EmbedFormatArg,
        /// Only the split's first N images (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Also write the images as the backbone saw them (resized, normalised), as
        /// `inputs` [N, C, H, W] (HDF5 only).
        #[arg(long)]
        inputs: bool,
    },
    /// Datasets: import into HDF5, inspect, preview.
    #[command(subcommand)]
    Data(DataCommand),
    /// Augmentations: preview what a recipe does to images.
    #[command(subcommand)]
    Augment(AugmentCommand),
    /// Pretraining methods: each with its paper and the recipe's `method:` at its defaults.
    Methods,
    /// Models: list them with input shape, parameters and multiply-adds, or summarise one.
    Models {
        #[command(subcommand)]
        command: Option<ModelsCommand>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Each layer's output shape, parameters and multiply-adds, and the totals.
    Summary {
        /// Model name (see `ssl models`).
        name: String,
        /// Input HxWxC (default: the model's own).
        #[arg(long, value_name = "HxWxC")]
        input: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AugmentCommand {
    /// Write a PNG: each original beside several augmented view pairs.
    Preview {
        /// The store (.h5).
        file: PathBuf,
        /// Recipe whose `augment` section to use (default: SimCLR's).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Output PNG.
        #[arg(long, default_value = "views.png")]
        out: PathBuf,
        /// Split to show (default: the first).
        #[arg(long)]
        split: Option<String>,
        /// Number of original images (rows).
        #[arg(long, default_value_t = 8)]
        count: usize,
        /// View pairs per image.
        #[arg(long, default_value_t = 3)]
        pairs: usize,
        /// Seed of the picks and the views.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Import a dataset into an HDF5 store.
    Import(ImportArgs),
    /// Divide a split into new ones (e.g. train into train and test): stratified by class when
    /// labeled, the same on every machine for a seed; the store is rewritten atomically.
    Split {
        /// The store (.h5), changed in place.
        file: PathBuf,
        /// The split to divide.
        #[arg(long, default_value = "train")]
        from: String,
        /// Names of the new splits, comma-separated (the divided split's own name may be one).
        #[arg(long, value_delimiter = ',', required = true)]
        into: Vec<String>,
        /// Their shares, comma-separated, summing to 1 (e.g. 0.8,0.2).
        #[arg(long, value_delimiter = ',', required = true)]
        fractions: Vec<f64>,
        /// Seed of the division.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace existing splits that --into names.
        #[arg(long)]
        force: bool,
    },
    /// Show a store's splits, counts, shapes, classes and statistics.
    Info {
        /// The store (.h5).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a PNG grid of images with their class names.
    Preview {
        /// The store (.h5).
        file: PathBuf,
        /// Output PNG.
        #[arg(long, default_value = "preview.png")]
        out: PathBuf,
        /// Split to show (default: the first).
        #[arg(long)]
        split: Option<String>,
        /// Number of images.
        #[arg(long, default_value_t = 64)]
        count: usize,
        /// Images per row.
        #[arg(long, default_value_t = 8)]
        cols: usize,
        /// Seed of the random pick.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Formats of `ssl export`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormatArg {
    /// safetensors with PyTorch's names (torchvision's for the ResNets).
    Torch,
}

/// Formats of `ssl embed`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EmbedFormatArg {
    /// HDF5: features, indices, labels, classes (and inputs), with attributes.
    H5,
    /// NumPy .npy: features in OUT, labels in OUT_labels.npy.
    Npy,
    /// CSV: index, label, then one column per feature.
    Csv,
}

/// Source formats of `ssl data import`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    /// MNIST-style IDX files (raw or .gz): train and t10k images and labels.
    Idx,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// CIFAR-100 binary batches.
    Cifar100,
    /// STL-10 binary files, including the unlabeled split.
    Stl10,
    /// A folder of images: one subfolder per class, or flat for unlabeled data.
    Folder,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Source format.
    pub format: FormatArg,
    /// Source folder.
    pub src: PathBuf,
    /// Output store (.h5).
    pub out: PathBuf,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Resize every image to HxW (folder imports), e.g. 64x64.
    #[arg(long, value_name = "HxW")]
    pub size: Option<String>,
    /// Store images as one gray channel (folder imports).
    #[arg(long)]
    pub grayscale: bool,
    /// Comma-separated class names replacing the format's own.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The recipe (RON). With --resume, the run's saved recipe is used when none is given.
    pub recipe: Option<PathBuf>,
    /// Override a recipe field, e.g. --set lr.base=0.5 --set optimizer.kind=Sgd (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Continue the run in this folder from its newest checkpoint.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,
    /// Replace the run folder if it exists.
    #[arg(long)]
    pub force: bool,
    /// With --resume: let the recipe's `epochs` (and fine-tuning's `min_steps`) change; the
    /// learning-rate schedule is recomputed from there, and the change is announced and
    /// recorded in RUN/recipe_history.jsonl.
    #[arg(long)]
    pub extend: bool,
    /// Stop as Ctrl-C would after this many steps of the whole run (for tests).
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
}

/// Which frozen features to evaluate.
#[derive(Args, Debug)]
pub struct FeatureArgs {
    /// The pretraining run folder.
    pub run: PathBuf,
    /// Also evaluate the baselines: the random initialisation and the raw pixels.
    #[arg(long)]
    pub baselines: bool,
    /// Labeled store (default: the run's pretraining data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "train")]
    pub train_split: String,
    #[arg(long, default_value = "test")]
    pub test_split: String,
    /// Use a random subset of this many training images (0: all).
    #[arg(long, default_value_t = 0)]
    pub max_train: usize,
}
