//! f64 references: attention of one sequence over its whole key history (the oracle), and
//! the ring-cache semantics the kernels implement (what a graph node evaluates on the CPU).

use super::AttnDims;

/// Attention of queries at positions `q_pos0 ..` (`q` `[n, H, D]`) over keys and values of
/// positions `0 .. end` (`k`, `v` `[end, Hkv, D]`), causal with an optional window:
/// `[n, H·D]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    q_pos0: usize,
    dims: AttnDims,
    window: Option<usize>,
    scale: f64,
    softcap: Option<f64>,
) -> Vec<f64> {
    let AttnDims { heads, kv_heads, head_dim: d } = dims;
    let n = q.len() / (heads * d);
    let group = heads / kv_heads;
    let mut out = vec![0f64; n * heads * d];
    for qi in 0..n {
        let i = q_pos0 + qi;
        let first = window.map_or(0, |w| (i + 1).saturating_sub(w));
        for h in 0..heads {
            let kvh = h / group;
            let qrow = &q[(qi * heads + h) * d..][..d];
            let scores: Vec<f64> = (first..=i)
                .map(|j| {
                    let krow = &k[(j * kv_heads + kvh) * d..][..d];
                    let s: f64 =
                        qrow.iter().zip(krow).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale;
                    softcap.map_or(s, |c| c * (s / c).tanh())
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let l: f64 = w.iter().sum();
            let o = &mut out[(qi * heads + h) * d..][..d];
            for (jj, j) in (first..=i).enumerate() {
                let vrow = &v[(j * kv_heads + kvh) * d..][..d];
                for (od, &vd) in o.iter_mut().zip(vrow) {
                    *od += w[jj] / l * vd as f64;
                }
            }
        }
    }
    out
}

/// One call of the kernels as they see it: the new tokens' `qkv` rows `[T, (H + 2·Hkv)·D]`,
/// the ring cache `[S, cap, 2, Hkv, D]` and each sequence's cached positions.
pub struct RingRef<'a> {
    pub qkv: &'a [f32],
    pub kv: &'a [f32],
    pub pos: &'a [usize],
    pub cu: &'a [usize],
    pub dims: AttnDims,
    pub window: Option<usize>,
    pub cap: usize,
    pub scale: f64,
    pub softcap: Option<f64>,
}

/// The kernels' semantics in f64: each sequence's keys before `pos[s]` from its ring, the rest
/// from the new rows. Returns (out `[T, H·D]`, the cache after the append).
pub fn ring_attention_ref(r: &RingRef) -> (Vec<f64>, Vec<f64>) {
    let AttnDims { heads, kv_heads, head_dim: d } = r.dims;
    let row = r.dims.row();
    let mut out = Vec::with_capacity(r.qkv.len() / row * heads * d);
    let mut cache: Vec<f64> = r.kv.iter().map(|&x| x as f64).collect();
    let slot = |s: usize, j: usize, which: usize| ((s * r.cap + j % r.cap) * 2 + which) * kv_heads * d;
    for s in 0..r.cu.len() - 1 {
        let (t0, t1, p0) = (r.cu[s], r.cu[s + 1], r.pos[s]);
        let end = p0 + (t1 - t0);
        // The history this call can see: the ring's positions, then the new tokens.
        let (mut k, mut v) = (vec![0f32; end * kv_heads * d], vec![0f32; end * kv_heads * d]);
        for j in p0.saturating_sub(r.cap)..end {
            for e in 0..kv_heads * d {
                let (kj, vj) = if j < p0 {
                    (r.kv[slot(s, j, 0) + e], r.kv[slot(s, j, 1) + e])
                } else {
                    let rw = &r.qkv[(t0 + j - p0) * row..][..row];
                    (rw[heads * d + e], rw[(heads + kv_heads) * d + e])
                };
                k[j * kv_heads * d + e] = kj;
                v[j * kv_heads * d + e] = vj;
            }
        }
        let q: Vec<f32> = (t0..t1).flat_map(|t| r.qkv[t * row..][..heads * d].iter().copied()).collect();
        out.extend(attention_ref(&q, &k, &v, p0, r.dims, r.window, r.scale, r.softcap));
        for j in end.saturating_sub(r.cap).max(p0)..end {
            for e in 0..kv_heads * d {
                cache[slot(s, j, 0) + e] = k[j * kv_heads * d + e] as f64;
                cache[slot(s, j, 1) + e] = v[j * kv_heads * d + e] as f64;
            }
        }
    }
    (out, cache)
}

/// A growing cache's blocks (each `[S, cap, …]`) as one ring `[S, blocks·cap, …]` of f32:
/// position j of block j / cap lands at slot j, so the ring never wraps.
pub fn join_blocks(blocks: &[&[f64]], sequences: usize) -> Vec<f32> {
    let per = blocks.first().map_or(0, |b| b.len() / sequences.max(1));
    let mut out = Vec::with_capacity(per * sequences * blocks.len());
    for s in 0..sequences {
        for b in blocks {
            out.extend(b[s * per..][..per].iter().map(|&x| x as f32));
        }
    }
    out
}
