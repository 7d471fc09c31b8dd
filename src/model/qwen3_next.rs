//! Qwen3-Next (`qwen3_next`) and Qwen3.5's text model (`qwen3_5_text`, and the real
//! checkpoints' multimodal `qwen3_5` wrapper: `text_config` nested, weights under
//! `model.language_model.*`, the vision tower ignored). Per layer, by `layer_types`:
//! `linear_attention` is a Gated DeltaNet mixer ([`GdnMixer`]), `full_attention` a gated
//! attention layer (q_proj twice as wide with a sigmoid output gate, q/k RMSNorm per head,
//! partial rotary), each followed by a SwiGLU MLP; every RMSNorm scales by (1 + w) except the
//! delta rule's output norm. Sparse layers (`num_experts`, outside `mlp_only_layers`, every
//! `decoder_sparse_step`-th) take a mixture-of-experts MLP with a shared expert ([`MoeMlp`]).

use super::attention::{
    AttentionMixer, AttentionNames, AttentionSpec, HfDecoderFields, QkNorm, RopeParameters,
};
use super::blocks::{Block, Stack};
use super::common::{self, Head, HeadNames};
use super::config::{Config, Float, Size};
use super::gated_deltanet::{GdnLayout, GdnMixer, GdnSpec, HfGdnFields};
use super::mlp::{GatedMlp, MlpSpec};
use super::moe::{load_mlp, sparse_at, MoeLayout, MoeMlp, MoeSpec};
use super::schema::{Init, WeightSpec};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::moe::MoeDims;
use crate::tensor::DType;

/// config.json (or its `text_config`) in transformers' names.
#[derive(Debug, serde::Deserialize)]
struct HfConfig {
    rope_theta: Option<Float>,
    partial_rotary_factor: Option<Float>,
    layer_types: Option<Vec<String>>,
    full_attention_interval: Option<Size>,
    num_experts: Option<Size>,
    num_experts_per_tok: Option<Size>,
    moe_intermediate_size: Option<Size>,
    shared_expert_intermediate_size: Option<Size>,
    norm_topk_prob: Option<bool>,
    mlp_only_layers: Option<Vec<usize>>,
    decoder_sparse_step: Option<Size>,
    attention_bias: Option<bool>,
}

/// Which mixer a layer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Linear,
    Full,
}

