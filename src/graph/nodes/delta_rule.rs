//! The gated delta rule as a graph node.

use super::super::{NodeOp, TensorDesc};
use super::{activations, expect_state, SeqSpec};
use crate::error::{Error, Result};
use crate::ops::delta_rule::{self as dr, DeltaArgs, DeltaDims, DeltaRef};
use crate::ops::sequences::chunk_table;
use crate::ops::Recorder;
use crate::tensor::{DType, Tensor};

/// The gated delta rule. Inputs: qkv `[T, width]` (q, k, v at `cols`), g and β `[T, Hv]`,
/// state `[S, Hv, dk, dv]`, the sequence table. `init`: continue the state. The chunked WY
/// forms' working buffers are planned scratch.
#[derive(Debug)]
pub struct DeltaRuleNode {
    pub seqs: SeqSpec,
    pub dims: DeltaDims,
    pub cols: [usize; 3],
    pub l2norm: bool,
    pub scale: f32,
    pub init: bool,
    /// g holds one log decay per key channel (KDA), `[T, Hv·dk]`.
    pub channel_gates: bool,
    /// The kernel, chosen when the graph is built ([`dr::choose`]), so the scratch it plans is
    /// the scratch the kernel takes.
    pub kernel: dr::DeltaKernel,
}

impl NodeOp for DeltaRuleNode {
    fn name(&self) -> &str {
        "delta_rule"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 5 {
            return Err(Error::Shape("delta_rule takes qkv, g, beta, state, seqs".into()));
        }
        expect_state("delta_rule", ins[3])?;
        activations("delta_rule", &ins[..3], &[DType::F32])?;
        Ok((vec![ins[0].shape[0], self.dims.value_heads * self.dims.dv], DType::F32))
    }
    fn scratch(&self, _ins: &[&TensorDesc]) -> Vec<(Vec<usize>, DType)> {
        let chunks = chunk_table(&self.seqs.cu, self.seqs.resets.as_deref(), dr::CHUNK).1;
        let t = self.seqs.cu.last().copied().unwrap_or(0);
        dr::scratch_shapes(self.kernel, self.dims, t, chunks).into_iter().map(|s| (s, DType::F32)).collect()
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[4])?;
        let a = DeltaArgs {
            qkv: ins[0],
            cols: self.cols,
            g: ins[1],
            beta: ins[2],
            state: ins[3],
            seqs: &seqs,
            dims: self.dims,
            l2norm: self.l2norm,
            scale: self.scale,
            init: self.init,
            channel_gates: self.channel_gates,
        };
        let sc = match scratch {
            [w, u, gn, s0] => Some([*w, *u, *gn, *s0]),
            _ => None,
        };
        dr::delta_rule_in(rec, &a, out, self.kernel, sc)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let f = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
        let (qkv, g, beta, state) = (f(ins[0]), f(ins[1]), f(ins[2]), f(ins[3]));
        let (out, _) = dr::delta_rule_ref(&DeltaRef {
            qkv: &qkv,
            width: shapes[0].get(1).copied().unwrap_or(0),
            cols: self.cols,
            g: &g,
            channel_gates: self.channel_gates,
            beta: &beta,
            cu: &self.seqs.cu,
            resets: self.seqs.resets.as_deref(),
            state: &state,
            init: self.init,
            dims: self.dims,
            l2norm: self.l2norm,
            scale: self.scale as f64,
        });
        Some(Ok(out))
    }
}
