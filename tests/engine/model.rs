//! Model loading and the Mamba / Mamba-2 runtimes on small random checkpoints written here in HF
//! format (so the tests need nothing outside the repository): prefill + decode equals one forward,
//! batched ragged sequences equal separate runs, f16 weights stay close, and malformed
//! checkpoints give clear errors. Correctness against transformers' float64 logits is the
//! conformance suite's job (`linseq conformance ../shared/models`).

use crate::common::{devices, private_devices};
use linseq::model::{self, Model};
use linseq::testing::Rng;
use linseq::DType;
use std::path::{Path, PathBuf};

const D: usize = 64;
const DI: usize = 128;
const N: usize = 16;
const R: usize = 4;
const K: usize = 4;
const LAYERS: usize = 2;
const VOCAB: usize = 256;

fn config(model_type: &str) -> String {
    format!(
        r#"{{"model_type": "{model_type}", "hidden_size": {D}, "intermediate_size": {DI}, "state_size": {N},
  "time_step_rank": {R}, "conv_kernel": {K}, "num_hidden_layers": {LAYERS}, "vocab_size": {VOCAB},
  "layer_norm_epsilon": 1e-5, "use_bias": false, "use_conv_bias": true, "tie_word_embeddings": true,
  "residual_in_fp32": true, "time_step_floor": 1e-4, "weird_number": NaN}}"#
    )
}

