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
    /// S4D: inputs 1 and 2 are the Vandermonde terms and turn counts.
    Vandermonde,
    /// S4: input 1 is the Cauchy terms for [`s4k::cauchy_length`] of the kernel (input 2
    /// repeats it).
    Cauchy,
}

/// Inputs: u `[T, H]`, the kernel-generation terms (two tensors, [`KernelGen`]), D `[H]`, the
/// recurrence's matrix `[H, R + 1, R]` and input `[H, R + 1]`, the state `[S, H, R]`, the
/// sequence table. A fresh prefill generates the kernel for its longest segment, convolves
/// (the FFT or directly, by `method`), then walks the recurrence for the state alone; a
/// prefill that continues a state (`init`) and a decode step take the recurrence for y too.
#[derive(Debug)]
pub struct S4Node {
    pub seqs: SeqSpec,
    pub init: bool,
    pub gen: KernelGen,
    /// States per conjugate pair (N).
    pub n: usize,
    pub method: ConvMethod,
}

impl S4Node {
    fn segments(&self) -> Vec<usize> {
        s4k::segments(&self.seqs.cu, self.seqs.resets.as_deref())
    }
    fn longest(&self) -> usize {
        self.segments().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }
    /// Whether y comes from the convolution (else from the recurrence).
    pub fn convolves(&self) -> bool {
        !self.init && self.longest() > 1
    }
}

impl NodeOp for S4Node {
    fn name(&self) -> &str {
        "s4"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 8 {
            return Err(Error::Shape("s4 takes u, two kernel terms, D, matrix, input, state, seqs".into()));
        }
        expect_state("s4", ins[6])?;
        activations("s4", &ins[..1], &[DType::F32])?;
        Ok((ins[0].shape.clone(), DType::F32))
    }
    fn scratch(&self, ins: &[&TensorDesc]) -> Vec<(Vec<usize>, DType)> {
        if !self.convolves() {
            return Vec::new();
        }
        let h = ins[0].shape.get(1).copied().unwrap_or(0);
        let l = self.longest();
        let mut out = vec![(vec![h, l], DType::F32)];
        if self.gen == KernelGen::Cauchy {
            out.push((s4k::cauchy_scratch(h, l), DType::F32));
        }
        out.extend(
            s4k::conv_scratch(&self.segments(), h, self.method).into_iter().map(|n| (vec![n], DType::F32)),
        );
        out
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[7])?;
        let (u, dskip, mat, bvec, state) = (ins[0], ins[3], ins[4], ins[5], ins[6]);
        if !self.convolves() {
            return s4k::recurrence(rec, u, mat, bvec, &seqs, state, self.init, Some(out));
        }
        let k = scratch[0];
        let rest = match self.gen {
            KernelGen::Vandermonde => {
                s4k::vandermonde(rec, ins[1], ins[2], self.n, k)?;
                &scratch[1..]
            }
            KernelGen::Cauchy => {
                s4k::cauchy(rec, ins[1], self.n, scratch[1], k)?;
                &scratch[2..]
            }
        };
        s4k::conv(rec, u, &self.segments(), k, dskip, self.method, rest.first().copied(), out)?;
        s4k::recurrence(rec, u, mat, bvec, &seqs, state, false, None)
    }
    /// The recurrent view in f64 from the node's own matrices: the oracle of both paths.
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let h = shapes[0].get(1).copied()?;
        let (y, _) = crate::ops::s4::layer::recurrence_table_ref(
            ins[4],
            ins[5],
            ins[0],
            &self.seqs.cu,
            self.seqs.resets.as_deref(),
            ins[6],
            self.init,
            h,
        );
        Some(Ok(y))
    }
}
