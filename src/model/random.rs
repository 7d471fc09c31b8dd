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
    /// The whole config.json, for architectures other than Mamba and Mamba-2.
    pub config: Option<&'static str>,
}

/// RecurrentGemma-2B (google/recurrentgemma-2b's configuration).
const RECURRENT_GEMMA_2B: &str = r#"{"model_type": "recurrent_gemma", "hidden_size": 2560, "intermediate_size": 15360,
  "num_attention_heads": 10, "num_key_value_heads": 1, "head_dim": 256, "lru_width": 2560, "conv1d_width": 4,
  "attention_window_size": 2048, "block_types": ["recurrent", "recurrent", "attention"], "num_hidden_layers": 26,
  "vocab_size": 256000, "rms_norm_eps": 1e-6, "logits_soft_cap": 30.0, "partial_rotary_factor": 0.5,
  "rope_theta": 10000.0, "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": true}"#;

/// Mistral-7B-v0.1's configuration (sliding window 4096) cut to 8 layers.
const MISTRAL_7B_8L: &str = r#"{"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
  "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 8, "vocab_size": 32000,
  "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096, "max_position_embeddings": 32768,
  "tie_word_embeddings": false}"#;

/// Qwen3.5-0.8B's text model as published (24 layers of width 1024, every fourth full attention
/// with 8 query heads of 256 on 2 KV heads, vocabulary 248320, 262144 positions); the linear
/// layers' head counts and dims and the MLP width are assumed, not read from the checkpoint.
const QWEN3_5_0_8B: &str = r#"{"model_type": "qwen3_5_text", "hidden_size": 1024, "intermediate_size": 3584,
  "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256, "num_hidden_layers": 24,
  "vocab_size": 248320, "rms_norm_eps": 1e-6, "max_position_embeddings": 262144, "tie_word_embeddings": true,
  "rope_parameters": {"rope_theta": 10000000.0, "rope_type": "default", "partial_rotary_factor": 0.25},
  "full_attention_interval": 4, "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
  "linear_value_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 16, "hidden_act": "silu"}"#;

/// Kimi-Linear-48B-A3B's configuration (transformers' `KimiLinearConfig` defaults, documented
/// as that checkpoint's) cut to 4 layers: three KDA layers and one MLA layer (the released
/// model's 3 : 1), the first with the dense MLP (`first_k_dense_replace` 1), the others with
/// the 256-expert MoE (8 routed, one shared; 1.8 B parameters a layer).
const KIMI_LINEAR_48B_4L: &str = r#"{"model_type": "kimi_linear", "hidden_size": 2304, "intermediate_size": 9216,
  "moe_intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 32, "num_key_value_heads": 32,
  "num_shared_experts": 1, "routed_scaling_factor": 2.446, "kv_lora_rank": 512, "q_lora_rank": null,
  "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128, "num_expert_group": 1, "topk_group": 1,
  "num_experts_per_token": 8, "moe_renormalize": true, "hidden_act": "silu", "rms_norm_eps": 1e-5,
  "tie_word_embeddings": false, "num_experts": 256, "vocab_size": 163840, "model_max_length": 1048576,
  "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
  "mlp_layer_types": ["dense", "sparse", "sparse", "sparse"],
  "linear_head_dim": 128, "linear_num_heads": 32, "linear_conv_kernel_dim": 4}"#;

/// Mamba-130M, Mamba-2-130M and Mamba-1.4B (the state-spaces checkpoints' configurations),
/// RecurrentGemma-2B, a Mistral-7B cut to 8 layers, Qwen3.5-0.8B and a Kimi-Linear-48B cut to
/// 4 layers.
pub const PRESETS: [Preset; 7] = [
    Preset {
        name: "mamba-130m",
        model_type: "mamba",
        d_model: 768,
        layers: 24,
        d_state: 16,
        vocab: 50280,
        head_dim: 0,
        groups: 1,
        config: None,
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
        config: None,
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
        config: None,
    },
    Preset {
        name: "recurrentgemma-2b",
        model_type: "recurrent_gemma",
        d_model: 2560,
        layers: 26,
        d_state: 0,
        vocab: 256000,
        head_dim: 256,
        groups: 1,
        config: Some(RECURRENT_GEMMA_2B),
    },
    Preset {
        name: "mistral-7b-8l",
        model_type: "mistral",
        d_model: 4096,
        layers: 8,
        d_state: 0,
        vocab: 32000,
        head_dim: 128,
        groups: 1,
        config: Some(MISTRAL_7B_8L),
    },
    Preset {
        name: "qwen3.5-0.8b",
        model_type: "qwen3_5_text",
        d_model: 1024,
        layers: 24,
        d_state: 0,
        vocab: 248320,
        head_dim: 256,
        groups: 1,
        config: Some(QWEN3_5_0_8B),
    },
    Preset {
        name: "kimi-linear-48b-4l",
        model_type: "kimi_linear",
        d_model: 2304,
        layers: 4,
        d_state: 0,
        vocab: 163840,
        head_dim: 128,
        groups: 1,
        config: Some(KIMI_LINEAR_48B_4L),
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
        if let Some(json) = self.config {
            json.to_string()
        } else if self.model_type == "mamba" {
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
            "mistral" => super::mistral::MistralConfig::from_config(&cfg).expect("preset config").schema(),
            "qwen3_5_text" => {
                super::qwen3_next::Qwen3NextConfig::from_config(&cfg).expect("preset config").schema()
            }
            "recurrent_gemma" => super::recurrent_gemma::RecurrentGemmaConfig::from_config(&cfg)
                .expect("preset config")
                .schema(),
            "kimi_linear" => {
                super::kimi_linear::KimiLinearConfig::from_config(&cfg).expect("preset config").schema()
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every preset's configuration parses into its architecture's schema; the parameter
    /// counts are those of the published configurations (the cut ones: of their layers).
    #[test]
    fn presets_parse_and_count_their_parameters() {
        for p in PRESETS {
            let n = p.parameters();
            assert!(n > 0, "{}", p.name);
            if p.name == "kimi-linear-48b-4l" {
                // Embeddings and head 2·163840·2304, three MoE layers of 256 + 1 experts of
                // 3·2304·1024 each, a dense MLP of 3·2304·9216, and the attention layers.
                let moe = 3 * 257 * 3 * 2304 * 1024;
                let fixed = 2 * 163840 * 2304 + moe + 3 * 2304 * 9216;
                assert!(n > fixed && n < fixed + 400_000_000, "{}: {n}", p.name);
            }
        }
        assert!(preset("no-such").unwrap_err().to_string().contains("kimi-linear-48b-4l"));
    }
}
