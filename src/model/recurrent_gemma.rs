//! RecurrentGemma / Griffin (transformers' `RecurrentGemmaForCausalLM`): embedding × √hidden
//! (rounded as bf16) → per layer [(1 + w)-RMSNorm → temporal block → residual →
//! (1 + w)-RMSNorm → GeGLU MLP (width intermediate_size / 2, biases) → residual] → final norm →
//! tied lm_head → logits soft-capped. The temporal blocks follow `block_types` cyclically:
//! - **recurrent**: y = gelu_tanh(linear_y(x)); linear_x → causal conv (bias, no activation)
//!   → RG-LRU (its block-diagonal gate projections held as one dense `[2·lru, lru]` matrix);
//!   linear_out(rg_lru · y);
//! - **attention**: multi-query local attention over a ring of `attention_window_size`
//!   positions, RoPE on the first `partial_rotary_factor` of each head, o_proj with a bias.

use super::attention::{AttentionMixer, AttentionNames, AttentionSpec, RopeParameters};
use super::blocks::{Block, Stack, Sublayer};
use super::common::{self, Batch, Builder, Head, HeadNames};
use super::config::{Config, Float, Size};
use super::mlp::{GatedMlp, MlpAct, MlpSpec};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{RgLruNode, SeqSpec};
use crate::graph::TensorId;
use crate::ops::attention::AttnDims;
use crate::ops::elementwise::{Binary, Unary};
use crate::tensor::{DType, Tensor};

/// config.json of a `RecurrentGemmaForCausalLM` checkpoint, in transformers' names.
#[derive(Debug, serde::Deserialize)]
struct HfRecurrentGemmaConfig {
    hidden_size: Size,
    intermediate_size: Size,
    num_attention_heads: Size,
    num_key_value_heads: Option<Size>,
    head_dim: Option<Size>,
    lru_width: Option<Size>,
    conv1d_width: Option<Size>,
    attention_window_size: Size,
    block_types: Vec<TemporalKind>,
    num_hidden_layers: Size,
    vocab_size: Size,
    rms_norm_eps: Option<Float>,
    logits_soft_cap: Option<Float>,
    rope_theta: Option<Float>,
    partial_rotary_factor: Option<Float>,
    rope_parameters: Option<RopeParameters>,
    attention_bias: Option<bool>,
    hidden_activation: Option<String>,
    tie_word_embeddings: Option<bool>,
}

/// A layer's temporal block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemporalKind {
    Recurrent,
    Attention,
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentGemmaConfig {
    pub d_model: usize,
    pub lru: usize,
    /// RG-LRU gate blocks (= num_attention_heads).
    pub lru_heads: usize,
    pub conv_width: usize,
    pub kinds: Vec<TemporalKind>,
    pub attn: AttentionSpec,
    pub mlp: MlpSpec,
    pub vocab: usize,
    pub eps: f64,
    pub soft_cap: Option<f32>,
}

