//! An S4 / S4D layer's sequence mixing as one graph node: y = K ∗ u + D·u and the state the
//! tokens leave.

use super::super::{NodeOp, TensorDesc};
use super::{activations, expect_state, SeqSpec};
use crate::error::{Error, Result};
use crate::ops::s4::kernels::{self as s4k, ConvMethod};
use crate::ops::Recorder;
use crate::tensor::{DType, Tensor};

/// How the node generates its convolution kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelGen {
    /// S4D: the Vandermonde terms and turn counts (two inputs per direction), then the state
    /// sum's terms (one input; its turn counts are the forward kernel's).
    Vandermonde,
    /// S4: the Cauchy terms for [`s4k::cauchy_length`] of the kernel (one input per direction),
    /// then M^[`s4k::STATE_CHUNK`] for the chunked state (one input).
    Cauchy,
}

impl KernelGen {
    fn inputs(self) -> usize {
        match self {
            KernelGen::Vandermonde => 2,
            KernelGen::Cauchy => 1,
        }
    }
}

/// Inputs: u `[T, H]`, D `[H]`, the recurrence's matrix `[H, R + 1, R]` and input `[H, R + 1]`,
/// the state `[S, H, R]`, the sequence table, then the kernel-generation terms of each
/// direction ([`KernelGen`]). A fresh prefill generates the kernel for its longest segment,
/// convolves (the FFT or directly, by `method`), then walks the recurrence for the state alone;
/// a prefill that continues a state (`init`) and a decode step take the recurrence for y too.
/// A bidirectional layer only convolves: it has no recurrent view.
#[derive(Debug)]
pub struct S4Node {
    pub seqs: SeqSpec,
    pub init: bool,
    pub gen: KernelGen,
    /// States per conjugate pair (N).
    pub n: usize,
    pub method: ConvMethod,
    pub bidirectional: bool,
}

impl S4Node {
    fn segments(&self) -> Vec<usize> {
        s4k::segments(&self.seqs.cu, self.seqs.resets.as_deref())
    }
    /// The longest segment: the kernel length a convolution needs.
    pub fn longest(&self) -> usize {
        s4k::longest(&self.segments())
    }
    /// Whether y comes from the convolution (else from the recurrence).
    pub fn convolves(&self) -> bool {
        self.bidirectional || (!self.init && self.longest() > 1)
    }
    fn halves(&self) -> usize {
        1 + self.bidirectional as usize
    }
}

impl NodeOp for S4Node {
    fn name(&self) -> &str {
        "s4"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        let want = 6 + self.gen.inputs() * self.halves() + 1;
        if ins.len() != want {
            return Err(Error::Shape(format!(
                "s4 takes u, D, matrix, input, state, seqs and {} kernel terms ({want} inputs), got {}",
                want - 6,
                ins.len()
            )));
        }
        if self.bidirectional && self.init {
            return Err(Error::Invalid(
                "a bidirectional S4 layer has no recurrent view: run each whole sequence in one forward from a fresh state".into(),
            ));
        }
        expect_state("s4", ins[4])?;
        activations("s4", &ins[..1], &[DType::F32])?;
        Ok((ins[0].shape.clone(), DType::F32))
    }
    fn scratch(&self, ins: &[&TensorDesc]) -> Vec<(Vec<usize>, DType)> {
        if !self.convolves() {
            return Vec::new();
        }
        let h = ins[0].shape.get(1).copied().unwrap_or(0);
        let l = self.longest().max(1);
        let mut out = vec![(if self.bidirectional { vec![2, h, l] } else { vec![h, l] }, DType::F32)];
        if self.gen == KernelGen::Cauchy {
            out.push((s4k::cauchy_scratch(h, l), DType::F32));
        }
        out.extend(
            s4k::conv_scratch(&self.segments(), h, self.method).into_iter().map(|n| (vec![n], DType::F32)),
        );
        out
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[5])?;
        let (u, dskip, mat, bvec, state) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
        if !self.convolves() {
            return s4k::recurrence(rec, u, mat, bvec, &seqs, state, self.init, Some(out));
        }
        let k = scratch[0];
        let terms = &ins[6..];
        for half in 0..self.halves() {
            match self.gen {
                KernelGen::Vandermonde => {
                    s4k::vandermonde(rec, terms[2 * half], terms[2 * half + 1], self.n, k, half)?
                }
                KernelGen::Cauchy => s4k::cauchy(rec, terms[half], self.n, scratch[1], k, half)?,
            }
        }
        let rest = &scratch[if self.gen == KernelGen::Cauchy { 2 } else { 1 }..];
        s4k::conv(rec, u, &self.segments(), k, dskip, self.method, rest.first().copied(), out)?;
        match (self.bidirectional, self.gen) {
            (true, _) => Ok(()),
            // S4D's state in parallel over the tokens, as the module's forward_state sums it.
            (false, KernelGen::Vandermonde) => s4k::state_sum(rec, u, terms[2], terms[1], &seqs, state),
            // S4's: chunks walked in parallel and combined, where a sequence passes one chunk.
            (false, KernelGen::Cauchy) if self.longest() > s4k::STATE_CHUNK => {
                s4k::state_chunked(rec, u, mat, bvec, terms[1], &seqs, state)
            }
            (false, KernelGen::Cauchy) => s4k::recurrence(rec, u, mat, bvec, &seqs, state, false, None),
        }
    }
    /// The recurrent view in f64 from the node's own matrices: the oracle of both paths (a
    /// bidirectional layer has none).
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        if self.bidirectional {
            return None;
        }
        let h = shapes[0].get(1).copied()?;
        let (y, _) = crate::ops::s4::layer::recurrence_table_ref(
            ins[2],
            ins[3],
            ins[0],
            &self.seqs.cu,
            self.seqs.resets.as_deref(),
            ins[4],
            self.init,
            h,
        );
        Some(Ok(y))
    }
}
