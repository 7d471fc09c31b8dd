//! The SSD family's kernels: variants, their typed parameters and flags, the chunk table, and
//! the recording of the chunked and tensor-core paths' dispatches.

use super::{SsdArgs, SsdDims, SsdKernel, MAX_STATE, SHADER};
use crate::error::{Error, Result};
use crate::ops::selective_scan::Sequences;
pub use crate::ops::sequences::chunk_flags;
use crate::ops::{self, grid, sequences, Params, Recorder};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// Workgroup memory of `Coop64Fused`'s chunk scan (its largest kernel).
pub(super) const FUSED_WORKGROUP_BYTES: u32 = 64 * 68 * 4 + 3 * 64 * 72 * 2 + 2 * 64 * 4;

crate::uniform! {
    /// The SSD kernels' parameters (one block for every kernel of the family).
    pub struct SsdParams {
        pub total: u32,
        pub heads: u32,
        pub hdim: u32,
        pub groups: u32,
        pub nstate: u32,
        pub nseq: u32,
        pub flags: u32,
        /// Row width of `xbc` (or of the fused in_proj row, with ROW_IO).
        pub width: u32,
        pub dt_min: f32,
        pub dt_max: f32,
        /// The sequential kernel's window of every sequence's tokens.
        pub win_start: u32,
        pub win_len: u32,
        pub nchunks: u32,
        pub chunk: u32,
        /// ROW_IO: the columns of x, dt and z in the row.
        pub col0: u32,
        pub dt_col: u32,
        pub z_col: u32,
        /// The most chunks of any sequence (the fused state scan's loop bound).
        pub seq_chunks: u32,
    }
}

crate::flags! {
    /// Bits of [`SsdParams::flags`]. ROW_IO: a decode step reads x/B/C, dt and the gate z out of
    /// one fused in_proj row `[z | xBC | dt]`.
    pub mod ssd_flags { SOFTPLUS = 1, HAS_BIAS = 2, HAS_D = 4, INIT = 8, RESET = 16, ROW_IO = 32 }
}

/// The dispatches of the chunked path, for timing them one at a time (the bench's breakdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Chunk cumsum of dt·A.
    Cumsum,
    /// Per-chunk states (the fused kernel's state scan, which also passes the states).
    ChunkState,
    /// State passing across chunks (nothing left to do in the fused kernel).
    StatePassing,
    /// The chunk scan: the outputs.
    ChunkScan,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Cumsum, Stage::ChunkState, Stage::StatePassing, Stage::ChunkScan];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Cumsum => "cumsum",
            Stage::ChunkState => "chunk_state",
            Stage::StatePassing => "state_passing",
            Stage::ChunkScan => "chunk_scan",
        }
    }
}

fn base(name: String, entry: &'static str) -> Variant {
    Variant::new(name, &SHADER, entry)
        .define(crate::shader::BOUNDED_LOOPS, 1)
        .with_params::<SsdParams>()
        .with_flags(ssd_flags::SET)
        .with_flags(chunk_flags::SET)
}

fn variant(name: &str, entry: &'static str, define: &'static str, input: DType) -> Variant {
    let f16 = input == DType::F16;
    let mut v = base(if f16 { format!("{name}.f16") } else { name.to_string() }, entry)
        .define(define, 1)
        .define("F16IN", f16 as u32)
        .define("IN", if f16 { "u32" } else { "f32" });
    if define == "SEQUENTIAL" {
        v = v.define("NMAX", MAX_STATE);
    }
    v
}

