//! The mixture-of-experts MLP as graph nodes (`ops::moe`): the routing, the chosen experts'
//! silu(gate)·up, and their weighted down projections with the shared expert and the residual
//! add. Each has the op family's f64 pieces as its reference.

use super::super::{NodeOp, TensorDesc};
use super::activations;
use crate::error::{Error, Result};
use crate::ops::moe::{self, MoeDims, Routed, Scoring, Shared};
use crate::ops::{elementwise, Recorder};
use crate::tensor::{DType, Tensor};

/// The router's choice: logits `[T, E]` (and for sigmoid scoring the correction bias `[E]`) →
/// `[T, 2·K]` (experts as f32, then their weights).
#[derive(Debug)]
pub struct MoeRouteNode {
    pub dims: MoeDims,
    pub scoring: Scoring,
    pub norm_topk: bool,
}

impl NodeOp for MoeRouteNode {
    fn name(&self) -> &str {
        "moe_route"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        let want = if matches!(self.scoring, Scoring::Sigmoid { .. }) { 2 } else { 1 };
        if ins.len() != want {
            return Err(Error::Shape(format!("moe_route takes {want} inputs, got {}", ins.len())));
        }
        activations("moe_route", &ins[..1], &[DType::F32])?;
        Ok((vec![ins[0].shape[0], 2 * self.dims.k], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        moe::route(rec, self.dims, ins[0], (self.scoring, self.norm_topk), ins.get(1).copied(), out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let (e, k) = (self.dims.experts, self.dims.k);
        let bias: Vec<f32> = ins.get(1).map_or(vec![0.0; e], |b| b.iter().map(|&v| v as f32).collect());
        let mut out = Vec::new();
        for t in 0..shapes[0][0] {
            let (chosen, w) =
                moe::route_ref(&ins[0][t * e..(t + 1) * e], k, self.scoring, &bias, self.norm_topk);
            out.extend(chosen.iter().map(|&i| i as f64));
            out.extend(w);
        }
        Some(Ok(out))
    }
}

/// silu(gate)·up of each token's chosen experts. Inputs: x `[T, d]`, gate and up `[E, I, d]`,
/// the route; output `[T, K·I]`.
#[derive(Debug)]
pub struct MoeUpNode {
    pub dims: MoeDims,
}

impl NodeOp for MoeUpNode {
    fn name(&self) -> &str {
        "moe_up"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 4 {
            return Err(Error::Shape("moe_up takes x, gate, up, route".into()));
        }
        activations("moe_up", &[ins[0], ins[3]], &[DType::F32])?;
        Ok((vec![ins[0].shape[0], self.dims.k * self.dims.inter], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        moe::experts_up(rec, self.dims, ins[0], Routed { weight: ins[1], route: ins[3] }, ins[2], out)
    }
    fn reference(&self, ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        Some(Ok(moe::experts_up_ref(self.dims, ins[0], ins[1], ins[2], ins[3])))
    }
}

/// The weighted sum of the chosen experts' down projections, with (`shared`) the shared
/// expert's output (`Some(true)`: times sigmoid of its gate), added to the residual. Inputs: h
/// `[T, K·I]`, down `[E, d, I]`, the route, (the shared output `[T, d]`, (its gate `[T, 1]`)),
/// the residual `[T, d]` (in place where the planner allows).
#[derive(Debug)]
pub struct MoeDownNode {
    pub dims: MoeDims,
    pub shared: Option<bool>,
}

impl MoeDownNode {
    fn inputs(&self) -> usize {
        3 + self.shared.map_or(0, |gated| 1 + gated as usize) + 1
    }
}

impl NodeOp for MoeDownNode {
    fn name(&self) -> &str {
        "moe_down"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        let want = self.inputs();
        if ins.len() != want {
            return Err(Error::Shape(format!("moe_down takes {want} inputs, got {}", ins.len())));
        }
        let r = ins[want - 1];
        activations("moe_down", &[ins[0], ins[2], r], &[DType::F32])?;
        Ok((r.shape.clone(), DType::F32))
    }
    fn inplace_input(&self) -> Option<usize> {
        Some(self.inputs() - 1)
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let ex = Routed { weight: ins[1], route: ins[2] };
        let shared = self.shared.map(|gated| Shared { out: ins[3], gate: gated.then(|| ins[4]) });
        let r = ins[ins.len() - 1];
        if std::ptr::eq(r.buffer(), out.buffer()) && r.offset() == out.offset() {
            moe::experts_down(rec, self.dims, ins[0], ex, shared, true, out)
        } else {
            moe::experts_down(rec, self.dims, ins[0], ex, shared, false, out)?;
            elementwise::residual_add(rec, out, r, 1.0)
        }
    }
    fn reference(&self, ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let shared = self.shared.map(|gated| (ins[3], gated.then(|| ins[4])));
        Some(Ok(moe::experts_down_ref(self.dims, ins[0], ins[1], ins[2], shared, ins[ins.len() - 1])))
    }
}
