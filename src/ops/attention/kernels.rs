//! The attention family's variants and their recording: prefill, decode (split) and reduce,
//! the cache append and the position advance, each for head dims 64, 128 and 256.

use super::super::{grid, word, Params, Recorder};
use super::{AttnArgs, SHADER};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::Tensor;

/// Head dims with kernels.
pub const HEAD_DIMS: [usize; 3] = [64, 128, 256];
/// Keys per decode split (a multiple of the 64-key tile).
pub const SPLIT_LEN: usize = 512;

crate::uniform! {
    /// Parameters of every attention kernel (see `shaders/attention/attention.wgsl`).
    pub struct AttnParams {
        pub nseq: u32,
        pub heads: u32,
        pub kv_heads: u32,
        pub cap: u32,
        pub window: u32,
        pub tiles: u32,
        pub splits: u32,
        pub split_len: u32,
        pub scale: f32,
        pub softcap: f32,
        pub flags: u32,
        /// D / 4 and keys per prefill tile: the loop bounds of the `.rolled` forms.
        pub d4: u32,
        pub bk: u32,
    }
}

crate::flags! {
    /// Bits of [`AttnParams::flags`] (RESET is unused: attention takes no reset flags).
    pub mod attn_flags { SOFTCAP = 1, RESET = 2 }
}

/// The kernels of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prefill,
    /// The prefill with 4 invocations per query and subgroup shuffles.
    PrefillSg,
    Decode,
    Reduce,
    Append,
    Advance,
}

impl Stage {
    fn entry(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Stage::Prefill => ("prefill", "attn_prefill", "PREFILL"),
            Stage::PrefillSg => ("prefill", "attn_prefill", "PREFILL"),
            Stage::Decode => ("decode", "attn_decode", "DECODE"),
            Stage::Reduce => ("reduce", "attn_reduce", "REDUCE"),
            Stage::Append => ("append", "kv_append", "APPEND"),
            Stage::Advance => ("advance", "advance", "ADVANCE"),
        }
    }
}

/// The variant of `stage` for head dim `d` (the advance kernel has one form, `d` unused);
/// `rolled`: the prefill's inner loops bounded by uniforms (see [`rolled_loops`]).
pub fn variant(stage: Stage, d: usize, rolled: bool) -> Variant {
    let (name, entry, define) = stage.entry();
    let rolled = rolled && stage == Stage::Prefill;
    let name = match stage {
        Stage::Advance => "attention.advance".to_string(),
        Stage::PrefillSg => format!("attention.prefill.d{d}.sg"),
        _ => format!("attention.{name}.d{d}{}", if rolled { ".rolled" } else { "" }),
    };
    let v = Variant::new(name, &SHADER, entry);
    let v = if stage == Stage::PrefillSg { v.needs_subgroups() } else { v };
    let lanes = if stage == Stage::PrefillSg { 4 } else { 1 };
    v.define("SG", (stage == Stage::PrefillSg) as u32)
        .define("LANES", lanes)
        .define("WGSIZE", 64 * lanes)
        .define("DQN", if rolled { "p.d4" } else { "DQ" })
        .define("BKN", if rolled { "p.bk" } else { "BK" })
        .define(define, 1)
        .define("D", d)
        // K and V tiles of 2048 floats each: 16 KiB, WebGPU's default workgroup memory.
        .define("BK", 2048 / d)
        .define("BKD4", 512)
        // lib/reduce (the decode's max and sum) over the 64 invocations, without subgroups.
        .define("WG", 64)
        .define("SUBGROUPS", 0)
        .with_params::<AttnParams>()
        .with_flags(attn_flags::SET)
}

pub fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for d in HEAD_DIMS {
        for s in [Stage::Prefill, Stage::Decode, Stage::Reduce, Stage::Append] {
            v.push(variant(s, d, false));
        }
        v.push(variant(Stage::Prefill, d, true));
        v.push(variant(Stage::PrefillSg, d, false));
    }
    v.push(variant(Stage::Advance, 64, false));
    v
}

/// Whether the `.sg` form can run on this device.
pub fn subgroup_prefill_runs(caps: &crate::device::Capabilities) -> bool {
    caps.subgroups && caps.subgroup_min_size >= 4
}

/// Whether the prefill takes its `.rolled` form on this device: on GL, whose compiler (Mesa's,
/// at least) unrolls the constant-bound loops for minutes; elsewhere unrolled loops keep the
/// query and the accumulator in registers.
pub fn rolled_loops(caps: &crate::device::Capabilities) -> bool {
    caps.backend == "Gl"
}

