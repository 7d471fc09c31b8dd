//! Checkpoint loading: malformed files and configs give clear errors.

#![allow(unused_imports)]
use super::*;
use crate::common::{devices, private_devices};
use linseq::model::{self, Model};

fn load_err(dir: &Path) -> String {
    match model::load(&devices()[0], dir, DType::F32) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_checkpoints_give_clear_errors() {
    let mut rng = Rng::new(62);
    let good = tensors(&mut rng);
    // Unknown architecture.
    let dir = scratch("unknown");
    write_checkpoint(&dir, &config("transformer-xl"), &good);
    let e = load_err(&dir);
    assert!(e.contains("transformer-xl") && e.contains("not supported"), "{e}");
    // Missing tensor.
    let dir = scratch("missing");
    let without: Vec<_> = good.iter().filter(|t| !t.0.ends_with("layers.1.mixer.D")).cloned().collect();
    write_checkpoint(&dir, &config("mamba"), &without);
    let e = load_err(&dir);
    assert!(e.contains("backbone.layers.1.mixer.D") && e.contains("missing"), "{e}");
    // Wrong shape.
    let dir = scratch("shape");
    let mut bad = good.clone();
    let i = bad.iter().position(|t| t.0.ends_with("layers.0.mixer.x_proj.weight")).unwrap();
    bad[i].1 = vec![DI, R + 2 * N];
    write_checkpoint(&dir, &config("mamba"), &bad);
    let e = load_err(&dir);
    assert!(e.contains("x_proj.weight") && e.contains("expected"), "{e}");
    // Truncated file.
    let dir = scratch("truncated");
    write_checkpoint(&dir, &config("mamba"), &good);
    let f = dir.join("model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len / 2).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors") && e.contains("truncated or malformed"), "{e}");
    // Broken config.
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"mamba\", ").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"mamba\"}").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("hidden_size"), "{e}");
    // No checkpoint at all.
    let e = load_err(&scratch("nothing"));
    assert!(e.contains("config.json"), "{e}");
    // Bad token ids and state mismatches are errors, not panics.
    let dir = scratch("ids");
    write_checkpoint(&dir, &config("mamba"), &good);
    let dev = &devices()[0];
    let m: Model = model::load(dev, &dir, DType::F32).unwrap();
    let mut s = m.new_state(dev, 1).unwrap();
    assert!(m.forward(dev, &[1, 2, 999], &[3], &mut s).is_err());
    assert!(m.forward(dev, &[1, 2], &[1, 1], &mut s).is_err());
    assert!(m.forward(dev, &[], &[0], &mut s).is_err());
    for name in ["unknown", "missing", "shape", "truncated", "ids"] {
        let _ = std::fs::remove_dir_all(scratch(name));
    }
}
