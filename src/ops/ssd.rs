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

use super::selective_scan::Sequences;
use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/ssd.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("ssd");

/// Workgroup memory of `Coop64Fused`'s chunk scan (its largest kernel).
const FUSED_WORKGROUP_BYTES: u32 = 64 * 68 * 4 + 3 * 64 * 72 * 2 + 2 * 64 * 4;

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

    /// The device's tuned choice for this bucket if there is one, else `default` (chunk sizes
    /// compute the same thing; the model's configured chunk is the usual default).
    pub fn choose(
        dev: &crate::device::Device,
        dims: SsdDims,
        tokens: usize,
        default: SsdKernel,
    ) -> SsdKernel {
        dev.tuned("ssd", &Self::bucket(dims, tokens)).and_then(|n| Self::from_name(&n)).unwrap_or(default)
    }
}

fn variant(name: &str, entry: &'static str, define: &'static str, input: DType) -> Variant {
    let f16 = input == DType::F16;
    let mut v = Variant::new(if f16 { format!("{name}.f16") } else { name.to_string() }, &SHADER, entry)
        .define(crate::shader::BOUNDED_LOOPS, 1)
        .define(define, 1)
        .define("F16IN", f16 as u32)
        .define("IN", if f16 { "u32" } else { "f32" });
    if define == "SEQUENTIAL" {
        v = v.define("NMAX", MAX_STATE);
    }
    v
}

fn sequential_variant(input: DType) -> Variant {
    variant("ssd.sequential", "ssd_sequential", "SEQUENTIAL", input)
}
fn decode_variant(input: DType) -> Variant {
    variant("ssd.decode", "ssd_decode", "SEQUENTIAL", input)
}
fn cumsum_variant(input: DType) -> Variant {
    variant("ssd.cumsum", "ssd_cumsum", "CUMSUM", input)
}
/// A SIMT chunk kernel for `input`. With `native` (the device has SHADER_F16), f16 inputs are
/// read as native f16 (`<name>.f16n`) instead of unpacked from u32 words (on the H200 the
/// packed chunk states were 11% slower than with f32 inputs).
fn simt_variant(
    name: &str,
    entry: &'static str,
    define: &'static str,
    input: DType,
    native: bool,
) -> Variant {
    let v = variant(name, entry, define, input);
    if !(native && input == DType::F16) {
        return v;
    }
    let mut v = v.define("F16N", 1).define("IN", "f16").needs_f16();
    v.name = format!("{name}.f16n");
    v
}
fn chunk_state_variant(input: DType, native: bool) -> Variant {
    simt_variant("ssd.chunk_state", "ssd_chunk_state", "CHUNK_STATE", input, native)
}
fn state_passing_variant() -> Variant {
    variant("ssd.state_passing", "ssd_state_passing", "STATE_PASSING", DType::F32)
}
fn chunk_scan_variant(input: DType, native: bool) -> Variant {
    simt_variant("ssd.chunk_scan", "ssd_chunk_scan", "CHUNK_SCAN", input, native)
}
fn tc_variant(name: String, entry: &'static str, define: &'static str) -> Variant {
    Variant::new(name, &SHADER, entry)
        .define(crate::shader::BOUNDED_LOOPS, 1)
        .define("TC", 1)
        .define(define, 1)
        .needs_coop_matrix()
}
/// `Coop64Fused`'s state scan (chunk states and state passing in one).
fn state_scan_variant() -> Variant {
    tc_variant("ssd.state_scan.coop".into(), "ssd_state_scan", "STATE_SCAN")
}
/// `Coop64Fused`'s chunk scan with `heads` heads of one group per workgroup (they share C·Bᵀ).
/// With one head, a workgroup takes every 64-channel block of it, so C·Bᵀ and the masked M
/// are computed once per (chunk, head) rather than once per block.
fn chunk_scan_tc_variant(heads: usize) -> Variant {
    tc_variant(format!("ssd.chunk_scan.tc.h{heads}"), "ssd_chunk_scan_tc", "CHUNK_SCAN_TC")
        .define("HEADS_WG", heads)
        .define("ALL_BLOCKS", (heads == 1) as u32)
}

