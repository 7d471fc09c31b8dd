//! Weight schemas: every tensor of an architecture's checkpoint with its hierarchical name,
//! shape and the range its values take in trained checkpoints. One schema serves the loader's
//! up-front check (every tensor present with its shape, before anything is uploaded), the
//! random-weight presets of `linseq bench model` and the tests' checkpoints.

use super::weights::Weights;
use crate::error::{Error, Result};
use crate::ops::cases::Rng;

/// How a random checkpoint fills a tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Uniform(f32, f32),
    /// ±1/√fan_in, fan_in being the last dimension (a matrix's input size).
    FanIn,
    /// ln(1 … N) along the last dimension of length N (S4D-real A = −exp(A_log)).
    S4dLog(usize),
}

/// One tensor of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl WeightSpec {
    pub fn new(name: impl Into<String>, shape: &[usize], init: Init) -> Self {
        Self { name: name.into(), shape: shape.to_vec(), init }
    }
}

/// Checks that the checkpoint holds every tensor of `schema` with its shape (the first
/// mismatches are named), before the loader reads anything.
pub fn check(w: &Weights, schema: &[WeightSpec]) -> Result<()> {
    let mut problems = Vec::new();
    for s in schema {
        match w.info(&s.name) {
            None => problems.push(format!("{} {:?} is missing", s.name, s.shape)),
            Some((_, shape)) if shape != s.shape => {
                problems.push(format!("{} is {shape:?}, expected {:?}", s.name, s.shape))
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(4);
    problems.truncate(4);
    Err(Error::Model(format!(
        "the checkpoint does not match its architecture: {}{}",
        problems.join("; "),
        if more > 0 { format!(" (and {more} more)") } else { String::new() }
    )))
}

/// Random values for every tensor of `schema` (f32, in the order given).
pub fn random_tensors(schema: &[WeightSpec], seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Rng::new(seed);
    schema
        .iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            let v = match s.init {
                Init::Uniform(lo, hi) => rng.vec(n, lo, hi),
                Init::FanIn => {
                    let a = 1.0 / (*s.shape.last().unwrap_or(&1) as f32).max(1.0).sqrt();
                    rng.vec(n, -a, a)
                }
                Init::S4dLog(len) => (0..n).map(|k| (((k % len.max(1)) + 1) as f32).ln()).collect(),
            };
            (s.name.clone(), s.shape.clone(), v)
        })
        .collect()
}