impl RecurrentGemmaConfig {
    pub fn from_config(c: &Config) -> Result<Self> {
        let j: HfRecurrentGemmaConfig = c.typed()?;
        let d = j.hidden_size.0;
        let heads = j.num_attention_heads.0;
        let eps = j.rms_norm_eps.map_or(1e-6, |e| e.0);
        common::check_eps(eps)?;
        if let Some(a) = j.hidden_activation.as_deref().filter(|a| *a != "gelu_pytorch_tanh") {
            return Err(Error::Model(format!(
                "hidden_activation `{a}` is not supported (gelu_pytorch_tanh)"
            )));
        }
        if j.tie_word_embeddings == Some(false) {
            return Err(Error::Model(
                "RecurrentGemma ties its embeddings; tie_word_embeddings false is not supported".into(),
            ));
        }
        if j.block_types.is_empty() {
            return Err(Error::Model("block_types is empty".into()));
        }
        let lru = j.lru_width.map_or(d, |l| l.0);
        if heads == 0 || !lru.is_multiple_of(heads) {
            return Err(Error::Model(format!(
                "lru_width {lru} must be a multiple of num_attention_heads {heads}"
            )));
        }
        let conv_width = j.conv1d_width.map_or(4, |w| w.0);
        if !(2..=4).contains(&conv_width) {
            return Err(Error::Model(format!("conv1d_width {conv_width} is not supported (2–4)")));
        }
        let (rope_theta, partial_rotary) =
            RopeParameters::resolve(j.rope_parameters.as_ref(), j.rope_theta, j.partial_rotary_factor)?;
        let dims = AttnDims {
            heads,
            kv_heads: j.num_key_value_heads.map_or(heads, |k| k.0),
            head_dim: j.head_dim.map_or(d / heads, |h| h.0),
        };
        let window = j.attention_window_size.0;
        let attn = AttentionSpec {
            d_model: d,
            dims,
            window: Some(window),
            max_positions: window,
            rope_theta,
            partial_rotary,
            eps,
            qkv_bias: j.attention_bias.unwrap_or(false),
            o_bias: true,
            norm_plus_one: true,
            softcap: None,
            qk_norm: super::attention::QkNorm::None,
            post_norm: false,
            output_gate: false,
        };
        attn.check()?;
        let layers = j.num_hidden_layers.0;
        let kinds = (0..layers).map(|i| j.block_types[i % j.block_types.len()]).collect();
        let mlp = MlpSpec {
            d,
            inter: j.intermediate_size.0 / 2,
            act: MlpAct::GeluTanh,
            bias: true,
            norm_plus_one: true,
            eps,
            post_norm: false,
        };
        let soft_cap = j.logits_soft_cap.map(|c| c.0 as f32);
        if soft_cap.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return Err(Error::Model(format!("logits_soft_cap {soft_cap:?} must be positive")));
        }
        Ok(Self {
            d_model: d,
            lru,
            lru_heads: heads,
            conv_width,
            kinds,
            attn,
            mlp,
            vocab: j.vocab_size.0,
            eps,
            soft_cap,
        })
    }

    /// Every tensor of the checkpoint.
    pub fn schema(&self) -> Vec<WeightSpec> {
        let (d, v) = (self.d_model, self.vocab);
        let mut t = vec![
            WeightSpec::new("model.embed_tokens.weight", &[v, d], Init::Uniform(-0.1, 0.1)),
            WeightSpec::new("model.final_norm.weight", &[d], Init::Uniform(-0.1, 0.1)),
        ];
        for (i, kind) in self.kinds.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let norm = format!("{p}.temporal_pre_norm.weight");
            let tb = format!("{p}.temporal_block");
            match kind {
                TemporalKind::Recurrent => t.extend(RecurrentMixer::schema(self, &norm, &tb)),
                TemporalKind::Attention => {
                    t.extend(AttentionMixer::schema(&self.attn, &norm, &tb, AttentionNames::HF))
                }
            }
            t.extend(GatedMlp::schema(
                &self.mlp,
                &format!("{p}.channel_pre_norm.weight"),
                &format!("{p}.mlp_block"),
            ));
        }
        t
    }
}

/// Griffin's recurrent temporal block.
pub struct RecurrentMixer {
    c: RecurrentGemmaConfig,
    norm: Tensor,
    w_y: Tensor,
    b_y: Tensor,
    w_x: Tensor,
    b_x: Tensor,
    conv_w: Tensor,
    conv_b: Tensor,
    /// The input and recurrence gates' block-diagonal weights as one dense `[2·lru, lru]`.
    w_gates: Tensor,
    b_gates: Tensor,
    lam: Tensor,
    w_out: Tensor,
    b_out: Tensor,
}

