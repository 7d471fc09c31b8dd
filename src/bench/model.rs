//! Model benchmarks on random weights of real configurations ([`crate::model::random`]):
//! prefill tokens/s at batch 1 over a range of lengths (last-token logits, what generation
//! needs) and decode tokens/s at several batch sizes, twice: `decode` is the GPU-resident
//! greedy loop ([`crate::model::Generator`]: steps submitted back to back, token ids read once
//! at the end), `decode-sync` the recorded [`crate::model::Decoder`] with the logits read back
//! after every step. Times are wall clock around the whole call, uploads and readback included.
//! A decode row's "%copy" is its weight-streaming efficiency: weight bytes per step against
//! the copy roofline measured in the same run.

use super::{copy_roofline, row, BenchConfig, BenchRow, Stats, Work};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::{self, random};
use crate::tensor::DType;
use crate::testing::Rng;
use std::time::Instant;

/// Lengths and batch sizes of a model benchmark.
#[derive(Debug, Clone)]
pub struct ModelBench {
    pub prefill_lens: Vec<usize>,
    pub decode_batches: Vec<usize>,
    pub decode_steps: usize,
    /// Also print a per-op GPU profile of one decode step (timestamps after every dispatch).
    pub profile: bool,
}

impl ModelBench {
    /// Prefill at 1K–64K tokens, decode at batch 1 and 64 (16 and 64 tokens, batch 1 and 4,
    /// on --quick).
    pub fn new(cfg: BenchConfig) -> Self {
        if cfg.quick {
            Self { prefill_lens: vec![16, 64], decode_batches: vec![1, 4], decode_steps: 3, profile: false }
        } else {
            Self {
                prefill_lens: vec![1024, 4096, 16384, 65536],
                decode_batches: vec![1, 64],
                decode_steps: 100,
                profile: false,
            }
        }
    }
}

fn wall_stats(mut times: Vec<f64>) -> Stats {
    times.sort_by(f64::total_cmp);
    Stats { median: times[times.len() / 2], min: times[0], max: times[times.len() - 1], clock: "wall" }
}

/// Prints a per-op profile: node names with their layer index removed (`layers.7.in_proj` →
/// `in_proj`), each op's total GPU time over the step, its count and share, slowest first.
pub fn print_profile(title: &str, nodes: &[(String, f64)]) {
    let mut ops: Vec<(String, f64, usize)> = Vec::new();
    for (name, secs) in nodes {
        let op = match name.strip_prefix("layers.") {
            Some(rest) => rest.split_once('.').map_or(rest, |(_, op)| op).to_string(),
            None => name.clone(),
        };
        match ops.iter_mut().find(|o| o.0 == op) {
            Some(o) => {
                o.1 += secs;
                o.2 += 1;
            }
            None => ops.push((op, *secs, 1)),
        }
    }
    let total: f64 = ops.iter().map(|o| o.1).sum();
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("profile of one step, {title}: {:.1} µs on the GPU in {} nodes", total * 1e6, nodes.len());
    println!("{:<28} {:>10} {:>6} {:>10} {:>7}", "op", "total µs", "count", "µs each", "share");
    for (op, secs, n) in ops {
        println!(
            "{:<28} {:>10.1} {:>6} {:>10.2} {:>6.1}%",
            op,
            secs * 1e6,
            n,
            secs * 1e6 / n as f64,
            100.0 * secs / total.max(1e-30)
        );
    }
}

