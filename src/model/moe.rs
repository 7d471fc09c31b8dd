//! A pre-norm mixture-of-experts MLP: a router `gate` `[E, d]` keeps the top
//! `num_experts_per_tok` experts, each a SwiGLU MLP of `moe_intermediate_size`, plus a shared
//! expert. Two forms ([`MoeLayout`]):
//! - Qwen3-Next: softmax routing (renormalised with `norm_topk_prob`), experts
//!   `experts.{e}.{gate,up,down}_proj`, the shared expert (`shared_expert_intermediate_size`)
//!   times sigmoid(`shared_expert_gate`·x);
//! - Kimi-Linear (DeepSeek-V3's routing with one expert group): sigmoid scores chosen by score
//!   plus `gate.e_score_correction_bias`, renormalised and times `routed_scaling_factor`,
//!   experts `experts.{e}.w1` (gate), `w3` (up), `w2` (down), the shared experts
//!   (`shared_experts.*`, `num_shared_experts` experts wide) added ungated.
//!
//! The checkpoint keeps the experts one by one, as Hub checkpoints do; they are stacked at load
//! into the `[E, 2·I, d]` and `[E, d, I]` tensors the kernels read.

use super::blocks::Sublayer;
use super::common::{Batch, Builder};
use super::mlp::{GatedMlp, MlpSpec};
use super::schema::{Init, WeightSpec};
use super::state::State;
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{MoeDownNode, MoeRouteNode, MoeUpNode};
use crate::graph::TensorId;
use crate::ops::elementwise::Binary;
use crate::ops::moe::{MoeDims, Scoring};
use crate::tensor::{DType, Tensor};

/// Which checkpoint (and routing) form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MoeLayout {
    Qwen,
    /// With the routed scaling factor.
    Kimi {
        scale: f32,
    },
}

impl MoeLayout {
    /// (gate, up, down) of expert e.
    fn expert_names(self) -> [&'static str; 3] {
        match self {
            MoeLayout::Qwen => ["gate_proj", "up_proj", "down_proj"],
            MoeLayout::Kimi { .. } => ["w1", "w3", "w2"],
        }
    }

    fn shared_prefix(self) -> &'static str {
        match self {
            MoeLayout::Qwen => "shared_expert",
            MoeLayout::Kimi { .. } => "shared_experts",
        }
    }

    fn scoring(self) -> Scoring {
        match self {
            MoeLayout::Qwen => Scoring::Softmax,
            MoeLayout::Kimi { scale } => Scoring::Sigmoid { scale },
        }
    }

    /// The shared expert is scaled by sigmoid of its own gate.
    fn gated_shared(self) -> bool {
        self == MoeLayout::Qwen
    }
}

/// A sparse MLP layer's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeSpec {
    pub layout: MoeLayout,
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

/// Layer `i`'s sparse MLP: `moe` where `sparse[i]`, else none (the dense MLP).
pub fn sparse_at<'a>(moe: &'a Option<MoeSpec>, sparse: &[bool], i: usize) -> Option<&'a MoeSpec> {
    moe.as_ref().filter(|_| sparse[i])
}

/// Loads a layer's MLP under `p` with its norm `norm_name`: the mixture of experts `moe`, or
/// the dense MLP `dense`.
pub fn load_mlp(
    dev: &Device,
    w: &Weights,
    (moe, dense): (Option<&MoeSpec>, &MlpSpec),
    norm_name: &str,
    p: &str,
    dtype: DType,
) -> Result<Box<dyn Sublayer>> {
    Ok(match moe {
        Some(moe) => Box::new(MoeMlp::load(dev, w, moe, norm_name, p, dtype)?),
        None => Box::new(GatedMlp::load(dev, w, dense, norm_name, p, dtype)?),
    })
}

