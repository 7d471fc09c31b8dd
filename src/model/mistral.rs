//! Mistral (transformers' `MistralForCausalLM`): embedding → per layer [RMSNorm → attention
//! (GQA, RoPE, a sliding window of `sliding_window` positions, or full attention when it is
//! null) → residual → RMSNorm → SwiGLU MLP → residual] → norm → lm_head. Each layer is a block
//! of an [`AttentionMixer`] and a [`GatedMlp`]; the sliding window's KV cache is a ring of W
//! positions, so decode cost and memory do not grow with the sequence.

use super::attention::{AttentionMixer, AttentionNames, AttentionSpec, HfDecoderFields, RopeParameters};
use super::blocks::{Block, Stack};
use super::common::{self, Head, HeadNames};
use super::config::{Config, Float, Size};
use super::mlp::{GatedMlp, MlpSpec};
use super::schema::{Init, WeightSpec};
use super::weights::Weights;
use crate::device::Device;
use crate::error::Result;
use crate::tensor::DType;

/// config.json of a `MistralForCausalLM` checkpoint, in transformers' names.
#[derive(Debug, serde::Deserialize)]
struct HfMistralConfig {
    rope_theta: Option<Float>,
    sliding_window: Option<Size>,
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
        // The shared fields are read apart from Mistral's own (not flattened, so that a bad
        // value is named by its field).
        let h: HfDecoderFields = c.typed()?;
        let j: HfMistralConfig = c.typed()?;
        let d = h.hidden_size.0;
        let eps = h.eps("Mistral")?;
        let rope = RopeParameters::resolve(h.rope_parameters.as_ref(), j.rope_theta, None)?;
        let window = j.sliding_window.map(|w| w.0);
        let attn = AttentionSpec::plain(d, h.attn_dims(), window, h.max_positions(32768), rope, eps);
        attn.check()?;
        Ok(Self {
            attn,
            mlp: MlpSpec::swiglu(d, h.intermediate_size.0, eps),
            layers: h.num_hidden_layers.0,
            vocab: h.vocab_size.0,
            tie_embeddings: h.tie_word_embeddings.unwrap_or(false),
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
