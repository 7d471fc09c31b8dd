//! Rotary position embedding (RoPE, transformers' `rotate_half` form, full or partial), in
//! place on the q and k heads of fused `qkv` rows `[T, (H + 2·Hkv)·D]` (see
//! [`super::attention`]). Positions come from the cache's per-sequence counts, so a decode
//! step replayed from a recording rotates each token at its own position.

use super::attention::AttnDims;
use super::sequences::Sequences;
use super::{grid, word, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/rope.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("rope");

crate::uniform! {
    /// The RoPE kernel's parameters.
    pub struct RopeParams { pub nseq: u32, pub heads: u32, pub kv_heads: u32, pub dim: u32, pub rot: u32, pub total: u32, pub flags: u32, pub eps: f32 }
}

crate::flags! {
    /// Bits of [`RopeParams::flags`] (RESET exists for lib/packed_seqs and is never set;
    /// WHOLE: the head norm takes all q heads as one segment, and all k heads as another).
    pub mod rope_flags { RESET = 1, WHOLE = 2 }
}

fn variant() -> Variant {
    Variant::new("rope.qk", &SHADER, "rope")
        .define("ROPE", 1)
        .with_params::<RopeParams>()
        .with_flags(rope_flags::SET)
}

fn head_norm_variant(rotate: bool) -> Variant {
    let name = if rotate { "rope.head_norm.rotate" } else { "rope.head_norm" };
    Variant::new(name, &SHADER, "head_norm")
        .define("HEAD_NORM", 1)
        .define("ROTATE", rotate as u32)
        .define("WG", 64)
        .define("SUBGROUPS", 0)
        .with_params::<RopeParams>()
        .with_flags(rope_flags::SET)
}

pub fn variants() -> Vec<Variant> {
    vec![variant(), head_norm_variant(false), head_norm_variant(true)]
}

/// What RoPE needs: `rot` rotary dims, `inv_freq` `[rot / 2]`, and where each token sits
/// (token t of sequence s at position `pos[s] + t − cu[s]`).
#[derive(Clone, Copy)]
pub struct Rotary<'a> {
    pub rot: usize,
    pub inv_freq: &'a Tensor,
    pub seqs: &'a Sequences,
    pub pos: &'a Tensor,
}

impl Rotary<'_> {
    fn check(&self, dims: AttnDims) -> Result<()> {
        super::expect("inv_freq", self.inv_freq, &[self.rot / 2], DType::F32)?;
        super::expect("positions", self.pos, &[self.seqs.count()], DType::U32)?;
        if self.rot == 0 || !self.rot.is_multiple_of(2) || self.rot > dims.head_dim {
            return Err(Error::Shape(format!("{} rotary dims of a head of {}", self.rot, dims.head_dim)));
        }
        Ok(())
    }
}

/// The q/k RMSNorm: weight `w` `[(H + Hkv)·D]` over the q and k columns, over each head or
/// (`whole`) over all q heads together and all k heads together.
#[derive(Clone, Copy)]
pub struct QkNorm<'a> {
    pub w: &'a Tensor,
    pub eps: f32,
    pub whole: bool,
}

/// Records the RMSNorm of the q and k parts of `qkv`, in place (q/k norm before RoPE), and
/// with `rotary` their RoPE in the same pass.
pub fn head_norm(
    rec: &mut Recorder,
    qkv: &Tensor,
    dims: AttnDims,
    norm: QkNorm,
    rotary: Option<Rotary>,
) -> Result<()> {
    let t = qkv.shape().first().copied().unwrap_or(0);
    super::expect("qkv", qkv, &[t, dims.row()], DType::F32)?;
    super::expect("q/k norm weight", norm.w, &[(dims.heads + dims.kv_heads) * dims.head_dim], DType::F32)?;
    if !(norm.eps.is_finite() && norm.eps > 0.0) {
        return Err(Error::Invalid(format!("head norm eps {} must be positive", norm.eps)));
    }
    if let Some(r) = &rotary {
        r.check(dims)?;
        if r.seqs.total() != t {
            return Err(Error::Shape(format!("qkv has {t} rows for {} tokens", r.seqs.total())));
        }
    }
    let p = Params::of(&RopeParams {
        nseq: word("sequences", rotary.map_or(1, |r| r.seqs.count()))?,
        heads: word("heads", dims.heads)?,
        kv_heads: word("kv heads", dims.kv_heads)?,
        dim: word("head dim", dims.head_dim)?,
        rot: word("rotary dims", rotary.map_or(0, |r| r.rot))?,
        total: word("tokens", t)?,
        flags: if norm.whole { rope_flags::WHOLE } else { 0 },
        eps: norm.eps,
    });
    let segments = if norm.whole { 2 } else { dims.heads + dims.kv_heads };
    let wg = grid(rec.device(), t * segments)?;
    match rotary {
        None => rec.dispatch(&head_norm_variant(false), &p, &[qkv, norm.w], wg),
        Some(r) => {
            rec.dispatch(&head_norm_variant(true), &p, &[qkv, norm.w, r.seqs.table(), r.pos, r.inv_freq], wg)
        }
    }
}