/// Benchmarks `preset` (see [`random::PRESETS`]) with weights held as `dtype`. The random
/// checkpoint is written to `dir` first unless it holds one already.
pub fn model(
    dev: &Device,
    cfg: BenchConfig,
    preset: &str,
    dtype: DType,
    dir: &std::path::Path,
    plan: &ModelBench,
) -> Result<Vec<BenchRow>> {
    let p = random::preset(preset)?;
    if !dir.join("model.safetensors").exists() {
        eprintln!("writing a random {preset} checkpoint to {}", dir.display());
        p.write(dir, 1)?;
    }
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let m = model::load(dev, dir, dtype)?;
    let params = m.parameters();
    let weight_bytes = (params * dtype.size()) as f64;
    let variant = format!("linseq.{preset}.{}", if dtype == DType::F16 { "f16" } else { "f32" });
    let mut rng = Rng::new(3);
    let vocab = m.vocab() as u64;
    let mut ids = |n: usize| -> Vec<u32> { (0..n).map(|_| (rng.next_u64() % vocab) as u32).collect() };
    let reps = if cfg.quick { 1 } else { 3 };
    for &len in &plan.prefill_lens {
        let prompt = ids(len);
        let mut times = Vec::new();
        let mut failed = None;
        for rep in 0..=reps {
            let mut state = m.new_state(dev, 1)?;
            let t0 = Instant::now();
            match m.prefill(dev, &prompt, &[len], &mut state) {
                Ok(_) if rep > 0 => times.push(t0.elapsed().as_secs_f64()), // rep 0 warms up
                Ok(_) => {}
                Err(e @ (Error::Limit(_) | Error::Shape(_) | Error::OutOfMemory(_))) => {
                    failed = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = failed {
            eprintln!("{variant} prefill L={len}: skipped, {e}");
            continue;
        }
        let stats = wall_stats(times);
        let flops = 2.0 * m.parameters_read(1) as f64 * len as f64;
        let mut r =
            row("prefill", &variant, format!("B=1 L={len}"), stats, Work { bytes: 0.0, flops }, roof, None);
        r.tokens_per_s = Some(len as f64 / stats.median);
        rows.push(r);
    }
    for &batch in &plan.decode_batches {
        let mut state = match m.new_state(dev, batch) {
            Ok(s) => s,
            Err(e @ (Error::Limit(_) | Error::OutOfMemory(_))) => {
                eprintln!("{variant} decode S={batch}: skipped, {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        m.prefill(dev, &ids(8 * batch), &vec![8; batch], &mut state)?;
        let mut dec = m.decoder(dev, &mut state)?;
        let mut step_ids = ids(batch);
        for _ in 0..5 {
            let logits = dec.step(&step_ids)?;
            step_ids = (0..batch)
                .map(|s| model::sample(&logits[s * m.vocab()..(s + 1) * m.vocab()], &Default::default(), 0))
                .collect();
        }
        let mut times = Vec::with_capacity(plan.decode_steps);
        for _ in 0..plan.decode_steps {
            let t0 = Instant::now();
            dec.step(&step_ids)?;
            times.push(t0.elapsed().as_secs_f64());
        }
        let sync = wall_stats(times);
        let mut gpu = Vec::with_capacity(plan.decode_steps);
        for _ in 0..plan.decode_steps.max(1) {
            gpu.push(dec.gpu_time()?);
        }
        let clock = if gpu.iter().all(|t| t.gpu_timestamps) { "gpu-timestamps" } else { "wall" };
        let mut gpu_stats = wall_stats(gpu.iter().map(|t| t.seconds).collect());
        gpu_stats.clock = clock;
        if plan.profile {
            match dec.profile() {
                Ok(p) => print_profile(&format!("{variant} decode S={batch}"), &p),
                Err(e) => eprintln!("{variant}: no profile, {e}"),
            }
        }
        drop(dec);
        // The GPU-resident loop: per-step time of whole generate calls (median of 5).
        let greedy = model::SamplingParams { temperature: 0.0, ..Default::default() };
        let mut gen = m.generator(dev, &mut state, &greedy, plan.decode_steps)?;
        gen.generate(&step_ids, plan.decode_steps.min(8), 0)?; // warm-up
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            gen.generate(&step_ids, plan.decode_steps, 0)?;
            times.push(t0.elapsed().as_secs_f64() / plan.decode_steps as f64);
        }
        let looped = wall_stats(times);
        // Each token's multiply-adds: every parameter but the experts it is not routed to.
        let flops = 2.0 * m.parameters_read(1) as f64 * batch as f64;
        for (case, stats, n) in [
            ("decode", looped, gen.dispatches()),
            ("decode-sync", sync, gen.dispatches() - 1),
            ("decode-gpu", gpu_stats, gen.dispatches() - 1),
        ] {
            let shape = format!("S={batch} ({n} dispatches)");
            // A mixture of experts reads only the experts the step routes to.
            let bytes = (m.parameters_read(batch) * dtype.size()) as f64;
            let mut r = row(case, &variant, shape, stats, Work { bytes, flops }, roof, None);
            r.tokens_per_s = Some(batch as f64 / stats.median);
            rows.push(r);
        }
    }
    eprintln!(
        "{variant}: {:.1}M parameters, {:.0} MB of weights; decode %copy = weight-streaming efficiency",
        params as f64 / 1e6,
        weight_bytes / 1e6
    );
    Ok(rows)
}
