//! `ssl data import`: one entry point over the importers.

use std::path::Path;
use std::str::FromStr;

use super::{cifar, folder, idx, stl10, store};
use crate::error::{Error, Result};

/// A source format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Idx,
    Cifar10,
    Cifar100,
    Stl10,
    Folder,
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "idx" => Format::Idx,
            "cifar10" => Format::Cifar10,
            "cifar100" => Format::Cifar100,
            "stl10" => Format::Stl10,
            "folder" => Format::Folder,
            other => {
                return Err(Error::invalid(
                    "FORMAT",
                    format!("unknown format '{other}' (idx, cifar10, cifar100, stl10, folder)"),
                ))
            }
        })
    }
}

/// Options shared by the importers.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Overwrite an existing output file.
    pub force: bool,
    /// Resize every image to (height, width) (folder imports).
    pub resize: Option<(u32, u32)>,
    /// Store one channel instead of three (folder imports).
    pub grayscale: bool,
    /// Class names replacing the format's own.
    pub classes: Option<Vec<String>>,
}

impl ImportOptions {
    /// The class names to store: `--classes` when given (one name per class of the dataset,
    /// else an error naming the flag), the format's own names otherwise.
    /// Names are trimmed of spaces; empty or repeated names are refused.
    pub fn class_names(&self, own: Vec<String>) -> Result<Vec<String>> {
        let names: Option<Vec<String>> = self.classes.as_ref().map(|c| c.iter().map(|n| n.trim().to_string()).collect());
        if let Some(names) = &names {
            if names.iter().any(String::is_empty) {
                return Err(Error::invalid("--classes", "has an empty name"));
            }
            if let Some((i, n)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
                return Err(Error::invalid("--classes", format!("names '{n}' twice (classes {} and {})", names.iter().position(|m| m == n).unwrap_or(0), i)));
            }
        }
        match names {
            None => Ok(own),
            Some(names) if names.len() == own.len() => Ok(names),
            Some(names) => Err(Error::invalid(
                "--classes",
                format!("gives {} names, the dataset has {} classes ({})", names.len(), own.len(), own.join(", ")),
            )),
        }
    }
}

/// What an import wrote: split names and sizes.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    pub splits: Vec<(String, usize)>,
}

/// Imports `src` in `format` into the store `out`. Nothing is written to `out` unless the whole
/// import succeeds.
pub fn import(format: Format, src: &Path, out: &Path, opts: &ImportOptions) -> Result<Imported> {
    store::check_target(out, opts.force)?;
    if format != Format::Folder {
        let flag = if opts.resize.is_some() { Some("--size") } else if opts.grayscale { Some("--grayscale") } else { None };
        if let Some(flag) = flag {
            return Err(Error::invalid(flag, "applies to folder imports only (this format's images have a fixed size and channels)"));
        }
    }
    match format {
        Format::Idx => idx::import(src, out, opts),
        Format::Cifar10 => cifar::import(src, out, cifar::Variant::Cifar10, opts),
        Format::Cifar100 => cifar::import(src, out, cifar::Variant::Cifar100, opts),
        Format::Stl10 => stl10::import(src, out, opts),
        Format::Folder => folder::import(src, out, opts),
    }
}
