//! Kimi-Linear on random checkpoints: three Kimi Delta Attention layers then an MLA layer (the
//! shared tiny checkpoint's shape); prefill + decode equals one forward, ragged batches equal
//! separate runs; configs and checkpoints that disagree are refused. The delta rule does not
//! run through GL: there the model is not run. An MLA layer with a low-rank query
//! (`q_lora_rank`, which the shared checkpoint lacks) is checked against an f64 forward written
//! here from transformers' KimiLinearAttention.

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
        ("q_lora_rank", serde_json::json!(0), "MLA dims"),
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

/// A tensor of the random checkpoint by name.
fn tensor<'a>(ts: &'a [(String, Vec<usize>, Vec<f32>)], name: &str) -> &'a [f32] {
    &ts.iter().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("no {name}")).2
}

/// `w` `[rows, x.len()]` (nn.Linear's layout) times `x`, in f64.
fn linear(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks(x.len()).map(|row| row.iter().zip(x).map(|(&a, &b)| f64::from(a) * b).sum()).collect()
}

fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let r = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * r * f64::from(g)).collect()
}

/// transformers' KimiLinear forward in f64 for a model of one MLA layer (with `q_lora_rank`)
/// and a dense SwiGLU MLP: the logits of every token.
fn one_mla_layer_ref(ts: &[(String, Vec<usize>, Vec<f32>)], ids: &[u32]) -> Vec<f64> {
    let (d, heads, nope, rope, v, rank) = (128, 4, 32, 16, 32, 64);
    let eps = 1e-5;
    let g = |n: &str| tensor(ts, n);
    let l = |n: &str| tensor(ts, &format!("model.layers.0.{n}"));
    let x: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| {
            g("model.embed_tokens.weight")[i as usize * d..][..d].iter().map(|&e| f64::from(e)).collect()
        })
        .collect();
    let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
    for xt in &x {
        let xn = rms_norm(xt, l("input_layernorm.weight"), eps);
        let qa =
            rms_norm(&linear(l("self_attn.q_a_proj.weight"), &xn), l("self_attn.q_a_layernorm.weight"), 1e-6);
        qs.push(linear(l("self_attn.q_b_proj.weight"), &qa));
        let c = linear(l("self_attn.kv_a_proj_with_mqa.weight"), &xn);
        let kv = linear(
            l("self_attn.kv_b_proj.weight"),
            &rms_norm(&c[..rank], l("self_attn.kv_a_layernorm.weight"), 1e-6),
        );
        let k: Vec<Vec<f64>> = (0..heads)
            .map(|h| kv[h * (nope + v)..][..nope].iter().chain(&c[rank..]).copied().collect())
            .collect();
        ks.push(k);
        vs.push((0..heads).map(|h| kv[h * (nope + v) + nope..][..v].to_vec()).collect::<Vec<_>>());
    }
    let scale = 1.0 / ((nope + rope) as f64).sqrt();
    let mut logits = Vec::new();
    for t in 0..x.len() {
        let mut o = vec![0.0; heads * v];
        for h in 0..heads {
            let q = &qs[t][h * (nope + rope)..][..nope + rope];
            let s: Vec<f64> =
                (0..=t).map(|u| q.iter().zip(&ks[u][h]).map(|(a, b)| a * b).sum::<f64>() * scale).collect();
            let m = s.iter().copied().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for (u, p) in e.iter().enumerate() {
                for c in 0..v {
                    o[h * v + c] += p / z * vs[u][h][c];
                }
            }
        }
        let a = linear(l("self_attn.o_proj.weight"), &o);
        let h1: Vec<f64> = x[t].iter().zip(&a).map(|(x, a)| x + a).collect();
        let hn = rms_norm(&h1, l("post_attention_layernorm.weight"), eps);
        let gate = linear(l("block_sparse_moe.gate_proj.weight"), &hn);
        let up = linear(l("block_sparse_moe.up_proj.weight"), &hn);
        let act: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        let down = linear(l("block_sparse_moe.down_proj.weight"), &act);
        let h2: Vec<f64> = h1.iter().zip(&down).map(|(h, m)| h + m).collect();
        logits.extend(linear(g("lm_head.weight"), &rms_norm(&h2, g("model.norm.weight"), eps)));
    }
    logits
}

#[test]
fn mla_with_a_low_rank_query_matches_an_f64_forward_and_decodes_as_one_forward() {
    let mut cfg = config();
    cfg["num_hidden_layers"] = 1.into();
    cfg["layer_types"] = serde_json::json!(["full_attention"]);
    cfg["mlp_layer_types"] = serde_json::json!(["dense"]);
    cfg["q_lora_rank"] = 32.into();
    let c = parse(&cfg).unwrap();
    let names: Vec<String> = c.schema().into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "model.layers.0.self_attn.q_a_layernorm.weight"));
    assert!(!names.iter().any(|n| n == "model.layers.0.self_attn.q_proj.weight"));
    let ts = schema::random_tensors(&c.schema(), 88);
    let dir = scratch("kimi-linear-q-lora");
    write_checkpoint(&dir, &cfg.to_string(), &ts);
    let ids: Vec<u32> = TEXT.iter().map(|&b| u32::from(b)).collect();
    let want = one_mla_layer_ref(&ts, &ids);
    assert!(want.iter().all(|v| v.is_finite()));
    for dev in crate::common::devices() {
        let m = linseq::model::load(dev, &dir, linseq::DType::F32).unwrap();
        let mut s = m.new_state(dev, 1).unwrap();
        let got = m.forward(dev, &ids, &[ids.len()], &mut s).unwrap();
        assert_eq!(got.len(), want.len());
        let err = got.iter().zip(&want).map(|(&g, &w)| (f64::from(g) - w).abs()).fold(0.0, f64::max);
        let peak = want.iter().fold(0.0f64, |a, w| a.max(w.abs()));
        assert!(err < 1e-3 * peak.max(1.0), "{}: max |logit - f64| = {err} (peak {peak})", dev.describe());
    }
    check_runtime_on(&dir, TEXT, 30, 2e-3, |_| true);
    let _ = std::fs::remove_dir_all(&dir);
}
