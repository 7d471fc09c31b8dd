//! The Gated DeltaNet mixer of Qwen3.5, Qwen3-Next and OLMo-Hybrid: pre-RMSNorm → the q/k/v,
//! z, β and decay projections → a causal conv (silu) over q, k and v together → the gated
//! delta rule (q/k L2-normalised in the kernel, scale 1/√dk, β = sigmoid(b), or 2·sigmoid(b)
//! for negative eigenvalues, log-decay g = −exp(A_log)·softplus(a + dt_bias)) → RMSNorm of each
//! value head, times silu(z) → out_proj onto the residual.
//!
//! The checkpoints lay the projections out differently; each is read into the one layout the
//! graph uses (`[q | k | v]` rows for the conv, then z, b, a):
//! - Qwen3.5: `in_proj_qkv`, `in_proj_z`, `in_proj_b`, `in_proj_a`;
//! - Qwen3-Next: `in_proj_qkvz` and `in_proj_ba`, interleaved per key head: for each key head,
//!   its q, k, then the v and z of the value heads it serves, and its b then a;
//! - OLMo-Hybrid: `q_proj`, `k_proj`, `v_proj`, `g_proj` (the z gate), `b_proj`, `a_proj`, with
//!   `o_norm` and `o_proj` for the output.

use super::blocks::Sublayer;
use super::common::{Batch, Builder};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{DeltaRuleNode, SeqSpec};
use crate::graph::TensorId;
use crate::ops::delta_rule::{self as dr, DeltaDims};
use crate::ops::elementwise::{Binary, Unary};
use crate::ops::norm::NormKind;
use crate::tensor::{DType, Tensor};
use std::mem::take;

/// How a checkpoint stores the mixer's input projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GdnLayout {
    /// `in_proj_qkv`, `in_proj_z`, `in_proj_b`, `in_proj_a` (Qwen3.5).
    Split,
    /// `in_proj_qkvz`, `in_proj_ba`, interleaved per key head (Qwen3-Next).
    Interleaved,
    /// One matrix per part, `q_proj` … `a_proj`, `g_proj` for z (OLMo-Hybrid).
    Separate,
}

impl GdnLayout {
    /// The output norm's and projection's names.
    fn out_names(self) -> (&'static str, &'static str) {
        match self {
            GdnLayout::Separate => ("o_norm", "o_proj"),
            _ => ("norm", "out_proj"),
        }
    }
}

/// A Gated DeltaNet layer's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GdnSpec {
    pub d_model: usize,
    pub dims: DeltaDims,
    pub conv_kernel: usize,
    pub eps: f64,
    /// β = 2·sigmoid(b): eigenvalues of the transition in [−1, 1] (OLMo-Hybrid).
    pub negative_eigen: bool,
    pub layout: GdnLayout,
    /// The pre-norm scales by (1 + w).
    pub norm_plus_one: bool,
    /// The output norm's epsilon (OLMo-Hybrid's is fla's 1e-5, not rms_norm_eps).
    pub out_eps: f64,
}

impl GdnSpec {
    /// Checks what a config can get wrong: head counts that do not divide, dims without kernels.
    pub fn check(&self) -> Result<()> {
        let d = self.dims;
        if d.key_heads == 0 || d.value_heads == 0 || !d.value_heads.is_multiple_of(d.key_heads) {
            return Err(Error::Model(format!(
                "linear_num_value_heads {} must be a positive multiple of linear_num_key_heads {}",
                d.value_heads, d.key_heads
            )));
        }
        if !crate::ops::delta_rule::KEY_DIMS.contains(&d.dk) || d.dv == 0 || !d.dv.is_multiple_of(4) {
            return Err(Error::Model(format!(
                "linear_key_head_dim {} / linear_value_head_dim {}: the delta-rule kernels take key dims {:?} and value dims that are multiples of 4",
                d.dk,
                d.dv,
                crate::ops::delta_rule::KEY_DIMS
            )));
        }
        if !(2..=8).contains(&self.conv_kernel) {
            return Err(Error::Model(format!("linear_conv_kernel_dim {} must be 2 to 8", self.conv_kernel)));
        }
        Ok(())
    }

