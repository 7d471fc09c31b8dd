//! Pieces the runtimes share: the graph builder that binds a model's tensors, the embedding /
//! final norm / LM head, the conv node, the recurrent state, and the checks of a forward
//! call's batch.

use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{ConvNode, SeqSpec};
use crate::graph::{Executable, Graph, PlanOptions, TensorId};
use crate::ops::selective_scan::Sequences;
use crate::tensor::{DType, Tensor};

/// Embedding table (`dtype`, gathered), final RMSNorm weight, and LM head (`dtype`; the same
/// tensor as the embedding when tied, as transformers does unless the checkpoint has
/// `lm_head.weight`).
pub struct Head {
    pub embed: Tensor,
    pub lm_head: Tensor,
    pub norm_f: Tensor,
    /// The final norm's bias: with one, it is a LayerNorm (S4), else an RMSNorm.
    pub norm_f_bias: Option<Tensor>,
    /// Multiplies the embeddings (Gemma: √hidden, rounded as bf16).
    pub embed_scale: Option<f32>,
    /// Soft-caps the logits: cap·tanh(logits / cap).
    pub soft_cap: Option<f32>,
}

/// Where a checkpoint keeps the embedding, the final norm and the LM head.
#[derive(Debug, Clone, Copy)]
pub struct HeadNames {
    pub embed: &'static str,
    pub norm: &'static str,
    pub lm_head: &'static str,
    /// The final norm scales by (1 + w) (Gemma).
    pub norm_plus_one: bool,
}

impl HeadNames {
    /// Mamba and Mamba-2 (`backbone.*`).
    pub const BACKBONE: HeadNames = HeadNames {
        embed: "backbone.embeddings.weight",
        norm: "backbone.norm_f.weight",
        lm_head: "lm_head.weight",
        norm_plus_one: false,
    };
    /// Llama-style models (`model.embed_tokens`, `model.norm`).
    pub const MODEL: HeadNames = HeadNames {
        embed: "model.embed_tokens.weight",
        norm: "model.norm.weight",
        lm_head: "lm_head.weight",
        norm_plus_one: false,
    };
}

impl Head {
    /// Adds the embedding gather of the ids in `ids` (bound as the graph's input).
    pub fn embed(&self, b: &mut Builder, ids: &Tensor) -> Result<TensorId> {
        let ids = b.input("ids", ids);
        let table = b.weight("embed", &self.embed);
        let x = b.g.embedding(ids, table)?;
        match self.embed_scale {
            Some(s) => b.g.unary(crate::ops::elementwise::Unary::Scale, x, s),
            None => Ok(x),
        }
    }

    /// Adds the final RMSNorm of `h` and the LM head: logits of every token, or only of the
    /// token rows in `rows` (gathered first).
    pub fn build(&self, b: &mut Builder, h: TensorId, rows: Option<&Tensor>, eps: f64) -> Result<TensorId> {
        let xn = match &self.norm_f_bias {
            Some(bias) => b.layer_norm("norm_f", h, &self.norm_f, bias, eps)?,
            None => b.rms_norm("norm_f", h, &self.norm_f, eps)?,
        };
        let src = match rows {
            Some(r) => {
                let r = b.input("rows", r);
                b.g.embedding(r, xn)?
            }
            None => xn,
        };
        let lm_head = b.weight("lm_head", &self.lm_head);
        let logits = b.g.linear(src, lm_head, None)?;
        match self.soft_cap {
            Some(cap) => b.g.unary(crate::ops::elementwise::Unary::SoftCap, logits, cap),
            None => Ok(logits),
        }
    }

    /// Parameters: the embedding, the final norm, and the LM head unless it is the embedding.
    pub fn parameters(&self) -> usize {
        let tied = std::ptr::eq(self.embed.buffer(), self.lm_head.buffer());
        self.embed.numel()
            + self.norm_f.numel()
            + self.norm_f_bias.as_ref().map_or(0, Tensor::numel)
            + if tied { 0 } else { self.lm_head.numel() }
    }

