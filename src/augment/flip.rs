//! Horizontal flip.

use super::Image;

/// Mirrors the image left to right, in place.
pub fn hflip(img: &mut Image) {
    let (w, c) = (img.width, img.channels);
    for row in img.data.chunks_exact_mut(w * c) {
        for x in 0..w / 2 {
            for ch in 0..c {
                row.swap(x * c + ch, (w - 1 - x) * c + ch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_flips_give_back_the_original() {
        let img = Image { height: 2, width: 3, channels: 2, data: (0..12).map(|v| v as f32).collect() };
        let mut f = img.clone();
        hflip(&mut f);
        assert_eq!(&f.data[..6], &[4.0, 5.0, 2.0, 3.0, 0.0, 1.0]);
        hflip(&mut f);
        assert_eq!(f, img);
    }
}
