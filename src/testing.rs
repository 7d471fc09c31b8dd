//! The op test harness, linseq's analogue of ggml's test-backend-ops.
//!
//! - [`devices`] opens every adapter the machine has (in CI: lavapipe and llvmpipe GL), so each
//!   op test runs on each backend. No adapter is an error that says what to install.
//! - [`compare`] measures NMSE and max-abs against an f64 reference and counts NaN/Inf
//!   mismatches; [`Budget`] holds per-op, per-dtype limits.
//! - [`GuardedOutput`] surrounds an output with sentinel words and fails if a kernel wrote them.

use crate::device::{self, AdapterSelection, Device, INSTALL_HINT};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Error budget of one comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Normalised mean squared error Σ(a−b)²/Σb².
    pub nmse: f64,
    /// Largest absolute difference, measured in units of max(1, max|reference|) so that ops
    /// with large outputs (exp) are judged at their own scale.
    pub max_abs: f64,
}

/// Per-op and per-dtype budgets. f16 entries apply when weights or inputs are f16 (the reference
/// then sees the same rounded values, so the budget covers accumulation order, not rounding).
pub fn budget(op: &str, dtype: DType) -> Budget {
    match (op, dtype) {
        // Copies: exact.
        ("embedding", _) | ("gather", _) => Budget { nmse: 0.0, max_abs: 0.0 },
        ("matmul", DType::F16) => Budget { nmse: 1e-9, max_abs: 5e-3 },
        ("matmul", _) => Budget { nmse: 1e-10, max_abs: 1e-3 },
        ("matmul_coop", _) => Budget { nmse: 1e-6, max_abs: 5e-2 },
        ("norm", _) | ("softmax", _) => Budget { nmse: 1e-10, max_abs: 1e-4 },
        // f16 outputs: the rounding of the store (2⁻¹¹ relative), on either side.
        ("elementwise", DType::F16) => Budget { nmse: 1e-6, max_abs: 2e-3 },
        ("elementwise", _) => Budget { nmse: 1e-11, max_abs: 1e-4 },
        _ => Budget { nmse: 1e-7, max_abs: 1e-3 },
    }
}

/// Result of comparing a GPU output with its f64 reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub n: usize,
    pub nmse: f64,
    pub max_abs: f64,
    /// max(1, max|reference|): the unit the max-abs budget is expressed in.
    pub scale: f64,
    /// Positions where exactly one side is NaN/Inf, or both are non-finite but differ.
    pub nonfinite_mismatches: usize,
}

impl Comparison {
    /// Ok when within budget and without NaN/Inf mismatches; otherwise a message with figures.
    pub fn check(&self, budget: Budget) -> std::result::Result<(), String> {
        if self.nonfinite_mismatches > 0 {
            return Err(format!("{} NaN/Inf mismatches", self.nonfinite_mismatches));
        }
        if self.nmse > budget.nmse || self.max_abs > budget.max_abs * self.scale {
            return Err(format!(
                "nmse {:.3e} (budget {:.1e}), max_abs {:.3e} (budget {:.1e} × scale {:.3e})",
                self.nmse, budget.nmse, self.max_abs, budget.max_abs, self.scale
            ));
        }
        Ok(())
    }
}

/// Compares `got` with `want` elementwise.
pub fn compare(got: &[f32], want: &[f64]) -> Comparison {
    assert_eq!(got.len(), want.len(), "compare: length mismatch");
    let (mut err, mut norm, mut max_abs, mut bad, mut scale) = (0f64, 0f64, 0f64, 0usize, 1f64);
    for (&g, &w) in got.iter().zip(want) {
        let g = g as f64;
        if !g.is_finite() || !w.is_finite() {
            let same = (g.is_nan() && w.is_nan()) || g == w;
            bad += (!same) as usize;
            continue;
        }
        let d = g - w;
        err += d * d;
        norm += w * w;
        max_abs = max_abs.max(d.abs());
        scale = scale.max(w.abs());
    }
    let nmse = if norm > 0.0 { err / norm } else { err };
    Comparison { n: got.len(), nmse, max_abs, scale, nonfinite_mismatches: bad }
}

/// Sentinel written around outputs: a quiet-NaN pattern no kernel produces by accident.
pub const SENTINEL: u32 = 0x7fc0_beef;

/// An output tensor with guard regions before and after it in the same buffer.
pub struct GuardedOutput {
    whole: Tensor,
    guard: usize,
    /// The view kernels write to.
    pub tensor: Tensor,
}

