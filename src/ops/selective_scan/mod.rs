//! Mamba's selective scan and its decode step, with packed variable-length sequences, reset
//! flags, initial/final state and negative eigenvalues.
//!
//! **Layout** (the one the Mamba runtime uses: token-major, as linear layers produce it, so
//! that the loads of one token by neighbouring channels and states coalesce):
//! - `u`, `delta`, `z`, `y`: `[T, D]`, T = total tokens of all sequences, packed back to back;
//! - `bc`: `[T, 2, G, N]`, per token B of every group then C; channel d reads group
//!   `d / (D / G)`;
//! - `chan`: `[D, N + 2]` per-channel parameters `A[d, :]`, `D[d]`, `delta_bias[d]`
//!   ([`pack_channel_params`] builds it; A = −exp(A_log) is applied by the caller);
//! - sequences: a [`Sequences`] table (cu_seqlens and optional reset flags);
//! - `state`: `[S, D, N]` f32, read as the initial state when `init_state` is set and always
//!   overwritten with the final state, so chunked prefill and prefill→decode hand-over chain.
//!
//! Semantics follow mamba_ssm's `selective_scan_ref`: dt = softplus(delta + bias) (linear above
//! 20), dA = exp(dt·A), h = dA·h + dt·B·u, y = Σₙ h·C + D·u, y *= silu(z). With
//! `neg_eigen` the transition is 2·dA − 1 ∈ (−1, 1] ("Unlocking State-Tracking in Linear RNNs
//! Through Negative Eigenvalues"). A reset flag on a token zeroes the state before it.
//!
//! Variants: `sequential` (one invocation per sequence and channel; the baseline),
//! `chunked` (workgroup per sequence and channel, tokens over invocations, an associative scan
//! of affine pairs in workgroup memory, state carried across chunks in one dispatch) and
//! `chunked.sg` (the same with subgroup shuffles), `lanes` (8 lanes per channel, tokens in
//! order), and Mamba-1's N = 16 fast paths `tiled` (4 lanes × vec4 per channel, tiles of 32
//! tokens staged in workgroup memory, next tile prefetched) and `solo` (one invocation holds a
//! channel's 16 states; B and C staged per tile and read as broadcasts), and `paired`
//! (`tiled` register-blocked over two channels per lane). [`ScanKernel::best`]
//! picks between them by shape. The decode step has its own kernel (`scan_decode`: four
//! invocations per channel stream the state in place); the sequential kernel on sequences of
//! one token each computes the same and is its oracle.

pub mod cases;
mod kernels;
mod reference;

pub use super::sequences::Sequences;
pub use kernels::{ceiling_probe, scan_flags, variants, CeilingProbe, ScanParams};
pub use reference::{selective_scan_ref, ScanRef};

use super::{grid, Params, Recorder};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};
use kernels::decode_variant;

/// The family's WGSL (`shaders/selective_scan/`): the shared header, then one file per form.
pub const SHADER: crate::shader::Source = crate::wgsl_source!(
    "selective_scan/selective_scan",
    parts: [
        crate::wgsl_source!("selective_scan/sequential"),
        crate::wgsl_source!("selective_scan/chunked"),
        crate::wgsl_source!("selective_scan/lanes"),
        crate::wgsl_source!("selective_scan/fast16"),
        crate::wgsl_source!("selective_scan/paired"),
        crate::wgsl_source!("selective_scan/ceiling")
    ]
);

/// Largest state size supported (mamba_ssm's limit too).
pub const MAX_STATE: usize = 256;
const SEQ_WG: u32 = 64;
const CHUNK_WG: u32 = 128;
const NB: u32 = 8;
const LANES_WG: u32 = 256;
/// Channels per workgroup of the tiled and solo kernels.
const TILED_CH: usize = 32;
const SOLO_CH: usize = 64;
const PAIRED_CH: usize = 64;

/// Switches of the scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanFlags {
    pub delta_softplus: bool,
    pub delta_bias: bool,
    pub d_skip: bool,
    pub neg_eigen: bool,
    /// Read `state` as the initial state (otherwise start from zero).
    pub init_state: bool,
}