    fn key_dim(&self) -> usize {
        self.dims.key_heads * self.dims.dk
    }

    fn value_dim(&self) -> usize {
        self.dims.value_heads * self.dims.dv
    }

    /// Channels of the conv: q, k and v.
    fn conv_dim(&self) -> usize {
        self.dims.row()
    }

    /// The input projections as the checkpoint stores them: (name, rows), each `[rows, d]`.
    fn input_projections(&self) -> Vec<(&'static str, usize)> {
        let (hv, kd, vd) = (self.dims.value_heads, self.key_dim(), self.value_dim());
        match self.layout {
            GdnLayout::Split => {
                vec![("in_proj_qkv", 2 * kd + vd), ("in_proj_z", vd), ("in_proj_b", hv), ("in_proj_a", hv)]
            }
            GdnLayout::Interleaved => vec![("in_proj_qkvz", 2 * kd + 2 * vd), ("in_proj_ba", 2 * hv)],
            GdnLayout::Separate => vec![
                ("q_proj", kd),
                ("k_proj", kd),
                ("v_proj", vd),
                ("g_proj", vd),
                ("b_proj", hv),
                ("a_proj", hv),
            ],
        }
    }

    /// The conv weight's tensors: one `conv1d`, or (OLMo-Hybrid as saved) `q_conv1d`,
    /// `k_conv1d`, `v_conv1d`, the channels cut in three as torch.chunk cuts them (ceil(C / 3)
    /// each, the rest last), which transformers concatenates at load.
    fn conv_pieces(&self) -> Vec<(&'static str, usize)> {
        let c = self.conv_dim();
        match self.layout {
            GdnLayout::Separate => {
                let piece = c.div_ceil(3);
                vec![("q_conv1d", piece), ("k_conv1d", piece), ("v_conv1d", c - 2 * piece)]
            }
            _ => vec![("conv1d", c)],
        }
    }
}

/// The linear-attention fields of a Gated DeltaNet hybrid's config.json (transformers' names,
/// shared by Qwen3-Next, Qwen3.5 and OLMo-Hybrid; read from config.json beside their own fields).
#[derive(Debug, serde::Deserialize)]
pub struct HfGdnFields {
    linear_conv_kernel_dim: super::config::Size,
    linear_key_head_dim: super::config::Size,
    linear_value_head_dim: super::config::Size,
    linear_num_key_heads: super::config::Size,
    linear_num_value_heads: super::config::Size,
}

impl HfGdnFields {
    /// The layer spec (checked) for a model of width `d` and the architecture's choices.
    pub fn spec(
        &self,
        d: usize,
        eps: f64,
        layout: GdnLayout,
        negative_eigen: bool,
        plus_one: bool,
        out_eps: f64,
    ) -> Result<GdnSpec> {
        let spec = GdnSpec {
            d_model: d,
            dims: DeltaDims {
                key_heads: self.linear_num_key_heads.0,
                value_heads: self.linear_num_value_heads.0,
                dk: self.linear_key_head_dim.0,
                dv: self.linear_value_head_dim.0,
            },
            conv_kernel: self.linear_conv_kernel_dim.0,
            eps,
            negative_eigen,
            layout,
            norm_plus_one: plus_one,
            out_eps,
        };
        spec.check()?;
        Ok(spec)
    }
}

/// One Gated DeltaNet layer, loaded.
pub struct GdnMixer {
    c: GdnSpec,
    norm: Tensor,
    w_qkv: Tensor,
    w_z: Tensor,
    w_b: Tensor,
    w_a: Tensor,
    conv_w: Tensor,
    decay: DecayWeights,
    w_out: Tensor,
}