    /// Mamba's and Mamba-2's head (`backbone.*`).
    pub fn load(dev: &Device, w: &Weights, vocab: usize, d: usize, tie: bool, dtype: DType) -> Result<Self> {
        Self::load_named(dev, w, HeadNames::BACKBONE, vocab, d, tie, dtype)
    }

    /// The head under `names`; no embedding scale or logit cap (set the fields after).
    pub fn load_named(
        dev: &Device,
        w: &Weights,
        names: HeadNames,
        vocab: usize,
        d: usize,
        tie: bool,
        dtype: DType,
    ) -> Result<Self> {
        if !tie && !w.has(names.lm_head) {
            return Err(Error::Model(format!(
                "tie_word_embeddings is false but the checkpoint has no {}",
                names.lm_head
            )));
        }
        if tie && w.has(names.lm_head) {
            log::warn!("tie_word_embeddings is true: the checkpoint's lm_head.weight is ignored, as transformers does");
        }
        // The table is held as `dtype` like the other matrices; tied, the LM head is the same
        // device tensor (one copy of the largest matrix of a small model).
        let embed = w.upload(dev, names.embed, &[vocab, d], &[vocab, d], dtype)?;
        let lm_head =
            if !tie { w.upload(dev, names.lm_head, &[vocab, d], &[vocab, d], dtype)? } else { embed.clone() };
        let norm_f = w.norm(dev, names.norm, d, names.norm_plus_one)?;
        Ok(Self { embed, lm_head, norm_f, norm_f_bias: None, embed_scale: None, soft_cap: None })
    }
}

/// Checks a checkpoint before anything is allocated or uploaded: the layer count against its
/// `{prefix}{i}.` tensors (a larger count would allocate for layers that do not exist, a
/// smaller one would run a truncated model), the norm's epsilon, and every tensor of the
/// architecture's `schema` (name and shape).
pub fn check_config(
    w: &Weights,
    prefix: &str,
    layers: usize,
    eps: f64,
    schema: &[super::schema::WeightSpec],
) -> Result<()> {
    let mut found = std::collections::BTreeSet::new();
    for name in w.names() {
        if let Some(i) =
            name.strip_prefix(prefix).and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok())
        {
            found.insert(i);
        }
    }
    let count = found.len();
    if layers != count || found.last().is_some_and(|&last| last + 1 != count) {
        return Err(Error::Model(format!(
            "num_hidden_layers is {layers} but the checkpoint has {count} layers under `{prefix}N.`{}",
            if found.last().is_some_and(|&l| l + 1 != count) { " (not numbered 0..N)" } else { "" }
        )));
    }
    check_eps(eps)?;
    super::schema::check(w, schema)
}

/// A norm epsilon must be a positive finite number.
pub fn check_eps(eps: f64) -> Result<()> {
    if !(eps > 0.0 && eps.is_finite() && eps < 1.0) {
        return Err(Error::Model(format!("layer_norm_epsilon {eps} must be a small positive number")));
    }
    Ok(())
}

/// Rows `[lo, hi)` of a matrix (or vector) uploaded whole as `full` from `host`: a view of the
/// same buffer where its offset can be bound (no second copy of the weights), else a copy.
pub fn rows(dev: &Device, full: &Tensor, lo: usize, hi: usize) -> Result<Tensor> {
    let cols = full.numel() / full.shape()[0];
    let mut shape = full.shape().to_vec();
    shape[0] = hi - lo;
    match full.view(dev, lo * cols, &shape) {
        Ok(v) => Ok(v),
        // The offset cannot be bound: copy the rows out (read back once, at load time).
        Err(_) => Tensor::from_f32(dev, &shape, &full.read_f32(dev)?[lo * cols..hi * cols], full.dtype()),
    }
}

/// The sum of sequence lengths, or an error when it overflows (lengths come from callers).
pub fn total_tokens(lens: &[usize]) -> Result<usize> {
    lens.iter()
        .try_fold(0usize, |t, &l| t.checked_add(l))
        .ok_or_else(|| Error::Limit(format!("sequence lengths {lens:?} overflow the token count")))
}

