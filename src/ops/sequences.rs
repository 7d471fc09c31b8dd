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

crate::flags! {
    /// Flags of a chunk-table entry: FRESH, the chunk starts at a reset; FIRST, the first chunk
    /// of its sequence.
    pub mod chunk_flags { FRESH = 1, FIRST = 2 }
}

/// The chunk table of host cu_seqlens and reset flags, shared by the chunked kernels (SSD, the
/// delta rule): per chunk (first token, length, sequence, flags), then per-sequence chunk
/// offsets (S + 1). Chunks split every sequence at its reset flags and every `chunk` tokens.
pub fn chunk_table(cu: &[usize], resets: Option<&[bool]>, chunk: usize) -> (Vec<u32>, usize) {
    let count = cu.len().saturating_sub(1);
    let mut entries = Vec::new();
    let mut offsets = vec![0u32];
    for s in 0..count {
        let (start, end) = (cu[s], cu[s + 1]);
        let mut t = start;
        while t < end {
            // The segment runs to the next reset (exclusive) or the sequence's end.
            let seg_end = (t + 1..end).find(|&u| resets.is_some_and(|r| r[u])).unwrap_or(end);
            let mut c = t;
            while c < seg_end {
                let len = chunk.min(seg_end - c);
                let mut flags = 0;
                if c == t && resets.is_some_and(|r| r[c]) {
                    flags |= chunk_flags::FRESH;
                }
                if c == start {
                    flags |= chunk_flags::FIRST;
                }
                entries.extend([c as u32, len as u32, s as u32, flags]);
                c += len;
            }
            t = seg_end;
        }
        offsets.push((entries.len() / 4) as u32);
    }
    let n = entries.len() / 4;
    entries.extend(offsets);
    (entries, n)
}
