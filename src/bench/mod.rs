//! GPU timing and the bandwidth roofline.
//!
//! Op benchmarks live in [`scan`] (selective scan and SSD), the scaling report's plot in
//! [`plot`]; `linseq tune` ([`crate::tune`]) runs the same measurements to pick variants.
//!
//! Each measurement records `inner` copies of the same dispatch into one compute pass (so
//! per-submit overhead is amortised), runs it `warmup` times, then `reps` times, and reports the
//! median/min/max per dispatch. Time comes from timestamp queries at the pass boundaries where
//! the adapter supports them, otherwise from wall clock around submit+wait (labelled `wall`).

use crate::device::Device;
use crate::error::Result;
use crate::ops::{self, matmul, Recorder, Recording};
use crate::tensor::{DType, Tensor};
use crate::testing::{compare, Rng};
use serde::Serialize;
use std::time::Instant;

pub mod attention;
pub mod delta_rule;
pub mod model;
pub mod plot;
pub mod s4;
pub mod scan;
pub use crate::ops::selective_scan::cases::ScanCase;
pub use crate::ops::ssd::cases::SsdCase;
pub use delta_rule::DeltaCase;
pub use scan::{selective_scan, selective_scan_step, ssd, ssd_step};

/// Timing statistics per dispatch, in seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// "gpu-timestamps" or "wall".
    pub clock: &'static str,
}

/// Runs a recorded batch until both `cfg.warmup` runs and `cfg.min_warmup_s` seconds have
/// passed (GPU clocks ramp up over milliseconds after idle; short warm-ups measured bimodal
/// GEMV times on the H200), then measures at least `cfg.reps` runs and `cfg.min_measure_s`
/// seconds, and returns per-dispatch statistics (the batch holds `inner` dispatches).
pub fn measure(rec: &Recording, inner: usize, cfg: BenchConfig) -> Result<Stats> {
    let t0 = Instant::now();
    let mut done = 0;
    while done < cfg.warmup || t0.elapsed().as_secs_f64() < cfg.min_warmup_s {
        rec.run_timed()?;
        done += 1;
    }
    let t1 = Instant::now();
    let mut times = Vec::new();
    let mut gpu = true;
    while times.len() < cfg.reps.max(1) || t1.elapsed().as_secs_f64() < cfg.min_measure_s {
        let t = rec.run_timed()?;
        gpu &= t.gpu_timestamps;
        times.push(t.seconds / inner as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(Stats {
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
        clock: if gpu { "gpu-timestamps" } else { "wall" },
    })
}

/// Which variants a benchmark runs: all, or those whose name contains one of a list of
/// patterns (`--variants tiled,solo`).
#[derive(Debug, Clone, Default)]
pub struct Variants(Option<Vec<String>>);

impl Variants {
    pub fn all() -> Self {
        Self(None)
    }

    /// `all`, or a comma-separated list of name patterns.
    pub fn parse(spec: &str) -> Self {
        let list: Vec<String> =
            spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        if list.is_empty() || list.iter().any(|s| s == "all") {
            Self(None)
        } else {
            Self(Some(list))
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|l| l.iter().any(|p| name.contains(p.as_str())))
    }
}

/// One row of a benchmark report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub case: String,
    pub variant: String,
    pub shape: String,
    pub stats: Stats,
    pub bytes: f64,
    pub flops: f64,
    pub gb_per_s: f64,
    pub tflop_per_s: f64,
    /// Effective bandwidth as a percentage of the copy roofline measured in the same run.
    pub pct_of_copy: f64,
    /// Whether sampled outputs agree with the f64 reference (None: not checked).
    pub agrees: Option<bool>,
    /// Tokens per second (model benchmarks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
}

/// Sizes and repetition counts of a run.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    /// Small sizes for smoke runs on software adapters.
    pub quick: bool,
    pub warmup: usize,
    pub reps: usize,
    /// Minimum warm-up time in seconds.
    pub min_warmup_s: f64,
    /// Minimum measuring time in seconds.
    pub min_measure_s: f64,
}

impl BenchConfig {
    pub fn full() -> Self {
        Self { quick: false, warmup: 3, reps: 10, min_warmup_s: 0.3, min_measure_s: 0.2 }
    }
    pub fn quick() -> Self {
        Self { quick: true, warmup: 1, reps: 3, min_warmup_s: 0.0, min_measure_s: 0.0 }
    }
}

/// Work done by one dispatch: bytes moved and floating-point operations.
pub(crate) struct Work {
    pub(crate) bytes: f64,
    pub(crate) flops: f64,
}

