//! The attention family's variants and their recording: prefill, decode (split) and reduce,
//! the cache append and the position advance, each for head dims 64, 128 and 256.

use super::super::{grid, word, Params, Recorder};
use super::{AttnArgs, SHADER};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::Tensor;

/// Head dims with kernels.
pub const HEAD_DIMS: [usize; 3] = [64, 128, 256];
/// The fewest keys per decode split (the 64-key tile).
pub const MIN_SPLIT_LEN: usize = 64;
/// The most splits of one (sequence, head)'s keys in a decode step.
pub const MAX_SPLITS: usize = 64;
/// Workgroups a decode step aims for (the splits fill the GPU when the batch does not).
const DECODE_WORKGROUPS: usize = 4096;

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
        /// The block an append writes (growing caches).
        pub block: u32,
    }
}

crate::flags! {
    /// Bits of [`AttnParams::flags`] (RESET is unused: attention takes no reset flags;
    /// BLOCKS: the cache is blocks of `cap` positions, not a ring).
    pub mod attn_flags { SOFTCAP = 1, RESET = 2, BLOCKS = 4 }
}

/// The kernels of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prefill,
    /// The prefill with 4 invocations per query and subgroup shuffles.
    PrefillSg,
    /// A tensor-core prefill.
    PrefillCoop(CoopForm),
    /// The decode step, for this many query heads per workgroup (1, 2, 4 or 8).
    Decode(usize),
    Reduce,
    Append,
    Advance,
}

impl Stage {
    fn entry(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Stage::Prefill => ("prefill", "attn_prefill", "PREFILL"),
            Stage::PrefillSg => ("prefill", "attn_prefill", "PREFILL"),
            Stage::PrefillCoop(..) => ("prefill", "attn_prefill_coop", "PREFILL_COOP"),
            Stage::Decode(_) => ("decode", "attn_decode", "DECODE"),
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
        Stage::PrefillCoop(f) => format!("attention.prefill.d{d}.{}", f.suffix()),
        Stage::Decode(gb) => format!("attention.decode.d{d}.g{gb}"),
        _ => format!("attention.{name}.d{d}{}", if rolled { ".rolled" } else { "" }),
    };
    let v = Variant::new(name, &SHADER, entry);
    if let Stage::PrefillCoop(f) = stage {
        return v
            .needs_coop_matrix()
            .needs_subgroups()
            .define(define, 1)
            .define("SPLIT", f.split)
            .define("SPLIT2", (f.split == 2) as u32)
            .define("KG", 4 / f.split)
            .define("D", d)
            .define("BQ", f.bq)
            .define("DF", d / 16)
            .define("DFO", d / 16 / f.split)
            // vec4s of a 32-key tile per invocation.
            .define("PL", 32 * d / 4 / f.invocations())
            .define("WGSIZE", f.invocations())
            .define("KVT", "vec4<f32>")
            // Its tiles, scores and P are staged (or zeroed) and its flag cleared before use.
            .define(crate::shader::WRITES_BEFORE_READS, 1)
            .with_params::<AttnParams>()
            .with_flags(attn_flags::SET);
    }
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
        // The word the stage reads the cache in (attention/kv_blocks).
        .define("KVT", "vec4<f32>")
        .define("GB", if let Stage::Decode(gb) = stage { gb } else { 1 })
        .with_params::<AttnParams>()
        .with_flags(attn_flags::SET)
}

pub fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for d in HEAD_DIMS {
        for s in [Stage::Prefill, Stage::Reduce, Stage::Append] {
            v.push(variant(s, d, false));
        }
        for gb in DECODE_HEAD_GROUPS {
            v.push(variant(Stage::Decode(gb), d, false));
        }
        v.push(variant(Stage::Prefill, d, true));
        v.push(variant(Stage::PrefillSg, d, false));
        for k in PrefillKernel::ALL {
            if let Some(f) = k.form().filter(|f| f.workgroup_bytes(d) <= COOP_MAX_BYTES) {
                v.push(variant(Stage::PrefillCoop(f), d, false));
            }
        }
    }
    v.push(variant(Stage::Advance, 64, false));
    v
}

