//! f64 references of the S4 convolution kernels, as state-spaces/s4's `models/s4/s4.py`
//! computes them, for one channel of one feature:
//! - [`vandermonde_kernel`] (S4D, `SSMKernelDiag`): K_l = 2·Re Σ_n C′_n·e^{x_n·l}, with
//!   e^{x·l} evaluated directly at every l;
//! - [`dplr_kernel`] (S4, `SSMKernelDPLR`): the resolvent at the bilinear images of the roots
//!   of unity by Cauchy sums (each conjugate term kept apart), the Woodbury correction for the
//!   low-rank part, the factor 2/(1 + ω), and an inverse real DFT;
//! - [`krylov_kernel`]: the same kernel from the dense discretised state (K_l = Re C·Ā^l·B̄ over
//!   the conjugate-expanded 2N states), the oracle of the two above.
//!
//! Complex vectors over the state hold one of each conjugate pair (N/2 entries).

use super::complex::C64;
use super::Discretization;

/// Σ_n v_n/(z − w_n) + conj(v_n)/(z − conj(w_n)): the two conjugate terms apart, as the
/// module's kernels keep them (merging them costs accuracy).
pub fn cauchy(v: &[C64], z: C64, w: &[C64]) -> C64 {
    v.iter().zip(w).fold(C64::ZERO, |acc, (&v, &w)| acc + v / (z - w) + v.conj() / (z - w.conj()))
}

/// S4D's kernel of length `l`: C′ = B·C·(e^{ΔA} − 1)/A and x = ΔA (ZOH), or
/// C′ = B·C·Δ/(1 − ΔA/2) and x = log((1 + ΔA/2)/(1 − ΔA/2)) (bilinear).
pub fn vandermonde_kernel(
    disc: Discretization,
    dt: f64,
    a: &[C64],
    b: &[C64],
    c: &[C64],
    l: usize,
) -> Vec<f64> {
    let terms: Vec<(C64, C64)> = a
        .iter()
        .zip(b.iter().zip(c))
        .map(|(&a, (&b, &c))| {
            let (da, db) = super::discretize(disc, dt, a, b);
            // log of Ā: ΔA itself for ZOH (no branch cut to cross), else the principal log.
            let x = match disc {
                Discretization::Zoh => a.scale(dt),
                Discretization::Bilinear => C64::new(da.abs().ln(), da.im.atan2(da.re)),
            };
            (c * db, x)
        })
        .collect();
    (0..l).map(|t| 2.0 * terms.iter().map(|&(v, x)| (v * x.scale(t as f64).exp()).re).sum::<f64>()).collect()
}

/// S4's DPLR kernel of length `l` (even): state matrix diag(Λ) − P·P* (over the conjugate-
/// expanded states), input `b`, and `c_tilde` = C̃ = C·(I − Ā^l) as the module stores it for
/// its `l_kernel` = `l`; `p` holds the low-rank rows (rank 1 or 2).
pub fn dplr_kernel(
    dt: f64,
    lambda: &[C64],
    p: &[Vec<C64>],
    b: &[C64],
    c_tilde: &[C64],
    l: usize,
) -> Vec<f64> {
    irfft(&dplr_spectrum(dt, lambda, p, b, c_tilde, l), l)
}

