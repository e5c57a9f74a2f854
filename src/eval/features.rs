//! Features of a frozen backbone: images as evaluation sees them (whole, resized, normalised),
//! forwarded in batches without a tape.

use crate::augment::Pipeline;
use crate::data::Split;

/// The features of the images at `indices`, [N, F] row-major; `forward` maps a batch
/// [n, C, H, W] to [n, F]. Shows a progress bar labelled `label`.
pub fn extract(pipeline: &Pipeline, split: &Split, indices: &[usize], batch: usize, label: &str, mut forward: impl FnMut(Vec<f32>) -> crate::Result<Vec<f32>>) -> crate::Result<Vec<f32>> {
    let bar = crate::progress::bar(indices.len() as u64, label);
    let mut out = Vec::new();
    let mut images = Vec::new();
    for chunk in indices.chunks(batch.max(1)) {
        pipeline.eval_into(split, chunk, &mut images);
        out.extend(forward(std::mem::take(&mut images))?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
