//! RMSNorm, LayerNorm and GroupNorm (plus group RMSNorm, used by Mamba-2's gated norm) over the
//! last dimension of an f32 tensor, with f32 statistics.

use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/norm.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("norm");

const WG: u32 = 256;

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// x / rms(x) · w, over `groups` equal segments of the last dim (1 = plain RMSNorm).
    Rms { groups: usize },
    /// (x − μ)/σ · w + b over the whole last dim.
    Layer,
    /// (x − μ)/σ · w + b within each of `groups` channel groups.
    Group { groups: usize },
}

impl NormKind {
    fn centred(self) -> bool {
        !matches!(self, NormKind::Rms { .. })
    }
    fn groups(self) -> usize {
        match self {
            NormKind::Rms { groups } | NormKind::Group { groups } => groups,
            NormKind::Layer => 1,
        }
    }
}

crate::uniform! {
    /// `norm`'s parameters: `count` segments of `seg` channels, `groups` segments per row.
    pub struct NormParams { pub seg: u32, pub groups: u32, pub eps: f32, pub has_bias: u32, pub count: u32 }
}

fn variant(centred: bool, subgroups: bool) -> Variant {
    let name =
        format!("norm.{}{}", if centred { "layer" } else { "rms" }, if subgroups { ".sg" } else { "" });
    Variant::new(name, &SHADER, "norm")
        .define("WG", WG)
        .define("CENTER", centred as u32)
        .with_subgroups(subgroups)
        .with_params::<NormParams>()
}

pub fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for c in [false, true] {
        for sg in [false, true] {
            v.push(variant(c, sg));
        }
    }
    v
}

/// Records a normalisation of `x` (rows × C) into `y`. `weight` and `bias` have C entries.
pub fn norm(
    rec: &mut Recorder,
    kind: NormKind,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    eps: f32,
    y: &Tensor,
) -> Result<()> {
    let c = *x.shape().last().ok_or_else(|| Error::Shape("norm of a 0-d tensor".into()))?;
    let groups = kind.groups();
    if x.dtype() != DType::F32 || groups == 0 || c == 0 || c % groups != 0 {
        return Err(Error::Shape(format!(
            "norm: x {:?} {:?} must be f32 with a last dim divisible by {groups} groups",
            x.shape(),
            x.dtype()
        )));
    }
    super::expect("weight", weight, &[c], DType::F32)?;
    if let Some(b) = bias {
        super::expect("bias", b, &[c], DType::F32)?;
    }
    super::expect("y", y, x.shape(), DType::F32)?;
    let v = variant(kind.centred(), rec.device().caps().subgroups);
    let count = x.numel() / (c / groups);
    let wg = grid(rec.device(), count)?;
    let params = Params::of(&NormParams {
        seg: super::word("segment", c / groups)?,
        groups: super::word("groups", groups)?,
        eps,
        has_bias: bias.is_some() as u32,
        count: super::word("segments", count)?,
    });
    rec.dispatch(&v, &params, &[x, weight, bias.unwrap_or(weight), y], wg)
}

/// Records RMSNorm.
pub fn rms_norm(rec: &mut Recorder, x: &Tensor, weight: &Tensor, eps: f32, y: &Tensor) -> Result<()> {
    norm(rec, NormKind::Rms { groups: 1 }, x, weight, None, eps, y)
}

/// Records LayerNorm.
pub fn layer_norm(
    rec: &mut Recorder,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    eps: f32,
    y: &Tensor,
) -> Result<()> {
    norm(rec, NormKind::Layer, x, weight, bias, eps, y)
}

/// Records GroupNorm over the last dim.
pub fn group_norm(
    rec: &mut Recorder,
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: Option<&Tensor>,
    eps: f32,
    y: &Tensor,
) -> Result<()> {
    norm(rec, NormKind::Group { groups }, x, weight, bias, eps, y)
}

/// f64 reference over rows of length `c`.
pub fn norm_ref(kind: NormKind, x: &[f32], c: usize, w: &[f32], b: Option<&[f32]>, eps: f64) -> Vec<f64> {
    let seg = c / kind.groups();
    let mut y = vec![0f64; x.len()];
    for (s, chunk) in x.chunks(seg).enumerate() {
        let ch0 = (s % kind.groups()) * seg;
        let n = seg as f64;
        let mean = if kind.centred() { chunk.iter().map(|&v| v as f64).sum::<f64>() / n } else { 0.0 };
        let var = chunk.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, &v) in chunk.iter().enumerate() {
            let c = ch0 + i;
            y[s * seg + i] = (v as f64 - mean) * inv * w[c] as f64 + b.map_or(0.0, |b| b[c] as f64);
        }
    }
    y
}
