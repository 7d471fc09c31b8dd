//! Pieces the runtimes share: the embedding / final norm / LM head, the recurrent state, and
//! the checks of a forward call's batch.

use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::conv1d::{self, ConvArgs, ConvFlags};
use crate::ops::selective_scan::Sequences;
use crate::ops::{embedding, matmul, norm, Recorder};
use crate::tensor::{DType, Tensor};

/// Embedding table (`dtype`, gathered), final RMSNorm weight, and LM head (`dtype`; the same
/// tensor as the embedding when tied, as transformers does unless the checkpoint has
/// `lm_head.weight`).
pub(crate) struct Head {
    pub embed: Tensor,
    pub lm_head: Tensor,
    pub norm_f: Tensor,
}

impl Head {
    /// Records the final RMSNorm of `h` into `xn` and the LM head: logits of every token, or
    /// only of the token rows in `rows` (gathered first).
    pub fn record(
        &self,
        dev: &Device,
        rec: &mut Recorder,
        h: &Tensor,
        xn: &Tensor,
        rows: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        norm::rms_norm(rec, h, &self.norm_f, eps, xn)?;
        let picked;
        let src = match rows {
            Some(r) => {
                picked = Tensor::empty(dev, &[r.numel(), xn.shape()[1]], DType::F32)?;
                embedding::embedding(rec, r, xn, &picked)?;
                &picked
            }
            None => xn,
        };
        let logits = Tensor::empty(dev, &[src.shape()[0], self.lm_head.shape()[0]], DType::F32)?;
        matmul::linear(rec, src, &self.lm_head, None, &logits)?;
        Ok(logits)
    }

    pub fn load(dev: &Device, w: &Weights, vocab: usize, d: usize, tie: bool, dtype: DType) -> Result<Self> {
        let (embed, _) = w.f32("backbone.embeddings.weight", Some(&[vocab, d]))?;
        // The table is held as `dtype` like the other matrices; tied, the LM head is the same
        // device tensor (one copy of the largest matrix of a small model).
        let embed = Tensor::from_f32(dev, &[vocab, d], &embed, dtype)?;
        let lm_head = if w.has("lm_head.weight") && !tie {
            Tensor::from_f32(dev, &[vocab, d], &w.f32("lm_head.weight", Some(&[vocab, d]))?.0, dtype)?
        } else {
            embed.clone()
        };
        Ok(Self {
            embed,
            lm_head,
            norm_f: Tensor::from_f32(dev, &[d], &w.f32("backbone.norm_f.weight", Some(&[d]))?.0, DType::F32)?,
        })
    }
}

/// Recurrent state of a batch of sequences: per layer the conv inputs `[S, C, W − 1]` and the
/// SSM state. Fixed size, whatever the sequence length.
pub struct RecurrentState {
    pub conv: Vec<Tensor>,
    pub ssm: Vec<Tensor>,
    pub sequences: usize,
    /// False until the first tokens went through (prefill then starts from zero).
    pub started: bool,
}

impl RecurrentState {
    /// Zeros: `layers` conv states of `conv` and SSM states of `ssm` (shapes with S first).
    pub fn zeros(dev: &Device, layers: usize, conv: &[usize], ssm: &[usize]) -> Result<Self> {
        let zeros = |shape: &[usize]| Tensor::from_slice(dev, shape, &vec![0f32; shape.iter().product()]);
        let mut out = Self { conv: Vec::new(), ssm: Vec::new(), sequences: conv[0], started: false };
        for _ in 0..layers {
            out.conv.push(zeros(conv)?);
            out.ssm.push(zeros(ssm)?);
        }
        Ok(out)
    }

    /// Checks a forward call's ids and lengths against this state and the vocabulary; returns
    /// (tokens, whether this is a decode step: one token per sequence of a started state).
    pub(crate) fn check_batch(&self, ids: &[u32], lens: &[usize], vocab: usize) -> Result<(usize, bool)> {
        let t: usize = lens.iter().sum();
        if lens.len() != self.sequences || t != ids.len() || t == 0 {
            return Err(Error::Invalid(format!(
                "{} ids for sequence lengths {lens:?} and a state of {} sequences",
                ids.len(),
                self.sequences
            )));
        }
        embedding::check_ids(ids, vocab)?;
        Ok((t, self.started && lens.iter().all(|&l| l == 1)))
    }
}

/// What one recorded forward pass runs: the ids tensor, each sequence's length, whether it is
/// a decode step, and optionally the token rows whose logits are wanted (all when `None`).
pub(crate) struct Batch<'a> {
    pub ids: &'a Tensor,
    pub lens: &'a [usize],
    pub step: bool,
    pub rows: Option<&'a Tensor>,
}

impl Batch<'_> {
    /// The sequence table of this batch (the decode layout for a step).
    pub fn sequences(&self, dev: &Device) -> Result<Sequences> {
        if self.step {
            Sequences::decode(dev, self.lens.len(), None)
        } else {
            Sequences::new(dev, self.lens, None)
        }
    }

    /// Records the causal conv + silu: the rolling-state step for a decode step, else the
    /// prefill conv continuing from the state when it has started.
    pub fn conv(&self, rec: &mut Recorder, args: &ConvArgs, started: bool, out: &Tensor) -> Result<()> {
        if self.step {
            conv1d::causal_conv1d_step(rec, args, true, out)
        } else {
            conv1d::causal_conv1d(rec, args, ConvFlags { silu: true, init_state: started }, out)
        }
    }
}
