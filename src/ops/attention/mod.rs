//! Softmax attention with KV caches: a FlashAttention-2-style prefill (query tiles against
//! key/value tiles in workgroup memory, online softmax in f32), a flash-decoding step (keys
//! split over workgroups, then a reduce), and the cache upkeep, over the packed [`Sequences`]
//! the scans use.
//!
//! **Layout.** Each token's projections are one row `qkv` `[T, (H + 2·Hkv)·D]`: q of the H
//! query heads, then k and v of the Hkv KV heads (one fused projection; RoPE is applied to it
//! in place by [`super::rope`]). Query head h reads KV head h / (H / Hkv) (GQA and MQA, no
//! copy). The cache ([`KvCache`]) is either one ring `[S, CAP, 2, Hkv, D]` per layer (position
//! j at slot j mod CAP; a sliding window of W needs CAP = W), or, for full attention, up to
//! [`KV_BLOCKS`] blocks of that shape allocated as positions grow (position j in block
//! j / CAP, at slot j mod CAP; blocks already holding positions are never moved). `pos` `[S]`
//! (u32) counts the positions each sequence has cached: the new tokens of sequence s are at
//! positions pos[s], pos[s] + 1, ….
//!
//! **Masking.** Query position i sees key j when i − W < j ≤ i (no window: j ≤ i). Keys before
//! pos[s] are read from the cache, the others from the new tokens' rows, so a prefill longer
//! than the ring is exact. Tiles outside every query's window are skipped: a window costs
//! O(L·W). Scores can be soft-capped (cap·tanh(s/cap)).
//!
//! **Order.** A layer records attention, then [`kv_append`] (the last CAP new positions of
//! each sequence into its ring); [`advance_positions`] runs once after every layer.

pub mod cases;
mod kernels;
mod reference;

pub use kernels::{
    attn_flags, rolled_loops, splits, variant, variants, AttnParams, CoopForm, PrefillKernel, PrefillProblem,
    Stage, COOP_QUERY_TILES, HEAD_DIMS, MAX_SPLITS, MIN_SPLIT_LEN,
};
pub use reference::{attention_ref, join_blocks, ring_attention_ref, RingRef};

/// The most blocks a growing cache has: the kernels bind this many (WebGPU's default of 8
/// storage bindings per stage holds them with qkv, the sequence table, positions and out).
pub const KV_BLOCKS: usize = 4;

