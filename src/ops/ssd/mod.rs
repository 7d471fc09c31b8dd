//! Mamba-2's SSD scan (the paper's `ssd_minimal`, as in `Mamba2ForCausalLM`): a chunked
//! prefill, a sequential baseline, and the decode step, on packed variable-length sequences
//! with reset flags and initial/final state.
//!
//! **Layout** (token-major, what the Mamba-2 block produces):
//! - `xbc`: `[T, H·P + 2·G·N]`: per token x (head-major), then B, then C; exactly the
//!   output of Mamba-2's causal conv over xBC, read in place;
//! - `dt`: `[T, H]` raw step sizes; dt = clamp(softplus(dt + dt_bias), dt_min, dt_max);
//! - `heads`: `[H, 4]` per-head A (= −exp(A_log)), D, dt_bias and an unused slot
//!   ([`pack_head_params`]);
//! - `y`: `[T, H·P]` f32, y = C·h + D·x (Mamba-2 gates and normalises afterwards);
//! - `state`: `[S, H, P, N]` f32, read when `init_state` is set, always overwritten with the
//!   final state.
//!
//! Head h uses group `h / (H / G)`. Recurrence: h_t = exp(dt·A)·h_{t−1} + dt·x_t ⊗ B_t. A reset
//! flag on a token zeroes the state before it.
//!
//! The chunked prefill follows the SSD algorithm in four dispatches: chunk cumsum of dt·A,
//! per-chunk states (a P × N matmul over the chunk's tokens), state passing across chunks, and
//! the chunk scan (C·Bᵀ masked before the exp, times x, plus C·h_in scaled by exp(cumsum)).
//! Chunks never cross a sequence or a reset: the chunk table is built on the host, and a chunk
//! that starts at a reset starts from zero.
//!
//! With f16 inputs and 16×16×16 cooperative matrices, [`SsdKernel::Coop64Fused`] runs chunk 64
//! on tensor cores in three dispatches: the cumsum, a state scan that walks each sequence's
//! chunks with the state on chip (the chunk states and the state passing in one), and the chunk
//! scan (the fastest SSD kernel on the H200; see BENCHMARKS.md).

pub mod cases;
mod kernels;
mod reference;

pub use kernels::{
    chunk_flags, chunk_table, record_chunked, record_stages, record_stages_in, scratch_shapes, ssd_flags,
    variants, SsdParams, SsdScratch, Stage,
};
pub use reference::{ssd_ref, SsdRef};

use super::selective_scan::Sequences;
use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use kernels::{decode_variant, sequential_variant, FUSED_WORKGROUP_BYTES};

/// The family's WGSL (`shaders/ssd/`): the shared header, then one file per kernel form.
pub const SHADER: crate::shader::Source = crate::wgsl_source!(
    "ssd/ssd",
    parts: [
        crate::wgsl_source!("ssd/sequential"),
        crate::wgsl_source!("ssd/chunked"),
        crate::wgsl_source!("ssd/tensor_core")
    ]
);

/// Largest state size N.
pub const MAX_STATE: usize = 256;
const SEQ_WG: usize = 64;

/// The kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsdKernel {
    /// One invocation per (sequence, head, channel), tokens in order: the baseline and oracle.
    Sequential,
    /// The chunked SSD algorithm with this chunk size (32, 64, 128 or 256).
    Chunked(usize),
    /// Chunk 64 on cooperative matrices fed from workgroup memory, f16 inputs, in three
    /// dispatches: the cumsum; a state scan that walks each sequence's chunks with the state
    /// carried on chip, handing every chunk its entering state as f16 (the chunk states and the
    /// state passing in one); and the chunk scan. Shapes it cannot take
    /// ([`SsdKernel::fused_fits`]) run as chunk 64.
    Coop64Fused,
}

impl SsdKernel {
    pub const ALL: [SsdKernel; 6] = [
        SsdKernel::Sequential,
        SsdKernel::Chunked(32),
        SsdKernel::Chunked(64),
        SsdKernel::Chunked(128),
        SsdKernel::Chunked(256),
        SsdKernel::Coop64Fused,
    ];

    pub fn name(self) -> String {
        match self {
            SsdKernel::Sequential => "ssd.sequential".into(),
            SsdKernel::Chunked(c) => format!("ssd.chunked{c}"),
            SsdKernel::Coop64Fused => "ssd.coop64.fused".into(),
        }
    }

    /// Chunk size of the chunked forms.
    pub fn chunk(self) -> Option<usize> {
        match self {
            SsdKernel::Sequential => None,
            SsdKernel::Chunked(c) => Some(c),
            SsdKernel::Coop64Fused => Some(64),
        }
    }

