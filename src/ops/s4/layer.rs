//! One S4 / S4D layer's state space in f64, as state-spaces/s4's `SSMKernelDiag` and
//! `SSMKernelDPLR` hold it after their parameter transforms, and what the GPU kernels take
//! from it: the Vandermonde terms, the Cauchy terms for a kernel length, and the recurrent
//! view in real coordinates.
//!
//! The recurrent view: the 2N conjugate-expanded complex states [x, x̄] of one channel are
//! the N complex x = p + i·q, held as 2N reals r = [p, q]. With Ā = [[A₁₁, A₁₂], [Ā₁₂, Ā₁₁]],
//! p′ = (Re A₁₁ + Re A₁₂)·p + (Im A₁₂ − Im A₁₁)·q + Re b̄·u and q′ = (Im A₁₁ + Im A₁₂)·p +
//! (Re A₁₁ − Re A₁₂)·q + Im b̄·u; an output row c (over the expanded states, conjugate
//! symmetric) becomes w = [2·Re c, −2·Im c]. S4's stored C̃ = C·(I − Ā^L) for its `l_kernel`
//! L gives C by w̄ = w̃·(I − M^L)⁻¹, and any kernel length L′ its C̃ again as w̄·(I − M^{L′}).

use super::complex::C64;
use super::reference::dplr_dense;
use super::{discretize, Discretization};
use crate::error::{Error, Result};

/// Which kernel a layer's state space uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// S4D: diagonal A, discretised by ZOH or bilinear, the Vandermonde kernel.
    Diag(Discretization),
    /// S4: A = diag(Λ) − P·P*, bilinear, the Cauchy kernel with the Woodbury correction.
    Dplr,
}

/// One layer's state space over H channels and N states (one of each conjugate pair).
#[derive(Debug, Clone)]
pub struct Ssm {
    pub mode: Mode,
    pub h: usize,
    pub n: usize,
    /// Δ per channel.
    pub dt: Vec<f64>,
    /// Λ (the diagonal of A), `[H·N]`.
    pub a: Vec<C64>,
    /// B, `[H·N]`.
    pub b: Vec<C64>,
    /// C, or for S4 with `l_kernel` > 0 the module's C̃ for that length, `[H·N]`.
    pub c: Vec<C64>,
    /// The low-rank rows P (S4), each `[H·N]`.
    pub p: Vec<Vec<C64>>,
    /// The length C̃ is stored for (0: `c` is C itself).
    pub l_kernel: usize,
    /// The skip D, `[H]`.
    pub d: Vec<f64>,
}

/// A layer ready for the GPU: its [`Ssm`] and its recurrent view.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub ssm: Ssm,
    /// 2N, the real state rows per channel.
    pub rows: usize,
    /// M per channel, `[H, R, R]`.
    m: Vec<f64>,
    /// b̄ per channel, `[H, R]`.
    bbar: Vec<f64>,
    /// The output row w̄ (C itself, not C̃), `[H, R]`.
    wbar: Vec<f64>,
}

/// `f(h)` for every channel, over the machine's cores.
fn per_channel<T: Send>(h: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(h.max(1));
    let chunk = h.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = (0..h)
            .step_by(chunk)
            .map(|lo| s.spawn(move || (lo..(lo + chunk).min(h)).map(f).collect::<Vec<T>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("an S4 preparation thread panicked")).collect()
    })
}

fn matmul(a: &[f64], b: &[f64], r: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * r];
    for i in 0..r {
        for k in 0..r {
            let x = a[i * r + k];
            if x != 0.0 {
                let (row, src) = (&mut out[i * r..(i + 1) * r], &b[k * r..(k + 1) * r]);
                row.iter_mut().zip(src).for_each(|(o, &y)| *o += x * y);
            }
        }
    }
    out
}