use super::sequences::Sequences;
use super::Recorder;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/attention/`): the header, then one file per kernel group.
pub const SHADER: crate::shader::Source = crate::wgsl_source!(
    "attention/attention",
    parts: [
        crate::wgsl_source!("attention/prefill"),
        crate::wgsl_source!("attention/prefill_coop"),
        crate::wgsl_source!("attention/decode"),
        crate::wgsl_source!("attention/cache"),
        crate::wgsl_source!("attention/kv_blocks")
    ]
);

/// Head counts and head dim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttnDims {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnDims {
    /// Width of a `qkv` row.
    pub fn row(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// Checks the head counts (GQA needs H a multiple of Hkv) and the head dim.
    pub fn check(&self) -> Result<()> {
        let AttnDims { heads, kv_heads, head_dim } = *self;
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(Error::Shape(format!(
                "{heads} query heads must be a positive multiple of {kv_heads} KV heads"
            )));
        }
        if !HEAD_DIMS.contains(&head_dim) {
            return Err(Error::UnsupportedVariant(format!(
                "head dim {head_dim}: attention kernels exist for {HEAD_DIMS:?}"
            )));
        }
        Ok(())
    }
}

/// The KV cache of one layer, f32, each tensor `[S, CAP, 2, Hkv, D]`.
#[derive(Debug, Clone, Copy)]
pub enum KvCache<'a> {
    /// A ring of CAP positions per sequence.
    Ring(&'a Tensor),
    /// 1 to [`KV_BLOCKS`] blocks of CAP positions: positions below `blocks.len()·CAP` only.
    Blocks(&'a [&'a Tensor]),
}

impl<'a> KvCache<'a> {
    /// The cache's tensors.
    pub fn tensors(&self) -> &[&'a Tensor] {
        match self {
            KvCache::Ring(t) => std::slice::from_ref(t),
            KvCache::Blocks(b) => b,
        }
    }

    /// The four block bindings of the reading kernels (a ring, or the blocks not allocated
    /// yet, repeat the first).
    fn bindings(&self) -> [&'a Tensor; KV_BLOCKS] {
        let t = self.tensors();
        std::array::from_fn(|i| *t.get(i).unwrap_or(&t[0]))
    }
}

/// One attention call's tensors and settings.
#[derive(Debug, Clone, Copy)]
pub struct AttnArgs<'a> {
    /// `[T, (H + 2·Hkv)·D]` f32.
    pub qkv: &'a Tensor,
    /// The cache.
    pub kv: KvCache<'a>,
    /// `[S]` u32: positions cached per sequence.
    pub pos: &'a Tensor,
    pub seqs: &'a Sequences,
    pub dims: AttnDims,
    /// The sliding window W (None: full attention).
    pub window: Option<usize>,
    /// Positions per sequence of the ring, or of each block.
    pub cap: usize,
    /// Score scale, usually 1/√D.
    pub scale: f32,
    /// Soft cap of the scores.
    pub softcap: Option<f32>,
    /// The prefill kernel ([`PrefillKernel::choose`] picks one; the decode ignores it).
    pub prefill: PrefillKernel,
}

impl AttnArgs<'_> {
    /// Positions the cache can hold per sequence.
    pub fn capacity(&self) -> usize {
        self.cap * self.kv.tensors().len()
    }

    /// The most keys one query sees.
    pub fn span(&self) -> usize {
        self.window.unwrap_or(self.capacity()).min(self.capacity())
    }

    fn blocks(&self) -> bool {
        matches!(self.kv, KvCache::Blocks(_))
    }

    fn check(&self) -> Result<()> {
        self.dims.check()?;
        let (t, s) = (self.seqs.total(), self.seqs.count());
        let d = self.dims;
        if self.seqs.resets().is_some() {
            return Err(Error::Invalid(
                "attention takes no reset flags (a new sequence starts a new state)".into(),
            ));
        }
        if self.window == Some(0) {
            return Err(Error::Invalid("a sliding window must hold at least one position".into()));
        }
        let blocks = self.kv.tensors().len();
        if blocks == 0 || blocks > KV_BLOCKS {
            return Err(Error::Invalid(format!("a KV cache of {blocks} blocks (1 to {KV_BLOCKS})")));
        }
        // A ring must hold the window; blocks hold every position, whatever the window.
        if !self.blocks() && self.window.is_some_and(|w| w > self.cap) {
            return Err(Error::Invalid(format!(
                "a window of {:?} positions needs a cache of at least that many, not {}",
                self.window, self.cap
            )));
        }
        if !(self.scale.is_finite() && self.softcap.is_none_or(|c| c.is_finite() && c > 0.0)) {
            return Err(Error::Invalid(
                "attention scale and soft cap must be finite (the cap positive)".into(),
            ));
        }
        super::expect("qkv", self.qkv, &[t, d.row()], DType::F32)?;
        for (b, kv) in self.kv.tensors().iter().enumerate() {
            let name = if self.blocks() { format!("kv cache block {b}") } else { "kv cache".into() };
            super::expect(&name, kv, &[s, self.cap, 2, d.kv_heads, d.head_dim], DType::F32)?;
        }
        super::expect("positions", self.pos, &[s], DType::U32)
    }
}

/// Records the prefill attention of the new tokens (any lengths, continuing the cache):
/// `out` `[T, H·D]` f32. The cache is not changed ([`kv_append`] follows).
pub fn attention_prefill(rec: &mut Recorder, a: &AttnArgs, out: &Tensor) -> Result<()> {
    a.check()?;
    super::expect("out", out, &[a.seqs.total(), a.dims.heads * a.dims.head_dim], DType::F32)?;
    kernels::record_prefill(rec, a, out)
}

/// The decode partials' shape for `sequences` sequences: `[S, H, splits, D + 2]`.
pub fn partial_shape(a_dims: AttnDims, sequences: usize, span: usize) -> Vec<usize> {
    let rows = sequences * kernels::decode_rows(a_dims);
    vec![sequences, a_dims.heads, splits(span, rows).0, a_dims.head_dim + 2]
}

/// Records a decode step's attention (one token per sequence): the split pass into `part`
/// ([`partial_shape`]), then the reduce into `out` `[S, H·D]`.
pub fn attention_decode(rec: &mut Recorder, a: &AttnArgs, part: &Tensor, out: &Tensor) -> Result<()> {
    a.check()?;
    if a.seqs.total() != a.seqs.count() {
        return Err(Error::Invalid("a decode step takes one token per sequence (Sequences::decode)".into()));
    }
    super::expect("out", out, &[a.seqs.count(), a.dims.heads * a.dims.head_dim], DType::F32)?;
    kernels::record_decode(rec, a, part, out)
}

/// Records the append of the new tokens' K and V to the cache (after the layer's attention);
/// a growing cache must already have the blocks the new positions fall in.
pub fn kv_append(rec: &mut Recorder, a: &AttnArgs) -> Result<()> {
    a.check()?;
    kernels::record_append(rec, a)
}

/// Records `pos[s] += len_s`, once per forward pass after every layer.
pub fn advance_positions(rec: &mut Recorder, seqs: &Sequences, pos: &Tensor) -> Result<()> {
    super::expect("positions", pos, &[seqs.count()], DType::U32)?;
    kernels::record_advance(rec, seqs, pos)
}
