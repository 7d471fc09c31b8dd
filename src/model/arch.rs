//! Architectures as a registry. An architecture is found by its `model_type` (or an alias),
//! checks its config before any weight is read, and loads a [`Runtime`]: the object that says
//! which state slots a batch needs and builds the forward pass as a graph. Hybrids are lists of
//! blocks inside their runtime, not new enum variants; an application (or a test) can
//! [`register`] an architecture of its own.

use super::common::{Batch, Builder};
use super::config::Config;
use super::state::{SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::Result;
use crate::graph::TensorId;
use crate::tensor::DType;
use std::sync::RwLock;

/// A loaded model of one architecture.
pub trait Runtime: Send + Sync {
    /// The architecture's `model_type`.
    fn model_type(&self) -> &'static str;
    fn vocab(&self) -> usize;
    fn parameters(&self) -> usize;
    /// Parameters one decode step of `batch` sequences reads (a mixture of experts reads only
    /// the routed experts).
    fn parameters_read(&self, _batch: usize) -> usize {
        self.parameters()
    }
    /// A stable description of the configuration (a state records its fingerprint).
    fn config_text(&self) -> String;
    /// The state slots of `sequences` sequences.
    fn state_slots(&self, sequences: usize) -> Vec<SlotSpec>;
    /// Adds the forward pass of `batch` to `b` (bound to the weights and `state`'s slots) and
    /// returns the logits `[T, vocab]` (or `[rows, vocab]`).
    fn build(&self, dev: &Device, b: &mut Builder, batch: &Batch, state: &State) -> Result<TensorId>;
}

/// An architecture: how a checkpoint of its `model_type` becomes a [`Runtime`].
pub trait Architecture: Sync {
    /// `model_type` values it loads (the first is its name).
    fn model_types(&self) -> &'static [&'static str];
    /// Checks config.json before any weight is read.
    fn check_config(&self, cfg: &Config) -> Result<()>;
    /// Loads the checkpoint, checking every tensor's name and shape; matmul weights as `dtype`.
    fn load(
        &self,
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Box<dyn Runtime>>;
}

/// The architectures of this build: one line each.
static BUILT_IN: &[&dyn Architecture] = &[
    &super::mamba::MambaArchitecture,
    &super::mamba2::Mamba2Architecture,
    &super::mistral::MistralArchitecture,
    &super::recurrent_gemma::RecurrentGemmaArchitecture,
    &super::qwen3_next::Qwen3NextArchitecture,
    &super::qwen3_next::Qwen35Architecture,
    &super::olmo_hybrid::OlmoHybridArchitecture,
    &super::kimi_linear::KimiLinearArchitecture,
    &super::s4::S4Architecture,
];

/// Architectures registered at run time.
static REGISTERED: RwLock<Vec<&'static dyn Architecture>> = RwLock::new(Vec::new());

/// Adds an architecture (found by its `model_type`s after the built-in ones).
pub fn register(arch: &'static dyn Architecture) {
    let mut r = REGISTERED.write().unwrap_or_else(|p| p.into_inner());
    if !r.iter().any(|a| std::ptr::addr_eq(*a, arch)) {
        r.push(arch);
    }
}

fn all() -> Vec<&'static dyn Architecture> {
    let r = REGISTERED.read().unwrap_or_else(|p| p.into_inner());
    BUILT_IN.iter().copied().chain(r.iter().copied()).collect()
}

/// The architecture that loads `model_type`.
pub fn find(model_type: &str) -> Option<&'static dyn Architecture> {
    all().into_iter().find(|a| a.model_types().contains(&model_type))
}

/// Every `model_type` this process loads.
pub fn supported() -> Vec<&'static str> {
    all().iter().flat_map(|a| a.model_types().iter().copied()).collect()
}

/// Declares an architecture whose runtime is one type with a `cfg` field (of a `Debug` config
/// type with `vocab` and `from_config`), a [`super::blocks::Stack`] field `stack`, and an
/// inherent `load`: the `Architecture` and `Runtime` impls that every block-stack model would
/// otherwise spell out.
macro_rules! stack_architecture {
    ($(#[$meta:meta])* $arch:ident : $runtime:ty, $config:ty, $name:literal $(, $alias:literal)*) => {
        $(#[$meta])*
        pub struct $arch;

        impl $crate::model::arch::Architecture for $arch {
            fn model_types(&self) -> &'static [&'static str] {
                &[$name $(, $alias)*]
            }
            fn check_config(&self, cfg: &$crate::model::config::Config) -> $crate::error::Result<()> {
                <$config>::from_config(cfg).map(|_| ())
            }
            fn load(
                &self,
                dev: &$crate::device::Device,
                cfg: &$crate::model::config::Config,
                w: &$crate::model::weights::Weights,
                dtype: $crate::tensor::DType,
                progress: &dyn Fn(usize, usize),
            ) -> $crate::error::Result<Box<dyn $crate::model::arch::Runtime>> {
                Ok(Box::new(<$runtime>::load(dev, cfg, w, dtype, progress)?))
            }
        }

        impl $crate::model::arch::Runtime for $runtime {
            fn model_type(&self) -> &'static str {
                $name
            }
            fn vocab(&self) -> usize {
                self.cfg.vocab
            }
            fn parameters(&self) -> usize {
                self.stack.parameters()
            }
            fn parameters_read(&self, batch: usize) -> usize {
                self.stack.parameters_read(batch)
            }
            fn config_text(&self) -> String {
                format!("{:?}", self.cfg)
            }
            fn state_slots(&self, sequences: usize) -> Vec<$crate::model::state::SlotSpec> {
                self.stack.state_slots(sequences)
            }
            fn build(
                &self,
                dev: &$crate::device::Device,
                b: &mut $crate::model::common::Builder,
                batch: &$crate::model::common::Batch,
                state: &$crate::model::state::State,
            ) -> $crate::error::Result<$crate::graph::TensorId> {
                self.stack.build(dev, b, batch, state)
            }
        }
    };
}
pub(crate) use stack_architecture;