impl GuardedOutput {
    /// Allocates `shape` with at least 1024 guard words on each side, all set to [`SENTINEL`].
    /// 32-bit dtypes, or f16 (two per word; the pad half of an odd length's last word is the
    /// output's own, as its binding rounds up to whole words).
    pub fn new(dev: &Device, shape: &[usize], dtype: DType) -> Result<Self> {
        let per_word = match dtype.size() {
            4 => 1,
            2 => 2,
            _ => {
                return Err(Error::Invalid(format!(
                    "guarded outputs hold 32-bit dtypes or f16, not {dtype:?}"
                )))
            }
        };
        let align = dev.caps().min_storage_buffer_offset_alignment as usize / 4;
        let guard = 1024usize.div_ceil(align.max(1)) * align.max(1);
        let n: usize = shape.iter().product();
        let words = n.div_ceil(per_word);
        let whole = Tensor::from_slice(dev, &[guard + words + guard], &vec![SENTINEL; 2 * guard + words])?;
        let whole_typed = whole.as_flat(dtype)?;
        let tensor = whole_typed.view(dev, guard * per_word, shape)?;
        Ok(Self { whole: whole_typed, guard, tensor })
    }

    /// Reads the output words, failing if any guard word changed.
    pub fn read_words(&self, dev: &Device) -> Result<Vec<u32>> {
        let bytes = self.whole.read_bytes(dev)?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        let n = words.len() - 2 * self.guard;
        let (pre, rest) = words.split_at(self.guard);
        let (body, post) = rest.split_at(n);
        for (side, g) in [("before", pre), ("after", post)] {
            if let Some(i) = g.iter().position(|&w| w != SENTINEL) {
                return Err(Error::Validation(format!(
                    "out-of-bounds write: guard word {i} {side} the output was overwritten with {:#010x}",
                    g[i]
                )));
            }
        }
        Ok(body.to_vec())
    }

    /// Reads an f32 or f16 output as f32 (guards checked).
    pub fn read_f32(&self, dev: &Device) -> Result<Vec<f32>> {
        let words = self.read_words(dev)?;
        if self.tensor.dtype() == DType::F16 {
            let halves: Vec<half::f16> = bytemuck::pod_collect_to_vec(&words);
            return Ok(halves[..self.tensor.numel()].iter().map(|h| h.to_f32()).collect());
        }
        Ok(words.into_iter().map(f32::from_bits).collect())
    }
}

/// Opens every adapter (one device per adapter), honouring `LINSEQ_BACKEND`/`LINSEQ_ADAPTER`.
///
/// When `LINSEQ_EXPECT_BACKENDS` is set (e.g. `vulkan,gl` in CI), each named backend must be
/// present, so a missing driver fails the run instead of shrinking it.
pub fn devices() -> Result<Vec<Device>> {
    let sel = AdapterSelection::from_env()?;
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for adapter in device::enumerate_adapters(sel.backends.unwrap_or(wgpu::Backends::all())) {
        let info = adapter.get_info();
        if let Some(name) = &sel.name {
            if !info.name.to_ascii_lowercase().contains(&name.to_ascii_lowercase()) {
                continue;
            }
        }
        // The same physical adapter can be reported twice by some drivers; keep one each.
        let id = (info.name.clone(), info.backend);
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        // An adapter that is listed but cannot be opened (NVIDIA's GL on a headless machine
        // reports "Parent device is lost") is reported and left out; LINSEQ_EXPECT_BACKENDS
        // below still fails the run if that leaves a required backend without an adapter.
        match Device::from_adapter(adapter, sel.allow_experimental) {
            Ok(d) => out.push(d),
            Err(e) => eprintln!("warning: leaving out {}: {e}", device::describe_info(&info)),
        }
    }
    if out.is_empty() {
        return Err(Error::NoAdapter(INSTALL_HINT.into()));
    }
    if let Ok(expect) = std::env::var("LINSEQ_EXPECT_BACKENDS") {
        for b in expect.split(',').filter(|s| !s.is_empty()) {
            let want = device::parse_backend(b)?;
            if !out.iter().any(|d| want.contains(wgpu::Backends::from(d.adapter_info().backend))) {
                return Err(Error::NoAdapter(format!(
                    "LINSEQ_EXPECT_BACKENDS names {b}, but no such adapter was found ({INSTALL_HINT}; for gl also libegl1)"
                )));
            }
        }
    }
    Ok(out)
}

pub use crate::ops::cases::{round_f16, Rng};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_measures_and_flags_nonfinite() {
        let c = compare(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.5]);
        assert!((c.max_abs - 0.5).abs() < 1e-12);
        assert!((c.nmse - 0.25 / (1.0 + 4.0 + 12.25)).abs() < 1e-12);
        assert_eq!(c.nonfinite_mismatches, 0);
        let c = compare(&[f32::NAN, 1.0, f32::INFINITY], &[0.0, f64::NAN, f64::INFINITY]);
        assert_eq!(c.nonfinite_mismatches, 2);
        assert!(c.check(Budget { nmse: 1.0, max_abs: 1.0 }).is_err());
        // Large outputs are judged at their own scale.
        let c = compare(&[1000.01], &[1000.0]);
        assert!(c.check(Budget { nmse: 1e-9, max_abs: 1e-4 }).is_ok());
        assert!(c.check(Budget { nmse: 1e-9, max_abs: 1e-6 }).is_err());
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        let (va, vb) = (a.vec(100, -2.0, 3.0), b.vec(100, -2.0, 3.0));
        assert_eq!(va, vb);
        assert!(va.iter().all(|&v| (-2.0..3.0).contains(&v)));
    }
}
