//! Typed errors of the library. Every variant names the file or field it is about, so the CLI
//! can print one clear line.

use std::path::{Path, PathBuf};

/// The library's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The input exists but its content is not what its format promises.
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    /// An output file exists and overwriting was not asked for.
    #[error("{}: output file already exists (pass --force to overwrite it)", path.display())]
    OutputExists { path: PathBuf },
    /// The HDF5 library refused an operation.
    #[error("{}: HDF5: {source}", path.display())]
    Hdf5 { path: PathBuf, source: hdf5::Error },
    /// An image could not be decoded or encoded.
    #[error("{}: {source}", path.display())]
    Image { path: PathBuf, source: image::ImageError },
    /// A parameter given by the user is out of its domain.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    /// The device (CPU allocator, CUDA) failed during `during`, e.g. out of memory.
    #[error("device error during {during}: {reason}")]
    Device { during: String, reason: String },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A content error about `path`.
    pub fn bad_input(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::BadInput { path: path.as_ref().to_path_buf(), reason: reason.into() }
    }
    /// A device failure during `during` (`e`: the device's own error).
    pub fn device(during: impl Into<String>, e: impl std::fmt::Debug) -> Self {
        Error::Device { during: during.into(), reason: format!("{e:?}") }
    }
    /// A parameter error: `what` names the parameter.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), reason: reason.into() }
    }
    /// The same error about the recipe field `field` (a parameter error is renamed, others
    /// are prefixed).
    pub fn for_field(self, field: &str) -> Self {
        match self {
            Error::Invalid { reason, .. } => Error::invalid(field, reason),
            other => Error::invalid(field, other.to_string()),
        }
    }
}

/// Attaches a path to lower-level errors.
pub trait Context<T> {
    /// Names the file the error is about.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.as_ref().to_path_buf(), source })
    }
}

impl<T> Context<T> for std::result::Result<T, hdf5::Error> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::Hdf5 { path: path.as_ref().to_path_buf(), source })
    }
}

impl<T> Context<T> for std::result::Result<T, image::ImageError> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::Image { path: path.as_ref().to_path_buf(), source })
    }
}
