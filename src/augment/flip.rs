//! Horizontal flip.

use super::Image;

/// Mirrors the image left to right, in place.
pub fn hflip(img: &mut Image) {
    img.data.chunks_exact_mut(img.width.max(1)).for_each(|row| row.reverse());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_flips_give_back_the_original() {
        let img = Image { height: 2, width: 3, channels: 2, data: (0..12).map(|v| v as f32).collect() };
        let mut f = img.clone();
        hflip(&mut f);
        assert_eq!(&f.data[..6], &[2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
        hflip(&mut f);
        assert_eq!(f, img);
    }
}
