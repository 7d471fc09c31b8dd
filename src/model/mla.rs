//! Multi-head latent attention (MLA, DeepSeek-V2's) as Kimi-Linear uses it, with no positional
//! encoding: per token a latent c = kv_a_proj_with_mqa(x) of `kv_rank` + `rope` dims; the first
//! part, RMS-normalised (`kv_a_layernorm`), expands through `kv_b_proj` into each head's key
//! part (`nope` dims) and value (`v` dims); the second part is a key part all heads share. A
//! head's query has `nope` + `rope` dims, from `q_proj`, or with `q_lora_rank` from the low-rank
//! `q_b_proj(q_a_layernorm(q_a_proj(x)))`; scale 1/√(nope + rope). The two latent norms take
//! transformers' default eps (1e-6), not `rms_norm_eps`.
//!
//! The attention kernels take one head dim for q, k and v, so each head is laid out in D dims
//! (the smallest kernel dim that holds both), zero-padded: q = [q, 0], k = [k_nope, k_shared,
//! 0], v = [v, 0]; the zeros change neither the scores nor the first `v` dims of the output,
//! which a gather takes for o_proj. The cache holds these expanded keys and values (not the
//! latent, which would take a quarter of the memory at Kimi-Linear's sizes).

use super::attention::CacheAttention;
use super::blocks::Sublayer;
use super::common::{Batch, Builder};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::GatherNode;
use crate::graph::TensorId;
use crate::ops::attention::{AttnDims, HEAD_DIMS, KV_BLOCKS};
use crate::ops::gather::{self, Pick};
use crate::tensor::{DType, Tensor};

/// An MLA layer's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MlaSpec {
    pub d_model: usize,
    pub heads: usize,
    /// Per-head key dims from the latent (`qk_nope_head_dim`).
    pub nope: usize,
    /// Key dims all heads share (`qk_rope_head_dim`; no rotary is applied).
    pub rope: usize,
    pub v: usize,
    pub kv_rank: usize,
    /// `q_lora_rank`: the query through a normalised latent of this width.
    pub q_rank: Option<usize>,
    pub eps: f64,
    pub max_positions: usize,
}

impl MlaSpec {
    /// The kernels' head dim that holds a head's q / k (nope + rope) and v.
    pub fn head_dim(&self) -> Result<usize> {
        let need = (self.nope + self.rope).max(self.v);
        HEAD_DIMS.into_iter().find(|&d| d >= need).ok_or_else(|| {
            Error::Model(format!(
                "MLA head dims {} + {} (v {}) exceed the attention kernels' largest head dim {}",
                self.nope,
                self.rope,
                self.v,
                HEAD_DIMS[HEAD_DIMS.len() - 1]
            ))
        })
    }

    pub fn check(&self) -> Result<()> {
        if self.heads == 0 || self.nope == 0 || self.v == 0 || self.kv_rank == 0 || self.q_rank == Some(0) {
            return Err(Error::Model(format!("MLA dims must be positive: {self:?}")));
        }
        self.head_dim().map(|_| ())
    }

    fn dims(&self) -> Result<AttnDims> {
        Ok(AttnDims { heads: self.heads, kv_heads: self.heads, head_dim: self.head_dim()? })
    }

    fn cap(&self) -> usize {
        self.max_positions.div_ceil(KV_BLOCKS).max(1).next_multiple_of(64)
    }

    /// Where each column of the attention's qkv rows comes from: q `[T, H·(nope + rope)]`
    /// (source 0), kv_b's output `[T, H·(nope + v)]` (1), the shared key part `[T, rope]` (2).
    fn qkv_picks(&self, d: usize) -> Vec<Pick> {
        let (h, qk, kv) = (self.heads, self.nope + self.rope, self.nope + self.v);
        let mut out = Vec::with_capacity(3 * h * d);
        for head in 0..h {
            out.extend((0..d).map(|c| {
                if c < qk {
                    Pick::From { src: 0, col: head * qk + c }
                } else {
                    Pick::Zero
                }
            }));
        }
        for head in 0..h {
            out.extend((0..d).map(|c| match c {
                c if c < self.nope => Pick::From { src: 1, col: head * kv + c },
                c if c < qk => Pick::From { src: 2, col: c - self.nope },
                _ => Pick::Zero,
            }));
        }
        for head in 0..h {
            out.extend((0..d).map(|c| {
                if c < self.v {
                    Pick::From { src: 1, col: head * kv + self.nope + c }
                } else {
                    Pick::Zero
                }
            }));
        }
        out
    }

