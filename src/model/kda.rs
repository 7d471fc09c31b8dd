//! The Kimi Delta Attention mixer of Kimi-Linear: pre-RMSNorm → q, k, v projections → a causal
//! conv (silu, no bias) over q, k and v → the delta rule with a decay per key channel (q/k
//! L2-normalised in the kernel, scale 1/√dk, β = sigmoid(b_proj)), the log-decay
//! g = −exp(A_log)·softplus(f_b(f_a(x)) + dt_bias) from a low-rank projection → RMSNorm of each
//! head times sigmoid(g_b(g_a(x))) → o_proj onto the residual.
//!
//! The checkpoint's names are fla's: `q_proj`, `k_proj`, `v_proj`, `q_conv1d` / `k_conv1d` /
//! `v_conv1d`, `f_a_proj`, `f_b_proj`, `dt_bias` `[H·dk]`, `A_log` `[1, 1, H, 1]`, `b_proj`,
//! `g_a_proj`, `g_b_proj`, `o_norm` `[dk]`, `o_proj`.

use super::blocks::Sublayer;
use super::common::{Batch, Builder};
use super::gated_deltanet::{DecayWeights, DeltaCore};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::TensorId;
use crate::ops::delta_rule::{DeltaDims, KEY_DIMS};
use crate::ops::elementwise::{Binary, Unary};
use crate::tensor::{DType, Tensor};

/// A KDA layer's configuration: `heads` heads of `dk` for q, k and v alike.
#[derive(Debug, Clone, PartialEq)]
pub struct KdaSpec {
    pub d_model: usize,
    pub heads: usize,
    pub dk: usize,
    pub conv_kernel: usize,
    pub eps: f64,
}

impl KdaSpec {
    pub fn check(&self) -> Result<()> {
        if self.heads == 0 || !KEY_DIMS.contains(&self.dk) {
            return Err(Error::Model(format!(
                "linear_num_heads {} / linear_head_dim {}: KDA takes head dims {KEY_DIMS:?}",
                self.heads, self.dk
            )));
        }
        if !(2..=8).contains(&self.conv_kernel) {
            return Err(Error::Model(format!("linear_conv_kernel_dim {} must be 2 to 8", self.conv_kernel)));
        }
        Ok(())
    }

    fn dims(&self) -> DeltaDims {
        DeltaDims { key_heads: self.heads, value_heads: self.heads, dk: self.dk, dv: self.dk }
    }

    /// Width of q, k or v.
    fn width(&self) -> usize {
        self.heads * self.dk
    }
}

/// One KDA layer, loaded.
pub struct KdaMixer {
    c: KdaSpec,
    norm: Tensor,
    /// q, k, v stacked `[3·H·dk, d]`.
    w_qkv: Tensor,
    conv_w: Tensor,
    w_fa: Tensor,
    w_fb: Tensor,
    /// dt_bias and −exp(A_log) per key channel, the output norm per head.
    decay: DecayWeights,
    w_b: Tensor,
    w_ga: Tensor,
    w_gb: Tensor,
    w_out: Tensor,
}

