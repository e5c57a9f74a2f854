//! `ssl data preview`: a grid of a split's images with their class names.

use std::path::Path;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Split;
use crate::error::Result;
use crate::viz::{grid, save_png, scale_for, Tile};

/// Writes a PNG grid of `count` images drawn at random (seeded) from `split`.
pub fn preview(split: &Split, count: usize, cols: usize, seed: u64, out: &Path) -> Result<()> {
    let count = count.min(split.len());
    let mut picks = sample(&mut ChaCha8Rng::seed_from_u64(seed), split.len(), count).into_vec();
    picks.sort_unstable();
    let tiles: Vec<Tile> = picks
        .iter()
        .map(|&i| Tile {
            pixels: split.image(i),
            shape: split.shape,
            caption: split.caption(i),
        })
        .collect();
    save_png(&grid(&tiles, cols, scale_for(split.shape.width, 96)), out)
}
