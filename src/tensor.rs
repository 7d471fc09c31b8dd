//! GPU tensors: a shape, a dtype and a byte range of a storage buffer.

use crate::device::Device;
use crate::error::{Error, Result};
use half::f16;
use std::sync::Arc;

/// Element type of a tensor. Activations and state are f32; weights may be f16; ids and offsets
/// are i32/u32. bf16 checkpoints are converted to f32 or f16 on the host (see [`bf16_to_f32`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum DType {
    F32,
    F16,
    I32,
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            _ => 4,
        }
    }

    /// Short lowercase name used in variant names.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::U32 => "u32",
        }
    }
}

/// Host element types that can be uploaded and downloaded.
pub trait Element: bytemuck::Pod {
    const DTYPE: DType;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

/// Converts bf16 bit patterns to f32 (exact).
pub fn bf16_to_f32(bits: &[u16]) -> Vec<f32> {
    bits.iter().map(|&b| half::bf16::from_bits(b).to_f32()).collect()
}

/// Converts f32 to f16 with round-to-nearest-even.
pub fn f32_to_f16(x: &[f32]) -> Vec<f16> {
    x.iter().map(|&v| f16::from_f32(v)).collect()
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// A tensor on the GPU. Cloning is cheap and aliases the same storage.
#[derive(Debug, Clone)]
pub struct Tensor {
    buffer: Arc<crate::device::Buffer>,
    /// Byte offset inside `buffer`, a multiple of the storage offset alignment.
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

/// Buffer usages every tensor buffer carries.
pub const TENSOR_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// Allocates an uninitialised (zeroed by wgpu) tensor.
    pub fn empty(dev: &Device, shape: &[usize], dtype: DType) -> Result<Self> {
        let bytes = Self::byte_len_of(shape, dtype)?;
        Self::check_size(dev, bytes)?;
        let buffer = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensor"),
            size: round_up(bytes.max(4), 4),
            usage: TENSOR_USAGE,
            mapped_at_creation: false,
        });
        Ok(Self { buffer: Arc::new(buffer), offset: 0, shape: shape.to_vec(), dtype })
    }

