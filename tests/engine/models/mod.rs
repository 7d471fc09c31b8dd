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

pub fn tensors(rng: &mut Rng) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut t = vec![
        ("backbone.embeddings.weight".to_string(), vec![VOCAB, D], rng.vec(VOCAB * D, -0.5, 0.5)),
        ("backbone.norm_f.weight".to_string(), vec![D], rng.vec(D, 0.8, 1.2)),
    ];
    for i in 0..LAYERS {
        let p = format!("backbone.layers.{i}");
        t.push((format!("{p}.norm.weight"), vec![D], rng.vec(D, 0.8, 1.2)));
        t.push((format!("{p}.mixer.in_proj.weight"), vec![2 * DI, D], rng.vec(2 * DI * D, -0.15, 0.15)));
        t.push((format!("{p}.mixer.conv1d.weight"), vec![DI, 1, K], rng.vec(DI * K, -0.5, 0.5)));
        t.push((format!("{p}.mixer.conv1d.bias"), vec![DI], rng.vec(DI, -0.1, 0.1)));
        t.push((
            format!("{p}.mixer.x_proj.weight"),
            vec![R + 2 * N, DI],
            rng.vec((R + 2 * N) * DI, -0.1, 0.1),
        ));
        t.push((format!("{p}.mixer.dt_proj.weight"), vec![DI, R], rng.vec(DI * R, -0.5, 0.5)));
        t.push((format!("{p}.mixer.dt_proj.bias"), vec![DI], rng.vec(DI, -4.0, -2.0)));
        let a_log: Vec<f32> = (0..DI * N).map(|k| (((k % N) + 1) as f32).ln()).collect();
        t.push((format!("{p}.mixer.A_log"), vec![DI, N], a_log));
        t.push((format!("{p}.mixer.D"), vec![DI], vec![1.0; DI]));
        t.push((format!("{p}.mixer.out_proj.weight"), vec![D, DI], rng.vec(D * DI, -0.1, 0.1)));
    }
    t
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
