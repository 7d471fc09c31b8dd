//! Depthwise causal conv1d (width 2–4) with optional bias and fused silu, over packed
//! sequences in the token-major layout of [`super::selective_scan`]: x and out `[T, C]`,
//! weight `[C, W]`, bias `[C]`, state `[S, C, W − 1]` (the W − 1 inputs before each sequence,
//! oldest first). Prefill reads the state when `init_state` is set and replaces it with the
//! last W − 1 inputs; the decode step rolls it in place.

use super::selective_scan::Sequences;
use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/causal_conv1d.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("causal_conv1d");

const WG: u32 = 256;

/// Conv switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvFlags {
    pub silu: bool,
    pub init_state: bool,
}

crate::uniform! {
    /// The conv kernels' parameters.
    pub struct ConvParams { pub channels: u32, pub total: u32, pub width: u32, pub nseq: u32, pub flags: u32 }
}

crate::flags! {
    /// Bits of [`ConvParams::flags`].
    pub mod conv_flags { HAS_BIAS = 1, SILU = 2, INIT = 4, RESET = 8 }
}

fn variant(entry: &'static str) -> Variant {
    let v = Variant::new(format!("causal_conv1d.{}", entry.trim_start_matches("conv_")), &SHADER, entry)
        .define("WG", WG)
        .with_params::<ConvParams>()
        .with_flags(conv_flags::SET);
    match entry {
        "conv_step" => v.define("STEP", 1),
        _ => v.define("PREFILL", 1),
    }
}

pub fn variants() -> Vec<Variant> {
    vec![variant("conv_prefill"), variant("conv_state"), variant("conv_step")]
}

fn check(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    seqs: &Sequences,
    state: &Tensor,
    out: &Tensor,
) -> Result<(usize, usize)> {
    let xs = x.shape();
    let t = seqs.total();
    if xs.len() != 2 || xs[0] != t || x.dtype() != DType::F32 {
        return Err(Error::Shape(format!("x must be f32 [{t}, C], got {xs:?}")));
    }
    let c = xs[1];
    let ws = w.shape();
    if ws.len() != 2 || ws[0] != c || !(2..=4).contains(&ws[1]) {
        return Err(Error::Shape(format!("conv weight must be [{c}, W] with W in 2..=4, got {ws:?}")));
    }
    let width = ws[1];
    super::expect("weight", w, &[c, width], DType::F32)?;
    if let Some(b) = bias {
        super::expect("bias", b, &[c], DType::F32)?;
    }
    super::expect("state", state, &[seqs.count(), c, width - 1], DType::F32)?;
    super::expect("out", out, &[t, c], DType::F32)?;
    Ok((c, width))
}

fn params(c: usize, width: usize, seqs: &Sequences, bias: bool, flags: ConvFlags) -> Result<Params> {
    use conv_flags::*;
    let bits = crate::shader::uniform::bits(&[
        (bias, HAS_BIAS),
        (flags.silu, SILU),
        (flags.init_state, INIT),
        (seqs.resets().is_some(), RESET),
    ]);
    Ok(Params::of(&ConvParams {
        channels: super::word("channels", c)?,
        total: super::word("tokens", seqs.total())?,
        width: width as u32,
        nseq: super::word("sequences", seqs.count())?,
        flags: bits,
    }))
}

/// The tensors of one conv (layout in the module docs).
#[derive(Clone, Copy)]
pub struct ConvArgs<'a> {
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub seqs: &'a Sequences,
    pub state: &'a Tensor,
}

/// Records the prefill conv and the state update (two dispatches in the same pass).
pub fn causal_conv1d(rec: &mut Recorder, a: &ConvArgs, flags: ConvFlags, out: &Tensor) -> Result<()> {
    let (c, width) = check(a.x, a.weight, a.bias, a.seqs, a.state, out)?;
    let p = params(c, width, a.seqs, a.bias.is_some(), flags)?;
    let tensors = [a.x, a.weight, a.bias.unwrap_or(a.weight), &a.seqs.table, a.state, out];
    let wg = grid(rec.device(), (c * a.seqs.total()).div_ceil(WG as usize))?;
    rec.dispatch(&variant("conv_prefill"), &p, &tensors, wg)?;
    let wg = grid(rec.device(), (c * a.seqs.count()).div_ceil(WG as usize))?;
    rec.dispatch(&variant("conv_state"), &p, &tensors, wg)
}

/// Records one decode step (`seqs` from [`Sequences::decode`]); the state is used and rolled.
pub fn causal_conv1d_step(rec: &mut Recorder, a: &ConvArgs, silu: bool, out: &Tensor) -> Result<()> {
    if a.seqs.total() != a.seqs.count() {
        return Err(Error::Invalid("a decode step takes one token per sequence (Sequences::decode)".into()));
    }
    let (c, width) = check(a.x, a.weight, a.bias, a.seqs, a.state, out)?;
    let p = params(c, width, a.seqs, a.bias.is_some(), ConvFlags { silu, init_state: true })?;
    let tensors = [a.x, a.weight, a.bias.unwrap_or(a.weight), &a.seqs.table, a.state, out];
    let wg = grid(rec.device(), (c * a.seqs.count()).div_ceil(WG as usize))?;
    rec.dispatch(&variant("conv_step"), &p, &tensors, wg)
}

/// f64 reference: returns (out `[T, C]`, final state `[S, C, W − 1]`).
#[allow(clippy::too_many_arguments)]
pub fn causal_conv1d_ref(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    cu: &[usize],
    resets: Option<&[bool]>,
    state: &[f32],
    c: usize,
    width: usize,
    flags: ConvFlags,
) -> (Vec<f64>, Vec<f64>) {
    let t_total = *cu.last().expect("cu_seqlens");
    let k1 = width - 1;
    let mut out = vec![0f64; c * t_total];
    let mut fin = vec![0f64; (cu.len() - 1) * c * k1];
    for s in 0..cu.len() - 1 {
        for ch in 0..c {
            // History window, oldest first, starting from the state.
            let mut hist: Vec<f64> = (0..k1)
                .map(|k| if flags.init_state { state[(s * c + ch) * k1 + k] as f64 } else { 0.0 })
                .collect();
            for t in cu[s]..cu[s + 1] {
                if resets.is_some_and(|r| r[t]) {
                    hist.iter_mut().for_each(|v| *v = 0.0);
                }
                let xv = x[t * c + ch] as f64;
                let mut acc = w[ch * width + k1] as f64 * xv;
                for k in 0..k1 {
                    acc += w[ch * width + k] as f64 * hist[k];
                }
                if let Some(b) = bias {
                    acc += b[ch] as f64;
                }
                if flags.silu {
                    acc /= 1.0 + (-acc).exp();
                }
                out[t * c + ch] = acc;
                if k1 > 0 {
                    hist.remove(0);
                    hist.push(xv);
                }
            }
            fin[(s * c + ch) * k1..(s * c + ch + 1) * k1].copy_from_slice(&hist);
        }
    }
    (out, fin)
}
