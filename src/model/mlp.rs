//! The gated MLP block part: h + down(act(gate(RMSNorm(h))) ⊙ up(RMSNorm(h))), with act silu
//! (SwiGLU: Llama, Mistral and most hybrids) or tanh-GELU (GeGLU: Gemma), optional biases.

use super::blocks::Sublayer;
use super::common::{Batch, Builder};
use super::schema::{Init, WeightSpec};
use super::state::State;
use super::weights::Weights;
use crate::device::Device;
use crate::error::Result;
use crate::graph::TensorId;
use crate::ops::elementwise::Binary;
use crate::tensor::{DType, Tensor};

/// The MLP's activation on the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpAct {
    Silu,
    GeluTanh,
}

/// An MLP's sizes and switches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpSpec {
    pub d: usize,
    pub inter: usize,
    pub act: MlpAct,
    /// The three projections have biases.
    pub bias: bool,
    /// The pre-norm scales by (1 + w) (Gemma).
    pub norm_plus_one: bool,
    pub eps: f64,
    /// The norm comes after the MLP, on its output (h + RMSNorm(MLP(h)), OLMo-2's order).
    pub post_norm: bool,
}

impl MlpSpec {
    /// SwiGLU without biases (Llama, Mistral).
    pub fn swiglu(d: usize, inter: usize, eps: f64) -> Self {
        Self { d, inter, act: MlpAct::Silu, bias: false, norm_plus_one: false, eps, post_norm: false }
    }
}

/// A pre-norm gated MLP with `[inter, d]` gate and up projections and a `[d, inter]` down
/// projection, in transformers' `gate_proj` / `up_proj` / `down_proj` names.
pub struct GatedMlp {
    spec: MlpSpec,
    norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    biases: Option<[Tensor; 3]>,
}

impl GatedMlp {
    /// The tensors: the norm weight `norm_name` `[d]`, then `{p}.{gate,up,down}_proj.*`.
    pub fn schema(spec: &MlpSpec, norm_name: &str, p: &str) -> Vec<WeightSpec> {
        let (d, inter) = (spec.d, spec.inter);
        let mut out = vec![
            WeightSpec::new(norm_name, &[d], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.gate_proj.weight"), &[inter, d], Init::FanIn),
            WeightSpec::new(format!("{p}.up_proj.weight"), &[inter, d], Init::FanIn),
            WeightSpec::new(format!("{p}.down_proj.weight"), &[d, inter], Init::FanIn),
        ];
        if spec.bias {
            for (name, n) in [("gate_proj", inter), ("up_proj", inter), ("down_proj", d)] {
                out.push(WeightSpec::new(format!("{p}.{name}.bias"), &[n], Init::Uniform(-0.1, 0.1)));
            }
        }
        out
    }

    /// Loads the MLP under `p` with its norm `norm_name`, matrices as `dtype`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        spec: &MlpSpec,
        norm_name: &str,
        p: &str,
        dtype: DType,
    ) -> Result<Self> {
        let (d, inter) = (spec.d, spec.inter);
        let mat = |name: &str, shape: &[usize]| w.upload(dev, name, shape, shape, dtype);
        let vec = |name: String, n: usize| w.upload(dev, &name, &[n], &[n], DType::F32);
        let biases = if spec.bias {
            Some([
                vec(format!("{p}.gate_proj.bias"), inter)?,
                vec(format!("{p}.up_proj.bias"), inter)?,
                vec(format!("{p}.down_proj.bias"), d)?,
            ])
        } else {
            None
        };
        Ok(Self {
            spec: *spec,
            norm: w.norm(dev, norm_name, d, spec.norm_plus_one)?,
            gate: mat(&format!("{p}.gate_proj.weight"), &[inter, d])?,
            up: mat(&format!("{p}.up_proj.weight"), &[inter, d])?,
            down: mat(&format!("{p}.down_proj.weight"), &[d, inter])?,
            biases,
        })
    }
}

impl Sublayer for GatedMlp {
    fn build(
        &self,
        _dev: &Device,
        b: &mut Builder,
        _batch: &Batch,
        _state: &State,
        layer: usize,
        h: TensorId,
    ) -> Result<TensorId> {
        let p = format!("layers.{layer}.mlp");
        let bias = |i: usize| self.biases.as_ref().map(|b| &b[i]);
        let xn = if self.spec.post_norm {
            h
        } else {
            b.rms_norm(&format!("{p}.norm"), h, &self.norm, self.spec.eps)?
        };
        let g = b.linear(&format!("{p}.gate"), xn, &self.gate, bias(0))?;
        let u = b.linear(&format!("{p}.up"), xn, &self.up, bias(1))?;
        let op = match self.spec.act {
            MlpAct::Silu => Binary::MulSilu,
            MlpAct::GeluTanh => Binary::MulGeluTanh,
        };
        let a = b.g.binary(op, u, g)?;
        if self.spec.post_norm {
            let proj = (&self.down, bias(2));
            return b.linear_norm_add(&format!("{p}.down"), a, proj, &self.norm, self.spec.eps, h);
        }
        b.linear_add(&format!("{p}.down"), a, &self.down, bias(2), h)
    }

    fn parameters(&self) -> usize {
        let biases = self.biases.iter().flatten();
        [&self.norm, &self.gate, &self.up, &self.down].into_iter().chain(biases).map(|t| t.numel()).sum()
    }
}
