//! Model runtimes that load Hugging Face-format checkpoints (config.json + safetensors) with no
//! conversion step.
//!
//! ```no_run
//! use linseq::{model, DType, Device};
//! let dev = Device::new()?;
//! let m = model::load(&dev, "path/to/checkpoint".as_ref(), DType::F32)?;
//! let mut state = m.new_state(&dev, 1)?;
//! let logits = m.forward(&dev, b"ROMEO:", &[6], &mut state)?; // [6, vocab]
//! let next = m.forward(&dev, &[b'\n'], &[1], &mut state)?; // one decode step
//! # Ok::<(), linseq::Error>(())
//! ```

pub mod config;
pub mod conformance;
pub mod mamba;
pub mod mamba2;
pub mod weights;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::DType;
use std::path::Path;

pub use config::Config;
pub use weights::Weights;

/// Architectures this build runs (`model_type` in config.json).
pub const SUPPORTED: &[&str] = &["mamba", "mamba2"];

/// A loaded model.
pub enum Model {
    Mamba(mamba::Mamba),
    Mamba2(mamba2::Mamba2),
}

/// Recurrent state of a batch of sequences.
pub enum State {
    Mamba(mamba::MambaState),
    Mamba2(mamba2::Mamba2State),
}

/// Loads the checkpoint in `dir`, holding matmul weights as `dtype` (f32 or f16).
pub fn load(dev: &Device, dir: &Path, dtype: DType) -> Result<Model> {
    load_with_progress(dev, dir, dtype, &|_, _| {})
}

/// [`load`], calling `progress(layers done, layers)` while uploading.
pub fn load_with_progress(
    dev: &Device,
    dir: &Path,
    dtype: DType,
    progress: &dyn Fn(usize, usize),
) -> Result<Model> {
    if !matches!(dtype, DType::F32 | DType::F16) {
        return Err(Error::Invalid(format!("model weights can be held as f32 or f16, not {dtype:?}")));
    }
    let cfg = Config::load(dir)?;
    let kind = cfg.model_type()?;
    match kind.as_str() {
        "mamba" => {
            mamba::MambaConfig::from_config(&cfg)?; // config errors first, before the weights
            let w = Weights::open(dir)?;
            Ok(Model::Mamba(mamba::Mamba::load(dev, &cfg, &w, dtype, progress)?))
        }
        "mamba2" => {
            mamba2::Mamba2Config::from_config(&cfg)?;
            let w = Weights::open(dir)?;
            Ok(Model::Mamba2(mamba2::Mamba2::load(dev, &cfg, &w, dtype, progress)?))
        }
        other => Err(Error::Model(format!(
            "{}: model_type `{other}` is not supported (supported: {})",
            dir.display(),
            SUPPORTED.join(", ")
        ))),
    }
}

impl Model {
    pub fn vocab(&self) -> usize {
        match self {
            Model::Mamba(m) => m.cfg.vocab,
            Model::Mamba2(m) => m.cfg.vocab,
        }
    }

    pub fn parameters(&self) -> usize {
        match self {
            Model::Mamba(m) => m.parameters(),
            Model::Mamba2(m) => m.parameters(),
        }
    }

    /// A zero state for `sequences` sequences.
    pub fn new_state(&self, dev: &Device, sequences: usize) -> Result<State> {
        match self {
            Model::Mamba(m) => Ok(State::Mamba(m.new_state(dev, sequences)?)),
            Model::Mamba2(m) => Ok(State::Mamba2(m.new_state(dev, sequences)?)),
        }
    }

    /// Feeds packed tokens (`lens[s]` for sequence s) and returns logits `[T, vocab]`.
    pub fn forward(&self, dev: &Device, ids: &[u8], lens: &[usize], state: &mut State) -> Result<Vec<f32>> {
        let ids: Vec<u32> = ids.iter().map(|&b| b as u32).collect();
        self.forward_ids(dev, &ids, lens, state)
    }

    /// [`Model::forward`] with token ids.
    pub fn forward_ids(
        &self,
        dev: &Device,
        ids: &[u32],
        lens: &[usize],
        state: &mut State,
    ) -> Result<Vec<f32>> {
        match (self, state) {
            (Model::Mamba(m), State::Mamba(s)) => m.forward(dev, ids, lens, s),
            (Model::Mamba2(m), State::Mamba2(s)) => m.forward(dev, ids, lens, s),
            _ => Err(Error::Invalid("this state belongs to a model of another architecture".into())),
        }
    }
}