impl RecurrentMixer {
    pub fn schema(c: &RecurrentGemmaConfig, norm: &str, p: &str) -> Vec<WeightSpec> {
        let (d, l, h, k) = (c.d_model, c.lru, c.lru_heads, c.conv_width);
        let bw = l / h;
        let small = Init::Uniform(-0.1, 0.1);
        vec![
            WeightSpec::new(norm, &[d], small),
            WeightSpec::new(format!("{p}.linear_y.weight"), &[l, d], Init::FanIn),
            WeightSpec::new(format!("{p}.linear_y.bias"), &[l], small),
            WeightSpec::new(format!("{p}.linear_x.weight"), &[l, d], Init::FanIn),
            WeightSpec::new(format!("{p}.linear_x.bias"), &[l], small),
            WeightSpec::new(format!("{p}.linear_out.weight"), &[d, l], Init::FanIn),
            WeightSpec::new(format!("{p}.linear_out.bias"), &[d], small),
            WeightSpec::new(format!("{p}.conv_1d.weight"), &[l, 1, k], Init::Uniform(-0.5, 0.5)),
            WeightSpec::new(format!("{p}.conv_1d.bias"), &[l], small),
            WeightSpec::new(format!("{p}.rg_lru.input_gate_weight"), &[h, bw, bw], Init::FanIn),
            WeightSpec::new(format!("{p}.rg_lru.input_gate_bias"), &[h, bw], small),
            WeightSpec::new(format!("{p}.rg_lru.recurrent_gate_weight"), &[h, bw, bw], Init::FanIn),
            WeightSpec::new(format!("{p}.rg_lru.recurrent_gate_bias"), &[h, bw], small),
            // softplus(Λ) ≈ 0.5–2: a = exp(−8·σ·softplus(Λ)) spans slow and fast channels.
            WeightSpec::new(format!("{p}.rg_lru.recurrent_param"), &[l], Init::Uniform(-1.0, 1.5)),
        ]
    }

    pub fn load(
        dev: &Device,
        w: &Weights,
        c: &RecurrentGemmaConfig,
        norm: &str,
        p: &str,
        dtype: DType,
    ) -> Result<Self> {
        let (d, l, h, k) = (c.d_model, c.lru, c.lru_heads, c.conv_width);
        let bw = l / h;
        let mat = |name: &str, shape: &[usize]| w.upload(dev, name, shape, shape, dtype);
        let vec = |name: &str, n: usize| w.upload(dev, name, &[n], &[n], DType::F32);
        // Gate g: out[h·bw + j] = Σ_i x[h·bw + i] · W[h, i, j] (x @ W); as a Linear [out, in].
        let mut dense = vec![0f32; 2 * l * l];
        let mut bias = Vec::with_capacity(2 * l);
        for (g, name) in ["input_gate", "recurrent_gate"].iter().enumerate() {
            let (wt, _) = w.f32(&format!("{p}.rg_lru.{name}_weight"), Some(&[h, bw, bw]))?;
            for hh in 0..h {
                for i in 0..bw {
                    for j in 0..bw {
                        dense[(g * l + hh * bw + j) * l + hh * bw + i] = wt[(hh * bw + i) * bw + j];
                    }
                }
            }
            bias.extend(w.f32(&format!("{p}.rg_lru.{name}_bias"), Some(&[h, bw]))?.0);
        }
        Ok(Self {
            c: c.clone(),
            norm: w.norm(dev, norm, d, true)?,
            w_y: mat(&format!("{p}.linear_y.weight"), &[l, d])?,
            b_y: vec(&format!("{p}.linear_y.bias"), l)?,
            w_x: mat(&format!("{p}.linear_x.weight"), &[l, d])?,
            b_x: vec(&format!("{p}.linear_x.bias"), l)?,
            conv_w: w.upload(dev, &format!("{p}.conv_1d.weight"), &[l, 1, k], &[l, k], DType::F32)?,
            conv_b: vec(&format!("{p}.conv_1d.bias"), l)?,
            w_gates: Tensor::from_f32(dev, &[2 * l, l], &dense, dtype)?,
            b_gates: Tensor::from_slice(dev, &[2 * l], &bias)?,
            lam: vec(&format!("{p}.rg_lru.recurrent_param"), l)?,
            w_out: mat(&format!("{p}.linear_out.weight"), &[d, l])?,
            b_out: vec(&format!("{p}.linear_out.bias"), d)?,
        })
    }
}

