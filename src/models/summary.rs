//! Per-layer output shapes, parameters and multiply-adds of a model, by the standard formulas:
//! a convolution has C' * (C / groups * K * K) weights (+ C' with a bias layer) and
//! H' * W' * C' * C / groups * K * K multiply-adds; a linear layer I * O + O parameters and I * O
//! multiply-adds; BatchNorm counts its scale and shift as parameters and no multiply-adds.

use dfdx::nn::modules::{AvgPoolGlobal, Bias2D, Dropout, GeneralizedResidual, Linear, Residual};
use dfdx::prelude::{Dtype, Storage};

use crate::nn::batchnorm2d::BatchNorm2DImpl;
use crate::nn::conv2d::{ConvGeom, GroupedConv2D};
use crate::nn::pool2d::PoolGeom;
use crate::nn::{AvgPool2D, Flatten2D, MaxPool2D, ReLU};

/// The shape of one example's activation: a C x H x W map or a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ActShape {
    Map { c: usize, h: usize, w: usize },
    /// A sequence of `n` tokens of width `d`.
    Seq { n: usize, d: usize },
    Flat(usize),
}

impl std::fmt::Display for ActShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActShape::Map { c, h, w } => write!(f, "{c}x{h}x{w}"),
            ActShape::Seq { n, d } => write!(f, "{n}x{d} tokens"),
            ActShape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// One row of a summary.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerRow {
    pub layer: String,
    pub output: ActShape,
    pub params: usize,
    pub macs: u64,
}

/// Something whose cost can be summarised for a given input shape.
pub trait Summary {
    /// Appends this layer's rows and returns its output shape, or says why the input does not fit.
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String>;
}

fn map(x: ActShape, what: &str) -> Result<(usize, usize, usize), String> {
    match x {
        ActShape::Map { c, h, w } => Ok((c, h, w)),
        other => Err(format!("{what} needs a C x H x W input, got {other}")),
    }
}

fn row(rows: &mut Vec<LayerRow>, layer: String, output: ActShape, params: usize, macs: u64) -> Result<ActShape, String> {
    rows.push(LayerRow { layer, output, params, macs });
    Ok(output)
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const L: usize, const IPG: usize, E: Dtype, D: Storage<E>>
    Summary for GroupedConv2D<I, O, K, S, P, L, IPG, E, D>
{
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let (c, h, w) = map(x, "Conv2D")?;
        if c != I {
            return Err(format!("Conv2D expects {I} channels, got {c}"));
        }
        let g = ConvGeom::new(1, I, h, w, O, K, S, P, L, I / IPG)
            .ok_or_else(|| format!("Conv2D {K}x{K}: input {h}x{w} is smaller than the kernel"))?;
        let groups = if IPG == I { String::new() } else { format!(" groups {}", I / IPG) };
        let name = format!("Conv2D {I}->{O} {K}x{K} s{S} p{P}{}{groups}", if L > 1 { format!(" d{L}") } else { String::new() });
        let params = O * IPG * K * K;
        row(rows, name, ActShape::Map { c: O, h: g.oh, w: g.ow }, params, (g.oh * g.ow * params) as u64)
    }
}

impl<const C: usize, const RELU: bool, E: Dtype, D: Storage<E>> Summary for BatchNorm2DImpl<C, RELU, E, D> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let (c, _, _) = map(x, "BatchNorm2D")?;
        if c != C {
            return Err(format!("BatchNorm2D expects {C} channels, got {c}"));
        }
        row(rows, if RELU { format!("BatchNormReLU2D {C}") } else { format!("BatchNorm2D {C}") }, x, 2 * C, 0)
    }
}

impl<const C: usize, E: Dtype, D: Storage<E>> Summary for Bias2D<C, E, D> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        row(rows, format!("Bias2D {C}"), x, C, 0)
    }
}

impl<const IN: usize, const OUT: usize, E: Dtype, D: Storage<E>> Summary for Linear<IN, OUT, E, D> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        if x != ActShape::Flat(IN) {
            return Err(format!("Linear expects {IN} features, got {x}"));
        }
        row(rows, format!("Linear {IN}->{OUT}"), ActShape::Flat(OUT), IN * OUT + OUT, (IN * OUT) as u64)
    }
}

macro_rules! shape_preserving {
    ($($ty:ty => $name:expr),*) => {$(
        impl Summary for $ty {
            fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
                row(rows, $name.to_string(), x, 0, 0)
            }
        }
    )*};
}
shape_preserving!(ReLU => "ReLU", dfdx::nn::modules::ReLU => "ReLU", Dropout => "Dropout");

impl Summary for AvgPoolGlobal {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let (c, _, _) = map(x, "AvgPoolGlobal")?;
        row(rows, "AvgPoolGlobal".into(), ActShape::Flat(c), 0, 0)
    }
}

fn pool(name: &str, x: ActShape, k: usize, s: usize, p: usize, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
    let (c, h, w) = map(x, name)?;
    let g = PoolGeom::new(c, h, w, k, s, p).ok_or_else(|| format!("{name} {k}x{k}: does not fit input {h}x{w}"))?;
    row(rows, format!("{name} {k}x{k} s{s} p{p}"), ActShape::Map { c, h: g.oh, w: g.ow }, 0, 0)
}

impl<const K: usize, const S: usize, const P: usize> Summary for MaxPool2D<K, S, P> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        pool("MaxPool2D", x, K, S, P, rows)
    }
}

impl<const K: usize, const S: usize, const P: usize> Summary for AvgPool2D<K, S, P> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        pool("AvgPool2D", x, K, S, P, rows)
    }
}

