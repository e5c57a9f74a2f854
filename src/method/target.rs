//! The target network of the methods that bootstrap from a slow copy of themselves: BYOL's
//! target, MoCo's key (momentum) encoder, DINO's teacher. A copy of the online backbone and
//! projector that takes no gradient and follows the online network by an exponential moving
//! average, its decay rising from a base value to a final one on a cosine (BYOL, eq. 1 and
//! section 3.2; constant when both are equal, as MoCo's m).

use std::path::Path;

use dfdx::nn::ModelEMA;
use dfdx::prelude::*;

use crate::error::Result;
use crate::models::backbone::{Backbone, Images};
use crate::models::mlp::{Mlp, Rows};
use crate::nn::NnDevice;
use crate::weights;

/// The target's files inside a checkpoint.
pub const TARGET_BACKBONE_FILE: &str = "target_backbone.safetensors";
pub const TARGET_PROJECTOR_FILE: &str = "target_projector.safetensors";

/// The decay after step `step` of `total` (0-based): base at the first step, rising to
/// `last` as last - (last - base)(cos(pi step / total) + 1) / 2 (BYOL, section 3.2).
pub fn cosine_decay(base: f64, last: f64, step: u64, total: u64) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    last - (last - base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

/// See the module docs.
pub struct Target<B, D: NnDevice, const C: usize, const F: usize> {
    pub backbone: B,
    pub projector: Mlp<D>,
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Target<B, D, C, F> {
    /// A copy of the online backbone and projector (BYOL, section 3.1; MoCo, algorithm 1).
    pub fn copy_of(backbone: &B, projector: &Mlp<D>) -> Self {
        Target { backbone: backbone.clone(), projector: projector.clone() }
    }

    /// The projections of `x` [rows, C, H, W], [rows, out], constants. Training mode, as the
    /// online network: BatchNorm normalises with the batch's statistics (and updates the
    /// target's running ones). The tape the training forward needs is thrown away.
    pub fn forward(&mut self, x: Images<C, D>) -> Result<Rows<D>, D::Err> {
        let rows = x.shape().0;
        let f = self.backbone.try_forward_mut(x.leaky_trace())?.try_reshape_like(&(rows, F))?;
        Ok(self.projector.try_forward_mut(f)?.split_tape().0)
    }

    /// target = decay target + (1 - decay) online, for every trained tensor.
    pub fn follow(&mut self, backbone: &B, projector: &Mlp<D>, decay: f64) -> Result<(), D::Err> {
        self.backbone.try_ema(backbone, decay)?;
        self.projector.try_ema(projector, decay)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        weights::save_module(&self.backbone, &dir.join(TARGET_BACKBONE_FILE))?;
        self.projector.save(&dir.join(TARGET_PROJECTOR_FILE))
    }

    pub fn load(&mut self, dir: &Path) -> Result<()> {
        weights::load_module(&mut self.backbone, &dir.join(TARGET_BACKBONE_FILE))?;
        self.projector.load(&dir.join(TARGET_PROJECTOR_FILE))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every tensor of a module, through its safetensors file.
    pub(crate) fn tensors_of<M: TensorCollection<f32, Cpu>>(m: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.safetensors");
        weights::save_module(m, &p).unwrap();
        crate::tensors_file::load_floats(&p).unwrap()
    }

    pub(crate) fn mlp_tensors(m: &Mlp<Cpu>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.safetensors");
        m.save(&p).unwrap();
        crate::tensors_file::load_floats(&p).unwrap()
    }

    type Named = Vec<(String, Vec<usize>, Vec<f32>)>;

    /// After a step, every trained tensor of the target is exactly decay old + (1 - decay)
    /// online, the online network having moved: the target took no gradient step of its own.
    /// Running statistics are the target's own (it runs in training mode) and are skipped.
    pub(crate) fn assert_followed(name: &str, decay: f64, old: Named, online: Named, new: Named) {
        let mut moved = false;
        for ((o, on), n) in old.iter().zip(&online).zip(&new) {
            if o.0.contains("running") {
                continue;
            }
            for ((a, b), c) in o.2.iter().zip(&on.2).zip(&n.2) {
                let want = decay as f32 * a + (1.0 - decay as f32) * b;
                assert!((c - want).abs() <= 1e-6 * want.abs().max(1.0), "{name} {}: {c} vs {want}", o.0);
                moved |= a != b;
            }
        }
        assert!(moved, "{name}: the online network moved");
    }

    #[test]
    fn the_decay_rises_on_a_cosine() {
        assert_eq!(cosine_decay(0.996, 1.0, 0, 100), 0.996);
        assert!((cosine_decay(0.996, 1.0, 50, 100) - 0.998).abs() < 1e-12);
        assert!((cosine_decay(0.996, 1.0, 100, 100) - 1.0).abs() < 1e-15);
        assert_eq!(cosine_decay(0.99, 0.99, 37, 100), 0.99);
    }
}