impl ScanFlags {
    /// The switches as [`scan_flags`] bits (`gate`: a z is bound).
    pub fn bits(&self, gate: bool) -> u32 {
        use scan_flags::*;
        crate::shader::uniform::bits(&[
            (self.delta_softplus, SOFTPLUS),
            (self.delta_bias, HAS_BIAS),
            (self.d_skip, HAS_D),
            (gate, HAS_Z),
            (self.neg_eigen, NEG_EIG),
            (self.init_state, INIT),
        ])
    }
}

/// Builds the `[D, N + 2]` per-channel table from A `[D, N]`, D `[D]` and delta_bias `[D]`.
pub fn pack_channel_params(
    a: &[f32],
    d_skip: Option<&[f32]>,
    delta_bias: Option<&[f32]>,
    dim: usize,
    n: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(dim * (n + 2));
    for d in 0..dim {
        out.extend_from_slice(&a[d * n..(d + 1) * n]);
        out.push(d_skip.map_or(0.0, |v| v[d]));
        out.push(delta_bias.map_or(0.0, |v| v[d]));
    }
    out
}

/// What the scan's kernel choice depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanProblem {
    pub shape: ScanShape,
    pub sequences: usize,
}

impl super::kernel::Kernel for ScanKernel {
    const OP: &'static str = "selective_scan";
    type Problem = ScanProblem;
    fn all() -> Vec<Self> {
        Self::ALL.to_vec()
    }
    fn name(&self) -> String {
        self.variant().name
    }
    fn supports(&self, caps: &crate::device::Capabilities, p: &ScanProblem) -> bool {
        self.runs(caps, p.shape)
    }
    fn bucket(p: &ScanProblem) -> String {
        ScanKernel::bucket(p.shape, p.sequences)
    }
    fn heuristic(caps: &crate::device::Capabilities, p: &ScanProblem) -> Self {
        ScanKernel::best(caps, p.shape, p.sequences)
    }
    fn from_name(name: &str) -> Option<Self> {
        ScanKernel::from_name(name)
    }
}

/// The kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKernel {
    Sequential,
    Chunked,
    ChunkedSubgroups,
    /// States over lanes (8 per channel, N ≤ 16), tokens in order; needs subgroups of a size
    /// that is a multiple of 8.
    Lanes,
    /// Mamba-1's fast path: N = 16 as four lanes × vec4 per channel, 32 channels of one
    /// sequence per workgroup, tokens in tiles of 32 staged through workgroup memory, next
    /// tile prefetched; needs subgroups (size a multiple of 4) and D / G a multiple of 32.
    Tiled,
    /// N = 16: one invocation holds a channel's 16 states, 64 channels of one sequence per
    /// workgroup, B and C staged per tile of 16 tokens and read as broadcasts.
    Solo,
    /// `tiled` register-blocked over two channels: each lane holds four states of two
    /// channels, so a workgroup-memory read of B and C serves both; 64 channels per workgroup,
    /// tiles of 16 tokens; needs subgroups (size a multiple of 4) and D / G a multiple of 64.
    Paired,
}

impl ScanKernel {
    pub const ALL: [ScanKernel; 7] = [
        ScanKernel::Sequential,
        ScanKernel::Chunked,
        ScanKernel::ChunkedSubgroups,
        ScanKernel::Lanes,
        ScanKernel::Tiled,
        ScanKernel::Solo,
        ScanKernel::Paired,
    ];

    /// The f32-input variant.
    pub fn variant(self) -> Variant {
        self.variant_for(DType::F32)
    }

    /// The variant for f32 or f16 inputs (u, delta, bc, z; f16 is read as packed words, so it
    /// needs no SHADER_F16). Named `<kernel>.f16` for f16 inputs.
    pub fn variant_for(self, input: DType) -> Variant {
        let mut v = self.base_variant().define("F16IN", (input == DType::F16) as u32);
        if input == DType::F16 {
            v.name.push_str(".f16");
            v = v.define("IN", "u32");
        } else {
            v = v.define("IN", "f32");
        }
        v
    }

    fn base_variant(self) -> Variant {
        self.kernel_variant().with_params::<ScanParams>().with_flags(scan_flags::SET)
    }