/// M^l for l a power of two, by squaring.
fn power_of_two(m: &[f64], r: usize, l: usize) -> Vec<f64> {
    let mut p = m.to_vec();
    let mut e = 1;
    while e < l {
        p = matmul(&p, &p, r);
        e *= 2;
    }
    p
}

/// x·(I − P) for a row x.
fn times_i_minus(x: &[f64], pw: &[f64], r: usize) -> Vec<f64> {
    (0..r).map(|j| x[j] - (0..r).map(|i| x[i] * pw[i * r + j]).sum::<f64>()).collect()
}

/// The row x with x·A = rhs, by Gaussian elimination on Aᵀ with partial pivoting.
fn solve_row(a: &[f64], r: usize, rhs: &[f64]) -> Option<Vec<f64>> {
    let mut m: Vec<f64> = (0..r * r).map(|e| a[(e % r) * r + e / r]).collect(); // Aᵀ
    let mut x = rhs.to_vec();
    for col in 0..r {
        let piv = (col..r).max_by(|&i, &j| m[i * r + col].abs().total_cmp(&m[j * r + col].abs()))?;
        if m[piv * r + col].abs() < 1e-300 {
            return None;
        }
        for j in 0..r {
            m.swap(col * r + j, piv * r + j);
        }
        x.swap(col, piv);
        for i in col + 1..r {
            let f = m[i * r + col] / m[col * r + col];
            if f != 0.0 {
                for j in col..r {
                    m[i * r + j] -= f * m[col * r + j];
                }
                x[i] -= f * x[col];
            }
        }
    }
    for col in (0..r).rev() {
        let s: f64 = (col + 1..r).map(|j| m[col * r + j] * x[j]).sum();
        x[col] = (x[col] - s) / m[col * r + col];
    }
    Some(x)
}

/// A conjugate-symmetric output row over the expanded states, given by its first half c, in
/// real coordinates.
fn output_row(c: &[C64]) -> Vec<f64> {
    c.iter().map(|v| 2.0 * v.re).chain(c.iter().map(|v| -2.0 * v.im)).collect()
}

impl Ssm {
    /// Checks sizes and values: finite parameters, Δ > 0, Re Λ ≤ 0 (a stable state).
    pub fn check(&self) -> Result<()> {
        let hn = self.h * self.n;
        let sizes = [self.a.len(), self.b.len(), self.c.len()];
        if self.h == 0
            || self.n == 0
            || sizes.iter().any(|&s| s != hn)
            || self.dt.len() != self.h
            || self.d.len() != self.h
        {
            return Err(Error::Shape(format!(
                "S4 layer: H = {}, N = {}, but A, B, C hold {sizes:?} and dt, D {} and {}",
                self.h,
                self.n,
                self.dt.len(),
                self.d.len()
            )));
        }
        if 2 * self.n > super::kernels::MAX_ROWS {
            return Err(Error::Limit(format!(
                "S4 layer: d_state {} exceeds the recurrence's {} real state rows",
                2 * self.n,
                super::kernels::MAX_ROWS
            )));
        }
        match self.mode {
            Mode::Dplr if self.p.len() != 1 => {
                return Err(Error::UnsupportedVariant(format!(
                    "S4 (DPLR) with a rank-{} correction: the GPU kernel implements rank 1",
                    self.p.len()
                )))
            }
            Mode::Dplr if self.p[0].len() != hn => {
                return Err(Error::Shape(format!(
                    "S4 layer: P holds {} values, {hn} expected",
                    self.p[0].len()
                )))
            }
            _ => {}
        }
        let finite = |v: &C64| v.re.is_finite() && v.im.is_finite();
        let all = self.a.iter().chain(&self.b).chain(&self.c).chain(self.p.iter().flatten());
        if !all.clone().all(finite) || !self.dt.iter().chain(&self.d).all(|x| x.is_finite()) {
            return Err(Error::Model("S4 layer: a parameter is not finite".into()));
        }
        if let Some(dt) = self.dt.iter().find(|&&d| d <= 0.0) {
            return Err(Error::Model(format!("S4 layer: step Δ = {dt} is not positive")));
        }
        if let Some(a) = self.a.iter().find(|a| a.re > 1e-4) {
            return Err(Error::Model(format!("S4 layer: Re Λ = {} > 0 is unstable", a.re)));
        }
        Ok(())
    }

