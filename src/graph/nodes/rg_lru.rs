//! Griffin's RG-LRU as a graph node.

use super::super::{NodeOp, TensorDesc};
use super::{activations, expect_state, SeqSpec};
use crate::error::{Error, Result};
use crate::ops::{rg_lru, Recorder};
use crate::tensor::{DType, Tensor};

/// The RG-LRU recurrence. Inputs: x `[T, D]`, gates `[T, 2D]` (input gate, recurrence gate;
/// pre-sigmoid), Λ `[D]`, state `[S, D]`, the sequence table. `init`: continue the state. The
/// chunked prefill's summaries and carried states are planned scratch.
#[derive(Debug)]
pub struct RgLruNode {
    pub seqs: SeqSpec,
    pub init: bool,
}

impl NodeOp for RgLruNode {
    fn name(&self) -> &str {
        "rg_lru"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 5 {
            return Err(Error::Shape("rg_lru takes x, gates, lambda, state, seqs".into()));
        }
        expect_state("rg_lru", ins[3])?;
        activations("rg_lru", &ins[..2], &[DType::F32])?;
        Ok((ins[0].shape.clone(), DType::F32))
    }
    fn scratch(&self, ins: &[&TensorDesc]) -> Vec<(Vec<usize>, DType)> {
        let d = ins[0].shape.get(1).copied().unwrap_or(0);
        rg_lru::scratch_shapes(&self.seqs.cu, d).into_iter().map(|s| (s, DType::F32)).collect()
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[4])?;
        let sc = match scratch {
            [summary, h_in] => Some((*summary, *h_in)),
            _ => None,
        };
        rg_lru::rg_lru(rec, ins[0], ins[1], ins[2], &seqs, ins[3], self.init, out, sc)
    }
    fn reference(&self, ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let f = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
        let resets = self.seqs.resets.as_deref();
        let (y, _) = rg_lru::rg_lru_ref(
            &f(ins[0]),
            &f(ins[1]),
            &f(ins[2]),
            &self.seqs.cu,
            resets,
            &f(ins[3]),
            self.init,
        );
        Some(Ok(y))
    }
}
