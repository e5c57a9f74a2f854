//! Per-view random streams: a view's randomness is a pure function of (seed, epoch, image
//! index, view number), so results do not depend on threads or batch order.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator of one view.
pub fn view_rng(seed: u64, epoch: u64, index: u64, view: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (k, v) in [seed, epoch, index, view].iter().enumerate() {
        key[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}