    /// The discretised state of channel `h` in real coordinates: (M, b̄, w̃) with w̃ the row
    /// of `c` as stored (C̃ for S4 with `l_kernel`).
    fn real_form(&self, h: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (n, r) = (self.n, 2 * self.n);
        let at = |v: &[C64]| v[h * n..(h + 1) * n].to_vec();
        let mut m = vec![0.0; r * r];
        let mut b = vec![0.0; r];
        match self.mode {
            Mode::Diag(disc) => {
                for i in 0..n {
                    let (da, db) = discretize(disc, self.dt[h], self.a[h * n + i], self.b[h * n + i]);
                    m[i * r + i] = da.re;
                    m[i * r + n + i] = -da.im;
                    m[(n + i) * r + i] = da.im;
                    m[(n + i) * r + n + i] = da.re;
                    b[i] = db.re;
                    b[n + i] = db.im;
                }
            }
            Mode::Dplr => {
                let p: Vec<Vec<C64>> = self.p.iter().map(|row| at(row)).collect();
                let (da, db) = dplr_dense(self.dt[h], &at(&self.a), &p, &at(&self.b));
                for i in 0..n {
                    for j in 0..n {
                        let (a11, a12) = (da.m[i * r + j], da.m[i * r + n + j]);
                        m[i * r + j] = a11.re + a12.re;
                        m[i * r + n + j] = a12.im - a11.im;
                        m[(n + i) * r + j] = a11.im + a12.im;
                        m[(n + i) * r + n + j] = a11.re - a12.re;
                    }
                    b[i] = db[i].re;
                    b[n + i] = db[i].im;
                }
            }
        }
        (m, b, output_row(&at(&self.c)))
    }

    /// Checks the layer and computes its recurrent view (C recovered from C̃ for S4).
    pub fn prepare(self) -> Result<Prepared> {
        Ok(self.prepare_outputs(&[])?.remove(0))
    }

    /// [`Ssm::prepare`] for `c` and then for each further output row in `more` (`[H·N]` each,
    /// stored as `c` is: a bidirectional layer's backward C). The discretisation and Ā's power
    /// are computed once for all of them.
    pub fn prepare_outputs(self, more: &[Vec<C64>]) -> Result<Vec<Prepared>> {
        self.check()?;
        let (n, r) = (self.n, 2 * self.n);
        if let Some(c) = more.iter().find(|c| c.len() != self.h * n) {
            return Err(Error::Shape(format!(
                "S4 layer: an output row holds {} values, {} expected",
                c.len(),
                self.h * n
            )));
        }
        let tilde = self.mode == Mode::Dplr && self.l_kernel > 0;
        if tilde && !self.l_kernel.is_power_of_two() {
            return Err(Error::UnsupportedVariant(format!(
                "S4: l_kernel = {} is not a power of two, which the FFT needs",
                self.l_kernel
            )));
        }
        let parts = per_channel(self.h, |h| {
            let (m, b, w) = self.real_form(h);
            let rows = std::iter::once(w).chain(more.iter().map(|c| output_row(&c[h * n..(h + 1) * n])));
            let ws: Vec<Option<Vec<f64>>> = if tilde {
                let mut i_minus = power_of_two(&m, r, self.l_kernel);
                i_minus.iter_mut().for_each(|x| *x = -*x);
                (0..r).for_each(|i| i_minus[i * r + i] += 1.0);
                rows.map(|w| solve_row(&i_minus, r, &w)).collect()
            } else {
                rows.map(Some).collect()
            };
            (m, b, ws)
        });
        let (mut m, mut bbar, mut wbars) = (Vec::new(), Vec::new(), vec![Vec::new(); 1 + more.len()]);
        for (h, (mh, bh, ws)) in parts.into_iter().enumerate() {
            m.extend(mh);
            bbar.extend(bh);
            for (wbar, w) in wbars.iter_mut().zip(ws) {
                wbar.extend(w.ok_or_else(|| {
                    Error::Model(format!("S4 channel {h}: I − Ā^L is singular, so C̃ gives no C"))
                })?);
            }
        }
        let cs = std::iter::once(self.c.clone()).chain(more.iter().cloned());
        Ok(cs
            .zip(wbars)
            .map(|(c, wbar)| Prepared {
                ssm: Ssm { c, ..self.clone() },
                rows: r,
                m: m.clone(),
                bbar: bbar.clone(),
                wbar,
            })
            .collect())
    }
}

