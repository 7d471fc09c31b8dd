//! # linseq
//!
//! A GPU compute engine for linear-time sequence models (Mamba, Mamba-2, S4, linear attention,
//! RWKV, hybrids), written as portable WGSL compute shaders on wgpu: Vulkan, Metal, DX12 and GL.
//!
//! Layers, bottom up (see `docs/ARCHITECTURE.md`):
//! - [`device`]: adapter choice, features, limits, capabilities, error capture;
//! - [`tensor`]: GPU tensors with shape and dtype;
//! - [`shader`]: WGSL families, named variants, the pipeline cache and the naga portability check;
//! - [`ops`]: op families recording dispatches into one compute pass, each with an f64 reference;
//! - [`testing`]: the op test harness (NMSE, max-abs, NaN/Inf, guard regions);
//! - [`bench`]: GPU timing and the copy roofline.
//!
//! ```no_run
//! use linseq::{Device, Tensor, ops};
//! let dev = Device::new()?;
//! let x = Tensor::from_slice(&dev, &[2, 4], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])?;
//! let w = Tensor::from_slice(&dev, &[3, 4], &[0.5f32; 12])?;
//! let y = Tensor::empty(&dev, &[2, 3], linseq::DType::F32)?;
//! let mut rec = ops::Recorder::new(&dev);
//! ops::matmul::linear(&mut rec, &x, &w, None, &y)?;
//! rec.run()?;
//! assert_eq!(y.read::<f32>(&dev)?, vec![5.0, 5.0, 5.0, 13.0, 13.0, 13.0]);
//! # Ok::<(), linseq::Error>(())
//! ```

pub mod bench;
pub mod device;
pub mod error;
pub mod graph;
pub mod model;
pub mod ops;
pub mod shader;
pub mod tensor;
pub mod testing;
pub mod tune;
pub mod tuning;

pub use device::Device;
pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
