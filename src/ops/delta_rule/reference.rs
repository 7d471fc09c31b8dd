//! The f64 oracle: the gated delta rule token by token, as transformers'
//! `torch_recurrent_gated_delta_rule` states it.

use super::DeltaDims;

/// One reference call's inputs (host copies of the op's tensors).
pub struct DeltaRef<'a> {
    pub qkv: &'a [f32],
    pub width: usize,
    pub cols: [usize; 3],
    /// `[T, Hv]`, or with `channel_gates` `[T, Hv, dk]`.
    pub g: &'a [f32],
    pub channel_gates: bool,
    pub beta: &'a [f32],
    pub cu: &'a [usize],
    pub resets: Option<&'a [bool]>,
    /// `[S, Hv, dk, dv]`, used when `init`.
    pub state: &'a [f32],
    pub init: bool,
    pub dims: DeltaDims,
    pub l2norm: bool,
    pub scale: f64,
}

fn normalised(x: &[f32], on: bool) -> Vec<f64> {
    let n = if on { 1.0 / (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + 1e-6).sqrt() } else { 1.0 };
    x.iter().map(|&v| v as f64 * n).collect()
}

/// Returns (out `[T, Hv·dv]`, final state `[S, Hv, dk, dv]`).
pub fn delta_rule_ref(r: &DeltaRef) -> (Vec<f64>, Vec<f64>) {
    let DeltaDims { key_heads, value_heads: hv, dk, dv } = r.dims;
    let t_all = r.cu[r.cu.len() - 1];
    let mut out = vec![0.0; t_all * hv * dv];
    let mut fin = vec![0.0; (r.cu.len() - 1) * hv * dk * dv];
    for s in 0..r.cu.len() - 1 {
        for h in 0..hv {
            let kh = h / (hv / key_heads);
            let base = (s * hv + h) * dk * dv;
            let mut st: Vec<f64> = if r.init {
                r.state[base..base + dk * dv].iter().map(|&v| v as f64).collect()
            } else {
                vec![0.0; dk * dv]
            };
            for t in r.cu[s]..r.cu[s + 1] {
                if r.resets.is_some_and(|f| f[t]) {
                    st.iter_mut().for_each(|v| *v = 0.0);
                }
                let row = &r.qkv[t * r.width..(t + 1) * r.width];
                let q = normalised(&row[r.cols[0] + kh * dk..][..dk], r.l2norm);
                let k = normalised(&row[r.cols[1] + kh * dk..][..dk], r.l2norm);
                let v = &row[r.cols[2] + h * dv..][..dv];
                let b = r.beta[t * hv + h] as f64;
                for i in 0..dk {
                    let g = if r.channel_gates { r.g[(t * hv + h) * dk + i] } else { r.g[t * hv + h] };
                    let decay = (g as f64).exp();
                    st[i * dv..(i + 1) * dv].iter_mut().for_each(|x| *x *= decay);
                }
                for j in 0..dv {
                    let kv: f64 = (0..dk).map(|i| st[i * dv + j] * k[i]).sum();
                    let delta = (v[j] as f64 - kv) * b;
                    for i in 0..dk {
                        st[i * dv + j] += k[i] * delta;
                    }
                    let o: f64 = (0..dk).map(|i| st[i * dv + j] * q[i]).sum();
                    out[(t * hv + h) * dv + j] = o * r.scale;
                }
            }
            fin[base..base + dk * dv].copy_from_slice(&st);
        }
    }
    (out, fin)
}

