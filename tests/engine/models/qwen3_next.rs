//! Qwen3-Next, Qwen3.5 and OLMo-Hybrid (the Gated DeltaNet hybrids) on random checkpoints: three Gated DeltaNet layers then gated full
//! attention (the shared tiny checkpoints' shape), both projection layouts (Qwen3-Next's
//! interleaved `in_proj_qkvz` / `in_proj_ba`, Qwen3.5's split ones) and the multimodal
//! wrapper's nesting; prefill + decode equals one forward, ragged batches equal separate runs.
//! The delta rule does not run through GL: there the load works and the forward is refused.

use super::{check_runtime_on, check_spoiled_checkpoints_are_refused, scratch, write_checkpoint, Spoil};
use linseq::model::config::Config;
use linseq::model::qwen3_next::Qwen3NextConfig;
use linseq::model::schema;

fn config(model_type: &str) -> serde_json::Value {
    serde_json::json!({
        "model_type": model_type, "hidden_size": 128, "intermediate_size": 192, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 64, "num_hidden_layers": 4, "vocab_size": 256,
        "rms_norm_eps": 1e-6, "max_position_embeddings": 512, "tie_word_embeddings": true,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default", "partial_rotary_factor": 0.25},
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        "linear_conv_kernel_dim": 4, "linear_key_head_dim": 32, "linear_value_head_dim": 64,
        "linear_num_key_heads": 2, "linear_num_value_heads": 4, "hidden_act": "silu",
        "num_experts": 4, "mlp_only_layers": [0, 1, 2, 3],
    })
}

fn checkpoint(name: &str, cfg: &serde_json::Value) -> std::path::PathBuf {
    let dir = scratch(name);
    let text = cfg.to_string();
    let c = Qwen3NextConfig::from_config(&Config::parse(&text, "test").unwrap()).unwrap();
    write_checkpoint(&dir, &text, &schema::random_tensors(&c.schema(), 81));
    dir
}

const TEXT: &[u8] = b"Now is the winter of our discontent made glorious summer by this sun of York.";

fn delta_rule_runs(dev: &linseq::Device) -> bool {
    linseq::ops::delta_rule::runs(dev.caps())
}

