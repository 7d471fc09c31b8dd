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

#[test]
fn weights_upload_straight_to_the_device_dtype() {
    use linseq::model::weights::Weights;
    let dir = scratch("upload");
    std::fs::create_dir_all(&dir).unwrap();
    let vals = [1.0f32, -2.5, 0.333, 65504.0, 1e-3, 3.0];
    let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16b: Vec<u8> = vals.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let bf16b: Vec<u8> = vals.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    use safetensors::{tensor::TensorView, Dtype};
    let views = vec![
        ("a.f32".to_string(), TensorView::new(Dtype::F32, vec![2, 3], &f32b).unwrap()),
        ("a.f16".to_string(), TensorView::new(Dtype::F16, vec![2, 3], &f16b).unwrap()),
        ("a.bf16".to_string(), TensorView::new(Dtype::BF16, vec![2, 3], &bf16b).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let w = Weights::open(&dir).unwrap();
    let dev = &devices()[0];
    for (name, exact) in [
        ("a.f32", vals.to_vec()),
        ("a.f16", vals.map(|v| half::f16::from_f32(v).to_f32()).to_vec()),
        ("a.bf16", vals.map(|v| half::bf16::from_f32(v).to_f32()).to_vec()),
    ] {
        // As f32: the stored values exactly; as f16: those rounded to f16; any device shape of
        // the same element count.
        let t = w.upload(dev, name, &[2, 3], &[6], DType::F32).unwrap();
        assert_eq!(t.read_f32(dev).unwrap(), exact, "{name} as f32");
        let t = w.upload(dev, name, &[2, 3], &[3, 2], DType::F16).unwrap();
        let want: Vec<f32> = exact.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        assert_eq!(t.read_f32(dev).unwrap(), want, "{name} as f16");
        assert!(w.upload(dev, name, &[3, 2], &[6], DType::F32).unwrap_err().to_string().contains("expected"));
    }
    assert!(w.upload(dev, "absent", &[1], &[1], DType::F32).unwrap_err().to_string().contains("missing"));
    let _ = std::fs::remove_dir_all(&dir);
}
