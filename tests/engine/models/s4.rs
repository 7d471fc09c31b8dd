//! The `s4` runtime (state-spaces/s4's S4Block language model) on random checkpoints, S4D and
//! S4: prefill (direct and FFT convolutions) then decode equals one forward, ragged batches,
//! snapshots and the graph reference; C̃ stored for a shorter kernel length gives the model
//! that stores C (the module's length doubling); bad configs and tensors are refused clearly.

use super::{
    check_runtime, check_spoiled_checkpoints_are_refused, ids, max_abs, scratch, write_checkpoint, Tensors,
};
use linseq::model::config::Config;
use linseq::model::s4::S4Config;
use linseq::model::schema;
use linseq::ops::s4::complex::C64;
use linseq::ops::s4::reference::{c_tilde, dplr_dense};

const D: usize = 32;
const D_STATE: usize = 16;

fn config(mode: &str) -> String {
    config_with(mode, false)
}

fn config_with(mode: &str, bidirectional: bool) -> String {
    serde_json::json!({
        "model_type": "s4", "vocab_size": 256, "d_model": D, "n_layers": 2, "prenorm": true,
        "norm": "layer", "norm_eps": 1e-5, "tie_word_embeddings": false,
        "block": {"final_act": "glu", "activation": "gelu", "bidirectional": bidirectional, "channels": 1,
                  "transposed": false, "mode": mode, "init": if mode == "diag" { "diag-lin" } else { "legs" },
                  "d_state": D_STATE}
    })
    .to_string()
}

fn tensors(mode: &str, seed: u64) -> Tensors {
    let c = S4Config::from_config(&Config::parse(&config(mode), "test").unwrap()).unwrap();
    schema::random_tensors(&c.schema(), seed)
}

fn checkpoint(name: &str, mode: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    write_checkpoint(&dir, &config(mode), &tensors(mode, 5));
    dir
}

const TEXT: &[u8] =
    b"Shall I compare thee to a summer's day? Thou art more lovely and more temperate. Rough winds";

#[test]
fn s4d_decodes_as_one_forward() {
    let dir = checkpoint("s4d", "diag");
    check_runtime(&dir, TEXT, 30, 2e-3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s4_dplr_decodes_as_one_forward() {
    let dir = checkpoint("s4-dplr", "dplr");
    check_runtime(&dir, TEXT, 70, 2e-3);
    let _ = std::fs::remove_dir_all(&dir);
}

fn find<'a>(t: &'a mut Tensors, name: &str) -> &'a mut (String, Vec<usize>, Vec<f32>) {
    t.iter_mut().find(|x| x.0 == name).unwrap_or_else(|| panic!("{name} not in the checkpoint"))
}

#[test]
fn c_tilde_for_a_short_kernel_gives_the_model_that_stores_c() {
    // The module stores C̃ = C·(I − Ā^L) for its l_kernel L and doubles L for longer inputs.
    // Store C̃ for L = 32 (from the f64 reference's bilinear Ā) and run 150 tokens, whose
    // kernel needs 256: the logits equal the same model storing C itself.
    let plain = tensors("dplr", 9);
    let mut tilde = plain.clone();
    let n = D_STATE / 2;
    for i in 0..2 {
        let k = format!("layers.{i}.layer.kernel");
        let get = |name: &str| plain.iter().find(|x| x.0 == format!("{k}.{name}")).unwrap().2.clone();
        let (inv_dt, a_re, a_im, b, c, p) =
            (get("inv_dt"), get("A_real"), get("A_imag"), get("B"), get("C"), get("P"));
        let cplx = |v: &[f32], j: usize| C64::new(v[2 * j] as f64, v[2 * j + 1] as f64);
        let mut out = Vec::new();
        for h in 0..D {
            let lam: Vec<C64> = (0..n)
                .map(|j| C64::new(-(a_re[h * n + j] as f64).exp(), -(a_im[h * n + j] as f64)))
                .collect();
            let pr: Vec<C64> = (0..n).map(|j| cplx(&p, h * n + j)).collect();
            let br: Vec<C64> = (0..n).map(|j| cplx(&b, h * n + j)).collect();
            let cr: Vec<C64> = (0..n).map(|j| cplx(&c, h * n + j)).collect();
            let (da, _) = dplr_dense((inv_dt[h] as f64).exp(), &lam, &[pr], &br);
            for v in c_tilde(&da, &cr, 32) {
                out.extend([v.re as f32, v.im as f32]);
            }
        }
        find(&mut tilde, &format!("{k}.C")).2 = out;
        tilde.push((format!("{k}.l_kernel"), vec![], vec![]));
    }
    let dir_plain = scratch("s4-plain");
    write_checkpoint(&dir_plain, &config("dplr"), &plain);
    let dir_tilde = scratch("s4-tilde");
    write_checkpoint_with_l_kernel(&dir_tilde, &config("dplr"), &tilde, 32);
    let text: Vec<u32> = ids(TEXT).iter().chain(ids(TEXT).iter()).copied().take(150).collect();
    for dev in crate::common::devices() {
        let run = |dir: &std::path::Path| {
            let m = linseq::model::load(dev, dir, linseq::DType::F32).unwrap();
            let mut s = m.new_state(dev, 1).unwrap();
            m.forward(dev, &text, &[text.len()], &mut s).unwrap()
        };
        let (a, b) = (run(&dir_plain), run(&dir_tilde));
        let e = max_abs(&a, &b);
        assert!(e < 1e-3, "C̃ for l_kernel 32 vs C: logits differ by {e}");
    }
    let _ = std::fs::remove_dir_all(&dir_plain);
    let _ = std::fs::remove_dir_all(&dir_tilde);
}