/// S4D's kernel terms: `[H·N, 4]` (Re v, Im v, Re x, 0) and `[H·N, 2]` the turn count
/// Im x / 2π as a 64-bit fraction (hi, lo), for k_l = 2·Re Σ v·e^{x·l}.
pub struct VandermondeTerms {
    pub terms: Vec<f32>,
    pub theta: Vec<u32>,
}

impl Prepared {
    fn m_of(&self, h: usize) -> &[f64] {
        let r2 = self.rows * self.rows;
        &self.m[h * r2..(h + 1) * r2]
    }
    fn row(v: &[f64], h: usize, r: usize) -> &[f64] {
        &v[h * r..(h + 1) * r]
    }

    /// The Vandermonde terms (S4D only).
    pub fn vandermonde_terms(&self) -> Result<VandermondeTerms> {
        self.power_terms(true)
    }

    /// The state sum's terms (S4D only): as [`Prepared::vandermonde_terms`] with B̄ for C·B̄.
    pub fn state_terms(&self) -> Result<VandermondeTerms> {
        self.power_terms(false)
    }

    fn power_terms(&self, with_c: bool) -> Result<VandermondeTerms> {
        let s = &self.ssm;
        let disc = match s.mode {
            Mode::Diag(d) => d,
            Mode::Dplr => return Err(Error::Invalid("Vandermonde terms of an S4 (DPLR) layer".into())),
        };
        let (mut terms, mut theta) = (Vec::with_capacity(s.h * s.n * 4), Vec::with_capacity(s.h * s.n * 2));
        for h in 0..s.h {
            for i in 0..s.n {
                let e = h * s.n + i;
                let (da, db) = discretize(disc, s.dt[h], s.a[e], s.b[e]);
                let x = match disc {
                    Discretization::Zoh => s.a[e].scale(s.dt[h]),
                    Discretization::Bilinear => C64::new(da.abs().ln(), da.im.atan2(da.re)),
                };
                let v = if with_c { s.c[e] * db } else { db };
                terms.extend([v.re as f32, v.im as f32, x.re as f32, 0.0]);
                let turns = (x.im / (2.0 * std::f64::consts::PI)).rem_euclid(1.0);
                let fixed = (turns * 18446744073709551616.0) as u64; // 2^64
                theta.extend([(fixed >> 32) as u32, fixed as u32]);
            }
        }
        Ok(VandermondeTerms { terms, theta })
    }

