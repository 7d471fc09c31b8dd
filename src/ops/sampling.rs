//! Sampling one token per row with temperature, top-k and top-p from a seed, on the GPU, so a
//! decode loop needs no logits readback. The kept set and the draw are defined exactly (see
//! `shaders/sampling.wgsl`), and [`sample_ref`] reproduces them in f64.

use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/sampling.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("sampling");

const WG: u32 = 256;

/// The id the sampler and the argmax write for a row with a NaN or ±Inf logit (never a real
/// token: vocabularies are far smaller). Generation reports it as an error naming the step.
pub const NONFINITE_ID: u32 = row_consts::NONFINITE;

crate::flags! {
    /// The constants the row kernels receive (the non-finite marker).
    pub mod row_consts { NONFINITE = u32::MAX }
}

/// Sampling settings. `temperature == 0` means greedy (argmax).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 1.0 disables top-p.
    pub top_p: f32,
    pub seed: u32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

impl SamplingParams {
    /// Errors on settings that have no meaning.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Invalid(format!("temperature {} must be finite and ≥ 0", self.temperature)));
        }
        if self.temperature > 0.0 && !(1.0 / self.temperature).is_finite() {
            return Err(Error::Invalid(format!(
                "temperature {:e} is too small: 1/T overflows f32 (use 0 for greedy)",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Invalid(format!("top_p {} must be in (0, 1]", self.top_p)));
        }
        Ok(())
    }
}

crate::uniform! {
    /// `sample`'s parameters.
    pub struct SampleParams {
        pub n: u32,
        pub rows: u32,
        pub inv_temp: f32,
        pub top_k: u32,
        pub top_p: f32,
        pub seed: u32,
        pub step: u32,
    }
}

fn variant(subgroups: bool) -> Variant {
    Variant::new(format!("sampling.sample{}", if subgroups { ".sg" } else { "" }), &SHADER, "sample")
        .define("WG", WG)
        .with_subgroups(subgroups)
        .with_params::<SampleParams>()
        .with_flags(row_consts::SET)
}

pub fn variants() -> Vec<Variant> {
    vec![variant(false), variant(true)]
}

/// Records sampling of `ids[r]` from `logits[r, :]`; `step` decorrelates successive draws.
pub fn sample(
    rec: &mut Recorder,
    logits: &Tensor,
    params: &SamplingParams,
    step: u32,
    ids: &Tensor,
) -> Result<()> {
    params.validate()?;
    let n = *logits.shape().last().unwrap_or(&0);
    if logits.dtype() != DType::F32 || n == 0 {
        return Err(Error::Shape(format!("sample: logits must be non-empty f32, got {:?}", logits.shape())));
    }
    let rows = logits.numel() / n;
    super::expect("ids", ids, &[rows], DType::U32)?;
    if params.temperature == 0.0 {
        return super::softmax::argmax(rec, logits, ids);
    }
    let p = self::params(n, rows, params, step)?;
    let v = variant(rec.device().caps().subgroups);
    rec.dispatch(&v, &p, &[logits, ids], grid(rec.device(), rows)?)
}

/// The uniform parameters of a sampling dispatch (for replayed recordings that change `step`).
/// A top-k of n or more keeps every logit, as 0 (off) does: it is clamped to n so the GPU's
/// 32-bit word means what the host's `usize` does.
pub fn params(n: usize, rows: usize, params: &SamplingParams, step: u32) -> Result<Params> {
    Ok(Params::of(&SampleParams {
        n: super::word("vocabulary", n)?,
        rows: super::word("rows", rows)?,
        inv_temp: 1.0 / params.temperature,
        top_k: params.top_k.min(n) as u32,
        top_p: params.top_p,
        seed: params.seed,
        step,
    }))
}

/// The shader's PCG hash.
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The shader's uniform draw in [0, 1).
pub fn uniform01(seed: u32, step: u32, row: u32) -> f64 {
    (pcg(seed ^ pcg(step ^ pcg(row))) >> 8) as f64 / 16777216.0
}

/// The shader's order-preserving key of an f32.
pub fn key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// f64 reference of one row's draw.
pub fn sample_ref(logits: &[f32], params: &SamplingParams, step: u32, row: u32) -> u32 {
    if params.temperature == 0.0 {
        return super::softmax::argmax_ref(logits);
    }
    let n = logits.len();
    let m = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let inv_t = 1.0 / params.temperature as f64;
    let w = |v: f32| ((v as f64 - m) * inv_t).exp();
    let mut keys: Vec<u32> = logits.iter().map(|&v| key(v)).collect();
    let tk = if params.top_k > 0 && params.top_k < n {
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys[params.top_k - 1]
    } else {
        0
    };
    let mass_at = |thr: u32| -> f64 { logits.iter().filter(|&&v| key(v) >= thr).map(|&v| w(v)).sum() };
    let mut tp = tk;
    if params.top_p < 1.0 {
        let target = params.top_p as f64 * mass_at(tk);
        // Largest threshold t ≥ tk with mass(key ≥ t) ≥ target: the smallest kept logit of the
        // nucleus, found directly by scanning distinct keys in descending order.
        let mut distinct: Vec<u32> = logits.iter().map(|&v| key(v)).filter(|&k| k >= tk).collect();
        distinct.sort_unstable_by(|a, b| b.cmp(a));
        distinct.dedup();
        for k in distinct {
            if mass_at(k) >= target {
                tp = k;
                break;
            }
        }
    }
    let total = mass_at(tp);
    let u = uniform01(params.seed, step, row) * total;
    let mut run = 0.0;
    let mut last = 0;
    for (i, &v) in logits.iter().enumerate() {
        if key(v) >= tp {
            run += w(v);
            last = i;
            if run > u {
                return i as u32;
            }
        }
    }
    last as u32
}