    /// The first `v` of each head's D output dims.
    fn out_picks(&self, d: usize) -> Vec<Pick> {
        (0..self.heads)
            .flat_map(|h| (0..self.v).map(move |c| Pick::From { src: 0, col: h * d + c }))
            .collect()
    }
}

/// The latent norms' eps (transformers builds `q_a_layernorm` and `kv_a_layernorm` with its
/// RMSNorm's default).
const LATENT_EPS: f64 = 1e-6;

/// Where a head's query comes from.
enum Query {
    /// `q_proj`.
    Full(Tensor),
    /// `q_b_proj(q_a_layernorm(q_a_proj(x)))`.
    LowRank { a: Tensor, norm: Tensor, b: Tensor },
}

/// One MLA layer, loaded.
pub struct MlaMixer {
    c: MlaSpec,
    dims: AttnDims,
    norm: Tensor,
    q: Query,
    /// kv_a_proj_with_mqa's rows, cut into the latent's and the shared key part's.
    w_latent: Tensor,
    w_shared: Tensor,
    latent_norm: Tensor,
    w_kv_b: Tensor,
    w_o: Tensor,
    qkv_picks: Vec<Pick>,
    qkv_table: Tensor,
    out_picks: Vec<Pick>,
    out_table: Tensor,
}

