//! Griffin's real-gated linear recurrent unit (RecurrentGemma's `RecurrentGemmaRglru`), the
//! recurrence only: the gates' block-diagonal projections are a matmul before it. One kernel
//! serves prefill and the decode step (a step is a one-token sequence). See
//! `shaders/rg_lru.wgsl` for the layout and the arithmetic.

use super::sequences::Sequences;
use super::{grid, word, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/rg_lru.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("rg_lru");

/// Tokens per sequence per dispatch (lavapipe ends an invocation after about 65k loop steps).
const TOKENS_PER_DISPATCH: usize = 16384;

crate::uniform! {
    /// The RG-LRU kernel's parameters.
    pub struct RgLruParams { pub nseq: u32, pub dim: u32, pub t_lo: u32, pub t_hi: u32, pub flags: u32 }
}

crate::flags! {
    /// Bits of [`RgLruParams::flags`].
    pub mod rg_lru_flags { INIT = 1, RESET = 2 }
}

fn variant() -> Variant {
    Variant::new("rg_lru.scan", &SHADER, "rg_lru")
        .define(crate::shader::BOUNDED_LOOPS, 1)
        .with_params::<RgLruParams>()
        .with_flags(rg_lru_flags::SET)
}

pub fn variants() -> Vec<Variant> {
    vec![variant()]
}

/// Records the RG-LRU of `x` `[T, D]` with `gates` `[T, 2D]` (input gate, then recurrence gate,
/// before their sigmoids) and Λ `lam` `[D]`; `state` `[S, D]` is continued when `init` and
/// left at each sequence's last h; `y` `[T, D]`.
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
        });
        rec.dispatch(&variant(), &p, &[x, gates, lam, seqs.table(), state, y], wg)?;
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