fn tensors(rng: &mut Rng) -> Vec<(String, Vec<usize>, Vec<f32>)> {
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

fn write_checkpoint(dir: &Path, cfg: &str, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
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

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linseq-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn mamba_prefill_decode_and_batches_agree() {
    let dir = scratch("mamba");
    write_checkpoint(&dir, &config("mamba"), &tensors(&mut Rng::new(61)));
    let text = b"To be, or not to be, that is the question:";
    // Own devices: the decoder's steps are checked to create no GPU objects.
    for dev in &private_devices() {
        let m = model::load(dev, &dir, DType::F32).unwrap();
        assert_eq!(m.vocab(), VOCAB);
        let mut s = m.new_state(dev, 1).unwrap();
        let full = m.forward(dev, text, &[text.len()], &mut s).unwrap();
        assert_eq!(full.len(), text.len() * VOCAB);
        assert!(full.iter().all(|v| v.is_finite()));
        assert!(full.iter().any(|&v| v.abs() > 1e-3), "logits are all ~0");
        // Prefill 17 tokens, then decode the rest one at a time.
        let mut s = m.new_state(dev, 1).unwrap();
        let mut stepped = m.forward(dev, &text[..17], &[17], &mut s).unwrap();
        for &b in &text[17..] {
            stepped.extend(m.forward(dev, &[b], &[1], &mut s).unwrap());
        }
        let e = max_abs(&stepped, &full);
        assert!(e < 1e-4, "prefill + decode differs from one forward by {e}");
        // Two ragged sequences in one batch equal two separate runs.
        let other = b"All the world's a stage";
        let mut s = m.new_state(dev, 2).unwrap();
        let both: Vec<u8> = text.iter().chain(other.iter()).copied().collect();
        let batched = m.forward(dev, &both, &[text.len(), other.len()], &mut s).unwrap();
        let mut s1 = m.new_state(dev, 1).unwrap();
        let alone = m.forward(dev, other, &[other.len()], &mut s1).unwrap();
        assert!(max_abs(&batched[..full.len()], &full) < 1e-4);
        assert!(max_abs(&batched[full.len()..], &alone) < 1e-4);
        // Snapshots: save after a prefill, continue, then restore (from the file, and by
        // cloning) and continue again: identical logits.
        let mut s = m.new_state(dev, 1).unwrap();
        m.forward(dev, &text[..20], &[20], &mut s).unwrap();
        let fork = s.try_clone(&m, dev).unwrap();
        let file = dir.join("state.safetensors");
        s.snapshot(dev).unwrap().save(&file).unwrap();
        let first = m.forward(dev, &text[20..30], &[10], &mut s).unwrap();
        let mut restored = m.new_state(dev, 1).unwrap();
        restored.restore(dev, &model::Snapshot::load(&file).unwrap()).unwrap();
        assert_eq!(m.forward(dev, &text[20..30], &[10], &mut restored).unwrap(), first);
        let mut fork = fork;
        assert_eq!(m.forward(dev, &text[20..30], &[10], &mut fork).unwrap(), first);
        let mut wrong = m.new_state(dev, 2).unwrap();
        assert!(wrong.restore(dev, &model::Snapshot::load(&file).unwrap()).is_err());
        // Prefill returns each sequence's last-token logits only.
        let mut s = m.new_state(dev, 2).unwrap();
        let ids: Vec<u32> = both.iter().map(|&b| b as u32).collect();
        let last = m.prefill(dev, &ids, &[text.len(), other.len()], &mut s).unwrap();
        assert_eq!(last.len(), 2 * VOCAB);
        assert!(max_abs(&last[..VOCAB], &full[full.len() - VOCAB..]) < 1e-4);
        assert!(max_abs(&last[VOCAB..], &alone[alone.len() - VOCAB..]) < 1e-4);
        assert!(m.prefill(dev, &ids[..3], &[3, 0], &mut m.new_state(dev, 2).unwrap()).is_err());
        // The recorded decoder replays the same steps: same logits, and no new GPU objects
        // per step.
        let mut s1 = m.new_state(dev, 1).unwrap();
        m.forward(dev, &text[..17], &[17], &mut s1).unwrap();
        let s2 = s1.try_clone(&m, dev).unwrap();
        let dec = m.decoder(dev, &s2).unwrap();
        for (k, &b) in text[17..25].iter().enumerate() {
            let want = m.forward(dev, &[b], &[1], &mut s1).unwrap();
            let before = dev.counters();
            let got = dec.step(&[b as u32]).unwrap();
            let after = dev.counters();
            assert_eq!(got, want, "decoder step {k}");
            assert_eq!(
                (after.buffers, after.bind_groups),
                (before.buffers, before.bind_groups),
                "step {k} made GPU objects"
            );
        }
        assert!(dec.step(&[1, 2]).is_err());
        assert!(m.decoder(dev, &m.new_state(dev, 1).unwrap()).is_err());
        // The GPU-resident generator: greedy tokens equal a host loop of forward + argmax, for
        // two ragged sequences at once; sampling is seeded (two runs agree) and in range.
        let other = b"All the world's a stage";
        let start = |m: &Model| {
            let mut s = m.new_state(dev, 2).unwrap();
            let both: Vec<u8> = text[..17].iter().chain(other.iter()).copied().collect();
            m.forward(dev, &both, &[17, other.len()], &mut s).unwrap();
            s
        };
        let mut host = start(&m);
        let mut want: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        let mut cur = [b'x', b'y'];
        for _ in 0..10 {
            let logits = m.forward(dev, &cur, &[1, 1], &mut host).unwrap();
            for q in 0..2 {
                let t = linseq::ops::softmax::argmax_ref(&logits[q * VOCAB..(q + 1) * VOCAB]);
                want[q].push(t);
                cur[q] = t as u8;
            }
        }
        let st = start(&m);
        let greedy = model::SamplingParams { temperature: 0.0, ..Default::default() };
        let gen = m.generator(dev, &st, &greedy, 16).unwrap();
        assert_eq!(gen.generate(&[b'x' as u32, b'y' as u32], 10, 0).unwrap(), want);
        assert!(gen.generate(&[1, 2], 17, 0).is_err(), "more steps than recorded for");
        assert!(gen.generate(&[1], 1, 0).is_err());
        let hot = model::SamplingParams { temperature: 0.9, top_k: 20, top_p: 0.9, seed: 5 };
        let runs: Vec<Vec<Vec<u32>>> = (0..2)
            .map(|_| m.generator(dev, &start(&m), &hot, 12).unwrap().generate(&[1, 2], 12, 0).unwrap())
            .collect();
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].iter().flatten().all(|&t| (t as usize) < VOCAB));
        assert!(m.generator(dev, &m.new_state(dev, 1).unwrap(), &greedy, 4).is_err());
        // Forward passes run on the graph executor: its plan of a 2 × 300-token prefill reuses
        // activation storage across layers.
        let r = m.memory_plan(dev, &m.new_state(dev, 2).unwrap(), &[300, 300]).unwrap();
        assert!(r.planned_bytes * 2 <= r.naive_bytes, "{r:?}");
        assert!(r.planned_bytes as f64 <= 1.15 * r.lower_bound_bytes as f64, "{r:?}");
        assert!(r.inplace_nodes >= LAYERS, "residual adds run in place: {r:?}");
        assert!(m.memory_plan(dev, &m.new_state(dev, 2).unwrap(), &[3]).is_err());
        // f16 weights stay close.
        let m16 = model::load(dev, &dir, DType::F16).unwrap();
        let mut s = m16.new_state(dev, 1).unwrap();
        let half = m16.forward(dev, text, &[text.len()], &mut s).unwrap();
        let e = max_abs(&half, &full);
        assert!(e < 5e-2, "f16 weights: max-abs {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn load_err(dir: &Path) -> String {
    match model::load(&devices()[0], dir, DType::F32) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_checkpoints_give_clear_errors() {
    let mut rng = Rng::new(62);
    let good = tensors(&mut rng);
    // Unknown architecture.
    let dir = scratch("unknown");
    write_checkpoint(&dir, &config("transformer-xl"), &good);
    let e = load_err(&dir);
    assert!(e.contains("transformer-xl") && e.contains("not supported"), "{e}");
    // Missing tensor.
    let dir = scratch("missing");
    let without: Vec<_> = good.iter().filter(|t| !t.0.ends_with("layers.1.mixer.D")).cloned().collect();
    write_checkpoint(&dir, &config("mamba"), &without);
    let e = load_err(&dir);
    assert!(e.contains("backbone.layers.1.mixer.D") && e.contains("missing"), "{e}");
    // Wrong shape.
    let dir = scratch("shape");
    let mut bad = good.clone();
    let i = bad.iter().position(|t| t.0.ends_with("layers.0.mixer.x_proj.weight")).unwrap();
    bad[i].1 = vec![DI, R + 2 * N];
    write_checkpoint(&dir, &config("mamba"), &bad);
    let e = load_err(&dir);
    assert!(e.contains("x_proj.weight") && e.contains("expected"), "{e}");
    // Truncated file.
    let dir = scratch("truncated");
    write_checkpoint(&dir, &config("mamba"), &good);
    let f = dir.join("model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len / 2).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors") && e.contains("truncated or malformed"), "{e}");
    // Broken config.
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"mamba\", ").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"mamba\"}").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("hidden_size"), "{e}");
    // No checkpoint at all.
    let e = load_err(&scratch("nothing"));
    assert!(e.contains("config.json"), "{e}");
    // Bad token ids and state mismatches are errors, not panics.
    let dir = scratch("ids");
    write_checkpoint(&dir, &config("mamba"), &good);
    let dev = &devices()[0];
    let m: Model = model::load(dev, &dir, DType::F32).unwrap();
    let mut s = m.new_state(dev, 1).unwrap();
    assert!(m.forward_ids(dev, &[1, 2, 999], &[3], &mut s).is_err());
    assert!(m.forward_ids(dev, &[1, 2], &[1, 1], &mut s).is_err());
    assert!(m.forward_ids(dev, &[], &[0], &mut s).is_err());
    for name in ["unknown", "missing", "shape", "truncated", "ids"] {
        let _ = std::fs::remove_dir_all(scratch(name));
    }
}