/// Queries per workgroup of the tensor-core prefill.
pub const COOP_QUERY_TILES: [usize; 2] = [64, 128];
/// The most workgroup memory a tensor-core form may take (the H200's 48 KiB).
const COOP_MAX_BYTES: usize = 48 * 1024;

/// A tensor-core prefill form: `bq` queries per workgroup (64 or 128) and `split` subgroups
/// per 16 query rows, each with D / split columns of O (1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopForm {
    pub bq: usize,
    pub split: usize,
}

impl CoopForm {
    /// `flash{bq}` or `flash{bq}.s{split}`.
    fn suffix(self) -> String {
        match self.split {
            1 => format!("flash{}", self.bq),
            s => format!("flash{}.s{s}", self.bq),
        }
    }

    fn invocations(self) -> usize {
        2 * self.bq * self.split
    }

    /// Workgroup memory at head dim `d`: the f16 key tiles (64 rows of D + 8 halves), the f32
    /// scores (BQ rows of 36), f16 P (BQ rows of 40) and the rescale flag (32 words).
    pub fn workgroup_bytes(self, d: usize) -> usize {
        64 * (d + 8) * 2 + self.bq * 36 * 4 + self.bq * 40 * 2 + 128
    }
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

/// Query heads per decode workgroup: the forms, and the one for `dims` (the smallest that
/// holds a KV head's query heads, else 8 with several workgroups per KV head).
const DECODE_HEAD_GROUPS: [usize; 4] = [1, 2, 4, 8];

fn decode_head_group(dims: super::AttnDims) -> usize {
    (dims.heads / dims.kv_heads).next_power_of_two().min(8)
}

/// Decode workgroups per sequence and split: one per KV head and group of its query heads.
pub fn decode_rows(dims: super::AttnDims) -> usize {
    dims.kv_heads * (dims.heads / dims.kv_heads).div_ceil(decode_head_group(dims))
}

/// Decode splits for keys of `span` positions at most, over `rows` workgroups per split
/// ([`decode_rows`] per sequence): (splits, keys per split). Enough splits for about [`DECODE_WORKGROUPS`] workgroups,
/// at most [`MAX_SPLITS`] and at least [`MIN_SPLIT_LEN`] keys each: the H200 ran the step over
/// a 4096-position ring (32 heads, one sequence) in 175 µs with 64-key splits, 218 µs with
/// 128, 347 with 256 and 575 with 512.
pub fn splits(span: usize, rows: usize) -> (usize, usize) {
    let want = DECODE_WORKGROUPS.div_ceil(rows.max(1)).clamp(1, MAX_SPLITS);
    let len = span.div_ceil(want).next_multiple_of(MIN_SPLIT_LEN).max(MIN_SPLIT_LEN);
    (span.div_ceil(len).max(1), len)
}

fn params(a: &AttnArgs, tiles: usize, splits: (usize, usize), block: usize) -> Result<Params> {
    let flags = if a.softcap.is_some() { attn_flags::SOFTCAP } else { 0 }
        | if a.blocks() { attn_flags::BLOCKS } else { 0 };
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
        block: block as u32,
    }))
}

/// The prefill kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrefillKernel {
    /// One query per invocation, f32 throughout: the default, and exact to f32 rounding.
    #[default]
    Plain,
    /// Four invocations per query with subgroup shuffles (measured 4–9% slower on the H200).
    Subgroup,
    /// Tensor cores: f16 Q, K, V and P with f32 accumulation and FA2's online softmax (with a
    /// lazy rescale of O), this many queries per workgroup.
    Flash(usize),
    /// The same with two subgroups per 16 query rows, each holding half of O.
    FlashSplit(usize),
}

impl PrefillKernel {
    pub const ALL: [PrefillKernel; 6] = [
        PrefillKernel::Plain,
        PrefillKernel::Subgroup,
        PrefillKernel::Flash(64),
        PrefillKernel::Flash(128),
        PrefillKernel::FlashSplit(64),
        PrefillKernel::FlashSplit(128),
    ];

