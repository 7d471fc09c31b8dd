//! The softmax-attention block part shared by the attention architectures: pre-RMSNorm, one
//! fused q/k/v projection (the checkpoint's three matrices stacked by rows at load time), RoPE
//! on q and k in place, attention over the KV ring with its append, and o_proj onto the
//! residual. The KV cache is a `KvRing` slot of the window, or for full attention a
//! `KvBlocks` slot that grows in blocks up to `max_positions`; the stack keeps the positions.

use super::blocks::Sublayer;
use super::common::{Batch, Builder};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{AttentionNode, RopeNode, SeqSpec};
use crate::graph::TensorId;
use crate::ops::attention::{AttnDims, PrefillKernel, KV_BLOCKS};
use crate::ops::rope;
use crate::tensor::{DType, Tensor};

/// An attention layer's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    pub d_model: usize,
    pub dims: AttnDims,
    /// Sliding window W (None: full attention).
    pub window: Option<usize>,
    /// Cache positions of full attention (`max_position_embeddings`).
    pub max_positions: usize,
    pub rope_theta: f64,
    pub partial_rotary: f64,
    pub eps: f64,
    pub qkv_bias: bool,
    pub o_bias: bool,
    /// The pre-norm scales by (1 + w) (Gemma).
    pub norm_plus_one: bool,
    pub softcap: Option<f32>,
    /// RMSNorm of q and k before RoPE, weights `q_norm` / `k_norm`.
    pub qk_norm: QkNorm,
    /// The norm comes after o_proj, on the attention's output (h + RMSNorm(attn(h)), OLMo-2's
    /// order) instead of before the projections.
    pub post_norm: bool,
    /// `q_proj` is twice as wide, each head's q followed by its output gate; the output is
    /// multiplied by sigmoid(gate) before `o_proj` (Qwen3-Next).
    pub output_gate: bool,
}

/// Whether and how q and k are RMS-normalised before RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// Each head over its D dims, weights `[D]` (Qwen3-Next).
    PerHead,
    /// All q heads together and all k heads together, weights `[H·D]` and `[Hkv·D]` (OLMo).
    Whole,
}

impl AttentionSpec {
    /// A plain pre-norm attention layer without q/k norms or output gate.
    pub fn plain(
        d_model: usize,
        dims: AttnDims,
        window: Option<usize>,
        max_positions: usize,
        (rope_theta, partial_rotary): (f64, f64),
        eps: f64,
    ) -> Self {
        Self {
            d_model,
            dims,
            window,
            max_positions,
            rope_theta,
            partial_rotary,
            eps,
            qkv_bias: false,
            o_bias: false,
            norm_plus_one: false,
            softcap: None,
            qk_norm: QkNorm::None,
            post_norm: false,
            output_gate: false,
        }
    }

    /// Checks what a config can get wrong: head counts, head dim, window, rotary dims.
    pub fn check(&self) -> Result<()> {
        self.dims.check().map_err(|e| Error::Model(format!("attention: {e}")))?;
        if self.window == Some(0) {
            return Err(Error::Model("sliding_window 0 leaves a query nothing to attend to".into()));
        }
        rope::rotary_dims(self.dims.head_dim, self.partial_rotary)?;
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(Error::Model(format!(
                "rope_theta {} must be a finite number above 1",
                self.rope_theta
            )));
        }
        Ok(())
    }

    /// Positions of the ring (the window), or of each block: `max_positions` in
    /// [`KV_BLOCKS`] steps, rounded up to whole 64-key tiles.
    pub fn cap(&self) -> usize {
        self.window.unwrap_or_else(|| self.max_positions.div_ceil(KV_BLOCKS).max(1).next_multiple_of(64))
    }

    /// The cache: a ring of the window, or blocks of [`AttentionSpec::cap`] positions.
    pub fn cache(&self) -> SlotKind {
        match self.window {
            Some(window) => SlotKind::KvRing { window },
            None => SlotKind::KvBlocks { block: self.cap() },
        }
    }

    fn rot(&self) -> usize {
        (self.dims.head_dim as f64 * self.partial_rotary) as usize
    }
}

