//! Packed variable-length sequences: cu_seqlens and optional per-token reset flags, uploaded
//! once as one u32 table (`shaders/lib/packed_seqs.wgsl` reads it). Every sequence-model family
//! takes its tokens in this layout.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Packed sequences: cu_seqlens and optional reset flags, uploaded once as one u32 table.
#[derive(Debug, Clone)]
pub struct Sequences {
    pub(crate) table: Tensor,
    cu: Vec<usize>,
    resets: Option<Vec<bool>>,
}

impl Sequences {
    /// Sequences of the given lengths, packed back to back, with optional per-token reset flags.
    pub fn new(dev: &Device, lens: &[usize], resets: Option<&[bool]>) -> Result<Self> {
        if lens.is_empty() {
            return Err(Error::Invalid("at least one sequence is needed".into()));
        }
        let mut cu = Vec::with_capacity(lens.len() + 1);
        cu.push(0usize);
        for &l in lens {
            let next =
                cu[cu.len() - 1].checked_add(l).filter(|&t| t <= u32::MAX as usize / 2).ok_or_else(|| {
                    Error::Limit(format!("sequence lengths {lens:?} exceed the u32 index range"))
                })?;
            cu.push(next);
        }
        let total = *cu.last().expect("non-empty");
        if total > u32::MAX as usize / 2 {
            return Err(Error::Limit(format!("{total} tokens exceed the u32 index range")));
        }
        let mut table: Vec<u32> = cu.iter().map(|&c| c as u32).collect();
        if let Some(r) = resets {
            if r.len() != total {
                return Err(Error::Shape(format!("{} reset flags for {total} tokens", r.len())));
            }
            table.extend(r.iter().map(|&b| b as u32));
        }
        let table = Tensor::from_slice(dev, &[table.len()], &table)?;
        Ok(Self { table, cu, resets: resets.map(<[bool]>::to_vec) })
    }

    /// Sequences whose table is already on the device (a graph input): `table` must hold
    /// `cu` (cu_seqlens) and, with resets, one flag per token, as [`Sequences::new`] builds it.
    pub fn from_parts(table: &Tensor, cu: &[usize], resets: Option<&[bool]>) -> Result<Self> {
        let total = *cu.last().ok_or_else(|| Error::Invalid("cu_seqlens needs at least one entry".into()))?;
        let want = cu.len() + resets.map_or(0, |r| r.len());
        if cu.len() < 2 || table.numel() != want || table.dtype() != crate::tensor::DType::U32 {
            return Err(Error::Shape(format!(
                "sequence table {:?} {:?} does not hold cu_seqlens of {} sequences{}",
                table.shape(),
                table.dtype(),
                cu.len().saturating_sub(1),
                if resets.is_some() { " and their reset flags" } else { "" }
            )));
        }
        if resets.is_some_and(|r| r.len() != total) {
            return Err(Error::Shape(format!("reset flags for {total} tokens expected")));
        }
        Ok(Self { table: table.clone(), cu: cu.to_vec(), resets: resets.map(<[bool]>::to_vec) })
    }

    /// `n` sequences of one token each: the decode step's layout.
    pub fn decode(dev: &Device, n: usize, resets: Option<&[bool]>) -> Result<Self> {
        Self::new(dev, &vec![1; n], resets)
    }

    /// The device table: cu_seqlens, then (with resets) one flag per token.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    pub fn count(&self) -> usize {
        self.cu.len() - 1
    }

    pub fn total(&self) -> usize {
        *self.cu.last().expect("non-empty")
    }

    pub fn cu_seqlens(&self) -> &[usize] {
        &self.cu
    }

    pub fn resets(&self) -> Option<&[bool]> {
        self.resets.as_deref()
    }
}
