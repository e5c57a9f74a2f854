//! Image grids with text labels, saved as PNG: the pictures behind `data preview` and
//! `augment preview`. Text uses the public-domain 8x8 bitmap font of `font8x8`.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::data::ImageShape;
use crate::error::{Context, Result};

/// Glyph size of the bitmap font, in pixels.
pub const GLYPH: u32 = 8;
const PAD: u32 = 4;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// One cell of a grid: a u8 H x W x C image (C = 1 or 3) and a caption.
pub struct Tile<'a> {
    pub pixels: &'a [u8],
    pub shape: ImageShape,
    pub caption: String,
}

/// Draws `text` with its top-left corner at (x, y), clipped to the image.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, color: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let code = if (ch as u32) < 128 { ch as usize } else { '?' as usize };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..GLYPH {
                if bits >> col & 1 == 1 {
                    let (px, py) = (x + i as u32 * GLYPH + col, y + row as u32);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, color);
                    }
                }
            }
        }
    }
}

/// The integer scale that makes an image at least `min_px` wide.
pub fn scale_for(width: usize, min_px: u32) -> u32 {
    min_px.div_ceil(width.max(1) as u32).max(1)
}

/// Lays `tiles` out in `cols` columns, each image scaled by `scale` (nearest neighbour) with its
/// caption below it, truncated to the cell's width.
pub fn grid(tiles: &[Tile], cols: usize, scale: u32) -> RgbImage {
    let cols = cols.max(1);
    let rows = tiles.len().div_ceil(cols).max(1);
    let cell_w = tiles.iter().map(|t| t.shape.width as u32 * scale).max().unwrap_or(GLYPH);
    let cell_h = tiles.iter().map(|t| t.shape.height as u32 * scale).max().unwrap_or(GLYPH) + GLYPH + 2;
    let mut img = RgbImage::from_pixel(
        cols as u32 * (cell_w + PAD) + PAD,
        rows as u32 * (cell_h + PAD) + PAD,
        BACKGROUND,
    );
    for (k, t) in tiles.iter().enumerate() {
        let x0 = PAD + (k % cols) as u32 * (cell_w + PAD);
        let y0 = PAD + (k / cols) as u32 * (cell_h + PAD);
        let (w, c) = (t.shape.width, t.shape.channels);
        for y in 0..t.shape.height * scale as usize {
            for x in 0..w * scale as usize {
                let p = ((y / scale as usize) * w + x / scale as usize) * c;
                let rgb = if c == 1 { [t.pixels[p]; 3] } else { [t.pixels[p], t.pixels[p + 1], t.pixels[p + 2]] };
                img.put_pixel(x0 + x as u32, y0 + y as u32, Rgb(rgb));
            }
        }
        let max_chars = (cell_w / GLYPH) as usize;
        let caption: String = t.caption.chars().take(max_chars).collect();
        draw_text(&mut img, x0, y0 + t.shape.height as u32 * scale + 2, &caption, INK);
    }
    img
}

/// Saves a PNG atomically: a temporary file beside `path`, renamed over it when complete.
/// A name not ending in `.png` is refused (the bytes would be PNG whatever the name said).
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(crate::error::Error::bad_input(path, "pictures are written as PNG: name the file *.png"));
    }
    let tmp = crate::fsutil::tmp_beside(path);
    img.save_with_format(&tmp, image::ImageFormat::Png).at(path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, path).at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_pixels_and_captions() {
        let px = vec![0u8; 4];
        let tiles: Vec<Tile> = (0..3)
            .map(|i| Tile { pixels: &px, shape: ImageShape { height: 2, width: 2, channels: 1 }, caption: format!("c{i}") })
            .collect();
        let img = grid(&tiles, 2, 8);
        assert_eq!(img.width(), 2 * (16 + PAD) + PAD);
        assert_eq!(*img.get_pixel(PAD, PAD), Rgb([0, 0, 0]));
        // Some ink in the caption row of the first cell.
        let ink = (0..16).any(|x| (0..GLYPH).any(|y| *img.get_pixel(PAD + x, PAD + 18 + y) == INK));
        assert!(ink);
    }
}
