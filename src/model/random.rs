//! Random-weight checkpoints of real configurations, written in Hugging Face format
//! (config.json and an f16 model.safetensors), for benchmarks: the loader and the runtimes run
//! on them unchanged. The values are random but in the ranges trained checkpoints have (unit norms, S4D-style
//! A_log, dt biases that give dt ≈ 0.001–0.1), so the arithmetic stays finite.

use super::config::Config;
use super::mamba::MambaConfig;
use super::mamba2::Mamba2Config;
use super::schema::{random_tensors, WeightSpec};
use crate::error::{Error, Result};
use half::f16;
use std::path::Path;

/// A model configuration to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub model_type: &'static str,
    pub d_model: usize,
    pub layers: usize,
    pub d_state: usize,
    pub vocab: usize,
    /// Mamba-2 head size (unused for Mamba).
    pub head_dim: usize,
    /// Mamba-2 B/C groups (`n_groups`; unused for Mamba).
    pub groups: usize,
}

/// Mamba-130M, Mamba-2-130M and Mamba-1.4B (the state-spaces checkpoints' configurations).
pub const PRESETS: [Preset; 3] = [
    Preset {
        name: "mamba-130m",
        model_type: "mamba",
        d_model: 768,
        layers: 24,
        d_state: 16,
        vocab: 50280,
        head_dim: 0,
        groups: 1,
    },
    Preset {
        name: "mamba2-130m",
        model_type: "mamba2",
        d_model: 768,
        layers: 24,
        d_state: 128,
        vocab: 50288,
        head_dim: 64,
        groups: 1,
    },
    Preset {
        name: "mamba-1.4b",
        model_type: "mamba",
        d_model: 2048,
        layers: 48,
        d_state: 16,
        vocab: 50280,
        head_dim: 0,
        groups: 1,
    },
];

pub fn preset(name: &str) -> Result<Preset> {
    PRESETS.iter().copied().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        Error::Invalid(format!("unknown model preset {name:?}; available: {}", names.join(", ")))
    })
}

impl Preset {
    fn config_json(&self) -> String {
        let (d, n, l, v) = (self.d_model, self.d_state, self.layers, self.vocab);
        if self.model_type == "mamba" {
            format!(
                r#"{{"model_type": "mamba", "hidden_size": {d}, "intermediate_size": {}, "state_size": {n},
  "time_step_rank": "auto", "conv_kernel": 4, "num_hidden_layers": {l}, "vocab_size": {v},
  "layer_norm_epsilon": 1e-5, "use_bias": false, "use_conv_bias": true, "tie_word_embeddings": true,
  "residual_in_fp32": true}}"#,
                2 * d
            )
        } else {
            format!(
                r#"{{"model_type": "mamba2", "hidden_size": {d}, "expand": 2, "head_dim": {}, "num_heads": {},
  "n_groups": {}, "state_size": {n}, "conv_kernel": 4, "num_hidden_layers": {l}, "vocab_size": {v},
  "layer_norm_epsilon": 1e-5, "chunk_size": 256, "use_bias": false, "use_conv_bias": true,
  "tie_word_embeddings": true, "residual_in_fp32": true,
  "time_step_limit": [0.0, {{"__float__": "Infinity"}}]}}"#,
                self.head_dim,
                2 * d / self.head_dim,
                self.groups
            )
        }
    }

    /// Every tensor, from the architecture's schema (one place for the loader's checks, these
    /// presets and the tests).
    fn tensors(&self) -> Vec<WeightSpec> {
        let cfg = Config::parse(&self.config_json(), self.name).expect("preset configs parse");
        match self.model_type {
            "mamba" => MambaConfig::from_config(&cfg).expect("preset config").schema(),
            _ => Mamba2Config::from_config(&cfg).expect("preset config").schema(),
        }
    }

    /// Parameters of the checkpoint.
    pub fn parameters(&self) -> usize {
        self.tensors().iter().map(|t| t.shape.iter().product::<usize>()).sum()
    }

    /// Writes config.json and an f16 model.safetensors into `dir`.
    pub fn write(&self, dir: &Path, seed: u64) -> Result<()> {
        let io = |e: std::io::Error| Error::Model(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(dir.join("config.json"), self.config_json()).map_err(io)?;
        let specs = random_tensors(&self.tensors(), seed);
        let data: Vec<Vec<u8>> = specs
            .iter()
            .map(|(_, _, vals)| vals.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect())
            .collect();
        let mut views = Vec::with_capacity(specs.len());
        for ((name, shape, _), bytes) in specs.iter().zip(&data) {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), bytes)
                .map_err(|e| Error::Model(format!("{name}: {e}")))?;
            views.push((name.clone(), view));
        }
        safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))
            .map_err(|e| Error::Model(format!("{}: {e}", dir.display())))
    }
}