/// Where the checkpoint keeps the projections, relative to the layer's attention prefix.
#[derive(Debug, Clone, Copy)]
pub struct AttentionNames {
    pub q: &'static str,
    pub k: &'static str,
    pub v: &'static str,
    pub o: &'static str,
}

impl AttentionNames {
    pub const HF: AttentionNames = AttentionNames { q: "q_proj", k: "k_proj", v: "v_proj", o: "o_proj" };
}

/// One attention layer, loaded.
pub struct AttentionMixer {
    c: AttentionSpec,
    norm: Tensor,
    w_qkv: Tensor,
    b_qkv: Option<Tensor>,
    w_o: Tensor,
    b_o: Option<Tensor>,
    inv_freq: Tensor,
    /// `[(H + Hkv)·D]`: q_norm's and k_norm's weights over the q and k columns (a per-head
    /// weight repeated for each head), as the norm scales by them.
    qk_norm: Option<Tensor>,
    /// `[H·D, d]`: the output gate's rows of q_proj.
    w_gate: Option<Tensor>,
}

impl AttentionMixer {
    /// The tensors: the norm `norm_name` (the pre-norm, or with `post_norm` the norm of the
    /// output), then `{p}.{q,k,v,o}_proj.*`.
    pub fn schema(c: &AttentionSpec, norm_name: &str, p: &str, n: AttentionNames) -> Vec<WeightSpec> {
        let AttnDims { heads, kv_heads, head_dim } = c.dims;
        let (d, hd, kvd) = (c.d_model, heads * head_dim, kv_heads * head_dim);
        let mut out = vec![
            WeightSpec::new(norm_name, &[d], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(
                format!("{p}.{}.weight", n.q),
                &[hd * (1 + c.output_gate as usize), d],
                Init::FanIn,
            ),
            WeightSpec::new(format!("{p}.{}.weight", n.k), &[kvd, d], Init::FanIn),
            WeightSpec::new(format!("{p}.{}.weight", n.v), &[kvd, d], Init::FanIn),
            WeightSpec::new(format!("{p}.{}.weight", n.o), &[d, hd], Init::FanIn),
        ];
        if c.qkv_bias {
            for (name, rows) in [(n.q, hd), (n.k, kvd), (n.v, kvd)] {
                out.push(WeightSpec::new(format!("{p}.{name}.bias"), &[rows], Init::Uniform(-0.1, 0.1)));
            }
        }
        if c.o_bias {
            out.push(WeightSpec::new(format!("{p}.{}.bias", n.o), &[d], Init::Uniform(-0.1, 0.1)));
        }
        let qk = match c.qk_norm {
            QkNorm::None => None,
            QkNorm::PerHead => Some([head_dim, head_dim]),
            QkNorm::Whole => Some([hd, kvd]),
        };
        for (norm, n) in ["q_norm", "k_norm"].into_iter().zip(qk.into_iter().flatten()) {
            let init = if c.norm_plus_one { Init::Uniform(-0.1, 0.1) } else { Init::Uniform(0.9, 1.1) };
            out.push(WeightSpec::new(format!("{p}.{norm}.weight"), &[n], init));
        }
        out
    }

    /// Loads the layer under `p` with its norm `norm_name`; matrices as `dtype`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        c: &AttentionSpec,
        norm_name: &str,
        p: &str,
        n: AttentionNames,
        dtype: DType,
    ) -> Result<Self> {
        c.check()?;
        let AttnDims { heads, kv_heads, head_dim } = c.dims;
        let (d, hd, kvd) = (c.d_model, heads * head_dim, kv_heads * head_dim);
        let (q, k, v) = (format!("{p}.{}", n.q), format!("{p}.{}", n.k), format!("{p}.{}", n.v));
        let (w_qkv, w_gate) = if c.output_gate {
            // q_proj's rows per head: D of q, then D of the gate.
            let (qg, _) = w.f32(&format!("{q}.weight"), Some(&[2 * hd, d]))?;
            let rows = |gate: usize| -> Vec<f32> {
                (0..heads)
                    .flat_map(|h| qg[(2 * h + gate) * head_dim * d..][..head_dim * d].iter().copied())
                    .collect()
            };
            let mut host = rows(0);
            host.extend(w.f32(&format!("{k}.weight"), Some(&[kvd, d]))?.0);
            host.extend(w.f32(&format!("{v}.weight"), Some(&[kvd, d]))?.0);
            let qkv = Tensor::from_f32(dev, &[hd + 2 * kvd, d], &host, dtype)?;
            (qkv, Some(Tensor::from_f32(dev, &[hd, d], &rows(1), dtype)?))
        } else {
            let parts = [
                (format!("{q}.weight"), [hd, d]),
                (format!("{k}.weight"), [kvd, d]),
                (format!("{v}.weight"), [kvd, d]),
            ];
            let parts: Vec<(&str, [usize; 2])> = parts.iter().map(|(n, s)| (n.as_str(), *s)).collect();
            (w.upload_rows(dev, &parts, dtype)?, None)
        };
        let qk_norm = match c.qk_norm {
            QkNorm::None => None,
            QkNorm::PerHead | QkNorm::Whole => {
                let per_head = c.qk_norm == QkNorm::PerHead;
                let mut host = Vec::with_capacity(hd + kvd);
                for (norm, n, count) in [("q_norm", hd, heads), ("k_norm", kvd, kv_heads)] {
                    let name = format!("{p}.{norm}.weight");
                    if per_head {
                        let one = w.norm_host(&name, head_dim, c.norm_plus_one)?;
                        (0..count).for_each(|_| host.extend_from_slice(&one));
                    } else {
                        host.extend(w.norm_host(&name, n, c.norm_plus_one)?);
                    }
                }
                Some(Tensor::from_slice(dev, &[hd + kvd], &host)?)
            }
        };
        let b_qkv = if c.qkv_bias {
            let parts = [(format!("{q}.bias"), hd), (format!("{k}.bias"), kvd), (format!("{v}.bias"), kvd)];
            let mut host = Vec::with_capacity(hd + 2 * kvd);
            for (name, rows) in &parts {
                host.extend(w.f32(name, Some(&[*rows]))?.0);
            }
            Some(Tensor::from_slice(dev, &[hd + 2 * kvd], &host)?)
        } else {
            None
        };
        let o = format!("{p}.{}", n.o);
        let rot = c.rot();
        Ok(Self {
            c: c.clone(),
            norm: w.norm(dev, norm_name, d, c.norm_plus_one)?,
            w_qkv,
            b_qkv,
            w_o: w.upload(dev, &format!("{o}.weight"), &[d, hd], &[d, hd], dtype)?,
            b_o: if c.o_bias {
                Some(w.upload(dev, &format!("{o}.bias"), &[d], &[d], DType::F32)?)
            } else {
                None
            },
            inv_freq: Tensor::from_slice(dev, &[rot / 2], &rope::inv_freq(rot, c.rope_theta))?,
            qk_norm,
            w_gate,
        })
    }
}

