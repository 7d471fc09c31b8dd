//! Mistral (MistralForCausalLM) on random checkpoints: a sliding window shorter than the text
//! (so the ring wraps during prefill and decode), GQA 4:1, and full attention.

use super::{check_runtime, scratch, write_checkpoint};
use linseq::model::config::Config;
use linseq::model::mistral::MistralConfig;
use linseq::model::schema;

fn checkpoint(name: &str, window: Option<usize>, max_positions: usize) -> std::path::PathBuf {
    let dir = scratch(name);
    let cfg = serde_json::json!({
        "model_type": "mistral", "hidden_size": 128, "intermediate_size": 192, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 64, "num_hidden_layers": 2, "vocab_size": 256,
        "rms_norm_eps": 1e-6, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "sliding_window": window, "max_position_embeddings": max_positions, "tie_word_embeddings": true,
    })
    .to_string();
    let c = MistralConfig::from_config(&Config::parse(&cfg, "test").unwrap()).unwrap();
    write_checkpoint(&dir, &cfg, &schema::random_tensors(&c.schema(), 71));
    dir
}

const TEXT: &[u8] = b"Shall I compare thee to a summer's day? Thou art more lovely and more temperate.";

#[test]
fn mistral_with_a_sliding_window_decodes_as_one_forward() {
    let dir = checkpoint("mistral-swa", Some(16), 256);
    check_runtime(&dir, TEXT, 30, 2e-3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mistral_with_full_attention_decodes_as_one_forward() {
    let dir = checkpoint("mistral-full", None, 256);
    check_runtime(&dir, TEXT, 30, 2e-3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn full_attention_grows_its_cache_in_blocks_as_positions_reach_them() {
    // max_position_embeddings 256: four blocks of 64 positions per layer, allocated as the
    // text reaches them; decoding across block boundaries (the recorded decoder and the
    // generator re-record themselves over the new block) equals one forward.
    use super::{ids, max_abs};
    use linseq::model::SamplingParams;
    let dir = checkpoint("mistral-blocks", None, 256);
    let text: Vec<u32> = ids(TEXT).into_iter().chain(ids(TEXT)).take(150).collect();
    let block_bytes = (64 * 2 * 64 * 4) as u64; // one sequence, 1 KV head of 64, K and V
    for dev in crate::common::devices() {
        let m = linseq::model::load(dev, &dir, linseq::DType::F32).unwrap();
        let vocab = m.vocab();
        let mut s = m.new_state(dev, 1).unwrap();
        let full = m.forward(dev, &text, &[150], &mut s).unwrap();
        assert_eq!(s.bytes(), 4 + 2 * 3 * block_bytes, "150 positions take three blocks per layer");
        let mut s = m.new_state(dev, 1).unwrap();
        assert_eq!(s.bytes(), 4, "no blocks before the first token");
        m.forward(dev, &text[..50], &[50], &mut s).unwrap();
        assert_eq!(s.bytes(), 4 + 2 * block_bytes);
        let snap50 = s.snapshot(dev).unwrap();
        {
            let mut dec = m.decoder(dev, &mut s).unwrap();
            for (j, &id) in text[50..].iter().enumerate() {
                let got = dec.step(&[id]).unwrap();
                let want = &full[(50 + j) * vocab..][..vocab];
                assert!(max_abs(&got, want) < 2e-3, "decoder step at position {}", 50 + j);
            }
        }
        assert_eq!(s.cached_positions(), &[150]);
        assert_eq!(s.bytes(), 4 + 2 * 3 * block_bytes);
        // A snapshot of three blocks, saved and loaded, continues like the state it came from.
        let path = std::env::temp_dir().join(format!("linseq-blocks-{}.safetensors", std::process::id()));
        s.snapshot(dev).unwrap().save(&path).unwrap();
        let mut r = m.new_state(dev, 1).unwrap();
        r.restore(dev, &linseq::model::Snapshot::load(&path).unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!((r.cached_positions(), r.bytes()), (&[150][..], s.bytes()));
        let a = m.forward(dev, &text[..3], &[3], &mut s).unwrap();
        let b = m.forward(dev, &text[..3], &[3], &mut r).unwrap();
        assert!(max_abs(&a, &b) < 1e-6, "the restored state continues the same way");
        // Past max_position_embeddings: a clear error, and the state is left as it was.
        let e = m.forward(dev, &[1; 110], &[110], &mut s).unwrap_err();
        assert!(matches!(e, linseq::Error::Limit(_)) && e.to_string().contains("max_position"), "{e}");
        assert_eq!(s.cached_positions(), &[153]);
        // The generator, from 50 positions, across the boundary at 64: greedy, so its tokens
        // are the argmax of the decoder's logits.
        s.restore(dev, &snap50).unwrap();
        assert_eq!(s.bytes(), 4 + 2 * block_bytes, "restoring drops the blocks the snapshot lacks");
        let mut r = m.new_state(dev, 1).unwrap();
        r.restore(dev, &snap50).unwrap();
        let greedy = SamplingParams { temperature: 0.0, ..Default::default() };
        let got = m.generator(dev, &mut s, &greedy, 8).unwrap().generate(&[text[50]], 8, 0).unwrap();
        let mut gen = m.generator(dev, &mut r, &greedy, 8).unwrap();
        let more = [gen.generate(&[text[50]], 8, 0).unwrap(), gen.generate(&[7], 8, 0).unwrap()];
        assert_eq!(more[0], got);
        drop(gen);
        assert_eq!(r.cached_positions(), &[66]);
        let mut want = Vec::new();
        let mut q = m.new_state(dev, 1).unwrap();
        q.restore(dev, &snap50).unwrap();
        let mut dec = m.decoder(dev, &mut q).unwrap();
        let mut id = text[50];
        for k in 0..16 {
            let l = dec.step(&[if k == 8 { 7 } else { id }]).unwrap();
            id = l.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
                as u32;
            want.push(id);
        }
        assert_eq!(more.concat().concat(), want, "generation across a block boundary");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kv_cache_beyond_the_binding_limit_is_a_clear_error() {
    // Full attention over 2²⁶ positions: blocks of 2²⁴ would be 8 GiB each, so the state takes
    // the largest blocks one binding holds, and positions past them are a clear error.
    let dir = checkpoint("mistral-huge", None, 1 << 26);
    let dev = &crate::common::devices()[0];
    let m = linseq::model::load(dev, &dir, linseq::DType::F32).unwrap();
    let s = m.new_state(dev, 1).unwrap();
    let spec = s.slot_spec(0, "kv").unwrap();
    let linseq::model::SlotKind::KvBlocks { block } = spec.kind else { panic!("{spec:?}") };
    let max = dev.caps().max_storage_buffer_binding_size.min(dev.caps().max_buffer_size);
    assert!(block < 1 << 24 && block % 64 == 0 && (block * 2 * 64 * 4) as u64 <= max, "block {block}");
    assert_eq!(spec.shape[1], block);
    let e = s.kv_blocks(dev, 0, "kv", 4 * block + 1).unwrap_err();
    assert!(matches!(e, linseq::Error::Limit(_)) && e.to_string().contains("binding"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    // A sliding window's ring cannot shrink: beyond the binding it is refused.
    let dir = checkpoint("mistral-huge-ring", Some(1 << 26), 1 << 26);
    let m = linseq::model::load(dev, &dir, linseq::DType::F32).unwrap();
    let e = m.new_state(dev, 1).unwrap_err();
    assert!(matches!(e, linseq::Error::Limit(_)) && e.to_string().contains("binding"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mistral_configs_the_tensors_disagree_with_are_refused() {
    let bad = [
        ("num_key_value_heads", serde_json::json!(3), "multiple"),
        ("head_dim", serde_json::json!(48), "head dim"),
        ("sliding_window", serde_json::json!(0), "sliding_window"),
        ("rope_parameters", serde_json::json!({"rope_type": "yarn", "rope_theta": 1e4}), "rope_type"),
        ("num_hidden_layers", serde_json::json!(1e12), "num_hidden_layers"),
    ];
    for (field, value, want) in bad {
        let mut cfg = serde_json::json!({
            "model_type": "mistral", "hidden_size": 128, "intermediate_size": 192, "num_attention_heads": 4,
            "head_dim": 64, "num_hidden_layers": 2, "vocab_size": 256,
        });
        cfg[field] = value;
        let cfg = Config::parse(&cfg.to_string(), "test").unwrap();
        let e = MistralConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains(want), "{field}: {e}");
    }
}