impl Sublayer for RecurrentMixer {
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        let (l, k) = (self.c.lru, self.c.conv_width);
        vec![
            SlotSpec::new(layer, "conv", SlotKind::ConvWindow, &[s, l, k - 1]),
            SlotSpec::new(layer, "rg_lru", SlotKind::DiagonalSsm, &[s, l]),
        ]
    }

    fn build(
        &self,
        _dev: &Device,
        b: &mut Builder,
        batch: &Batch,
        state: &State,
        i: usize,
        h: TensorId,
    ) -> Result<TensorId> {
        let p = format!("layers.{i}.recurrent");
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, self.c.eps)?;
        let y = b.linear(&format!("{p}.linear_y"), xn, &self.w_y, Some(&self.b_y))?;
        let y = b.g.unary(Unary::GeluTanh, y, 1.0)?;
        let x = b.linear(&format!("{p}.linear_x"), xn, &self.w_x, Some(&self.b_x))?;
        let conv = (&self.conv_w, Some(&self.conv_b));
        let xc = batch.conv_act(b, x, conv, state.slot(i, "conv")?, state.started(), false)?;
        let gates = b.linear(&format!("{p}.gates"), xc, &self.w_gates, Some(&self.b_gates))?;
        let lam = b.weight(&format!("{p}.lambda"), &self.lam);
        let st = b.state(&format!("{p}.rg_lru_state"), state.slot(i, "rg_lru")?);
        let seqs = b.seqs(&batch.seqs);
        let node = RgLruNode { seqs: SeqSpec::of(&batch.seqs), init: state.started() };
        let hr = b.g.op(node, &[xc, gates, lam, st, seqs])?;
        let gated = b.g.binary(Binary::Mul, hr, y)?;
        b.linear_add(&format!("{p}.linear_out"), gated, &self.w_out, Some(&self.b_out), h)
    }

    fn parameters(&self) -> usize {
        let (l, h) = (self.c.lru, self.c.lru_heads);
        let gates = 2 * (l * (l / h) + l); // as the checkpoint stores them: block-diagonal
        [
            &self.norm,
            &self.w_y,
            &self.b_y,
            &self.w_x,
            &self.b_x,
            &self.conv_w,
            &self.conv_b,
            &self.lam,
            &self.w_out,
            &self.b_out,
        ]
        .iter()
        .map(|t| t.numel())
        .sum::<usize>()
            + gates
    }
}

/// A loaded RecurrentGemma model.
pub struct RecurrentGemma {
    pub cfg: RecurrentGemmaConfig,
    stack: Stack,
}

impl RecurrentGemma {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let c = RecurrentGemmaConfig::from_config(cfg)?;
        common::check_config(w, "model.layers.", c.kinds.len(), c.eps, &c.schema())?;
        let names = HeadNames { norm: "model.final_norm.weight", norm_plus_one: true, ..HeadNames::MODEL };
        let mut head = Head::load_named(dev, w, names, c.vocab, c.d_model, true, dtype)?;
        // transformers multiplies by √hidden held as a bf16 tensor.
        head.embed_scale = Some(half::bf16::from_f64((c.d_model as f64).sqrt()).to_f32());
        head.soft_cap = c.soft_cap;
        let blocks = Stack::load_blocks(c.kinds.len(), progress, |i| {
            let p = format!("model.layers.{i}");
            let norm = format!("{p}.temporal_pre_norm.weight");
            let tb = format!("{p}.temporal_block");
            let mixer: Box<dyn Sublayer> = match c.kinds[i] {
                TemporalKind::Recurrent => Box::new(RecurrentMixer::load(dev, w, &c, &norm, &tb, dtype)?),
                TemporalKind::Attention => {
                    Box::new(AttentionMixer::load(dev, w, &c.attn, &norm, &tb, AttentionNames::HF, dtype)?)
                }
            };
            let mlp_norm = format!("{p}.channel_pre_norm.weight");
            let mlp = GatedMlp::load(dev, w, &c.mlp, &mlp_norm, &format!("{p}.mlp_block"), dtype)?;
            Ok(Block { mixer: Some(mixer), mlp: Some(Box::new(mlp)) })
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `recurrent_gemma` architecture (transformers' `RecurrentGemmaForCausalLM`).
    RecurrentGemmaArchitecture: RecurrentGemma, RecurrentGemmaConfig, "recurrent_gemma"
}
