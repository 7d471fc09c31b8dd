//! Kimi-Linear (transformers' `KimiLinearForCausalLM`). Per layer, by `layer_types`:
//! `linear_attention` is a Kimi Delta Attention mixer ([`KdaMixer`]), `full_attention` an MLA
//! layer without positional encoding ([`MlaMixer`]); each is followed by a SwiGLU MLP
//! (`mlp_layer_types` `dense`, whose weights the checkpoint keeps under `block_sparse_moe`) or a
//! mixture of experts (`sparse`: sigmoid routing with a correction bias and the routed scaling
//! factor, ungated shared experts; [`MoeMlp`]). The released checkpoints' config forms are read
//! too (`linear_attn_config` with 1-based `kda_layers` / `full_attn_layers`,
//! `first_k_dense_replace`). Norms scale by w. Grouped expert routing is refused with a clear
//! error for now.

use super::attention::HfDecoderFields;
use super::blocks::{Block, Stack, Sublayer};
use super::common::{self, Head, HeadNames};
use super::config::{Config, Size};
use super::kda::{KdaMixer, KdaSpec};
use super::mla::{MlaMixer, MlaSpec};
use super::mlp::{GatedMlp, MlpSpec};
use super::moe::{load_mlp, sparse_at, MoeLayout, MoeMlp, MoeSpec};
use super::qwen3_next::{layer_kinds, LayerKind};
use super::schema::{Init, WeightSpec};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::moe::MoeDims;
use crate::tensor::DType;

/// config.json's Kimi-Linear fields in transformers' names (or the released checkpoints':
/// `linear_attn_config`, `first_k_dense_replace`, and the MoE fields' aliases).
#[derive(Debug, serde::Deserialize)]
struct HfConfig {
    layer_types: Option<Vec<String>>,
    mlp_layer_types: Option<Vec<String>>,
    linear_attn_config: Option<LinearAttnConfig>,
    first_k_dense_replace: Option<Size>,
    linear_num_heads: Option<Size>,
    linear_head_dim: Option<Size>,
    linear_conv_kernel_dim: Option<Size>,
    #[serde(alias = "num_local_experts")]
    num_experts: Option<Size>,
    #[serde(alias = "num_experts_per_tok")]
    num_experts_per_token: Option<Size>,
    moe_intermediate_size: Option<Size>,
    #[serde(alias = "n_shared_experts")]
    num_shared_experts: Option<Size>,
    #[serde(alias = "norm_topk_prob")]
    moe_renormalize: Option<bool>,
    #[serde(alias = "n_group")]
    num_expert_group: Option<Size>,
    routed_scaling_factor: Option<super::config::Float>,
    qk_nope_head_dim: Size,
    qk_rope_head_dim: Size,
    v_head_dim: Size,
    kv_lora_rank: Size,
    q_lora_rank: Option<Size>,
    model_max_length: Option<Size>,
    attention_bias: Option<bool>,
}