    /// Uploads host data of a matching element type.
    pub fn from_slice<T: Element>(dev: &Device, shape: &[usize], data: &[T]) -> Result<Self> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::Shape(format!(
                "shape {shape:?} has {numel} elements, data has {}",
                data.len()
            )));
        }
        let t = Self::empty(dev, shape, T::DTYPE)?;
        t.write(dev, data)?;
        Ok(t)
    }

    /// Uploads f32 data converting to `dtype` (f32 or f16).
    pub fn from_f32(dev: &Device, shape: &[usize], data: &[f32], dtype: DType) -> Result<Self> {
        match dtype {
            DType::F32 => Self::from_slice(dev, shape, data),
            DType::F16 => Self::from_slice(dev, shape, &f32_to_f16(data)),
            other => Err(Error::Invalid(format!("from_f32 cannot produce {other:?}"))),
        }
    }

    /// Overwrites the tensor's contents.
    pub fn write<T: Element>(&self, dev: &Device, data: &[T]) -> Result<()> {
        if T::DTYPE != self.dtype || data.len() != self.numel() {
            return Err(Error::Shape(format!(
                "write of {} {:?} into tensor {:?} {:?}",
                data.len(),
                T::DTYPE,
                self.shape,
                self.dtype
            )));
        }
        let mut bytes = bytemuck::cast_slice::<T, u8>(data).to_vec();
        bytes.resize(round_up(bytes.len() as u64, 4) as usize, 0);
        dev.write_buffer(&self.buffer, self.offset, &bytes);
        dev.check()
    }

    fn byte_len_of(shape: &[usize], dtype: DType) -> Result<u64> {
        shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| Error::Limit(format!("tensor {shape:?} overflows u64 bytes")))
    }

    fn check_size(dev: &Device, bytes: u64) -> Result<()> {
        let caps = dev.caps();
        let max = caps.max_storage_buffer_binding_size.min(caps.max_buffer_size);
        if bytes > max {
            return Err(Error::Limit(format!(
                "tensor of {bytes} bytes exceeds this device's max storage binding of {max} bytes \
                 (max_storage_buffer_binding_size {}, max_buffer_size {})",
                caps.max_storage_buffer_binding_size, caps.max_buffer_size
            )));
        }
        Ok(())
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the tensor's data in bytes.
    pub fn byte_len(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }

    /// Bytes bound for this tensor: the data rounded up to 4 (WGSL arrays of f16 are read as
    /// packed words on adapters without f16).
    pub fn binding_size(&self) -> u64 {
        round_up(self.byte_len().max(4), 4)
    }

    /// Byte offset inside the underlying buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The binding resource for a bind group entry.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.binding_size()),
        })
    }

    /// The same bytes with a different shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::Shape(format!("cannot reshape {:?} to {shape:?}", self.shape)));
        }
        Ok(Self { shape: shape.to_vec(), ..self.clone() })
    }

    /// A sub-view starting `elem_offset` elements in. Storage bindings need offsets that are
    /// multiples of `min_storage_buffer_offset_alignment`; an unaligned view is an error.
    pub fn view(&self, dev: &Device, elem_offset: usize, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if elem_offset.checked_add(n).is_none_or(|end| end > self.numel()) {
            return Err(Error::Shape(format!(
                "view [{elem_offset}, +{n}) is outside tensor {:?}",
                self.shape
            )));
        }
        let byte_off = self.offset + (elem_offset * self.dtype.size()) as u64;
        let align = dev.caps().min_storage_buffer_offset_alignment as u64;
        if !byte_off.is_multiple_of(align) {
            return Err(Error::Invalid(format!(
                "view byte offset {byte_off} is not a multiple of the storage offset alignment {align}; \
                 use an element offset that is a multiple of {}",
                align / self.dtype.size() as u64
            )));
        }
        Ok(Self { buffer: self.buffer.clone(), offset: byte_off, shape: shape.to_vec(), dtype: self.dtype })
    }

    /// Copies the tensor back to the host as raw bytes (exactly `byte_len`).
    pub fn read_bytes(&self, dev: &Device) -> Result<Vec<u8>> {
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: self.binding_size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.read_bytes_via(dev, &staging)
    }

    /// Copies the tensor back through a caller-owned staging buffer (MAP_READ | COPY_DST, at
    /// least `binding_size` bytes), so repeated reads create no buffers.
    pub fn read_bytes_via(&self, dev: &Device, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let size = self.binding_size();
        if staging.size() < size {
            return Err(Error::Invalid(format!("staging buffer of {} bytes for {size}", staging.size())));
        }
        let mut enc = dev.command_encoder();
        enc.copy_buffer_to_buffer(&self.buffer, self.offset, staging, 0, size);
        dev.submit([enc.finish()])?;
        let (tx, rx) = std::sync::mpsc::channel();
        dev.gl(|| {
            staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            })
        });
        dev.wait()?;
        // Another thread polling the same device may be the one that runs this callback, a
        // moment after our own poll returned: give it time rather than fail at once. (Polling
        // again here instead contends for the GL backend's context lock.)
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Readback(e.to_string())),
            Err(_) => return Err(Error::Readback("map callback did not run (device lost?)".into())),
        }
        let mut out = dev.gl(|| -> Result<Vec<u8>> {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
            let out = view.to_vec();
            drop(view);
            staging.unmap();
            Ok(out)
        })?;
        out.truncate(self.byte_len() as usize);
        Ok(out)
    }

    /// Downloads the tensor as its own element type.
    pub fn read<T: Element>(&self, dev: &Device) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::Invalid(format!("read as {:?} of a {:?} tensor", T::DTYPE, self.dtype)));
        }
        let bytes = self.read_bytes(dev)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Downloads a float tensor as f32, converting f16.
    pub fn read_f32(&self, dev: &Device) -> Result<Vec<f32>> {
        match self.dtype {
            DType::F32 => self.read(dev),
            DType::F16 => Ok(self.read::<f16>(dev)?.into_iter().map(f16::to_f32).collect()),
            other => Err(Error::Invalid(format!("read_f32 of a {other:?} tensor"))),
        }
    }
}

impl Tensor {
    /// A tensor at `offset` inside a shared buffer (the graph executor's arenas).
    pub(crate) fn in_buffer(
        buffer: Arc<crate::device::Buffer>,
        offset: u64,
        shape: &[usize],
        dtype: DType,
    ) -> Self {
        Self { buffer, offset, shape: shape.to_vec(), dtype }
    }

    /// Wraps an existing buffer (whole, offset 0) as a tensor.
    pub(crate) fn wrap_buffer(buffer: crate::device::Buffer, shape: &[usize], dtype: DType) -> Self {
        Self { buffer: Arc::new(buffer), offset: 0, shape: shape.to_vec(), dtype }
    }
}

impl Tensor {
    /// The same bytes as a flat tensor of `dtype` (of any size that divides the byte length).
    pub fn as_flat(&self, dtype: DType) -> Result<Tensor> {
        let bytes = self.byte_len() as usize;
        if !bytes.is_multiple_of(dtype.size()) {
            return Err(Error::Invalid(format!("{bytes} bytes are not a whole number of {dtype:?}")));
        }
        Ok(Tensor { dtype, shape: vec![bytes / dtype.size()], ..self.clone() })
    }

    /// The same bytes reinterpreted as another dtype of the same size (f32 ↔ u32 ↔ i32).
    pub fn reinterpret(&self, dtype: DType) -> Result<Tensor> {
        if dtype.size() != self.dtype.size() {
            return Err(Error::Invalid(format!("cannot reinterpret {:?} as {dtype:?}", self.dtype)));
        }
        Ok(Tensor { dtype, ..self.clone() })
    }
}
