//! A pre-norm mixture-of-experts MLP, Qwen3-Next's sparse layer: a softmax router `gate`
//! `[E, d]` keeps the top `num_experts_per_tok` experts (renormalised with `norm_topk_prob`),
//! each a SwiGLU MLP of `moe_intermediate_size`; a shared expert (SwiGLU of
//! `shared_expert_intermediate_size`) is added times sigmoid(`shared_expert_gate`·x). The
//! checkpoint keeps the experts one by one, as Hub checkpoints do (`experts.{e}.gate_proj` …);
//! they are stacked at load into the `[E, 2·I, d]` and `[E, d, I]` tensors the kernels read.

use super::blocks::Sublayer;
use super::common::{Batch, Builder};
use super::schema::{Init, WeightSpec};
use super::state::State;
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{MoeDownNode, MoeRouteNode, MoeUpNode};
use crate::graph::TensorId;
use crate::ops::elementwise::Binary;
use crate::ops::moe::MoeDims;
use crate::tensor::{DType, Tensor};

/// A sparse MLP layer's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeSpec {
    pub dims: MoeDims,
    /// The shared expert's width (None: no shared expert).
    pub shared_inter: Option<usize>,
    pub norm_topk: bool,
    pub eps: f64,
    /// The pre-norm scales by (1 + w).
    pub norm_plus_one: bool,
}

impl MoeSpec {
    pub fn check(&self) -> Result<()> {
        self.dims.check().map_err(|e| Error::Model(format!("mixture of experts: {e}")))?;
        if self.shared_inter == Some(0) {
            return Err(Error::Model("shared_expert_intermediate_size 0".into()));
        }
        Ok(())
    }
}

/// One sparse MLP layer, loaded.
pub struct MoeMlp {
    c: MoeSpec,
    norm: Tensor,
    router: Tensor,
    gate_up: Tensor,
    down: Tensor,
    /// The shared expert: gate, up, down, and its gate `[1, d]`.
    shared: Option<[Tensor; 4]>,
}

impl MoeMlp {
    /// The tensors: the norm `norm_name`, then `{p}.gate`, `{p}.experts.{e}.*` and the shared
    /// expert's.
    pub fn schema(c: &MoeSpec, norm_name: &str, p: &str) -> Vec<WeightSpec> {
        let MoeDims { experts, d, inter, .. } = c.dims;
        let norm_init = if c.norm_plus_one { Init::Uniform(-0.1, 0.1) } else { Init::Uniform(0.9, 1.1) };
        let mut out = vec![
            WeightSpec::new(norm_name, &[d], norm_init),
            WeightSpec::new(format!("{p}.gate.weight"), &[experts, d], Init::FanIn),
        ];
        for e in 0..experts {
            out.push(WeightSpec::new(format!("{p}.experts.{e}.gate_proj.weight"), &[inter, d], Init::FanIn));
            out.push(WeightSpec::new(format!("{p}.experts.{e}.up_proj.weight"), &[inter, d], Init::FanIn));
            out.push(WeightSpec::new(format!("{p}.experts.{e}.down_proj.weight"), &[d, inter], Init::FanIn));
        }
        if let Some(si) = c.shared_inter {
            out.extend([
                WeightSpec::new(format!("{p}.shared_expert.gate_proj.weight"), &[si, d], Init::FanIn),
                WeightSpec::new(format!("{p}.shared_expert.up_proj.weight"), &[si, d], Init::FanIn),
                WeightSpec::new(format!("{p}.shared_expert.down_proj.weight"), &[d, si], Init::FanIn),
                WeightSpec::new(format!("{p}.shared_expert_gate.weight"), &[1, d], Init::FanIn),
            ]);
        }
        out
    }

    /// Loads the layer under `p` with its norm `norm_name`; matrices as `dtype`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        c: &MoeSpec,
        norm_name: &str,
        p: &str,
        dtype: DType,
    ) -> Result<Self> {
        c.check()?;
        let MoeDims { experts, d, inter, .. } = c.dims;
        let mut gate_up = Vec::with_capacity(experts * 2 * inter * d);
        let mut down = Vec::with_capacity(experts * d * inter);
        for e in 0..experts {
            let q = format!("{p}.experts.{e}");
            gate_up.extend(w.f32(&format!("{q}.gate_proj.weight"), Some(&[inter, d]))?.0);
            gate_up.extend(w.f32(&format!("{q}.up_proj.weight"), Some(&[inter, d]))?.0);
            down.extend(w.f32(&format!("{q}.down_proj.weight"), Some(&[d, inter]))?.0);
        }
        let mat = |name: String, shape: &[usize]| w.upload(dev, &name, shape, shape, dtype);
        let shared = match c.shared_inter {
            Some(si) => Some([
                mat(format!("{p}.shared_expert.gate_proj.weight"), &[si, d])?,
                mat(format!("{p}.shared_expert.up_proj.weight"), &[si, d])?,
                mat(format!("{p}.shared_expert.down_proj.weight"), &[d, si])?,
                mat(format!("{p}.shared_expert_gate.weight"), &[1, d])?,
            ]),
            None => None,
        };
        Ok(Self {
            c: *c,
            norm: w.norm(dev, norm_name, d, c.norm_plus_one)?,
            router: w.upload(dev, &format!("{p}.gate.weight"), &[experts, d], &[experts, d], DType::F32)?,
            gate_up: Tensor::from_f32(dev, &[experts, 2 * inter, d], &gate_up, dtype)?,
            down: Tensor::from_f32(dev, &[experts, d, inter], &down, dtype)?,
            shared,
        })
    }
}

impl Sublayer for MoeMlp {
    fn build(
        &self,
        _dev: &Device,
        b: &mut Builder,
        _batch: &Batch,
        _state: &State,
        layer: usize,
        h: TensorId,
    ) -> Result<TensorId> {
        let c = &self.c;
        let p = format!("layers.{layer}.moe");
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, c.eps)?;
        // The router in f32, as transformers computes its softmax.
        let logits = b.linear(&format!("{p}.router"), xn, &self.router, None)?;
        let route = b.g.op(MoeRouteNode { dims: c.dims, norm_topk: c.norm_topk }, &[logits])?;
        let gate_up = b.weight(&format!("{p}.gate_up"), &self.gate_up);
        let hid = b.g.op(MoeUpNode { dims: c.dims }, &[xn, gate_up, route])?;
        let down = b.weight(&format!("{p}.down"), &self.down);
        let mut ins = vec![hid, down, route];
        if let Some([g, u, dn, sg]) = &self.shared {
            let gs = b.linear(&format!("{p}.shared.gate"), xn, g, None)?;
            let us = b.linear(&format!("{p}.shared.up"), xn, u, None)?;
            let a = b.g.binary(Binary::MulSilu, us, gs)?;
            ins.push(b.linear(&format!("{p}.shared.down"), a, dn, None)?);
            ins.push(b.linear(&format!("{p}.shared.gate_logit"), xn, sg, None)?);
        }
        ins.push(h);
        b.g.op(MoeDownNode { dims: c.dims, shared: self.shared.is_some() }, &ins)
    }

    fn parameters(&self) -> usize {
        let shared = self.shared.iter().flatten().map(Tensor::numel).sum::<usize>();
        self.norm.numel() + self.router.numel() + self.gate_up.numel() + self.down.numel() + shared
    }
}