impl GdnMixer {
    /// The tensors: the norm `norm_name`, then `{p}.*`.
    pub fn schema(c: &GdnSpec, norm_name: &str, p: &str) -> Vec<WeightSpec> {
        let (d, hv, vd) = (c.d_model, c.dims.value_heads, c.value_dim());
        let norm_init = if c.norm_plus_one { Init::Uniform(-0.1, 0.1) } else { Init::Uniform(0.9, 1.1) };
        let mut out = vec![WeightSpec::new(norm_name, &[d], norm_init)];
        for (name, rows) in c.input_projections() {
            out.push(WeightSpec::new(format!("{p}.{name}.weight"), &[rows, d], Init::FanIn));
        }
        let (on, op) = c.layout.out_names();
        for (name, rows) in c.conv_pieces() {
            let shape = [rows, 1, c.conv_kernel];
            out.push(WeightSpec::new(format!("{p}.{name}.weight"), &shape, Init::Uniform(-0.5, 0.5)));
        }
        out.extend([
            // decay rate exp(A_log) in [1, 16], softplus(dt_bias) ≈ 0.001–0.1.
            WeightSpec::new(format!("{p}.A_log"), &[hv], Init::Uniform(0.0, 2.77)),
            WeightSpec::new(format!("{p}.dt_bias"), &[hv], Init::Uniform(-6.9, -2.3)),
            WeightSpec::new(format!("{p}.{on}.weight"), &[c.dims.dv], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.{op}.weight"), &[d, vd], Init::FanIn),
        ]);
        out
    }

    /// Loads the layer under `p` with its norm `norm_name`; matrices as `dtype`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        c: &GdnSpec,
        norm_name: &str,
        p: &str,
        dtype: DType,
    ) -> Result<Self> {
        c.check()?;
        let hv = c.dims.value_heads;
        let (d, kd, vd) = (c.d_model, c.key_dim(), c.value_dim());
        let mat = |rows: &[f32], n: usize| Tensor::from_f32(dev, &[n, d], rows, dtype);
        let mut parts = Vec::new();
        for (name, rows) in c.input_projections() {
            parts.push(w.f32(&format!("{p}.{name}.weight"), Some(&[rows, d]))?.0);
        }
        let (qkv, z, bw, aw) = match (c.layout, parts.as_mut_slice()) {
            (GdnLayout::Split, [qkv, z, b, a]) => (take(qkv), take(z), take(b), take(a)),
            (GdnLayout::Interleaved, [qkvz, ba]) => deinterleave(qkvz, ba, c.dims, d),
            (GdnLayout::Separate, [q, k, v, z, b, a]) => {
                ([take(q), take(k), take(v)].concat(), take(z), take(b), take(a))
            }
            _ => unreachable!("input_projections lists each layout's matrices"),
        };
        let (on, op) = c.layout.out_names();
        let mut conv = Vec::with_capacity(c.conv_dim() * c.conv_kernel);
        for (name, rows) in c.conv_pieces() {
            conv.extend(w.f32(&format!("{p}.{name}.weight"), Some(&[rows, 1, c.conv_kernel]))?.0);
        }
        Ok(Self {
            c: c.clone(),
            norm: w.norm(dev, norm_name, d, c.norm_plus_one)?,
            w_qkv: mat(&qkv, 2 * kd + vd)?,
            w_z: mat(&z, vd)?,
            w_b: mat(&bw, hv)?,
            w_a: mat(&aw, hv)?,
            conv_w: Tensor::from_slice(dev, &[c.conv_dim(), c.conv_kernel], &conv)?,
            decay: DecayWeights::load(dev, w, p, &[hv], &format!("{p}.{on}.weight"), c.dims, false)?,
            w_out: w.upload(dev, &format!("{p}.{op}.weight"), &[d, vd], &[d, vd], dtype)?,
        })
    }
}

/// The weights of the decay and the output norm that [`DeltaCore`] reads, loaded alike for
/// Gated DeltaNet (a gate per value head) and KDA (`channel_gates`: a gate per key channel).
pub struct DecayWeights {
    /// One per gate.
    dt_bias: Tensor,
    /// −exp(A_log), one per gate (A_log has one per value head).
    neg_a: Tensor,
    /// The output norm's weight, repeated for every value head `[Hv·dv]`.
    out_norm: Tensor,
    channel_gates: bool,
}