/// The DPLR kernel's first `l / 2 + 1` DFT bins (what [`dplr_kernel`] inverts).
pub fn dplr_spectrum(
    dt: f64,
    lambda: &[C64],
    p: &[Vec<C64>],
    b: &[C64],
    c_tilde: &[C64],
    l: usize,
) -> Vec<C64> {
    let w: Vec<C64> = lambda.iter().map(|x| x.scale(dt)).collect();
    let rank = p.len();
    // Rows of B′ = [B, P_r], columns of C′ = [C̃, Q_r = conj(P_r)].
    let bs: Vec<&[C64]> = std::iter::once(b).chain(p.iter().map(|r| r.as_slice())).collect();
    let q: Vec<Vec<C64>> = p.iter().map(|r| r.iter().map(|x| x.conj()).collect()).collect();
    let cs: Vec<&[C64]> = std::iter::once(c_tilde).chain(q.iter().map(|r| r.as_slice())).collect();
    let half = l / 2;
    let mut kf = Vec::with_capacity(half + 1);
    for k in 0..=half {
        let omega = C64::cis(-2.0 * std::f64::consts::PI * k as f64 / l as f64);
        let z = (C64::ONE - omega).scale(2.0) / (C64::ONE + omega);
        let r = |i: usize, j: usize| -> C64 {
            let v: Vec<C64> = bs[i].iter().zip(cs[j]).map(|(&x, &y)| (x * y).scale(dt)).collect();
            cauchy(&v, z, &w)
        };
        let r00 = r(0, 0);
        let k_f = match rank {
            0 => r00,
            1 => r00 - r(0, 1) * r(1, 0) / (C64::ONE + r(1, 1)),
            _ => {
                // r00 − r01·(I + r11)⁻¹·r10 with 2 × 2 blocks.
                let (a, bb, c, d) = (C64::ONE + r(1, 1), r(1, 2), r(2, 1), C64::ONE + r(2, 2));
                let det = a * d - bb * c;
                let (r01, r02, r10, r20) = (r(0, 1), r(0, 2), r(1, 0), r(2, 0));
                let s = r01 * (d * r10 - bb * r20) + r02 * (a * r20 - c * r10);
                r00 - s / det
            }
        };
        kf.push(k_f * C64::from(2.0) / (C64::ONE + omega));
    }
    kf
}

/// The inverse of a real DFT of length `n` (even) from its `n / 2 + 1` first bins (the
/// imaginary parts of bins 0 and n/2 are ignored, as numpy's and torch's irfft do).
pub fn irfft(x: &[C64], n: usize) -> Vec<f64> {
    irfft_at(x, n, &(0..n).collect::<Vec<_>>())
}

/// [`irfft`] at the points `ts` only.
pub fn irfft_at(x: &[C64], n: usize, ts: &[usize]) -> Vec<f64> {
    ts.iter()
        .map(|&t| {
            let mut s = x[0].re;
            for (k, &xk) in x.iter().enumerate().take(n / 2).skip(1) {
                s += 2.0 * (xk * C64::cis(2.0 * std::f64::consts::PI * (k * t % n) as f64 / n as f64)).re;
            }
            if n.is_multiple_of(2) {
                s += x[n / 2].re * if t % 2 == 0 { 1.0 } else { -1.0 };
            }
            s / n as f64
        })
        .collect()
}

/// A dense complex matrix, row-major.
#[derive(Debug, Clone)]
pub struct Dense {
    pub n: usize,
    pub m: Vec<C64>,
}

impl Dense {
    pub fn identity(n: usize) -> Self {
        let mut m = vec![C64::ZERO; n * n];
        (0..n).for_each(|i| m[i * n + i] = C64::ONE);
        Dense { n, m }
    }

    pub fn mul(&self, o: &Dense) -> Dense {
        let n = self.n;
        let mut m = vec![C64::ZERO; n * n];
        for i in 0..n {
            for k in 0..n {
                let a = self.m[i * n + k];
                for j in 0..n {
                    m[i * n + j] = m[i * n + j] + a * o.m[k * n + j];
                }
            }
        }
        Dense { n, m }
    }

    pub fn apply(&self, x: &[C64]) -> Vec<C64> {
        (0..self.n).map(|i| (0..self.n).fold(C64::ZERO, |a, k| a + self.m[i * self.n + k] * x[k])).collect()
    }

