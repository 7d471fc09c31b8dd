//! Mamba-2 (Mamba2ForCausalLM): the shipped demo model and decode on random checkpoints.

#![allow(unused_imports)]
use super::*;
use crate::common::{devices, private_devices};
use linseq::model::{self, Model};

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
        let logits = m.forward(dev, &ids(text), &[text.len()], &mut s).unwrap();
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
        let mut stepped = m.forward(dev, &ids(&text[..k]), &[k], &mut s).unwrap();
        for &b in &text[k..] {
            stepped.extend(m.forward(dev, &ids(&[b]), &[1], &mut s).unwrap());
        }
        let e = max_abs(&stepped, &logits);
        assert!(e < 1e-4, "demo model: prefill + fused decode differs from one forward by {e}");
        let mut two = m.new_state(dev, 2).unwrap();
        m.forward(dev, &ids(&[&text[..k], &text[..k - 3]].concat()), &[k, k - 3], &mut two).unwrap();
        let both = m.forward(dev, &ids(&[text[k], text[k - 3]]), &[1, 1], &mut two).unwrap();
        assert!(max_abs(&both[..VOCAB], &logits[k * VOCAB..(k + 1) * VOCAB]) < 1e-4);
        assert!(max_abs(&both[VOCAB..], &logits[(k - 3) * VOCAB..(k - 2) * VOCAB]) < 1e-4);
        let layers = 4;
        assert_eq!(m.decoder(dev, &mut s).unwrap().dispatches(), 3 * layers + 3, "fused Mamba-2 decode step");
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
            config: None,
        };
        preset.write(&dir, 7).unwrap();
        for dev in devices() {
            let m = model::load(dev, &dir, DType::F32).unwrap();
            let mut s = m.new_state(dev, 1).unwrap();
            let full = m.forward(dev, &ids(text), &[text.len()], &mut s).unwrap();
            let k = 30;
            let mut s = m.new_state(dev, 1).unwrap();
            let mut stepped = m.forward(dev, &ids(&text[..k]), &[k], &mut s).unwrap();
            for &b in &text[k..] {
                stepped.extend(m.forward(dev, &ids(&[b]), &[1], &mut s).unwrap());
            }
            let e = max_abs(&stepped, &full);
            assert!(e < 1e-4, "{groups} group(s): prefill + decode differs from one forward by {e}");
            let mut two = m.new_state(dev, 2).unwrap();
            m.forward(dev, &ids(&[&text[..k], &text[..k - 5]].concat()), &[k, k - 5], &mut two).unwrap();
            let both = m.forward(dev, &ids(&[text[k], text[k - 5]]), &[1, 1], &mut two).unwrap();
            assert!(max_abs(&both[..VOCAB], &full[k * VOCAB..(k + 1) * VOCAB]) < 1e-4);
            assert!(max_abs(&both[VOCAB..], &full[(k - 5) * VOCAB..(k - 4) * VOCAB]) < 1e-4);
            let per_layer = if groups == 1 { 3 } else { 9 };
            assert_eq!(m.decoder(dev, &mut s).unwrap().dispatches(), per_layer * 2 + 3, "{groups} group(s)");
        }
    }
}

#[test]
fn whole_models_evaluate_on_the_cpu_through_the_graph_reference() {
    // The graphs of a prefill and of a fused decode step are made of nodes with f64 references
    // (the conv, scan, SSD and fused step nodes included), so graph::reference runs the whole
    // model: the GPU must agree with it, for a fresh state, one continued from a prefill, and
    // a decode step.
    let dev = &devices()[0];
    for (kind, dir) in
        [("mamba", scratch("ref-mamba")), ("mamba2", std::path::PathBuf::from("examples/shakespeare-mamba2"))]
    {
        if kind == "mamba" {
            write_checkpoint(&dir, &config("mamba"), &tensors(&mut Rng::new(98)));
        }
        let m = model::load(dev, &dir, DType::F32).unwrap();
        // The block stack counts what the checkpoint holds (no biases in these configs).
        let cfg = model::Config::load(&dir).unwrap();
        let schema = match kind {
            "mamba" => model::mamba::MambaConfig::from_config(&cfg).unwrap().schema(),
            _ => model::mamba2::Mamba2Config::from_config(&cfg).unwrap().schema(),
        };
        let held: usize = schema.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        assert_eq!(m.parameters(), held, "{kind}: parameters against the schema");
        let text = ids(b"To be, or not to be");
        let mut s = m.new_state(dev, 2).unwrap();
        let lens = [12, text.len() - 12];
        let want = m.forward_reference(dev, &text, &lens, &s).unwrap();
        let got = m.forward(dev, &text, &lens, &mut s).unwrap();
        let e = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
        assert!(e < 2e-3, "{kind}: GPU and graph reference differ by {e}");
        // Continued from the prefilled state (state read back from the device).
        let more = ids(b" that is");
        let lens = [3, more.len() - 3];
        let want = m.forward_reference(dev, &more, &lens, &s).unwrap();
        let got = m.forward(dev, &more, &lens, &mut s).unwrap();
        let e = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
        assert!(e < 2e-3, "{kind} continued: GPU and graph reference differ by {e}");
        // A decode step of both sequences: the fused step nodes' references.
        let step = ids(b"!?");
        let want = m.forward_reference(dev, &step, &[1, 1], &s).unwrap();
        let got = m.forward(dev, &step, &[1, 1], &mut s).unwrap();
        let e = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
        assert!(e < 2e-3, "{kind} decode step: GPU and graph reference differ by {e}");
        if kind == "mamba" {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