/// What one recorded forward pass runs: the ids tensor, each sequence's length, whether it is
/// a decode step, and optionally the token rows whose logits are wanted (all when `None`).
pub struct Batch<'a> {
    pub ids: &'a Tensor,
    pub lens: &'a [usize],
    pub step: bool,
    pub rows: Option<&'a Tensor>,
    /// The sequence table (the decode layout for a step).
    pub seqs: Sequences,
}

impl<'a> Batch<'a> {
    pub fn new(
        dev: &Device,
        ids: &'a Tensor,
        lens: &'a [usize],
        step: bool,
        rows: Option<&'a Tensor>,
    ) -> Result<Self> {
        let seqs =
            if step { Sequences::decode(dev, lens.len(), None)? } else { Sequences::new(dev, lens, None)? };
        Ok(Self { ids, lens, step, rows, seqs })
    }

    /// Adds the causal conv + silu of `x` [T, C]: the rolling-state step for a decode step,
    /// else the prefill conv continuing from the state when it has started.
    pub fn conv(
        &self,
        b: &mut Builder,
        x: TensorId,
        weight: &Tensor,
        bias: Option<&Tensor>,
        state: &Tensor,
        started: bool,
    ) -> Result<TensorId> {
        self.conv_act(b, x, (weight, bias), state, started, true)
    }

    /// [`Batch::conv`] with the silu optional (Griffin's conv has none).
    pub fn conv_act(
        &self,
        b: &mut Builder,
        x: TensorId,
        (weight, bias): (&Tensor, Option<&Tensor>),
        state: &Tensor,
        started: bool,
        silu: bool,
    ) -> Result<TensorId> {
        let k = b.g.nodes().len();
        let mut ins =
            vec![x, b.weight(&format!("conv{k}.weight"), weight), b.state(&format!("conv{k}.state"), state)];
        ins.push(b.seqs(&self.seqs));
        if let Some(bias) = bias {
            ins.push(b.weight(&format!("conv{k}.bias"), bias));
        }
        let node = ConvNode { seqs: SeqSpec::of(&self.seqs), step: self.step, silu, init: started };
        b.g.op(node, &ins)
    }
}

/// A forward pass under construction: the graph, and the device tensors its weights, state
/// and inputs are bound to (see [`Executable::with_bound`]).
pub struct Builder {
    pub g: Graph,
    pub bound: Vec<(TensorId, Tensor)>,
    /// The sequence table's input, once bound ([`Builder::seqs`]).
    seqs: Option<(TensorId, Tensor)>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    pub fn new() -> Self {
        Self { g: Graph::new(), bound: Vec::new(), seqs: None }
    }

    /// A weight of the graph bound to `t`.
    pub fn weight(&mut self, name: &str, t: &Tensor) -> TensorId {
        let id = self.g.weight(name, t.shape(), t.dtype());
        self.bound.push((id, t.clone()));
        id
    }

    /// A decode step's fused input side ([`crate::graph::nodes::InStepNode`]) of layer `p`:
    /// RMSNorm of `h`, in_proj (`w_in`, `b_in`) and the conv step over the output columns from
    /// `lo` (`conv_w`, `conv_b`, the conv state slot `conv_state`).
    #[allow(clippy::too_many_arguments)]
    pub fn in_step(
        &mut self,
        p: &str,
        h: TensorId,
        (norm, eps): (&Tensor, f64),
        (w_in, b_in): (&Tensor, Option<&Tensor>),
        (conv_w, conv_b): (&Tensor, Option<&Tensor>),
        conv_state: &Tensor,
        lo: usize,
    ) -> Result<TensorId> {
        let mut ins = vec![
            h,
            self.weight(&format!("{p}.norm"), norm),
            self.weight(&format!("{p}.in_proj"), w_in),
            self.weight(&format!("{p}.conv1d"), conv_w),
            self.state(&format!("{p}.conv_state"), conv_state),
        ];
        if let Some(bias) = b_in {
            ins.push(self.weight(&format!("{p}.in_proj.bias"), bias));
        }
        if let Some(cb) = conv_b {
            ins.push(self.weight(&format!("{p}.conv1d.bias"), cb));
        }
        let node =
            crate::graph::nodes::InStepNode { lo, eps, bias: b_in.is_some(), conv_bias: conv_b.is_some() };
        self.g.op(node, &ins)
    }