/// Every shader variant of the family (for validation and listing).
pub fn variants() -> Vec<Variant> {
    let mut out = vec![
        state_passing_variant(),
        state_scan_variant(),
        chunk_scan_tc_variant(1),
        chunk_scan_tc_variant(2),
        chunk_scan_tc_variant(4),
        chunk_scan_tc_variant(8),
        chunk_scan_tc_variant(12),
        chunk_scan_tc_variant(24),
        chunk_state_variant(DType::F16, true),
        chunk_scan_variant(DType::F16, true),
    ];
    for dt in [DType::F32, DType::F16] {
        out.extend([
            sequential_variant(dt),
            decode_variant(dt),
            cumsum_variant(dt),
            chunk_state_variant(dt, false),
            chunk_scan_variant(dt, false),
        ]);
    }
    out
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

    fn params(&self, init: bool, window: (usize, usize), chunks: (usize, usize)) -> Params {
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
    ) -> Params {
        let f = self.flags;
        let bits = f.dt_softplus as usize
            | (f.dt_bias as usize) << 1
            | (f.d_skip as usize) << 2
            | (init as usize) << 3
            | (self.seqs.resets().is_some() as usize) << 4
            | (row.is_some() as usize) << 5;
        let d = self.dims;
        let (width, cols) = row.unwrap_or((d.width(), RowColumns { x: 0, dt: 0, z: 0 }));
        Params::new()
            .u(self.seqs.total())
            .u(d.heads)
            .u(d.head_dim)
            .u(d.groups)
            .u(d.n)
            .u(self.seqs.count())
            .u(bits)
            .u(width)
            .f(f.dt_limit.0)
            .f(f.dt_limit.1)
            .u(window.0)
            .u(window.1)
            .u(chunks.0)
            .u(chunks.1)
            .u(cols.x)
            .u(cols.dt)
            .u(cols.z)
            .u(0)
            .u(0)
            .u(0)
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
    let params = step.params_in_rows(true, (0, 1), (0, 0), Some((r, cols)));
    let dt_placeholder = Tensor::empty(rec.device(), &[1], DType::F32)?;
    let wg = grid(rec.device(), s * dims.heads * dims.head_dim.div_ceil(64))?;
    let tensors = [row, &dt_placeholder, heads, &seqs.table, y, state];
    rec.dispatch(&decode_variant(DType::F32), &params, &tensors, wg)
}

/// The Params field (`seq_chunks` in shaders/ssd.wgsl) with the most chunks of any sequence.
const SEQ_CHUNKS_FIELD: usize = 17;

const FRESH: u32 = 1;
const FIRST: u32 = 2;

/// The chunk table: per chunk (first token, length, sequence, flags), then per-sequence chunk
/// offsets. Chunks split every sequence at its reset flags and every `chunk` tokens.
pub fn chunk_table(seqs: &Sequences, chunk: usize) -> (Vec<u32>, usize) {
    let cu = seqs.cu_seqlens();
    let resets = seqs.resets();
    let mut entries = Vec::new();
    let mut offsets = vec![0u32];
    for s in 0..seqs.count() {
        let (start, end) = (cu[s], cu[s + 1]);
        let mut t = start;
        while t < end {
            // The segment runs to the next reset (exclusive) or the sequence's end.
            let seg_end = (t + 1..end).find(|&u| resets.is_some_and(|r| r[u])).unwrap_or(end);
            let mut c = t;
            while c < seg_end {
                let len = chunk.min(seg_end - c);
                let mut flags = 0;
                if c == t && resets.is_some_and(|r| r[c]) {
                    flags |= FRESH;
                }
                if c == start {
                    flags |= FIRST;
                }
                entries.extend([c as u32, len as u32, s as u32, flags]);
                c += len;
            }
            t = seg_end;
        }
        offsets.push((entries.len() / 4) as u32);
    }
    let n = entries.len() / 4;
    entries.extend(offsets);
    (entries, n)
}

/// Records a prefill: `y` is `[T, H·P]` f32; `state` ends as the final state.
pub fn ssd(rec: &mut Recorder, kernel: SsdKernel, args: &SsdArgs, y: &Tensor) -> Result<()> {
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
                let params = args.params(args.flags.init_state || k > 0, (k * window, window), (0, 0));
                rec.dispatch(&sequential_variant(input), &params, &tensors, wg)?;
            }
            Ok(())
        }
        SsdKernel::Chunked(chunk) => record_chunked(rec, args, y, chunk, ALL_STAGES),
        SsdKernel::Coop64Fused => record_stages(rec, args, y, kernel, ALL_STAGES),
    }
}