    /// The Cauchy terms `[H·N, 5, 2]` for an inverse FFT of length `lk` (S4 only): per state
    /// (Δ·Λ, Δ·B·C̃, Δ·B·Q, Δ·P·C̃, Δ·P·Q) with C̃ = C·(I − Ā^{lk}) and Q = P̄.
    pub fn cauchy_terms(&self, lk: usize) -> Result<Vec<f32>> {
        let s = &self.ssm;
        let ct = self.c_tilde(lk)?;
        let n = s.n;
        let rows = per_channel(s.h, |h| {
            let mut out = Vec::with_capacity(n * 10);
            for i in 0..n {
                let e = h * n + i;
                let ct = ct[e];
                let (dt, b, p) = (s.dt[h], s.b[e], s.p[0][e]);
                let q = p.conj();
                for v in [
                    s.a[e].scale(dt),
                    (b * ct).scale(dt),
                    (b * q).scale(dt),
                    (p * ct).scale(dt),
                    (p * q).scale(dt),
                ] {
                    out.extend([v.re as f32, v.im as f32]);
                }
            }
            out
        });
        Ok(rows.into_iter().flatten().collect())
    }

    /// C̃ = C·(I − Ā^{lk}) `[H·N]` for an inverse FFT of length `lk` (S4 only).
    pub fn c_tilde(&self, lk: usize) -> Result<Vec<C64>> {
        let s = &self.ssm;
        if s.mode != Mode::Dplr || !lk.is_power_of_two() {
            return Err(Error::Invalid(format!(
                "C̃ needs an S4 (DPLR) layer and a power-of-two length, not {lk}"
            )));
        }
        let (n, r) = (s.n, self.rows);
        let rows = per_channel(s.h, |h| {
            let w = times_i_minus(Self::row(&self.wbar, h, r), &power_of_two(self.m_of(h), r, lk), r);
            (0..n).map(|i| C64::new(w[i] / 2.0, -w[n + i] / 2.0)).collect::<Vec<_>>()
        });
        Ok(rows.into_iter().flatten().collect())
    }

    /// M^l per channel `[H, R, R]` for l a power of two (the chunked state's step over a chunk).
    pub fn chunk_power(&self, l: usize) -> Vec<f32> {
        let r = self.rows;
        per_channel(self.ssm.h, |h| power_of_two(self.m_of(h), r, l))
            .into_iter()
            .flatten()
            .map(|x| x as f32)
            .collect()
    }

    /// The recurrence's matrix `[H, R + 1, R]` and input `[H, R + 1]`: M and b̄, then the
    /// output row (w̄·M, w̄·b̄ + D), so y comes from the state before it is overwritten.
    pub fn recurrence(&self) -> (Vec<f32>, Vec<f32>) {
        let (mat, bvec) = self.recurrence_f64();
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        (f(mat), f(bvec))
    }

    /// [`Prepared::recurrence`] in f64.
    fn recurrence_f64(&self) -> (Vec<f64>, Vec<f64>) {
        let r = self.rows;
        let (mut mat, mut bvec) = (Vec::with_capacity(self.ssm.h * (r + 1) * r), Vec::new());
        for h in 0..self.ssm.h {
            let (m, b, w) = (self.m_of(h), Self::row(&self.bbar, h, r), Self::row(&self.wbar, h, r));
            mat.extend_from_slice(m);
            mat.extend((0..r).map(|j| (0..r).map(|i| w[i] * m[i * r + j]).sum::<f64>()));
            bvec.extend_from_slice(b);
            bvec.push(w.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() + self.ssm.d[h]);
        }
        (mat, bvec)
    }