/// [`write_checkpoint`], with the empty tensors named `*.l_kernel` written as i64 scalars `l`.
fn write_checkpoint_with_l_kernel(dir: &std::path::Path, cfg: &str, t: &Tensors, l: i64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let scalar = l.to_le_bytes().to_vec();
    let bytes: Vec<Vec<u8>> = t
        .iter()
        .map(|(n, _, v)| {
            if n.ends_with("l_kernel") {
                scalar.clone()
            } else {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = t
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            let dtype =
                if n.ends_with("l_kernel") { safetensors::Dtype::I64 } else { safetensors::Dtype::F32 };
            (n.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn bad_s4_configs_and_tensors_are_refused() {
    let dev = &crate::common::devices()[0];
    for (key, want) in [
        (r#""mode": "dss""#, "block.mode `dss`"),
        (r#""disc": "euler""#, "euler"),
        (r#""init": "hippo-x""#, "block.init `hippo-x`"),
        (r#""final_act": "id""#, "final_act"),
        (r#""d_state": 15"#, "d_state 15"),
    ] {
        // A later duplicate key wins (the block's keys are written sorted, `transposed` last), so
        // each case overrides one field of the good config.
        let cfg =
            config("diag").replacen(r#""transposed":false"#, &format!(r#""transposed":false,{key}"#), 1);
        let e = S4Config::from_config(&Config::parse(&cfg, "test").unwrap()).unwrap_err().to_string();
        assert!(e.contains(want), "{key}: {e}");
    }
    let good = tensors("dplr", 3);
    check_spoiled_checkpoints_are_refused(
        "s4",
        &config("dplr"),
        &good,
        &[
            ("last dimension of 2", |t: &mut Tensors| {
                let b = t.iter_mut().find(|x| x.0 == "layers.0.layer.kernel.B").unwrap();
                b.1 = vec![1, D, D_STATE / 2 * 2, 1];
            }),
            ("layers.1.layer.kernel.P", |t: &mut Tensors| t.retain(|x| x.0 != "layers.1.layer.kernel.P")),
            ("not finite", |t: &mut Tensors| {
                t.iter_mut().find(|x| x.0 == "layers.0.layer.kernel.inv_dt").unwrap().2[3] = f32::NAN;
            }),
        ],
    );
    // l_kernel that is not a power of two cannot be the module's FFT length.
    let mut t = good.clone();
    t.push(("layers.0.layer.kernel.l_kernel".into(), vec![], vec![]));
    let dir = scratch("s4-bad-lkernel");
    write_checkpoint_with_l_kernel(&dir, &config("dplr"), &t, 100);
    let e = linseq::model::load(dev, &dir, linseq::DType::F32).err().expect("l_kernel 100").to_string();
    assert!(e.contains("l_kernel = 100"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bidirectional_s4_layer_sees_the_tokens_after_it() {
    // Bidirectional: C is [2, H, N, 2], forward then backward kernel. With the backward C at
    // zero the model is the causal one; with it, logits at a position depend on later tokens.
    for mode in ["diag", "dplr"] {
        let causal = tensors(mode, 13);
        let widen = |backward: f32| -> Tensors {
            let mut t = causal.clone();
            for i in 0..2 {
                let c = find(&mut t, &format!("layers.{i}.layer.kernel.C"));
                c.1[0] = 2;
                let fwd = c.2.clone();
                c.2.extend(fwd.iter().map(|v| v * backward));
            }
            t
        };
        let dirs = [
            ("causal", config(mode), causal.clone()),
            ("zero", config_with(mode, true), widen(0.0)),
            ("bidi", config_with(mode, true), widen(0.7)),
        ];
        let paths: Vec<std::path::PathBuf> = dirs
            .iter()
            .map(|(name, cfg, t)| {
                let dir = scratch(&format!("s4-{mode}-{name}"));
                write_checkpoint(&dir, cfg, t);
                dir
            })
            .collect();
        let text = ids(TEXT);
        let mut changed = text.clone();
        *changed.last_mut().unwrap() = b'!' as u32;
        for dev in crate::common::devices() {
            let load = |p: &std::path::Path| linseq::model::load(dev, p, linseq::DType::F32).unwrap();
            let run = |m: &linseq::model::Model, ids: &[u32], lens: &[usize]| {
                let mut s = m.new_state(dev, lens.len()).unwrap();
                m.forward(dev, ids, lens, &mut s).unwrap()
            };
            let (causal_m, zero_m, bidi_m) = (load(&paths[0]), load(&paths[1]), load(&paths[2]));
            let n = text.len();
            let e = max_abs(&run(&causal_m, &text, &[n]), &run(&zero_m, &text, &[n]));
            assert!(e < 1e-4, "{mode}: a zero backward kernel changed the logits by {e}");
            let (a, b) = (run(&bidi_m, &text, &[n]), run(&bidi_m, &changed, &[n]));
            assert!(max_abs(&a[..256], &b[..256]) > 1e-4, "{mode}: position 0 does not see the last token");
            // A ragged batch equals each sequence alone (no token sees past its own sequence).
            let both: Vec<u32> = text.iter().chain(&text[..9]).copied().collect();
            let batched = run(&bidi_m, &both, &[n, 9]);
            assert!(max_abs(&batched[..n * 256], &a) < 1e-4, "{mode}: ragged batch, first sequence");
            let alone = run(&bidi_m, &text[..9], &[9]);
            assert!(max_abs(&batched[n * 256..], &alone) < 1e-4, "{mode}: ragged batch, second sequence");
            // No recurrent view: continuing a state is refused with the reason.
            let mut s = bidi_m.new_state(dev, 1).unwrap();
            bidi_m.forward(dev, &text[..10], &[10], &mut s).unwrap();
            let e = bidi_m.forward(dev, &text[10..11], &[1], &mut s).unwrap_err().to_string();
            assert!(e.contains("bidirectional"), "{e}");
        }
        paths.iter().for_each(|p| {
            let _ = std::fs::remove_dir_all(p);
        });
    }
}

#[test]
fn a_long_s4_prefill_leaves_the_state_decode_continues() {
    // 600 tokens: the prefill's state comes from chunks of 256 combined (S4) or the parallel
    // sum (S4D); five decode steps after a 595-token prefill equal the full forward's logits.
    let text: Vec<u32> = ids(TEXT).iter().cycle().copied().take(600).collect();
    for mode in ["dplr", "diag"] {
        let dir = checkpoint(&format!("s4-long-{mode}"), mode);
        for dev in crate::common::devices() {
            let m = linseq::model::load(dev, &dir, linseq::DType::F32).unwrap();
            let mut s = m.new_state(dev, 1).unwrap();
            let full = m.forward(dev, &text, &[600], &mut s).unwrap();
            let mut s = m.new_state(dev, 1).unwrap();
            m.forward(dev, &text[..595], &[595], &mut s).unwrap();
            let mut stepped = Vec::new();
            for &id in &text[595..] {
                stepped.extend(m.forward(dev, &[id], &[1], &mut s).unwrap());
            }
            let e = max_abs(&full[595 * 256..], &stepped);
            assert!(e < 2e-3, "{mode}: decode after a long prefill differs by {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
