//! Batched complex FFTs of power-of-two length in WGSL: Stockham autosort with radix-8, -4
//! and -2 stages in workgroup memory (`shaders/fft.wgsl`). A row of up to [`Plan::local`]
//! points is one pass; a longer row n = n1·n2 takes the four-step form in two passes, each
//! still in workgroup memory: length-n1 transforms down the n2 columns (stride n2) with the
//! twiddle ω_n^{j2·k1} applied as they are written, then length-n2 transforms along the rows.
//! The forward transform leaves bin k at [`Plan::slot`] (k1·n2 + k2 for k = k1 + n1·k2,
//! the natural order when the row is one pass) and the inverse reads that order and writes
//! natural order, so a convolution never transposes. The inverse is unscaled.

use super::s4::complex::C64;
use super::{grid, word, Params, Recorder};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/fft.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("fft");

crate::uniform! {
    /// One pass: sub-sequences of length `m`, `gstride` apart, stepping by `estride`, `subs`
    /// per row, `per_wg` per workgroup, `total` in all.
    pub struct FftParams {
        pub n: u32, pub m: u32, pub gstride: u32, pub estride: u32,
        pub subs: u32, pub per_wg: u32, pub total: u32, pub flags: u32,
    }
}

crate::flags! {
    /// Bits of [`FftParams::flags`].
    pub mod fft_flags { INVERSE = 1, TWIDDLE = 2 }
}

/// Workgroup-memory sizes a variant is compiled for (complex points per workgroup).
pub const LOCAL_SIZES: [usize; 3] = [4096, 2048, 1024];

crate::uniform! {
    /// The real-signal passes: rows, n, and the complex plan's n1, n2.
    pub struct RealParams { pub rows: u32, pub n: u32, pub n1: u32, pub n2: u32 }
}

/// The real-signal passes around the complex transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealPass {
    /// Two real rows into one complex row.
    In,
    /// The pair's transform into both rows' half spectra.
    Split,
    /// Two half spectra into one complex row, for the inverse.
    Join,
    /// The inverse's complex row into two real rows, scaled by 1/n.
    Out,
}

impl RealPass {
    const ALL: [RealPass; 4] = [RealPass::In, RealPass::Split, RealPass::Join, RealPass::Out];
    fn entry(self) -> (&'static str, &'static str) {
        match self {
            RealPass::In => ("REAL_IN", "real_in"),
            RealPass::Split => ("SPLIT", "split"),
            RealPass::Join => ("JOIN", "join"),
            RealPass::Out => ("REAL_OUT", "real_out"),
        }
    }
    fn variant(self) -> Variant {
        Variant::new(format!("fft.{}", self.entry().1), &SHADER, self.entry().1)
            .define("PASS", 0)
            .define("REAL", 1)
            .define("LOCAL", 1024)
            .with_params::<RealParams>()
            .one_of(RealPass::ALL.map(|r| r.entry().0), self.entry().0)
    }
}

fn variant(local: usize) -> Variant {
    // Every value of the workgroup buffer is loaded before it is read, so it is not zeroed
    // first (which also spares llvmpipe's GL compiler a LOCAL-element constructor).
    let mut v = Variant::new(format!("fft.local{local}"), &SHADER, "fft")
        .define(crate::shader::WRITES_BEFORE_READS, 1)
        .define("PASS", 1)
        .define("REAL", 0)
        .define("LOCAL", local)
        .with_params::<FftParams>()
        .with_flags(fft_flags::SET);
    for r in RealPass::ALL {
        v = v.define(r.entry().0, 0);
    }
    v
}

pub fn variants() -> Vec<Variant> {
    LOCAL_SIZES.iter().map(|&l| variant(l)).chain(RealPass::ALL.iter().map(|r| r.variant())).collect()
}

/// How rows of `n` points are transformed on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub n: usize,
    /// Column length of the four-step form (1 when a row is one pass).
    pub n1: usize,
    /// Row length of the four-step form.
    pub n2: usize,
    /// Points per workgroup.
    pub local: usize,
}

impl Plan {
    /// The largest workgroup buffer this device gives the FFT.
    pub fn local(dev: &Device) -> usize {
        let caps = dev.caps();
        let by_memory = caps.max_compute_workgroup_storage_size as usize / 8;
        let by_threads = caps.max_compute_invocations_per_workgroup as usize * 16;
        LOCAL_SIZES.into_iter().find(|&l| l <= by_memory && l <= by_threads).unwrap_or(0)
    }

