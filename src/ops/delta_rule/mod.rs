//! The delta-rule family of linear attention (DeltaNet, Gated DeltaNet, Kimi Delta Attention's
//! per-key-channel gates), over the packed [`Sequences`] the scans use. Per value head a state S
//! `[dk, dv]` (f32) is decayed by exp(g), corrected towards v along k by the delta rule and read
//! by q (see `shaders/delta_rule/delta_rule.wgsl`).
//!
//! Tiers, as fla stages them: the f64 references ([`delta_rule_ref`], token by token, the
//! oracle; [`delta_rule_chunked_ref`], the chunked WY algebra in f64, with per-channel gates in
//! sub-chunks of 16 as a tensor-core form must take them), the recurrent kernel
//! ([`DeltaKernel::Recurrent`]: the decode step, one workgroup per 64 state columns walking the
//! tokens) and the chunked WY-form prefill ([`DeltaKernel::Chunked`]: chunks of [`CHUNK`]
//! tokens, T = (I + A)⁻¹ by forward substitution, then a walk over each sequence's chunks for
//! the states and a chunk-parallel output pass; per-head or per-key-channel gates; see
//! `shaders/delta_rule/chunked.wgsl`), in f32 SIMT and, for f16 models with per-head gates on
//! adapters with cooperative matrices, on the tensor cores ([`DeltaKernel::ChunkedCoop`], the
//! same passes and scratch with f16 operands; `shaders/delta_rule/chunked_coop.wgsl`).
//!
//! **Layout.** `qkv` `[T, width]` holds q (Hk heads of dk), k (Hk heads) and v (Hv heads of
//! dv) at the given columns, so the short convolution's output is read in place; value head h
//! reads key head h / (Hv / Hk) (grouped value heads). `g` is `[T, Hv]` (or per key channel
//! `[T, Hv, dk]`) and `beta` `[T, Hv]`; the
//! state `[S, Hv, dk, dv]`; `out` `[T, Hv·dv]`.

pub mod cases;
mod reference;

pub use reference::{delta_rule_chunked_ref, delta_rule_ref, DeltaRef};

