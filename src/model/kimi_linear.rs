//! Kimi-Linear (transformers' `KimiLinearForCausalLM`). Per layer, by `layer_types`:
//! `linear_attention` is a Kimi Delta Attention mixer ([`KdaMixer`]), `full_attention` an MLA
//! layer without positional encoding ([`MlaMixer`]); each is followed by a SwiGLU MLP
//! (`mlp_layer_types` `dense`, whose weights the checkpoint keeps under `block_sparse_moe`).
//! Norms scale by w. MoE layers (`sparse`) and a low-rank q (`q_lora_rank`) are refused with
//! a clear error for now.

use super::attention::HfDecoderFields;
use super::blocks::{Block, Stack, Sublayer};
use super::common::{self, Head, HeadNames};
use super::config::{Config, Size};
use super::kda::{KdaMixer, KdaSpec};
use super::mla::{MlaMixer, MlaSpec};
use super::mlp::{GatedMlp, MlpSpec};
use super::qwen3_next::{layer_kinds, LayerKind};
use super::schema::{Init, WeightSpec};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::DType;

/// config.json's Kimi-Linear fields in transformers' names.
#[derive(Debug, serde::Deserialize)]
struct HfConfig {
    layer_types: Option<Vec<String>>,
    mlp_layer_types: Option<Vec<String>>,
    linear_num_heads: Size,
    linear_head_dim: Size,
    linear_conv_kernel_dim: Size,
    qk_nope_head_dim: Size,
    qk_rope_head_dim: Size,
    v_head_dim: Size,
    kv_lora_rank: Size,
    q_lora_rank: Option<Size>,
    model_max_length: Option<Size>,
    attention_bias: Option<bool>,
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct KimiLinearConfig {
    pub kda: KdaSpec,
    pub mla: MlaSpec,
    pub mlp: MlpSpec,
    pub kinds: Vec<LayerKind>,
    pub vocab: usize,
    pub tie_embeddings: bool,
}

impl KimiLinearConfig {
    pub fn from_config(c: &Config) -> Result<Self> {
        let h: HfDecoderFields = c.typed()?;
        let j: HfConfig = c.typed()?;
        let d = h.hidden_size.0;
        let eps = h.eps("Kimi-Linear")?;
        let layers = h.num_hidden_layers.0;
        let kinds = layer_kinds(j.layer_types.as_deref(), None, layers)?;
        match j.mlp_layer_types.as_deref() {
            Some(t) if t.len() != layers => {
                return Err(Error::Model(format!("{} mlp_layer_types for {layers} layers", t.len())))
            }
            Some(t) => {
                if let Some(other) = t.iter().find(|t| t.as_str() != "dense") {
                    return Err(Error::UnsupportedVariant(format!(
                        "mlp_layer_types `{other}`: Kimi-Linear's MoE layers are not supported yet (dense only)"
                    )));
                }
            }
            None => return Err(Error::Model("Kimi-Linear config has no mlp_layer_types".into())),
        }
        if j.q_lora_rank.is_some() {
            return Err(Error::UnsupportedVariant(
                "MLA with a low-rank q (q_lora_rank) is not supported yet".into(),
            ));
        }
        if j.attention_bias.unwrap_or(false) {
            return Err(Error::UnsupportedVariant("Kimi-Linear with attention_bias".into()));
        }
        let kda = KdaSpec {
            d_model: d,
            heads: j.linear_num_heads.0,
            dk: j.linear_head_dim.0,
            conv_kernel: j.linear_conv_kernel_dim.0,
            eps,
        };
        kda.check()?;
        let mla = MlaSpec {
            d_model: d,
            heads: h.num_attention_heads.0,
            nope: j.qk_nope_head_dim.0,
            rope: j.qk_rope_head_dim.0,
            v: j.v_head_dim.0,
            kv_rank: j.kv_lora_rank.0,
            eps,
            max_positions: h.max_positions(j.model_max_length.map_or(4096, |m| m.0)),
        };
        mla.check()?;
        Ok(Self {
            kda,
            mla,
            mlp: MlpSpec::swiglu(d, h.intermediate_size.0, eps),
            kinds,
            vocab: h.vocab_size.0,
            // transformers' KimiLinearForCausalLM ties nothing (`_tied_weights_keys = {}`), whatever
            // tie_word_embeddings says: lm_head is its own matrix.
            tie_embeddings: false,
        })
    }

    /// Every tensor of the checkpoint.
    pub fn schema(&self) -> Vec<WeightSpec> {
        let (d, v) = (self.kda.d_model, self.vocab);
        let mut t = vec![
            WeightSpec::new("model.embed_tokens.weight", &[v, d], Init::Uniform(-0.1, 0.1)),
            WeightSpec::new("model.norm.weight", &[d], Init::Uniform(0.9, 1.1)),
        ];
        if !self.tie_embeddings {
            t.push(WeightSpec::new("lm_head.weight", &[v, d], Init::Uniform(-0.1, 0.1)));
        }
        for (i, kind) in self.kinds.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let norm = format!("{p}.input_layernorm.weight");
            match kind {
                LayerKind::Linear => t.extend(KdaMixer::schema(&self.kda, &norm, &format!("{p}.self_attn"))),
                LayerKind::Full => t.extend(MlaMixer::schema(&self.mla, &norm, &format!("{p}.self_attn"))),
            }
            let mlp_norm = format!("{p}.post_attention_layernorm.weight");
            t.extend(GatedMlp::schema(&self.mlp, &mlp_norm, &format!("{p}.block_sparse_moe")));
        }
        t
    }
}

/// A loaded Kimi-Linear model.
pub struct KimiLinear {
    pub cfg: KimiLinearConfig,
    stack: Stack,
}

impl KimiLinear {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let c = KimiLinearConfig::from_config(cfg)?;
        common::check_config(w, "model.layers.", c.kinds.len(), c.kda.eps, &c.schema())?;
        let head =
            Head::load_named(dev, w, HeadNames::MODEL, c.vocab, c.kda.d_model, c.tie_embeddings, dtype)?;
        let blocks = Stack::load_blocks(c.kinds.len(), progress, |i| {
            let p = format!("model.layers.{i}");
            let norm = format!("{p}.input_layernorm.weight");
            let attn = format!("{p}.self_attn");
            let mixer: Box<dyn Sublayer> = match c.kinds[i] {
                LayerKind::Linear => Box::new(KdaMixer::load(dev, w, &c.kda, &norm, &attn, dtype)?),
                LayerKind::Full => Box::new(MlaMixer::load(dev, w, &c.mla, &norm, &attn, dtype)?),
            };
            let mlp_norm = format!("{p}.post_attention_layernorm.weight");
            let mlp = GatedMlp::load(dev, w, &c.mlp, &mlp_norm, &format!("{p}.block_sparse_moe"), dtype)?;
            Ok(Block { mixer: Some(mixer), mlp: Some(Box::new(mlp)) })
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.kda.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `kimi_linear` architecture (transformers' `KimiLinearForCausalLM`).
    KimiLinearArchitecture: KimiLinear, KimiLinearConfig, "kimi_linear"
}