    /// The plan for rows of `n` points (a power of two, at most local² of them).
    pub fn new(dev: &Device, n: usize) -> Result<Plan> {
        Self::with_local(n, Self::local(dev))
    }

    /// The plan with `local` points per workgroup.
    pub fn with_local(n: usize, local: usize) -> Result<Plan> {
        if local == 0 {
            return Err(Error::Limit(
                "the FFT needs 8 KiB of workgroup memory, which this device lacks".into(),
            ));
        }
        if !n.is_power_of_two() {
            return Err(Error::Invalid(format!("FFT length {n} is not a power of two")));
        }
        if n > local * local {
            return Err(Error::Limit(format!(
                "FFT length {n} exceeds this device's two-pass limit of {} points ({local} per workgroup)",
                local * local
            )));
        }
        let n2 = n.min(local);
        Ok(Plan { n, n1: n / n2, n2, local })
    }

    /// Where the forward transform leaves bin `k`.
    pub fn slot(&self, k: usize) -> usize {
        (k % self.n1) * self.n2 + k / self.n1
    }

    /// The bin at slot `s` (the inverse of [`Plan::slot`]).
    pub fn bin(&self, s: usize) -> usize {
        s / self.n2 + self.n1 * (s % self.n2)
    }
}

/// One pass over `rows` rows.
struct Pass {
    m: usize,
    gstride: usize,
    estride: usize,
    subs: usize,
    flags: u32,
}

/// Transforms `rows` rows of `data` (f32 pairs, row r at r·n complex) in place: forward
/// (natural order in, [`Plan::slot`] order out) or inverse (slot order in, natural order out,
/// unscaled).
pub fn fft(rec: &mut Recorder, data: &Tensor, rows: usize, plan: &Plan, inverse: bool) -> Result<()> {
    let n = plan.n;
    if data.dtype() != DType::F32 || data.numel() < rows * n * 2 {
        return Err(Error::Shape(format!(
            "fft: data must be f32 holding {rows} rows of {n} complex values, got {:?} {:?}",
            data.shape(),
            data.dtype()
        )));
    }
    if rows == 0 || n == 1 {
        return Ok(());
    }
    let inv = if inverse { fft_flags::INVERSE } else { 0 };
    let (n1, n2) = (plan.n1, plan.n2);
    let whole = Pass { m: n, gstride: n, estride: 1, subs: 1, flags: inv };
    let columns = |tw: u32| Pass { m: n1, gstride: 1, estride: n2, subs: n2, flags: inv | tw };
    let along = |tw: u32| Pass { m: n2, gstride: n2, estride: 1, subs: n1, flags: inv | tw };
    let passes = match (n1, inverse) {
        (1, _) => vec![whole],
        (_, false) => vec![columns(fft_flags::TWIDDLE), along(0)],
        (_, true) => vec![along(fft_flags::TWIDDLE), columns(0)],
    };
    let v = variant(plan.local);
    for pass in passes {
        let per_wg = plan.local / pass.m;
        let total = rows * pass.subs;
        let p = Params::of(&FftParams {
            n: word("FFT length", n)?,
            m: word("FFT length", pass.m)?,
            gstride: word("FFT stride", pass.gstride)?,
            estride: word("FFT stride", pass.estride)?,
            subs: word("FFT length", pass.subs)?,
            per_wg: word("FFT batch", per_wg)?,
            total: word("FFT rows", total)?,
            flags: pass.flags,
        });
        rec.dispatch(&v, &p, &[data], grid(rec.device(), total.div_ceil(per_wg))?)?;
    }
    Ok(())
}

/// Scratch (f32 elements) [`rfft`] and [`irfft`] of `rows` rows of `n` points take.
pub fn real_scratch(rows: usize, n: usize) -> usize {
    rows.div_ceil(2) * n * 2
}

fn real_params(rows: usize, plan: &Plan) -> Result<Params> {
    Ok(Params::of(&RealParams {
        rows: word("FFT rows", rows)?,
        n: word("FFT length", plan.n)?,
        n1: word("FFT length", plan.n1)?,
        n2: word("FFT length", plan.n2)?,
    }))
}

