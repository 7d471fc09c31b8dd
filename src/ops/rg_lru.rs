//! Griffin's real-gated linear recurrent unit (RecurrentGemma's `RecurrentGemmaRglru`), the
//! recurrence only: the gates' block-diagonal projections are a matmul before it. Prefill is
//! the chunked parallel form (chunk summaries, a carry across each sequence's chunks, then the
//! chunks rerun from their carried h: three dispatches, chunks of [`CHUNK`] tokens); the decode
//! step (and any batch of one-token sequences) takes the sequential kernel, which is also the
//! chunked form's GPU oracle. See `shaders/rg_lru.wgsl` for the layout and the arithmetic.

use super::sequences::Sequences;
use super::{grid, word, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/rg_lru.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("rg_lru");

/// Tokens per sequence per dispatch of the sequential kernel (lavapipe ends an invocation after
/// about 65k loop steps).
const TOKENS_PER_DISPATCH: usize = 16384;

/// Tokens per chunk of the parallel prefill.
pub const CHUNK: usize = 64;

crate::uniform! {
    /// The RG-LRU kernel's parameters.
    pub struct RgLruParams { pub nseq: u32, pub dim: u32, pub t_lo: u32, pub t_hi: u32, pub flags: u32, pub nchunks: u32 }
}

crate::flags! {
    /// Bits of [`RgLruParams::flags`].
    pub mod rg_lru_flags { INIT = 1, RESET = 2 }
}

/// The kernels: the sequential walk and the chunked form's three passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Sequential,
    Summary,
    Carry,
    Apply,
}

impl Pass {
    pub const ALL: [Pass; 4] = [Pass::Sequential, Pass::Summary, Pass::Carry, Pass::Apply];

    pub fn variant(self) -> Variant {
        let (name, entry) = match self {
            Pass::Sequential => ("rg_lru.scan", "rg_lru"),
            Pass::Summary => ("rg_lru.summary", "rg_lru_summary"),
            Pass::Carry => ("rg_lru.carry", "rg_lru_carry"),
            Pass::Apply => ("rg_lru.apply", "rg_lru_apply"),
        };
        Variant::new(name, &SHADER, entry)
            .define(crate::shader::BOUNDED_LOOPS, 1)
            .define("SEQUENTIAL", (self == Pass::Sequential) as u32)
            .define("SUMMARY", (self == Pass::Summary) as u32)
            .define("CARRY", (self == Pass::Carry) as u32)
            .define("APPLY", (self == Pass::Apply) as u32)
            .with_params::<RgLruParams>()
            .with_flags(rg_lru_flags::SET)
    }
}

pub fn variants() -> Vec<Variant> {
    Pass::ALL.iter().map(|p| p.variant()).collect()
}

/// The chunked form's table for sequences `cu`: per chunk (sequence, first token, length),
/// chunks of at most [`CHUNK`] tokens within one sequence, then each sequence's first chunk
/// (S + 1 entries). Returns (table, number of chunks).
pub fn chunk_table(cu: &[usize]) -> (Vec<u32>, usize) {
    let mut table = Vec::new();
    let mut firsts = vec![0u32];
    for s in 0..cu.len() - 1 {
        let mut t = cu[s];
        while t < cu[s + 1] {
            let len = CHUNK.min(cu[s + 1] - t);
            table.extend([s as u32, t as u32, len as u32]);
            t += len;
        }
        firsts.push((table.len() / 3) as u32);
    }
    let n = table.len() / 3;
    table.extend(firsts);
    (table, n)
}

/// The chunked form's scratch for sequences `cu` and `dim` channels: the summaries
/// `[chunks, D, 2]` and the carried h `[chunks, D]` (none when the sequential kernel runs).
pub fn scratch_shapes(cu: &[usize], dim: usize) -> Vec<Vec<usize>> {
    if sequential(cu) {
        return Vec::new();
    }
    let n = chunk_table(cu).1;
    vec![vec![n, dim, 2], vec![n, dim]]
}

/// Whether the sequential kernel serves `cu`: no sequence is longer than one token (decode
/// steps), so the chunked form's three passes would only add dispatches.
fn sequential(cu: &[usize]) -> bool {
    cu.windows(2).all(|w| w[1] - w[0] <= 1)
}

