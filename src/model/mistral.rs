//! Mistral (transformers' `MistralForCausalLM`): embedding → per layer [RMSNorm → attention
//! (GQA, RoPE, a sliding window of `sliding_window` positions, or full attention when it is
//! null) → residual → RMSNorm → SwiGLU MLP → residual] → norm → lm_head. Each layer is a block
//! of an [`AttentionMixer`] and a [`GatedMlp`]; the sliding window's KV cache is a ring of W
//! positions, so decode cost and memory do not grow with the sequence.

use super::attention::{AttentionMixer, AttentionNames, AttentionSpec, RopeParameters};
use super::blocks::{Block, Stack};
use super::common::{self, Head, HeadNames};
use super::config::{Config, Float, Size};
use super::mlp::{GatedMlp, MlpSpec};
use super::schema::{Init, WeightSpec};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::attention::AttnDims;
use crate::tensor::DType;

/// config.json of a `MistralForCausalLM` checkpoint, in transformers' names.
#[derive(Debug, serde::Deserialize)]
struct HfMistralConfig {
    hidden_size: Size,
    intermediate_size: Size,
    num_attention_heads: Size,
    num_key_value_heads: Option<Size>,
    head_dim: Option<Size>,
    num_hidden_layers: Size,
    vocab_size: Size,
    rms_norm_eps: Option<Float>,
    rope_theta: Option<Float>,
    rope_parameters: Option<RopeParameters>,
    sliding_window: Option<Size>,
    max_position_embeddings: Option<Size>,
    tie_word_embeddings: Option<bool>,
    hidden_act: Option<String>,
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MistralConfig {
    pub attn: AttentionSpec,
    pub mlp: MlpSpec,
    pub layers: usize,
    pub vocab: usize,
    pub tie_embeddings: bool,
}

impl MistralConfig {
    pub fn from_config(c: &Config) -> Result<Self> {
        let j: HfMistralConfig = c.typed()?;
        let d = j.hidden_size.0;
        let heads = j.num_attention_heads.0;
        let eps = j.rms_norm_eps.map_or(1e-6, |e| e.0);
        common::check_eps(eps)?;
        if let Some(act) = j.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(Error::Model(format!("hidden_act `{act}` is not supported (Mistral uses silu)")));
        }
        let (rope_theta, partial_rotary) =
            RopeParameters::resolve(j.rope_parameters.as_ref(), j.rope_theta, None)?;
        let dims = AttnDims {
            heads,
            kv_heads: j.num_key_value_heads.map_or(heads, |k| k.0),
            head_dim: j.head_dim.map_or(d / heads.max(1), |h| h.0),
        };
        let attn = AttentionSpec {
            d_model: d,
            dims,
            window: j.sliding_window.map(|w| w.0),
            max_positions: j.max_position_embeddings.map_or(32768, |m| m.0),
            rope_theta,
            partial_rotary,
            eps,
            qkv_bias: false,
            o_bias: false,
            norm_plus_one: false,
            softcap: None,
            qk_norm: super::attention::QkNorm::None,
            post_norm: false,
            output_gate: false,
        };
        attn.check()?;
        Ok(Self {
            attn,
            mlp: MlpSpec::swiglu(d, j.intermediate_size.0, eps),
            layers: j.num_hidden_layers.0,
            vocab: j.vocab_size.0,
            tie_embeddings: j.tie_word_embeddings.unwrap_or(false),
        })
    }

    /// Every tensor of the checkpoint.
    pub fn schema(&self) -> Vec<WeightSpec> {
        let (d, v) = (self.attn.d_model, self.vocab);
        let mut t = vec![
            WeightSpec::new("model.embed_tokens.weight", &[v, d], Init::Uniform(-0.1, 0.1)),
            WeightSpec::new("model.norm.weight", &[d], Init::Uniform(0.9, 1.1)),
        ];
        if !self.tie_embeddings {
            t.push(WeightSpec::new("lm_head.weight", &[v, d], Init::Uniform(-0.1, 0.1)));
        }
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            let names = AttentionNames::HF;
            t.extend(AttentionMixer::schema(
                &self.attn,
                &format!("{p}.input_layernorm.weight"),
                &format!("{p}.self_attn"),
                names,
            ));
            t.extend(GatedMlp::schema(
                &self.mlp,
                &format!("{p}.post_attention_layernorm.weight"),
                &format!("{p}.mlp"),
            ));
        }
        t
    }
}

/// A loaded Mistral model: one (attention, MLP) block per layer.
pub struct Mistral {
    pub cfg: MistralConfig,
    stack: Stack,
}

impl Mistral {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let c = MistralConfig::from_config(cfg)?;
        common::check_config(w, "model.layers.", c.layers, c.attn.eps, &c.schema())?;
        let head =
            Head::load_named(dev, w, HeadNames::MODEL, c.vocab, c.attn.d_model, c.tie_embeddings, dtype)?;
        let blocks = Stack::load_blocks(c.layers, progress, |i| {
            let p = format!("model.layers.{i}");
            let attn_norm = format!("{p}.input_layernorm.weight");
            let attn = AttentionMixer::load(
                dev,
                w,
                &c.attn,
                &attn_norm,
                &format!("{p}.self_attn"),
                AttentionNames::HF,
                dtype,
            )?;
            let mlp_norm = format!("{p}.post_attention_layernorm.weight");
            let mlp = GatedMlp::load(dev, w, &c.mlp, &mlp_norm, &format!("{p}.mlp"), dtype)?;
            Ok(Block { mixer: Some(Box::new(attn)), mlp: Some(Box::new(mlp)) })
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.attn.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `mistral` architecture (transformers' `MistralForCausalLM`).
    MistralArchitecture: Mistral, MistralConfig, "mistral"
}
