//! Checkpoint tensors from safetensors files, memory-mapped; f32, f16 and bf16 on disk are
//! read as f32 (the runtime then holds them on the device as f32 or f16).

use crate::error::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// One or more safetensors files of a checkpoint (`model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`), memory-mapped.
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
}

impl Weights {
    /// Maps the checkpoint's safetensors files in `dir` and checks their headers, so that a
    /// truncated or malformed file fails here, naming the file.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let paths = if single.exists() {
            vec![single]
        } else {
            let index = dir.join("model.safetensors.index.json");
            let text = std::fs::read_to_string(&index).map_err(|e| {
                Error::Model(format!(
                    "{}: no model.safetensors and no readable model.safetensors.index.json ({e})",
                    dir.display()
                ))
            })?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", index.display())))?;
            let mut names: Vec<String> = v["weight_map"]
                .as_object()
                .ok_or_else(|| Error::Model(format!("{}: no weight_map", index.display())))?
                .values()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        };
        Self::open_files(&paths)
    }

    /// Maps these safetensors files (any names) and checks their headers.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        for path in paths.iter().cloned() {
            let file =
                std::fs::File::open(&path).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
            // SAFETY: the map is read-only and the checkpoint is not expected to change while
            // it is open; a concurrent truncation could fault, as with any mapped file.
            let map =
                unsafe { Mmap::map(&file) }.map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
            SafeTensors::deserialize(&map).map_err(|e| {
                Error::Model(format!(
                    "{}: not a valid safetensors file (truncated or malformed?): {e}",
                    path.display()
                ))
            })?;
            files.push((path, map));
        }
        Ok(Self { files })
    }

    /// Tensor names of every file.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (_, map) in &self.files {
            if let Ok(st) = SafeTensors::deserialize(map) {
                out.extend(st.names().into_iter().map(str::to_string));
            }
        }
        out.sort();
        out
    }

    /// (dtype, shape) of a tensor, if present.
    pub fn info(&self, name: &str) -> Option<(Dtype, Vec<usize>)> {
        self.files.iter().find_map(|(_, map)| {
            let st = SafeTensors::deserialize(map).ok()?;
            let t = st.tensor(name).ok()?;
            Some((t.dtype(), t.shape().to_vec()))
        })
    }

    /// Whether the checkpoint has this tensor.
    pub fn has(&self, name: &str) -> bool {
        self.info(name).is_some()
    }

    /// The stored dtype, shape and bytes of tensor `name` and the file holding it, checked
    /// against `shape` (any shape when `None`).
    fn raw(&self, name: &str, shape: Option<&[usize]>) -> Result<(Dtype, Vec<usize>, &[u8], &Path)> {
        for (path, map) in &self.files {
            let st = SafeTensors::deserialize(map)
                .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
            let Ok(t) = st.tensor(name) else { continue };
            if let Some(want) = shape {
                if t.shape() != want {
                    return Err(Error::Model(format!(
                        "{}: tensor `{name}` has shape {:?}, expected {want:?}",
                        path.display(),
                        t.shape()
                    )));
                }
            }
            return Ok((t.dtype(), t.shape().to_vec(), t.data(), path.as_path()));
        }
        Err(Error::Model(format!(
            "tensor `{name}` is missing from the checkpoint{}",
            shape.map(|s| format!(" (expected shape {s:?})")).unwrap_or_default()
        )))
    }

    fn not_float(name: &str, dtype: Dtype, path: &Path) -> Error {
        Error::Model(format!("{}: tensor `{name}` is {dtype:?}; f32, f16 or bf16 expected", path.display()))
    }

    /// Tensor `name` as f32, checked against `shape` (any shape when `None`).
    pub fn f32(&self, name: &str, shape: Option<&[usize]>) -> Result<(Vec<f32>, Vec<usize>)> {
        let (dtype, shape, bytes, path) = self.raw(name, shape)?;
        let data: Vec<f32> = match dtype {
            Dtype::F32 => {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            Dtype::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => return Err(Self::not_float(name, other, path)),
        };
        Ok((data, shape))
    }

    /// Tensor `name`, checked against `shape`, uploaded as `dtype` (f32 or f16) straight from
    /// the mapped bytes: f16 to f16 is a copy, bf16 or f32 to f16 and f16 or bf16 to f32 are
    /// converted element by element, and no host f32 copy of the tensor is made unless f32 is
    /// what the device holds. The device shape may differ from the stored one when the element
    /// count agrees (a conv1d weight `[C, 1, W]` held as `[C, W]`).
    pub fn upload(
        &self,
        dev: &crate::device::Device,
        name: &str,
        shape: &[usize],
        device_shape: &[usize],
        dtype: crate::tensor::DType,
    ) -> Result<crate::tensor::Tensor> {
        use crate::tensor::{DType, Tensor};
        use half::{bf16, f16};
        let (stored, _, b, path) = self.raw(name, Some(shape))?;
        let half = |i: usize| [b[2 * i], b[2 * i + 1]];
        let word = |i: usize| [b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]];
        let n = shape.iter().product::<usize>();
        let up16 = |v: Vec<f16>| Tensor::from_slice(dev, device_shape, &v);
        let up32 = |v: Vec<f32>| Tensor::from_slice(dev, device_shape, &v);
        match (stored, dtype) {
            (Dtype::F16, DType::F16) => up16((0..n).map(|i| f16::from_le_bytes(half(i))).collect()),
            (Dtype::BF16, DType::F16) => {
                up16((0..n).map(|i| f16::from_f32(bf16::from_le_bytes(half(i)).to_f32())).collect())
            }
            (Dtype::F32, DType::F16) => {
                up16((0..n).map(|i| f16::from_f32(f32::from_le_bytes(word(i)))).collect())
            }
            (Dtype::F32, DType::F32) => up32((0..n).map(|i| f32::from_le_bytes(word(i))).collect()),
            (Dtype::F16, DType::F32) => up32((0..n).map(|i| f16::from_le_bytes(half(i)).to_f32()).collect()),
            (Dtype::BF16, DType::F32) => {
                up32((0..n).map(|i| bf16::from_le_bytes(half(i)).to_f32()).collect())
            }
            (Dtype::F16 | Dtype::BF16 | Dtype::F32, other) => {
                Err(Error::Invalid(format!("`{name}` can be held as f32 or f16, not {other:?}")))
            }
            (other, _) => Err(Self::not_float(name, other, path)),
        }
    }

    /// Matrices `parts` (name, `[rows, cols]`, all of one `cols`) stacked by rows into one
    /// device tensor of `dtype` (f32 or f16): fused projections such as q, k and v. Each part
    /// is converted on its own (no host copy of the whole checkpoint).
    pub fn upload_rows(
        &self,
        dev: &crate::device::Device,
        parts: &[(&str, [usize; 2])],
        dtype: crate::tensor::DType,
    ) -> Result<crate::tensor::Tensor> {
        let cols = parts.first().map_or(0, |p| p.1[1]);
        let rows: usize = parts.iter().map(|p| p.1[0]).sum();
        if parts.iter().any(|p| p.1[1] != cols) {
            return Err(Error::Model(format!("fused rows {parts:?} must share their column count")));
        }
        let mut host = Vec::with_capacity(rows * cols);
        for (name, shape) in parts {
            host.extend(self.f32(name, Some(shape))?.0);
        }
        crate::tensor::Tensor::from_f32(dev, &[rows, cols], &host, dtype)
    }

    /// A norm weight `[d]` on the host, as 1 + w when `plus_one`.
    pub fn norm_host(&self, name: &str, d: usize, plus_one: bool) -> Result<Vec<f32>> {
        let (mut v, _) = self.f32(name, Some(&[d]))?;
        if plus_one {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        Ok(v)
    }

    /// A norm weight `[d]` as f32; `plus_one`: stored as w for a norm that scales by (1 + w)
    /// (Gemma's), so the device holds 1 + w.
    pub fn norm(
        &self,
        dev: &crate::device::Device,
        name: &str,
        d: usize,
        plus_one: bool,
    ) -> Result<crate::tensor::Tensor> {
        crate::tensor::Tensor::from_slice(dev, &[d], &self.norm_host(name, d, plus_one)?)
    }

    /// An i32 tensor (token ids in reference files), any shape.
    pub fn i32(&self, name: &str) -> Result<Vec<i32>> {
        let (dtype, _, bytes, path) = self.raw(name, None)?;
        if dtype != Dtype::I32 {
            return Err(Error::Model(format!(
                "{}: tensor `{name}` is {dtype:?}, i32 expected",
                path.display()
            )));
        }
        Ok(bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// An integer scalar (shape [] or [1], i64 or i32), such as a module's buffer.
    pub fn int_scalar(&self, name: &str) -> Result<i64> {
        let (dtype, shape, bytes, path) = self.raw(name, None)?;
        let v = match (dtype, bytes.len()) {
            (Dtype::I64, 8) => i64::from_le_bytes(bytes.try_into().expect("8 bytes")),
            (Dtype::I32, 4) => i32::from_le_bytes(bytes.try_into().expect("4 bytes")) as i64,
            _ => {
                return Err(Error::Model(format!(
                    "{}: tensor `{name}` is {dtype:?} {shape:?}; an i64 or i32 scalar expected",
                    path.display()
                )))
            }
        };
        Ok(v)
    }

    /// Total bytes of the mapped files.
    pub fn bytes(&self) -> usize {
        self.files.iter().map(|(_, m)| m.len()).sum()
    }
}