fn scratch_or_own(rec: &Recorder, work: Option<&Tensor>, rows: usize, n: usize) -> Result<Tensor> {
    match work {
        Some(w) if w.dtype() == DType::F32 && w.numel() >= real_scratch(rows, n) => Ok(w.clone()),
        Some(w) => Err(Error::Shape(format!(
            "fft: real scratch must be f32 of at least {} elements, got {:?}",
            real_scratch(rows, n),
            w.shape()
        ))),
        None => Tensor::empty(rec.device(), &[real_scratch(rows, n)], DType::F32),
    }
}

/// Real-to-complex: `x` `[rows, n]` f32 (n a power of two) to `spec` `[rows, n/2 + 1, 2]`, bins
/// in natural order, through `work` ([`real_scratch`]; allocated when `None`). Two rows share
/// one complex transform.
pub fn rfft(rec: &mut Recorder, x: &Tensor, work: Option<&Tensor>, spec: &Tensor) -> Result<()> {
    let (rows, n) = match x.shape() {
        &[r, n] if x.dtype() == DType::F32 => (r, n),
        other => return Err(Error::Shape(format!("rfft: x must be f32 [rows, n], got {other:?}"))),
    };
    super::expect("rfft spectrum", spec, &[rows, n / 2 + 1, 2], DType::F32)?;
    let plan = Plan::new(rec.device(), n)?;
    let z = scratch_or_own(rec, work, rows, n)?;
    let pairs = rows.div_ceil(2);
    let p = real_params(rows, &plan)?;
    rec.dispatch(&RealPass::In.variant(), &p, &[x, &z], grid(rec.device(), (pairs * n).div_ceil(64))?)?;
    fft(rec, &z, pairs, &plan, false)?;
    let g = grid(rec.device(), (pairs * (n / 2 + 1)).div_ceil(64))?;
    rec.dispatch(&RealPass::Split.variant(), &p, &[&z, spec], g)
}

/// Complex-to-real: half spectra `spec` `[rows, n/2 + 1, 2]` to `x` `[rows, n]`, scaled by 1/n
/// (numpy's and torch's irfft: the imaginary parts of bins 0 and n/2 are ignored).
pub fn irfft(rec: &mut Recorder, spec: &Tensor, work: Option<&Tensor>, x: &Tensor) -> Result<()> {
    let (rows, n) = match x.shape() {
        &[r, n] if x.dtype() == DType::F32 => (r, n),
        other => return Err(Error::Shape(format!("irfft: x must be f32 [rows, n], got {other:?}"))),
    };
    super::expect("irfft spectrum", spec, &[rows, n / 2 + 1, 2], DType::F32)?;
    let plan = Plan::new(rec.device(), n)?;
    let z = scratch_or_own(rec, work, rows, n)?;
    let pairs = rows.div_ceil(2);
    let p = real_params(rows, &plan)?;
    rec.dispatch(&RealPass::Join.variant(), &p, &[spec, &z], grid(rec.device(), (pairs * n).div_ceil(64))?)?;
    fft(rec, &z, pairs, &plan, true)?;
    rec.dispatch(&RealPass::Out.variant(), &p, &[&z, x], grid(rec.device(), (rows * n).div_ceil(64))?)
}

/// f64 reference: bins `bins` of the DFT of `x` (e^{−2πi·jk/n}, or e^{+} and unscaled when
/// `inverse`), each summed directly.
pub fn dft_ref(x: &[C64], bins: &[usize], inverse: bool) -> Vec<C64> {
    let n = x.len();
    let sign = if inverse { 1.0 } else { -1.0 };
    bins.iter()
        .map(|&k| {
            x.iter().enumerate().fold(C64::ZERO, |acc, (j, &v)| {
                // j·k mod n in integers, so the angle stays exact at large n.
                let r = ((j as u128 * k as u128) % n as u128) as f64;
                acc + v * C64::cis(sign * 2.0 * std::f64::consts::PI * r / n as f64)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_split_long_rows_and_slots_invert() {
        let p = Plan::with_local(1 << 20, 4096).unwrap();
        assert_eq!((p.n1, p.n2), (256, 4096));
        for k in [0, 1, 255, 256, 4097, (1 << 20) - 1] {
            assert_eq!(p.bin(p.slot(k)), k);
        }
        let one = Plan::with_local(512, 4096).unwrap();
        assert_eq!((one.n1, one.slot(37)), (1, 37));
        assert!(Plan::with_local(1 << 25, 4096).unwrap_err().to_string().contains("two-pass limit"));
        assert!(Plan::with_local(96, 4096).unwrap_err().to_string().contains("power of two"));
    }
}