/// The four dispatches of the chunked path, as bits for [`record_chunked`].
pub const STAGES: [(&str, u32); 4] =
    [("cumsum", 1), ("chunk_state", 2), ("state_passing", 4), ("chunk_scan", 8)];
const ALL_STAGES: u32 = 15;

/// Records the chunked path's dispatches selected by `stages` (bits of [`STAGES`]): all of
/// them for a scan, one at a time to time each (the bench's breakdown).
pub fn record_chunked(
    rec: &mut Recorder,
    args: &SsdArgs,
    y: &Tensor,
    chunk: usize,
    stages: u32,
) -> Result<()> {
    if !matches!(chunk, 32 | 64 | 128 | 256) {
        return Err(Error::Invalid(format!("SSD chunk size {chunk}: use 32, 64, 128 or 256")));
    }
    record_stages(rec, args, y, SsdKernel::Chunked(chunk), stages)
}

/// [`record_chunked`] for any chunked kernel (`Chunked(c)` or `Coop64Fused`).
pub fn record_stages(
    rec: &mut Recorder,
    args: &SsdArgs,
    y: &Tensor,
    kernel: SsdKernel,
    stages: u32,
) -> Result<()> {
    args.check(y)?;
    let dev = rec.device();
    let input = args.xbc.dtype();
    let d = args.dims;
    let chunk = kernel.chunk().ok_or_else(|| Error::Invalid("the sequential SSD has no stages".into()))?;
    if !kernel.runs(dev.caps(), input) {
        return Err(Error::UnsupportedVariant(format!(
            "{} needs f16 inputs, f16 cooperative matrices, 32-lane subgroups and {FUSED_WORKGROUP_BYTES} bytes of workgroup memory (inputs {input:?}, adapter {})",
            kernel.name(),
            dev.caps().adapter
        )));
    }
    let t = args.seqs.total();
    if kernel == SsdKernel::Coop64Fused && !SsdKernel::fused_fits(d) {
        return record_stages(rec, args, y, SsdKernel::Chunked(64), stages);
    }
    let (table_host, nchunks) = chunk_table(args.seqs, chunk);
    let table = Tensor::from_slice(dev, &[table_host.len()], &table_host)?;
    let dts = Tensor::empty(dev, &[t, d.heads], DType::F32)?;
    let cs = Tensor::empty(dev, &[t, d.heads], DType::F32)?;
    // The fused state scan loops as many steps as the longest sequence has chunks, a bound from
    // the uniform buffer: on the H200, cooperative-matrix results inside a loop bounded by a
    // value from storage (even one made uniform by workgroupUniformLoad) came out wrong.
    let offsets = &table_host[nchunks * 4..];
    let seq_chunks = offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0);
    let params =
        args.params(args.flags.init_state, (0, 0), (nchunks, chunk)).set(SEQ_CHUNKS_FIELD, seq_chunks);
    let max = dev.caps().max_compute_workgroups_per_dimension as usize;
    if nchunks > max || d.heads > max {
        return Err(Error::Limit(format!("{nchunks} chunks × {} heads exceed the dispatch grid", d.heads)));
    }
    let on = |bit: u32| stages & bit != 0;
    let native = dev.caps().shader_f16;
    if on(1) {
        rec.dispatch(
            &cumsum_variant(input),
            &params,
            &[args.dt, args.heads, &table, &dts, &cs],
            grid(dev, (nchunks * d.heads).div_ceil(64))?,
        )?;
    }
    if kernel == SsdKernel::Coop64Fused {
        return record_fused(rec, args, y, &params, (&table, nchunks), (&dts, &cs), stages);
    }
    // Per-chunk states in f32 (the fused kernel has no such buffer).
    let cstates = Tensor::empty(dev, &[nchunks.max(1), d.heads, d.head_dim, d.n], DType::F32)?;
    let tiles = d.head_dim.div_ceil(64) * d.n.div_ceil(64);
    if on(2) {
        rec.dispatch(
            &chunk_state_variant(input, native),
            &params,
            &[args.xbc, &dts, &cs, &table, &cstates],
            [tiles as u32, d.heads as u32, nchunks as u32],
        )?;
    }
    let work = args.seqs.count() * d.heads * d.head_dim * d.n;
    if on(4) {
        let tensors = [&cs, &table, &cstates, args.state];
        rec.dispatch(&state_passing_variant(), &params, &tensors, grid(dev, work.div_ceil(64))?)?;
    }
    if on(8) {
        rec.dispatch(
            &chunk_scan_variant(input, native),
            &params,
            &[args.xbc, &dts, &cs, &table, &cstates, args.heads, y],
            [(chunk.div_ceil(64) * d.head_dim.div_ceil(64)) as u32, d.heads as u32, nchunks as u32],
        )?;
    }
    Ok(())
}

