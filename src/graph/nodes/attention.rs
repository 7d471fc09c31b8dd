//! The attention family as graph nodes: RoPE in place on the fused qkv rows, attention with
//! its cache append, and the position advance that ends a forward pass. The cache and the
//! positions are `State` inputs; the decode partials are planned scratch.

use super::super::{NodeOp, TensorDesc};
use super::{expect_state, SeqSpec};
use crate::error::{Error, Result};
use crate::ops::attention::{self as attn, AttnArgs, AttnDims, KvCache, RingRef};
use crate::ops::{rope, Recorder};
use crate::tensor::{DType, Tensor};

fn usizes(v: &[f64]) -> Vec<usize> {
    v.iter().map(|&x| x as usize).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// RoPE of `rot` dims on the q and k heads of qkv `[T, row]`, in place where the planner
/// allows, after their RMSNorm when `norm` is set (eps, over all heads together: one pass for
/// both). Inputs: qkv, inv_freq `[rot / 2]`, positions `[S]` (state), the sequence table, and
/// with `norm` the q/k norm weight `[(H + Hkv)·D]`.
#[derive(Debug)]
pub struct RopeNode {
    pub seqs: SeqSpec,
    pub dims: AttnDims,
    pub rot: usize,
    pub norm: Option<(f32, bool)>,
}

impl NodeOp for RopeNode {
    fn name(&self) -> &str {
        if self.norm.is_some() {
            "head_norm_rope"
        } else {
            "rope"
        }
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        let want = if self.norm.is_some() { 5 } else { 4 };
        if ins.len() != want {
            return Err(Error::Shape(format!(
                "{} takes qkv, inv_freq, positions, seqs{}",
                self.name(),
                if self.norm.is_some() { " and the q/k norm weight" } else { "" }
            )));
        }
        expect_state("rope", ins[2])?;
        super::activations("rope", &ins[..1], &[DType::F32])?;
        Ok((ins[0].shape.clone(), DType::F32))
    }
    fn inplace_input(&self) -> Option<usize> {
        Some(0)
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[3])?;
        if !(std::ptr::eq(ins[0].buffer(), out.buffer()) && ins[0].offset() == out.offset()) {
            crate::ops::copy::copy(rec, ins[0], out)?;
        }
        let r = rope::Rotary { rot: self.rot, inv_freq: ins[1], seqs: &seqs, pos: ins[2] };
        match self.norm {
            None => rope::rope(rec, out, self.dims, r),
            Some((eps, whole)) => {
                rope::head_norm(rec, out, self.dims, rope::QkNorm { w: ins[4], eps, whole }, Some(r))
            }
        }
    }
    fn reference(&self, ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let mut x = f32s(ins[0]);
        if let Some((eps, whole)) = self.norm {
            x = f32s(&rope::head_norm_ref(&x, self.dims, &f32s(ins[4]), eps as f64, whole));
        }
        let out = rope::rope_ref(&x, self.dims, self.rot, &f32s(ins[1]), &self.seqs.cu, &usizes(ins[2]));
        Some(Ok(out))
    }
}

/// Attention of the new tokens and the append of their K and V to the cache. Inputs: qkv
/// `[T, row]` (RoPE'd), the cache (one ring, or `kv_blocks` blocks, each `[S, cap, 2, Hkv,
/// D]`) and positions `[S]` (state), the sequence table. A decode step (`step`) takes the
/// flash-decoding kernels, whose partials are scratch.
#[derive(Debug)]
pub struct AttentionNode {
    pub seqs: SeqSpec,
    pub dims: AttnDims,
    pub window: Option<usize>,
    /// Positions of the ring, or of each block.
    pub cap: usize,
    /// The cache is this many blocks of a growing cache (None: a ring).
    pub kv_blocks: Option<usize>,
    pub scale: f32,
    pub softcap: Option<f32>,
    pub step: bool,
    /// The prefill kernel (unused by a decode step).
    pub prefill: attn::PrefillKernel,
}

impl AttentionNode {
    /// Cache tensors among the inputs (after qkv).
    fn kv_tensors(&self) -> usize {
        self.kv_blocks.unwrap_or(1)
    }

    fn span(&self) -> usize {
        let capacity = self.cap * self.kv_tensors();
        self.window.unwrap_or(capacity).min(capacity)
    }
}

impl NodeOp for AttentionNode {
    fn name(&self) -> &str {
        "attention"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        let n = self.kv_tensors();
        if ins.len() != 3 + n || n == 0 {
            return Err(Error::Shape(format!("attention takes qkv, {n} kv cache tensors, positions, seqs")));
        }
        for t in &ins[1..=n + 1] {
            expect_state("attention", t)?;
        }
        super::activations("attention", &ins[..1], &[DType::F32])?;
        Ok((vec![ins[0].shape[0], self.dims.heads * self.dims.head_dim], DType::F32))
    }
    fn scratch(&self, _ins: &[&TensorDesc]) -> Vec<(Vec<usize>, DType)> {
        if !self.step {
            return Vec::new();
        }
        vec![(attn::partial_shape(self.dims, self.seqs.cu.len() - 1, self.span()), DType::F32)]
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let n = self.kv_tensors();
        let seqs = self.seqs.bind(ins[n + 2])?;
        let blocks = &ins[1..=n];
        let a = AttnArgs {
            qkv: ins[0],
            kv: if self.kv_blocks.is_some() { KvCache::Blocks(blocks) } else { KvCache::Ring(blocks[0]) },
            pos: ins[n + 1],
            seqs: &seqs,
            dims: self.dims,
            window: self.window,
            cap: self.cap,
            scale: self.scale,
            softcap: self.softcap,
            prefill: self.prefill,
        };
        match (self.step, scratch) {
            (true, [part]) => attn::attention_decode(rec, &a, part, out)?,
            (true, _) => return Err(Error::Invalid("attention decode needs its partials scratch".into())),
            (false, _) => attn::attention_prefill(rec, &a, out)?,
        }
        attn::kv_append(rec, &a)
    }
    fn reference(&self, ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        // Blocks read as one ring of all their positions, which never wraps.
        let n = self.kv_tensors();
        let (qkv, kv) = (f32s(ins[0]), attn::join_blocks(&ins[1..=n], self.seqs.cu.len() - 1));
        let (out, _) = attn::ring_attention_ref(&RingRef {
            qkv: &qkv,
            kv: &kv,
            pos: &usizes(ins[n + 1]),
            cu: &self.seqs.cu,
            dims: self.dims,
            window: self.window,
            cap: self.cap * n,
            scale: self.scale as f64,
            softcap: self.softcap.map(f64::from),
        });
        Some(Ok(out))
    }
}

/// `pos[s] += len_s`: the last node of a forward pass with attention. Inputs: positions `[S]`
/// (state), the sequence table, then any tensors it must follow (so it is placed after every
/// reader of the positions). Its output `[1]` is a marker.
#[derive(Debug)]
pub struct AdvanceNode {
    pub seqs: SeqSpec,
}

impl NodeOp for AdvanceNode {
    fn name(&self) -> &str {
        "advance_positions"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() < 2 {
            return Err(Error::Shape("advance_positions takes positions, seqs [, after…]".into()));
        }
        expect_state("advance_positions", ins[0])?;
        Ok((vec![1], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], _out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[1])?;
        attn::advance_positions(rec, &seqs, ins[0])
    }
    fn reference(&self, _ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        Some(Ok(vec![0.0]))
    }
}
