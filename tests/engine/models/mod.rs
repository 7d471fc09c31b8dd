//! Model loading and the Mamba / Mamba-2 runtimes on small random checkpoints written here in HF
//! format (so the tests need nothing outside the repository): prefill + decode equals one forward,
//! batched ragged sequences equal separate runs, f16 weights stay close, and malformed
//! checkpoints give clear errors. Correctness against transformers' float64 logits is the
//! conformance suite's job (`linseq conformance ../shared/models`).

use linseq::testing::Rng;
use linseq::DType;
use std::path::{Path, PathBuf};

pub const D: usize = 64;
pub const DI: usize = 128;
pub const N: usize = 16;
pub const R: usize = 4;
pub const K: usize = 4;
pub const LAYERS: usize = 2;
pub const VOCAB: usize = 256;

pub fn config(model_type: &str) -> String {
    format!(
        r#"{{"model_type": "{model_type}", "hidden_size": {D}, "intermediate_size": {DI}, "state_size": {N},
  "time_step_rank": {R}, "conv_kernel": {K}, "num_hidden_layers": {LAYERS}, "vocab_size": {VOCAB},
  "layer_norm_epsilon": 1e-5, "use_bias": false, "use_conv_bias": true, "tie_word_embeddings": true,
  "residual_in_fp32": true, "time_step_floor": 1e-4, "weird_number": NaN}}"#
    )
}

/// Random tensors of the test configuration, from the architecture's own schema (the one the
/// loader checks and the benchmark presets use).
pub fn tensors(rng: &mut Rng) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let cfg = linseq::model::config::Config::parse(&config("mamba"), "test").unwrap();
    let schema = linseq::model::mamba::MambaConfig::from_config(&cfg).unwrap().schema();
    linseq::model::schema::random_tensors(&schema, rng.next_u64())
}

pub fn write_checkpoint(dir: &Path, cfg: &str, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// Byte-level token ids (the test models have a 256-token vocabulary).
pub fn ids(bytes: &[u8]) -> Vec<u32> {
    bytes.iter().map(|&b| u32::from(b)).collect()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linseq-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

mod hybrid;
mod loader;
mod mamba;
mod mamba2;
