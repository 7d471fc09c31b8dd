//! Columns gathered from up to three row-aligned f32 sources into one `[T, N]` tensor, by a
//! table of N entries ([`Pick`]): for rows whose parts come from different projections, such
//! as MLA's keys (each head's own part beside a latent part all heads share) laid out for the
//! attention kernels.

use super::{grid, word, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/gather.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("gather");

crate::uniform! {
    /// The gather kernel's parameters: rows, output columns, the sources' widths.
    pub struct GatherParams { pub rows: u32, pub n: u32, pub wa: u32, pub wb: u32, pub wc: u32 }
}

fn variant() -> Variant {
    Variant::new("gather.columns", &SHADER, "gather_columns").with_params::<GatherParams>()
}

pub fn variants() -> Vec<Variant> {
    vec![variant()]
}

/// Where one output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Column `col` of source `src` (0, 1 or 2).
    From {
        src: usize,
        col: usize,
    },
    Zero,
}

/// The device table for `picks`, checked against the sources' widths.
pub fn table(picks: &[Pick], widths: &[usize]) -> Result<Vec<u32>> {
    picks
        .iter()
        .map(|p| match *p {
            Pick::Zero => Ok(0),
            Pick::From { src, col } if src < widths.len().min(3) && col < widths[src] && col < 1 << 24 => {
                Ok(((src as u32 + 1) << 24) | col as u32)
            }
            Pick::From { src, col } => Err(Error::Shape(format!(
                "gather: column {col} of source {src} is outside the sources' widths {widths:?}"
            ))),
        })
        .collect()
}

/// Records `out[t, c] = picks[c]` of row t (see [`table`]); `srcs` are 1 to 3 tensors
/// `[T, W_s]`, `table` `[N]` u32 from [`table`], `out` `[T, N]`.
pub fn gather_columns(rec: &mut Recorder, srcs: &[&Tensor], table: &Tensor, out: &Tensor) -> Result<()> {
    let (t, n) = match out.shape() {
        &[t, n] => (t, n),
        other => return Err(Error::Shape(format!("gather: out must be [T, N], got {other:?}"))),
    };
    if srcs.is_empty() || srcs.len() > 3 {
        return Err(Error::Shape(format!("gather takes 1 to 3 sources, got {}", srcs.len())));
    }
    let mut widths = [1usize; 3];
    for (s, x) in srcs.iter().enumerate() {
        match x.shape() {
            &[rows, w] if rows == t && x.dtype() == DType::F32 => widths[s] = w,
            other => {
                return Err(Error::Shape(format!("gather: source {s} must be f32 [{t}, W], got {other:?}")))
            }
        }
    }
    super::expect("gather table", table, &[n], DType::U32)?;
    super::expect("gather out", out, &[t, n], DType::F32)?;
    let p = Params::of(&GatherParams {
        rows: word("rows", t)?,
        n: word("columns", n)?,
        wa: word("width", widths[0])?,
        wb: word("width", widths[1])?,
        wc: word("width", widths[2])?,
    });
    let s = |i: usize| srcs[i.min(srcs.len() - 1)];
    let wg = grid(rec.device(), (t * n).div_ceil(64))?;
    rec.dispatch(&variant(), &p, &[s(0), s(1), s(2), table, out], wg)
}

/// f64 reference: `srcs` row-major with `widths`, `t` rows.
pub fn gather_columns_ref(srcs: &[&[f64]], widths: &[usize], picks: &[Pick], t: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(t * picks.len());
    for r in 0..t {
        out.extend(picks.iter().map(|p| match *p {
            Pick::From { src, col } => srcs[src][r * widths[src] + col],
            Pick::Zero => 0.0,
        }));
    }
    out
}