/// The mixers of `layers` layers from `layer_types`, or every `interval`-th layer full
/// attention (older configs).
pub fn layer_kinds(
    types: Option<&[String]>,
    interval: Option<usize>,
    layers: usize,
) -> Result<Vec<LayerKind>> {
    let kinds = match (types, interval) {
        (Some(t), _) => t
            .iter()
            .map(|t| match t.as_str() {
                "linear_attention" => Ok(LayerKind::Linear),
                "full_attention" => Ok(LayerKind::Full),
                other => Err(Error::Model(format!(
                    "layer type `{other}` names no known mixer (linear_attention, full_attention)"
                ))),
            })
            .collect::<Result<Vec<_>>>()?,
        (None, Some(n)) if n > 0 => {
            (0..layers).map(|i| if (i + 1) % n == 0 { LayerKind::Full } else { LayerKind::Linear }).collect()
        }
        _ => return Err(Error::Model("config has neither layer_types nor full_attention_interval".into())),
    };
    if kinds.len() != layers {
        return Err(Error::Model(format!("{} layer_types for {layers} layers", kinds.len())));
    }
    Ok(kinds)
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3NextConfig {
    pub gdn: GdnSpec,
    pub attn: AttentionSpec,
    pub mlp: MlpSpec,
    /// The sparse layers' MLP, and which layers are sparse.
    pub moe: Option<MoeSpec>,
    pub sparse: Vec<bool>,
    pub kinds: Vec<LayerKind>,
    pub vocab: usize,
    pub tie_embeddings: bool,
    /// Where the text model's tensors live: `model.` or `model.language_model.`.
    pub prefix: &'static str,
}

impl Qwen3NextConfig {
    /// The config of a `qwen3_next` (interleaved projections) or Qwen3.5 (split) checkpoint.
    pub fn from_config(c: &Config) -> Result<Self> {
        let model_type = c.model_type()?;
        let layout = if model_type == "qwen3_next" { GdnLayout::Interleaved } else { GdnLayout::Split };
        // The multimodal wrapper nests the text model's config and weights.
        let (text, prefix) = match c.json.get("text_config") {
            Some(t) if model_type == "qwen3_5" => {
                (Config::parse(&t.to_string(), "config.json text_config")?, "model.language_model.")
            }
            _ => (c.clone(), "model."),
        };
        // The shared field groups are read apart from this model's own fields (not flattened,
        // so that a bad value is named by its field).
        let h: HfDecoderFields = text.typed()?;
        let linear: HfGdnFields = text.typed()?;
        let j: HfConfig = text.typed()?;
        let d = h.hidden_size.0;
        let eps = h.eps("Qwen")?;
        let layers = h.num_hidden_layers.0;
        let kinds = layer_kinds(j.layer_types.as_deref(), j.full_attention_interval.map(|n| n.0), layers)?;
        // Sparse (MoE) MLPs: every layer not in mlp_only_layers, when there are experts.
        let experts = j.num_experts.map_or(0, |n| n.0);
        let only = j.mlp_only_layers.clone().unwrap_or_default();
        let step = j.decoder_sparse_step.map_or(1, |s| s.0.max(1));
        let sparse: Vec<bool> =
            (0..layers).map(|i| experts > 0 && !only.contains(&i) && (i + 1) % step == 0).collect();
        let moe = if sparse.iter().any(|&s| s) {
            let need = |v: Option<Size>, name: &str| {
                v.map(|v| v.0)
                    .ok_or_else(|| Error::Model(format!("a mixture-of-experts config needs {name}")))
            };
            let spec = MoeSpec {
                layout: MoeLayout::Qwen,
                dims: MoeDims {
                    experts,
                    k: need(j.num_experts_per_tok, "num_experts_per_tok")?,
                    d: h.hidden_size.0,
                    inter: need(j.moe_intermediate_size, "moe_intermediate_size")?,
                },
                shared_inter: j.shared_expert_intermediate_size.map(|s| s.0).filter(|&s| s > 0),
                norm_topk: j.norm_topk_prob.unwrap_or(true),
                eps,
                norm_plus_one: true,
            };
            spec.check()?;
            Some(spec)
        } else {
            None
        };
        let rope =
            RopeParameters::resolve(h.rope_parameters.as_ref(), j.rope_theta, j.partial_rotary_factor)?;
        let mut attn = AttentionSpec::plain(d, h.attn_dims(), None, h.max_positions(32768), rope, eps);
        attn.norm_plus_one = true;
        attn.qk_norm = QkNorm::PerHead;
        attn.output_gate = true;
        attn.qkv_bias = j.attention_bias.unwrap_or(false);
        attn.o_bias = false;
        if attn.qkv_bias {
            return Err(Error::UnsupportedVariant("attention_bias with the gated q_proj".into()));
        }
        attn.check()?;
        let gdn = linear.spec(d, eps, layout, false, true, eps)?;
        let mut mlp = MlpSpec::swiglu(d, h.intermediate_size.0, eps);
        mlp.norm_plus_one = true;
        Ok(Self {
            gdn,
            attn,
            mlp,
            moe,
            sparse,
            kinds,
            vocab: h.vocab_size.0,
            tie_embeddings: h.tie_word_embeddings.unwrap_or(false),
            prefix,
        })
    }

    fn head_names(&self) -> HeadNames {
        if self.prefix == "model." {
            HeadNames { norm_plus_one: true, ..HeadNames::MODEL }
        } else {
            HeadNames {
                embed: "model.language_model.embed_tokens.weight",
                norm: "model.language_model.norm.weight",
                lm_head: "lm_head.weight",
                norm_plus_one: true,
            }
        }
    }

    fn layer(&self, i: usize) -> String {
        format!("{}layers.{i}", self.prefix)
    }

    /// Every tensor of the checkpoint's text model.
    pub fn schema(&self) -> Vec<WeightSpec> {
        let (d, v, h) = (self.attn.d_model, self.vocab, self.head_names());
        let mut t = vec![
            WeightSpec::new(h.embed, &[v, d], Init::Uniform(-0.1, 0.1)),
            WeightSpec::new(h.norm, &[d], Init::Uniform(-0.1, 0.1)),
        ];
        if !self.tie_embeddings {
            t.push(WeightSpec::new(h.lm_head, &[v, d], Init::Uniform(-0.1, 0.1)));
        }
        for (i, kind) in self.kinds.iter().enumerate() {
            let p = self.layer(i);
            let norm = format!("{p}.input_layernorm.weight");
            match kind {
                LayerKind::Linear => {
                    t.extend(GdnMixer::schema(&self.gdn, &norm, &format!("{p}.linear_attn")))
                }
                LayerKind::Full => {
                    let mut a = AttentionMixer::schema(
                        &self.attn,
                        &norm,
                        &format!("{p}.self_attn"),
                        AttentionNames::HF,
                    );
                    a[0].init = Init::Uniform(-0.1, 0.1); // (1 + w) norms start near 1
                    t.extend(a);
                }
            }
            let norm = format!("{p}.post_attention_layernorm.weight");
            match sparse_at(&self.moe, &self.sparse, i) {
                Some(moe) => t.extend(MoeMlp::schema(moe, &norm, &format!("{p}.mlp"))),
                None => {
                    let mut m = GatedMlp::schema(&self.mlp, &norm, &format!("{p}.mlp"));
                    m[0].init = Init::Uniform(-0.1, 0.1);
                    t.extend(m);
                }
            }
        }
        t
    }
}

/// A loaded Qwen3-Next or Qwen3.5 text model.
pub struct Qwen3Next {
    pub cfg: Qwen3NextConfig,
    stack: Stack,
}

impl Qwen3Next {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let mut c = Qwen3NextConfig::from_config(cfg)?;
        // A text model saved from the multimodal one keeps the `language_model` prefix
        // (transformers strips it at load).
        if w.has("model.language_model.embed_tokens.weight") {
            c.prefix = "model.language_model.";
        }
        // The multimodal wrapper's vision tower is ignored: only the text model's layers are
        // counted and its tensors checked.
        common::check_config(w, &format!("{}layers.", c.prefix), c.kinds.len(), c.attn.eps, &c.schema())?;
        let head =
            Head::load_named(dev, w, c.head_names(), c.vocab, c.attn.d_model, c.tie_embeddings, dtype)?;
        let blocks = Stack::load_blocks(c.kinds.len(), progress, |i| {
            let p = c.layer(i);
            let norm = format!("{p}.input_layernorm.weight");
            let mixer: Box<dyn super::blocks::Sublayer> = match c.kinds[i] {
                LayerKind::Linear => {
                    Box::new(GdnMixer::load(dev, w, &c.gdn, &norm, &format!("{p}.linear_attn"), dtype)?)
                }
                LayerKind::Full => Box::new(AttentionMixer::load(
                    dev,
                    w,
                    &c.attn,
                    &norm,
                    &format!("{p}.self_attn"),
                    AttentionNames::HF,
                    dtype,
                )?),
            };
            let mlp_norm = format!("{p}.post_attention_layernorm.weight");
            let mlps = (sparse_at(&c.moe, &c.sparse, i), &c.mlp);
            let mlp = load_mlp(dev, w, mlps, &mlp_norm, &format!("{p}.mlp"), dtype)?;
            Ok(Block { mixer: Some(mixer), mlp: Some(mlp) })
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.attn.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `qwen3_next` architecture (transformers' `Qwen3NextForCausalLM`).
    Qwen3NextArchitecture: Qwen3Next, Qwen3NextConfig, "qwen3_next"
}

/// A loaded Qwen3.5 text model (the same runtime, split projections).
pub struct Qwen35 {
    pub cfg: Qwen3NextConfig,
    stack: Stack,
}

impl Qwen35 {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let Qwen3Next { cfg, stack } = Qwen3Next::load(dev, cfg, w, dtype, progress)?;
        Ok(Self { cfg, stack })
    }
}

super::arch::stack_architecture! {
    /// Qwen3.5's text model (`Qwen3_5ForCausalLM`; `qwen3_5` is the multimodal wrapper).
    Qwen35Architecture: Qwen35, Qwen3NextConfig, "qwen3_5_text", "qwen3_5"
}