    /// The inverse, by Gauss–Jordan elimination with partial pivoting.
    pub fn inverse(&self) -> Dense {
        let n = self.n;
        let mut a = self.m.clone();
        let mut inv = Dense::identity(n).m;
        for col in 0..n {
            let piv = (col..n)
                .max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs()))
                .expect("rows");
            for j in 0..n {
                a.swap(col * n + j, piv * n + j);
                inv.swap(col * n + j, piv * n + j);
            }
            let d = a[col * n + col];
            for j in 0..n {
                a[col * n + j] = a[col * n + j] / d;
                inv[col * n + j] = inv[col * n + j] / d;
            }
            for i in (0..n).filter(|&i| i != col) {
                let f = a[i * n + col];
                for j in 0..n {
                    a[i * n + j] = a[i * n + j] - f * a[col * n + j];
                    inv[i * n + j] = inv[i * n + j] - f * inv[col * n + j];
                }
            }
        }
        Dense { n, m: inv }
    }
}

/// The conjugate-expanded vector [x, conj(x)].
pub fn expand(x: &[C64]) -> Vec<C64> {
    x.iter().copied().chain(x.iter().map(|v| v.conj())).collect()
}

/// The bilinear discretisation (Ā, B̄) of diag(Λ) − P·P* with input `b`, over the 2N
/// conjugate-expanded states, dense.
pub fn dplr_dense(dt: f64, lambda: &[C64], p: &[Vec<C64>], b: &[C64]) -> (Dense, Vec<C64>) {
    let lam = expand(lambda);
    let n = lam.len();
    let mut a = vec![C64::ZERO; n * n];
    for i in 0..n {
        a[i * n + i] = lam[i];
    }
    for row in p {
        let pe = expand(row);
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = a[i * n + j] - pe[i] * pe[j].conj();
            }
        }
    }
    let half_step = |s: f64| {
        let mut m = Dense::identity(n);
        for (x, y) in m.m.iter_mut().zip(&a) {
            *x = *x + y.scale(s * dt / 2.0);
        }
        m
    };
    let back = half_step(-1.0).inverse();
    let da = back.mul(&half_step(1.0));
    let db = back.apply(&expand(b)).into_iter().map(|x| x.scale(dt)).collect();
    (da, db)
}

/// K_l = Re(C·Ā^l·B̄), l < `l`, with C over the expanded states.
pub fn krylov_kernel(da: &Dense, db: &[C64], c: &[C64], l: usize) -> Vec<f64> {
    let mut x = db.to_vec();
    let mut out = Vec::with_capacity(l);
    for _ in 0..l {
        out.push(c.iter().zip(&x).fold(C64::ZERO, |a, (&c, &x)| a + c * x).re);
        x = da.apply(&x);
    }
    out
}

/// Ā^l by squaring.
fn power(da: &Dense, l: usize) -> Dense {
    let mut pow = Dense::identity(da.n);
    let mut base = da.clone();
    let mut e = l;
    while e > 0 {
        if e & 1 == 1 {
            pow = pow.mul(&base);
        }
        base = base.mul(&base);
        e >>= 1;
    }
    pow
}

/// x + sign·x·Ā^l over the expanded states, its first N/2 entries.
fn times_one_plus(da: &Dense, x: &[C64], l: usize, sign: f64) -> Vec<C64> {
    let (n, pow) = (da.n, power(da, l));
    let xe = expand(x);
    (0..n / 2)
        .map(|j| xe[j] + (0..n).fold(C64::ZERO, |a, i| a + xe[i] * pow.m[i * n + j]).scale(sign))
        .collect()
}

/// C̃ = C·(I − Ā^l) (its first N/2 entries), which the module stores for `l_kernel` = l.
pub fn c_tilde(da: &Dense, c: &[C64], l: usize) -> Vec<C64> {
    times_one_plus(da, c, l, -1.0)
}

/// The module's length doubling: C̃ for 2l from C̃ for l, C̃·(I + Ā^l).
pub fn double_c_tilde(da: &Dense, c_tilde: &[C64], l: usize) -> Vec<C64> {
    times_one_plus(da, c_tilde, l, 1.0)
}

#[cfg(test)]
mod tests {
    use super::super::hippo::{nplr, Measure};
    use super::*;

    /// A small deterministic generator (the `ops` layer does not reach up to `testing`).
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            lo + (hi - lo) * (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn rel(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den.max(1e-300)).sqrt()
    }

