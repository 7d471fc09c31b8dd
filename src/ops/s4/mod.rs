//! S4 and S4D (issue 18), so far their f64 foundations over a small complex type
//! ([`complex::C64`]): HiPPO matrices and the S4 / S4D initialisers ([`hippo`]), the
//! discretisation of a diagonal state ([`discretize`]), and the convolution kernels' references
//! ([`reference`]: S4D's Vandermonde kernel, S4's DPLR kernel by Cauchy sums and the Woodbury
//! correction, C̃ and its length doubling, checked against the dense Krylov kernel); a layer's
//! state space and what the GPU takes from it ([`layer`]); and the GPU kernels ([`kernels`]:
//! Vandermonde and Cauchy kernel generation, the FFT and direct convolutions, the recurrent
//! view), with the fused FFT convolution in [`fftconv`]. The FFT itself is its own family,
//! [`super::fft`], whose Stockham stages the fused convolution shares (`lib/fft_stages`).

pub mod cases;
pub mod complex;
pub mod fftconv;
pub mod hippo;
pub mod kernels;
pub mod layer;
pub mod reference;

pub use kernels::SHADER;

/// Every S4 variant: the kernels' and the fused convolution's.
pub fn variants() -> Vec<crate::shader::Variant> {
    kernels::variants().into_iter().chain(fftconv::variants()).collect()
}

use crate::error::{Error, Result};
use complex::C64;

/// How a continuous state (A, B) becomes a discrete one with step Δ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discretization {
    /// Zero-order hold: Ā = e^{ΔA}, B̄ = (e^{ΔA} − 1)/A·B (S4D's default).
    Zoh,
    /// Bilinear (Tustin): Ā = (1 + ΔA/2)/(1 − ΔA/2), B̄ = Δ·B/(1 − ΔA/2) (S4's recurrent view).
    Bilinear,
}

impl Discretization {
    /// state-spaces/s4's `disc` names.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "zoh" => Ok(Discretization::Zoh),
            "bilinear" => Ok(Discretization::Bilinear),
            other => Err(Error::UnsupportedVariant(format!(
                "discretisation `{other}`: zoh and bilinear are implemented"
            ))),
        }
    }
}

/// (Ā, B̄) of one diagonal state a with input weight b and step `dt`.
pub fn discretize(d: Discretization, dt: f64, a: C64, b: C64) -> (C64, C64) {
    let dta = a.scale(dt);
    match d {
        Discretization::Zoh => {
            let da = dta.exp();
            // (e^{ΔA} − 1)/A, by its series where ΔA is small enough to cancel.
            let f = if dta.abs() < 1e-4 {
                C64::from(dt) * (C64::ONE + dta.scale(0.5) + dta * dta.scale(1.0 / 6.0))
            } else {
                (da - C64::ONE) / a
            };
            (da, f * b)
        }
        Discretization::Bilinear => {
            let den = C64::ONE - dta.scale(0.5);
            ((C64::ONE + dta.scale(0.5)) / den, b.scale(dt) / den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoh_is_exact_and_bilinear_converges_to_it_at_third_order() {
        let (a, b) = (C64::new(-0.5, -7.0), C64::new(0.3, 0.2));
        // ZOH: x' = a·x + b·u with u = 1 from x = 0 is (e^{at} − 1)/a·b at t = Δ, so two half
        // steps equal one whole step.
        let (da, db) = discretize(Discretization::Zoh, 0.1, a, b);
        let (ha, hb) = discretize(Discretization::Zoh, 0.05, a, b);
        let two = ha * hb + hb;
        assert!((two - db).abs() < 1e-14, "{two:?} vs {db:?}");
        assert!((da - ha * ha).abs() < 1e-14);
        // Bilinear's Ā differs from e^{ΔA} by O(Δ³): the error shrinks 8× as Δ halves.
        let err = |dt: f64| {
            (discretize(Discretization::Bilinear, dt, a, b).0 - discretize(Discretization::Zoh, dt, a, b).0)
                .abs()
        };
        let ratio = err(0.002) / err(0.001);
        assert!((ratio - 8.0).abs() < 0.1, "ratio {ratio}");
        // The small-step series joins the closed form.
        let (_, s) = discretize(Discretization::Zoh, 1e-5, C64::new(-1.0, 2.0), C64::ONE);
        let exact = (C64::new(-1e-5, 2e-5).exp() - C64::ONE) / C64::new(-1.0, 2.0);
        assert!((s - exact).abs() < 1e-10 * s.abs(), "{s:?} vs {exact:?}");
        assert!(Discretization::parse("euler").unwrap_err().to_string().contains("euler"));
    }
}
