//! Buffer copy kernel: the in-run bandwidth roofline for benchmarks.

use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/copy.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("copy");

const WG: u32 = 256;

crate::uniform! {
    /// `copy_vec4`'s parameters.
    pub struct CopyParams { pub n4: u32 }
}

pub fn variants() -> Vec<Variant> {
    vec![Variant::new("copy.vec4", &SHADER, "copy_vec4").define("WG", WG).with_params::<CopyParams>()]
}

/// Records `dst = src` for f32 tensors whose length is a multiple of 4.
pub fn copy(rec: &mut Recorder, src: &Tensor, dst: &Tensor) -> Result<()> {
    if src.dtype() != DType::F32
        || dst.dtype() != DType::F32
        || src.numel() != dst.numel()
        || !src.numel().is_multiple_of(4)
    {
        return Err(Error::Shape(format!(
            "copy needs equal f32 tensors with a multiple of 4 elements, got {:?} and {:?}",
            src.shape(),
            dst.shape()
        )));
    }
    let n4 = src.numel() / 4;
    let wg = grid(rec.device(), n4.div_ceil(WG as usize))?;
    rec.dispatch(
        &variants()[0],
        &Params::of(&CopyParams { n4: super::word("elements / 4", n4)? }),
        &[src, dst],
        wg,
    )
}
