//! Selective-scan problems, defined once for the tests (`tests/engine/ops/selective_scan.rs`),
//! `linseq bench selective-scan` and `linseq tune`: the uniform benchmark and tuning grids, and
//! ragged packed cases with their random inputs.

use super::{pack_channel_params, selective_scan_ref, ScanFlags, ScanRef, ScanShape};
use crate::ops::cases::Rng;

/// State size of the selective-scan benchmarks (Mamba-1's).
pub const SCAN_N: usize = 16;

/// One selective-scan problem: `batch` sequences of `len` tokens, `dim` channels, N = 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCase {
    pub batch: usize,
    pub dim: usize,
    pub len: usize,
}

impl ScanCase {
    pub fn label(&self) -> String {
        format!("B={} d={} L={} N={SCAN_N}", self.batch, self.dim, self.len)
    }

    pub fn shape(&self) -> ScanShape {
        ScanShape::new(self.dim, SCAN_N, 1)
    }

    /// The benchmark grid: batch 8, d ∈ {1536, 2048, 5120}, L from 2K to 64K (one small
    /// case with `quick`).
    pub fn bench_grid(quick: bool) -> Vec<ScanCase> {
        if quick {
            return vec![ScanCase { batch: 2, dim: 64, len: 1024 }];
        }
        let mut out = Vec::new();
        for dim in [1536, 2048, 5120] {
            for len in [2048, 4096, 8192, 16384, 32768, 65536] {
                out.push(ScanCase { batch: 8, dim, len });
            }
        }
        out
    }

    /// One case per tuning bucket (`ScanKernel::bucket`, by sequences × channels): batch 8 at
    /// L = 4096, d from 128 to 8192 (batch 2, L = 512, d = 64 with `quick`).
    pub fn tune_grid(quick: bool) -> Vec<ScanCase> {
        let (batch, len, dims): (usize, usize, Vec<usize>) =
            if quick { (2, 512, vec![64]) } else { (8, 4096, vec![128, 256, 512, 1024, 2048, 4096, 8192]) };
        dims.into_iter().map(|dim| ScanCase { batch, dim, len }).collect()
    }
}

/// A ragged problem: channels, state size, groups, the packed lengths, optional resets, the
/// switches and whether a gate z is bound.
#[derive(Debug, Clone, PartialEq)]
pub struct RaggedScanCase {
    pub dim: usize,
    pub n: usize,
    pub groups: usize,
    pub lens: Vec<usize>,
    pub resets: Option<Vec<bool>>,
    pub flags: ScanFlags,
    pub z: bool,
}

/// Host inputs of one case (token-major, as the family's docs lay them out).
#[derive(Debug, Clone)]
pub struct ScanInputs {
    pub u: Vec<f32>,
    pub delta: Vec<f32>,
    pub bc: Vec<f32>,
    pub z: Option<Vec<f32>>,
    pub chan: Vec<f32>,
    pub state: Vec<f32>,
}

impl ScanInputs {
    /// Random inputs: A in [−2, −0.1), D in [−1, 1), u and B/C in [−1, 1), z in [−2, 2), an
    /// initial state in [−0.5, 0.5); delta and its bias keep dt positive without softplus
    /// (else exp(dt·A) > 1 and the state overflows f32).
    pub fn random(rng: &mut Rng, c: &RaggedScanCase) -> Self {
        let t: usize = c.lens.iter().sum();
        let s = c.lens.len();
        let a: Vec<f32> = rng.vec(c.dim * c.n, -2.0, -0.1); // A = −exp(A_log) < 0
        let d_skip = rng.vec(c.dim, -1.0, 1.0);
        let (lo, blo) = if c.flags.delta_softplus { (-3.0, -1.0) } else { (0.01, 0.0) };
        let bias = rng.vec(c.dim, blo, 0.5);
        Self {
            u: rng.vec(c.dim * t, -1.0, 1.0),
            delta: rng.vec(c.dim * t, lo, 1.0),
            bc: rng.vec(2 * c.groups * c.n * t, -1.0, 1.0),
            z: c.z.then(|| rng.vec(c.dim * t, -2.0, 2.0)),
            chan: pack_channel_params(&a, Some(&d_skip), Some(&bias), c.dim, c.n),
            state: rng.vec(s * c.dim * c.n, -0.5, 0.5),
        }
    }

    /// The f64 reference over the sequences `cu` with `resets`: (y `[T, D]`, final state).
    pub fn reference(
        &self,
        c: &RaggedScanCase,
        cu: &[usize],
        resets: Option<&[bool]>,
    ) -> (Vec<f64>, Vec<f64>) {
        selective_scan_ref(&ScanRef {
            u: &self.u,
            delta: &self.delta,
            bc: &self.bc,
            z: self.z.as_deref(),
            chan: &self.chan,
            cu,
            resets,
            state: &self.state,
            dim: c.dim,
            n: c.n,
            groups: c.groups,
            flags: c.flags,
        })
    }
}
