//! OLMo-Hybrid (transformers' `OlmoHybridForCausalLM`). Per layer, by `layer_types`:
//! - `linear_attention`: h + GDN(RMSNorm(h)), then h + MLP(RMSNorm(h)) (pre-norms), the Gated
//!   DeltaNet with separate q/k/v/g/b/a projections and, with `linear_allow_neg_eigval`,
//!   negative eigenvalues (β = 2·sigmoid(b));
//! - `full_attention`: h + RMSNorm(attn(h)), then h + RMSNorm(MLP(h)) (OLMo-2's post-norms),
//!   q and k RMS-normalised over all their heads before RoPE.
//!
//! Norms scale by w (not 1 + w); the delta rule's output norm takes fla's eps of 1e-5. The
//! checkpoint's names are the ones `save_pretrained` writes (fla's): `attention_layer_norm`,
//! `feedforward_layer_norm`, and the conv as `q_conv1d` / `k_conv1d` / `v_conv1d`, the [q | k |
//! v] conv's channels cut in three near-equal pieces (not at the q/k/v boundaries).

use super::attention::{
    AttentionMixer, AttentionNames, AttentionSpec, HfDecoderFields, QkNorm, RopeParameters,
};
use super::blocks::{Block, Stack, Sublayer};
use super::common::{self, Head, HeadNames};
use super::config::Config;
use super::gated_deltanet::{GdnLayout, GdnMixer, GdnSpec, HfGdnFields};
use super::mlp::{GatedMlp, MlpSpec};
use super::qwen3_next::{layer_kinds, LayerKind};
use super::schema::{Init, WeightSpec};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::DType;

/// config.json in transformers' names.
#[derive(Debug, serde::Deserialize)]
struct HfConfig {
    layer_types: Option<Vec<String>>,
    linear_allow_neg_eigval: Option<bool>,
    attention_bias: Option<bool>,
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct OlmoHybridConfig {
    pub gdn: GdnSpec,
    pub attn: AttentionSpec,
    /// The linear layers' MLP (pre-norm) and the attention layers' (post-norm).
    pub mlp: MlpSpec,
    pub kinds: Vec<LayerKind>,
    pub vocab: usize,
    pub tie_embeddings: bool,
}

impl OlmoHybridConfig {
    pub fn from_config(c: &Config) -> Result<Self> {
        // The shared field groups are read apart from this model's own fields (not flattened,
        // so that a bad value is named by its field).
        let h: HfDecoderFields = c.typed()?;
        let linear: HfGdnFields = c.typed()?;
        let j: HfConfig = c.typed()?;
        let d = h.hidden_size.0;
        let eps = h.eps("OLMo")?;
        if j.attention_bias.unwrap_or(false) {
            return Err(Error::UnsupportedVariant("attention_bias with OLMo's q/k norms".into()));
        }
        let layers = h.num_hidden_layers.0;
        let kinds = layer_kinds(j.layer_types.as_deref(), None, layers)?;
        // No rope_parameters (or no theta) is OLMo's NoPE mode.
        if h.rope_parameters.as_ref().is_none_or(|r| r.rope_theta.is_none()) {
            return Err(Error::UnsupportedVariant(
                "OLMo-Hybrid without rope_parameters (NoPE attention) is not supported yet".into(),
            ));
        }
        let rope = RopeParameters::resolve(h.rope_parameters.as_ref(), None, None)?;
        let mut attn = AttentionSpec::plain(d, h.attn_dims(), None, h.max_positions(4096), rope, eps);
        attn.qk_norm = QkNorm::Whole;
        attn.post_norm = true;
        attn.check()?;
        let gdn = linear.spec(
            d,
            eps,
            GdnLayout::Separate,
            j.linear_allow_neg_eigval.unwrap_or(false),
            false,
            1e-5,
        )?;
        Ok(Self {
            gdn,
            attn,
            mlp: MlpSpec::swiglu(d, h.intermediate_size.0, eps),
            kinds,
            vocab: h.vocab_size.0,
            tie_embeddings: h.tie_word_embeddings.unwrap_or(false),
        })
    }

