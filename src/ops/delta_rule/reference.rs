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
