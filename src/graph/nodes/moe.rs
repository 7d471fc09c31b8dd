//! The mixture-of-experts MLP as graph nodes (`ops::moe`): the routing, the chosen experts'
//! silu(gate)·up, and their weighted down projections with the shared expert and the residual
//! add. Each has the op family's f64 pieces as its reference.

use super::super::{NodeOp, TensorDesc};
use super::activations;
use crate::error::{Error, Result};
use crate::ops::moe::{self, Experts, MoeDims, Shared};
use crate::ops::{elementwise, Recorder};
use crate::tensor::{DType, Tensor};

fn route_of(route: &[f64], k: usize, t: usize) -> (Vec<usize>, Vec<f64>) {
    let row = &route[t * 2 * k..(t + 1) * 2 * k];
    (row[..k].iter().map(|&e| e as usize).collect(), row[k..].to_vec())
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// The router's choice: logits `[T, E]` → `[T, 2·K]` (experts as f32, then their weights).
#[derive(Debug)]
pub struct MoeRouteNode {
    pub dims: MoeDims,
    pub norm_topk: bool,
}

impl NodeOp for MoeRouteNode {
    fn name(&self) -> &str {
        "moe_route"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        activations("moe_route", &ins[..1], &[DType::F32])?;
        Ok((vec![ins[0].shape[0], 2 * self.dims.k], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        moe::route(rec, self.dims, ins[0], self.norm_topk, out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let (e, k) = (self.dims.experts, self.dims.k);
        let mut out = Vec::new();
        for t in 0..shapes[0][0] {
            let l = &ins[0][t * e..(t + 1) * e];
            let m = l.iter().cloned().fold(f64::MIN, f64::max);
            let ex: Vec<f64> = l.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = ex.iter().sum();
            let mut order: Vec<usize> = (0..e).collect();
            order.sort_by(|&a, &b| {
                ex[b].partial_cmp(&ex[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
            });
            let picked: f64 = order[..k].iter().map(|&i| ex[i] / s).sum();
            out.extend(order[..k].iter().map(|&i| i as f64));
            out.extend(order[..k].iter().map(|&i| ex[i] / s / if self.norm_topk { picked } else { 1.0 }));
        }
        Some(Ok(out))
    }
}

/// silu(gate)·up of each token's chosen experts. Inputs: x `[T, d]`, gate_up `[E, 2·I, d]`,
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
        if ins.len() != 3 {
            return Err(Error::Shape("moe_up takes x, gate_up, route".into()));
        }
        activations("moe_up", &[ins[0], ins[2]], &[DType::F32])?;
        Ok((vec![ins[0].shape[0], self.dims.k * self.dims.inter], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let ex = Experts { gate_up: ins[1], down: ins[1], route: ins[2] };
        moe::experts_up(rec, self.dims, ins[0], ex, out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let MoeDims { k, d, inter, .. } = self.dims;
        let (x, gu) = (ins[0], ins[1]);
        let mut out = Vec::new();
        for t in 0..shapes[0][0] {
            let (experts, _) = route_of(ins[2], k, t);
            let xr = &x[t * d..(t + 1) * d];
            let dot = |row: usize, e: usize| -> f64 {
                let w = &gu[(e * 2 * inter + row) * d..][..d];
                w.iter().zip(xr).map(|(a, b)| a * b).sum()
            };
            for e in experts {
                out.extend((0..inter).map(|n| silu(dot(n, e)) * dot(inter + n, e)));
            }
        }
        Some(Ok(out))
    }
}

/// The weighted sum of the chosen experts' down projections, with (`shared`) the shared
/// expert's output times sigmoid of its gate, added to the residual. Inputs: h `[T, K·I]`,
/// down `[E, d, I]`, the route, (shared output `[T, d]`, shared gate `[T, 1]`), the residual
/// `[T, d]` (in place where the planner allows).
#[derive(Debug)]
pub struct MoeDownNode {
    pub dims: MoeDims,
    pub shared: bool,
}

impl NodeOp for MoeDownNode {
    fn name(&self) -> &str {
        "moe_down"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        let want = if self.shared { 6 } else { 4 };
        if ins.len() != want {
            return Err(Error::Shape(format!("moe_down takes {want} inputs, got {}", ins.len())));
        }
        let r = ins[want - 1];
        activations("moe_down", &[ins[0], ins[2], r], &[DType::F32])?;
        Ok((r.shape.clone(), DType::F32))
    }
    fn inplace_input(&self) -> Option<usize> {
        Some(if self.shared { 5 } else { 3 })
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let ex = Experts { gate_up: ins[1], down: ins[1], route: ins[2] };
        let shared = self.shared.then(|| Shared { out: ins[3], gate: ins[4] });
        let r = ins[ins.len() - 1];
        if std::ptr::eq(r.buffer(), out.buffer()) && r.offset() == out.offset() {
            moe::experts_down(rec, self.dims, ins[0], ex, shared, true, out)
        } else {
            moe::experts_down(rec, self.dims, ins[0], ex, shared, false, out)?;
            elementwise::residual_add(rec, out, r, 1.0)
        }
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let MoeDims { k, d, inter, .. } = self.dims;
        let (h, dn) = (ins[0], ins[1]);
        let mut out = ins[ins.len() - 1].to_vec();
        for t in 0..shapes[0][0] {
            let (experts, weights) = route_of(ins[2], k, t);
            for (slot, (e, w)) in experts.into_iter().zip(weights).enumerate() {
                let hr = &h[(t * k + slot) * inter..][..inter];
                for n in 0..d {
                    let row = &dn[(e * d + n) * inter..][..inter];
                    out[t * d + n] += w * row.iter().zip(hr).map(|(a, b)| a * b).sum::<f64>();
                }
            }
            if self.shared {
                let z = ins[4][t];
                for n in 0..d {
                    out[t * d + n] += ins[3][t * d + n] / (1.0 + (-z).exp());
                }
            }
        }
        Some(Ok(out))
    }
}