/// One sparse MLP layer, loaded.
pub struct MoeMlp {
    c: MoeSpec,
    norm: Tensor,
    router: Tensor,
    /// The sigmoid routing's correction bias `[E]`.
    bias: Option<Tensor>,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    /// The shared expert: gate, up, down, and (gated) its gate `[1, d]`.
    shared: Option<([Tensor; 3], Option<Tensor>)>,
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
        if !c.layout.gated_shared() {
            let name = format!("{p}.gate.e_score_correction_bias");
            out.push(WeightSpec::new(name, &[experts], Init::Uniform(-0.05, 0.05)));
        }
        let [g, u, dn] = c.layout.expert_names();
        for e in 0..experts {
            out.push(WeightSpec::new(format!("{p}.experts.{e}.{g}.weight"), &[inter, d], Init::FanIn));
            out.push(WeightSpec::new(format!("{p}.experts.{e}.{u}.weight"), &[inter, d], Init::FanIn));
            out.push(WeightSpec::new(format!("{p}.experts.{e}.{dn}.weight"), &[d, inter], Init::FanIn));
        }
        if let Some(si) = c.shared_inter {
            let s = c.layout.shared_prefix();
            out.extend([
                WeightSpec::new(format!("{p}.{s}.gate_proj.weight"), &[si, d], Init::FanIn),
                WeightSpec::new(format!("{p}.{s}.up_proj.weight"), &[si, d], Init::FanIn),
                WeightSpec::new(format!("{p}.{s}.down_proj.weight"), &[d, si], Init::FanIn),
            ]);
            if c.layout.gated_shared() {
                out.push(WeightSpec::new(format!("{p}.shared_expert_gate.weight"), &[1, d], Init::FanIn));
            }
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
        let mut gate = Vec::with_capacity(experts * inter * d);
        let mut up = Vec::with_capacity(experts * inter * d);
        let mut down = Vec::with_capacity(experts * d * inter);
        let [g, u, dn] = c.layout.expert_names();
        for e in 0..experts {
            let q = format!("{p}.experts.{e}");
            gate.extend(w.f32(&format!("{q}.{g}.weight"), Some(&[inter, d]))?.0);
            up.extend(w.f32(&format!("{q}.{u}.weight"), Some(&[inter, d]))?.0);
            down.extend(w.f32(&format!("{q}.{dn}.weight"), Some(&[d, inter]))?.0);
        }
        let mat = |name: String, shape: &[usize]| w.upload(dev, &name, shape, shape, dtype);
        let shared = match c.shared_inter {
            Some(si) => {
                let s = c.layout.shared_prefix();
                let mats = [
                    mat(format!("{p}.{s}.gate_proj.weight"), &[si, d])?,
                    mat(format!("{p}.{s}.up_proj.weight"), &[si, d])?,
                    mat(format!("{p}.{s}.down_proj.weight"), &[d, si])?,
                ];
                let gate = if c.layout.gated_shared() {
                    Some(mat(format!("{p}.shared_expert_gate.weight"), &[1, d])?)
                } else {
                    None
                };
                Some((mats, gate))
            }
            None => None,
        };
        let bias = if c.layout.gated_shared() {
            None
        } else {
            let name = format!("{p}.gate.e_score_correction_bias");
            Some(w.upload(dev, &name, &[experts], &[experts], DType::F32)?)
        };
        Ok(Self {
            c: *c,
            norm: w.norm(dev, norm_name, d, c.norm_plus_one)?,
            router: w.upload(dev, &format!("{p}.gate.weight"), &[experts, d], &[experts, d], DType::F32)?,
            bias,
            gate: Tensor::from_f32(dev, &[experts, inter, d], &gate, dtype)?,
            up: Tensor::from_f32(dev, &[experts, inter, d], &up, dtype)?,
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
        let mut rins = vec![logits];
        if let Some(bias) = &self.bias {
            rins.push(b.weight(&format!("{p}.router_bias"), bias));
        }
        let node = MoeRouteNode { dims: c.dims, scoring: c.layout.scoring(), norm_topk: c.norm_topk };
        let route = b.g.op(node, &rins)?;
        let gate = b.weight(&format!("{p}.gate"), &self.gate);
        let up = b.weight(&format!("{p}.up"), &self.up);
        let hid = b.g.op(MoeUpNode { dims: c.dims }, &[xn, gate, up, route])?;
        let down = b.weight(&format!("{p}.down"), &self.down);
        let mut ins = vec![hid, down, route];
        if let Some(([g, u, dn], sg)) = &self.shared {
            let gs = b.linear(&format!("{p}.shared.gate"), xn, g, None)?;
            let us = b.linear(&format!("{p}.shared.up"), xn, u, None)?;
            let a = b.g.binary(Binary::MulSilu, us, gs)?;
            ins.push(b.linear(&format!("{p}.shared.down"), a, dn, None)?);
            if let Some(sg) = sg {
                ins.push(b.linear(&format!("{p}.shared.gate_logit"), xn, sg, None)?);
            }
        }
        ins.push(h);
        let shared = self.shared.as_ref().map(|(_, g)| g.is_some());
        b.g.op(MoeDownNode { dims: c.dims, shared }, &ins)
    }

    fn parameters(&self) -> usize {
        let shared =
            self.shared.iter().flat_map(|(m, g)| m.iter().chain(g)).map(Tensor::numel).sum::<usize>();
        let bias = self.bias.as_ref().map_or(0, Tensor::numel);
        self.norm.numel()
            + self.router.numel()
            + bias
            + self.gate.numel()
            + self.up.numel()
            + self.down.numel()
            + shared
    }
    fn parameters_read(&self, batch: usize) -> usize {
        let MoeDims { experts, k, .. } = self.c.dims;
        // The distinct experts `batch` tokens route to, expected for uniform routing:
        // E·(1 − (1 − K/E)^B).
        let miss = (1.0 - k as f64 / experts as f64).powi(batch.min(i32::MAX as usize) as i32);
        let touched = ((experts as f64 * (1.0 - miss)).ceil() as usize).min(experts);
        let per_expert = (self.gate.numel() + self.up.numel() + self.down.numel()) / experts;
        self.parameters() - (experts - touched) * per_expert
    }
}
