//! The gated MLP block part (SwiGLU, as Llama, Mistral and most hybrids use it):
//! h + down(silu(gate(RMSNorm(h))) ⊙ up(RMSNorm(h))).

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

/// A pre-norm SwiGLU MLP with `[inter, d]` gate and up projections and a `[d, inter]` down
/// projection, in transformers' `gate_proj` / `up_proj` / `down_proj` names.
pub struct GatedMlp {
    norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    eps: f64,
}

impl GatedMlp {
    /// The tensors: the norm weight `norm_name` `[d]`, then `{p}.{gate,up,down}_proj.weight`.
    pub fn schema(d: usize, inter: usize, norm_name: &str, p: &str) -> Vec<WeightSpec> {
        vec![
            WeightSpec::new(norm_name, &[d], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.gate_proj.weight"), &[inter, d], Init::FanIn),
            WeightSpec::new(format!("{p}.up_proj.weight"), &[inter, d], Init::FanIn),
            WeightSpec::new(format!("{p}.down_proj.weight"), &[d, inter], Init::FanIn),
        ]
    }

    /// Loads the MLP of width `inter` under `p` with its norm `norm_name`, matrices as `dtype`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        (d, inter): (usize, usize),
        norm_name: &str,
        p: &str,
        eps: f64,
        dtype: DType,
    ) -> Result<Self> {
        let mat = |name: &str, shape: &[usize]| w.upload(dev, name, shape, shape, dtype);
        Ok(Self {
            norm: w.upload(dev, norm_name, &[d], &[d], DType::F32)?,
            gate: mat(&format!("{p}.gate_proj.weight"), &[inter, d])?,
            up: mat(&format!("{p}.up_proj.weight"), &[inter, d])?,
            down: mat(&format!("{p}.down_proj.weight"), &[d, inter])?,
            eps,
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
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, self.eps)?;
        let g = b.linear(&format!("{p}.gate"), xn, &self.gate, None)?;
        let u = b.linear(&format!("{p}.up"), xn, &self.up, None)?;
        let a = b.g.binary(Binary::MulSilu, u, g)?;
        b.linear_add(&format!("{p}.down"), a, &self.down, None, h)
    }

    fn parameters(&self) -> usize {
        [&self.norm, &self.gate, &self.up, &self.down].iter().map(|t| t.numel()).sum()
    }
}