/// `Coop64Fused` after the cumsum: the state scan (stage bit 2; bit 4 has nothing left to do)
/// and the tensor-core chunk scan (bit 8).
fn record_fused(
    rec: &mut Recorder,
    args: &SsdArgs,
    y: &Tensor,
    params: &Params,
    (table, nchunks): (&Tensor, usize),
    (dts, cs): (&Tensor, &Tensor),
    stages: u32,
) -> Result<()> {
    let dev = rec.device();
    let d = args.dims;
    let s = args.seqs.count();
    let max = dev.caps().max_compute_workgroups_per_dimension as usize;
    if s > max {
        return Err(Error::Limit(format!("{s} sequences exceed the dispatch grid ({max})")));
    }
    // The state entering each chunk, f16, [chunk, H, P, N].
    let hin16 = Tensor::empty(dev, &[nchunks.max(1), d.heads, d.head_dim, d.n], DType::F16)?;
    if stages & 2 != 0 {
        let tiles = (d.head_dim / 64) * d.n.div_ceil(64);
        rec.dispatch(
            &state_scan_variant(),
            params,
            &[args.xbc, dts, cs, table, args.state, &hin16],
            [tiles as u32, d.heads as u32, s as u32],
        )?;
    }
    if stages & 8 != 0 {
        let hw = heads_per_workgroup(d, nchunks);
        rec.dispatch(
            &chunk_scan_tc_variant(hw),
            params,
            &[args.xbc, dts, cs, table, &hin16, args.heads, y],
            [if hw == 1 { 1 } else { (d.head_dim / 64) as u32 }, (d.heads / hw) as u32, nchunks as u32],
        )?;
    }
    Ok(())
}