impl Sublayer for AttentionMixer {
    /// The ring, or each block, `[S, cap, 2, Hkv, D]`.
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        let AttnDims { kv_heads, head_dim, .. } = self.c.dims;
        let cap = self.c.cap();
        vec![SlotSpec::new(layer, "kv", self.c.cache(), &[s, cap, 2, kv_heads, head_dim])]
    }

    fn uses_positions(&self) -> bool {
        true
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
        let p = format!("layers.{i}.attn");
        let pos = state
            .positions()
            .ok_or_else(|| Error::Invalid("attention needs the state's positions".into()))?;
        let xn = if c.post_norm { h } else { b.rms_norm(&format!("{p}.norm"), h, &self.norm, c.eps)? };
        let qkv = b.linear(&format!("{p}.qkv"), xn, &self.w_qkv, self.b_qkv.as_ref())?;
        let freqs = b.weight(&format!("{p}.inv_freq"), &self.inv_freq);
        let pos = b.state("positions", pos);
        let seqs = b.seqs(&batch.seqs);
        let spec = SeqSpec::of(&batch.seqs);
        // RoPE, after the q/k norm in the same pass where the model has one.
        let mut ins = vec![qkv, freqs, pos, seqs];
        let norm = self.qk_norm.as_ref().map(|nw| {
            ins.push(b.weight(&format!("{p}.qk_norm"), nw));
            (c.eps as f32, c.qk_norm == QkNorm::Whole)
        });
        let qkv = b.g.op(RopeNode { seqs: spec, dims: c.dims, rot: c.rot(), norm }, &ins)?;
        let attend = CacheAttention {
            layer: i,
            prefix: &p,
            dims: c.dims,
            window: c.window,
            scale: 1.0 / (c.dims.head_dim as f32).sqrt(),
            softcap: c.softcap,
            // The tensor-core prefill rounds Q, K, V and P to f16: taken for f16 weights only.
            f16_ok: self.w_qkv.dtype() == DType::F16,
        };
        let mut y = attend.build(dev, b, batch, state, qkv)?;
        if let Some(wg) = &self.w_gate {
            let gate = b.linear(&format!("{p}.gate"), xn, wg, None)?;
            let gate = b.g.unary(crate::ops::elementwise::Unary::Sigmoid, gate, 1.0)?;
            y = b.g.binary(crate::ops::elementwise::Binary::Mul, y, gate)?;
        }
        if c.post_norm {
            let proj = (&self.w_o, self.b_o.as_ref());
            return b.linear_norm_add(&format!("{p}.o_proj"), y, proj, &self.norm, c.eps, h);
        }
        b.linear_add(&format!("{p}.o_proj"), y, &self.w_o, self.b_o.as_ref(), h)
    }

    fn parameters(&self) -> usize {
        let extra = self.b_qkv.iter().chain(self.b_o.iter()).map(Tensor::numel).sum::<usize>();
        let gated = self.w_gate.iter().chain(self.qk_norm.iter()).map(Tensor::numel).sum::<usize>();
        self.norm.numel() + self.w_qkv.numel() + self.w_o.numel() + extra + gated
    }
}