#[test]
fn qwen3_next_and_qwen3_5_decode_as_one_forward() {
    let wrapped = {
        let mut c = serde_json::json!({"model_type": "qwen3_5", "vision_config": {"depth": 2}});
        let mut text = config("qwen3_5_text");
        text["model_type"] = "qwen3_5_text".into();
        c["text_config"] = text;
        c
    };
    for (name, cfg) in
        [("qwen3-next", config("qwen3_next")), ("qwen3-5", config("qwen3_5_text")), ("qwen3-5-mm", wrapped)]
    {
        let dir = checkpoint(name, &cfg);
        check_runtime_on(&dir, TEXT, 30, 2e-3, delta_rule_runs);
        for dev in crate::common::devices().iter().filter(|d| !delta_rule_runs(d)) {
            let m = linseq::model::load(dev, &dir, linseq::DType::F32).unwrap();
            let mut s = m.new_state(dev, 1).unwrap();
            let e = m.forward(dev, &[1, 2, 3], &[3], &mut s).unwrap_err();
            assert!(e.to_string().contains("Vulkan"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn qwen3_next_with_mixture_of_experts_layers_decodes_as_one_forward() {
    // Layers 1 and 3 sparse (4 experts, top 2, renormalised, a shared expert), 0 and 2 dense.
    let mut cfg = config("qwen3_next");
    cfg["mlp_only_layers"] = serde_json::json!([0, 2]);
    cfg["num_experts_per_tok"] = 2.into();
    cfg["moe_intermediate_size"] = 64.into();
    cfg["shared_expert_intermediate_size"] = 96.into();
    cfg["norm_topk_prob"] = true.into();
    let c = Qwen3NextConfig::from_config(&Config::parse(&cfg.to_string(), "test").unwrap()).unwrap();
    assert_eq!(c.sparse, vec![false, true, false, true]);
    let names: Vec<String> = c.schema().into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "model.layers.1.mlp.experts.3.down_proj.weight"));
    assert!(names.iter().any(|n| n == "model.layers.3.mlp.shared_expert_gate.weight"));
    let dir = checkpoint("qwen3-next-moe", &cfg);
    check_runtime_on(&dir, TEXT, 30, 2e-3, delta_rule_runs);
    // A decode step reads only the routed experts: one token 2 of each sparse layer's 4 (the
    // other 2 unread), a large batch all of them.
    let m = linseq::model::load(&crate::common::devices()[0], &dir, linseq::DType::F32).unwrap();
    let per_expert = 3 * c.moe.as_ref().unwrap().dims.d * 64;
    assert_eq!(m.parameters_read(1), m.parameters() - 2 * 2 * per_expert);
    assert_eq!(m.parameters_read(64), m.parameters());
    let _ = std::fs::remove_dir_all(&dir);
    // More experts per token than experts.
    cfg["num_experts_per_tok"] = 5.into();
    let e = Qwen3NextConfig::from_config(&Config::parse(&cfg.to_string(), "test").unwrap()).unwrap_err();
    assert!(e.to_string().contains("experts"), "{e}");
}

#[test]
fn the_multimodal_wrapper_reads_weights_under_language_model() {
    let mut c = serde_json::json!({"model_type": "qwen3_5"});
    c["text_config"] = config("qwen3_5_text");
    let cfg = Qwen3NextConfig::from_config(&Config::parse(&c.to_string(), "test").unwrap()).unwrap();
    let names: Vec<String> = cfg.schema().into_iter().map(|s| s.name).collect();
    assert!(names.iter().all(|n| n.starts_with("model.language_model.")), "{names:?}");
    assert!(names.iter().any(|n| n == "model.language_model.layers.0.linear_attn.in_proj_qkv.weight"));
}

#[test]
fn qwen_configs_and_checkpoints_that_disagree_are_refused() {
    let bad: &[(&str, serde_json::Value, &str)] = &[
        ("linear_num_value_heads", serde_json::json!(3), "multiple"),
        ("linear_num_key_heads", serde_json::json!(0), "multiple"),
        ("linear_key_head_dim", serde_json::json!(48), "key dims"),
        ("num_key_value_heads", serde_json::json!(3), "multiple"),
        (
            "layer_types",
            serde_json::json!(["linear_attention", "mamba", "linear_attention", "full_attention"]),
            "mamba",
        ),
        ("layer_types", serde_json::json!(["linear_attention"]), "layer_types"),
        // Sparse layers without the experts' sizes.
        ("mlp_only_layers", serde_json::json!([0, 1]), "num_experts_per_tok"),
        // Values of the wrong type are named by their field, in both shared field groups.
        ("num_hidden_layers", serde_json::json!(1.5), "num_hidden_layers"),
        ("linear_num_value_heads", serde_json::json!("four"), "linear_num_value_heads"),
    ];
    for (field, value, want) in bad {
        let mut cfg = config("qwen3_next");
        cfg[*field] = value.clone();
        let e = Qwen3NextConfig::from_config(&Config::parse(&cfg.to_string(), "test").unwrap()).unwrap_err();
        assert!(e.to_string().contains(want), "{field} = {value}: {e}");
    }
    // Checkpoints whose tensors do not match the config: a missing A_log, and interleaved
    // projections sized for other head counts.
    let cfg = config("qwen3_next");
    let c = Qwen3NextConfig::from_config(&Config::parse(&cfg.to_string(), "test").unwrap()).unwrap();
    let good = schema::random_tensors(&c.schema(), 82);
    let cases: [(&str, Spoil); 3] = [
        ("A_log", |t| t.retain(|(n, ..)| n != "model.layers.1.linear_attn.A_log")),
        ("dt_bias", |t| t.retain(|(n, ..)| n != "model.layers.0.linear_attn.dt_bias")),
        ("in_proj_qkvz", |t| {
            let e =
                t.iter_mut().find(|(n, ..)| n == "model.layers.2.linear_attn.in_proj_qkvz.weight").unwrap();
            e.1[0] -= 32;
            e.2.truncate(e.1[0] * e.1[1]);
        }),
    ];
    check_spoiled_checkpoints_are_refused("qwen", &cfg.to_string(), &good, &cases);
}

#[test]
fn olmo_hybrid_decodes_as_one_forward() {
    // Separate projections, negative eigenvalues, post-norms around the attention layer's
    // attention and MLP, q and k normed over all their heads.
    let cfg = serde_json::json!({
        "model_type": "olmo_hybrid", "hidden_size": 256, "intermediate_size": 192, "num_attention_heads": 4,
        "num_key_value_heads": 1, "num_hidden_layers": 4, "vocab_size": 256, "rms_norm_eps": 1e-6,
        "max_position_embeddings": 512, "tie_word_embeddings": true, "hidden_act": "silu",
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        "linear_conv_kernel_dim": 4, "linear_key_head_dim": 32, "linear_value_head_dim": 64,
        "linear_num_key_heads": 4, "linear_num_value_heads": 4, "linear_allow_neg_eigval": true,
    });
    let text = cfg.to_string();
    let c = linseq::model::olmo_hybrid::OlmoHybridConfig::from_config(&Config::parse(&text, "test").unwrap())
        .unwrap();
    assert!(c.gdn.negative_eigen);
    let dir = scratch("olmo-hybrid");
    write_checkpoint(&dir, &text, &schema::random_tensors(&c.schema(), 83));
    check_runtime_on(&dir, TEXT, 30, 2e-3, delta_rule_runs);
    let _ = std::fs::remove_dir_all(&dir);
    let mut nope = cfg.clone();
    nope.as_object_mut().unwrap().remove("rope_parameters");
    let e = linseq::model::olmo_hybrid::OlmoHybridConfig::from_config(
        &Config::parse(&nope.to_string(), "test").unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("NoPE"), "{e}");
}
