//! `ssl data split`: divides one split of a store into new splits (e.g. a folder import's single
//! `train` into `train` and `test`), stratified by class when labeled, deterministic from a
//! seed on every machine. The store is rewritten through a temporary file renamed over it, so a
//! refused or failed split leaves it byte for byte as it was; the change is recorded in the
//! store's history.

use std::path::Path;

use super::split::stratified_split;
use super::store::{Provenance, Store, StoreWriter};
use crate::error::{Error, Result};

/// What to divide and how.
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// The split to divide.
    pub from: String,
    /// The new splits' names (`from` itself may be one of them).
    pub into: Vec<String>,
    /// Their shares of `from`'s images, each in (0, 1), summing to 1.
    pub fractions: Vec<f64>,
    pub seed: u64,
    /// Replace splits of the store that `into` names (other than `from`).
    pub force: bool,
}

/// Divides split `req.from` of the store at `path`; returns each new split's name and size.
///
/// Errors: an unknown `from`, `into` and `fractions` of different lengths, repeated or empty
/// names, fractions outside (0, 1) or not summing to 1, a part left empty, an existing split
/// named in `into` without `force`; each names the flag at fault.
pub fn split_store(path: &Path, req: &SplitRequest) -> Result<Vec<(String, usize)>> {
    if req.into.len() != req.fractions.len() {
        return Err(Error::invalid("--into", format!("names {} splits, --fractions gives {} fractions", req.into.len(), req.fractions.len())));
    }
    for (i, name) in req.into.iter().enumerate() {
        if name.is_empty() || name.contains('/') || name == "classes" {
            return Err(Error::invalid("--into", format!("'{name}' is not a split name")));
        }
        if req.into[..i].contains(name) {
            return Err(Error::invalid("--into", format!("'{name}' is named twice")));
        }
    }
    let store = Store::open(path)?;
    let info = store.info()?;
    let names: Vec<String> = info.splits.iter().map(|s| s.name.clone()).collect();
    if !names.contains(&req.from) {
        return Err(Error::invalid("--from", format!("{} has no split named '{}' (splits: {})", path.display(), req.from, names.join(", "))));
    }
    let replaced: Vec<&String> = req.into.iter().filter(|n| **n != req.from && names.contains(n)).collect();
    match replaced.first() {
        Some(clash) if !req.force => {
            return Err(Error::invalid("--into", format!("{} already has a split '{clash}'; replace it with --force", path.display())));
        }
        None if req.force => return Err(Error::invalid("--force", "no existing split is replaced (--into names none but --from)")),
        _ => {}
    }
    let source = store.load_split(&req.from)?;
    let parts = stratified_split(source.labels.as_deref(), source.len(), &req.fractions, req.seed).map_err(|e| e.for_field("--fractions"))?;

    let fractions: Vec<String> = req.fractions.iter().map(|f| f.to_string()).collect();
    let sizes: Vec<(String, usize)> = req.into.iter().cloned().zip(parts.iter().map(Vec::len)).collect();
    let line = format!(
        "split '{}' ({} images) into {} with fractions {}, seed {}, {} at {} by ssl {}",
        req.from,
        source.len(),
        sizes.iter().map(|(n, k)| format!("{n} {k}")).collect::<Vec<_>>().join(", "),
        fractions.join(","),
        req.seed,
        if source.labels.is_some() { "stratified by class" } else { "unlabeled, at random" },
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        env!("CARGO_PKG_VERSION")
    );
    let line = if replaced.is_empty() {
        line
    } else {
        format!("{line}, replacing the earlier {}", replaced.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "))
    };
    let mut history = info.history.clone();
    history.push(line);
    let prov = Provenance { format: info.source_format.clone(), source: info.source_path.clone().into() };
    let mut writer = StoreWriter::create_with_history(path, true, &prov, &info.import_time, &history, &info.classes)?;
    for name in &names {
        if *name == req.from {
            for (into, idx) in req.into.iter().zip(&parts) {
                let part = source.subset(into, idx);
                writer.add_split_from(into, part.shape, &part.images, part.labels.as_deref())?;
            }
        } else if !req.into.contains(name) {
            let split = store.load_split(name)?;
            writer.add_split_from(name, split.shape, &split.images, split.labels.as_deref())?;
        }
    }
    drop(store);
    writer.finish()?;
    Ok(sizes)
}
