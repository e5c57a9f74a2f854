//! A run folder, the one place its layout is known: `RUN/recipe.ron` (the resolved recipe),
//! `metrics.jsonl` (typed records, [`records`]), `checkpoints/step-NNNNNNNN/` ([`checkpoint`]),
//! `backbone.safetensors` ([`BACKBONE_FILE`]), `eval/` (probe and kNN results, cached
//! features) and `report/`. Training writes runs and evaluation reads them; both go through
//! this module, so neither imports the other.

pub mod checkpoint;
pub mod export;
pub mod folder;
pub mod records;

pub use crate::weights::BACKBONE_FILE;
