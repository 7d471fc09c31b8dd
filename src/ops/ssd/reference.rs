//! The f64 oracle of the SSD family: the recurrence, token by token.

use super::{SsdDims, SsdFlags};

/// Host inputs of the f64 reference, in the layout of the module docs.
pub struct SsdRef<'a> {
    pub xbc: &'a [f32],
    pub dt: &'a [f32],
    pub heads: &'a [f32],
    pub cu: &'a [usize],
    pub resets: Option<&'a [bool]>,
    pub state: &'a [f32],
    pub dims: SsdDims,
    pub flags: SsdFlags,
}

/// f64 reference (the recurrence, token by token): returns (y `[T, H·P]`, final state
/// `[S, H, P, N]`).
pub fn ssd_ref(r: &SsdRef) -> (Vec<f64>, Vec<f64>) {
    let SsdDims { heads, head_dim: hp, groups, n } = r.dims;
    let w = r.dims.width();
    let t_total = *r.cu.last().expect("cu_seqlens");
    let s_count = r.cu.len() - 1;
    let mut y = vec![0f64; t_total * heads * hp];
    let mut fin = vec![0f64; s_count * heads * hp * n];
    for s in 0..s_count {
        for h in 0..heads {
            let g = h / (heads / groups);
            let (a, dsk, bias) =
                (r.heads[h * 4] as f64, r.heads[h * 4 + 1] as f64, r.heads[h * 4 + 2] as f64);
            let base = (s * heads + h) * hp * n;
            let mut st: Vec<f64> = (0..hp * n)
                .map(|k| if r.flags.init_state { r.state[base + k] as f64 } else { 0.0 })
                .collect();
            for t in r.cu[s]..r.cu[s + 1] {
                let mut dt = r.dt[t * heads + h] as f64;
                if r.flags.dt_bias {
                    dt += bias;
                }
                if r.flags.dt_softplus && dt <= 20.0 {
                    dt = dt.exp().ln_1p();
                }
                dt = dt.clamp(r.flags.dt_limit.0 as f64, r.flags.dt_limit.1 as f64);
                let mut decay = (dt * a).exp();
                if r.resets.is_some_and(|rs| rs[t]) {
                    decay = 0.0;
                }
                let row = &r.xbc[t * w..(t + 1) * w];
                let bo = heads * hp + g * n;
                let co = heads * hp + groups * n + g * n;
                for i in 0..hp {
                    let x = row[h * hp + i] as f64;
                    let mut acc = 0.0;
                    for k in 0..n {
                        let v = &mut st[i * n + k];
                        *v = decay * *v + dt * x * row[bo + k] as f64;
                        acc += *v * row[co + k] as f64;
                    }
                    if r.flags.d_skip {
                        acc += dsk * x;
                    }
                    y[t * heads * hp + h * hp + i] = acc;
                }
            }
            fin[base..base + hp * n].copy_from_slice(&st);
        }
    }
    (y, fin)
}