impl<const F: usize> Summary for Flatten2D<F> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let (c, h, w) = map(x, "Flatten2D")?;
        if c * h * w != F {
            return Err(format!("Flatten2D<{F}> got {c}x{h}x{w} = {}", c * h * w));
        }
        row(rows, "Flatten2D".into(), ActShape::Flat(F), 0, 0)
    }
}

impl<F: Summary> Summary for Residual<F> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let y = self.0.summarize(x, rows)?;
        if y != x {
            return Err(format!("Residual branch changes the shape {x} to {y}"));
        }
        row(rows, "Residual add".into(), y, 0, 0)
    }
}

impl<F: Summary, R: Summary> Summary for GeneralizedResidual<F, R> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let y = self.f.summarize(x, rows)?;
        let r = self.r.summarize(x, rows)?;
        if y != r {
            return Err(format!("residual branches disagree: {y} and {r}"));
        }
        row(rows, "Residual add".into(), y, 0, 0)
    }
}

macro_rules! tuple_summary {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Summary),+> Summary for ($($name,)+) {
            fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
                let y = x;
                $(let y = self.$idx.summarize(y, rows)?;)+
                Ok(y)
            }
        }
    };
}
tuple_summary!(A 0);
tuple_summary!(A 0, B 1);
tuple_summary!(A 0, B 1, C 2);
tuple_summary!(A 0, B 1, C 2, D 3);
tuple_summary!(A 0, B 1, C 2, D 3, F 4);
tuple_summary!(A 0, B 1, C 2, D 3, F 4, G 5);

/// Totals of a summary: parameters and multiply-adds.
pub fn totals(rows: &[LayerRow]) -> (usize, u64) {
    (rows.iter().map(|r| r.params).sum(), rows.iter().map(|r| r.macs).sum())
}

impl<const I: usize, const C1: usize, const R3: usize, const C3: usize, const R5: usize, const C5: usize, const CP: usize, const O: usize, E: Dtype, D: Storage<E>>
    Summary for crate::models::inception::Inception<I, C1, R3, C3, R5, C5, CP, O, E, D>
{
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let outs = [
            self.b1.summarize(x, rows)?,
            self.b3.summarize(x, rows)?,
            self.b5.summarize(x, rows)?,
            self.bp.summarize(x, rows)?,
        ];
        let (_, h, w) = map(outs[0], "Inception")?;
        if outs.iter().any(|o| !matches!(o, ActShape::Map { h: oh, w: ow, .. } if (*oh, *ow) == (h, w))) {
            return Err("Inception branches disagree on the spatial size".into());
        }
        row(rows, format!("Inception concat -> {O}"), ActShape::Map { c: O, h, w }, 0, 0)
    }
}

impl<const N: usize, const D: usize, E: Dtype, Dev: Storage<E>> Summary for crate::models::vit::Tokens<N, D, E, Dev> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let (c, h, w) = map(x, "Tokens")?;
        if c != D || h * w != N {
            return Err(format!("Tokens expects {D} channels on a grid of {N} patches, got {c}x{h}x{w}"));
        }
        row(rows, format!("Tokens + position embedding {N}x{D}"), ActShape::Seq { n: N, d: D }, N * D, 0)
    }
}

impl Summary for crate::models::vit::MeanTokens {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        match x {
            ActShape::Seq { d, .. } => row(rows, "Mean over tokens".into(), ActShape::Flat(d), 0, 0),
            other => Err(format!("MeanTokens needs tokens, got {other}")),
        }
    }
}

impl<const M: usize, E: Dtype, D: Storage<E>> Summary for dfdx::nn::modules::LayerNorm1D<M, E, D> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        row(rows, format!("LayerNorm {M}"), x, 2 * M, 0)
    }
}

impl<const M: usize, const H: usize, const F: usize, E: Dtype, D: Storage<E>> Summary
    for dfdx::nn::modules::TransformerEncoderBlock<M, H, F, E, D>
{
    /// Multiply-adds: Q, K, V and output projections (4 n M^2), attention scores and their
    /// weighted sum (2 n^2 M), the MLP (2 n M F).
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let ActShape::Seq { n, d } = x else { return Err(format!("a Transformer block needs tokens, got {x}")) };
        if d != M {
            return Err(format!("a Transformer block of width {M} got tokens of width {d}"));
        }
        let params = 4 * (M * M + M) + (M * F + F) + (F * M + M) + 4 * M;
        let macs = (4 * n * M * M + 2 * n * n * M + 2 * n * M * F) as u64;
        row(rows, format!("Transformer block {M}, {H} heads, MLP {F}"), x, params, macs)
    }
}

impl<T: Summary, const N: usize> Summary for dfdx::nn::modules::Repeated<T, N> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        self.modules.iter().try_fold(x, |y, m| m.summarize(y, rows))
    }
}

impl<F: Summary> Summary for crate::nn::ResidualReLU<F> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let y = self.0.summarize(x, rows)?;
        if y != x {
            return Err(format!("Residual branch changes the shape {x} to {y}"));
        }
        row(rows, "Residual add + ReLU".into(), y, 0, 0)
    }
}

impl<F: Summary, R: Summary> Summary for crate::nn::GeneralizedResidualReLU<F, R> {
    fn summarize(&self, x: ActShape, rows: &mut Vec<LayerRow>) -> Result<ActShape, String> {
        let y = self.f.summarize(x, rows)?;
        let r = self.r.summarize(x, rows)?;
        if y != r {
            return Err(format!("residual branches disagree: {y} and {r}"));
        }
        row(rows, "Residual add + ReLU".into(), y, 0, 0)
    }
}
