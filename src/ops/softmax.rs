//! Row-wise softmax and argmax over the last dimension.

use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/softmax.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("softmax");

const WG: u32 = 256;

crate::uniform! {
    /// Parameters of the row kernels: `rows` rows of `n`, logits scaled by `scale`.
    pub struct RowParams { pub n: u32, pub rows: u32, pub scale: f32 }
}

fn params(n: usize, rows: usize, scale: f32) -> Result<Params> {
    Ok(Params::of(&RowParams { n: super::word("row length", n)?, rows: super::word("rows", rows)?, scale }))
}

fn variant(softmax: bool, subgroups: bool) -> Variant {
    let entry = if softmax { "softmax" } else { "argmax" };
    Variant::new(format!("softmax.{entry}{}", if subgroups { ".sg" } else { "" }), &SHADER, entry)
        .define("WG", WG)
        .define("ENTRY", entry)
        .define("SOFTMAX", softmax as u32)
        .with_subgroups(subgroups)
        .with_params::<RowParams>()
        .with_flags(super::sampling::row_consts::SET)
}

pub fn variants() -> Vec<Variant> {
    vec![variant(true, false), variant(true, true), variant(false, false), variant(false, true)]
}

fn rows_of(x: &Tensor) -> Result<(usize, usize)> {
    let n = *x.shape().last().unwrap_or(&0);
    if x.dtype() != DType::F32 || n == 0 {
        return Err(Error::Shape(format!(
            "expected a non-empty f32 tensor, got {:?} {:?}",
            x.shape(),
            x.dtype()
        )));
    }
    Ok((x.numel() / n, n))
}

/// Records `y = softmax(x · scale)` over the last dim.
pub fn softmax(rec: &mut Recorder, x: &Tensor, scale: f32, y: &Tensor) -> Result<()> {
    let (rows, n) = rows_of(x)?;
    super::expect("y", y, x.shape(), DType::F32)?;
    let v = variant(true, rec.device().caps().subgroups);
    rec.dispatch(&v, &params(n, rows, scale)?, &[x, y], grid(rec.device(), rows)?)
}

/// Records `ids[r] = argmax(x[r, :])` (ties: lowest index). ids is u32 with one entry per row.
pub fn argmax(rec: &mut Recorder, x: &Tensor, ids: &Tensor) -> Result<()> {
    let (rows, n) = rows_of(x)?;
    super::expect("ids", ids, &[rows], DType::U32)?;
    // The argmax reduction pairs values with indices in workgroup memory; no subgroup form.
    let v = variant(false, false);
    rec.dispatch(&v, &params(n, rows, 1.0)?, &[x, ids], grid(rec.device(), rows)?)
}

/// f64 reference softmax of one row.
pub fn softmax_ref(x: &[f32], scale: f64) -> Vec<f64> {
    let m = x.iter().map(|&v| v as f64 * scale).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 * scale - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Reference argmax of one row (lowest index on ties).
pub fn argmax_ref(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}