    fn kernel_variant(self) -> Variant {
        let nmax = MAX_STATE;
        match self {
            ScanKernel::Sequential => Variant::new("selective_scan.sequential", &SHADER, "scan_sequential")
                .define("SEQUENTIAL", 1)
                .define("WG", SEQ_WG)
                .define("NMAX", nmax),
            ScanKernel::Lanes => Variant::new("selective_scan.lanes", &SHADER, "scan_lanes")
                .define("LANES", 1)
                .define("WG", LANES_WG)
                .define("NMAX", nmax)
                .with_subgroups(true),
            ScanKernel::Tiled => Variant::new("selective_scan.tiled", &SHADER, "scan_tiled")
                .define("TILED", 1)
                .define("TILES", 1)
                .define("NEGC", 0)
                .define("RSTC", 0)
                .with_subgroups(true),
            ScanKernel::Solo => Variant::new("selective_scan.solo", &SHADER, "scan_solo")
                .define("SOLO", 1)
                .define("NEGC", 0)
                .define("RSTC", 0),
            ScanKernel::Paired => Variant::new("selective_scan.paired", &SHADER, "scan_paired")
                .define("PAIRED", 1)
                .define("TILES", 1)
                .define("NEGC", 0)
                .define("RSTC", 0)
                .with_subgroups(true),
            ScanKernel::Chunked | ScanKernel::ChunkedSubgroups => {
                let sg = self == ScanKernel::ChunkedSubgroups;
                let name = if sg { "selective_scan.chunked.sg" } else { "selective_scan.chunked" };
                Variant::new(name, &SHADER, "scan_chunked")
                    .define("CHUNKED", 1)
                    .define("WG", CHUNK_WG)
                    .define("NB", NB)
                    .define("NMAX", nmax)
                    .define("SCAN", if sg { 2 * NB * CHUNK_WG } else { NB * CHUNK_WG })
                    .with_subgroups(sg)
            }
        }
    }

    /// The fastest kernel the device runs for this shape and number of sequences (H200
    /// figures in BENCHMARKS.md: `solo` once sequences × channels fill the GPU with one
    /// invocation per channel, `paired` from half that, `tiled` below; `chunked` is the
    /// portable fallback).
    pub fn best(caps: &crate::device::Capabilities, shape: ScanShape, sequences: usize) -> Self {
        let work = sequences * shape.dim;
        let order = if work >= 32_768 {
            [ScanKernel::Solo, ScanKernel::Paired, ScanKernel::Tiled, ScanKernel::Lanes]
        } else if work >= 16_384 {
            [ScanKernel::Paired, ScanKernel::Tiled, ScanKernel::Solo, ScanKernel::Lanes]
        } else {
            [ScanKernel::Tiled, ScanKernel::Paired, ScanKernel::Solo, ScanKernel::Lanes]
        };
        order.into_iter().find(|k| k.runs(caps, shape)).unwrap_or(ScanKernel::Chunked)
    }

    /// The tuning bucket of a shape: N and the power of two of sequences × channels (what
    /// decides between the kernels; length does not, every kernel is linear in it), clamped to
    /// the range `linseq tune` measures.
    pub fn bucket(shape: ScanShape, sequences: usize) -> String {
        let work = (sequences * shape.dim).max(1);
        let log2 = (usize::BITS - (work - 1).leading_zeros()).clamp(10, 16);
        format!("N={} SD=2^{log2}", shape.n)
    }

    /// The kernel named `name` (a variant name, f32 or f16).
    pub fn from_name(name: &str) -> Option<Self> {
        let base = name.strip_suffix(".f16").unwrap_or(name);
        Self::ALL.into_iter().find(|k| k.variant().name == base)
    }

    /// The kernel to run: the device's tuned choice for this bucket when there is one and it
    /// runs the shape, else [`ScanKernel::best`].
    pub fn choose(dev: &Device, shape: ScanShape, sequences: usize) -> Self {
        super::kernel::choose::<Self>(dev, &ScanProblem { shape, sequences })
    }