impl KdaMixer {
    /// The tensors: the norm `norm_name`, then `{p}.*`.
    pub fn schema(c: &KdaSpec, norm_name: &str, p: &str) -> Vec<WeightSpec> {
        let (d, h, dk, w) = (c.d_model, c.heads, c.dk, c.width());
        let mut out = vec![WeightSpec::new(norm_name, &[d], Init::Uniform(0.9, 1.1))];
        for name in ["q_proj", "k_proj", "v_proj"] {
            out.push(WeightSpec::new(format!("{p}.{name}.weight"), &[w, d], Init::FanIn));
        }
        for name in ["q_conv1d", "k_conv1d", "v_conv1d"] {
            out.push(WeightSpec::new(
                format!("{p}.{name}.weight"),
                &[w, 1, c.conv_kernel],
                Init::Uniform(-0.5, 0.5),
            ));
        }
        out.extend([
            WeightSpec::new(format!("{p}.f_a_proj.weight"), &[dk, d], Init::FanIn),
            WeightSpec::new(format!("{p}.f_b_proj.weight"), &[w, dk], Init::FanIn),
            // decay rate exp(A_log) in [1, 16], softplus(dt_bias) ≈ 0.001–0.1.
            WeightSpec::new(format!("{p}.A_log"), &[1, 1, h, 1], Init::Uniform(0.0, 2.77)),
            WeightSpec::new(format!("{p}.dt_bias"), &[w], Init::Uniform(-6.9, -2.3)),
            WeightSpec::new(format!("{p}.b_proj.weight"), &[h, d], Init::FanIn),
            WeightSpec::new(format!("{p}.g_a_proj.weight"), &[dk, d], Init::FanIn),
            WeightSpec::new(format!("{p}.g_b_proj.weight"), &[w, dk], Init::FanIn),
            WeightSpec::new(format!("{p}.o_norm.weight"), &[dk], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.o_proj.weight"), &[d, w], Init::FanIn),
        ]);
        out
    }

    /// Loads the layer under `p` with its norm `norm_name`; matrices as `dtype`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        c: &KdaSpec,
        norm_name: &str,
        p: &str,
        dtype: DType,
    ) -> Result<Self> {
        c.check()?;
        let (d, h, dk, width) = (c.d_model, c.heads, c.dk, c.width());
        let names =
            [format!("{p}.q_proj.weight"), format!("{p}.k_proj.weight"), format!("{p}.v_proj.weight")];
        let parts: Vec<(&str, [usize; 2])> = names.iter().map(|n| (n.as_str(), [width, d])).collect();
        let mut conv = Vec::with_capacity(3 * width * c.conv_kernel);
        for name in ["q_conv1d", "k_conv1d", "v_conv1d"] {
            conv.extend(w.f32(&format!("{p}.{name}.weight"), Some(&[width, 1, c.conv_kernel]))?.0);
        }
        let mat = |name: &str, rows: usize, cols: usize| {
            w.upload(dev, &format!("{p}.{name}.weight"), &[rows, cols], &[rows, cols], dtype)
        };
        Ok(Self {
            c: c.clone(),
            norm: w.norm(dev, norm_name, d, false)?,
            w_qkv: w.upload_rows(dev, &parts, dtype)?,
            conv_w: Tensor::from_slice(dev, &[3 * width, c.conv_kernel], &conv)?,
            w_fa: mat("f_a_proj", dk, d)?,
            w_fb: mat("f_b_proj", width, dk)?,
            decay: DecayWeights::load(
                dev,
                w,
                p,
                &[1, 1, h, 1],
                &format!("{p}.o_norm.weight"),
                c.dims(),
                true,
            )?,
            w_b: mat("b_proj", h, d)?,
            w_ga: mat("g_a_proj", dk, d)?,
            w_gb: mat("g_b_proj", width, dk)?,
            w_out: mat("o_proj", d, width)?,
        })
    }
}

impl Sublayer for KdaMixer {
    /// The conv window `[S, 3·H·dk, K − 1]` and the matrix state `[S, H, dk, dk]`.
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        let c = &self.c;
        vec![
            SlotSpec::new(layer, "conv", SlotKind::ConvWindow, &[s, 3 * c.width(), c.conv_kernel - 1]),
            SlotSpec::new(layer, "delta", SlotKind::MatrixState, &[s, c.heads, c.dk, c.dk]),
        ]
    }

    fn build(
        &self,
        dev: &Device,
        b: &mut Builder,
        batch: &Batch,
        state: &State,
        i: usize,
        h: TensorId,
    ) -> Result<TensorId> {
        let c = &self.c;
        let p = format!("layers.{i}.kda");
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, c.eps)?;
        let qkv = b.linear(&format!("{p}.qkv"), xn, &self.w_qkv, None)?;
        let qkv = batch.conv(b, qkv, &self.conv_w, None, state.slot(i, "conv")?, state.started())?;
        let bl = b.linear(&format!("{p}.b"), xn, &self.w_b, None)?;
        let beta = b.g.unary(Unary::Sigmoid, bl, 1.0)?;
        // g = −exp(A_log) · softplus(f_b(f_a(x)) + dt_bias), per key channel.
        let f = b.linear(&format!("{p}.f_a"), xn, &self.w_fa, None)?;
        let f = b.linear(&format!("{p}.f_b"), f, &self.w_fb, None)?;
        let core = DeltaCore {
            layer: i,
            prefix: &p,
            dims: c.dims(),
            weights: &self.decay,
            out_eps: c.eps,
            f16_ok: self.w_out.dtype() == DType::F16,
            dev,
        };
        let o = core.build(b, batch, state, qkv, f, beta)?;
        let gate = b.linear(&format!("{p}.g_a"), xn, &self.w_ga, None)?;
        let gate = b.linear(&format!("{p}.g_b"), gate, &self.w_gb, None)?;
        let gate = b.g.unary(Unary::Sigmoid, gate, 1.0)?;
        let o = b.g.binary(Binary::Mul, o, gate)?;
        b.linear_add(&format!("{p}.o_proj"), o, &self.w_out, None, h)
    }

    fn parameters(&self) -> usize {
        [
            &self.norm,
            &self.w_qkv,
            &self.conv_w,
            &self.w_fa,
            &self.w_fb,
            &self.w_b,
            &self.w_ga,
            &self.w_gb,
            &self.w_out,
        ]
        .iter()
        .map(|t| t.numel())
        .sum::<usize>()
            + self.decay.parameters(self.c.dims())
    }
}
