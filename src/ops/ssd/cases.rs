//! SSD problems, defined once for the tests (`tests/engine/ops/ssd.rs`), `linseq bench ssd`
//! and `linseq tune`: the shapes, the packed lengths and resets, and their random inputs.

use super::{pack_head_params, ssd_ref, SsdDims, SsdFlags, SsdRef};
use crate::ops::cases::{round_f16, Rng};

/// One problem: a layer's sizes, the lengths of the packed sequences, optional per-token
/// resets and the scan's switches.
#[derive(Debug, Clone, PartialEq)]
pub struct SsdCase {
    pub dims: SsdDims,
    pub lens: Vec<usize>,
    pub resets: Option<Vec<bool>>,
    pub flags: SsdFlags,
}

/// fla's `chunk_simple_gla` comparison shape: B 8, T 4096, H 16, K = V = 128.
pub const FLA_DIMS: SsdDims = SsdDims { heads: 16, head_dim: 128, groups: 16, n: 128 };
/// Mamba-2-130M's layer: 24 heads of 64 channels sharing one group, N = 128.
pub const MAMBA2_DIMS: SsdDims = SsdDims { heads: 24, head_dim: 64, groups: 1, n: 128 };

impl SsdCase {
    /// `batch` sequences of `len` tokens, default switches, no resets.
    pub fn uniform(batch: usize, len: usize, dims: SsdDims) -> Self {
        Self { dims, lens: vec![len; batch], resets: None, flags: SsdFlags::default() }
    }

    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.lens.len()
    }

    /// The length of the first sequence (all of them, for [`SsdCase::uniform`]).
    pub fn len(&self) -> usize {
        self.lens.first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.tokens() == 0
    }

    /// cu_seqlens of the packed batch.
    pub fn cu_seqlens(&self) -> Vec<usize> {
        std::iter::once(0).chain(self.lens.iter().scan(0, |t, &l| Some(*t + l))).collect()
    }

    pub fn label(&self) -> String {
        let d = self.dims;
        format!("B={} L={} H={} P={} N={} G={}", self.batch(), self.len(), d.heads, d.head_dim, d.n, d.groups)
    }

    /// The benchmark grid: fla's shape, and Mamba-2-130M's layer at 4K and 16K tokens (one
    /// small shape with `quick`).
    pub fn bench_grid(quick: bool) -> Vec<SsdCase> {
        if quick {
            return vec![Self::uniform(2, 200, SsdDims { heads: 4, head_dim: 16, groups: 2, n: 16 })];
        }
        vec![
            Self::uniform(8, 4096, FLA_DIMS),
            Self::uniform(8, 4096, MAMBA2_DIMS),
            Self::uniform(8, 16384, MAMBA2_DIMS),
        ]
    }

    /// One representative case per tuning bucket (`SsdKernel::bucket`): Mamba-2's layer at 4K,
    /// 16K and 64K tokens per call.
    pub fn tune_grid(quick: bool) -> Vec<SsdCase> {
        if quick {
            return vec![Self::uniform(2, 256, SsdDims { heads: 4, head_dim: 16, groups: 1, n: 16 })];
        }
        [1024, 4096, 16384].into_iter().map(|len| Self::uniform(4, len, MAMBA2_DIMS)).collect()
    }

    /// Edge lengths for the tests: one token, around chunk 64, several chunks and a long
    /// sequence that is not a multiple of any chunk; groups 1, 2 and one per head at the short
    /// lengths (one group count per long length, for lavapipe's time); the initial state and
    /// the D skip switched on and off.
    pub fn edge_lengths() -> Vec<SsdCase> {
        let mut out = Vec::new();
        for (k, l) in [1usize, 63, 64, 65, 1000, 4103].into_iter().enumerate() {
            let heads = 4;
            let groups_list = if l >= 1000 { vec![[1, 2][k % 2]] } else { vec![1, 2, heads] };
            for groups in groups_list {
                let dims = SsdDims { heads, head_dim: 8, groups, n: 16 };
                let flags = SsdFlags { init_state: k % 2 == 1, d_skip: k != 2, ..SsdFlags::default() };
                out.push(Self { dims, lens: vec![l], resets: None, flags });
            }
        }
        out
    }
}

/// Host inputs of one case, in the layout of the family's docs.
#[derive(Debug, Clone)]
pub struct SsdInputs {
    pub xbc: Vec<f32>,
    pub dt: Vec<f32>,
    pub heads: Vec<f32>,
    pub state: Vec<f32>,
}

impl SsdInputs {
    /// Random inputs: x/B/C in [−1, 1), raw dt in [−4, 0.5), A in [−4, −0.2), D in [−1, 1),
    /// dt_bias in [−2, 0), an initial state in [−0.5, 0.5).
    pub fn random(rng: &mut Rng, c: &SsdCase) -> Self {
        let t = c.tokens();
        let d = c.dims;
        let a = rng.vec(d.heads, -4.0, -0.2); // A = −exp(A_log)
        Self {
            xbc: rng.vec(t * d.width(), -1.0, 1.0),
            dt: rng.vec(t * d.heads, -4.0, 0.5),
            heads: pack_head_params(
                &a,
                Some(&rng.vec(d.heads, -1.0, 1.0)),
                Some(&rng.vec(d.heads, -2.0, 0.0)),
            ),
            state: rng.vec(c.batch() * d.heads * d.head_dim * d.n, -0.5, 0.5),
        }
    }

    /// [`SsdInputs::random`] with x/B/C and dt rounded to f16 values (for f16-input runs).
    pub fn random_f16(rng: &mut Rng, c: &SsdCase) -> Self {
        let mut h = Self::random(rng, c);
        h.xbc = round_f16(&h.xbc);
        h.dt = round_f16(&h.dt);
        h
    }

    /// The f64 reference over the sequences `cu` (the case's own packing, or a prefix of it):
    /// (y `[T, H·P]`, final state `[S, H, P, N]`).
    pub fn reference(&self, c: &SsdCase, cu: &[usize]) -> (Vec<f64>, Vec<f64>) {
        ssd_ref(&SsdRef {
            xbc: &self.xbc,
            dt: &self.dt,
            heads: &self.heads,
            cu,
            resets: c.resets.as_deref(),
            state: &self.state,
            dims: c.dims,
            flags: c.flags,
        })
    }
}
