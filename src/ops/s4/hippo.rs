//! HiPPO state matrices and the S4 / S4D initialisers, in f64, for random-weight presets and
//! tests (a loaded checkpoint carries its own parameters).
//!
//! [`transition`] gives a measure's (A, B) as state-spaces/s4's `models/s4/s4.py` defines them
//! (LegT and FouT in that file's forms: LegT halved, FouT with its endpoint correction; LagT,
//! which that file lacks, as `src/models/hippo/hippo.py` has it); [`nplr`] its
//! normal-plus-low-rank form A = V·(Λ − P̃·P̃*)·V* restricted to one eigenvalue of each
//! conjugate pair, which is what S4's DPLR kernel stores (Λ, P̃ = V*·P, B̃ = V*·B): A + P·Pᵀ is
//! a multiple of the identity plus a skew-symmetric S, so its eigenvectors come from the real
//! symmetric eigenproblem of SᵀS (Jacobi rotations), paired as (u + i·S·u/μ)/√2. The diagonal
//! inits ([`diag_init`]) are S4D's closed forms.

use super::complex::C64;
use crate::error::{Error, Result};

/// The HiPPO measures with a normal-plus-low-rank form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Scaled Legendre (S4's default): A_nk = −√(2n+1)·√(2k+1) for n > k, −(n+1) on the diagonal.
    LegS,
    /// Translated Legendre (halved, for the time scale).
    LegT,
    /// Translated Laguerre.
    LagT,
    /// Translated Fourier.
    FouT,
}

impl Measure {
    /// The measure named as state-spaces/s4 names it.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "legs" | "hippo" => Ok(Measure::LegS),
            "legt" => Ok(Measure::LegT),
            "lagt" => Ok(Measure::LagT),
            "fourier" | "fout" => Ok(Measure::FouT),
            other => Err(Error::UnsupportedVariant(format!(
                "HiPPO measure `{other}`: legs, legt, lagt and fourier are implemented"
            ))),
        }
    }

    /// Rows of the low-rank term P that makes A + P·Pᵀ normal.
    pub fn rank(self) -> usize {
        match self {
            Measure::LegS | Measure::LagT | Measure::FouT => 1,
            Measure::LegT => 2,
        }
    }
}

/// A measure's state matrix `a` (`n × n`, row-major) and input vector `b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub n: usize,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

/// (A, B) of `m` with `n` states.
pub fn transition(m: Measure, n: usize) -> Transition {
    let r = |k: usize| ((2 * k + 1) as f64).sqrt();
    let mut a = vec![0.0; n * n];
    let mut b = vec![0.0; n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = match m {
                Measure::LegS => match i.cmp(&j) {
                    std::cmp::Ordering::Greater => -r(i) * r(j),
                    std::cmp::Ordering::Equal => -((i + 1) as f64),
                    std::cmp::Ordering::Less => 0.0,
                },
                Measure::LegT => {
                    let sign = if i < j && (j - i) % 2 == 1 { -1.0 } else { 1.0 };
                    -0.5 * r(i) * r(j) * sign
                }
                Measure::LagT => (if i == j { 0.5 } else { 0.0 }) - (if j <= i { 1.0 } else { 0.0 }),
                Measure::FouT => {
                    let rot = if i % 2 == 0 && j == i + 1 {
                        -std::f64::consts::PI * (i / 2) as f64
                    } else if j % 2 == 0 && i == j + 1 {
                        std::f64::consts::PI * (j / 2) as f64
                    } else {
                        0.0
                    };
                    rot - fout_b(i) * fout_b(j)
                }
            };
        }
        b[i] = match m {
            Measure::LegS => r(i),
            Measure::LegT => 0.5 * r(i),
            Measure::LagT => 1.0,
            Measure::FouT => fout_b(i),
        };
    }
    Transition { n, a, b }
}

/// FouT's B (and its rank correction): 1 at the first state, √2 at the other even ones.
fn fout_b(i: usize) -> f64 {
    match i {
        0 => 1.0,
        i if i % 2 == 0 => std::f64::consts::SQRT_2,
        _ => 0.0,
    }
}

