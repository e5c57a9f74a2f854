//! `ssl augment preview`: each original beside several of its augmented view pairs, so users
//! can tune augmentations by looking.

use std::path::Path;

use super::pipeline::Pipeline;
use super::rng::view_rng;
use crate::data::Split;
use crate::error::Result;
use crate::viz::{grid, save_png, scale_for, Tile};

/// Writes a PNG: one row per image of `indices`, the original then `pairs` pairs of views.
pub fn preview(pipeline: &Pipeline, split: &Split, indices: &[usize], pairs: usize, seed: u64, out: &Path) -> Result<()> {
    let shape = pipeline.output_shape();
    let mut pixels: Vec<(Vec<u8>, String)> = Vec::new();
    for &i in indices {
        pixels.push((split.image(i).to_vec(), split.caption(i)));
        for pair in 0..pairs {
            for v in 0..2 {
                // Epoch = pair, so each pair is what training would see in successive epochs.
                let img = pipeline.view(split.image(i), &mut view_rng(seed, pair as u64, i as u64, v as u64));
                pixels.push((img.to_u8(), format!("e{pair} v{}", v + 1)));
            }
        }
    }
    let tiles: Vec<Tile> = pixels
        .iter()
        .enumerate()
        .map(|(k, (px, caption))| Tile {
            pixels: px,
            shape: if k % (1 + 2 * pairs) == 0 { split.shape } else { shape },
            caption: caption.clone(),
        })
        .collect();
    save_png(&grid(&tiles, 1 + 2 * pairs, scale_for(shape.width.max(split.shape.width), 96)), out)
}
