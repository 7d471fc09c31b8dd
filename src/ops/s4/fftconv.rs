//! The fused FFT convolution (`shaders/s4/fftconv.wgsl`): y = (k + D·δ) ∗ u within each
//! segment, reading u and k and writing y themselves instead of through packed copies. A
//! transform of n ≤ local/2 points is one pass (load, transform, multiply, transform back,
//! store); a longer one takes three (the four-step form n = n1·n2: the forward columns straight
//! from u and k; the forward rows, the product and the inverse rows in one; the inverse columns
//! straight into y), against the seven of [`super::kernels`]' separate passes, which stay for
//! transforms past local²/4 points.
//!
//! Bytes per channel pair at FFT length n = 2L (u, k and y are 8L each): the whole form moves
//! only those 24L; the four-step form 120L (columns: 8L + 8L in, 2·16L out; rows: 2·16L in,
//! 16L out; output: 16L in, 8L out), the separate passes about 330L.

use super::super::fft::LOCAL_SIZES;
use super::super::{grid, word, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The fused convolution's WGSL (`shaders/s4/fftconv.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("s4/fftconv");

crate::uniform! {
    /// The fused convolution's parameters (the shader's header says what each holds).
    pub struct FftConvParams {
        pub segs: u32, pub pairs: u32, pub h: u32, pub n: u32, pub n1: u32, pub n2: u32,
        pub lk: u32, pub lags: u32, pub bidi: u32, pub pair0: u32, pub ppw: u32, pub cols: u32,
    }
}

/// The fused convolution's passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Whole,
    Columns,
    Rows,
    Output,
}

impl Pass {
    pub const ALL: [Pass; 4] = [Pass::Whole, Pass::Columns, Pass::Rows, Pass::Output];

    fn entry(self) -> (&'static str, &'static str) {
        match self {
            Pass::Whole => ("WHOLE", "whole"),
            Pass::Columns => ("COLUMNS", "columns"),
            Pass::Rows => ("ROWS", "rows"),
            Pass::Output => ("OUTPUT", "output"),
        }
    }

    pub fn variant(self, local: usize) -> Variant {
        let entry = self.entry().1;
        use Pass::*;
        Variant::new(format!("s4.fftconv.{entry}.local{local}"), &SHADER, entry)
            .with_params::<FftConvParams>()
            .define("LOCAL", local)
            // Each pass loads its whole workgroup buffer before reading any of it.
            .define(crate::shader::WRITES_BEFORE_READS, 1)
            .one_of(Pass::ALL.map(|p| p.entry().0), self.entry().0)
            .define("LOADS", matches!(self, Whole | Columns) as u32)
            .define("STORES", matches!(self, Whole | Output) as u32)
            .define("MULTIPLY", matches!(self, Whole | Rows) as u32)
            .define("TILES", matches!(self, Columns | Output) as u32)
    }
}

pub fn variants() -> Vec<Variant> {
    LOCAL_SIZES.iter().flat_map(|&l| Pass::ALL.map(|p| p.variant(l))).collect()
}

/// The longest transform the whole form takes on any device the FFT runs on with 4096-point
/// workgroups; a convolution up to this length needs no scratch.
pub const WHOLE_MAX: usize = LOCAL_SIZES[0] / 2;

/// How the fused convolution splits rows of `n` points with `local` points per workgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedPlan {
    pub n: usize,
    /// Column length (1 for the whole form), at least 16 otherwise.
    pub n1: usize,
    /// Row length: n2 ≤ local/4, so a workgroup holds a row pair of the input and the kernel.
    pub n2: usize,
    pub local: usize,
    /// Pairs per workgroup (the whole form and the column passes).
    pub ppw: usize,
    /// Columns per workgroup of the column passes.
    pub cols: usize,
}

impl FusedPlan {
    /// The plan for a device whose largest FFT workgroup holds `local` points, or `None` where
    /// the separate passes take the convolution: past local²/4 points, and from local/2 up to
    /// local, where their FFT is one workgroup per row (at n = local, H 1024, the H200 ran them
    /// in 244 µs against the four-step form's 312).
    pub fn new(n: usize, local: usize) -> Option<FusedPlan> {
        if local < 64 || !n.is_power_of_two() || n < 2 {
            return None;
        }
        if n <= local / 2 {
            // The smallest workgroup that holds a pair: short rows then spread over more
            // workgroups than the largest would give them.
            let local = LOCAL_SIZES.into_iter().filter(|&l| l >= 2 * n && l <= local).min().unwrap_or(local);
            return Some(FusedPlan { n, n1: 1, n2: n, local, ppw: local / (2 * n), cols: 1 });
        }
        if n <= local {
            return None;
        }
        let n1 = (n / (local / 4)).max(16);
        if n1 > local {
            return None;
        }
        let ppw = (local / n1).min(8);
        Some(FusedPlan { n, n1, n2: n / n1, local, ppw, cols: local / (n1 * ppw) })
    }