use super::sequences::{chunk_flags, chunk_table, Sequences};
use super::{grid, word, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/delta_rule/`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!(
    "delta_rule/delta_rule",
    parts: [
        crate::wgsl_source!("delta_rule/recurrent"),
        crate::wgsl_source!("delta_rule/chunked"),
        crate::wgsl_source!("delta_rule/chunked_coop")
    ]
);

/// Key head dims with kernels.
pub const KEY_DIMS: [usize; 4] = [32, 64, 128, 256];

/// Tokens per sequence per dispatch of the recurrent kernel (lavapipe ends an invocation after
/// about 65k loop steps, and each token runs loops over dk).
const TOKENS_PER_DISPATCH: usize = 128;

crate::uniform! {
    /// The delta-rule kernels' parameters (see `shaders/delta_rule/delta_rule.wgsl`).
    pub struct DeltaParams {
        pub nseq: u32, pub hk: u32, pub hv: u32, pub dv: u32,
        pub width: u32, pub q_col: u32, pub k_col: u32, pub v_col: u32,
        pub flags: u32, pub t_lo: u32, pub t_hi: u32, pub scale: f32,
        pub nchunks: u32,
    }
}

crate::flags! {
    /// Bits of [`DeltaParams::flags`].
    pub mod delta_flags { INIT = 1, RESET = 2, L2NORM = 4, GATE_K = 8 }
}

/// Tokens per chunk of the WY form.
pub const CHUNK: usize = 64;

/// The kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaKernel {
    /// Token by token (decode steps; the chunked form's GPU oracle).
    Recurrent,
    /// The chunked WY form (prefill), f32 SIMT: the oracle of the tensor-core form and the
    /// form on adapters without cooperative matrices.
    Chunked,
    /// The chunked WY form with its products on 16×16×16 f16 cooperative matrices (f32
    /// accumulation and state): K, W, V′, the chunk states and the scores are rounded to f16.
    /// Key head dims 64 and 128, value head dims that are multiples of 32.
    ChunkedCoop,
}

impl DeltaKernel {
    /// Whether it rounds operands to f16.
    pub fn uses_f16(self) -> bool {
        self == DeltaKernel::ChunkedCoop
    }

    /// Whether it runs `d` on a device with `caps` (the tensor-core form: cooperative matrices,
    /// 32-lane subgroups, 128 invocations and [`COOP_WORKGROUP_BYTES`] of workgroup memory).
    pub fn runs(self, caps: &crate::device::Capabilities, d: DeltaDims) -> bool {
        match self {
            DeltaKernel::Recurrent | DeltaKernel::Chunked => true,
            DeltaKernel::ChunkedCoop => {
                COOP_KEY_DIMS.contains(&d.dk)
                    && d.dv.is_multiple_of(32)
                    && caps.coop_f16_16x16_f32()
                    && caps.subgroup_min_size == 32
                    && caps.subgroup_max_size == 32
                    && caps.max_compute_invocations_per_workgroup >= 128
                    && caps.max_compute_workgroup_storage_size as usize >= COOP_WORKGROUP_BYTES
            }
        }
    }
}

/// Key head dims of the tensor-core form (its tiles hold a chunk's 64 × dk rows).
pub const COOP_KEY_DIMS: [usize; 2] = [64, 128];
/// The most workgroup memory a tensor-core pass takes (the prep at dk = 128).
pub const COOP_WORKGROUP_BYTES: usize = 45056;

/// The chunked form's passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Prep,
    State,
    Out,
}

/// Head counts and dims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeltaDims {
    pub key_heads: usize,
    pub value_heads: usize,
    pub dk: usize,
    pub dv: usize,
}

impl DeltaDims {
    /// Width of a packed `[q | k | v]` row.
    pub fn row(&self) -> usize {
        2 * self.key_heads * self.dk + self.value_heads * self.dv
    }

    pub fn check(&self) -> Result<()> {
        let DeltaDims { key_heads, value_heads, dk, dv } = *self;
        if key_heads == 0 || value_heads == 0 || !value_heads.is_multiple_of(key_heads) {
            return Err(Error::Shape(format!(
                "{value_heads} value heads must be a positive multiple of {key_heads} key heads"
            )));
        }
        if !KEY_DIMS.contains(&dk) {
            return Err(Error::UnsupportedVariant(format!(
                "key head dim {dk}: delta-rule kernels exist for {KEY_DIMS:?}"
            )));
        }
        if dv == 0 {
            return Err(Error::Shape("the value head dim must be positive".into()));
        }
        Ok(())
    }
}

/// One delta-rule call's tensors and settings.
#[derive(Debug, Clone, Copy)]
pub struct DeltaArgs<'a> {
    /// `[T, width]` f32 with q, k, v at `cols`.
    pub qkv: &'a Tensor,
    /// Columns where q, k and v start in a row (`[0, Hk·dk, 2·Hk·dk]` for a packed row).
    pub cols: [usize; 3],
    /// `[T, Hv]` log decays (≤ 0; DeltaNet without a gate: zeros), or with `channel_gates`
    /// `[T, Hv·dk]`, one per key channel (Kimi Delta Attention).
    pub g: &'a Tensor,
    /// KDA's decay per key channel: S's row i decays by exp(g[i]). Taken by the recurrent
    /// kernel only (prefill included) until the chunked form has KDA's sub-chunks.
    pub channel_gates: bool,
    /// `[T, Hv]` write strengths.
    pub beta: &'a Tensor,
    /// `[S, Hv, dk, dv]` f32: read when `init`, left at each sequence's last state.
    pub state: &'a Tensor,
    pub seqs: &'a Sequences,
    pub dims: DeltaDims,
    /// q and k are L2-normalised inside the kernel (eps 1e-6, as fla).
    pub l2norm: bool,
    /// Score scale, usually 1/√dk.
    pub scale: f32,
    /// Continue from `state` (else every sequence starts from zero).
    pub init: bool,
}

impl DeltaArgs<'_> {
    fn check(&self, out: &Tensor) -> Result<()> {
        self.dims.check()?;
        let (t, s) = (self.seqs.total(), self.seqs.count());
        let d = self.dims;
        let width = match self.qkv.shape() {
            &[rows, w] if rows == t => w,
            other => return Err(Error::Shape(format!("qkv: expected [{t}, width], got {other:?}"))),
        };
        let [qc, kc, vc] = self.cols;
        if qc + d.key_heads * d.dk > width
            || kc + d.key_heads * d.dk > width
            || vc + d.value_heads * d.dv > width
        {
            return Err(Error::Shape(format!(
                "q, k, v at columns {:?} do not fit rows of {width}",
                self.cols
            )));
        }
        if !self.scale.is_finite() {
            return Err(Error::Invalid("the delta rule's scale must be finite".into()));
        }
        super::expect("qkv", self.qkv, &[t, width], DType::F32)?;
        let gates = if self.channel_gates { d.value_heads * d.dk } else { d.value_heads };
        super::expect("g", self.g, &[t, gates], DType::F32)?;
        super::expect("beta", self.beta, &[t, d.value_heads], DType::F32)?;
        super::expect("state", self.state, &[s, d.value_heads, d.dk, d.dv], DType::F32)?;
        super::expect("out", out, &[t, d.value_heads * d.dv], DType::F32)
    }
}

/// The recurrent kernel for key head dim `dk`, `cols` state columns per workgroup (64, or 16
/// with 4 invocations per column).
pub fn recurrent_variant(dk: usize, cols: usize) -> Variant {
    let name = if cols == 64 { "recurrent".to_string() } else { format!("recurrent.c{cols}") };
    base(&name, "delta_recurrent", dk).define("RECURRENT", 1).define("COLS", cols)
}

/// Workgroups below which the recurrent kernel splits each column over 4 invocations (16
/// columns per workgroup), so that a small batch still spreads over a GPU's cores.
const SPLIT_COLUMNS_BELOW: usize = 128;

/// State columns per workgroup of the recurrent kernel for `s` sequences of `d`.
pub fn recurrent_cols(s: usize, d: DeltaDims) -> usize {
    if s * d.value_heads * d.dv.div_ceil(64) < SPLIT_COLUMNS_BELOW {
        16
    } else {
        64
    }
}

fn base(name: &str, entry: &'static str, dk: usize) -> Variant {
    Variant::new(format!("delta_rule.{name}.dk{dk}"), &SHADER, entry)
        .define(crate::shader::BOUNDED_LOOPS, 1)
        .define("DK", dk)
        .with_params::<DeltaParams>()
        .with_flags(delta_flags::SET)
        .with_flags(chunk_flags::SET)
}

fn chunked_variant(pass: Pass, dk: usize, coop: bool) -> Variant {
    let (name, entry, define) = match (pass, coop) {
        (Pass::Prep, false) => ("chunked.prep", "delta_prep", "PREP"),
        (Pass::State, false) => ("chunked.state", "delta_state", "STATE"),
        (Pass::Out, false) => ("chunked.out", "delta_out", "OUT"),
        (Pass::Prep, true) => ("chunked.prep.coop", "delta_prep_tc", "PREP_TC"),
        (Pass::State, true) => ("chunked.state.coop", "delta_state_tc", "STATE_TC"),
        (Pass::Out, true) => ("chunked.out.coop", "delta_out_tc", "OUT_TC"),
    };
    let v = base(name, entry, dk).define("CHUNKED", 1).define(define, 1);
    if !coop {
        return v;
    }
    // The output pass's f16 tile: Q̂ or K̂ in rows of dk + 8 halves, or S₀ and V′ in rows of 40.
    let at_halves = (64 * (dk + 8)).max((dk + 64) * 40);
    v.needs_coop_matrix()
        .needs_subgroups()
        // Indices from the invocation, constants and chunk lengths ≤ 64; storage rows clamped.
        .define(crate::shader::UNCHECKED_INDICES, 1)
        // Every tile is staged before it is read.
        .define(crate::shader::WRITES_BEFORE_READS, 1)
        .define("TC", 1)
        .define("AT_HALVES", at_halves)
        .define("KF", dk / 16)
        .define("RB", dk / 64)
        // Row passes of the vec4 staging: 128 lanes cover 512 / dk rows per pass; of the
        // output pass's K̂ words (eight halves each), 1024 / dk rows.
        .define("NIT", 64 * dk / 512)
        .define("KWP", 64 * dk / 1024)
}

pub fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for dk in KEY_DIMS {
        v.push(recurrent_variant(dk, 64));
        v.push(recurrent_variant(dk, 16));
        for pass in [Pass::Prep, Pass::State, Pass::Out] {
            v.push(chunked_variant(pass, dk, false));
            if COOP_KEY_DIMS.contains(&dk) {
                v.push(chunked_variant(pass, dk, true));
            }
        }
    }
    v
}

/// Records the gated delta rule of every token into `out` `[T, Hv·dv]`, leaving each
/// sequence's last state in `state`, with the kernel [`choose`] takes for f32 operands.
pub fn delta_rule(rec: &mut Recorder, a: &DeltaArgs, out: &Tensor) -> Result<()> {
    let p = DeltaProblem::of(a.seqs.cu_seqlens(), a.channel_gates, a.dims, false);
    let kernel = choose(rec.device(), &p);
    delta_rule_with(rec, a, out, kernel)
}

/// Whether the kernels run on this device: not through GL, whose (Mesa) compiler took over six
/// minutes per kernel.
pub fn runs(caps: &crate::device::Capabilities) -> bool {
    caps.backend != "Gl"
}

/// What the kernel choice depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaProblem {
    pub dims: DeltaDims,
    /// Tokens of the call's longest sequence.
    pub longest: usize,
    /// Gates per key channel (Kimi Delta Attention): not the tensor-core form, for now.
    pub channel_gates: bool,
    /// f16 operands are acceptable (a model with f16 weights): the tensor-core form may run.
    pub f16_ok: bool,
    /// Tokens of the call, and the rows of the tensor-core form's scratch, which pads every
    /// sequence to whole chunks.
    pub tokens: usize,
    pub padded_rows: usize,
}

impl DeltaProblem {
    /// The problem of a call over sequences `cu`.
    pub fn of(cu: &[usize], channel_gates: bool, dims: DeltaDims, f16_ok: bool) -> Self {
        let lens = cu.windows(2).map(|w| w[1] - w[0]);
        let longest = lens.clone().max().unwrap_or(0);
        let padded_rows = lens.map(|l| l.div_ceil(CHUNK) * CHUNK).sum();
        let tokens = cu.last().copied().unwrap_or(0);
        DeltaProblem { dims, longest, channel_gates, f16_ok, tokens, padded_rows }
    }
}

impl crate::ops::kernel::Kernel for DeltaKernel {
    const OP: &'static str = "delta_rule";
    type Problem = DeltaProblem;
    fn all() -> Vec<Self> {
        vec![DeltaKernel::Recurrent, DeltaKernel::Chunked, DeltaKernel::ChunkedCoop]
    }
    fn name(&self) -> String {
        match self {
            DeltaKernel::Recurrent => "delta_rule.recurrent",
            DeltaKernel::Chunked => "delta_rule.chunked",
            DeltaKernel::ChunkedCoop => "delta_rule.chunked.coop",
        }
        .into()
    }
    fn supports(&self, caps: &crate::device::Capabilities, p: &DeltaProblem) -> bool {
        match self {
            DeltaKernel::Recurrent | DeltaKernel::Chunked => true,
            // Not where padding to whole chunks would more than double the scratch (a batch of
            // short prompts), which the recurrent kernel takes well anyway.
            DeltaKernel::ChunkedCoop => {
                !p.channel_gates && p.f16_ok && p.padded_rows <= 2 * p.tokens && self.runs(caps, p.dims)
            }
        }
    }
    fn bucket(p: &DeltaProblem) -> String {
        let class = match p.longest {
            0..=1 => "step",
            2..4096 => "L<4K",
            4096..32768 => "L<32K",
            _ => "L>=32K",
        };
        let dtype = if p.f16_ok { "f16" } else { "f32" };
        format!("dk={} dv={} {class} {dtype}", p.dims.dk, p.dims.dv)
    }
    /// A step takes the recurrent kernel; a prefill takes the tensor-core form where it runs
    /// (one gate per head). Otherwise the SIMT chunked form on software adapters
    /// (lavapipe ran it 1.0–2.0× as fast as the recurrent one in CI's bench smoke runs) and the
    /// recurrent kernel on hardware (the H200 runs it 3.4–4.8× faster than the SIMT chunked
    /// form on fla's shape and Qwen3-Next's layer: BENCHMARKS.md); `linseq tune delta-rule`
    /// measures the choice on other adapters.
    fn heuristic(caps: &crate::device::Capabilities, p: &DeltaProblem) -> Self {
        if p.longest <= 1 {
            DeltaKernel::Recurrent
        } else if DeltaKernel::ChunkedCoop.supports(caps, p) {
            DeltaKernel::ChunkedCoop
        } else if caps.software {
            DeltaKernel::Chunked
        } else {
            DeltaKernel::Recurrent
        }
    }
}

/// The kernel for `p` on `dev`: its tuned choice for the bucket where it has one that runs
/// here, else the heuristic ([`crate::ops::kernel::Kernel::heuristic`]).
pub fn choose(dev: &crate::device::Device, p: &DeltaProblem) -> DeltaKernel {
    crate::ops::kernel::choose(dev, p)
}

/// The chunked form's scratch for `t` tokens in `chunks` chunks: W `[T, Hv·dk]`, U
/// `[T, Hv·dv]`, per-token gates `[T, Hv, 4]` and the chunks' entering states
/// `[chunks, Hv, dk, dv]` (none for the recurrent kernel). The tensor-core form keeps W, K̂,
/// U (then V′) and the entering states as f16 pairs in f32-sized words: W's rows hold W and
/// K̂, U's and the entering states' take `dv / 2` words a row; and its W and U rows are
/// padded to 64 per chunk (`[chunks·64, …]`), the rows past a chunk's end zeros, so its
/// tensor-core loads read whole chunks straight from storage. (A graph node plans its
/// scratch with the kernel it chose when it was built, [`choose`], so the two agree.)
pub fn scratch_shapes(kernel: DeltaKernel, d: DeltaDims, t: usize, chunks: usize) -> Vec<Vec<usize>> {
    if kernel == DeltaKernel::Recurrent {
        return Vec::new();
    }
    let (rows, value_words) =
        if kernel == DeltaKernel::ChunkedCoop { (chunks * CHUNK, d.dv / 2) } else { (t, d.dv) };
    vec![
        vec![rows.max(1), d.value_heads * d.dk],
        vec![rows.max(1), d.value_heads * value_words],
        vec![t.max(1), d.value_heads, 4],
        vec![chunks.max(1), d.value_heads, d.dk, value_words],
    ]
}

/// [`delta_rule`] with the kernel given; the chunked form's scratch is allocated here.
pub fn delta_rule_with(rec: &mut Recorder, a: &DeltaArgs, out: &Tensor, kernel: DeltaKernel) -> Result<()> {
    delta_rule_in(rec, a, out, kernel, None)
}

/// [`delta_rule_with`] with the chunked form's scratch given ([`scratch_shapes`]), or
/// allocated when `None`.
pub fn delta_rule_in(
    rec: &mut Recorder,
    a: &DeltaArgs,
    out: &Tensor,
    kernel: DeltaKernel,
    scratch: Option<[&Tensor; 4]>,
) -> Result<()> {
    a.check(out)?;
    if !runs(rec.device().caps()) {
        return Err(Error::UnsupportedVariant(format!(
            "the delta-rule kernels do not run on {} ({}): Mesa's GL compiler took over six minutes per kernel, so they are refused there for now; use Vulkan, Metal or DX12",
            rec.device().caps().backend,
            rec.device().caps().adapter
        )));
    }
    let d = a.dims;
    if !kernel.runs(rec.device().caps(), d) {
        return Err(Error::UnsupportedVariant(format!(
            "{kernel:?} for {d:?} needs key head dim {COOP_KEY_DIMS:?}, a value head dim that is a multiple of 32, 16x16x16 f16 cooperative matrices, 32-lane subgroups and {COOP_WORKGROUP_BYTES} bytes of workgroup memory (adapter {})",
            rec.device().caps().adapter
        )));
    }
    let width = a.qkv.shape()[1];
    if kernel == DeltaKernel::ChunkedCoop
        && (!width.is_multiple_of(4) || a.cols.iter().any(|c| !c.is_multiple_of(4)))
    {
        return Err(Error::UnsupportedVariant(format!(
            "the tensor-core delta rule reads q, k and v as vec4s: rows of {width} with q, k, v at columns {:?} must all be multiples of 4",
            a.cols
        )));
    }
    let (t, s) = (a.seqs.total(), a.seqs.count());
    let mut flags = if a.init { delta_flags::INIT } else { 0 };
    if a.seqs.resets().is_some() {
        flags |= delta_flags::RESET;
    }
    if a.l2norm {
        flags |= delta_flags::L2NORM;
    }
    if a.channel_gates {
        if kernel == DeltaKernel::ChunkedCoop {
            return Err(Error::UnsupportedVariant(
                "the tensor-core delta rule takes one gate per head; per-channel gates (KDA) take the recurrent or the SIMT chunked kernel".into(),
            ));
        }
        flags |= delta_flags::GATE_K;
    }
    let params = |t_lo: usize, t_hi: usize, nchunks: usize| -> Result<Params> {
        Ok(Params::of(&DeltaParams {
            nseq: word("sequences", s)?,
            hk: word("key heads", d.key_heads)?,
            hv: word("value heads", d.value_heads)?,
            dv: word("value head dim", d.dv)?,
            width: word("row width", a.qkv.shape()[1])?,
            q_col: word("q column", a.cols[0])?,
            k_col: word("k column", a.cols[1])?,
            v_col: word("v column", a.cols[2])?,
            flags,
            t_lo: word("tokens", t_lo)?,
            t_hi: word("tokens", t_hi)?,
            scale: a.scale,
            nchunks: word("chunks", nchunks)?,
        }))
    };
    let longest = a.seqs.cu_seqlens().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let blocks = d.dv.div_ceil(64);
    if kernel == DeltaKernel::Recurrent {
        let cols = recurrent_cols(s, d);
        let v = recurrent_variant(d.dk, cols);
        let wg = grid(rec.device(), s * d.value_heads * d.dv.div_ceil(cols))?;
        let tensors = [a.qkv, a.g, a.beta, a.seqs.table(), a.state, out];
        for lo in (0..longest.max(1)).step_by(TOKENS_PER_DISPATCH) {
            rec.dispatch(&v, &params(lo, lo + TOKENS_PER_DISPATCH, 0)?, &tensors, wg)?;
        }
        return Ok(());
    }
    let (table, n) = chunk_table(a.seqs.cu_seqlens(), a.seqs.resets(), CHUNK);
    let dev = rec.device();
    let chunks = Tensor::from_slice(dev, &[table.len()], &table)?;
    let shapes = scratch_shapes(kernel, d, t, n);
    let owned;
    let [w, u, gn, s0] = match scratch {
        Some(sc) => {
            for (name, (tensor, shape)) in
                ["W", "U", "gates", "chunk states"].iter().zip(sc.iter().zip(&shapes))
            {
                super::expect(name, tensor, shape, DType::F32)?;
            }
            sc
        }
        None => {
            owned = shapes.iter().map(|s| Tensor::empty(dev, s, DType::F32)).collect::<Result<Vec<_>>>()?;
            [&owned[0], &owned[1], &owned[2], &owned[3]]
        }
    };
    let p = params(0, 0, n)?;
    let coop = kernel == DeltaKernel::ChunkedCoop;
    let per_chunk = grid(dev, n * d.value_heads)?;
    rec.dispatch(
        &chunked_variant(Pass::Prep, d.dk, coop),
        &p,
        &[a.qkv, a.g, a.beta, &chunks, gn, w, u],
        per_chunk,
    )?;
    // The walk in pieces of chunks (lavapipe ends very long invocations; a GPU takes 256, 16K
    // tokens, per dispatch: on the H200 the tensor-core walk over fla's 64 chunks took 0.93 ms
    // in one dispatch against 1.03 in four); later pieces continue from the state the earlier
    // ones left.
    let software = rec.device().caps().software;
    let per_dispatch = match (software, d.dk > 128) {
        (true, true) => 1,
        (true, false) => 2,
        (false, _) => 256,
    };
    let most = table[n * 4..].windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0);
    let state_v = chunked_variant(Pass::State, d.dk, coop);
    // The tensor-core walk takes 32 state columns per workgroup, the SIMT one 64; the
    // tensor-core output pass all of a chunk's columns.
    let (walkers, outs) = if coop {
        (s * d.value_heads * (d.dv / 32), n * d.value_heads)
    } else {
        (s * d.value_heads * blocks, n * d.value_heads * blocks)
    };
    let per_seq = grid(rec.device(), walkers)?;
    for lo in (0..most.max(1)).step_by(per_dispatch) {
        let p = params(lo, lo + per_dispatch, n)?;
        if coop {
            rec.dispatch(&state_v, &p, &[w, u, s0, &chunks, gn, a.state], per_seq)?;
        } else {
            rec.dispatch(&state_v, &p, &[a.qkv, w, u, &chunks, gn, a.state, s0, a.g], per_seq)?;
        }
    }
    let per_out = grid(rec.device(), outs)?;
    let out_v = chunked_variant(Pass::Out, d.dk, coop);
    if coop {
        rec.dispatch(&out_v, &p, &[a.qkv, u, s0, &chunks, gn, out, w], per_out)
    } else {
        rec.dispatch(&out_v, &p, &[a.qkv, u, s0, &chunks, gn, out, a.g], per_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_counts_the_tensor_core_forms_padded_rows() {
        let d = DeltaDims { key_heads: 2, value_heads: 4, dk: 128, dv: 128 };
        // Sequences of 2, 64 and 65 tokens pad to 64, 64 and 128 rows.
        let p = DeltaProblem::of(&[0, 2, 66, 131], false, d, true);
        assert_eq!((p.tokens, p.padded_rows, p.longest), (131, 256, 65));
        // A batch of short prompts pads to more than twice its tokens.
        let short = DeltaProblem::of(&[0, 2, 4, 6], false, d, true);
        assert!(short.padded_rows > 2 * short.tokens);
        // What the planner allocates for the tensor-core form is those rows.
        let shapes = scratch_shapes(DeltaKernel::ChunkedCoop, d, p.tokens, 4);
        assert_eq!(shapes[0], vec![4 * CHUNK, 4 * 128]);
        assert_eq!(shapes[1], vec![4 * CHUNK, 4 * 64]);
    }
}