    /// Kernels with the transition mapping and resets as compile-time switches.
    fn specialised(self) -> bool {
        matches!(self, ScanKernel::Tiled | ScanKernel::Solo | ScanKernel::Paired)
    }

    /// Whether this kernel runs this shape on this device.
    pub fn runs(self, caps: &crate::device::Capabilities, shape: ScanShape) -> bool {
        let sg = |m: u32| caps.subgroup_min_size >= m && caps.subgroup_min_size.is_multiple_of(m);
        let ScanShape { dim, n, groups } = shape;
        // A workgroup's channels must lie in one group.
        let whole_blocks =
            |ch: usize| groups > 0 && dim.is_multiple_of(groups) && (dim / groups).is_multiple_of(ch);
        self.variant().supported(caps)
            && match self {
                ScanKernel::Lanes => n <= 16 && sg(8),
                ScanKernel::Tiled => n == 16 && sg(4) && whole_blocks(TILED_CH),
                ScanKernel::Solo => n == 16 && whole_blocks(SOLO_CH),
                ScanKernel::Paired => n == 16 && sg(4) && whole_blocks(PAIRED_CH),
                _ => true,
            }
    }
}

/// What decides which kernels run a scan: channels D, state size N and groups G.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanShape {
    pub dim: usize,
    pub n: usize,
    pub groups: usize,
}

impl ScanShape {
    pub fn new(dim: usize, n: usize, groups: usize) -> Self {
        Self { dim, n, groups }
    }
}

/// The tensors of one scan.
pub struct ScanArgs<'a> {
    pub u: &'a Tensor,
    pub delta: &'a Tensor,
    pub bc: &'a Tensor,
    pub z: Option<&'a Tensor>,
    pub chan: &'a Tensor,
    pub seqs: &'a Sequences,
    pub state: &'a Tensor,
    pub groups: usize,
    pub flags: ScanFlags,
}

impl ScanArgs<'_> {
    /// (D, N), after checking every shape against the layout in the module docs.
    fn dims(&self) -> Result<(usize, usize)> {
        let t = self.seqs.total();
        let s = self.seqs.count();
        let us = self.u.shape();
        let input = self.u.dtype();
        if us.len() != 2 || us[0] != t || !matches!(input, DType::F32 | DType::F16) {
            return Err(Error::Shape(format!(
                "u must be f32 or f16 [{t}, D] for {t} packed tokens, got {us:?} {input:?}"
            )));
        }
        let dim = us[1];
        let cs = self.chan.shape();
        if cs.len() != 2 || cs[0] != dim || cs[1] < 3 {
            return Err(Error::Shape(format!("chan must be [{dim}, N + 2], got {cs:?}")));
        }
        let n = cs[1] - 2;
        let g = self.groups;
        if n > MAX_STATE || g == 0 || !dim.is_multiple_of(g) {
            return Err(Error::Shape(format!(
                "N = {n} (max {MAX_STATE}) and groups {g} (must divide D = {dim})"
            )));
        }
        super::expect("delta", self.delta, &[t, dim], input)?;
        super::expect("bc", self.bc, &[t, 2, g, n], input)?;
        if let Some(z) = self.z {
            super::expect("z", z, &[t, dim], input)?;
        }
        super::expect("state", self.state, &[s, dim, n], DType::F32)?;
        super::expect("chan", self.chan, &[dim, n + 2], DType::F32)?;
        Ok((dim, n))
    }

    fn params(&self, dim: usize, n: usize, window: (usize, usize), init: bool) -> Result<Params> {
        let f = ScanFlags { init_state: init, ..self.flags };
        let bits =
            f.bits(self.z.is_some()) | if self.seqs.resets().is_some() { scan_flags::RESET } else { 0 };
        Ok(Params::of(&ScanParams {
            dim: super::word("channels", dim)?,
            total: super::word("tokens", self.seqs.total())?,
            nstate: n as u32,
            groups: super::word("groups", self.groups)?,
            nseq: super::word("sequences", self.seqs.count())?,
            flags: bits,
            win_start: super::word("window start", window.0)?,
            win_len: super::word("window", window.1)?,
        }))
    }
}

