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
/// A checkpoint's tensors (name, shape, values).
pub type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;
/// A change that makes a checkpoint disagree with its config.
pub type Spoil = fn(&mut Tensors);

/// Writes `good` spoiled by each case under config `cfg` and checks that loading it fails with
/// an error naming the case.
pub fn check_spoiled_checkpoints_are_refused(name: &str, cfg: &str, good: &Tensors, cases: &[(&str, Spoil)]) {
    let dev = &crate::common::devices()[0];
    for (want, spoil) in cases {
        let dir = scratch(&format!("{name}-bad-{want}"));
        let mut t = good.clone();
        spoil(&mut t);
        write_checkpoint(&dir, cfg, &t);
        let e = linseq::model::load(dev, &dir, DType::F32).err().expect(want);
        assert!(e.to_string().contains(want), "{want}: {e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

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

/// The runtime checks every architecture's test shares, on a random checkpoint in `dir`:
/// prefill then decode (one token at a time, and through the recorded decoder after a snapshot
/// restore) equals one forward; a ragged batch of two equals each alone; the graph reference
/// agrees with a prefill and a decode step. `tol`: the f32 tolerance of a recomputation.
pub fn check_runtime(dir: &Path, text: &[u8], split: usize, tol: f32) {
    check_runtime_on(dir, text, split, tol, |_| true)
}

/// [`check_runtime`] on the devices `runs` accepts.
pub fn check_runtime_on(
    dir: &Path,
    text: &[u8],
    split: usize,
    tol: f32,
    runs: impl Fn(&linseq::Device) -> bool,
) {
    use crate::common::devices;
    use linseq::model;
    let ids = ids(text);
    for dev in devices().iter().filter(|d| runs(d)) {
        let m = model::load(dev, dir, DType::F32).unwrap();
        let vocab = m.vocab();
        let mut s = m.new_state(dev, 1).unwrap();
        let full = m.forward(dev, &ids, &[ids.len()], &mut s).unwrap();
        assert!(full.iter().all(|v| v.is_finite()), "{}: non-finite logits", m.model_type());
        let mut s = m.new_state(dev, 1).unwrap();
        let mut stepped = m.forward(dev, &ids[..split], &[split], &mut s).unwrap();
        let snap = s.snapshot(dev).unwrap();
        for &id in &ids[split..] {
            stepped.extend(m.forward(dev, &[id], &[1], &mut s).unwrap());
        }
        let e = max_abs(&full, &stepped);
        assert!(
            e < tol,
            "{} on {}: prefill + decode differs from one forward by {e}",
            m.model_type(),
            dev.describe()
        );
        // The recorded decoder continues a restored snapshot the same way.
        s.restore(dev, &snap).unwrap();
        {
            let mut dec = m.decoder(dev, &mut s).unwrap();
            for (j, &id) in ids[split..split + 4].iter().enumerate() {
                let got = dec.step(&[id]).unwrap();
                let want = &full[(split + j) * vocab..(split + j + 1) * vocab];
                assert!(max_abs(&got, want) < tol, "{}: decoder step {j}", m.model_type());
            }
        }
        // The graph reference agrees with a prefill continued from a state, and a decode step.
        let mut s = m.new_state(dev, 2).unwrap();
        let both: Vec<u32> = ids[..split].iter().chain(&ids[..7]).copied().collect();
        m.forward(dev, &both, &[split, 7], &mut s).unwrap();
        for (chunk, lens) in [(&ids[split..split + 5], [3, 2]), (&ids[split..split + 2], [1, 1])] {
            let want = m.forward_reference(dev, chunk, &lens, &s).unwrap();
            let got = m.forward(dev, chunk, &lens, &mut s).unwrap();
            let e = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
            assert!(
                e < tol as f64,
                "{}: GPU and graph reference differ by {e} at lens {lens:?}",
                m.model_type()
            );
        }
        // A ragged batch of two equals each alone.
        let mut two = m.new_state(dev, 2).unwrap();
        let both: Vec<u32> = ids.iter().chain(&ids[..9]).copied().collect();
        let batched = m.forward(dev, &both, &[ids.len(), 9], &mut two).unwrap();
        let mut one = m.new_state(dev, 1).unwrap();
        let alone = m.forward(dev, &ids[..9], &[9], &mut one).unwrap();
        assert!(max_abs(&batched[ids.len() * vocab..], &alone) < tol, "{}: ragged batch", m.model_type());
        assert!(max_abs(&batched[..ids.len() * vocab], &full) < tol, "{}: ragged batch", m.model_type());
    }
}

mod hybrid;
mod kimi_linear;
mod loader;
mod mamba;
mod mamba2;
mod mistral;
mod qwen3_next;
mod recurrent_gemma;
mod s4;