/// Heads per workgroup of `Coop64Fused`'s chunk scan: the most (of 24, 12, 8, 4, 2, 1, dividing
/// the heads per group) that still leave 512 workgroups (about four per SM on the H200), or
/// the most of all when none does (a small call, where fewer, fuller workgroups cost nothing).
/// They share C·Bᵀ: on the H200, Mamba-2's 24 heads per group at 16K tokens ran the chunk
/// scan in 2.89 ms with 24 per workgroup, 2.95 with 12 and 2.99 with 8.
fn heads_per_workgroup(d: SsdDims, nchunks: usize) -> usize {
    let per_group = d.heads / d.groups;
    let fits: Vec<usize> =
        [24, 12, 8, 4, 2, 1].into_iter().filter(|k| per_group.is_multiple_of(*k)).collect();
    let workgroups = |hw: usize| nchunks * (d.heads / hw) * if hw == 1 { 1 } else { d.head_dim / 64 };
    fits.iter().copied().find(|&hw| workgroups(hw) >= 512).unwrap_or(fits[0])
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
    let params =
        SsdArgs { flags: SsdFlags { init_state: true, ..args.flags }, ..*args }.params(true, (0, 1), (0, 0));
    let tensors = [args.xbc, args.dt, args.heads, &args.seqs.table, y, args.state];
    rec.dispatch(&decode_variant(args.xbc.dtype()), &params, &tensors, wg)
}

/// Host inputs of the f64 reference, in the layout of the module docs.
pub struct SsdRef<'a> {
    pub xbc: &'a [f32],
    pub dt: &'a [f32],
    pub heads: &'a [f32],
    pub cu: &'a [usize],
    pub resets: Option<&'a [bool]>,
    pub state: &'a [f32],
    pub dims: SsdDims,
    pub flags: SsdFlags,
}

/// f64 reference (the recurrence, token by token): returns (y `[T, H·P]`, final state
/// `[S, H, P, N]`).
pub fn ssd_ref(r: &SsdRef) -> (Vec<f64>, Vec<f64>) {
    let SsdDims { heads, head_dim: hp, groups, n } = r.dims;
    let w = r.dims.width();
    let t_total = *r.cu.last().expect("cu_seqlens");
    let s_count = r.cu.len() - 1;
    let mut y = vec![0f64; t_total * heads * hp];
    let mut fin = vec![0f64; s_count * heads * hp * n];
    for s in 0..s_count {
        for h in 0..heads {
            let g = h / (heads / groups);
            let (a, dsk, bias) =
                (r.heads[h * 4] as f64, r.heads[h * 4 + 1] as f64, r.heads[h * 4 + 2] as f64);
            let base = (s * heads + h) * hp * n;
            let mut st: Vec<f64> = (0..hp * n)
                .map(|k| if r.flags.init_state { r.state[base + k] as f64 } else { 0.0 })
                .collect();
            for t in r.cu[s]..r.cu[s + 1] {
                let mut dt = r.dt[t * heads + h] as f64;
                if r.flags.dt_bias {
                    dt += bias;
                }
                if r.flags.dt_softplus && dt <= 20.0 {
                    dt = dt.exp().ln_1p();
                }
                dt = dt.clamp(r.flags.dt_limit.0 as f64, r.flags.dt_limit.1 as f64);
                let mut decay = (dt * a).exp();
                if r.resets.is_some_and(|rs| rs[t]) {
                    decay = 0.0;
                }
                let row = &r.xbc[t * w..(t + 1) * w];
                let bo = heads * hp + g * n;
                let co = heads * hp + groups * n + g * n;
                for i in 0..hp {
                    let x = row[h * hp + i] as f64;
                    let mut acc = 0.0;
                    for k in 0..n {
                        let v = &mut st[i * n + k];
                        *v = decay * *v + dt * x * row[bo + k] as f64;
                        acc += *v * row[co + k] as f64;
                    }
                    if r.flags.d_skip {
                        acc += dsk * x;
                    }
                    y[t * heads * hp + h * hp + i] = acc;
                }
            }
            fin[base..base + hp * n].copy_from_slice(&st);
        }
    }
    (y, fin)
}