    /// f64 reference: the kernel k_l = w̄·M^l·b̄, `[H, L]`, from the dense recurrent view (the
    /// oracle of both GPU kernel generators).
    pub fn kernel_ref(&self, l: usize) -> Vec<f64> {
        let r = self.rows;
        per_channel(self.ssm.h, |h| {
            let (m, w) = (self.m_of(h), Self::row(&self.wbar, h, r));
            let mut x = Self::row(&self.bbar, h, r).to_vec();
            let mut out = Vec::with_capacity(l);
            for _ in 0..l {
                out.push(w.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>());
                x = (0..r).map(|i| (0..r).map(|j| m[i * r + j] * x[j]).sum()).collect();
            }
            out
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// f64 reference of the recurrent view over sequences `cu` from state `init` (`[S, H, R]`,
    /// zeros when `None`): y `[T, H]` (with D·u) and the final state.
    pub fn recurrence_ref(&self, u: &[f32], cu: &[usize], init: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
        let (h, r) = (self.ssm.h, self.rows);
        let (mat, bvec) = self.recurrence_f64();
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let state = init.map_or(vec![0.0; (cu.len() - 1) * h * r], widen);
        recurrence_table_ref(&mat, &bvec, &widen(u), cu, None, &state, init.is_some(), h)
    }
}

/// f64 reference of the recurrence kernel from its own inputs (what the S4 graph node's
/// reference evaluates): `mat` `[H, R + 1, R]`, `bvec` `[H, R + 1]`, u `[T, H]`, state
/// `[S, H, R]` (read when `init`); a sequence's first token without `init`, or a reset token,
/// starts from zero. Returns y `[T, H]` (row R of the matrices) and the final state.
#[allow(clippy::too_many_arguments)]
pub fn recurrence_table_ref(
    mat: &[f64],
    bvec: &[f64],
    u: &[f64],
    cu: &[usize],
    resets: Option<&[bool]>,
    state: &[f64],
    init: bool,
    h: usize,
) -> (Vec<f64>, Vec<f64>) {
    let r = bvec.len() / h.max(1) - 1;
    let mut y = vec![0.0; u.len()];
    let mut out = state.to_vec();
    for s in 0..cu.len() - 1 {
        for ch in 0..h {
            let m = &mat[ch * (r + 1) * r..(ch + 1) * (r + 1) * r];
            let b = &bvec[ch * (r + 1)..(ch + 1) * (r + 1)];
            let base = (s * h + ch) * r;
            let mut x: Vec<f64> = if init { state[base..base + r].to_vec() } else { vec![0.0; r] };
            for t in cu[s]..cu[s + 1] {
                if resets.is_some_and(|rs| rs[t]) {
                    x.iter_mut().for_each(|v| *v = 0.0);
                }
                let next: Vec<f64> = (0..=r)
                    .map(|i| (0..r).map(|j| m[i * r + j] * x[j]).sum::<f64>() + b[i] * u[t * h + ch])
                    .collect();
                y[t * h + ch] = next[r];
                x.copy_from_slice(&next[..r]);
            }
            if cu[s + 1] > cu[s] {
                out[base..base + r].copy_from_slice(&x);
            }
        }
    }
    (y, out)
}

/// f64 reference of the convolution: y[t, h] = D[h]·u[t, h] + Σ_{τ ≤ t − t0} k[h, τ]·u[t − τ, h]
/// within each segment of `segs`; `k` is `[H, L]`, or `[2, H, L]` when `bidirectional` (the
/// backward half adds Σ_m k_b[h, m]·u[t + 1 + m, h] up to the segment's end).
pub fn conv_ref_with(
    u: &[f32],
    segs: &[usize],
    k: &[f64],
    l: usize,
    d: &[f64],
    bidirectional: bool,
) -> Vec<f64> {
    let h = d.len();
    let mut y = conv_ref(u, segs, &k[..h * l], l, d);
    if bidirectional {
        for w in segs.windows(2) {
            for t in w[0]..w[1] {
                for ch in 0..h {
                    let ahead = (w[1] - t - 1).min(l);
                    y[t * h + ch] +=
                        (0..ahead).map(|m| k[(h + ch) * l + m] * u[(t + 1 + m) * h + ch] as f64).sum::<f64>();
                }
            }
        }
    }
    y
}

/// [`conv_ref_with`], causal.
pub fn conv_ref(u: &[f32], segs: &[usize], k: &[f64], l: usize, d: &[f64]) -> Vec<f64> {
    let h = d.len();
    let mut y = vec![0.0; u.len()];
    for w in segs.windows(2) {
        for t in w[0]..w[1] {
            for ch in 0..h {
                let mut acc = d[ch] * u[t * h + ch] as f64;
                for tau in 0..=(t - w[0]).min(l - 1) {
                    acc += k[ch * l + tau] * u[(t - tau) * h + ch] as f64;
                }
                y[t * h + ch] = acc;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::super::hippo::{diag_init, nplr, DiagInit, Measure};
    use super::super::reference::{dplr_kernel, vandermonde_kernel};
    use super::*;

    fn s4d(h: usize, n: usize, disc: Discretization) -> Ssm {
        let (a, b) = diag_init(DiagInit::Lin, 2 * n).unwrap();
        let c: Vec<C64> =
            (0..h * n).map(|i| C64::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos())).collect();
        Ssm {
            mode: Mode::Diag(disc),
            h,
            n,
            dt: (0..h).map(|i| 0.001 * 100f64.powf(i as f64 / h.max(2) as f64)).collect(),
            a: (0..h).flat_map(|_| a.clone()).collect(),
            b: (0..h).flat_map(|_| b.clone()).collect(),
            c,
            p: Vec::new(),
            l_kernel: 0,
            d: vec![0.5; h],
        }
    }

    #[test]
    fn the_real_form_gives_the_reference_kernels() {
        // S4D: the dense real view against the Vandermonde reference.
        for disc in [Discretization::Zoh, Discretization::Bilinear] {
            let s = s4d(3, 8, disc);
            let prep = s.clone().prepare().unwrap();
            let got = prep.kernel_ref(40);
            for h in 0..3 {
                let at = |v: &[C64]| v[h * 8..(h + 1) * 8].to_vec();
                let want = vandermonde_kernel(disc, s.dt[h], &at(&s.a), &at(&s.b), &at(&s.c), 40);
                for (g, w) in got[h * 40..(h + 1) * 40].iter().zip(want) {
                    assert!((g - w).abs() < 1e-10, "{disc:?} h {h}: {g} vs {w}");
                }
            }
        }
        // S4: C̃ for l_kernel 32 recovered to C, and the kernel at 64 from the Cauchy reference.
        let np = nplr(Measure::LegS, 16).unwrap();
        let n = 8;
        let c: Vec<C64> = (0..n).map(|i| C64::new((i as f64).cos(), 0.3 * i as f64)).collect();
        let dt = 0.05;
        let (da, _) = dplr_dense(dt, &np.w, &np.p, &np.b);
        let ct = super::super::reference::c_tilde(&da, &c, 32);
        let s = Ssm {
            mode: Mode::Dplr,
            h: 1,
            n,
            dt: vec![dt],
            a: np.w.clone(),
            b: np.b.clone(),
            c: ct,
            p: np.p.clone(),
            l_kernel: 32,
            d: vec![0.0],
        };
        let prep = s.prepare().unwrap();
        let ct64 = super::super::reference::c_tilde(&da, &c, 64);
        let want = dplr_kernel(dt, &np.w, &np.p, &np.b, &ct64, 64);
        let got = prep.kernel_ref(64);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-9, "{g} vs {w}");
        }
        // The Cauchy terms carry C̃ for their length: Δ·B·C̃ against the reference's C̃.
        let terms = prep.cauchy_terms(64).unwrap();
        for i in 0..n {
            let v = (np.b[i] * ct64[i]).scale(dt);
            assert!((terms[i * 10 + 2] as f64 - v.re).abs() < 1e-5 * v.abs().max(1.0));
        }
    }

    #[test]
    fn bad_layers_are_refused() {
        let mut s = s4d(2, 4, Discretization::Zoh);
        s.dt[1] = 0.0;
        assert!(s.clone().prepare().unwrap_err().to_string().contains("not positive"));
        s.dt[1] = 0.1;
        s.a[0] = C64::new(0.5, 0.0);
        assert!(s.clone().prepare().unwrap_err().to_string().contains("unstable"));
        s.a.pop();
        assert!(s.prepare().unwrap_err().to_string().contains("hold"));
    }
}