/// Attention of RoPE'd (or position-free) qkv rows over layer `layer`'s KV cache slot `kv`,
/// appending the new tokens: the part of an attention layer after its projections, shared by
/// [`AttentionMixer`] and MLA.
pub struct CacheAttention<'a> {
    pub layer: usize,
    /// The graph names' prefix (`layers.{i}.attn`).
    pub prefix: &'a str,
    pub dims: AttnDims,
    pub window: Option<usize>,
    pub scale: f32,
    pub softcap: Option<f32>,
    /// Whether the tensor-core prefill (f16 Q, K, V and P) may be taken.
    pub f16_ok: bool,
}

impl CacheAttention<'_> {
    /// The output `[T, H·D]` for `qkv` `[T, (H + 2·Hkv)·D]`.
    pub fn build(
        &self,
        dev: &Device,
        b: &mut Builder,
        batch: &Batch,
        state: &State,
        qkv: TensorId,
    ) -> Result<TensorId> {
        let (i, p) = (self.layer, self.prefix);
        let pos = state
            .positions()
            .ok_or_else(|| Error::Invalid("attention needs the state's positions".into()))?;
        let pos = b.state("positions", pos);
        let seqs = b.seqs(&batch.seqs);
        // The cache as the state holds it: its positions per ring or block (a block may be
        // smaller than asked for, to fit a binding) and its kind.
        let kv_spec = state
            .slot_spec(i, "kv")
            .ok_or_else(|| Error::Invalid(format!("this state has no slot {i}.kv")))?;
        let cap = kv_spec.shape[1];
        let (kv, kv_blocks) = match kv_spec.kind {
            SlotKind::KvBlocks { .. } => {
                // Every block the state has, allocating those this pass's positions reach.
                let cached = state.cached_positions().iter();
                let need = cached.zip(batch.lens).map(|(c, l)| c + l).max().unwrap_or(0);
                let blocks = state.kv_blocks(dev, i, "kv", need)?;
                let ids =
                    blocks.iter().enumerate().map(|(k, t)| b.state(&format!("{p}.kv.{k}"), t)).collect();
                (ids, Some(blocks.len()))
            }
            _ => (vec![b.state(&format!("{p}.kv"), state.slot(i, "kv")?)], None),
        };
        let node = AttentionNode {
            seqs: SeqSpec::of(&batch.seqs),
            dims: self.dims,
            window: self.window,
            cap,
            kv_blocks,
            scale: self.scale,
            softcap: self.softcap,
            step: batch.step,
            prefill: PrefillKernel::choose(dev, self.dims, batch.seqs.total(), self.f16_ok),
        };
        let ins: Vec<TensorId> = [qkv].into_iter().chain(kv).chain([pos, seqs]).collect();
        b.g.op(node, &ins)
    }
}