/// Records the RG-LRU of `x` `[T, D]` with `gates` `[T, 2D]` (input gate, then recurrence gate,
/// before their sigmoids) and Λ `lam` `[D]`; `state` `[S, D]` is continued when `init` and
/// left at each sequence's last h; `y` `[T, D]`. `scratch`: the chunked form's buffers
/// ([`scratch_shapes`]), allocated here when `None`.
#[allow(clippy::too_many_arguments)]
pub fn rg_lru(
    rec: &mut Recorder,
    x: &Tensor,
    gates: &Tensor,
    lam: &Tensor,
    seqs: &Sequences,
    state: &Tensor,
    init: bool,
    y: &Tensor,
    scratch: Option<(&Tensor, &Tensor)>,
) -> Result<()> {
    let (t, s) = (seqs.total(), seqs.count());
    let d = match x.shape() {
        &[rows, d] if rows == t => d,
        other => return Err(Error::Shape(format!("x: expected [{t}, D], got {other:?}"))),
    };
    super::expect("x", x, &[t, d], DType::F32)?;
    super::expect("gates", gates, &[t, 2 * d], DType::F32)?;
    super::expect("lam", lam, &[d], DType::F32)?;
    super::expect("state", state, &[s, d], DType::F32)?;
    super::expect("y", y, &[t, d], DType::F32)?;
    let mut flags = if init { rg_lru_flags::INIT } else { 0 };
    if seqs.resets().is_some() {
        flags |= rg_lru_flags::RESET;
    }
    if sequential(seqs.cu_seqlens()) {
        return record_sequential(rec, [x, gates, lam, seqs.table(), state, y], s, d, flags, seqs);
    }
    let (table, n) = chunk_table(seqs.cu_seqlens());
    let owned;
    let (summary, h_in) = match scratch {
        Some(sc) => sc,
        None => {
            let dev = rec.device();
            owned = (Tensor::empty(dev, &[n, d, 2], DType::F32)?, Tensor::empty(dev, &[n, d], DType::F32)?);
            (&owned.0, &owned.1)
        }
    };
    super::expect("summary", summary, &[n, d, 2], DType::F32)?;
    super::expect("h_in", h_in, &[n, d], DType::F32)?;
    let chunks = Tensor::from_slice(rec.device(), &[table.len()], &table)?;
    let p = Params::of(&RgLruParams {
        nseq: word("sequences", s)?,
        dim: word("channels", d)?,
        t_lo: 0,
        t_hi: 0,
        flags,
        nchunks: word("chunks", n)?,
    });
    let per_chunk = grid(rec.device(), (n * d).div_ceil(64))?;
    let per_seq = grid(rec.device(), (s * d).div_ceil(64))?;
    let tseq = seqs.table();
    rec.dispatch(&Pass::Summary.variant(), &p, &[x, gates, lam, tseq, &chunks, summary], per_chunk)?;
    rec.dispatch(&Pass::Carry.variant(), &p, &[summary, &chunks, state, h_in], per_seq)?;
    rec.dispatch(&Pass::Apply.variant(), &p, &[x, gates, lam, tseq, &chunks, h_in, y], per_chunk)
}

/// The sequential kernel, in pieces of [`TOKENS_PER_DISPATCH`] tokens per sequence.
fn record_sequential(
    rec: &mut Recorder,
    tensors: [&Tensor; 6],
    s: usize,
    d: usize,
    flags: u32,
    seqs: &Sequences,
) -> Result<()> {
    let longest = seqs.cu_seqlens().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let wg = grid(rec.device(), (s * d).div_ceil(64))?;
    for lo in (0..longest.max(1)).step_by(TOKENS_PER_DISPATCH) {
        // Later pieces continue the state the earlier ones left.
        let f = if lo > 0 { flags | rg_lru_flags::INIT } else { flags };
        let p = Params::of(&RgLruParams {
            nseq: word("sequences", s)?,
            dim: word("channels", d)?,
            t_lo: word("tokens", lo)?,
            t_hi: word("tokens", lo + TOKENS_PER_DISPATCH)?,
            flags: f,
            nchunks: 0,
        });
        rec.dispatch(&Pass::Sequential.variant(), &p, &tensors, wg)?;
    }
    Ok(())
}

/// f64 reference: returns (y `[T, D]`, final state `[S, D]`).
pub fn rg_lru_ref(
    x: &[f32],
    gates: &[f32],
    lam: &[f32],
    cu: &[usize],
    resets: Option<&[bool]>,
    state: &[f32],
    init: bool,
) -> (Vec<f64>, Vec<f64>) {
    let d = lam.len();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let softplus = |v: f64| if v > 20.0 { v } else { v.exp().ln_1p() };
    let mut y = vec![0f64; x.len()];
    let mut fin = vec![0f64; (cu.len() - 1) * d];
    for s in 0..cu.len() - 1 {
        for c in 0..d {
            let mut h = if init { state[s * d + c] as f64 } else { 0.0 };
            for t in cu[s]..cu[s + 1] {
                let start = resets.is_some_and(|r| r[t]) || (t == cu[s] && !init);
                let log_a = -8.0 * sig(gates[t * 2 * d + d + c] as f64) * softplus(lam[c] as f64);
                let a = log_a.exp();
                let mult = if start { 1.0 } else { (1.0 - (2.0 * log_a).exp()).sqrt() };
                let b = sig(gates[t * 2 * d + c] as f64) * x[t * d + c] as f64 * mult;
                h = if start { b } else { a * h + b };
                y[t * d + c] = h;
            }
            fin[s * d + c] = h;
        }
    }
    (y, fin)
}