/// The low-rank term's rows: A + Σ_r P_r·P_rᵀ is normal.
pub fn rank_correction(m: Measure, n: usize) -> Vec<Vec<f64>> {
    let r = |k: usize| ((2 * k + 1) as f64).sqrt();
    match m {
        Measure::LegS => vec![(0..n).map(|k| (k as f64 + 0.5).sqrt()).collect()],
        Measure::LagT => vec![vec![0.5f64.sqrt(); n]],
        Measure::LegT => vec![
            (0..n).map(|k| if k % 2 == 0 { 0.0 } else { r(k) * std::f64::consts::FRAC_1_SQRT_2 }).collect(),
            (0..n).map(|k| if k % 2 == 1 { 0.0 } else { r(k) * std::f64::consts::FRAC_1_SQRT_2 }).collect(),
        ],
        Measure::FouT => vec![(0..n).map(fout_b).collect()],
    }
}

/// The normal-plus-low-rank form of a measure, over one eigenvalue of each conjugate pair
/// (`n / 2` of them, imaginary parts ≤ 0, ascending in magnitude).
#[derive(Debug, Clone)]
pub struct Nplr {
    pub n: usize,
    /// Λ.
    pub w: Vec<C64>,
    /// V*·P_r per row of the low-rank term.
    pub p: Vec<Vec<C64>>,
    /// V*·B (unclipped; see [`Nplr::clipped_b`]).
    pub b: Vec<C64>,
    /// The eigenvectors, `n × n / 2` row-major.
    pub v: Vec<C64>,
}

/// The NPLR form of `m` with `n` (even) states.
pub fn nplr(m: Measure, n: usize) -> Result<Nplr> {
    if n == 0 || !n.is_multiple_of(2) {
        return Err(Error::Invalid(format!("an NPLR form needs an even, positive state size, got {n}")));
    }
    let t = transition(m, n);
    let p = rank_correction(m, n);
    let mut mat = t.a.clone();
    for row in &p {
        for i in 0..n {
            for j in 0..n {
                mat[i * n + j] += row[i] * row[j];
            }
        }
    }
    // A + P·Pᵀ = c·I + S with S skew-symmetric.
    let c = (0..n).map(|i| mat[i * n + i]).sum::<f64>() / n as f64;
    let scale = mat.iter().fold(1.0f64, |a, x| a.max(x.abs()));
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let sym = 0.5 * (mat[i * n + j] + mat[j * n + i]) - if i == j { c } else { 0.0 };
            if sym.abs() > 1e-9 * scale {
                return Err(Error::Invalid(format!(
                    "{m:?}: A + P·Pᵀ is not a multiple of I plus a skew part"
                )));
            }
            s[i * n + j] = 0.5 * (mat[i * n + j] - mat[j * n + i]);
        }
    }
    // SᵀS = −S², symmetric with eigenvalues μ² in pairs.
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..n).map(|k| s[k * n + i] * s[k * n + j]).sum();
        }
    }
    let (vals, vecs) = jacobi_eigen(&g, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| vals[y].total_cmp(&vals[x]));
    let apply =
        |x: &[f64]| -> Vec<f64> { (0..n).map(|i| (0..n).map(|k| s[i * n + k] * x[k]).sum()).collect() };
    // Each eigenvector of SᵀS not yet spanned gives a pair (u, S·u/μ); the null space of S
    // (FouT's zero frequency) is paired up as it comes.
    let mut pairs: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    let mut null: Vec<Vec<f64>> = Vec::new();
    for &k in &order {
        let mut r: Vec<f64> = (0..n).map(|i| vecs[i * n + k]).collect();
        for basis in pairs.iter().flat_map(|(u, v, _)| [u, v]).chain(null.iter()) {
            let d: f64 = r.iter().zip(basis).map(|(a, b)| a * b).sum();
            r.iter_mut().zip(basis).for_each(|(a, b)| *a -= d * b);
        }
        let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm < 0.5 {
            continue;
        }
        let u: Vec<f64> = r.iter().map(|x| x / norm).collect();
        let su = apply(&u);
        let mu = su.iter().map(|x| x * x).sum::<f64>().sqrt();
        if mu < 1e-9 * scale {
            null.push(u);
            if null.len() == 2 {
                let v = null.pop().expect("two");
                pairs.push((null.pop().expect("one"), v, 0.0));
            }
        } else {
            let v = su.iter().map(|x| x / mu).collect();
            pairs.push((u, v, mu));
        }
        if pairs.len() == n / 2 {
            break;
        }
    }
    if pairs.len() != n / 2 {
        return Err(Error::Invalid(format!("{m:?}: found {} of {} eigenvalue pairs", pairs.len(), n / 2)));
    }
    pairs.sort_by(|x, y| x.2.total_cmp(&y.2));
    // x = (u + i·v)/√2: S·x = −iμ·x.
    let h = n / 2;
    let mut vm = vec![C64::ZERO; n * h];
    for (k, (u, v, _)) in pairs.iter().enumerate() {
        for i in 0..n {
            vm[i * h + k] = C64::new(u[i], v[i]).scale(std::f64::consts::FRAC_1_SQRT_2);
        }
    }
    let project = |x: &[f64]| -> Vec<C64> {
        (0..h).map(|k| (0..n).fold(C64::ZERO, |acc, i| acc + vm[i * h + k].conj().scale(x[i]))).collect()
    };
    Ok(Nplr {
        n,
        w: pairs.iter().map(|(.., mu)| C64::new(c, -mu)).collect(),
        p: p.iter().map(|row| project(row)).collect(),
        b: project(&t.b),
        v: vm,
    })
}