/// The decoder fields that transformers' Mistral, Qwen3-Next / Qwen3.5 and OLMo-Hybrid
/// configs share, read from config.json beside each model's own fields.
#[derive(Debug, serde::Deserialize)]
pub struct HfDecoderFields {
    pub hidden_size: super::config::Size,
    pub intermediate_size: super::config::Size,
    pub num_attention_heads: super::config::Size,
    pub num_key_value_heads: Option<super::config::Size>,
    pub head_dim: Option<super::config::Size>,
    pub num_hidden_layers: super::config::Size,
    pub vocab_size: super::config::Size,
    pub rms_norm_eps: Option<super::config::Float>,
    pub rope_parameters: Option<RopeParameters>,
    pub max_position_embeddings: Option<super::config::Size>,
    pub tie_word_embeddings: Option<bool>,
    pub hidden_act: Option<String>,
}

impl HfDecoderFields {
    /// `rms_norm_eps` (1e-6 when absent), checked, after checking that `hidden_act` is silu
    /// (`family` names the model in the error).
    pub fn eps(&self, family: &str) -> Result<f64> {
        let eps = self.rms_norm_eps.map_or(1e-6, |e| e.0);
        super::common::check_eps(eps)?;
        if let Some(act) = self.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(Error::Model(format!("hidden_act `{act}` is not supported ({family} uses silu)")));
        }
        Ok(eps)
    }

    /// Head counts and head dim (KV heads default to the query heads, the head dim to
    /// hidden_size / heads).
    pub fn attn_dims(&self) -> AttnDims {
        let heads = self.num_attention_heads.0;
        AttnDims {
            heads,
            kv_heads: self.num_key_value_heads.map_or(heads, |k| k.0),
            head_dim: self.head_dim.map_or(self.hidden_size.0 / heads.max(1), |h| h.0),
        }
    }

    /// `max_position_embeddings`, or the family's `default`.
    pub fn max_positions(&self, default: usize) -> usize {
        self.max_position_embeddings.map_or(default, |m| m.0)
    }
}

/// transformers' `rope_parameters` (or the older top-level `rope_theta`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RopeParameters {
    pub rope_theta: Option<super::config::Float>,
    pub partial_rotary_factor: Option<super::config::Float>,
    pub rope_type: Option<String>,
}

impl RopeParameters {
    /// (θ, partial rotary factor) from `rope_parameters`, falling back to the top-level
    /// fields; RoPE scaling types other than `default` are refused.
    pub fn resolve(
        p: Option<&RopeParameters>,
        theta: Option<super::config::Float>,
        partial: Option<super::config::Float>,
    ) -> Result<(f64, f64)> {
        if let Some(t) = p.and_then(|p| p.rope_type.as_deref()).filter(|t| *t != "default") {
            return Err(Error::Model(format!("rope_type `{t}` is not supported (only `default`)")));
        }
        let theta = p.and_then(|p| p.rope_theta).or(theta).map_or(10000.0, |f| f.0);
        let partial = p.and_then(|p| p.partial_rotary_factor).or(partial).map_or(1.0, |f| f.0);
        Ok((theta, partial))
    }
}
