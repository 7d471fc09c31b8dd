//! Attention benchmarks: the prefill on the shapes (PyTorch's SDPA is the peer,
//! `tools/peer_sdpa.py`), the sliding-window prefill against L (its scaling exponent), and the
//! ring-cache decode step against the sequence's position (flat: the ring holds W positions).

use super::{copy_roofline, measure, row, BenchConfig, BenchRow, Variants, Work};
use crate::device::Device;
use crate::error::Result;
use crate::ops::attention::{self as attn, cases::AttnCase, AttnArgs, AttnDims};
use crate::ops::sequences::Sequences;
use crate::ops::Recorder;
use crate::tensor::{DType, Tensor};
use crate::testing::{compare, Rng};

/// Device tensors of one prefill case, from a fresh cache.
struct Inputs {
    qkv_host: Vec<f32>,
    qkv: Tensor,
    kv: Tensor,
    pos: Tensor,
    seqs: Sequences,
    out: Tensor,
    cap: usize,
}

impl Inputs {
    fn new(dev: &Device, c: &AttnCase, rng: &mut Rng) -> Result<Self> {
        let d = c.dims;
        let t = c.tokens();
        let s = c.lens.len();
        // The prefill never reads a fresh cache, but its shape must fit the window (or L).
        let cap = c.window.unwrap_or_else(|| c.lens.iter().copied().max().unwrap_or(1));
        let qkv_host = c.qkv(rng);
        Ok(Self {
            qkv: Tensor::from_slice(dev, &[t, d.row()], &qkv_host)?,
            qkv_host,
            kv: Tensor::empty(dev, &[s, cap, 2, d.kv_heads, d.head_dim], DType::F32)?,
            pos: Tensor::from_slice(dev, &[s], &vec![0u32; s])?,
            seqs: Sequences::new(dev, &c.lens, None)?,
            out: Tensor::empty(dev, &[t, d.heads * d.head_dim], DType::F32)?,
            cap,
        })
    }

    fn args<'a>(&'a self, c: &AttnCase, prefill: attn::PrefillKernel) -> AttnArgs<'a> {
        AttnArgs {
            qkv: &self.qkv,
            kv: attn::KvCache::Ring(&self.kv),
            pos: &self.pos,
            seqs: &self.seqs,
            dims: c.dims,
            window: c.window,
            cap: self.cap,
            scale: 1.0 / (c.dims.head_dim as f32).sqrt(),
            softcap: c.softcap,
            prefill,
        }
    }

    /// Whether the first and the last 32 queries of the first sequence agree with the f64
    /// reference (within `nmse`: f32 or f16 rounding, by kernel). The first see few keys, so a
    /// wrong mask or weight shows there; the last cover the deepest tiles.
    fn agrees(&self, dev: &Device, c: &AttnCase, nmse: f64) -> Result<bool> {
        let d = c.dims;
        let (row, hd, kvd) = (d.row(), d.heads * d.head_dim, d.kv_heads * d.head_dim);
        let l = c.lens[0];
        let n = l.min(32);
        let rows: Vec<&[f32]> = self.qkv_host[..l * row].chunks(row).collect();
        let k: Vec<f32> = rows.iter().flat_map(|r| r[hd..hd + kvd].iter().copied()).collect();
        let v: Vec<f32> = rows.iter().flat_map(|r| r[hd + kvd..].iter().copied()).collect();
        let scale = 1.0 / (d.head_dim as f64).sqrt();
        let got = self.out.read::<f32>(dev)?;
        let mut ok = true;
        for q0 in [0, l - n] {
            let q: Vec<f32> = rows[q0..q0 + n].iter().flat_map(|r| r[..hd].iter().copied()).collect();
            // Keys up to the last query of the range: the reference sees no later ones.
            let keys = (q0 + n) * kvd;
            let want = attn::attention_ref(
                &q,
                &k[..keys],
                &v[..keys],
                q0,
                d,
                c.window,
                scale,
                c.softcap.map(f64::from),
            );
            let c = compare(&got[q0 * hd..(q0 + n) * hd], &want);
            ok &= c.nonfinite_mismatches == 0 && c.nmse < nmse;
        }
        Ok(ok)
    }
}