pub(crate) fn row(
    case: &str,
    variant: &str,
    shape: String,
    stats: Stats,
    work: Work,
    roofline: f64,
    agrees: Option<bool>,
) -> BenchRow {
    let Work { bytes, flops } = work;
    let gbs = bytes / stats.median / 1e9;
    BenchRow {
        case: case.into(),
        variant: variant.into(),
        shape,
        stats,
        bytes,
        flops,
        gb_per_s: gbs,
        tflop_per_s: flops / stats.median / 1e12,
        pct_of_copy: if roofline > 0.0 { 100.0 * gbs / roofline } else { 0.0 },
        agrees,
        tokens_per_s: None,
    }
}

/// Measures the copy roofline: `bytes` read + `bytes` written per copy.
pub fn copy_roofline(dev: &Device, cfg: BenchConfig) -> Result<BenchRow> {
    let n = if cfg.quick { 1 << 20 } else { 256 << 20 } / 4; // f32 elements (1 MiB / 256 MiB)
    let src = Tensor::from_slice(dev, &[n], &vec![1.0f32; n])?;
    let dst = Tensor::empty(dev, &[n], DType::F32)?;
    let inner = if cfg.quick { 4 } else { 20 };
    let mut rec = Recorder::new(dev);
    for _ in 0..inner {
        ops::copy::copy(&mut rec, &src, &dst)?;
    }
    let rec = rec.finish();
    let stats = measure(&rec, inner, cfg)?;
    let bytes = 2.0 * (n * 4) as f64;
    let ok = dst.read::<f32>(dev)?.iter().all(|&v| v == 1.0);
    Ok(row(
        "copy",
        "copy.vec4",
        format!("{} MiB", (n * 4) >> 20),
        stats,
        Work { bytes, flops: 0.0 },
        0.0,
        Some(ok),
    ))
}

/// Host copies and device tensors of one linear-layer problem, shared by every variant that
/// runs on it, so variants are compared on the same buffers (same placement in memory).
pub struct LinearInputs {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    xdt: DType,
    wdt: DType,
    xs: Vec<f32>,
    ws: Vec<f32>,
    x: Tensor,
    w: Tensor,
}

impl LinearInputs {
    /// Random x (M, K) and W (N, K) in the given dtypes; host copies hold the rounded values
    /// the GPU reads, so the reference sees the same inputs.
    pub fn new(dev: &Device, m: usize, n: usize, k: usize, xdt: DType, wdt: DType) -> Result<Self> {
        let mut rng = Rng::new(7);
        let round = |v: Vec<f32>, dt: DType| -> Vec<f32> {
            if dt == DType::F16 {
                v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect()
            } else {
                v
            }
        };
        let xs = round(rng.vec(m * k, -1.0, 1.0), xdt);
        let ws = round(rng.vec(n * k, -1.0, 1.0), wdt);
        let x = Tensor::from_f32(dev, &[m, k], &xs, xdt)?;
        let w = Tensor::from_f32(dev, &[n, k], &ws, wdt)?;
        Ok(Self { m, n, k, xdt, wdt, xs, ws, x, w })
    }
}

/// The (x dtype, W dtype) a matmul variant takes.
pub fn linear_dtypes(v: &crate::shader::Variant) -> (DType, DType) {
    let xdt = if v.entry == "gemm_coop" { DType::F16 } else { DType::F32 };
    let wdt = if v.defines.contains_key("W_F32") { DType::F32 } else { DType::F16 };
    (xdt, wdt)
}

/// Benchmarks one linear-layer variant on prepared inputs. Agreement is checked on a few
/// sampled rows against the f64 reference.
pub fn bench_linear(
    dev: &Device,
    variant: &str,
    inputs: &LinearInputs,
    cfg: BenchConfig,
    roofline: f64,
) -> Result<BenchRow> {
    let v = crate::ops::find(variant)?;
    let LinearInputs { m, n, k, xdt, wdt, ref xs, ref ws, ref x, ref w } = *inputs;
    if linear_dtypes(&v) != (xdt, wdt) {
        return Err(crate::Error::Invalid(format!("{variant} does not take {xdt:?} x and {wdt:?} W")));
    }
    let y = Tensor::empty(dev, &[m, n], DType::F32)?;
    let inner = if cfg.quick {
        1
    } else if m <= matmul::GEMV_MAX_M {
        20
    } else {
        3
    };
    let mut rec = Recorder::new(dev);
    for _ in 0..inner {
        matmul::linear_using(&mut rec, &v, x, w, None, &y)?;
    }
    let rec = rec.finish();
    let stats = measure(&rec, inner, cfg)?;
    let got = y.read::<f32>(dev)?;
    let rows: Vec<usize> = [0, m / 2, m - 1].into_iter().collect();
    let mut ok = true;
    for &r in &rows {
        let want = matmul::linear_ref(&xs[r * k..(r + 1) * k], ws, None, 1, n, k);
        let c = compare(&got[r * n..(r + 1) * n], &want);
        let scale = (k as f64).sqrt();
        ok &= c.nonfinite_mismatches == 0 && c.nmse < 1e-5 && c.max_abs < 1e-2 * scale;
    }
    let bytes = (m * k * xdt.size() + n * k * wdt.size() + m * n * 4) as f64;
    let flops = 2.0 * (m * n * k) as f64;
    Ok(row("linear", variant, format!("M={m} N={n} K={k}"), stats, Work { bytes, flops }, roofline, Some(ok)))
}

