//! Datasets: the HDF5 store, importers for the formats the field uses, in-memory splits and
//! deterministic index splits.
//!
//! Images are u8 `[N, H, W, C]` everywhere in this module; conversion to f32 happens in
//! `augment`.

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod import;
pub mod preview;
pub mod source;
pub mod split;
pub mod split_file;
pub mod stl10;
pub mod store;

pub use split::{stratified_fraction, stratified_split, train_val_split};
pub use store::{Store, StoreInfo, StoreWriter};

/// Height, width and channels of every image in a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl ImageShape {
    /// Bytes of one u8 image.
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }
    /// True for a zero-sized shape.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)
    }
}

/// One split held in memory: a whole Fashion-MNIST split is 47 MB, and random minibatches are
/// gathered from here rather than read one by one from HDF5.
#[derive(Clone, Debug)]
pub struct Split {
    pub name: String,
    pub shape: ImageShape,
    /// `len() * shape.len()` bytes, image after image, each H x W x C.
    pub images: Vec<u8>,
    /// One label per image, `None` for unlabeled data.
    pub labels: Option<Vec<u32>>,
    /// The store's class names (shared by all splits of a file).
    pub classes: Vec<String>,
    /// Per-channel mean and std of the pixels, in [0, 1] units.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Split {
    /// The labels, or an error naming `field` and the store `file` when the split has none.
    pub fn labels_for(&self, file: &std::path::Path, field: &str) -> crate::Result<&[u32]> {
        self.labels.as_deref().ok_or_else(|| {
            crate::Error::invalid(field, format!("split '{}' of {} has no labels; fine-tuning and probing need labels", self.name, file.display()))
        })
    }

    /// Number of classes of a labeled split: its class names, or one past the largest label.
    pub fn class_count(&self) -> usize {
        let labels = self.labels.as_deref().unwrap_or_default();
        self.classes.len().max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len() / self.shape.len().max(1)
    }
    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.len();
        &self.images[i * n..(i + 1) * n]
    }
    /// Copies the images at `indices` one after another into `out` (resized to fit).
    pub fn gather_into(&self, indices: &[usize], out: &mut Vec<u8>) {
        let n = self.shape.len();
        out.clear();
        out.reserve(indices.len() * n);
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
    }
    /// What a picture of image `i` is captioned with: its class name, or `#i` when unlabeled.
    pub fn caption(&self, i: usize) -> String {
        match &self.labels {
            Some(l) => self.classes[l[i] as usize].clone(),
            None => format!("#{i}"),
        }
    }
    /// The labels at `indices`, if the split is labeled.
    pub fn labels_at(&self, indices: &[usize]) -> Option<Vec<u32>> {
        self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect())
    }
    /// `n` images of uniformly random pixels, unlabeled, with mean and std 0.5: synthetic data
    /// for benchmarks and tests.
    pub fn random(n: usize, shape: ImageShape, seed: u64) -> Split {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Split {
            name: "random".into(),
            shape,
            images: (0..n * shape.len()).map(|_| rng.gen()).collect(),
            labels: None,
            classes: Vec::new(),
            mean: vec![0.5; shape.channels],
            std: vec![0.5; shape.channels],
        }
    }

    /// A new split holding only the images at `indices`, in that order.
    pub fn subset(&self, name: &str, indices: &[usize]) -> Split {
        let mut images = Vec::new();
        self.gather_into(indices, &mut images);
        Split {
            name: name.to_string(),
            shape: self.shape,
            images,
            labels: self.labels_at(indices),
            classes: self.classes.clone(),
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
    }
}