    /// Whether the kernel runs inputs of this dtype on this device. `Coop64Fused` needs f16
    /// inputs, 16×16×16 f16 → f32 cooperative matrices, subgroups of exactly 32 lanes (its four
    /// subgroups each own a 16-row band) and 44.5 KB of workgroup memory.
    pub fn runs(self, caps: &crate::device::Capabilities, input: DType) -> bool {
        match self {
            SsdKernel::Coop64Fused => {
                input == DType::F16
                    && caps.coop_f16_16x16_f32()
                    && caps.subgroup_min_size == 32
                    && caps.subgroup_max_size == 32
                    && caps.max_compute_workgroup_storage_size >= FUSED_WORKGROUP_BYTES
            }
            _ => true,
        }
    }

    /// Whether `Coop64Fused` takes this shape: its tiles are 64 channels wide and its loads
    /// 8 halves long, so P must be a multiple of 64 and N of 8.
    pub fn fused_fits(dims: SsdDims) -> bool {
        dims.head_dim.is_multiple_of(64) && dims.n.is_multiple_of(8)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The tuning bucket: P, N and the class of tokens per call (< 8K, < 32K, more), which
    /// `linseq tune` measures at 4K, 16K and 64K tokens.
    pub fn bucket(dims: SsdDims, tokens: usize) -> String {
        let class = match tokens {
            0..8192 => "T<8K",
            8192..32768 => "T<32K",
            _ => "T>=32K",
        };
        format!("P={} N={} {class}", dims.head_dim, dims.n)
    }

    /// The device's tuned choice for this bucket if there is one that runs `input`
    /// activations here, else `default` (chunk sizes compute the same thing; the model's
    /// configured chunk is the usual default).
    pub fn choose(
        dev: &crate::device::Device,
        dims: SsdDims,
        tokens: usize,
        input: DType,
        default: SsdKernel,
    ) -> SsdKernel {
        super::kernel::choose::<Self>(dev, &SsdProblem { dims, tokens, input, default })
    }
}

/// What the SSD's kernel choice depends on; `default` is the heuristic's answer (the model's
/// configured chunk size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SsdProblem {
    pub dims: SsdDims,
    pub tokens: usize,
    pub input: DType,
    pub default: SsdKernel,
}

impl super::kernel::Kernel for SsdKernel {
    const OP: &'static str = "ssd";
    type Problem = SsdProblem;
    fn all() -> Vec<Self> {
        Self::ALL.to_vec()
    }
    fn name(&self) -> String {
        SsdKernel::name(*self)
    }
    fn supports(&self, caps: &crate::device::Capabilities, p: &SsdProblem) -> bool {
        self.runs(caps, p.input)
    }
    fn bucket(p: &SsdProblem) -> String {
        SsdKernel::bucket(p.dims, p.tokens)
    }
    fn heuristic(caps: &crate::device::Capabilities, p: &SsdProblem) -> Self {
        if p.default.runs(caps, p.input) {
            p.default
        } else {
            SsdKernel::Chunked(64)
        }
    }
}

/// Sizes of one SSD layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsdDims {
    pub heads: usize,
    pub head_dim: usize,
    pub groups: usize,
    pub n: usize,
}

impl SsdDims {
    /// Row width of `xbc`: H·P + 2·G·N.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim + 2 * self.groups * self.n
    }
}

/// Switches of the scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SsdFlags {
    pub dt_softplus: bool,
    pub dt_bias: bool,
    pub d_skip: bool,
    /// Read `state` as the initial state (otherwise start from zero).
    pub init_state: bool,
    /// `time_step_limit`: dt is clamped to [min, max] after softplus.
    pub dt_limit: (f32, f32),
}

impl Default for SsdFlags {
    fn default() -> Self {
        Self {
            dt_softplus: true,
            dt_bias: true,
            d_skip: true,
            init_state: false,
            dt_limit: (0.0, f32::INFINITY),
        }
    }
}

/// Builds the `[H, 4]` per-head table from A, D and dt_bias.
pub fn pack_head_params(a: &[f32], d_skip: Option<&[f32]>, dt_bias: Option<&[f32]>) -> Vec<f32> {
    (0..a.len())
        .flat_map(|h| [a[h], d_skip.map_or(0.0, |v| v[h]), dt_bias.map_or(0.0, |v| v[h]), 0.0])
        .collect()
}

/// The tensors of one scan.
pub struct SsdArgs<'a> {
    pub xbc: &'a Tensor,
    pub dt: &'a Tensor,
    pub heads: &'a Tensor,
    pub seqs: &'a Sequences,
    pub state: &'a Tensor,
    pub dims: SsdDims,
    pub flags: SsdFlags,
}