/// The chunked WY form in f64, as the kernels stage it (fla's `naive` tier between the
/// recurrence and a kernel): chunks of `chunk` tokens that never cross a sequence or a reset,
/// and within a chunk, with γ the cumulative log-gates per key channel (a scalar gate is the
/// same on every channel) and Γ_t = diag(exp(γ_t)):
///   A[t][u] = β_t·k̂_tᵀ Γ_t Γ_u⁻¹ k̂_u (u < t),  T = (I + A)⁻¹,
///   W = T·diag(β)·(K̂ ⊙ exp(γ)),  U = T·diag(β)·V,  V′ = U − W·S₀,
///   o_t = (Γ_t q̂_t)ᵀ S₀ + Σ_{u≤t} q̂_tᵀ Γ_t Γ_u⁻¹ k̂_u · v′_u,
///   S₁ = Γ_last S₀ + Σ_u (Γ_last Γ_u⁻¹ k̂_u) ⊗ v′_u.
/// The pair products k̂_tᵀ Γ_t Γ_u⁻¹ k̂_u (and q̂'s) are formed as a tensor-core form must form
/// them, with per-channel gates (Kimi Delta Attention) in sub-chunks of `sub` tokens: within a
/// sub-chunk each exponent γ_t − γ_u directly, and for u in an earlier sub-chunk as the product
/// of (x_t ⊙ exp(γ_t − γ_r)) and (k̂_u ⊙ exp(γ_r − γ_u)), with r the first token of t's
/// sub-chunk. Both factors' exponents are ≤ 0, so neither overflows, and where one underflows
/// the exact value, smaller still, is 0 to the same precision. Returns what
/// [`delta_rule_ref`] returns.
pub fn delta_rule_chunked_ref(r: &DeltaRef, chunk: usize, sub: usize) -> (Vec<f64>, Vec<f64>) {
    let DeltaDims { key_heads, value_heads: hv, dk, dv } = r.dims;
    let t_all = r.cu[r.cu.len() - 1];
    let mut out = vec![0.0; t_all * hv * dv];
    // Sequences without tokens keep the state they came with.
    let mut fin = if r.init {
        r.state[..(r.cu.len() - 1) * hv * dk * dv].iter().map(|&v| v as f64).collect()
    } else {
        vec![0.0; (r.cu.len() - 1) * hv * dk * dv]
    };
    let (table, n) = crate::ops::sequences::chunk_table(r.cu, r.resets, chunk);
    let gate = |t: usize, h: usize, i: usize| -> f64 {
        (if r.channel_gates { r.g[(t * hv + h) * dk + i] } else { r.g[t * hv + h] }) as f64
    };
    for h in 0..hv {
        let kh = h / (hv / key_heads);
        let mut st = vec![0.0; dk * dv];
        for c in 0..n {
            let [t0, len, s, flags] = [0, 1, 2, 3].map(|k| table[c * 4 + k] as usize);
            let base = (s * hv + h) * dk * dv;
            if flags & crate::ops::sequences::chunk_flags::FIRST as usize != 0 {
                st = if r.init {
                    r.state[base..base + dk * dv].iter().map(|&v| v as f64).collect()
                } else {
                    vec![0.0; dk * dv]
                };
            }
            if flags & crate::ops::sequences::chunk_flags::FRESH as usize != 0 {
                st.iter_mut().for_each(|v| *v = 0.0);
            }
            let row = |t: usize, col: usize, w: usize| &r.qkv[t * r.width + col..][..w];
            let q: Vec<Vec<f64>> = (t0..t0 + len)
                .map(|t| {
                    normalised(row(t, r.cols[0] + kh * dk, dk), r.l2norm)
                        .iter()
                        .map(|x| x * r.scale)
                        .collect()
                })
                .collect();
            let k: Vec<Vec<f64>> =
                (t0..t0 + len).map(|t| normalised(row(t, r.cols[1] + kh * dk, dk), r.l2norm)).collect();
            let v: Vec<&[f32]> = (t0..t0 + len).map(|t| row(t, r.cols[2] + h * dv, dv)).collect();
            let beta: Vec<f64> = (t0..t0 + len).map(|t| r.beta[t * hv + h] as f64).collect();
            let mut gam: Vec<Vec<f64>> = Vec::with_capacity(len);
            for t in 0..len {
                let prev = gam.last().cloned().unwrap_or_else(|| vec![0.0; dk]);
                gam.push((0..dk).map(|i| prev[i] + gate(t0 + t, h, i)).collect());
            }
            // x_tᵀ Γ_t Γ_u⁻¹ k̂_u for u ≤ t, by sub-chunks (see above).
            let pair = |x: &[f64], t: usize, u: usize| -> f64 {
                let rr = t / sub * sub;
                (0..dk)
                    .map(|i| {
                        if u >= rr {
                            x[i] * k[u][i] * (gam[t][i] - gam[u][i]).exp()
                        } else {
                            (x[i] * (gam[t][i] - gam[rr][i]).exp())
                                * (k[u][i] * (gam[rr][i] - gam[u][i]).exp())
                        }
                    })
                    .sum()
            };
            // T = (I + A)⁻¹ by forward substitution (unit lower triangular).
            let mut tm: Vec<Vec<f64>> = Vec::with_capacity(len);
            for t in 0..len {
                let a: Vec<f64> = (0..t).map(|u| beta[t] * pair(&k[t], t, u)).collect();
                let mut row: Vec<f64> =
                    (0..t).map(|c2| -(c2..t).map(|m| a[m] * tm[m][c2]).sum::<f64>()).collect();
                row.push(1.0);
                row.resize(len, 0.0);
                tm.push(row);
            }
            // V′ = T·diag(β)·(V − (K̂ ⊙ exp(γ))·S₀).
            let rhs: Vec<Vec<f64>> = (0..len)
                .map(|u| {
                    (0..dv)
                        .map(|j| {
                            let ws: f64 = (0..dk).map(|i| k[u][i] * gam[u][i].exp() * st[i * dv + j]).sum();
                            beta[u] * (v[u][j] as f64 - ws)
                        })
                        .collect()
                })
                .collect();
            let vp: Vec<Vec<f64>> = (0..len)
                .map(|t| (0..dv).map(|j| (0..=t).map(|u| tm[t][u] * rhs[u][j]).sum()).collect())
                .collect();
            for t in 0..len {
                let qg: Vec<f64> = (0..dk).map(|i| q[t][i] * gam[t][i].exp()).collect();
                let p: Vec<f64> = (0..=t).map(|u| pair(&q[t], t, u)).collect();
                for j in 0..dv {
                    let inter: f64 = (0..dk).map(|i| qg[i] * st[i * dv + j]).sum();
                    let intra: f64 = (0..=t).map(|u| p[u] * vp[u][j]).sum();
                    out[((t0 + t) * hv + h) * dv + j] = inter + intra;
                }
            }
            let last = len - 1;
            for i in 0..dk {
                let decay = gam[last][i].exp();
                for j in 0..dv {
                    st[i * dv + j] = decay * st[i * dv + j]
                        + (0..len)
                            .map(|u| k[u][i] * (gam[last][i] - gam[u][i]).exp() * vp[u][j])
                            .sum::<f64>();
                }
            }
            let ends_sequence = t0 + len == r.cu[s + 1];
            if ends_sequence {
                fin[base..base + dk * dv].copy_from_slice(&st);
            }
        }
    }
    (out, fin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cases::Rng;

    /// Worst relative difference of `a` from `b` (against b's largest magnitude), and whether
    /// both are finite.
    fn rel(a: &[f64], b: &[f64]) -> f64 {
        assert!(a.iter().chain(b).all(|x| x.is_finite()), "non-finite values");
        let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// The chunked WY form with sub-chunked pair products equals the recurrence, final states
    /// included: per-head and per-channel gates down to −20 a step, β near 0, 1 and 2, lengths
    /// around the chunk and sub-chunk sizes, grouped value heads, ragged sequences (one
    /// empty) with resets, from a state and from zero.
    #[test]
    fn the_chunked_form_equals_the_recurrence() {
        let mut rng = Rng::new(11);
        // (lengths, dims, most negative log-gate, β range, from a state)
        type Case<'a> = (&'a [usize], DeltaDims, f32, (f32, f32), bool);
        let cases: &[Case] = &[
            (&[1], DeltaDims { key_heads: 1, value_heads: 1, dk: 8, dv: 4 }, -1.0, (0.0, 1.0), false),
            (
                &[15, 16, 17],
                DeltaDims { key_heads: 1, value_heads: 2, dk: 8, dv: 8 },
                -20.0,
                (0.0, 1.0),
                true,
            ),
            (
                &[63, 64, 65],
                DeltaDims { key_heads: 2, value_heads: 2, dk: 16, dv: 8 },
                -0.5,
                (1.9, 2.0),
                true,
            ),
            (
                &[130, 0, 7],
                DeltaDims { key_heads: 1, value_heads: 2, dk: 16, dv: 16 },
                -3.0,
                (0.0, 0.01),
                true,
            ),
            (&[200], DeltaDims { key_heads: 2, value_heads: 4, dk: 32, dv: 8 }, -0.1, (0.9, 1.1), false),
        ];
        for &(lens, d, g_min, beta, init) in cases {
            let t: usize = lens.iter().sum();
            let cu: Vec<usize> = std::iter::once(0)
                .chain(lens.iter().scan(0, |a, &l| Some(*a + l).inspect(|&x| *a = x)))
                .collect();
            let resets: Vec<bool> = (0..t).map(|x| x % 37 == 20).collect();
            for channel_gates in [false, true] {
                let qkv = rng.vec(t * d.row(), -1.0, 1.0);
                let per = if channel_gates { d.value_heads * d.dk } else { d.value_heads };
                let g = rng.vec(t * per, g_min, 0.0);
                let b = rng.vec(t * d.value_heads, beta.0, beta.1);
                let state = rng.vec(lens.len() * d.value_heads * d.dk * d.dv, -0.5, 0.5);
                let r = DeltaRef {
                    qkv: &qkv,
                    width: d.row(),
                    cols: super::super::cases::packed_cols(d),
                    g: &g,
                    channel_gates,
                    beta: &b,
                    cu: &cu,
                    resets: Some(&resets),
                    state: &state,
                    init,
                    dims: d,
                    l2norm: true,
                    scale: 1.0 / (d.dk as f64).sqrt(),
                };
                let (want, want_st) = delta_rule_ref(&r);
                let (got, got_st) = delta_rule_chunked_ref(&r, 64, 16);
                let (eo, es) = (rel(&got, &want), rel(&got_st, &want_st));
                assert!(
                    eo < 1e-10 && es < 1e-10,
                    "{lens:?} {d:?} gates {g_min} per channel {channel_gates}: out {eo:.2e}, state {es:.2e}"
                );
            }
        }
    }
}
