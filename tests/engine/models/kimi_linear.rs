//! Kimi-Linear on random checkpoints: three Kimi Delta Attention layers then an MLA layer (the
//! shared tiny checkpoint's shape); prefill + decode equals one forward, ragged batches equal
//! separate runs; configs and checkpoints that disagree are refused. The delta rule does not
//! run through GL: there the model is not run.

use super::{check_runtime_on, check_spoiled_checkpoints_are_refused, scratch, write_checkpoint, Spoil};
use linseq::model::config::Config;
use linseq::model::kimi_linear::KimiLinearConfig;
use linseq::model::schema;

fn config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "kimi_linear", "hidden_size": 128, "intermediate_size": 192, "num_attention_heads": 4,
        "num_key_value_heads": 4, "head_dim": 16, "num_hidden_layers": 4, "vocab_size": 256,
        "rms_norm_eps": 1e-5, "model_max_length": 512, "tie_word_embeddings": true, "hidden_act": "silu",
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        "mlp_layer_types": ["dense", "dense", "dense", "dense"],
        "linear_conv_kernel_dim": 4, "linear_head_dim": 32, "linear_num_heads": 4,
        "kv_lora_rank": 64, "q_lora_rank": null, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
        "v_head_dim": 32, "num_experts": 8, "num_experts_per_token": 2,
    })
}

fn parse(cfg: &serde_json::Value) -> linseq::Result<KimiLinearConfig> {
    KimiLinearConfig::from_config(&Config::parse(&cfg.to_string(), "test").unwrap())
}

const TEXT: &[u8] = b"Now is the winter of our discontent made glorious summer by this sun of York.";

fn delta_rule_runs(dev: &linseq::Device) -> bool {
    linseq::ops::delta_rule::runs(dev.caps())
}

#[test]
fn kimi_linear_decodes_as_one_forward() {
    let cfg = config();
    let c = parse(&cfg).unwrap();
    // lm_head is its own matrix whatever tie_word_embeddings says (transformers ties nothing).
    assert!(!c.tie_embeddings);
    assert!(c.schema().iter().any(|s| s.name == "lm_head.weight"));
    let dir = scratch("kimi-linear");
    write_checkpoint(&dir, &cfg.to_string(), &schema::random_tensors(&c.schema(), 85));
    check_runtime_on(&dir, TEXT, 30, 2e-3, delta_rule_runs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kimi_linear_with_moe_layers_in_the_released_config_form_decodes_as_one_forward() {
    // The released checkpoints' config: linear_attn_config (1-based layer lists, KDA sizes),
    // first_k_dense_replace (layer 0 dense, the rest MoE: sigmoid routing with its bias, top 2
    // of 8, routed scaling, one shared expert), the MoE fields under their own names.
    let mut cfg = config();
    let obj = cfg.as_object_mut().unwrap();
    for k in
        ["layer_types", "mlp_layer_types", "linear_head_dim", "linear_num_heads", "linear_conv_kernel_dim"]
    {
        obj.remove(k);
    }
    cfg["linear_attn_config"] = serde_json::json!({
        "head_dim": 32, "num_heads": 4, "short_conv_kernel_size": 4,
        "kda_layers": [1, 2, 3], "full_attn_layers": [4],
    });
    cfg["first_k_dense_replace"] = 1.into();
    cfg["moe_intermediate_size"] = 64.into();
    cfg["num_shared_experts"] = 1.into();
    cfg["routed_scaling_factor"] = 2.446.into();
    cfg["moe_renormalize"] = true.into();
    cfg["num_expert_group"] = 1.into();
    let c = parse(&cfg).unwrap();
    assert_eq!(c.sparse, vec![false, true, true, true]);
    assert_eq!(c.kinds.last(), Some(&linseq::model::qwen3_next::LayerKind::Full));
    let names: Vec<String> = c.schema().into_iter().map(|s| s.name).collect();
    for want in [
        "model.layers.1.block_sparse_moe.experts.7.w3.weight",
        "model.layers.2.block_sparse_moe.gate.e_score_correction_bias",
        "model.layers.3.block_sparse_moe.shared_experts.down_proj.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}");
    }
    let dir = scratch("kimi-linear-moe");
    write_checkpoint(&dir, &cfg.to_string(), &schema::random_tensors(&c.schema(), 87));
    check_runtime_on(&dir, TEXT, 30, 2e-3, delta_rule_runs);
    let _ = std::fs::remove_dir_all(&dir);
    cfg["num_expert_group"] = 4.into();
    let e = parse(&cfg).unwrap_err();
    assert!(e.to_string().contains("num_expert_group"), "{e}");
}

#[test]
fn kimi_configs_and_checkpoints_that_disagree_are_refused() {
    let bad: &[(&str, serde_json::Value, &str)] = &[
        (
            "mlp_layer_types",
            serde_json::json!(["dense", "sparse", "dense", "dense"]),
            "moe_intermediate_size",
        ),
        ("mlp_layer_types", serde_json::json!(["dense", "mixed", "dense", "dense"]), "mixed"),
        ("mlp_layer_types", serde_json::json!(["dense"]), "mlp_layer_types"),
        ("q_lora_rank", serde_json::json!(32), "q_lora_rank"),
        ("linear_head_dim", serde_json::json!(48), "head dims"),
        ("v_head_dim", serde_json::json!(300), "largest head dim"),
        (
            "layer_types",
            serde_json::json!(["linear_attention", "mamba", "full_attention", "full_attention"]),
            "mamba",
        ),
        ("kv_lora_rank", serde_json::json!("wide"), "kv_lora_rank"),
    ];
    for (field, value, want) in bad {
        let mut cfg = config();
        cfg[*field] = value.clone();
        let e = parse(&cfg).unwrap_err();
        assert!(e.to_string().contains(want), "{field} = {value}: {e}");
    }
    // Checkpoints whose tensors do not match the config.
    let cfg = config();
    let good = schema::random_tensors(&parse(&cfg).unwrap().schema(), 86);
    let cases: [(&str, Spoil); 3] = [
        ("A_log", |t| t.retain(|(n, ..)| n != "model.layers.1.self_attn.A_log")),
        ("kv_b_proj", |t| {
            let e = t.iter_mut().find(|(n, ..)| n == "model.layers.3.self_attn.kv_b_proj.weight").unwrap();
            e.1[0] -= 8;
            e.2.truncate(e.1[0] * e.1[1]);
        }),
        ("f_b_proj", |t| t.retain(|(n, ..)| n != "model.layers.0.self_attn.f_b_proj.weight")),
    ];
    check_spoiled_checkpoints_are_refused("kimi", &cfg.to_string(), &good, &cases);
}
