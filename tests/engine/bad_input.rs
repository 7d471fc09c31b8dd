//! Bad input, as a hostile user would give it: a table of malformed checkpoints, configs and
//! calls, each of which must be a clear `Error` (never a panic, an abort or silent garbage),
//! and a bounded mutation test of a small checkpoint's files.

use crate::common::devices;
use crate::models::{config, scratch, tensors, write_checkpoint, DI};
use linseq::model::{self, Model};
use linseq::ops::sampling::SamplingParams;
use linseq::testing::Rng;
use linseq::{DType, Error};
use std::path::Path;

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn load(dir: &Path) -> linseq::Result<Model> {
    model::load(&devices()[0], dir, DType::F32)
}

/// A config edit: the key and its new JSON value text (`None` removes the key).
fn edit(cfg: &str, key: &str, value: Option<&str>) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&cfg.replace("NaN", "null")).unwrap();
    match value {
        Some(text) => v[key] = serde_json::from_str(text).unwrap_or(serde_json::Value::String(text.into())),
        None => {
            v.as_object_mut().unwrap().remove(key);
        }
    }
    let text = serde_json::to_string(&v).unwrap();
    // serde_json cannot hold NaN: spell it as Python's json writes it.
    text.replace("\"__NaN__\"", "NaN")
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let mut rng = Rng::new(91);
    let good: Tensors = tensors(&mut rng);
    let cfg = config("mamba");
    let drop =
        |suffix: &str| -> Tensors { good.iter().filter(|t| !t.0.ends_with(suffix)).cloned().collect() };
    let reshape = |suffix: &str, shape: Vec<usize>| -> Tensors {
        good.iter()
            .map(
                |t| if t.0.ends_with(suffix) { (t.0.clone(), shape.clone(), t.2.clone()) } else { t.clone() },
            )
            .collect()
    };
    #[allow(clippy::type_complexity)]
    let table: Vec<(&str, String, Tensors, &str)> = vec![
        ("unknown model_type", config("transformer-xl"), good.clone(), "not supported"),
        ("missing tensor", cfg.clone(), drop("layers.1.mixer.D"), "missing"),
        ("wrong shape", cfg.clone(), reshape("layers.0.mixer.D", vec![DI / 2, 2]), "expected"),
        (
            "layers beyond every size",
            edit(&cfg, "num_hidden_layers", Some("1000000000000")),
            good.clone(),
            "implausibly large",
        ),
        (
            "fewer layers than stored",
            edit(&cfg, "num_hidden_layers", Some("1")),
            good.clone(),
            "num_hidden_layers is 1",
        ),
        (
            "more layers than stored",
            edit(&cfg, "num_hidden_layers", Some("3")),
            good.clone(),
            "num_hidden_layers is 3",
        ),
        (
            "negative epsilon",
            edit(&cfg, "layer_norm_epsilon", Some("-1e-5")),
            good.clone(),
            "layer_norm_epsilon",
        ),
        (
            "NaN epsilon",
            edit(&cfg, "layer_norm_epsilon", Some("__NaN__")),
            good.clone(),
            "layer_norm_epsilon",
        ),
        (
            "untied head without lm_head",
            edit(&cfg, "tie_word_embeddings", Some("false")),
            good.clone(),
            "lm_head.weight",
        ),
        ("no hidden_size", edit(&cfg, "hidden_size", None), good.clone(), "hidden_size"),
        ("hidden_size a string", edit(&cfg, "hidden_size", Some("\"wide\"")), good.clone(), "hidden_size"),
        ("negative state_size", edit(&cfg, "state_size", Some("-16")), good.clone(), "state_size"),
        ("conv kernel of 9", edit(&cfg, "conv_kernel", Some("9")), good.clone(), "conv_kernel"),
        ("config not JSON", "{\"model_type\": ".into(), good.clone(), "JSON"),
        ("config a list", "[1, 2]".into(), good.clone(), "object"),
    ];
    for (what, cfg, tensors, expect) in table {
        let dir = scratch(&format!("bad-{}", what.replace(' ', "-")));
        write_checkpoint(&dir, &cfg, &tensors);
        match load(&dir) {
            Ok(_) => panic!("{what}: loaded, expected an error containing {expect:?}"),
            Err(e) => assert!(e.to_string().contains(expect), "{what}: {e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Truncated and garbled safetensors files, each naming the file.
    let dir = scratch("bad-files");
    write_checkpoint(&dir, &cfg, &good);
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    for (what, data) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header only", bytes[..8].to_vec()),
        ("empty", Vec::new()),
        ("header length past the end", [u64::MAX.to_le_bytes().as_slice(), &bytes[8..]].concat()),
    ] {
        std::fs::write(&f, &data).unwrap();
        let e = load(&dir).err().unwrap_or_else(|| panic!("{what}: loaded"));
        assert!(e.to_string().contains("model.safetensors"), "{what}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_calls_are_clear_errors() {
    let dev = &devices()[0];
    let mut rng = Rng::new(92);
    let dir = scratch("bad-calls");
    write_checkpoint(&dir, &config("mamba"), &tensors(&mut rng));
    let m = load(&dir).unwrap();
    // A batch whose state exceeds every binding: refused before any host allocation.
    assert!(matches!(m.new_state(dev, 1_000_000_000), Err(Error::Limit(_))));
    assert!(m.new_state(dev, 0).is_err());
    let mut s = m.new_state(dev, 2).unwrap();
    // Lengths whose sum wraps.
    assert!(m.forward(dev, &[1; 7], &[usize::MAX, 7], &mut s).is_err());
    assert!(m.memory_plan(dev, &s, &[usize::MAX / 2 + 5, usize::MAX / 2 + 5]).is_err());
    // Ids outside the vocabulary.
    assert!(m.forward(dev, &[1, 999], &[1, 1], &mut s).is_err());
    // Sampling settings without meaning, or that would wrap on the GPU.
    let p = SamplingParams { temperature: 1e-45, ..SamplingParams::default() };
    assert!(p.validate().unwrap_err().to_string().contains("too small"));
    assert!(SamplingParams { temperature: f32::NAN, ..SamplingParams::default() }.validate().is_err());
    assert!(SamplingParams { top_p: 0.0, ..SamplingParams::default() }.validate().is_err());
    let wide = SamplingParams { top_k: 4_294_967_297, ..SamplingParams::default() };
    let logits: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin()).collect();
    // top_k beyond the vocabulary keeps every logit on the host, as 0 (off) does.
    let off = SamplingParams { top_k: 0, ..SamplingParams::default() };
    assert_eq!(model::sample(&logits, &wide, 3), model::sample(&logits, &off, 3));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_snapshot_of_another_model_is_refused_and_the_state_is_untouched() {
    let dev = &devices()[0];
    let mut rng = Rng::new(93);
    let (a_dir, b_dir) = (scratch("snap-a"), scratch("snap-b"));
    write_checkpoint(&a_dir, &config("mamba"), &tensors(&mut rng));
    // Same shapes, another configuration (epsilon): another model.
    write_checkpoint(&b_dir, &edit(&config("mamba"), "layer_norm_epsilon", Some("1e-6")), &tensors(&mut rng));
    let (a, b) = (load(&a_dir).unwrap(), load(&b_dir).unwrap());
    assert_ne!(a.identity(), b.identity());
    let mut sa = a.new_state(dev, 1).unwrap();
    a.forward(dev, &[1, 2, 3], &[3], &mut sa).unwrap();
    let before = sa.snapshot(dev).unwrap();
    let mut sb = b.new_state(dev, 1).unwrap();
    b.forward(dev, &[4, 5], &[2], &mut sb).unwrap();
    let foreign = sb.snapshot(dev).unwrap();
    let e = sa.restore(dev, &foreign).unwrap_err();
    assert!(e.to_string().contains("belongs to model"), "{e}");
    assert_eq!(sa.snapshot(dev).unwrap(), before);
    // A snapshot of the right model whose last tensor has the wrong shape: refused before
    // any tensor is written.
    let mut bad = before.clone();
    let last = bad.tensors.len() - 1;
    bad.tensors[0].2.iter_mut().for_each(|v| *v = 7.0);
    bad.tensors[last].1[0] = 2;
    assert!(sa.restore(dev, &bad).is_err());
    assert_eq!(sa.snapshot(dev).unwrap(), before);
    // The model identity survives a save and load.
    let file = a_dir.join("state.safetensors");
    before.save(&file).unwrap();
    assert_eq!(model::Snapshot::load(&file).unwrap(), before);
    for d in [a_dir, b_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn non_finite_weights_are_reported_not_sampled() {
    let dev = &devices()[0];
    let mut rng = Rng::new(94);
    let mut t = tensors(&mut rng);
    let i = t.iter().position(|x| x.0 == "backbone.norm_f.weight").unwrap();
    t[i].2[5] = f32::NAN;
    let dir = scratch("nonfinite");
    write_checkpoint(&dir, &config("mamba"), &t);
    let m = load(&dir).unwrap();
    for greedy in [true, false] {
        let mut s = m.new_state(dev, 1).unwrap();
        let last = m.prefill(dev, &[1, 2, 3], &[3], &mut s).unwrap();
        assert!(last.iter().any(|v| !v.is_finite()), "the NaN weight should reach the logits");
        let params =
            SamplingParams { temperature: if greedy { 0.0 } else { 0.8 }, ..SamplingParams::default() };
        let mut g = m.generator(dev, &mut s, &params, 4).unwrap();
        let e = g.generate(&[1], 4, 0).unwrap_err();
        assert!(matches!(e, Error::NonFinite(_)) && e.to_string().contains("step 0"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A few thousand random mutations of a small checkpoint's files: every load either succeeds
/// or returns an `Error`; none panics (an abort would end the test binary).
#[test]
fn mutated_checkpoints_load_or_fail_cleanly() {
    let mut rng = Rng::new(95);
    let dir = scratch("mutations");
    let good = tensors(&mut rng);
    write_checkpoint(&dir, &config("mamba"), &good);
    let st = std::fs::read(dir.join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let header = 8 + u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let mut outcomes = [0usize; 2]; // loaded, refused
    let mut panics = Vec::new();
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    for k in 0..3000 {
        let (mut st_k, mut cfg_k) = (st.clone(), cfg.clone());
        if k % 3 != 2 {
            // Bytes: mostly the header (lengths, names, shapes, offsets), sometimes the data.
            for _ in 0..1 + pick(4) {
                if st_k.is_empty() {
                    break;
                }
                let at = if pick(5) < 4 { pick(header.min(st_k.len())) } else { pick(st_k.len()) };
                match pick(4) {
                    0 => st_k[at] ^= 1 << pick(8),
                    1 => st_k[at] = pick(256) as u8,
                    2 => st_k.truncate(at),
                    _ => st_k.insert(at, b"0123456789[]{},:\""[pick(17)]),
                }
            }
        } else {
            // JSON: a value of one key replaced by a hostile one, or the text cut or garbled.
            let keys = [
                "hidden_size",
                "intermediate_size",
                "state_size",
                "time_step_rank",
                "conv_kernel",
                "num_hidden_layers",
                "vocab_size",
                "layer_norm_epsilon",
                "tie_word_embeddings",
                "model_type",
            ];
            let values = [
                "0",
                "-1",
                "1e300",
                "18446744073709551615",
                "4294967296",
                "NaN",
                "Infinity",
                "null",
                "true",
                "\"auto\"",
                "[]",
                "{}",
                "2",
                "3",
                "64",
                "0.5",
            ];
            match pick(3) {
                0 => {
                    cfg_k = edit(&cfg, keys[pick(keys.len())], Some(values[pick(values.len())]))
                        .replace("\"NaN\"", "NaN")
                }
                1 => cfg_k.truncate(pick(cfg.len())),
                _ => {
                    let mut b = cfg_k.into_bytes();
                    let at = pick(b.len());
                    b[at] = b"{}[]:,\"0e-"[pick(10)];
                    cfg_k = String::from_utf8_lossy(&b).into_owned();
                }
            }
        }
        std::fs::write(dir.join("model.safetensors"), &st_k).unwrap();
        std::fs::write(dir.join("config.json"), &cfg_k).unwrap();
        match std::panic::catch_unwind(|| load(&dir).map(|_| ())) {
            Ok(Ok(())) => outcomes[0] += 1,
            Ok(Err(_)) => outcomes[1] += 1,
            Err(_) => panics.push(k),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(panics.is_empty(), "loads panicked on mutations {panics:?}");
    assert!(outcomes[0] > 0 && outcomes[1] > 1000, "loaded / refused: {outcomes:?}");
}