/// f64 reference of [`head_norm`].
pub fn head_norm_ref(qkv: &[f32], dims: AttnDims, w: &[f32], eps: f64, whole: bool) -> Vec<f64> {
    let (row, d) = (dims.row(), dims.head_dim);
    let segments: Vec<(usize, usize)> = if whole {
        vec![(0, dims.heads * d), (dims.heads * d, dims.kv_heads * d)]
    } else {
        (0..dims.heads + dims.kv_heads).map(|h| (h * d, d)).collect()
    };
    let mut out: Vec<f64> = qkv.iter().map(|&x| x as f64).collect();
    for t in 0..qkv.len() / row {
        for &(col, len) in &segments {
            let x = &qkv[t * row + col..][..len];
            let inv = 1.0 / (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / len as f64 + eps).sqrt();
            for i in 0..len {
                out[t * row + col + i] = x[i] as f64 * inv * w[col + i] as f64;
            }
        }
    }
    out
}

/// The rotary dims of a head of `head_dim` with `partial` of it rotated (transformers:
/// `int(head_dim · partial_rotary_factor)`), checked to be even and positive.
pub fn rotary_dims(head_dim: usize, partial: f64) -> Result<usize> {
    let r = (head_dim as f64 * partial) as usize;
    if !(partial > 0.0 && partial <= 1.0) || r == 0 || !r.is_multiple_of(2) {
        return Err(Error::Invalid(format!(
            "partial_rotary_factor {partial} of head dim {head_dim} must give an even number of rotary dims"
        )));
    }
    Ok(r)
}

/// θ^(−2i/R) for i < R/2, in f32 as transformers computes it (`1 / θ^(arange(0, R, 2) / R)`).
pub fn inv_freq(rot: usize, theta: f64) -> Vec<f32> {
    (0..rot / 2).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / rot as f32)).collect()
}

/// Records RoPE on the q and k heads of `qkv`, in place.
pub fn rope(rec: &mut Recorder, qkv: &Tensor, dims: AttnDims, r: Rotary) -> Result<()> {
    let t = r.seqs.total();
    super::expect("qkv", qkv, &[t, dims.row()], DType::F32)?;
    r.check(dims)?;
    let p = Params::of(&RopeParams {
        nseq: word("sequences", r.seqs.count())?,
        heads: word("heads", dims.heads)?,
        kv_heads: word("kv heads", dims.kv_heads)?,
        dim: word("head dim", dims.head_dim)?,
        rot: word("rotary dims", r.rot)?,
        total: word("tokens", t)?,
        flags: 0,
        eps: 0.0,
    });
    let n = t * (dims.heads + dims.kv_heads) * (r.rot / 2);
    let wg = grid(rec.device(), n.div_ceil(64))?;
    rec.dispatch(&variant(), &p, &[qkv, r.seqs.table(), r.pos, r.inv_freq], wg)
}

/// f64 reference: `qkv` with its q and k heads rotated, token t of sequence s at position
/// `pos[s] + t − cu[s]`. The angle is rounded to f32 as the kernel (and transformers) forms it.
pub fn rope_ref(
    qkv: &[f32],
    dims: AttnDims,
    rot: usize,
    inv_freq: &[f32],
    cu: &[usize],
    pos: &[usize],
) -> Vec<f64> {
    let row = dims.row();
    let d = dims.head_dim;
    let mut out: Vec<f64> = qkv.iter().map(|&x| x as f64).collect();
    for s in 0..cu.len() - 1 {
        for t in cu[s]..cu[s + 1] {
            let position = pos[s] + t - cu[s];
            for head in 0..dims.heads + dims.kv_heads {
                let base = t * row + head * d;
                for (i, &f) in inv_freq.iter().enumerate().take(rot / 2) {
                    let angle = (position as f32 * f) as f64;
                    let (x1, x2) = (qkv[base + i] as f64, qkv[base + i + rot / 2] as f64);
                    out[base + i] = x1 * angle.cos() - x2 * angle.sin();
                    out[base + i + rot / 2] = x2 * angle.cos() + x1 * angle.sin();
                }
            }
        }
    }
    out
}