#[test]
fn shipped_demo_model_predicts_shakespeare() {
    // The demo checkpoint (examples/shakespeare-mamba2, f16 safetensors trained by
    // tools/train_demo.py; 1.80 bits/byte on held-out plays) must find a famous line far more
    // predictable than the 8 bits/byte of a uniform guess.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shakespeare-mamba2");
    let text = b"ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n";
    for dev in devices() {
        let m = model::load(dev, &dir, DType::F32).unwrap();
        let mut s = m.new_state(dev, 1).unwrap();
        let logits = m.forward(dev, text, &[text.len()], &mut s).unwrap();
        let mut nats = 0f64;
        for (i, row) in logits.chunks(VOCAB).enumerate().take(text.len() - 1) {
            nats += model::cross_entropy(row, text[i + 1] as u32);
        }
        let bpb = nats / (text.len() - 1) as f64 / std::f64::consts::LN_2;
        assert!(bpb < 3.0, "demo model: {bpb:.2} bits per byte on a line of Romeo and Juliet");
        // Mamba-2's fused decode step (3 dispatches per layer: in_proj + conv, SSD step with the
        // gate, gated norm + out_proj onto the residual) continues a prefill exactly as the
        // full forward does, for one sequence and for two at once.
        let k = 40;
        let mut s = m.new_state(dev, 1).unwrap();
        let mut stepped = m.forward(dev, &text[..k], &[k], &mut s).unwrap();
        for &b in &text[k..] {
            stepped.extend(m.forward(dev, &[b], &[1], &mut s).unwrap());
        }
        let e = max_abs(&stepped, &logits);
        assert!(e < 1e-4, "demo model: prefill + fused decode differs from one forward by {e}");
        let mut two = m.new_state(dev, 2).unwrap();
        m.forward(dev, &[&text[..k], &text[..k - 3]].concat(), &[k, k - 3], &mut two).unwrap();
        let both = m.forward(dev, &[text[k], text[k - 3]], &[1, 1], &mut two).unwrap();
        assert!(max_abs(&both[..VOCAB], &logits[k * VOCAB..(k + 1) * VOCAB]) < 1e-4);
        assert!(max_abs(&both[VOCAB..], &logits[(k - 3) * VOCAB..(k - 2) * VOCAB]) < 1e-4);
        let layers = 4;
        assert_eq!(m.decoder(dev, &s).unwrap().dispatches(), 3 * layers + 3, "fused Mamba-2 decode step");
    }
}

