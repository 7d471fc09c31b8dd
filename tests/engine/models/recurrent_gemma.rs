//! RecurrentGemma (RecurrentGemmaForCausalLM) on a random checkpoint: (recurrent, recurrent,
//! attention) blocks with a window shorter than the text, MQA, RG-LRU state across decode.

use super::{check_runtime, scratch, write_checkpoint};
use crate::common::devices;
use linseq::model::config::Config;
use linseq::model::recurrent_gemma::RecurrentGemmaConfig;
use linseq::model::schema;
use linseq::ops::rg_lru;
use linseq::ops::sequences::Sequences;
use linseq::ops::Recorder;
use linseq::testing::{compare, Rng};
use linseq::Tensor;

#[test]
fn recurrent_gemma_decodes_as_one_forward() {
    let dir = scratch("recurrent-gemma");
    let cfg = serde_json::json!({
        "model_type": "recurrent_gemma", "hidden_size": 128, "intermediate_size": 384, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 64, "lru_width": 128, "conv1d_width": 4,
        "attention_window_size": 16, "block_types": ["recurrent", "recurrent", "attention"],
        "num_hidden_layers": 3, "vocab_size": 256, "rms_norm_eps": 1e-6, "logits_soft_cap": 30.0,
        "partial_rotary_factor": 0.5, "rope_parameters": {"rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": true,
    })
    .to_string();
    let c = RecurrentGemmaConfig::from_config(&Config::parse(&cfg, "test").unwrap()).unwrap();
    write_checkpoint(&dir, &cfg, &schema::random_tensors(&c.schema(), 72));
    check_runtime(&dir, b"Friends, Romans, countrymen, lend me your ears; I come to bury Caesar.", 25, 2e-3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rg_lru_chunked_and_sequential_match_the_recurrence_over_ragged_batches_resets_and_state() {
    for dev in devices() {
        let mut rng = Rng::new(73);
        let d = 96;
        // One-token sequences take the sequential kernel; the others the chunked prefill
        // (chunks of 64: lengths around a chunk, several chunks, resets inside chunks).
        for (lens, resets, init) in [
            (vec![1usize], false, false),
            (vec![1, 1, 1], false, true),
            (vec![37, 5, 64, 65], false, false),
            (vec![50, 130], true, true),
            (vec![3000], false, true),
        ] {
            let t: usize = lens.iter().sum();
            let flags: Vec<bool> = (0..t).map(|i| i % 17 == 3).collect();
            let seqs = Sequences::new(dev, &lens, resets.then_some(&flags[..])).unwrap();
            let x = rng.vec(t * d, -2.0, 2.0);
            let gates = rng.vec(t * 2 * d, -3.0, 3.0);
            let lam = rng.vec(d, -1.0, 2.0);
            let st = rng.vec(lens.len() * d, -1.0, 1.0);
            let xt = Tensor::from_slice(dev, &[t, d], &x).unwrap();
            let gt = Tensor::from_slice(dev, &[t, 2 * d], &gates).unwrap();
            let lt = Tensor::from_slice(dev, &[d], &lam).unwrap();
            let state = Tensor::from_slice(dev, &[lens.len(), d], &st).unwrap();
            let y = linseq::testing::GuardedOutput::new(dev, &[t, d], linseq::DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            rg_lru::rg_lru(&mut rec, &xt, &gt, &lt, &seqs, &state, init, &y.tensor, None).unwrap();
            rec.run().unwrap();
            let (want_y, want_state) = rg_lru::rg_lru_ref(
                &x,
                &gates,
                &lam,
                seqs.cu_seqlens(),
                resets.then_some(&flags[..]),
                &st,
                init,
            );
            let c = compare(&y.read_f32(dev).unwrap(), &want_y);
            assert!(
                c.nmse < 1e-10 && c.nonfinite_mismatches == 0,
                "[{}] rg_lru {lens:?}: {c:?}",
                dev.describe()
            );
            let c = compare(&state.read_f32(dev).unwrap(), &want_state);
            assert!(c.nmse < 1e-10, "[{}] rg_lru state {lens:?}: {c:?}", dev.describe());
        }
    }
}
