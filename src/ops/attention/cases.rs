//! Attention cases shared by the tests and `linseq bench attention`: shapes, inputs and the
//! work they cost.

use super::AttnDims;
use crate::ops::cases::Rng;

/// A prefill of packed sequences of `lens` tokens (from a fresh cache).
#[derive(Debug, Clone, PartialEq)]
pub struct AttnCase {
    pub lens: Vec<usize>,
    pub dims: AttnDims,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
}

impl AttnCase {
    pub fn new(
        lens: &[usize],
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        window: Option<usize>,
    ) -> Self {
        Self { lens: lens.to_vec(), dims: AttnDims { heads, kv_heads, head_dim }, window, softcap: None }
    }

    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    pub fn describe(&self) -> String {
        let b = self.lens.len();
        let l = self.lens.iter().max().copied().unwrap_or(0);
        let w = self.window.map_or("full".to_string(), |w| format!("W={w}"));
        let AttnDims { heads, kv_heads, head_dim } = self.dims;
        format!("B={b} L={l} H={heads}/{kv_heads} D={head_dim} {w}")
    }

    /// Random `qkv` rows `[T, (H + 2·Hkv)·D]` in [−1, 1).
    pub fn qkv(&self, rng: &mut Rng) -> Vec<f32> {
        rng.vec(self.tokens() * self.dims.row(), -1.0, 1.0)
    }

    /// Query-key pairs the mask keeps, summed over sequences and heads: the work is
    /// 4·D FLOPs per pair (Q·Kᵀ and P·V).
    pub fn pairs(&self) -> u64 {
        let per_seq =
            |l: usize| -> u64 { (0..l).map(|i| self.window.map_or(i + 1, |w| (i + 1).min(w)) as u64).sum() };
        self.lens.iter().map(|&l| per_seq(l)).sum::<u64>() * self.dims.heads as u64
    }

    pub fn flops(&self) -> f64 {
        4.0 * self.dims.head_dim as f64 * self.pairs() as f64
    }

    /// The benchmark shapes: the two (full causal at 4K; a 2048 window with GQA 8:1 at
    /// 16K), or small ones for CPU adapters.
    pub fn bench(quick: bool) -> Vec<AttnCase> {
        if quick {
            return vec![
                AttnCase::new(&[256, 256], 4, 1, 64, None),
                AttnCase::new(&[512], 8, 1, 128, Some(64)),
            ];
        }
        vec![AttnCase::new(&[4096; 8], 16, 16, 128, None), AttnCase::new(&[16384; 8], 16, 2, 128, Some(2048))]
    }

    /// The shapes `linseq tune` measures, one per bucket of [`super::PrefillKernel`]'s chooser
    /// (head dim, group size, short or long): the heads of Mistral (32/8, D 128) and of
    /// RecurrentGemma (10/1, D 256) at 512 and 4096 tokens, or tiny ones for CPU adapters.
    pub fn tune_grid(quick: bool) -> Vec<AttnCase> {
        if quick {
            return vec![AttnCase::new(&[64], 4, 1, 64, None), AttnCase::new(&[1100], 4, 1, 64, Some(64))];
        }
        let mut out = Vec::new();
        for (h, hkv, d, w) in [(32, 8, 128, None), (10, 1, 256, Some(2048))] {
            out.push(AttnCase::new(&[512; 4], h, hkv, d, w));
            out.push(AttnCase::new(&[4096], h, hkv, d, w));
        }
        out
    }
}