    fn cvec(rng: &mut Rng, n: usize) -> Vec<C64> {
        (0..n).map(|_| C64::new(rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0))).collect()
    }

    #[test]
    fn the_dplr_kernel_is_the_krylov_kernel_of_its_discretised_state() {
        let mut rng = Rng::new(5);
        for (n, l, dt) in [(8, 16, 0.1), (16, 64, 0.03), (32, 128, 0.01)] {
            let f = nplr(Measure::LegS, n).unwrap();
            let c = cvec(&mut rng, n / 2);
            let (da, db) = dplr_dense(dt, &f.w, &f.p, &f.b);
            let want = krylov_kernel(&da, &db, &expand(&c), l);
            let got = dplr_kernel(dt, &f.w, &f.p, &f.b, &c_tilde(&da, &c, l), l);
            let e = rel(&got, &want);
            assert!(e < 1e-9, "N={n} L={l}: relative error {e:.2e}");
        }
        // Length doubling: C̃ for 32 from C̃ for 16 gives the kernel of length 32.
        let f = nplr(Measure::LegS, 16).unwrap();
        let c = cvec(&mut rng, 8);
        let (da, db) = dplr_dense(0.05, &f.w, &f.p, &f.b);
        let doubled = double_c_tilde(&da, &c_tilde(&da, &c, 16), 16);
        let got = dplr_kernel(0.05, &f.w, &f.p, &f.b, &doubled, 32);
        let want = krylov_kernel(&da, &db, &expand(&c), 32);
        assert!(rel(&got, &want) < 1e-9, "doubled: {:.2e}", rel(&got, &want));
        // Rank 2 (LegT) too.
        let f = nplr(Measure::LegT, 16).unwrap();
        let c = cvec(&mut rng, 8);
        let (da, db) = dplr_dense(0.05, &f.w, &f.p, &f.b);
        let want = krylov_kernel(&da, &db, &expand(&c), 32);
        let got = dplr_kernel(0.05, &f.w, &f.p, &f.b, &c_tilde(&da, &c, 32), 32);
        assert!(rel(&got, &want) < 1e-9, "LegT: {:.2e}", rel(&got, &want));
    }

    #[test]
    fn the_vandermonde_kernel_is_the_diagonal_recurrence() {
        let mut rng = Rng::new(6);
        let (a, _) = super::super::hippo::diag_init(super::super::hippo::DiagInit::Inv, 16).unwrap();
        let (b, c) = (cvec(&mut rng, 8), cvec(&mut rng, 8));
        for disc in [Discretization::Zoh, Discretization::Bilinear] {
            let got = vandermonde_kernel(disc, 0.02, &a, &b, &c, 200);
            // Impulse response of x ← Ā·x + B̄·u, y = 2·Re(C·x), by repeated multiplication.
            let coef: Vec<(C64, C64)> =
                a.iter().zip(&b).map(|(&a, &b)| super::super::discretize(disc, 0.02, a, b)).collect();
            let mut x: Vec<C64> = coef.iter().map(|&(_, db)| db).collect();
            let mut want = Vec::new();
            for _ in 0..200 {
                want.push(2.0 * c.iter().zip(&x).map(|(&c, &x)| (c * x).re).sum::<f64>());
                x = x.iter().zip(&coef).map(|(&x, &(da, _))| da * x).collect();
            }
            assert!(rel(&got, &want) < 1e-10, "{disc:?}: {:.2e}", rel(&got, &want));
        }
    }

    #[test]
    fn irfft_inverts_a_real_dft() {
        let mut rng = Rng::new(7);
        for n in [2, 6, 16, 30] {
            let x: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let bins: Vec<C64> = (0..=n / 2)
                .map(|k| {
                    (0..n).fold(C64::ZERO, |a, t| {
                        a + C64::cis(-2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64).scale(x[t])
                    })
                })
                .collect();
            let back = irfft(&bins, n);
            assert!(rel(&back, &x) < 1e-12, "n={n}");
        }
    }
}
