//! Embedding gather from an f32 or f16 table.

use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/embedding.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("embedding");

const WG: u32 = 256;

crate::uniform! {
    /// `gather`'s parameters.
    pub struct EmbeddingParams { pub tokens: u32, pub dim: u32, pub vocab: u32 }
}

fn variant(dtype: DType) -> Variant {
    let v = Variant::new(format!("embedding.gather.{}", dtype.name()), &SHADER, "gather")
        .define("WG", WG)
        .with_params::<EmbeddingParams>();
    match dtype {
        DType::F16 => v.define("F16P", 1).define("TTYPE", "u32"),
        _ => v.define("F16P", 0).define("TTYPE", "f32"),
    }
}

pub fn variants() -> Vec<Variant> {
    vec![variant(DType::F32), variant(DType::F16)]
}

/// Records `out[t] = table[ids[t]]`. ids are u32 (T); table is (V, D) f32 or f16; out (T, D) f32.
/// Ids ≥ V give zero rows on the GPU; use [`check_ids`] on host ids before uploading them.
pub fn embedding(rec: &mut Recorder, ids: &Tensor, table: &Tensor, out: &Tensor) -> Result<()> {
    if ids.dtype() != DType::U32
        || table.shape().len() != 2
        || !matches!(table.dtype(), DType::F32 | DType::F16)
    {
        return Err(Error::Shape(format!(
            "embedding: ids must be u32 and table (V, D) f32/f16; got {:?} {:?} and {:?} {:?}",
            ids.shape(),
            ids.dtype(),
            table.shape(),
            table.dtype()
        )));
    }
    let (vocab, dim) = (table.shape()[0], table.shape()[1]);
    super::expect("out", out, &[ids.numel(), dim], DType::F32)?;
    let n = ids.numel() * dim;
    let wg = grid(rec.device(), n.div_ceil(WG as usize))?;
    rec.dispatch(
        &variant(table.dtype()),
        &Params::of(&EmbeddingParams {
            tokens: super::word("tokens", ids.numel())?,
            dim: super::word("dim", dim)?,
            vocab: super::word("vocab", vocab)?,
        }),
        &[ids, table, out],
        wg,
    )
}

/// Errors when a host id is outside the vocabulary.
pub fn check_ids(ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().position(|&i| i as usize >= vocab) {
        Some(p) => Err(Error::Invalid(format!(
            "token id {} at position {p} is outside the vocabulary of {vocab}",
            ids[p]
        ))),
        None => Ok(()),
    }
}

/// Reference gather (exact).
pub fn embedding_ref(ids: &[u32], table: &[f32], dim: usize) -> Vec<f64> {
    ids.iter()
        .flat_map(|&i| table[i as usize * dim..(i as usize + 1) * dim].iter().map(|&v| v as f64))
        .collect()
}
