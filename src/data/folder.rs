//! Image folders: one subfolder per class gives a labeled `train` split; a flat folder gives an
//! `unlabeled` split. Any format the `image` crate reads. Images of differing sizes are resized
//! to a size the user names, or rejected; they are never silently mixed.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits};
use rayon::prelude::*;

use super::import::{ImportOptions, Imported};
use super::store::{Provenance, StoreWriter};
use super::ImageShape;
use crate::error::{Context, Error, Result};

/// Largest width or height accepted from an image header.
pub const MAX_SIDE: u32 = 16384;
/// Largest decoding allocation for one image.
pub const MAX_ALLOC: u64 = 256 << 20;

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The image files below `dir`, sorted, following symlinks and refusing loops.
fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            match e.loop_ancestor() {
                Some(a) => Error::bad_input(&path, format!("symlink loop back to {}", a.display())),
                None => Error::bad_input(&path, format!("cannot be read ({e})")),
            }
        })?;
        if entry.file_type().is_file() && !is_hidden(entry.path()) {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// Decodes one image under the size limits, as 1 or 3 channels, as a viewer shows it: the EXIF
/// orientation (JPEG, TIFF, WebP) is applied, as PIL's `ImageOps.exif_transpose` does.
pub fn decode(path: &Path, channels: usize) -> Result<DynamicImage> {
    let mut reader = ImageReader::open(path).at(path)?.with_guessed_format().at(path)?;
    if reader.format().is_none() {
        return Err(Error::bad_input(path, "not an image file (unrecognised format)"));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let refused = |e: ImageError| match e {
        ImageError::Limits(_) => Error::bad_input(
            path,
            format!("image exceeds the size limit ({MAX_SIDE}x{MAX_SIDE}, {} MiB); refused", MAX_ALLOC >> 20),
        ),
        other => Error::bad_input(path, format!("not a readable image ({other})")),
    };
    let mut decoder = reader.into_decoder().map_err(refused)?;
    if decoder.total_bytes() > MAX_ALLOC {
        return Err(refused(ImageError::Limits(image::error::LimitError::from_kind(image::error::LimitErrorKind::InsufficientMemory))));
    }
    let orientation = decoder.orientation().map_err(refused)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(refused)?;
    img.apply_orientation(orientation);
    Ok(if channels == 1 { DynamicImage::ImageLuma8(img.to_luma8()) } else { DynamicImage::ImageRgb8(img.to_rgb8()) })
}

fn load_all(files: &[PathBuf], channels: usize, resize: Option<(u32, u32)>) -> Result<(ImageShape, Vec<u8>)> {
    let bar = crate::progress::bar(files.len() as u64, "decoding images");
    let decoded: Vec<Result<DynamicImage>> = files
        .par_iter()
        .map(|p| {
            let img = decode(p, channels);
            bar.inc(1);
            img.map(|i| match resize {
                Some((h, w)) if (i.height(), i.width()) != (h, w) => {
                    i.resize_exact(w, h, image::imageops::FilterType::Triangle)
                }
                _ => i,
            })
        })
        .collect();
    bar.finish_and_clear();
    let mut shape = None;
    let mut bytes = Vec::new();
    for (img, path) in decoded.into_iter().zip(files) {
        let img = img?;
        let this = ImageShape { height: img.height() as usize, width: img.width() as usize, channels };
        let first = *shape.get_or_insert(this);
        if this != first {
            return Err(Error::bad_input(
                path,
                format!(
                    "image is {}x{}, but {} is {}x{}; pass --size HxW to resize all images",
                    this.height,
                    this.width,
                    files[0].display(),
                    first.height,
                    first.width
                ),
            ));
        }
        bytes.extend_from_slice(img.as_bytes());
    }
    Ok((shape.expect("at least one image"), bytes))
}

/// Imports an image folder.
pub fn import(src: &Path, out: &Path, opts: &ImportOptions) -> Result<Imported> {
    let meta = std::fs::metadata(src).at(src)?;
    if !meta.is_dir() {
        return Err(Error::bad_input(src, "expected a folder of images"));
    }
    let mut dirs = Vec::new();
    let mut loose = Vec::new();
    for entry in std::fs::read_dir(src).at(src)? {
        let path = entry.at(src)?.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            dirs.push(path);
        } else {
            loose.push(path);
        }
    }
    dirs.sort();
    let channels = if opts.grayscale { 1 } else { 3 };
    let (split, classes, files, labels) = if dirs.is_empty() {
        let files = files_below(src)?;
        ("unlabeled", Vec::new(), files, None)
    } else {
        if let Some(f) = loose.first() {
            return Err(Error::bad_input(f, "a file beside class folders (each class must be a subfolder)"));
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        let mut classes = Vec::new();
        for (k, d) in dirs.iter().enumerate() {
            let in_class = files_below(d)?;
            if in_class.is_empty() {
                return Err(Error::bad_input(d, "class folder holds no images"));
            }
            labels.extend(std::iter::repeat_n(k as u32, in_class.len()));
            files.extend(in_class);
            classes.push(d.file_name().unwrap().to_string_lossy().into_owned());
        }
        ("train", classes, files, Some(labels))
    };
    if files.is_empty() {
        return Err(Error::bad_input(src, "no images found in this folder"));
    }
    if labels.is_none() && opts.classes.is_some() {
        return Err(Error::invalid("--classes", format!("{} is unlabeled (no class subfolders): there are no classes to name", src.display())));
    }
    let classes = opts.class_names(classes)?;
    let (shape, bytes) = load_all(&files, channels, opts.resize)?;
    let prov = Provenance { format: "folder".into(), source: src.to_path_buf() };
    let mut writer = StoreWriter::create(out, opts.force, &prov, &classes)?;
    writer.add_split_from(split, shape, &bytes, labels.as_deref())?;
    writer.finish()?;
    Ok(Imported { splits: vec![(split.to_string(), files.len())] })
}
