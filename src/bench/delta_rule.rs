//! Delta-rule benchmarks: the recurrent and the chunked kernels on Qwen3-Next-shaped layers
//! (fla's `chunk_gated_delta_rule` is the peer, `tools/peer_fla_gdn.py`).

use super::{copy_roofline, measure, row, BenchConfig, BenchRow, Variants, Work};
use crate::device::Device;
use crate::error::Result;
use crate::ops::delta_rule::{self as dr, cases, DeltaArgs, DeltaDims, DeltaKernel, DeltaRef};
use crate::ops::sequences::Sequences;
use crate::ops::Recorder;
use crate::tensor::{DType, Tensor};
use crate::testing::{compare, Rng};

/// A benchmark shape: batch × length, heads and dims.
#[derive(Debug, Clone, Copy)]
pub struct DeltaCase {
    pub batch: usize,
    pub len: usize,
    pub dims: DeltaDims,
    /// Kimi Delta Attention: a log decay per key channel.
    pub kda: bool,
}

impl DeltaCase {
    pub fn describe(&self) -> String {
        let d = self.dims;
        format!("B={} L={} H={}/{} dk={} dv={}", self.batch, self.len, d.key_heads, d.value_heads, d.dk, d.dv)
    }

    /// fla's reference shape (B 8, L 4K, 16 heads of 128), a Qwen3-Next layer at 16K (16 key
    /// heads, 32 value heads), a Qwen3.5-0.8B layer at 4K and 16K, the Qwen3-Next layer's decode step (L = 1 from a state) at batch 1
    /// and 64; KDA on fla's shape and a Kimi-Linear layer's step; or small ones for CPU
    /// adapters.
    pub fn bench(quick: bool) -> Vec<DeltaCase> {
        let d = |hk, hv, dk, dv| DeltaDims { key_heads: hk, value_heads: hv, dk, dv };
        if quick {
            return vec![
                DeltaCase { batch: 2, len: 256, dims: d(2, 4, 64, 64), kda: false },
                DeltaCase { batch: 2, len: 1, dims: d(2, 4, 64, 64), kda: false },
                DeltaCase { batch: 2, len: 256, dims: d(2, 2, 64, 64), kda: true },
            ];
        }
        vec![
            DeltaCase { batch: 8, len: 4096, dims: d(16, 16, 128, 128), kda: false },
            DeltaCase { batch: 1, len: 16384, dims: d(16, 32, 128, 128), kda: false },
            // A Qwen3.5-0.8B layer (16 heads of 128) at 4K and 16K tokens.
            DeltaCase { batch: 1, len: 4096, dims: d(16, 16, 128, 128), kda: false },
            DeltaCase { batch: 1, len: 16384, dims: d(16, 16, 128, 128), kda: false },
            DeltaCase { batch: 1, len: 1, dims: d(16, 32, 128, 128), kda: false },
            DeltaCase { batch: 64, len: 1, dims: d(16, 32, 128, 128), kda: false },
            // Kimi Delta Attention on fla's shape, and a Kimi-Linear layer's decode step.
            DeltaCase { batch: 8, len: 4096, dims: d(16, 16, 128, 128), kda: true },
            DeltaCase { batch: 1, len: 1, dims: d(32, 32, 128, 128), kda: true },
        ]
    }

    /// The tuning grid of `linseq tune delta-rule`: one prefill per bucket of sequence length
    /// ([`crate::ops::delta_rule::DeltaProblem`]), at the heads of fla's shape.
    pub fn tune_grid(quick: bool) -> Vec<DeltaCase> {
        let d = |hk, hv, dk, dv| DeltaDims { key_heads: hk, value_heads: hv, dk, dv };
        if quick {
            return vec![DeltaCase { batch: 2, len: 256, dims: d(2, 4, 64, 64), kda: false }];
        }
        vec![
            DeltaCase { batch: 8, len: 2048, dims: d(16, 16, 128, 128), kda: false },
            DeltaCase { batch: 1, len: 16384, dims: d(16, 32, 128, 128), kda: false },
            DeltaCase { batch: 1, len: 32768, dims: d(16, 16, 128, 128), kda: false },
        ]
    }

    /// A decode step: one token per sequence, continuing a state.
    pub fn is_decode(&self) -> bool {
        self.len == 1
    }
}