    /// Recurrent state bound to `t` (f32, or the u32 positions; read and written in place by
    /// the nodes).
    pub fn state(&mut self, name: &str, t: &Tensor) -> TensorId {
        let id = self.g.state_of(name, t.shape(), t.dtype());
        self.bound.push((id, t.clone()));
        id
    }

    /// The packed-sequence table of the batch, one graph input however many nodes read it.
    pub fn seqs(&mut self, seqs: &Sequences) -> TensorId {
        let table = seqs.table();
        match &self.seqs {
            Some((id, t)) if std::ptr::eq(t.buffer(), table.buffer()) && t.offset() == table.offset() => *id,
            _ => {
                let id = self.input("seqs", table);
                self.seqs = Some((id, table.clone()));
                id
            }
        }
    }

    /// An input of the graph bound to `t` (written by the caller before each run).
    pub fn input(&mut self, name: &str, t: &Tensor) -> TensorId {
        let id = self.g.input(name, t.shape(), t.dtype());
        self.bound.push((id, t.clone()));
        id
    }

    /// RMSNorm of `x` with `w` bound as a weight.
    pub fn rms_norm(&mut self, name: &str, x: TensorId, w: &Tensor, eps: f64) -> Result<TensorId> {
        let w = self.weight(name, w);
        self.g.rms_norm(x, w, eps as f32)
    }

    /// LayerNorm of `x` with `w` and `bias` bound as weights.
    pub fn layer_norm(
        &mut self,
        name: &str,
        x: TensorId,
        w: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Result<TensorId> {
        let w = self.weight(name, w);
        let bias = self.weight(&format!("{name}.bias"), bias);
        self.g.norm(crate::ops::norm::NormKind::Layer, x, w, Some(bias), eps as f32)
    }

    /// x·Wᵀ + b with `w` and `b` bound as weights.
    pub fn linear(&mut self, name: &str, x: TensorId, w: &Tensor, b: Option<&Tensor>) -> Result<TensorId> {
        let w = self.weight(name, w);
        let b = b.map(|b| self.weight(&format!("{name}.bias"), b));
        self.g.linear(x, w, b)
    }

    /// r + x·Wᵀ + b (the residual add fused into the matmul).
    pub fn linear_add(
        &mut self,
        name: &str,
        x: TensorId,
        w: &Tensor,
        b: Option<&Tensor>,
        r: TensorId,
    ) -> Result<TensorId> {
        let w = self.weight(name, w);
        let b = b.map(|b| self.weight(&format!("{name}.bias"), b));
        self.g.linear_add(x, w, b, r)
    }

    /// r + RMSNorm(x·Wᵀ + b): a sublayer's output projection with its norm after it (OLMo-2's
    /// post-norm order), where [`Builder::linear_add`] serves the pre-norm one.
    pub fn linear_norm_add(
        &mut self,
        name: &str,
        x: TensorId,
        (w, b): (&Tensor, Option<&Tensor>),
        norm: &Tensor,
        eps: f64,
        r: TensorId,
    ) -> Result<TensorId> {
        let y = self.linear(name, x, w, b)?;
        let yn = self.rms_norm(&format!("{name}.post_norm"), y, norm, eps)?;
        self.g.add(r, yn)
    }

    /// Plans, allocates and records the graph with `outputs` marked.
    pub fn finish<'d>(mut self, dev: &'d Device, outputs: &[TensorId]) -> Result<Executable<'d>> {
        for &o in outputs {
            self.g.output(o);
        }
        Executable::with_bound(dev, self.g, &PlanOptions::for_device(dev.caps()), self.bound)
    }
}
