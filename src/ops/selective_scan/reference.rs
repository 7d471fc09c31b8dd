//! The f64 oracle of the selective scan: mamba_ssm's `selective_scan_ref`, token by token.

use super::ScanFlags;

/// Host inputs of the f64 reference, in the layout of the module docs.
pub struct ScanRef<'a> {
    pub u: &'a [f32],
    pub delta: &'a [f32],
    pub bc: &'a [f32],
    pub z: Option<&'a [f32]>,
    pub chan: &'a [f32],
    pub cu: &'a [usize],
    pub resets: Option<&'a [bool]>,
    pub state: &'a [f32],
    pub dim: usize,
    pub n: usize,
    pub groups: usize,
    pub flags: ScanFlags,
}

/// f64 reference: returns (y `[T, D]`, final state `[S, D, N]`).
pub fn selective_scan_ref(r: &ScanRef) -> (Vec<f64>, Vec<f64>) {
    let (dim, n, g) = (r.dim, r.n, r.groups);
    let t_total = *r.cu.last().expect("cu_seqlens");
    let s_count = r.cu.len() - 1;
    let mut y = vec![0f64; dim * t_total];
    let mut fin = vec![0f64; s_count * dim * n];
    for s in 0..s_count {
        for d in 0..dim {
            let grp = d / (dim / g);
            let cp = &r.chan[d * (n + 2)..(d + 1) * (n + 2)];
            let mut h: Vec<f64> = (0..n)
                .map(|k| if r.flags.init_state { r.state[(s * dim + d) * n + k] as f64 } else { 0.0 })
                .collect();
            for t in r.cu[s]..r.cu[s + 1] {
                let mut dt = r.delta[t * dim + d] as f64;
                if r.flags.delta_bias {
                    dt += cp[n + 1] as f64;
                }
                if r.flags.delta_softplus && dt <= 20.0 {
                    dt = dt.exp().ln_1p();
                }
                let x = r.u[t * dim + d] as f64;
                if r.resets.is_some_and(|rs| rs[t]) {
                    h.iter_mut().for_each(|v| *v = 0.0);
                }
                let mut acc = 0.0;
                for k in 0..n {
                    let mut a = (dt * cp[k] as f64).exp();
                    if r.flags.neg_eigen {
                        a = 2.0 * a - 1.0;
                    }
                    let b = r.bc[(t * 2 * g + grp) * n + k] as f64;
                    let c = r.bc[(t * 2 * g + g + grp) * n + k] as f64;
                    h[k] = a * h[k] + dt * b * x;
                    acc += h[k] * c;
                }
                if r.flags.d_skip {
                    acc += cp[n] as f64 * x;
                }
                if let Some(z) = r.z {
                    let zz = z[t * dim + d] as f64;
                    acc *= zz / (1.0 + (-zz).exp());
                }
                y[t * dim + d] = acc;
            }
            fin[(s * dim + d) * n..(s * dim + d + 1) * n].copy_from_slice(&h);
        }
    }
    (y, fin)
}