    pub fn name(self) -> String {
        match self {
            PrefillKernel::Plain => "attention.prefill".into(),
            PrefillKernel::Subgroup => "attention.prefill.sg".into(),
            k => format!("attention.prefill.{}", k.form().expect("a tensor-core form").suffix()),
        }
    }

    /// Whether it runs head dim `d` on this device. The tensor-core forms need 16×16×16 f16 →
    /// f32 cooperative matrices, subgroups of exactly 32 lanes (each owns 16 query rows) and
    /// their workgroup memory ([`coop_workgroup_bytes`]).
    pub fn runs(self, caps: &crate::device::Capabilities, d: usize) -> bool {
        match self {
            PrefillKernel::Plain => true,
            PrefillKernel::Subgroup => subgroup_prefill_runs(caps),
            k => {
                let f = k.form().expect("a tensor-core form");
                let bytes = f.workgroup_bytes(d);
                COOP_QUERY_TILES.contains(&f.bq)
                    && bytes <= COOP_MAX_BYTES
                    && caps.coop_f16_16x16_f32()
                    && caps.subgroup_min_size == 32
                    && caps.subgroup_max_size == 32
                    && caps.max_compute_invocations_per_workgroup as usize >= f.invocations()
                    && caps.max_compute_workgroup_storage_size as usize >= bytes
            }
        }
    }

    /// The tensor-core form, if it is one.
    pub fn form(self) -> Option<CoopForm> {
        let (bq, split) = match self {
            PrefillKernel::Plain | PrefillKernel::Subgroup => return None,
            PrefillKernel::Flash(bq) => (bq, 1),
            PrefillKernel::FlashSplit(bq) => (bq, 2),
        };
        Some(CoopForm { bq, split })
    }

    /// Whether it rounds Q, K, V and P to f16 (the tensor-core forms).
    pub fn uses_f16(self) -> bool {
        self.form().is_some()
    }

    /// Queries per workgroup.
    fn queries(self) -> usize {
        self.form().map_or(64, |f| f.bq)
    }

    /// The kernel for a prefill of `tokens` tokens: the tuned choice, else the tensor cores
    /// where f16 arithmetic is allowed (`f16_ok`, a model with f16 weights) and the device has
    /// them, else the plain form. (The plain form stays the f32 oracle the others are tested
    /// against, and the only one on adapters without cooperative matrices.)
    pub fn choose(dev: &crate::device::Device, dims: super::AttnDims, tokens: usize, f16_ok: bool) -> Self {
        super::super::kernel::choose::<Self>(dev, &PrefillProblem { dims, tokens, f16_ok })
    }
}

/// What the prefill's kernel choice depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefillProblem {
    pub dims: super::AttnDims,
    pub tokens: usize,
    /// Whether f16 operands are acceptable (the tensor-core forms round Q, K, V and P to f16).
    pub f16_ok: bool,
}

impl super::super::kernel::Kernel for PrefillKernel {
    const OP: &'static str = "attention.prefill";
    type Problem = PrefillProblem;
    fn all() -> Vec<Self> {
        Self::ALL.to_vec()
    }
    fn name(&self) -> String {
        PrefillKernel::name(*self)
    }
    fn supports(&self, caps: &crate::device::Capabilities, p: &PrefillProblem) -> bool {
        self.runs(caps, p.dims.head_dim) && (p.f16_ok || !self.uses_f16())
    }
    fn bucket(p: &PrefillProblem) -> String {
        let class = if p.tokens < 1024 { "short" } else { "long" };
        format!("d{}.g{}.{class}", p.dims.head_dim, p.dims.heads / p.dims.kv_heads)
    }
    /// The tensor cores where allowed, in the order the H200 measured them fastest: 128 queries
    /// per workgroup in split bands, then whole bands, then 64 queries (which is all that fits
    /// at D = 256); otherwise the plain form.
    fn heuristic(caps: &crate::device::Capabilities, p: &PrefillProblem) -> Self {
        let d = p.dims.head_dim;
        [
            PrefillKernel::FlashSplit(128),
            PrefillKernel::Flash(128),
            PrefillKernel::FlashSplit(64),
            PrefillKernel::Flash(64),
        ]
        .into_iter()
        .find(|k| p.f16_ok && p.tokens >= 64 && k.runs(caps, d))
        .unwrap_or(PrefillKernel::Plain)
    }
}