/// Both kernels on each case (the recurrent one alone on decode steps, which read and write
/// the state); agreement is checked on the first 64 tokens of the first sequence against the
/// f64 reference, from a zero state, before the timed runs.
pub fn delta_rule(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    cases: &[DeltaCase],
    profile: bool,
) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let mut rng = Rng::new(41);
    for c in cases {
        let d = c.dims;
        let t = c.batch * c.len;
        let (qkv_h, mut g_h, b_h) = cases::inputs(&mut rng, t, d, -1.0, (0.0, 1.0));
        let gates = if c.kda { d.value_heads * d.dk } else { d.value_heads };
        if c.kda {
            g_h = rng.vec(t * gates, -1.0, 0.0);
        }
        let seqs = Sequences::new(dev, &vec![c.len; c.batch], None)?;
        let qkv = Tensor::from_slice(dev, &[t, d.row()], &qkv_h)?;
        let g = Tensor::from_slice(dev, &[t, gates], &g_h)?;
        let beta = Tensor::from_slice(dev, &[t, d.value_heads], &b_h)?;
        let state = Tensor::empty(dev, &[c.batch, d.value_heads, d.dk, d.dv], DType::F32)?;
        let zero_state = vec![0f32; state.numel()];
        let out = Tensor::empty(dev, &[t, d.value_heads * d.dv], DType::F32)?;
        let scale = 1.0 / (d.dk as f32).sqrt();
        let a = DeltaArgs {
            qkv: &qkv,
            cols: cases::packed_cols(d),
            g: &g,
            channel_gates: c.kda,
            beta: &beta,
            state: &state,
            seqs: &seqs,
            dims: d,
            l2norm: true,
            scale,
            init: c.is_decode(),
        };
        let n = c.len.min(64);
        let want = dr::delta_rule_ref(&DeltaRef {
            qkv: &qkv_h[..n * d.row()],
            width: d.row(),
            cols: cases::packed_cols(d),
            g: &g_h[..n * gates],
            channel_gates: c.kda,
            beta: &b_h[..n * d.value_heads],
            cu: &[0, n],
            resets: None,
            state: &[],
            init: false,
            dims: d,
            l2norm: true,
            scale: scale as f64,
        })
        .0;
        // The tensor-core form where it runs, for one gate per head (its f16 operands are
        // checked to f16's bound).
        let mut kernels: Vec<(DeltaKernel, &str)> = if c.is_decode() {
            vec![(DeltaKernel::Recurrent, "step")]
        } else {
            vec![(DeltaKernel::Recurrent, "recurrent"), (DeltaKernel::Chunked, "chunked")]
        };
        if !c.is_decode() && !c.kda && DeltaKernel::ChunkedCoop.runs(dev.caps(), d) {
            kernels.push((DeltaKernel::ChunkedCoop, "chunked.coop"));
        }
        for (kernel, name) in kernels {
            let name = format!("delta_rule.{}{name}.dk{}", if c.kda { "kda." } else { "" }, d.dk);
            if !variants.matches(&name) {
                continue;
            }
            let record = || -> Result<crate::ops::Recording> {
                let mut rec = Recorder::new(dev);
                dr::delta_rule_with(&mut rec, &a, &out, kernel)?;
                Ok(rec.finish())
            };
            state.write(dev, &zero_state)?;
            record()?.run()?;
            let got = out.read::<f32>(dev)?;
            let cmp = compare(&got[..n * d.value_heads * d.dv], &want);
            let bound = if kernel.uses_f16() { 1e-4 } else { 1e-8 };
            let ok = cmp.nonfinite_mismatches == 0 && cmp.nmse < bound;
            let recording = record()?;
            let stats = measure(&recording, 1, cfg)?;
            if profile {
                print_profile(&name, &c.describe(), &recording)?;
            }
            // Tokens in and out, and (decode) the state read and written.
            let state_bytes = if c.is_decode() { 2 * state.numel() * 4 } else { 0 };
            let bytes = (t * (d.row() + d.value_heads * d.dv + gates) * 4 + state_bytes) as f64;
            // The recurrence's arithmetic: decay, Sᵀk, the rank-1 update and Sᵀq per token.
            let flops = (t * d.value_heads * d.dk * d.dv * 8) as f64;
            rows.push(row("delta-rule", &name, c.describe(), stats, Work { bytes, flops }, roof, Some(ok)));
        }
    }
    Ok(rows)
}

/// Both prefill kernels at batch 1 (one head of 128) from L = 1K doubling to `max_len`.
pub fn scaling(dev: &Device, cfg: BenchConfig, variants: &Variants, max_len: usize) -> Result<Vec<BenchRow>> {
    let dims = DeltaDims { key_heads: 1, value_heads: 1, dk: 128, dv: 128 };
    let mut cases = Vec::new();
    let mut len = 1024;
    while len <= max_len {
        cases.push(DeltaCase { batch: 1, len, dims, kda: false });
        len *= 2;
    }
    delta_rule(dev, cfg, variants, &cases, false)
}

/// GPU time per kernel of one run of `recording`, summed over the dispatches of each variant.
fn print_profile(name: &str, shape: &str, recording: &crate::ops::Recording) -> Result<()> {
    let times = recording.run_profiled()?;
    let mut per: Vec<(&str, usize, f64)> = Vec::new();
    for (n, t) in recording.dispatch_names().into_iter().zip(times) {
        match per.iter_mut().find(|p| p.0 == n) {
            Some(p) => (p.1, p.2) = (p.1 + 1, p.2 + t),
            None => per.push((n, 1, t)),
        }
    }
    for (n, count, t) in per {
        println!("profile {name} {shape}: {n} x{count} {:.3} ms", t * 1e3);
    }
    Ok(())
}