    fn post_mlp(&self) -> MlpSpec {
        MlpSpec { post_norm: true, ..self.mlp }
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
        for (i, kind) in self.kinds.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let (mixer_norm, mlp_norm) = norm_names(*kind);
            let (mixer_norm, mlp_norm) =
                (format!("{p}.{mixer_norm}.weight"), format!("{p}.{mlp_norm}.weight"));
            match kind {
                LayerKind::Linear => {
                    t.extend(GdnMixer::schema(&self.gdn, &mixer_norm, &format!("{p}.linear_attn")));
                    t.extend(GatedMlp::schema(&self.mlp, &mlp_norm, &format!("{p}.mlp")));
                }
                LayerKind::Full => {
                    let names = AttentionNames::HF;
                    t.extend(AttentionMixer::schema(
                        &self.attn,
                        &mixer_norm,
                        &format!("{p}.self_attn"),
                        names,
                    ));
                    t.extend(GatedMlp::schema(&self.post_mlp(), &mlp_norm, &format!("{p}.mlp")));
                }
            }
        }
        t
    }
}

/// The norms of a layer: (the mixer's, the MLP's), as `save_pretrained` writes them:
/// transformers renames `attention_layer_norm` to `input_layernorm` and
/// `feedforward_layer_norm` to `post_attention_layernorm` when it loads.
fn norm_names(kind: LayerKind) -> (&'static str, &'static str) {
    match kind {
        LayerKind::Linear => ("attention_layer_norm", "feedforward_layer_norm"),
        LayerKind::Full => ("feedforward_layer_norm", "post_feedforward_layernorm"),
    }
}

/// A loaded OLMo-Hybrid model.
pub struct OlmoHybrid {
    pub cfg: OlmoHybridConfig,
    stack: Stack,
}

impl OlmoHybrid {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let c = OlmoHybridConfig::from_config(cfg)?;
        common::check_config(w, "model.layers.", c.kinds.len(), c.attn.eps, &c.schema())?;
        let head =
            Head::load_named(dev, w, HeadNames::MODEL, c.vocab, c.attn.d_model, c.tie_embeddings, dtype)?;
        let blocks = Stack::load_blocks(c.kinds.len(), progress, |i| {
            let p = format!("model.layers.{i}");
            let (mixer_norm, mlp_norm) = norm_names(c.kinds[i]);
            let (mixer_norm, mlp_norm) =
                (format!("{p}.{mixer_norm}.weight"), format!("{p}.{mlp_norm}.weight"));
            let (mixer, mlp): (Box<dyn Sublayer>, MlpSpec) = match c.kinds[i] {
                LayerKind::Linear => (
                    Box::new(GdnMixer::load(
                        dev,
                        w,
                        &c.gdn,
                        &mixer_norm,
                        &format!("{p}.linear_attn"),
                        dtype,
                    )?),
                    c.mlp,
                ),
                LayerKind::Full => {
                    let names = AttentionNames::HF;
                    let a = AttentionMixer::load(
                        dev,
                        w,
                        &c.attn,
                        &mixer_norm,
                        &format!("{p}.self_attn"),
                        names,
                        dtype,
                    )?;
                    (Box::new(a), c.post_mlp())
                }
            };
            let mlp = GatedMlp::load(dev, w, &mlp, &mlp_norm, &format!("{p}.mlp"), dtype)?;
            Ok(Block { mixer: Some(mixer), mlp: Some(Box::new(mlp)) })
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.attn.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `olmo_hybrid` architecture (transformers' `OlmoHybridForCausalLM`).
    OlmoHybridArchitecture: OlmoHybrid, OlmoHybridConfig, "olmo_hybrid"
}
