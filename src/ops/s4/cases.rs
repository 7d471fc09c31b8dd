//! S4 and S4D layers that the tests and the benchmarks share: HiPPO initialisations with
//! steps Δ log-spaced over [0.001, 0.1] (the module's dt_min and dt_max) and random C and D.

use super::complex::C64;
use super::hippo::{diag_init, nplr, DiagInit, Measure};
use super::layer::{Mode, Ssm};
use super::Discretization;
use crate::error::Result;
use crate::ops::cases::Rng;

/// Δ log-spaced over [0.001, 0.1] across `h` channels.
pub fn steps(h: usize) -> Vec<f64> {
    (0..h).map(|i| 0.001 * 100f64.powf(i as f64 / (h.max(2) - 1) as f64)).collect()
}

fn random_c(rng: &mut Rng, len: usize) -> Vec<C64> {
    (0..len).map(|_| C64::new(rng.uniform(-1.0, 1.0) as f64, rng.uniform(-1.0, 1.0) as f64)).collect()
}

/// An S4D-Lin layer of `h` channels and `n` states per conjugate pair.
pub fn s4d_layer(rng: &mut Rng, h: usize, n: usize, disc: Discretization) -> Result<Ssm> {
    let (a, b) = diag_init(DiagInit::Lin, 2 * n)?;
    Ok(Ssm {
        mode: Mode::Diag(disc),
        h,
        n,
        dt: steps(h),
        a: (0..h).flat_map(|_| a.clone()).collect(),
        b: (0..h).flat_map(|_| b.clone()).collect(),
        c: random_c(rng, h * n),
        p: Vec::new(),
        l_kernel: 0,
        d: (0..h).map(|_| rng.uniform(-1.0, 1.0) as f64).collect(),
    })
}

/// An S4 layer (HiPPO-LegS in its normal-plus-low-rank form, B̃ clipped as the module's init
/// does); C is C itself (`l_kernel` 0).
pub fn s4_layer(rng: &mut Rng, h: usize, n: usize) -> Result<Ssm> {
    let np = nplr(Measure::LegS, 2 * n)?;
    let b = np.clipped_b(2.0);
    Ok(Ssm {
        mode: Mode::Dplr,
        h,
        n,
        dt: steps(h),
        a: (0..h).flat_map(|_| np.w.clone()).collect(),
        b: (0..h).flat_map(|_| b.clone()).collect(),
        c: random_c(rng, h * n),
        p: vec![(0..h).flat_map(|_| np.p[0].clone()).collect()],
        l_kernel: 0,
        d: (0..h).map(|_| rng.uniform(-1.0, 1.0) as f64).collect(),
    })
}