/// Records the prefill: `out` `[T, H·D]`.
pub fn record_prefill(rec: &mut Recorder, a: &AttnArgs, out: &Tensor) -> Result<()> {
    let k = a.prefill;
    let caps = rec.device().caps();
    if !k.runs(caps, a.dims.head_dim) {
        return Err(Error::UnsupportedVariant(format!(
            "{} at head dim {} needs {} (adapter {})",
            k.name(),
            a.dims.head_dim,
            match k {
                PrefillKernel::Subgroup => "subgroups of at least 4 lanes".to_string(),
                _ => format!(
                    "16x16x16 f16 cooperative matrices, 32-lane subgroups, {} invocations and {} bytes of workgroup memory per workgroup",
                    k.form().map_or(0, |f| f.invocations()),
                    k.form().map_or(0, |f| f.workgroup_bytes(a.dims.head_dim))
                ),
            },
            caps.adapter
        )));
    }
    let longest = a.seqs.cu_seqlens().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let tiles = longest.div_ceil(k.queries()).max(1);
    let groups = a.seqs.count() * tiles * a.dims.heads;
    let wg = grid(rec.device(), groups)?;
    let d = a.dims.head_dim;
    let v = match k {
        PrefillKernel::Plain => variant(Stage::Prefill, d, rolled_loops(caps)),
        PrefillKernel::Subgroup => variant(Stage::PrefillSg, d, false),
        k => variant(Stage::PrefillCoop(k.form().expect("a tensor-core form")), d, false),
    };
    let [k0, k1, k2, k3] = a.kv.bindings();
    rec.dispatch(&v, &params(a, tiles, (1, 1), 0)?, &[a.qkv, k0, k1, k2, k3, a.seqs.table(), a.pos, out], wg)
}

/// Records the decode step (one token per sequence): the split pass into `part`
/// `[S, H, splits, D + 2]`, then the reduce into `out` `[S, H·D]`.
pub fn record_decode(rec: &mut Recorder, a: &AttnArgs, part: &Tensor, out: &Tensor) -> Result<()> {
    let rows = a.seqs.count() * decode_rows(a.dims);
    let sp = splits(a.span(), rows);
    let (s, h, d) = (a.seqs.count(), a.dims.heads, a.dims.head_dim);
    if part.numel() < s * h * sp.0 * (d + 2) {
        return Err(Error::Shape(format!("decode partials: {:?} is too small", part.shape())));
    }
    let p = params(a, 1, sp, 0)?;
    let wg = grid(rec.device(), rows * sp.0)?;
    let [k0, k1, k2, k3] = a.kv.bindings();
    let ins = [a.qkv, k0, k1, k2, k3, a.seqs.table(), a.pos, part];
    rec.dispatch(&variant(Stage::Decode(decode_head_group(a.dims)), d, false), &p, &ins, wg)?;
    let wg = grid(rec.device(), (s * h * d).div_ceil(64))?;
    rec.dispatch(&variant(Stage::Reduce, d, false), &p, &[part, out], wg)
}

/// Records the append of the new tokens' K and V to the cache.
pub fn record_append(rec: &mut Recorder, a: &AttnArgs) -> Result<()> {
    let n = a.seqs.total() * a.dims.kv_heads * a.dims.head_dim;
    let wg = grid(rec.device(), n.div_ceil(64))?;
    // One dispatch per block (a ring is one), each writing the positions that fall in it.
    for (b, kv) in a.kv.tensors().iter().enumerate() {
        let p = params(a, 1, (1, 1), b)?;
        let v = variant(Stage::Append, a.dims.head_dim, false);
        rec.dispatch(&v, &p, &[a.qkv, kv, a.seqs.table(), a.pos], wg)?;
    }
    Ok(())
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
        block: 0,
        d4: 1,
        bk: 1,
    });
    let wg = grid(rec.device(), seqs.count().div_ceil(64))?;
    rec.dispatch(&variant(Stage::Advance, 64, false), &p, &[seqs.table(), pos], wg)
}
