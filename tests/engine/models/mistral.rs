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
fn a_kv_cache_beyond_the_binding_limit_is_a_clear_error() {
    // Full attention over 2²⁶ positions: a 32 GiB cache per layer and sequence.
    let dir = checkpoint("mistral-huge", None, 1 << 26);
    let dev = &crate::common::devices()[0];
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