impl Nplr {
    /// B̃ with its imaginary parts clamped to ±`clip`, as the module's init does (B_clip = 2).
    pub fn clipped_b(&self, clip: f64) -> Vec<C64> {
        self.b.iter().map(|b| C64::new(b.re, b.im.clamp(-clip, clip))).collect()
    }
}

/// Eigenvalues and eigenvectors (columns of the returned `n × n`, row-major) of the real
/// symmetric `a`, by cyclic Jacobi rotations.
fn jacobi_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let cs = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * cs;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = cs * akp - sn * akq;
                    a[k * n + q] = sn * akp + cs * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = cs * apk - sn * aqk;
                    a[q * n + k] = sn * apk + cs * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = cs * vkp - sn * vkq;
                    v[k * n + q] = sn * vkp + cs * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// S4D's diagonal inits: `n / 2` eigenvalues (negative real and imaginary parts) and B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagInit {
    /// S4D-Lin: A_n = −½ − iπn.
    Lin,
    /// S4D-Inv: A_n = −½ − i·(N/π)·(N/(2n+1) − 1), the asymptotics of LegS's eigenvalues.
    Inv,
    /// S4D-LegS: the diagonal of LegS's NPLR form.
    LegS,
}

impl DiagInit {
    /// state-spaces/s4's init names (`diag-lin`, `diag-inv`, `diag-legs`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "diag-lin" | "lin" => Ok(DiagInit::Lin),
            "diag-inv" | "inv" => Ok(DiagInit::Inv),
            "diag-legs" | "diag" | "legs" => Ok(DiagInit::LegS),
            other => Err(Error::UnsupportedVariant(format!(
                "diagonal init `{other}`: diag-lin, diag-inv and diag-legs are implemented"
            ))),
        }
    }
}

