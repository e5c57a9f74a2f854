//! The online network every method trains: a backbone, its heads of run-time width in order
//! (a projector; BYOL's and SimSiam's projector and predictor), one optimiser over all of them (the
//! backbone's tensors first, then each head's, the order its state is saved in), and the
//! gradients kept from step to step. A method adds its loss and whatever else it owns (target
//! networks, queues).

use std::path::Path;

use dfdx::prelude::*;

use crate::error::Result;
use crate::models::backbone::{Backbone, Images};
use crate::models::encoder::Encoder;
use crate::models::mlp::{Mlp, TapedRows};
use crate::nn::NnDevice;
use crate::optim::{Optim, OptimConfig};
use crate::weights::{self, BACKBONE_FILE};

use super::OPTIMIZER_FILE;

/// A head and its file inside a checkpoint (and the name an older version wrote it under,
/// still read).
pub struct Head<D: Storage<f32>> {
    pub mlp: Mlp<D>,
    pub file: &'static str,
    pub older_file: Option<&'static str>,
}

/// See the module docs.
pub struct Online<B, D: NnDevice, const C: usize, const F: usize> {
    pub dev: D,
    pub backbone: B,
    pub heads: Vec<Head<D>>,
    opt: Optim,
    grads: Option<Gradients<f32, D>>,
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Online<B, D, C, F> {
    pub fn new(dev: D, backbone: B, heads: Vec<Head<D>>, opt: OptimConfig) -> Self {
        Online { dev, backbone, heads, opt: Optim::new(opt), grads: None }
    }

    /// Views [rows, C, H, W] from a host buffer; `(h, w)` their side.
    pub fn images(&self, views: Vec<f32>, (h, w): (usize, usize)) -> Result<Images<C, D>, D::Err> {
        let rows = views.len() / (C * h * w);
        self.dev.try_tensor_from_vec(views, (rows, Const, h, w))
    }

    /// The backbone's training forward, [rows, F] as rows of run-time width, its tape on the
    /// gradients kept from the last step (allocated for the backbone and every head the first
    /// time).
    pub fn forward_mut(&mut self, x: Images<C, D>) -> Result<TapedRows<D>, D::Err> {
        let g = match self.grads.take() {
            Some(g) => g,
            None => {
                let mut g = self.backbone.try_alloc_grads()?;
                for h in &self.heads {
                    h.mlp.try_zero_grads(&mut g)?;
                }
                g
            }
        };
        let rows = x.shape().0;
        self.backbone.try_forward_mut(x.trace(g))?.try_reshape_like(&(rows, F))
    }

    /// After the backward pass: with `finite` (the loss was), one optimiser update at `lr`
    /// (data-parallel: from the gradients summed over ranks, see [`Optim::apply`]); then the
    /// gradients are zeroed and kept for the next step. Whether the update was made (on every
    /// rank alike): what a method's own updates after it (target, queue, centre) must follow, so
    /// that the ranks call the same collectives.
    pub fn update(&mut self, mut g: Gradients<f32, D>, lr: f64, finite: bool) -> Result<bool, D::Err> {
        self.opt.cfg.lr = lr;
        let applied = self.opt.apply::<D::Err>(finite, |u| {
            u.module(&mut self.backbone, &g);
            for h in &mut self.heads {
                h.mlp.update(u, &g);
            }
        })?;
        self.backbone.try_zero_grads(&mut g)?;
        for h in &self.heads {
            h.mlp.try_zero_grads(&mut g)?;
        }
        self.grads = Some(g);
        Ok(applied)
    }

    /// Writes the backbone, the heads and the optimiser state into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        weights::save_module(&self.backbone, &dir.join(BACKBONE_FILE))?;
        for h in &self.heads {
            h.mlp.save(&dir.join(h.file))?;
        }
        weights::save_optimizer(&self.opt, &dir.join(OPTIMIZER_FILE))
    }

    /// Reads what [`Online::save`] wrote.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        weights::load_module(&mut self.backbone, &dir.join(BACKBONE_FILE))?;
        for h in &mut self.heads {
            let file = dir.join(h.file);
            let older = h.older_file.map(|f| dir.join(f)).filter(|f| !file.exists() && f.exists());
            h.mlp.load(older.as_deref().unwrap_or(&file))?;
        }
        weights::load_optimizer(&mut self.opt, &dir.join(OPTIMIZER_FILE))
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize> Encoder for Online<B, D, C, F> {
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        crate::models::backbone::features(&self.dev, &self.backbone, images, shape)
    }

    fn feature_width(&self) -> usize {
        F
    }
}
