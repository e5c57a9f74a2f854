//! Recipes: one RON file is a whole experiment. Every field has the paper's default, unknown
//! fields are rejected with their name and position, `--set path.to.field=value` overrides any
//! field, and the resolved recipe is what a run saves beside its results.

pub mod common;
pub mod finetune;
pub mod pretrain;

pub use finetune::FinetuneRecipe;
pub use pretrain::PretrainRecipe;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Context, Error, Result};

/// Reads a recipe file, then applies `overrides` (`path.to.field=value`, the value in RON).
pub fn load<R: Serialize + DeserializeOwned>(path: &Path, overrides: &[String]) -> Result<R> {
    let text = std::fs::read_to_string(path).at(path)?;
    let recipe: R = ron_options().from_str(&text).map_err(|e| Error::bad_input(path, format!("{e}")))?;
    if overrides.is_empty() {
        return Ok(recipe);
    }
    let mut value = serde_json::to_value(&recipe).expect("a recipe serialises");
    for o in overrides {
        if apply_override(&mut value, o)? {
            // Another variant was chosen (`method=Byol`): fill in its defaults, so that later
            // overrides find its fields.
            if let Ok(r) = serde_json::from_value::<R>(value.clone()) {
                value = serde_json::to_value(&r).expect("a recipe serialises");
            }
        }
    }
    // `None` is both an empty option and an enum variant (LrScaling::None): try each field
    // set to `None` as an empty option first, then as the variant, fewest variants first.
    let nones: Vec<&str> = overrides.iter().filter_map(|o| none_path(o)).collect();
    let mut masks: Vec<u32> = (0..1u32 << nones.len().min(8)).collect();
    masks.sort_by_key(|m| m.count_ones());
    let mut first_err = None;
    for mask in masks {
        let mut v = value.clone();
        for (_, path) in nones.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0) {
            apply_override(&mut v, &format!("{path}=\"None\""))?;
        }
        match serde_json::from_value(v) {
            Ok(r) => return Ok(r),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // Name the override at fault: the first that fails applied alone (serde's message names the
    // expected type, not the field). `None`s are left out: alone, one may fail as the wrong kind.
    let base = serde_json::to_value(&recipe).expect("a recipe serialises");
    let alone_fails = |o: &&String| {
        let mut v = base.clone();
        none_path(o).is_none() && apply_override(&mut v, o).is_ok() && serde_json::from_value::<R>(v).is_err()
    };
    let what = overrides.iter().find(alone_fails).map_or_else(|| "--set".to_string(), |o| format!("--set {o}"));
    Err(Error::invalid(what, first_err.map_or_else(String::new, |e| e.to_string())))
}

/// The field path of an override that sets `None` (`path=None`).
fn none_path(spec: &str) -> Option<&str> {
    spec.split_once('=').filter(|(_, v)| v.trim() == "None").map(|(p, _)| p)
}

/// Sets `path.to.field` in a JSON view of the recipe; the value is RON (a bare word is a string,
/// so enum variants can be named without quotes). Returns whether it chose another variant of
/// an enum holding settings.
fn apply_override(root: &mut serde_json::Value, spec: &str) -> Result<bool> {
    let (path, raw) = spec
        .split_once('=')
        .ok_or_else(|| Error::invalid("--set", format!("'{spec}' is not path.to.field=value")))?;
    let raw = raw.trim();
    let word = raw.chars().all(|c| c.is_alphanumeric() || c == '_') && raw != "None";
    let value = match ron::from_str::<serde_json::Value>(raw) {
        // RON reads a bare word as a unit value; here it names an enum variant or is a string.
        Ok(serde_json::Value::Null) | Err(_) if word => serde_json::Value::String(raw.to_string()),
        Ok(v) => v,
        Err(_) => serde_json::Value::String(raw.to_string()),
    };
    let mut node = root;
    let keys: Vec<&str> = path.trim().split('.').collect();
    for (i, key) in keys.iter().enumerate() {
        // An enum variant holding settings (`method: SimClr(...)`, in JSON {"SimClr": {...}}):
        // its fields are reached without naming the variant (`method.temperature`).
        // (`method.SimClr.temperature` names it and works too.)
        let through_variant = variant_settings_ref(node).is_some() && node.as_object().is_some_and(|m| !m.contains_key(*key));
        if through_variant {
            node = node.as_object_mut().and_then(|m| m.values_mut().next()).expect("checked above");
        }
        let map = node
            .as_object_mut()
            .ok_or_else(|| Error::invalid("--set", format!("'{}' is not a section", keys[..i].join("."))))?;
        if !map.contains_key(*key) {
            return Err(Error::invalid("--set", format!("unknown field '{}'", keys[..=i].join("."))));
        }
        if i + 1 == keys.len() {
            // Another variant by name (`method=Byol`) starts from that variant's defaults.
            let (value, switched) = match (&value, map.get(*key).map(|v| variant_settings_ref(v).is_some())) {
                (serde_json::Value::String(name), Some(true)) => (serde_json::json!({ name.clone(): {} }), true),
                _ => (value, false),
            };
            map.insert(key.to_string(), value);
            return Ok(switched);
        }
        node = map.get_mut(*key).expect("checked above");
    }
    Err(Error::invalid("--set", "empty field path"))
}

/// The recipe of the pretraining run in folder `run`, for commands that evaluate or report one
/// (`field` names their argument). A folder without `recipe.ron`, or a fine-tuning run, is
/// refused with a line saying so.
pub fn load_pretraining_run(run: &Path, field: &str) -> Result<PretrainRecipe> {
    let path = run.join("recipe.ron");
    if !path.exists() {
        return Err(Error::invalid(field, format!("{}: not a pretraining run folder (no recipe.ron)", run.display())));
    }
    load::<PretrainRecipe>(&path, &[]).map_err(|e| match load::<FinetuneRecipe>(&path, &[]) {
        Ok(ft) => Error::invalid(
            field,
            format!(
                "{} is a fine-tuning run; give a pretraining run{}",
                run.display(),
                ft.pretrained.map_or(String::new(), |p| format!(" (this one fine-tuned {})", p.display()))
            ),
        ),
        Err(_) => e,
    })
}

/// The augmentation a recipe file trains with, whichever kind of recipe it is: pretraining
/// (SimCLR's defaults for fields left out) or fine-tuning (`AugmentConfig::light`'s). The whole
/// recipe is read and validated, so a preview never shows views a run would refuse.
pub fn augment_of(path: &Path) -> Result<crate::augment::AugmentConfig> {
    match load::<PretrainRecipe>(path, &[]) {
        Ok(r) => r.validate().map(|()| r.augment),
        Err(as_pretraining) => match load::<FinetuneRecipe>(path, &[]) {
            Ok(r) => r.validate().map(|()| r.augment),
            // A field only fine-tuning has: the fine-tuning reading says what is wrong.
            Err(as_finetuning) if as_pretraining.to_string().contains("unknown field") => Err(as_finetuning),
            Err(_) => Err(as_pretraining),
        },
    }
}

/// The settings inside `node` when it is an enum variant holding a struct: a one-key object
/// whose key is a variant name (capitalised) and whose value is an object.
fn variant_settings_ref(node: &serde_json::Value) -> Option<&serde_json::Value> {
    let map = node.as_object()?;
    let (key, inner) = map.iter().next()?;
    (map.len() == 1 && key.starts_with(|c: char| c.is_ascii_uppercase()) && inner.is_object()).then_some(inner)
}

/// The recipe as RON, as a run saves it.
pub fn to_ron<R: Serialize>(recipe: &R) -> String {
    ron_options().to_string_pretty(recipe, ron::ser::PrettyConfig::default()).expect("a recipe serialises")
}

/// RON as recipes write it: an enum variant holding a settings struct is written
/// `SimClr(temperature: 0.5)`, not `SimClr((temperature: 0.5))`, and an optional value may be
/// written without `Some(...)` (`size: 96`).
fn ron_options() -> ron::Options {
    use ron::extensions::Extensions;
    ron::Options::default().with_default_extension(Extensions::UNWRAP_VARIANT_NEWTYPES | Extensions::IMPLICIT_SOME)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `recipes/` parses and validates as exactly one kind, pretraining or
    /// fine-tuning, told apart by content (unknown fields are rejected, so a file read as the
    /// wrong kind fails), not by file name. Walking the folder, not a list, keeps new recipes
    /// from going unchecked.
    #[test]
    fn every_shipped_recipe_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let (mut pretrain, mut finetune) = (0, 0);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".ron") {
                continue;
            }
            match (load::<PretrainRecipe>(&path, &[]), load::<FinetuneRecipe>(&path, &[])) {
                (Ok(r), Err(_)) => {
                    r.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                    pretrain += 1;
                }
                (Err(_), Ok(r)) => {
                    r.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                    finetune += 1;
                }
                (Ok(_), Ok(_)) => panic!("{name} reads as both kinds"),
                (Err(a), Err(b)) => panic!("{name}: as pretraining: {a}; as fine-tuning: {b}"),
            }
        }
        assert!(pretrain >= 4 && finetune >= 4, "{pretrain} pretraining and {finetune} fine-tuning recipes");
    }
}
