//! Methods whose whole state is the online network (SimCLR, SimSiam, Barlow Twins, VICReg):
//! their settings say which heads to build and how the loss is computed from the backbone's
//! features; [`OnlineMethod`] is the [`Method`] for all of them, written once.
//! Methods with more state (BYOL's target network, a queue, centres) implement [`Method`]
//! themselves on [`Online`].

use std::path::Path;

use dfdx::prelude::*;

use crate::error::{Error, Result};
use crate::models::backbone::Backbone;
use crate::models::encoder::Encoder;
use crate::models::mlp::TapedRows;
use crate::nn::NnDevice;
use crate::optim::OptimConfig;
use crate::weights;

use super::online::{Head, Online};
use super::{Method, MethodSettings, StepAt, StepOut};

/// The loss of a method made of the online network alone.
pub trait OnlineLoss: MethodSettings + Clone + 'static {
    /// The heads on a backbone of `features` outputs, drawn in order from the device's
    /// generator (after the backbone).
    fn heads<D: NnDevice>(&self, dev: &D, features: usize) -> Result<Vec<Head<D>>, D::Err>;
    /// The loss of one step from the backbone's features [V N, F] of V views of N images
    /// (view v of image k at row v N + k), through `heads` (training mode).
    fn loss<D: NnDevice>(&self, heads: &mut [Head<D>], features: TapedRows<D>) -> Result<Tensor<Rank0, f32, D, OwnedTape<f32, D>>, D::Err>;
}

/// The [`Method`] of an [`OnlineLoss`]: the online network and the settings.
pub struct OnlineMethod<B, D: NnDevice, const C: usize, const F: usize, S> {
    online: Online<B, D, C, F>,
    settings: S,
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize, S: OnlineLoss> OnlineMethod<B, D, C, F, S> {
    /// The method of `settings` on `backbone`, its heads drawn after it.
    pub fn boxed(settings: &S, opt: OptimConfig, dev: D, backbone: B) -> Result<Box<dyn Method>> {
        let heads = settings.heads(&dev, F).map_err(|e| Error::device(format!("building {}'s heads", settings.name()), e))?;
        Ok(Box::new(OnlineMethod { online: Online::new(dev, backbone, heads, opt), settings: settings.clone() }))
    }

    fn try_step(&mut self, views: Vec<f32>, (_, h, w): (usize, usize, usize), lr: f64) -> Result<(f32, Vec<f32>), D::Err> {
        let x = self.online.images(views, (h, w))?;
        let f = self.online.forward_mut(x)?;
        let features = f.as_vec();
        let loss = self.settings.loss(&mut self.online.heads, f)?;
        let value = loss.array();
        self.online.update(crate::dist::scale_loss(loss).backward(), lr, value.is_finite())?;
        Ok((value, features))
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize, S: OnlineLoss> Encoder for OnlineMethod<B, D, C, F, S> {
    fn features(&self, images: Vec<f32>, shape: (usize, usize, usize)) -> Result<Vec<f32>> {
        self.online.features(images, shape)
    }

    fn feature_width(&self) -> usize {
        F
    }
}

impl<B: Backbone<C, F, D>, D: NnDevice, const C: usize, const F: usize, S: OnlineLoss> Method for OnlineMethod<B, D, C, F, S> {
    fn step(&mut self, views: Vec<f32>, shape: (usize, usize, usize), at: StepAt) -> Result<StepOut> {
        let (loss, features) = self.try_step(views, shape, at.lr).map_err(|e| Error::device(format!("a {} step", self.settings.name()), e))?;
        Ok(StepOut { loss, logs: Vec::new(), features })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.online.save(dir)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.online.load(dir)
    }

    fn save_backbone(&self, path: &Path) -> Result<()> {
        weights::save_module(&self.online.backbone, path)
    }
}
