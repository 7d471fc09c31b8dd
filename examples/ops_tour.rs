//! A tour of the foundation: open a device, upload tensors, record a small block of ops into
//! one compute pass (RMSNorm → linear → gate → linear → residual), then sample a token.
//!
//! Run: `cargo run --release --example ops_tour` (LINSEQ_BACKEND=vulkan|gl|... to choose).

use linseq::ops::elementwise::{self, Binary};
use linseq::ops::sampling::{self, SamplingParams};
use linseq::ops::{matmul, norm, Recorder};
use linseq::testing::Rng;
use linseq::{DType, Device, Tensor};

fn main() -> linseq::Result<()> {
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let (d, hidden, vocab) = (64, 256, 100);
    let mut rng = Rng::new(0);
    let x = Tensor::from_slice(&dev, &[1, d], &rng.vec(d, -1.0, 1.0))?;
    let norm_w = Tensor::from_slice(&dev, &[d], &vec![1.0f32; d])?;
    // Weights in HF Linear layout (out_features, in_features), stored as f16.
    let w_in = Tensor::from_f32(&dev, &[2 * hidden, d], &rng.vec(2 * hidden * d, -0.1, 0.1), DType::F16)?;
    let w_out = Tensor::from_f32(&dev, &[d, hidden], &rng.vec(d * hidden, -0.1, 0.1), DType::F16)?;
    let lm_head = Tensor::from_f32(&dev, &[vocab, d], &rng.vec(vocab * d, -1.0, 1.0), DType::F16)?;

    let h = Tensor::empty(&dev, &[1, d], DType::F32)?;
    let up = Tensor::empty(&dev, &[1, 2 * hidden], DType::F32)?;
    let gated = Tensor::empty(&dev, &[1, hidden], DType::F32)?;
    let down = Tensor::empty(&dev, &[1, d], DType::F32)?;
    let logits = Tensor::empty(&dev, &[1, vocab], DType::F32)?;
    let token = Tensor::empty(&dev, &[1], DType::U32)?;

    // Split `up` into its two halves with aligned views (offsets must respect
    // min_storage_buffer_offset_alignment; `hidden` f32s is a multiple of it here).
    let (a, b) = (up.view(&dev, 0, &[1, hidden])?, up.view(&dev, hidden, &[1, hidden])?);

    let mut rec = Recorder::new(&dev);
    norm::rms_norm(&mut rec, &x, &norm_w, 1e-5, &h)?;
    matmul::linear(&mut rec, &h, &w_in, None, &up)?;
    elementwise::binary(&mut rec, Binary::MulSilu, &a, &b, &gated)?;
    matmul::linear(&mut rec, &gated, &w_out, None, &down)?;
    elementwise::residual_add(&mut rec, &down, &x, 1.0)?;
    matmul::linear(&mut rec, &down, &lm_head, None, &logits)?;
    let params = SamplingParams { temperature: 0.8, top_k: 20, top_p: 0.95, seed: 42 };
    sampling::sample(&mut rec, &logits, &params, 0, &token)?;
    println!("recorded {} dispatches into one compute pass", rec.len());
    rec.run()?;
    println!("sampled token id {}", token.read::<u32>(&dev)?[0]);
    Ok(())
}