#[test]
fn mamba2_decode_continues_prefill_with_one_and_two_groups() {
    // One group takes the fused decode step (3 dispatches per layer), two groups the unfused
    // one (the gated norm is per group there); both must continue a prefill exactly as one
    // forward does, for a single sequence and for a ragged pair.
    let text = b"Now is the winter of our discontent made glorious summer";
    for groups in [1usize, 2] {
        let dir = scratch(&format!("mamba2-g{groups}"));
        let preset = model::random::Preset {
            name: "test",
            model_type: "mamba2",
            d_model: 64,
            layers: 2,
            d_state: 16,
            vocab: VOCAB,
            head_dim: 16,
            groups,
        };
        preset.write(&dir, 7).unwrap();
        for dev in devices() {
            let m = model::load(dev, &dir, DType::F32).unwrap();
            let mut s = m.new_state(dev, 1).unwrap();
            let full = m.forward(dev, text, &[text.len()], &mut s).unwrap();
            let k = 30;
            let mut s = m.new_state(dev, 1).unwrap();
            let mut stepped = m.forward(dev, &text[..k], &[k], &mut s).unwrap();
            for &b in &text[k..] {
                stepped.extend(m.forward(dev, &[b], &[1], &mut s).unwrap());
            }
            let e = max_abs(&stepped, &full);
            assert!(e < 1e-4, "{groups} group(s): prefill + decode differs from one forward by {e}");
            let mut two = m.new_state(dev, 2).unwrap();
            m.forward(dev, &[&text[..k], &text[..k - 5]].concat(), &[k, k - 5], &mut two).unwrap();
            let both = m.forward(dev, &[text[k], text[k - 5]], &[1, 1], &mut two).unwrap();
            assert!(max_abs(&both[..VOCAB], &full[k * VOCAB..(k + 1) * VOCAB]) < 1e-4);
            assert!(max_abs(&both[VOCAB..], &full[(k - 5) * VOCAB..(k - 4) * VOCAB]) < 1e-4);
            let per_layer = if groups == 1 { 3 } else { 9 };
            assert_eq!(m.decoder(dev, &s).unwrap().dispatches(), per_layer * 2 + 3, "{groups} group(s)");
        }
    }
}