impl DecayWeights {
    /// `{p}.A_log` (stored as `a_log_shape`, one value per value head), `{p}.dt_bias` (one per
    /// gate) and the per-head output norm `norm_name` `[dv]`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        p: &str,
        a_log_shape: &[usize],
        norm_name: &str,
        dims: DeltaDims,
        channel_gates: bool,
    ) -> Result<Self> {
        let (hv, dv) = (dims.value_heads, dims.dv);
        let per_head = if channel_gates { dims.dk } else { 1 };
        let a_log = w.f32(&format!("{p}.A_log"), Some(a_log_shape))?.0;
        if a_log.iter().any(|v| !v.is_finite()) {
            return Err(Error::Model(format!("{p}.A_log holds non-finite values")));
        }
        let neg_a: Vec<f32> = a_log.iter().flat_map(|v| std::iter::repeat_n(-v.exp(), per_head)).collect();
        let norm1 = w.norm_host(norm_name, dv, false)?;
        let out_norm: Vec<f32> = (0..hv).flat_map(|_| norm1.iter().copied()).collect();
        let gates = hv * per_head;
        Ok(Self {
            dt_bias: Tensor::from_slice(dev, &[gates], &w.f32(&format!("{p}.dt_bias"), Some(&[gates]))?.0)?,
            neg_a: Tensor::from_slice(dev, &[gates], &neg_a)?,
            out_norm: Tensor::from_slice(dev, &[hv * dv], &out_norm)?,
            channel_gates,
        })
    }

    /// Parameters as the checkpoint counts them: dt_bias, A_log and the output norm.
    pub fn parameters(&self, dims: DeltaDims) -> usize {
        self.dt_bias.numel() + dims.value_heads + dims.dv
    }
}

/// What Gated DeltaNet and Kimi Delta Attention share after their projections: the log-decay
/// g = −exp(A_log)·softplus(`a` + dt_bias) (per value head, or per key channel), the delta rule
/// over the conv'd `[q | k | v]` rows (q/k L2-normalised in the kernel, scale 1/√dk) with layer
/// `layer`'s matrix state, and the RMSNorm of each value head.
pub struct DeltaCore<'a> {
    pub layer: usize,
    pub prefix: &'a str,
    pub dims: DeltaDims,
    pub weights: &'a DecayWeights,
    pub out_eps: f64,
    /// The chunked prefill may round its operands to f16 (the model's weights are f16).
    pub f16_ok: bool,
    /// The device the graph is built for: it chooses the kernel.
    pub dev: &'a Device,
}

impl DeltaCore<'_> {
    /// The normed output `[T, Hv·dv]`, from the conv'd rows, the decay input `a` and β.
    pub fn build(
        &self,
        b: &mut Builder,
        batch: &Batch,
        state: &State,
        qkv: TensorId,
        a: TensorId,
        beta: TensorId,
    ) -> Result<TensorId> {
        let (i, p, d, wt) = (self.layer, self.prefix, self.dims, self.weights);
        let dt_bias = b.weight(&format!("{p}.dt_bias"), &wt.dt_bias);
        let neg_a = b.weight(&format!("{p}.neg_a"), &wt.neg_a);
        let g = b.g.binary(Binary::Add, a, dt_bias)?;
        let g = b.g.unary(Unary::Softplus, g, 1.0)?;
        let g = b.g.binary(Binary::Mul, g, neg_a)?;
        let s = b.state(&format!("{p}.state"), state.slot(i, "delta")?);
        let seqs = b.seqs(&batch.seqs);
        let kd = d.key_heads * d.dk;
        let node = DeltaRuleNode {
            seqs: SeqSpec::of(&batch.seqs),
            dims: d,
            cols: [0, kd, 2 * kd],
            l2norm: true,
            scale: 1.0 / (d.dk as f32).sqrt(),
            init: state.started(),
            channel_gates: wt.channel_gates,
            kernel: dr::choose(
                self.dev,
                &dr::DeltaProblem::of(batch.seqs.cu_seqlens(), wt.channel_gates, d, self.f16_ok),
            ),
        };
        let o = b.g.op(node, &[qkv, g, beta, s, seqs])?;
        let out_norm = b.weight(&format!("{p}.out_norm"), &wt.out_norm);
        let groups = d.value_heads;
        b.g.norm(NormKind::Rms { groups }, o, out_norm, None, self.out_eps as f32)
    }
}