pub(super) fn sequential_variant(input: DType) -> Variant {
    variant("ssd.sequential", "ssd_sequential", "SEQUENTIAL", input)
}
pub(super) fn decode_variant(input: DType) -> Variant {
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
    base(name, entry).define("TC", 1).define(define, 1).needs_coop_matrix()
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

/// The chunk table: per chunk (first token, length, sequence, flags), then per-sequence chunk
/// offsets. Chunks split every sequence at its reset flags and every `chunk` tokens.
pub fn chunk_table(seqs: &Sequences, chunk: usize) -> (Vec<u32>, usize) {
    sequences::chunk_table(seqs.cu_seqlens(), seqs.resets(), chunk)
}

/// Records the chunked path's dispatches of `stages`: all of them for a scan, one at a time to
/// time each (the bench's breakdown).
pub fn record_chunked(
    rec: &mut Recorder,
    args: &SsdArgs,
    y: &Tensor,
    chunk: usize,
    stages: &[Stage],
) -> Result<()> {
    check_chunk(chunk)?;
    record_stages(rec, args, y, SsdKernel::Chunked(chunk), stages)
}

/// The chunk sizes the chunked kernels take.
pub(super) fn check_chunk(chunk: usize) -> Result<()> {
    if !matches!(chunk, 32 | 64 | 128 | 256) {
        return Err(Error::Invalid(format!("SSD chunk size {chunk}: use 32, 64, 128 or 256")));
    }
    Ok(())
}

/// [`record_chunked`] for any chunked kernel (`Chunked(c)` or `Coop64Fused`).
pub fn record_stages(
    rec: &mut Recorder,
    args: &SsdArgs,
    y: &Tensor,
    kernel: SsdKernel,
    stages: &[Stage],
) -> Result<()> {
    record_stages_in(rec, args, y, kernel, stages, None)
}

/// The chunked path's working buffers: dt after softplus and the chunk cumsum of dt·A (both
/// `[T, H]` f32), and the per-chunk states (`[chunks, H, P, N]`: f32 for the SIMT kernels, the
/// f16 entering states for `Coop64Fused`). A graph node declares them as scratch
/// ([`scratch_shapes`]) so the planner places them; a direct call allocates its own.
pub struct SsdScratch<'a> {
    pub dts: &'a Tensor,
    pub cs: &'a Tensor,
    pub states: &'a Tensor,
}

/// The kernel that actually runs the chunked path for these dims (`Coop64Fused` falls back to
/// chunk 64 for shapes it cannot take).
fn effective(kernel: SsdKernel, d: SsdDims) -> SsdKernel {
    if kernel == SsdKernel::Coop64Fused && !SsdKernel::fused_fits(d) {
        SsdKernel::Chunked(64)
    } else {
        kernel
    }
}

/// The scratch (shape, dtype) of the chunked path for this problem: [`SsdScratch`]'s three
/// buffers, none for the sequential kernel.
pub fn scratch_shapes(
    kernel: SsdKernel,
    d: SsdDims,
    cu: &[usize],
    resets: Option<&[bool]>,
) -> Vec<(Vec<usize>, DType)> {
    let kernel = effective(kernel, d);
    let Some(chunk) = kernel.chunk() else { return Vec::new() };
    let (_, nchunks) = sequences::chunk_table(cu, resets, chunk);
    scratch_of(kernel, d, cu.last().copied().unwrap_or(0), nchunks).to_vec()
}

/// [`SsdScratch`]'s buffers for `kernel` (already [`effective`]) over `t` tokens in `nchunks`
/// chunks: dt and the cumsum `[T, H]` f32, then the per-chunk states.
fn scratch_of(kernel: SsdKernel, d: SsdDims, t: usize, nchunks: usize) -> [(Vec<usize>, DType); 3] {
    let states = if kernel == SsdKernel::Coop64Fused { DType::F16 } else { DType::F32 };
    [
        (vec![t, d.heads], DType::F32),
        (vec![t, d.heads], DType::F32),
        (vec![nchunks.max(1), d.heads, d.head_dim, d.n], states),
    ]
}