/// (A, B) of a diagonal init with `n` (even) states: B is ones (halved LegS's B̃ for diag-legs).
pub fn diag_init(init: DiagInit, n: usize) -> Result<(Vec<C64>, Vec<C64>)> {
    if n == 0 || !n.is_multiple_of(2) {
        return Err(Error::Invalid(format!("a diagonal init needs an even, positive state size, got {n}")));
    }
    let big = n as f64;
    let pi = std::f64::consts::PI;
    let a = (0..n / 2)
        .map(|k| {
            let k = k as f64;
            match init {
                DiagInit::Lin => Ok(C64::new(-0.5, -pi * k)),
                DiagInit::Inv => Ok(C64::new(-0.5, -(big / pi) * (big / (2.0 * k + 1.0) - 1.0))),
                DiagInit::LegS => Ok(C64::ZERO),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if init == DiagInit::LegS {
        let f = nplr(Measure::LegS, n)?;
        return Ok((f.w, f.b.iter().map(|b| b.scale(0.5)).collect()));
    }
    Ok((a, vec![C64::ONE; n / 2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// max |2·Re(V·diag(w)·V*) − Σ P·Pᵀ − A| and max |2·Re(V·B̃) − B|, relative to A's largest.
    fn reconstruction_error(m: Measure, n: usize) -> (f64, f64) {
        let t = transition(m, n);
        let f = nplr(m, n).unwrap();
        let p = rank_correction(m, n);
        let h = n / 2;
        let scale = t.a.iter().fold(1.0f64, |a, x| a.max(x.abs()));
        let mut err_a = 0.0f64;
        for i in 0..n {
            for j in 0..n {
                let full =
                    (0..h).fold(C64::ZERO, |acc, k| acc + f.v[i * h + k] * f.w[k] * f.v[j * h + k].conj());
                let low: f64 = p.iter().map(|r| r[i] * r[j]).sum();
                err_a = err_a.max((2.0 * full.re - low - t.a[i * n + j]).abs() / scale);
            }
        }
        let mut err_b = 0.0f64;
        for i in 0..n {
            let b = (0..h).fold(C64::ZERO, |acc, k| acc + f.v[i * h + k] * f.b[k]);
            err_b = err_b.max((2.0 * b.re - t.b[i]).abs());
        }
        (err_a, err_b)
    }

    #[test]
    fn legs_has_its_closed_form() {
        let t = transition(Measure::LegS, 5);
        // Row 3: −√7·√1, −√7·√3, −√7·√5, −4, 0.
        let want = [-(7.0f64).sqrt(), -(21.0f64).sqrt(), -(35.0f64).sqrt(), -4.0, 0.0];
        for (j, w) in want.iter().enumerate() {
            assert!((t.a[3 * 5 + j] - w).abs() < 1e-12, "A[3][{j}] = {}", t.a[3 * 5 + j]);
        }
        assert!((t.b[2] - 5f64.sqrt()).abs() < 1e-12);
        // The NPLR form's eigenvalues all have real part −½.
        let f = nplr(Measure::LegS, 64).unwrap();
        assert!(f.w.iter().all(|w| (w.re + 0.5).abs() < 1e-9 && w.im < 0.0), "{:?}", &f.w[..4]);
    }

    #[test]
    fn every_measure_is_its_normal_plus_low_rank_form() {
        for m in [Measure::LegS, Measure::LegT, Measure::LagT, Measure::FouT] {
            for n in [4, 16, 64] {
                let (ea, eb) = reconstruction_error(m, n);
                assert!(ea < 1e-10 && eb < 1e-9, "{m:?} N={n}: A off by {ea:.2e}, B by {eb:.2e}");
            }
        }
    }

    #[test]
    fn the_eigenvectors_are_orthonormal_and_distinct_from_their_conjugates() {
        let f = nplr(Measure::LegS, 32).unwrap();
        let (n, h) = (32, 16);
        for j in 0..h {
            for k in 0..h {
                let dot = (0..n).fold(C64::ZERO, |a, i| a + f.v[i * h + j].conj() * f.v[i * h + k]);
                let cdot = (0..n).fold(C64::ZERO, |a, i| a + f.v[i * h + j] * f.v[i * h + k]);
                let want = if j == k { 1.0 } else { 0.0 };
                assert!((dot.re - want).abs() < 1e-10 && dot.im.abs() < 1e-10, "x{j}*·x{k} = {dot:?}");
                assert!(cdot.abs() < 1e-10, "x{j}ᵀ·x{k} = {cdot:?}");
            }
        }
    }

    #[test]
    fn diagonal_inits_and_bad_names() {
        let (a, b) = diag_init(DiagInit::Lin, 8).unwrap();
        assert_eq!(a.len(), 4);
        assert!((a[3].im + 3.0 * std::f64::consts::PI).abs() < 1e-12 && a[3].re == -0.5 && b[3] == C64::ONE);
        let (a, _) = diag_init(DiagInit::Inv, 8).unwrap();
        assert!((a[0].im + 8.0 / std::f64::consts::PI * 7.0).abs() < 1e-12);
        // S4D-Inv is LegS's eigenvalue asymptotics: the largest imaginary parts agree to 2% at
        // N = 64, and closer at N = 128.
        let gap = |n: usize| {
            let (inv, _) = diag_init(DiagInit::Inv, n).unwrap();
            let (legs, _) = diag_init(DiagInit::LegS, n).unwrap();
            let top = legs.iter().map(|w| w.im).fold(0.0, f64::min);
            (inv[0].im - top).abs() / top.abs()
        };
        let (g64, g128) = (gap(64), gap(128));
        assert!(g64 < 0.02 && g128 < g64, "gaps {g64} at 64, {g128} at 128");
        assert!(Measure::parse("chebyshev").unwrap_err().to_string().contains("chebyshev"));
        assert!(DiagInit::parse("diag-real").unwrap_err().to_string().contains("diag-real"));
        assert!(nplr(Measure::LegS, 7).is_err());
    }
}