/// Decode splits for keys of `span` positions at most: (splits, keys per split).
pub fn splits(span: usize) -> (usize, usize) {
    (span.div_ceil(SPLIT_LEN).max(1), SPLIT_LEN)
}

fn params(a: &AttnArgs, tiles: usize, splits: (usize, usize)) -> Result<Params> {
    let flags = if a.softcap.is_some() { attn_flags::SOFTCAP } else { 0 };
    Ok(Params::of(&AttnParams {
        nseq: word("sequences", a.seqs.count())?,
        heads: word("heads", a.dims.heads)?,
        kv_heads: word("kv heads", a.dims.kv_heads)?,
        cap: word("cache positions", a.cap)?,
        window: word("window", a.window.unwrap_or(0))?,
        tiles: word("query tiles", tiles)?,
        splits: word("splits", splits.0)?,
        split_len: word("split length", splits.1)?,
        scale: a.scale,
        softcap: a.softcap.unwrap_or(1.0),
        flags,
        d4: word("head dim / 4", a.dims.head_dim / 4)?,
        bk: word("keys per tile", 2048 / a.dims.head_dim)?,
    }))
}

/// Records the prefill: `out` `[T, H·D]`.
pub fn record_prefill(rec: &mut Recorder, a: &AttnArgs, out: &Tensor) -> Result<()> {
    let longest = a.seqs.cu_seqlens().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let tiles = longest.div_ceil(64).max(1);
    let groups = a.seqs.count() * tiles * a.dims.heads;
    let wg = grid(rec.device(), groups)?;
    let caps = rec.device().caps();
    let sg = a.prefill_sg;
    if sg && !subgroup_prefill_runs(caps) {
        return Err(Error::UnsupportedVariant(
            "the subgroup prefill needs subgroups of at least 4 lanes".into(),
        ));
    }
    let v = if sg {
        variant(Stage::PrefillSg, a.dims.head_dim, false)
    } else {
        variant(Stage::Prefill, a.dims.head_dim, rolled_loops(caps))
    };
    rec.dispatch(&v, &params(a, tiles, (1, 1))?, &[a.qkv, a.kv, a.seqs.table(), a.pos, out], wg)
}

/// Records the decode step (one token per sequence): the split pass into `part`
/// `[S, H, splits, D + 2]`, then the reduce into `out` `[S, H·D]`.
pub fn record_decode(rec: &mut Recorder, a: &AttnArgs, part: &Tensor, out: &Tensor) -> Result<()> {
    let sp = splits(a.span());
    let (s, h, d) = (a.seqs.count(), a.dims.heads, a.dims.head_dim);
    if part.numel() < s * h * sp.0 * (d + 2) {
        return Err(Error::Shape(format!("decode partials: {:?} is too small", part.shape())));
    }
    let p = params(a, 1, sp)?;
    let wg = grid(rec.device(), s * h * sp.0)?;
    rec.dispatch(&variant(Stage::Decode, d, false), &p, &[a.qkv, a.kv, a.seqs.table(), a.pos, part], wg)?;
    let wg = grid(rec.device(), (s * h * d).div_ceil(64))?;
    rec.dispatch(&variant(Stage::Reduce, d, false), &p, &[part, out], wg)
}

/// Records the append of the new tokens' K and V to the cache.
pub fn record_append(rec: &mut Recorder, a: &AttnArgs) -> Result<()> {
    let n = a.seqs.total() * a.dims.kv_heads * a.dims.head_dim;
    let wg = grid(rec.device(), n.div_ceil(64))?;
    let p = params(a, 1, (1, 1))?;
    rec.dispatch(
        &variant(Stage::Append, a.dims.head_dim, false),
        &p,
        &[a.qkv, a.kv, a.seqs.table(), a.pos],
        wg,
    )
}

/// Records `pos[s] += len_s` (after every layer has read the positions).
pub fn record_advance(rec: &mut Recorder, seqs: &super::Sequences, pos: &Tensor) -> Result<()> {
    let p = Params::of(&AttnParams {
        nseq: word("sequences", seqs.count())?,
        heads: 1,
        kv_heads: 1,
        cap: 1,
        window: 0,
        tiles: 1,
        splits: 1,
        split_len: 1,
        scale: 1.0,
        softcap: 1.0,
        flags: 0,
        d4: 1,
        bk: 1,
    });
    let wg = grid(rec.device(), seqs.count().div_ceil(64))?;
    rec.dispatch(&variant(Stage::Advance, 64, false), &p, &[seqs.table(), pos], wg)
}