/// Qwen3-Next's interleaved `in_proj_qkvz` `[Hk·(2·dk + 2·r·dv), d]` and `in_proj_ba`
/// `[Hk·2r, d]` (r = Hv / Hk value heads per key head) as (qkv, z, b, a) rows in head order.
pub fn deinterleave(
    qkvz: &[f32],
    ba: &[f32],
    dims: DeltaDims,
    d: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let DeltaDims { key_heads: hk, value_heads: hv, dk, dv } = dims;
    let r = hv / hk;
    let group = 2 * dk + 2 * r * dv; // rows per key head in qkvz
    let rows = |m: &[f32], g: usize, per: usize, lo: usize, n: usize| -> Vec<f32> {
        m[(g * per + lo) * d..][..n * d].to_vec()
    };
    let (mut q, mut k, mut v, mut z, mut b, mut a) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for g in 0..hk {
        q.extend(rows(qkvz, g, group, 0, dk));
        k.extend(rows(qkvz, g, group, dk, dk));
        v.extend(rows(qkvz, g, group, 2 * dk, r * dv));
        z.extend(rows(qkvz, g, group, 2 * dk + r * dv, r * dv));
        b.extend(rows(ba, g, 2 * r, 0, r));
        a.extend(rows(ba, g, 2 * r, r, r));
    }
    q.extend(k);
    q.extend(v);
    (q, z, b, a)
}

impl Sublayer for GdnMixer {
    /// The conv window `[S, conv_dim, K − 1]` and the matrix state `[S, Hv, dk, dv]`.
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        let c = &self.c;
        let DeltaDims { value_heads, dk, dv, .. } = c.dims;
        vec![
            SlotSpec::new(layer, "conv", SlotKind::ConvWindow, &[s, c.conv_dim(), c.conv_kernel - 1]),
            SlotSpec::new(layer, "delta", SlotKind::MatrixState, &[s, value_heads, dk, dv]),
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
        let p = format!("layers.{i}.gdn");
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, c.eps)?;
        let qkv = b.linear(&format!("{p}.qkv"), xn, &self.w_qkv, None)?;
        let z = b.linear(&format!("{p}.z"), xn, &self.w_z, None)?;
        let bl = b.linear(&format!("{p}.b"), xn, &self.w_b, None)?;
        let al = b.linear(&format!("{p}.a"), xn, &self.w_a, None)?;
        let qkv = batch.conv(b, qkv, &self.conv_w, None, state.slot(i, "conv")?, state.started())?;
        let mut beta = b.g.unary(Unary::Sigmoid, bl, 1.0)?;
        if c.negative_eigen {
            beta = b.g.unary(Unary::Scale, beta, 2.0)?;
        }
        let core = DeltaCore {
            layer: i,
            prefix: &p,
            dims: c.dims,
            weights: &self.decay,
            out_eps: c.out_eps,
            f16_ok: self.w_qkv.dtype() == DType::F16,
            dev,
        };
        let o = core.build(b, batch, state, qkv, al, beta)?;
        let o = b.g.binary(Binary::MulSilu, o, z)?;
        b.linear_add(&format!("{p}.out_proj"), o, &self.w_out, None, h)
    }

    fn parameters(&self) -> usize {
        let c = &self.c;
        let (d, hv, kd, vd) = (c.d_model, c.dims.value_heads, c.key_dim(), c.value_dim());
        d + (2 * kd + 2 * vd + 2 * hv) * d + c.conv_dim() * c.conv_kernel + 2 * hv + c.dims.dv + d * vd
    }
}