/// The foundation's benchmark set: copy roofline, GEMV and GEMM variants.
pub fn run_core(dev: &Device, cfg: BenchConfig, variants: &Variants) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let (gv, gm) = if cfg.quick { (512, 128) } else { (8192, 4096) };
    let caps = dev.caps().clone();
    let mut cases: Vec<(&str, usize, usize, usize)> = Vec::new();
    for v in [
        "matmul.gemv.f16",
        "matmul.gemv.f16.sg",
        "matmul.gemv.f16n",
        "matmul.gemv.f16n.sg",
        "matmul.gemv.f32",
        "matmul.gemv.f32.sg",
    ] {
        cases.push((v, 1, gv, gv));
    }
    for v in [
        "matmul.gemm.t128.f32",
        "matmul.gemm.t64.f32",
        "matmul.gemm.t128.f16",
        "matmul.gemm.t128.f16n",
        "matmul.gemm_coop.f16",
        "matmul.gemm_coop.f16.m64",
    ] {
        cases.push((v, gm, gm, gm));
    }
    // Batched decode: Mamba-1.4B's in_proj (N 8192, K 2048) at 64 and 128 sequences.
    let (bn, bk) = if cfg.quick { (256, 128) } else { (8192, 2048) };
    for m in [64, 128] {
        for v in [
            "matmul.skinny.f16n",
            "matmul.gemm.t64.f16n",
            "matmul.gemm.t128.f16n",
            "matmul.gemm_coop.f16.m64",
        ] {
            cases.push((v, m, bn, bk));
        }
    }
    let mut inputs = std::collections::HashMap::new();
    for (name, m, n, k) in cases {
        if !variants.matches(name) {
            continue;
        }
        let v = crate::ops::find(name)?;
        if !v.supported(&caps) {
            log::info!("skipping {name}: needs {}", v.requires.describe());
            continue;
        }
        let (xdt, wdt) = linear_dtypes(&v);
        let key = (m, n, k, xdt, wdt);
        if !inputs.contains_key(&key) {
            inputs.clear(); // keep one problem resident at a time
            inputs.insert(key, LinearInputs::new(dev, m, n, k, xdt, wdt)?);
        }
        rows.push(bench_linear(dev, name, &inputs[&key], cfg, roof)?);
    }
    rows.extend(coop_probes(dev, cfg, variants)?);
    Ok(rows)
}

/// The cooperative-matrix probes (where the adapter has 16×16×16 f16 tiles): the tensor-core
/// rate with operands from registers, workgroup memory and storage. No agreement to check:
/// they compute nothing of use, on purpose.
pub fn coop_probes(dev: &Device, cfg: BenchConfig, variants: &Variants) -> Result<Vec<BenchRow>> {
    use matmul::CoopProbe;
    let mut rows = Vec::new();
    if !dev.caps().coop_f16_16x16_f32() {
        return Ok(rows);
    }
    let (workgroups, iters) = if cfg.quick { (8, 64) } else { (2048, 4096) };
    let x = Tensor::from_f32(dev, &[64, 64], &Rng::new(3).vec(4096, -0.01, 0.01), DType::F16)?;
    let y = Tensor::empty(dev, &[workgroups], DType::F32)?;
    for probe in CoopProbe::ALL {
        let name = probe.name;
        if !variants.matches(name) {
            continue;
        }
        let mut rec = Recorder::new(dev);
        matmul::coop_probe(&mut rec, probe, &x, &y, workgroups, iters)?;
        let stats = measure(&rec.finish(), 1, cfg)?;
        let work = Work { bytes: 0.0, flops: CoopProbe::flops(workgroups, iters) };
        let shape = format!("{workgroups} workgroups × {iters} steps");
        rows.push(row("coop-probe", name, shape, stats, work, 0.0, None));
    }
    Ok(rows)
}