impl SsdArgs<'_> {
    fn check(&self, y: &Tensor) -> Result<()> {
        self.check_dims()?;
        let SsdDims { heads, head_dim, n, .. } = self.dims;
        let t = self.seqs.total();
        let input = self.xbc.dtype();
        if !matches!(input, DType::F32 | DType::F16) {
            return Err(Error::Shape(format!("xbc must be f32 or f16, got {input:?}")));
        }
        super::expect("xbc", self.xbc, &[t, self.dims.width()], input)?;
        super::expect("dt", self.dt, &[t, heads], input)?;
        super::expect("heads", self.heads, &[heads, 4], DType::F32)?;
        super::expect("state", self.state, &[self.seqs.count(), heads, head_dim, n], DType::F32)?;
        super::expect("y", y, &[t, heads * head_dim], DType::F32)
    }

    fn check_dims(&self) -> Result<()> {
        let SsdDims { heads, head_dim, groups, n } = self.dims;
        if heads == 0
            || head_dim == 0
            || n == 0
            || n > MAX_STATE
            || groups == 0
            || !heads.is_multiple_of(groups)
        {
            return Err(Error::Shape(format!(
                "SSD needs heads, head_dim ≥ 1, 1 ≤ N ≤ {MAX_STATE} and groups dividing heads; got {:?}",
                self.dims
            )));
        }
        Ok(())
    }

    fn params(&self, init: bool, window: (usize, usize), chunks: (usize, usize)) -> Result<SsdParams> {
        self.params_in_rows(init, window, chunks, None)
    }

    /// [`SsdArgs::params`], with `row` = (row stride, columns) when x/B/C, dt and z are read out
    /// of the rows of one fused in_proj output (the ROW_IO layout of [`ssd_step_row`]).
    fn params_in_rows(
        &self,
        init: bool,
        window: (usize, usize),
        chunks: (usize, usize),
        row: Option<(usize, RowColumns)>,
    ) -> Result<SsdParams> {
        use ssd_flags::*;
        let f = self.flags;
        let flags = crate::shader::uniform::bits(&[
            (f.dt_softplus, SOFTPLUS),
            (f.dt_bias, HAS_BIAS),
            (f.d_skip, HAS_D),
            (init, INIT),
            (self.seqs.resets().is_some(), RESET),
            (row.is_some(), ROW_IO),
        ]);
        let d = self.dims;
        let (width, cols) = row.unwrap_or((d.width(), RowColumns { x: 0, dt: 0, z: 0 }));
        let w = super::word;
        Ok(SsdParams {
            total: w("tokens", self.seqs.total())?,
            heads: w("heads", d.heads)?,
            hdim: w("head_dim", d.head_dim)?,
            groups: w("groups", d.groups)?,
            nstate: w("state size", d.n)?,
            nseq: w("sequences", self.seqs.count())?,
            flags,
            width: w("row width", width)?,
            dt_min: f.dt_limit.0,
            dt_max: f.dt_limit.1,
            win_start: w("window start", window.0)?,
            win_len: w("window", window.1)?,
            nchunks: w("chunks", chunks.0)?,
            chunk: w("chunk", chunks.1)?,
            col0: w("x column", cols.x)?,
            dt_col: w("dt column", cols.dt)?,
            z_col: w("z column", cols.z)?,
            seq_chunks: 0,
        })
    }
}

/// Where a decode step finds its inputs in one row of Mamba-2's fused in_proj output
/// `[z | xBC | dt]` (see [`ssd_step_row`]): the first column of x (xBC follows), of dt and of z.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowColumns {
    pub x: usize,
    pub dt: usize,
    pub z: usize,
}