impl MlaMixer {
    /// The tensors: the norm `norm_name`, then `{p}.*`.
    pub fn schema(c: &MlaSpec, norm_name: &str, p: &str) -> Vec<WeightSpec> {
        let (d, h) = (c.d_model, c.heads);
        let mut t = vec![WeightSpec::new(norm_name, &[d], Init::Uniform(0.9, 1.1))];
        match c.q_rank {
            None => t.push(WeightSpec::new(
                format!("{p}.q_proj.weight"),
                &[h * (c.nope + c.rope), d],
                Init::FanIn,
            )),
            Some(r) => t.extend([
                WeightSpec::new(format!("{p}.q_a_proj.weight"), &[r, d], Init::FanIn),
                WeightSpec::new(format!("{p}.q_a_layernorm.weight"), &[r], Init::Uniform(0.9, 1.1)),
                WeightSpec::new(format!("{p}.q_b_proj.weight"), &[h * (c.nope + c.rope), r], Init::FanIn),
            ]),
        }
        t.extend([
            WeightSpec::new(format!("{p}.kv_a_proj_with_mqa.weight"), &[c.kv_rank + c.rope, d], Init::FanIn),
            WeightSpec::new(format!("{p}.kv_a_layernorm.weight"), &[c.kv_rank], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.kv_b_proj.weight"), &[h * (c.nope + c.v), c.kv_rank], Init::FanIn),
            WeightSpec::new(format!("{p}.o_proj.weight"), &[d, h * c.v], Init::FanIn),
        ]);
        t
    }

    /// Loads the layer under `p` with its norm `norm_name`; matrices as `dtype`.
    pub fn load(
        dev: &Device,
        w: &Weights,
        c: &MlaSpec,
        norm_name: &str,
        p: &str,
        dtype: DType,
    ) -> Result<Self> {
        c.check()?;
        let dims = c.dims()?;
        let (d, h) = (c.d_model, c.heads);
        let (kv_a, _) = w.f32(&format!("{p}.kv_a_proj_with_mqa.weight"), Some(&[c.kv_rank + c.rope, d]))?;
        let (latent, shared) = kv_a.split_at(c.kv_rank * d);
        let qkv_picks = c.qkv_picks(dims.head_dim);
        let out_picks = c.out_picks(dims.head_dim);
        let qkv_widths = [h * (c.nope + c.rope), h * (c.nope + c.v), c.rope.max(1)];
        let table = |picks: &[Pick], widths: &[usize]| -> Result<Tensor> {
            Tensor::from_slice(dev, &[picks.len()], &gather::table(picks, widths)?)
        };
        let mat = |name: &str, rows: usize, cols: usize| {
            w.upload(dev, &format!("{p}.{name}.weight"), &[rows, cols], &[rows, cols], dtype)
        };
        Ok(Self {
            dims,
            norm: w.norm(dev, norm_name, d, false)?,
            q: match c.q_rank {
                None => Query::Full(mat("q_proj", h * (c.nope + c.rope), d)?),
                Some(r) => Query::LowRank {
                    a: mat("q_a_proj", r, d)?,
                    norm: w.norm(dev, &format!("{p}.q_a_layernorm.weight"), r, false)?,
                    b: mat("q_b_proj", h * (c.nope + c.rope), r)?,
                },
            },
            w_latent: Tensor::from_f32(dev, &[c.kv_rank, d], latent, dtype)?,
            w_shared: Tensor::from_f32(dev, &[c.rope.max(1), d], &shared_rows(shared, c.rope, d), dtype)?,
            latent_norm: w.norm(dev, &format!("{p}.kv_a_layernorm.weight"), c.kv_rank, false)?,
            w_kv_b: mat("kv_b_proj", h * (c.nope + c.v), c.kv_rank)?,
            w_o: mat("o_proj", d, h * c.v)?,
            qkv_table: table(&qkv_picks, &qkv_widths)?,
            out_table: table(&out_picks, &[h * dims.head_dim])?,
            qkv_picks,
            out_picks,
            c: c.clone(),
        })
    }
}

/// The shared key part's rows (one zero row when there are none, which nothing reads).
fn shared_rows(shared: &[f32], rope: usize, d: usize) -> Vec<f32> {
    if rope == 0 {
        vec![0.0; d]
    } else {
        shared.to_vec()
    }
}

impl Sublayer for MlaMixer {
    /// The cache's blocks `[S, cap, 2, H, D]` (full attention).
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        let cap = self.c.cap();
        let kind = SlotKind::KvBlocks { block: cap };
        vec![SlotSpec::new(layer, "kv", kind, &[s, cap, 2, self.dims.kv_heads, self.dims.head_dim])]
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
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, c.eps)?;
        let q = match &self.q {
            Query::Full(w) => b.linear(&format!("{p}.q"), xn, w, None)?,
            Query::LowRank { a, norm, b: up } => {
                let q = b.linear(&format!("{p}.q_a"), xn, a, None)?;
                let q = b.rms_norm(&format!("{p}.q_a_norm"), q, norm, LATENT_EPS)?;
                b.linear(&format!("{p}.q_b"), q, up, None)?
            }
        };
        let latent = b.linear(&format!("{p}.latent"), xn, &self.w_latent, None)?;
        let latent = b.rms_norm(&format!("{p}.latent_norm"), latent, &self.latent_norm, LATENT_EPS)?;
        let kv = b.linear(&format!("{p}.kv_b"), latent, &self.w_kv_b, None)?;
        let shared = b.linear(&format!("{p}.shared"), xn, &self.w_shared, None)?;
        let table = b.weight(&format!("{p}.qkv_table"), &self.qkv_table);
        let qkv = b.g.op(GatherNode { picks: self.qkv_picks.clone() }, &[q, kv, shared, table])?;
        let attend = CacheAttention {
            layer: i,
            prefix: &p,
            dims: self.dims,
            window: None,
            scale: 1.0 / ((c.nope + c.rope) as f32).sqrt(),
            softcap: None,
            f16_ok: self.w_o.dtype() == DType::F16,
        };
        let y = attend.build(dev, b, batch, state, qkv)?;
        let table = b.weight(&format!("{p}.out_table"), &self.out_table);
        let y = b.g.op(GatherNode { picks: self.out_picks.clone() }, &[y, table])?;
        b.linear_add(&format!("{p}.o_proj"), y, &self.w_o, None, h)
    }

    fn parameters(&self) -> usize {
        let q: Vec<&Tensor> = match &self.q {
            Query::Full(w) => vec![w],
            Query::LowRank { a, norm, b } => vec![a, norm, b],
        };
        [&self.norm, &self.w_latent, &self.w_shared, &self.latent_norm, &self.w_kv_b, &self.w_o]
            .into_iter()
            .chain(q)
            .map(|t| t.numel())
            .sum()
    }
}