/// Renders rows as an aligned text table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<8} {:<24} {:<22} {:>11} {:>11} {:>11} {:>9} {:>9} {:>7} {:>6} {}\n",
        "case",
        "variant",
        "shape",
        "median µs",
        "min µs",
        "max µs",
        "GB/s",
        "TFLOP/s",
        "%copy",
        "ok",
        "clock"
    );
    for r in rows {
        s += &format!(
            "{:<8} {:<24} {:<22} {:>11.2} {:>11.2} {:>11.2} {:>9.1} {:>9.2} {:>7.1} {:>6} {}\n",
            r.case,
            r.variant,
            r.shape,
            r.stats.median * 1e6,
            r.stats.min * 1e6,
            r.stats.max * 1e6,
            r.gb_per_s,
            r.tflop_per_s,
            r.pct_of_copy,
            r.agrees.map_or("-", |a| if a { "yes" } else { "NO" }),
            r.stats.clock
        );
        if let Some(tps) = r.tokens_per_s {
            s += &format!("         {tps:.0} tokens/s\n");
        }
    }
    s
}

/// CPU and GPU cost of replaying a decode step.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeReplayStats {
    /// "greedy" (argmax) or "top-k 40, top-p 0.95, T 0.8".
    pub sampling: &'static str,
    pub layers: usize,
    pub d_model: usize,
    pub vocab: usize,
    pub dispatches: usize,
    /// Median CPU time of encoding the recorded step into one pass and submitting it.
    pub encode_submit_us: f64,
    /// Median GPU time of one step (pass timestamps; wall clock without them).
    pub gpu_us: f64,
    pub clock: &'static str,
    /// Median wall time of submit + wait for one step.
    pub step_wall_us: f64,
    /// GPU objects created and submits made per step after the first.
    pub buffers_per_step: f64,
    pub bind_groups_per_step: f64,
    pub submits_per_step: f64,
}

/// Replays a decode step of a synthetic gated stack (one token, `layers` blocks of RMSNorm →
/// two in-projections → gate → out-projection → residual, then RMSNorm, an f16 LM head and
/// sampling) and measures its CPU and GPU cost.
pub fn decode_replay(
    dev: &Device,
    layers: usize,
    d_model: usize,
    vocab: usize,
    steps: usize,
    greedy: bool,
) -> Result<DecodeReplayStats> {
    use crate::graph::synthetic::{mamba_stack, MixerKind, SyntheticConfig};
    use crate::graph::{Executable, PlanOptions, Role};
    let cfg = SyntheticConfig { mixer: MixerKind::GateOnly, ..SyntheticConfig::mamba(layers, d_model, 1, 1) };
    let (mut g, hidden) = mamba_stack(&cfg)?;
    let head = g.weight("lm_head", &[vocab, d_model], DType::F16);
    let logits = g.linear(hidden, head, None)?;
    let temperature = if greedy { 0.0 } else { 0.8 };
    let params = crate::ops::sampling::SamplingParams { temperature, top_k: 40, top_p: 0.95, seed: 1 };
    let ids = g.sample(logits, params)?;
    g.output(ids);
    let exe = Executable::new(dev, g.clone(), &PlanOptions::for_device(dev.caps()))?;
    let mut rng = Rng::new(5);
    for t in g.tensors().iter().filter(|t| t.role != Role::Activation) {
        let n: usize = t.shape.iter().product();
        exe.write_f32(&t.name, &rng.vec(n, -0.05, 0.05))?;
    }
    for _ in 0..10 {
        exe.run()?;
    }
    let before = dev.counters();
    let (mut cpu, mut wall) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    for step in 0..steps {
        exe.set_sampling_step(step as u32)?;
        let t0 = Instant::now();
        exe.submit()?;
        cpu.push(t0.elapsed().as_secs_f64());
        dev.wait()?;
        wall.push(t0.elapsed().as_secs_f64());
    }
    let after = dev.counters();
    let mut gpu = Vec::with_capacity(steps.min(50));
    let mut clock = "gpu-timestamps";
    for _ in 0..steps.min(50) {
        let t = exe.run_timed()?;
        if !t.gpu_timestamps {
            clock = "wall";
        }
        gpu.push(t.seconds);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e6
    };
    let per = |a: u64, b: u64| (a - b) as f64 / steps as f64;
    Ok(DecodeReplayStats {
        sampling: if greedy { "greedy" } else { "top-k 40, top-p 0.95, T 0.8" },
        layers,
        d_model,
        vocab,
        dispatches: exe.dispatches(),
        encode_submit_us: median(&mut cpu),
        gpu_us: median(&mut gpu),
        clock,
        step_wall_us: median(&mut wall),
        buffers_per_step: per(after.buffers, before.buffers),
        bind_groups_per_step: per(after.bind_groups, before.bind_groups),
        submits_per_step: per(after.submits, before.submits),
    })
}
