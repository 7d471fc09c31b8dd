//! Mamba (MambaForCausalLM) on small random checkpoints written by the test.

#![allow(unused_imports)]
use super::*;
use crate::common::{devices, private_devices};
use linseq::model::{self, Model};

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
        let full = m.forward(dev, &ids(text), &[text.len()], &mut s).unwrap();
        assert_eq!(full.len(), text.len() * VOCAB);
        assert!(full.iter().all(|v| v.is_finite()));
        assert!(full.iter().any(|&v| v.abs() > 1e-3), "logits are all ~0");
        // Prefill 17 tokens, then decode the rest one at a time.
        let mut s = m.new_state(dev, 1).unwrap();
        let mut stepped = m.forward(dev, &ids(&text[..17]), &[17], &mut s).unwrap();
        for &b in &text[17..] {
            stepped.extend(m.forward(dev, &ids(&[b]), &[1], &mut s).unwrap());
        }
        let e = max_abs(&stepped, &full);
        assert!(e < 1e-4, "prefill + decode differs from one forward by {e}");
        // Two ragged sequences in one batch equal two separate runs.
        let other = b"All the world's a stage";
        let mut s = m.new_state(dev, 2).unwrap();
        let both: Vec<u8> = text.iter().chain(other.iter()).copied().collect();
        let batched = m.forward(dev, &ids(&both), &[text.len(), other.len()], &mut s).unwrap();
        let mut s1 = m.new_state(dev, 1).unwrap();
        let alone = m.forward(dev, &ids(other), &[other.len()], &mut s1).unwrap();
        assert!(max_abs(&batched[..full.len()], &full) < 1e-4);
        assert!(max_abs(&batched[full.len()..], &alone) < 1e-4);
        // Snapshots: save after a prefill, continue, then restore (from the file, and by
        // cloning) and continue again: identical logits.
        let mut s = m.new_state(dev, 1).unwrap();
        m.forward(dev, &ids(&text[..20]), &[20], &mut s).unwrap();
        let fork = s.try_clone(&m, dev).unwrap();
        let file = dir.join("state.safetensors");
        s.snapshot(dev).unwrap().save(&file).unwrap();
        let first = m.forward(dev, &ids(&text[20..30]), &[10], &mut s).unwrap();
        let mut restored = m.new_state(dev, 1).unwrap();
        restored.restore(dev, &model::Snapshot::load(&file).unwrap()).unwrap();
        assert_eq!(m.forward(dev, &ids(&text[20..30]), &[10], &mut restored).unwrap(), first);
        let mut fork = fork;
        assert_eq!(m.forward(dev, &ids(&text[20..30]), &[10], &mut fork).unwrap(), first);
        let mut wrong = m.new_state(dev, 2).unwrap();
        assert!(wrong.restore(dev, &model::Snapshot::load(&file).unwrap()).is_err());
        // Prefill returns each sequence's last-token logits only.
        let mut s = m.new_state(dev, 2).unwrap();
        let both_ids = ids(&both);
        let last = m.prefill(dev, &both_ids, &[text.len(), other.len()], &mut s).unwrap();
        assert_eq!(last.len(), 2 * VOCAB);
        assert!(max_abs(&last[..VOCAB], &full[full.len() - VOCAB..]) < 1e-4);
        assert!(max_abs(&last[VOCAB..], &alone[alone.len() - VOCAB..]) < 1e-4);
        assert!(m.prefill(dev, &both_ids[..3], &[3, 0], &mut m.new_state(dev, 2).unwrap()).is_err());
        // The recorded decoder replays the same steps: same logits, and no new GPU objects
        // per step.
        let mut s1 = m.new_state(dev, 1).unwrap();
        m.forward(dev, &ids(&text[..17]), &[17], &mut s1).unwrap();
        let mut s2 = s1.try_clone(&m, dev).unwrap();
        let mut dec = m.decoder(dev, &mut s2).unwrap();
        for (k, &b) in text[17..25].iter().enumerate() {
            let want = m.forward(dev, &ids(&[b]), &[1], &mut s1).unwrap();
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
        assert!(m.decoder(dev, &mut m.new_state(dev, 1).unwrap()).is_err());
        // The GPU-resident generator: greedy tokens equal a host loop of forward + argmax, for
        // two ragged sequences at once; sampling is seeded (two runs agree) and in range.
        let other = b"All the world's a stage";
        let start = |m: &Model| {
            let mut s = m.new_state(dev, 2).unwrap();
            let both: Vec<u8> = text[..17].iter().chain(other.iter()).copied().collect();
            m.forward(dev, &ids(&both), &[17, other.len()], &mut s).unwrap();
            s
        };
        let mut host = start(&m);
        let mut want: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        let mut cur = [b'x', b'y'];
        for _ in 0..10 {
            let logits = m.forward(dev, &ids(&cur), &[1, 1], &mut host).unwrap();
            for q in 0..2 {
                let t = linseq::ops::softmax::argmax_ref(&logits[q * VOCAB..(q + 1) * VOCAB]);
                want[q].push(t);
                cur[q] = t as u8;
            }
        }
        let mut st = start(&m);
        let greedy = model::SamplingParams { temperature: 0.0, ..Default::default() };
        let mut gen = m.generator(dev, &mut st, &greedy, 16).unwrap();
        assert_eq!(gen.generate(&[b'x' as u32, b'y' as u32], 10, 0).unwrap(), want);
        assert!(gen.generate(&[1, 2], 17, 0).is_err(), "more steps than recorded for");
        assert!(gen.generate(&[1], 1, 0).is_err());
        let hot = model::SamplingParams { temperature: 0.9, top_k: 20, top_p: 0.9, seed: 5 };
        let runs: Vec<Vec<Vec<u32>>> = (0..2)
            .map(|_| m.generator(dev, &mut start(&m), &hot, 12).unwrap().generate(&[1, 2], 12, 0).unwrap())
            .collect();
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].iter().flatten().all(|&t| (t as usize) < VOCAB));
        assert!(m.generator(dev, &mut m.new_state(dev, 1).unwrap(), &greedy, 4).is_err());
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
        let half = m16.forward(dev, &ids(text), &[text.len()], &mut s).unwrap();
        let e = max_abs(&half, &full);
        assert!(e < 5e-2, "f16 weights: max-abs {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