    pub fn whole(&self) -> bool {
        self.n1 == 1
    }

    /// Scratch (f32 elements) for `segs` segments and `pairs` channel pairs.
    pub fn scratch(&self, segs: usize, pairs: usize) -> usize {
        if self.whole() {
            0
        } else {
            row_scratch(segs, pairs, self.n)
        }
    }
}

/// Scratch (f32 elements) of the FFT rows of `segs` segments and the kernel, `pairs` channel
/// pairs each, `n` points a row: the four-step form's and the separate passes' alike.
pub fn row_scratch(segs: usize, pairs: usize, n: usize) -> usize {
    (segs + 1) * pairs * n * 2
}

/// What one group of channel pairs of the convolution works on.
pub struct Group<'a> {
    pub u: &'a Tensor,
    /// The segments' cu table on the device, `segs` + 1 entries.
    pub segt: &'a Tensor,
    pub segs: usize,
    pub k: &'a Tensor,
    pub dskip: &'a Tensor,
    pub y: &'a Tensor,
    pub h: usize,
    /// The kernel's row length and the lags used (min of it and the longest segment).
    pub lk: usize,
    pub lags: usize,
    pub bidirectional: bool,
    /// The group's first pair and its number of pairs.
    pub pair0: usize,
    pub pairs: usize,
}

/// Records the fused convolution of one group; `data` holds [`FusedPlan::scratch`] elements
/// for the four-step form.
pub fn record(rec: &mut Recorder, g: &Group, plan: &FusedPlan, data: Option<&Tensor>) -> Result<()> {
    let p = FftConvParams {
        segs: word("segments", g.segs)?,
        pairs: word("channel pairs", g.pairs)?,
        h: word("channels", g.h)?,
        n: word("FFT length", plan.n)?,
        n1: word("FFT length", plan.n1)?,
        n2: word("FFT length", plan.n2)?,
        lk: word("kernel length", g.lk)?,
        lags: word("kernel length", g.lags)?,
        bidi: g.bidirectional as u32,
        pair0: word("channel pairs", g.pair0)?,
        ppw: plan.ppw as u32,
        cols: plan.cols as u32,
    };
    let params = Params::of(&p);
    let blocks = g.pairs.div_ceil(plan.ppw);
    let dev = rec.device();
    if plan.whole() {
        let wg = grid(dev, g.segs * blocks)?;
        let ins = [g.segt, g.u, g.k, g.dskip, g.y];
        return rec.dispatch(&Pass::Whole.variant(plan.local), &params, &ins, wg);
    }
    let need = plan.scratch(g.segs, g.pairs);
    let data = match data {
        Some(d) if d.dtype() == DType::F32 && d.numel() >= need => d,
        _ => {
            return Err(Error::Shape(format!(
                "S4 fused convolution: the scratch must be f32 of {need} elements, got {:?}",
                data.map(|d| d.shape().to_vec())
            )))
        }
    };
    let cblocks = plan.n2 / plan.cols;
    let wg = grid(dev, (g.segs + 1) * blocks * cblocks)?;
    rec.dispatch(&Pass::Columns.variant(plan.local), &params, &[g.segt, g.u, g.k, g.dskip, data], wg)?;
    let qblocks = plan.n1 / (2 * (plan.local / (4 * plan.n2)));
    let wg = grid(rec.device(), g.segs * g.pairs * qblocks)?;
    rec.dispatch(&Pass::Rows.variant(plan.local), &params, &[data], wg)?;
    let wg = grid(rec.device(), g.segs * blocks * cblocks)?;
    rec.dispatch(&Pass::Output.variant(plan.local), &params, &[g.segt, data, g.y], wg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_length_up_to_a_quarter_of_local_squared_but_one_workgroups() {
        for local in LOCAL_SIZES {
            let mut n = 2;
            while n <= local * local / 4 {
                if n > local / 2 && n <= local {
                    assert_eq!(FusedPlan::new(n, local), None);
                    n *= 2;
                    continue;
                }
                let p = FusedPlan::new(n, local).unwrap();
                assert_eq!(p.n1 * p.n2, n);
                if p.whole() {
                    assert!(p.ppw * 2 * n == p.local && p.local <= local, "{p:?}");
                } else {
                    assert!(p.n1 >= 16 && p.n1 <= local && p.n2 <= local / 4, "{p:?}");
                    assert_eq!(p.ppw * p.cols * p.n1, local, "{p:?}");
                    assert!(p.cols <= p.n2 && (p.n1 / 2).is_multiple_of(local / (4 * p.n2)), "{p:?}");
                }
                n *= 2;
            }
            assert_eq!(FusedPlan::new(n, local), None);
        }
    }
}
