//! Delta-rule cases shared by the tests and the benchmarks: shapes and inputs.

use super::DeltaDims;
use crate::ops::cases::Rng;

/// Random inputs of `t` tokens: packed `[q | k | v]` rows in [−1, 1), log decays in
/// [g_min, 0] and write strengths in [beta.0, beta.1].
pub fn inputs(
    rng: &mut Rng,
    t: usize,
    d: DeltaDims,
    g_min: f32,
    beta: (f32, f32),
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let qkv = rng.vec(t * d.row(), -1.0, 1.0);
    let g = rng.vec(t * d.value_heads, g_min, 0.0);
    let b = rng.vec(t * d.value_heads, beta.0, beta.1);
    (qkv, g, b)
}

/// Columns of q, k and v in a packed row.
pub fn packed_cols(d: DeltaDims) -> [usize; 3] {
    [0, d.key_heads * d.dk, 2 * d.key_heads * d.dk]
}