/// [`record_stages`] with the working buffers given (or allocated when `None`, or when they do
/// not fit what the kernel needs).
pub fn record_stages_in(
    rec: &mut Recorder,
    args: &SsdArgs,
    y: &Tensor,
    kernel: SsdKernel,
    stages: &[Stage],
    scratch: Option<&SsdScratch>,
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
    let kernel = effective(kernel, d);
    let (table_host, nchunks) = chunk_table(args.seqs, chunk);
    let table = Tensor::from_slice(dev, &[table_host.len()], &table_host)?;
    let want = scratch_of(kernel, d, t, nchunks);
    let fits = |t: &Tensor, (shape, dtype): &(Vec<usize>, DType)| {
        t.shape() == shape.as_slice() && t.dtype() == *dtype
    };
    let given = scratch.filter(|s| fits(s.dts, &want[0]) && fits(s.cs, &want[1]) && fits(s.states, &want[2]));
    let (dts, cs, states) = match given {
        Some(s) => (s.dts.clone(), s.cs.clone(), s.states.clone()),
        None => (
            Tensor::empty(dev, &want[0].0, want[0].1)?,
            Tensor::empty(dev, &want[1].0, want[1].1)?,
            Tensor::empty(dev, &want[2].0, want[2].1)?,
        ),
    };
    // The fused state scan loops as many steps as the longest sequence has chunks, a bound from
    // the uniform buffer: on the H200, cooperative-matrix results inside a loop bounded by a
    // value from storage (even one made uniform by workgroupUniformLoad) came out wrong.
    let offsets = &table_host[nchunks * 4..];
    let seq_chunks = offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0);
    let params = Params::of(&SsdParams {
        seq_chunks: ops::word("chunks per sequence", seq_chunks)?,
        ..args.params(args.flags.init_state, (0, 0), (nchunks, chunk))?
    });
    let max = dev.caps().max_compute_workgroups_per_dimension as usize;
    if nchunks > max || d.heads > max {
        return Err(Error::Limit(format!("{nchunks} chunks × {} heads exceed the dispatch grid", d.heads)));
    }
    let on = |stage: Stage| stages.contains(&stage);
    let native = dev.caps().shader_f16;
    if on(Stage::Cumsum) {
        rec.dispatch(
            &cumsum_variant(input),
            &params,
            &[args.dt, args.heads, &table, &dts, &cs],
            grid(dev, (nchunks * d.heads).div_ceil(64))?,
        )?;
    }
    if kernel == SsdKernel::Coop64Fused {
        return record_fused(rec, args, y, &params, (&table, nchunks), (&dts, &cs, &states), stages);
    }
    // Per-chunk states in f32 (the fused kernel has no such buffer).
    let cstates = states;
    let tiles = d.head_dim.div_ceil(64) * d.n.div_ceil(64);
    if on(Stage::ChunkState) {
        rec.dispatch(
            &chunk_state_variant(input, native),
            &params,
            &[args.xbc, &dts, &cs, &table, &cstates],
            [tiles as u32, d.heads as u32, nchunks as u32],
        )?;
    }
    let work = args.seqs.count() * d.heads * d.head_dim * d.n;
    if on(Stage::StatePassing) {
        let tensors = [&cs, &table, &cstates, args.state];
        rec.dispatch(&state_passing_variant(), &params, &tensors, grid(dev, work.div_ceil(64))?)?;
    }
    if on(Stage::ChunkScan) {
        rec.dispatch(
            &chunk_scan_variant(input, native),
            &params,
            &[args.xbc, &dts, &cs, &table, &cstates, args.heads, y],
            [(chunk.div_ceil(64) * d.head_dim.div_ceil(64)) as u32, d.heads as u32, nchunks as u32],
        )?;
    }
    Ok(())
}

/// `Coop64Fused` after the cumsum: the state scan ([`Stage::ChunkState`]; state passing has
/// nothing left to do) and the tensor-core chunk scan ([`Stage::ChunkScan`]).
fn record_fused(
    rec: &mut Recorder,
    args: &SsdArgs,
    y: &Tensor,
    params: &Params,
    (table, nchunks): (&Tensor, usize),
    (dts, cs, hin16): (&Tensor, &Tensor, &Tensor),
    stages: &[Stage],
) -> Result<()> {
    let dev = rec.device();
    let d = args.dims;
    let s = args.seqs.count();
    let max = dev.caps().max_compute_workgroups_per_dimension as usize;
    if s > max {
        return Err(Error::Limit(format!("{s} sequences exceed the dispatch grid ({max})")));
    }
    // The state entering each chunk, f16, [chunk, H, P, N].
    // `hin16`: the state entering each chunk, f16, [chunk, H, P, N].
    if stages.contains(&Stage::ChunkState) {
        let tiles = (d.head_dim / 64) * d.n.div_ceil(64);
        rec.dispatch(
            &state_scan_variant(),
            params,
            &[args.xbc, dts, cs, table, args.state, hin16],
            [tiles as u32, d.heads as u32, s as u32],
        )?;
    }
    if stages.contains(&Stage::ChunkScan) {
        let hw = heads_per_workgroup(d, nchunks);
        rec.dispatch(
            &chunk_scan_tc_variant(hw),
            params,
            &[args.xbc, dts, cs, table, hin16, args.heads, y],
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
pub(super) fn heads_per_workgroup(d: SsdDims, nchunks: usize) -> usize {
    let per_group = d.heads / d.groups;
    let fits: Vec<usize> =
        [24, 12, 8, 4, 2, 1].into_iter().filter(|k| per_group.is_multiple_of(*k)).collect();
    let workgroups = |hw: usize| nchunks * (d.heads / hw) * if hw == 1 { 1 } else { d.head_dim / 64 };
    fits.iter().copied().find(|&hw| workgroups(hw) >= 512).unwrap_or(fits[0])
}