/// The prefill on each case (full causal from a fresh cache, or windowed).
pub fn prefill(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    cases: &[AttnCase],
) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let mut rng = Rng::new(31);
    for c in cases {
        let d = c.dims;
        let inp = Inputs::new(dev, c, &mut rng)?;
        for kernel in attn::PrefillKernel::ALL.into_iter().filter(|k| k.runs(dev.caps(), d.head_dim)) {
            let name =
                kernel.name().replacen("attention.prefill", &format!("attention.prefill.d{}", d.head_dim), 1);
            if !variants.matches(&name) {
                continue;
            }
            let mut rec = Recorder::new(dev);
            attn::attention_prefill(&mut rec, &inp.args(c, kernel), &inp.out)?;
            let stats = measure(&rec.finish(), 1, cfg)?;
            let bytes = (c.tokens() * (d.row() + d.heads * d.head_dim) * 4) as f64;
            let f16 = kernel.uses_f16();
            let ok = inp.agrees(dev, c, if f16 { 1e-5 } else { 1e-8 })?;
            let work = Work { bytes, flops: c.flops() };
            rows.push(row("attention", &name, c.describe(), stats, work, roof, Some(ok)));
        }
    }
    Ok(rows)
}

/// The sliding-window prefill at batch 1 from L = 1K doubling to `max_len`.
pub fn window_scaling(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    max_len: usize,
    window: usize,
) -> Result<Vec<BenchRow>> {
    let mut cases = Vec::new();
    let mut l = 1024;
    while l <= max_len {
        // H 8/1: at 256K tokens an f32 qkv of H 16/2 would pass a 2 GiB binding.
        cases.push(AttnCase::new(&[l], 8, 1, 128, Some(window)));
        l *= 2;
    }
    prefill(dev, cfg, variants, &cases)
}

/// The decode step of `batch` sequences at positions `positions` with a ring of `window`.
pub fn ring_decode(
    dev: &Device,
    cfg: BenchConfig,
    positions: &[usize],
    window: usize,
    batch: usize,
) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let d = AttnDims { heads: 32, kv_heads: 8, head_dim: 128 };
    let mut rng = Rng::new(32);
    for &p in positions {
        let qkv = Tensor::from_slice(dev, &[batch, d.row()], &rng.vec(batch * d.row(), -1.0, 1.0))?;
        let kv_n = batch * window * 2 * d.kv_heads * d.head_dim;
        let kv =
            Tensor::from_slice(dev, &[batch, window, 2, d.kv_heads, d.head_dim], &rng.vec(kv_n, -1.0, 1.0))?;
        let pos = Tensor::from_slice(dev, &[batch], &vec![p as u32; batch])?;
        let seqs = Sequences::decode(dev, batch, None)?;
        let out = Tensor::empty(dev, &[batch, d.heads * d.head_dim], DType::F32)?;
        let a = AttnArgs {
            qkv: &qkv,
            kv: attn::KvCache::Ring(&kv),
            pos: &pos,
            seqs: &seqs,
            dims: d,
            window: Some(window),
            cap: window,
            scale: 0.088,
            softcap: None,
            prefill: attn::PrefillKernel::Plain,
        };
        let part = Tensor::empty(dev, &attn::partial_shape(d, batch, window), DType::F32)?;
        let inner = if cfg.quick { 2 } else { 50 };
        let mut rec = Recorder::new(dev);
        for _ in 0..inner {
            attn::attention_decode(&mut rec, &a, &part, &out)?;
        }
        let stats = measure(&rec.finish(), inner, cfg)?;
        let bytes = (kv_n * 4) as f64;
        let keys = window.min(p + 1);
        let flops = (4 * batch * d.heads * d.head_dim * keys) as f64;
        let shape = format!("B={batch} pos={p} W={window} H={}/{} D={}", d.heads, d.kv_heads, d.head_dim);
        rows.push(row(
            "attention-decode",
            &format!("attention.decode.d{}", d.head_dim),
            shape,
            stats,
            Work { bytes, flops },
            roof,
            None,
        ));
    }
    Ok(rows)
}