/// The released checkpoints' `linear_attn_config`: KDA's sizes and the (1-based) layers of each
/// kind.
#[derive(Debug, serde::Deserialize)]
struct LinearAttnConfig {
    head_dim: Option<Size>,
    num_heads: Option<Size>,
    short_conv_kernel_size: Option<Size>,
    full_attn_layers: Option<Vec<usize>>,
    kda_layers: Option<Vec<usize>>,
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct KimiLinearConfig {
    pub kda: KdaSpec,
    pub mla: MlaSpec,
    pub mlp: MlpSpec,
    /// The sparse layers' MLP, and which layers are sparse.
    pub moe: Option<MoeSpec>,
    pub sparse: Vec<bool>,
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
        let lac = j.linear_attn_config.as_ref();
        let types = match (&j.layer_types, lac) {
            (Some(t), _) => t.clone(),
            (None, Some(LinearAttnConfig { full_attn_layers: Some(full), kda_layers: Some(kda), .. })) => {
                let mut t = vec![String::new(); layers];
                for (list, kind) in [(full, "full_attention"), (kda, "linear_attention")] {
                    for &l in list {
                        let slot = l.checked_sub(1).and_then(|i| t.get_mut(i)).ok_or_else(|| {
                            Error::Model(format!("linear_attn_config names layer {l} of {layers} (1-based)"))
                        })?;
                        *slot = kind.to_string();
                    }
                }
                t
            }
            // transformers' default: every fourth layer (from the fifth) full attention.
            (None, _) => (0..layers)
                .map(|i| if i > 0 && i % 4 == 0 { "full_attention" } else { "linear_attention" }.to_string())
                .collect(),
        };
        let kinds = layer_kinds(Some(&types), None, layers)?;
        let mlp_types: Vec<String> = match &j.mlp_layer_types {
            Some(t) => t.clone(),
            None => {
                let dense = j.first_k_dense_replace.map_or(1, |k| k.0);
                (0..layers).map(|i| if i < dense { "dense" } else { "sparse" }.to_string()).collect()
            }
        };
        if mlp_types.len() != layers {
            return Err(Error::Model(format!("{} mlp_layer_types for {layers} layers", mlp_types.len())));
        }
        let sparse = mlp_types
            .iter()
            .map(|t| match t.as_str() {
                "dense" => Ok(false),
                "sparse" => Ok(true),
                other => Err(Error::Model(format!("mlp_layer_types `{other}` (dense or sparse)"))),
            })
            .collect::<Result<Vec<bool>>>()?;
        let moe = if sparse.iter().any(|&s| s) {
            let need = |v: Option<Size>, name: &str| {
                v.map(|v| v.0).ok_or_else(|| Error::Model(format!("Kimi-Linear's MoE layers need {name}")))
            };
            if j.num_expert_group.is_some_and(|g| g.0 != 1) {
                return Err(Error::UnsupportedVariant(
                    "grouped expert routing (num_expert_group > 1) is not supported yet".into(),
                ));
            }
            let inter = need(j.moe_intermediate_size, "moe_intermediate_size")?;
            let spec = MoeSpec {
                layout: MoeLayout::Kimi { scale: j.routed_scaling_factor.map_or(1.0, |f| f.0 as f32) },
                dims: MoeDims {
                    experts: need(j.num_experts, "num_experts")?,
                    k: need(j.num_experts_per_token, "num_experts_per_token")?,
                    d,
                    inter,
                },
                shared_inter: j.num_shared_experts.map(|n| n.0 * inter).filter(|&w| w > 0),
                norm_topk: j.moe_renormalize.unwrap_or(true),
                eps,
                norm_plus_one: false,
            };
            spec.check()?;
            Some(spec)
        } else {
            None
        };
        let field = |top: Option<Size>, nested: Option<Size>, name: &str| {
            top.or(nested)
                .map(|v| v.0)
                .ok_or_else(|| Error::Model(format!("Kimi-Linear config has no {name}")))
        };
        if j.attention_bias.unwrap_or(false) {
            return Err(Error::UnsupportedVariant("Kimi-Linear with attention_bias".into()));
        }
        let kda = KdaSpec {
            d_model: d,
            heads: field(j.linear_num_heads, lac.and_then(|l| l.num_heads), "linear_num_heads")?,
            dk: field(j.linear_head_dim, lac.and_then(|l| l.head_dim), "linear_head_dim")?,
            conv_kernel: field(
                j.linear_conv_kernel_dim,
                lac.and_then(|l| l.short_conv_kernel_size),
                "linear_conv_kernel_dim",
            )?,
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
            q_rank: j.q_lora_rank.map(|r| r.0),
            eps,
            max_positions: h.max_positions(j.model_max_length.map_or(4096, |m| m.0)),
        };
        mla.check()?;
        Ok(Self {
            kda,
            mla,
            mlp: MlpSpec::swiglu(d, h.intermediate_size.0, eps),
            moe,
            sparse,
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
            let mp = format!("{p}.block_sparse_moe");
            match sparse_at(&self.moe, &self.sparse, i) {
                Some(moe) => t.extend(MoeMlp::schema(moe, &mlp_norm, &mp)),
                None => t.extend(GatedMlp::schema(&self.mlp, &mlp_norm, &mp)),
            }
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
            let mp = format!("{p}.block_sparse_moe");
            let mlp = load_mlp(dev, w, (sparse_at(&c.moe, &c.sparse, i), &c.mlp), &mlp_norm, &mp, dtype)?;
            Ok(Block { mixer: Some(mixer), mlp: Some(mlp) })
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.kda.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `kimi_linear` architecture (transformers' `KimiLinearForCausalLM`).
    KimiLinearArchitecture: KimiLinear, KimiLinearConfig, "kimi_linear"
}