/// Records one decode step reading x, B, C, dt and the gate z straight out of the rows of
/// `row` `[S, R]` (f32; the fused in_proj + conv step's output), writing the gated
/// y ⊙ silu(z) `[S, H·P]`; the state `[S, H, P, N]` is read and updated in place.
#[allow(clippy::too_many_arguments)]
pub fn ssd_step_row(
    rec: &mut Recorder,
    row: &Tensor,
    cols: RowColumns,
    heads: &Tensor,
    seqs: &Sequences,
    state: &Tensor,
    dims: SsdDims,
    flags: SsdFlags,
    y: &Tensor,
) -> Result<()> {
    let s = seqs.count();
    if seqs.total() != s {
        return Err(Error::Invalid("a decode step takes one token per sequence (Sequences::decode)".into()));
    }
    let hp = dims.heads * dims.head_dim;
    let r = match row.shape() {
        &[rows, r] if rows == s && row.dtype() == DType::F32 => r,
        other => {
            return Err(Error::Shape(format!("row: expected f32 [{s}, R], got {other:?} {:?}", row.dtype())))
        }
    };
    if cols.x + dims.width() > r || cols.dt + dims.heads > r || cols.z + hp > r {
        return Err(Error::Shape(format!(
            "row of {r} columns cannot hold x/B/C at {}, dt at {} and z at {} for {dims:?}",
            cols.x, cols.dt, cols.z
        )));
    }
    // Shapes and group/state limits as for any scan (a stand-in xbc/dt pair of the plain layout).
    let probe = SsdArgs { xbc: row, dt: row, heads, seqs, state, dims, flags };
    probe.check_dims()?;
    super::expect("heads", heads, &[dims.heads, 4], DType::F32)?;
    super::expect("state", state, &[s, dims.heads, dims.head_dim, dims.n], DType::F32)?;
    super::expect("y", y, &[s, hp], DType::F32)?;
    let step = SsdArgs { flags: SsdFlags { init_state: true, ..flags }, ..probe };
    let params = Params::of(&step.params_in_rows(true, (0, 1), (0, 0), Some((r, cols)))?);
    let dt_placeholder = Tensor::empty(rec.device(), &[1], DType::F32)?;
    let wg = grid(rec.device(), s * dims.heads * dims.head_dim.div_ceil(64))?;
    let tensors = [row, &dt_placeholder, heads, &seqs.table, y, state];
    rec.dispatch(&decode_variant(DType::F32), &params, &tensors, wg)
}

/// Records a prefill: `y` is `[T, H·P]` f32; `state` ends as the final state.
pub fn ssd(rec: &mut Recorder, kernel: SsdKernel, args: &SsdArgs, y: &Tensor) -> Result<()> {
    ssd_in(rec, kernel, args, y, None)
}

/// [`ssd`] with the chunked path's working buffers given (a graph node's planned scratch), or
/// allocated here when `None`.
pub fn ssd_in(
    rec: &mut Recorder,
    kernel: SsdKernel,
    args: &SsdArgs,
    y: &Tensor,
    scratch: Option<&SsdScratch>,
) -> Result<()> {
    args.check(y)?;
    let dev = rec.device();
    let input = args.xbc.dtype();
    let d = args.dims;
    match kernel {
        SsdKernel::Sequential => {
            let work = args.seqs.count() * d.heads * d.head_dim;
            let wg = grid(dev, work.div_ceil(SEQ_WG))?;
            // llvmpipe ends an invocation after ~65k loop iterations: CPU adapters get
            // windows of tokens per dispatch, carrying the state.
            let window = if dev.caps().software {
                (48_000 / (d.n + 3)).max(1)
            } else {
                1 << 30 // one window; small enough that start + length stays in u32
            };
            let longest = args.seqs.cu_seqlens().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            let tensors = [args.xbc, args.dt, args.heads, &args.seqs.table, y, args.state];
            for k in 0..longest.div_ceil(window).max(1) {
                let params =
                    Params::of(&args.params(args.flags.init_state || k > 0, (k * window, window), (0, 0))?);
                rec.dispatch(&sequential_variant(input), &params, &tensors, wg)?;
            }
            Ok(())
        }
        SsdKernel::Chunked(chunk) => {
            kernels::check_chunk(chunk)?;
            record_stages_in(rec, args, y, kernel, &Stage::ALL, scratch)
        }
        SsdKernel::Coop64Fused => record_stages_in(rec, args, y, kernel, &Stage::ALL, scratch),
    }
}

/// Records one decode step: `args.seqs` must be [`Sequences::decode`] (one token per
/// sequence); the state `[S, H, P, N]` is read and updated in place. Its kernel streams the
/// state with four invocations per channel (no private state array); the sequential kernel on
/// one-token sequences computes the same and serves as its oracle in the tests.
pub fn ssd_step(rec: &mut Recorder, args: &SsdArgs, y: &Tensor) -> Result<()> {
    if args.seqs.total() != args.seqs.count() {
        return Err(Error::Invalid("a decode step takes one token per sequence (Sequences::decode)".into()));
    }
    args.check(y)?;
    let d = args.dims;
    let blocks = d.head_dim.div_ceil(64);
    let wg = grid(rec.device(), args.seqs.count() * d.heads * blocks)?;
    let step = SsdArgs { flags: SsdFlags { init_state: true, ..args.flags }, ..*args };
    let params = Params::of(&step.params(true, (0, 1), (0, 0))?);
    let tensors = [args.xbc, args.dt, args.heads, &args.seqs.table, y, args.state];
    rec.dispatch(&decode_variant(args.xbc.dtype()), &params, &tensors, wg)
}
