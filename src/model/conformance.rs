//! Conformance against reference logits of real checkpoints (`../shared/models` in CI):
//! full-forward logits within a max-abs bound, the greedy continuation, and prefill followed by
//! step-by-step decode equal to one full forward.

use super::{load, Weights};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::softmax::argmax_ref;
use crate::tensor::DType;
use std::path::Path;

/// Outcome of one model at one dtype.
#[derive(Debug)]
pub struct Report {
    pub model: String,
    pub dtype: DType,
    pub max_abs: f64,
    pub bound: f64,
    pub greedy_match: usize,
    pub greedy_needed: usize,
    pub greedy_total: usize,
    pub decode_max_abs: f64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.max_abs <= self.bound
            && self.greedy_match >= self.greedy_needed
            && self.decode_max_abs <= self.bound
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).fold(0.0, f64::max)
}

/// Checks the model in `dir` (which holds `reference_logits.safetensors`) at `dtype`.
pub fn check(dev: &Device, dir: &Path, dtype: DType) -> Result<Report> {
    let model = load(dev, dir, dtype)?;
    let refs = Weights::open_files(&[dir.join("reference_logits.safetensors")])?;
    let prompt: Vec<u32> = refs.i32("prompt")?.into_iter().map(|v| v as u32).collect();
    let greedy: Vec<u32> = refs.i32("greedy")?.into_iter().map(|v| v as u32).collect();
    let vocab = model.vocab();
    let (want, shape) = refs.f32("logits", None)?;
    if shape != [prompt.len(), vocab] {
        return Err(Error::Model(format!(
            "reference logits {shape:?} do not match the prompt and vocab {vocab}"
        )));
    }
    let (bound, greedy_needed) =
        if dtype == DType::F16 { (5e-2, 32) } else { (2e-3, greedy.len() - prompt.len()) };
    // 1. Full forward from a fresh state.
    let mut state = model.new_state(dev, 1)?;
    let got = model.forward(dev, &prompt, &[prompt.len()], &mut state)?;
    let full_err = max_abs(&got, &want);
    // 2. Prefill half the prompt, decode the rest token by token.
    let k = prompt.len() / 2;
    let mut state = model.new_state(dev, 1)?;
    let mut stepped = model.forward(dev, &prompt[..k], &[k], &mut state)?;
    for &id in &prompt[k..] {
        stepped.extend(model.forward(dev, &[id], &[1], &mut state)?);
    }
    let decode_err = max_abs(&stepped, &want);
    // 3. Greedy continuation: prefill the prompt, then decode argmax by argmax.
    let mut state = model.new_state(dev, 1)?;
    let logits = model.forward(dev, &prompt, &[prompt.len()], &mut state)?;
    let mut next = argmax_ref(&logits[(prompt.len() - 1) * vocab..]);
    let mut matched = 0;
    for &want_id in &greedy[prompt.len()..] {
        if next != want_id {
            break;
        }
        matched += 1;
        let l = model.forward(dev, &[next], &[1], &mut state)?;
        next = argmax_ref(&l);
    }
    Ok(Report {
        model: dir.display().to_string(),
        dtype,
        max_abs: full_err,
        bound,
        greedy_match: matched,
        greedy_needed,
        greedy_total: greedy.len() - prompt.len(),
        decode_max_abs: decode_err,
    })
}