/// Records a prefill scan with the given kernel: `y` is `[T, D]` f32; `state` ends as the final
/// state.
pub fn selective_scan(rec: &mut Recorder, kernel: ScanKernel, args: &ScanArgs, y: &Tensor) -> Result<()> {
    let (dim, n) = args.dims()?;
    super::expect("y", y, &[args.seqs.total(), dim], DType::F32)?;
    let z = args.z.unwrap_or(args.u); // placeholder binding when there is no gate
    let tensors = [args.u, args.delta, args.bc, z, args.chan, &args.seqs.table, y, args.state];
    if !kernel.runs(rec.device().caps(), ScanShape::new(dim, n, args.groups)) {
        return Err(Error::UnsupportedVariant(format!(
            "{kernel:?} does not run D = {dim}, N = {n}, G = {} on this device (lanes: N ≤ 16 and \
             subgroups of a multiple of 8; tiled: N = 16, D / G a multiple of 32, subgroups of a \
             multiple of 4; solo: N = 16, D / G a multiple of 64; paired: N = 16, D / G a multiple of 64, \
             subgroups of a multiple of 4)",
            args.groups
        )));
    }
    let work = args.seqs.count() * dim;
    let wg = match kernel {
        ScanKernel::Sequential => grid(rec.device(), work.div_ceil(SEQ_WG as usize))?,
        ScanKernel::Lanes => grid(rec.device(), (work * 8).div_ceil(LANES_WG as usize))?,
        ScanKernel::Tiled => grid(rec.device(), work / TILED_CH)?,
        ScanKernel::Solo => grid(rec.device(), work / SOLO_CH)?,
        ScanKernel::Paired => grid(rec.device(), work / PAIRED_CH)?,
        _ => grid(rec.device(), work)?,
    };
    // Windows of tokens per dispatch, sized so that one invocation runs well under 65k loop
    // iterations (llvmpipe's per-invocation limit); the state carries between windows.
    let window = match kernel {
        ScanKernel::Sequential => 48_000 / (n + 3),
        ScanKernel::Lanes => 16_000,
        k if k.specialised() => 32_768,
        _ => (4 * CHUNK_WG as usize) * (40_000 / ((n.div_ceil(NB as usize) + 1) * 240)).max(1),
    };
    let longest = args.seqs.cu_seqlens().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let mut variant = kernel.variant_for(args.u.dtype());
    if kernel.specialised() {
        // The tiled kernels take the transition mapping and resets as compile-time switches:
        // their inner loop is straight-line code over a tile, and a runtime test costs
        // instructions per state per token (or a branch per token, which stops the compiler
        // overlapping consecutive tokens).
        variant = variant
            .define("NEGC", args.flags.neg_eigen as u32)
            .define("RSTC", args.seqs.resets().is_some() as u32);
    }
    for k in 0..longest.div_ceil(window).max(1) {
        let params = args.params(dim, n, (k * window, window), args.flags.init_state || k > 0)?;
        rec.dispatch(&variant, &params, &tensors, wg)?;
    }
    Ok(())
}

/// Records one decode step: `args.seqs` must be [`Sequences::decode`] (one token per
/// sequence); the state is read and updated in place (`init_state` is implied).
pub fn selective_scan_step(rec: &mut Recorder, args: &ScanArgs, y: &Tensor) -> Result<()> {
    if args.seqs.total() != args.seqs.count() {
        return Err(Error::Invalid("a decode step takes one token per sequence (Sequences::decode)".into()));
    }
    let (dim, n) = args.dims()?;
    super::expect("y", y, &[args.seqs.total(), dim], DType::F32)?;
    let step = ScanArgs { flags: ScanFlags { init_state: true, ..args.flags }, ..*args };
    let z = args.z.unwrap_or(args.u); // placeholder binding when there is no gate
    let tensors = [args.u, args.delta, args.bc, z, args.chan, &args.seqs.table, y, args.state];
    let wg = grid(rec.device(), args.seqs.count() * dim.div_ceil(64))?;
    let params = step.params(dim, n, (0, 1), true)?;
    rec.dispatch(&decode_variant(args.u.dtype()), &params, &tensors, wg)
}
