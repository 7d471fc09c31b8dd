//! GPU timing and the bandwidth roofline.
//!
//! Each measurement records `inner` copies of the same dispatch into one compute pass (so
//! per-submit overhead is amortised), runs it `warmup` times, then `reps` times, and reports the
//! median/min/max per dispatch. Time comes from timestamp queries at the pass boundaries where
//! the adapter supports them, otherwise from wall clock around submit+wait (labelled `wall`).

use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::{self, matmul, Recorder, Recording};
use crate::tensor::{DType, Tensor};
use crate::testing::{compare, Rng};
use serde::Serialize;
use std::time::Instant;

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
struct Work {
    bytes: f64,
    flops: f64,
}

fn row(
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
    let v = crate::shader::find(variant)?;
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
pub fn run_core(dev: &Device, cfg: BenchConfig, filter: Option<&str>) -> Result<Vec<BenchRow>> {
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
    let mut inputs = std::collections::HashMap::new();
    for (name, m, n, k) in cases {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let v = crate::shader::find(name)?;
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

/// Selective-scan benchmark: every kernel on batch × d × L (N = 16), plus the decode step.
/// Channel rows repeat one random row per tensor (timing does not depend on the values; the
/// agreement check recomputes sampled channels in f64). Shapes whose tensors exceed the
/// device's binding limit are reported and skipped.
pub fn selective_scan(
    dev: &Device,
    cfg: BenchConfig,
    filter: Option<&str>,
    shape_filter: Option<&str>,
) -> Result<Vec<BenchRow>> {
    let skip_shape = |s: &str| shape_filter.is_some_and(|f| !s.contains(f));
    use crate::ops::selective_scan::{self as ss, ScanArgs, ScanFlags, ScanKernel, ScanRef, Sequences};
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let n = 16;
    let (batch, dims, lens): (usize, Vec<usize>, Vec<usize>) = if cfg.quick {
        (2, vec![64], vec![1024])
    } else {
        (8, vec![1536, 2048, 5120], vec![2048, 4096, 8192, 16384, 32768, 65536])
    };
    let max_bind = dev.caps().max_storage_buffer_binding_size.min(dev.caps().max_buffer_size);
    let flags = ScanFlags {
        delta_softplus: true,
        delta_bias: true,
        d_skip: true,
        neg_eigen: false,
        init_state: false,
    };
    let mut rng = Rng::new(11);
    for &dim in &dims {
        for &l in &lens {
            let shape = format!("B={batch} d={dim} L={l} N={n}");
            if skip_shape(&shape) {
                continue;
            }
            let t = batch * l;
            if (dim * t * 4) as u64 > max_bind {
                eprintln!("selective-scan d={dim} L={l} batch={batch}: [T, D] tensors need {} MiB, over this device's {} MiB binding limit; skipped", (dim * t * 4) >> 20, max_bind >> 20);
                continue;
            }
            let row_u = rng.vec(t, -1.0, 1.0);
            let row_dt = rng.vec(t, -3.0, 1.0);
            let row_z = rng.vec(t, -2.0, 2.0);
            let bc_host = rng.vec(2 * n * t, -1.0, 1.0);
            let tile = |row: &[f32]| -> Result<Tensor> {
                // Token-major: every channel of token t holds row[t].
                let v: Vec<f32> = row.iter().flat_map(|&x| std::iter::repeat_n(x, dim)).collect();
                Tensor::from_slice(dev, &[t, dim], &v)
            };
            let u = tile(&row_u)?;
            let delta = tile(&row_dt)?;
            let z = tile(&row_z)?;
            let bc = Tensor::from_slice(dev, &[t, 2, 1, n], &bc_host)?;
            let a: Vec<f32> = rng.vec(dim * n, -2.0, -0.1);
            let dsk = rng.vec(dim, -1.0, 1.0);
            let bias = rng.vec(dim, -1.0, 0.5);
            let chan_host = ss::pack_channel_params(&a, Some(&dsk), Some(&bias), dim, n);
            let chan = Tensor::from_slice(dev, &[dim, n + 2], &chan_host)?;
            let seqs = Sequences::new(dev, &vec![l; batch], None)?;
            let state = Tensor::empty(dev, &[batch, dim, n], DType::F32)?;
            let y = Tensor::empty(dev, &[t, dim], DType::F32)?;
            let args = ScanArgs {
                u: &u,
                delta: &delta,
                bc: &bc,
                z: Some(&z),
                chan: &chan,
                seqs: &seqs,
                state: &state,
                groups: 1,
                flags,
            };
            // Bytes each input and output counted once.
            let bytes = (4 * dim * t * 4 + 2 * n * t * 4 + batch * dim * n * 4 + chan_host.len() * 4) as f64;
            for kernel in ScanKernel::ALL {
                let v = kernel.variant();
                if !kernel.runs(dev.caps(), ss::ScanShape::new(dim, n, 1))
                    || filter.is_some_and(|f| !v.name.contains(f))
                {
                    continue;
                }
                let mut rec = Recorder::new(dev);
                ss::selective_scan(&mut rec, kernel, &args, &y)?;
                let rec = rec.finish();
                let stats = measure(&rec, 1, cfg)?;
                // Agreement on two sampled channels.
                let got = y.read::<f32>(dev)?;
                let mut ok = true;
                for d in [0, dim - 1] {
                    let (want, _) = ss::selective_scan_ref(&ScanRef {
                        u: &row_u,
                        delta: &row_dt,
                        bc: &bc_host,
                        z: Some(&row_z),
                        chan: &chan_host[d * (n + 2)..(d + 1) * (n + 2)],
                        cu: seqs.cu_seqlens(),
                        resets: None,
                        state: &vec![0.0; batch * n],
                        dim: 1,
                        n,
                        groups: 1,
                        flags,
                    });
                    let col: Vec<f32> = (0..t).map(|i| got[i * dim + d]).collect();
                    let c = compare(&col, &want);
                    ok &= c.nonfinite_mismatches == 0 && c.nmse <= 1e-7;
                }
                rows.push(row(
                    "scan",
                    &v.name,
                    shape.clone(),
                    stats,
                    Work { bytes, flops: 0.0 },
                    roof,
                    Some(ok),
                ));
            }
        }
    }
    // Decode step: one token for each of `batch` sequences.
    for &dim in &dims {
        let s = if cfg.quick { 2 } else { 64 };
        let shape = format!("S={s} d={dim} N={n}");
        if skip_shape(&shape) {
            continue;
        }
        let mk = |shape: &[usize]| Tensor::from_slice(dev, shape, &vec![0.5f32; shape.iter().product()]);
        let (u, delta, z, y) = (mk(&[s, dim])?, mk(&[s, dim])?, mk(&[s, dim])?, mk(&[s, dim])?);
        let bc = mk(&[s, 2, 1, n])?;
        let chan = Tensor::from_slice(
            dev,
            &[dim, n + 2],
            &ss::pack_channel_params(&vec![-1.0; dim * n], None, None, dim, n),
        )?;
        let state = mk(&[s, dim, n])?;
        let seqs = Sequences::decode(dev, s, None)?;
        let args = ScanArgs {
            u: &u,
            delta: &delta,
            bc: &bc,
            z: Some(&z),
            chan: &chan,
            seqs: &seqs,
            state: &state,
            groups: 1,
            flags,
        };
        let inner = if cfg.quick { 2 } else { 100 };
        let mut rec = Recorder::new(dev);
        for _ in 0..inner {
            ss::selective_scan_step(&mut rec, &args, &y)?;
        }
        let rec = rec.finish();
        let stats = measure(&rec, inner, cfg)?;
        let bytes = (4 * dim * s * 4 + 2 * n * s * 4 + 2 * s * dim * n * 4) as f64;
        rows.push(row(
            "scan-step",
            "selective_scan.step",
            shape,
            stats,
            Work { bytes, flops: 0.0 },
            roof,
            None,
        ));
    }
    Ok(rows)
}

/// SSD benchmark: every kernel on fla's `chunk_simple_gla` comparison shape (B 8, T 4096,
/// H 16, K = V = 128: heads 16, P 128, N 128, groups 16) and on Mamba-2-130M's layer shape
/// (heads 24, P 64, N 128, groups 1) at L = 4K and 16K, plus the decode step at batch 1 and 64.
/// Agreement: the first sequence against the f64 recurrence (relative RMSE ≤ 1e-3).
pub fn ssd(
    dev: &Device,
    cfg: BenchConfig,
    filter: Option<&str>,
    shape_filter: Option<&str>,
) -> Result<Vec<BenchRow>> {
    use crate::ops::selective_scan::Sequences;
    use crate::ops::ssd::{self as sd, SsdArgs, SsdDims, SsdFlags, SsdKernel, SsdRef};
    let skip_shape = |s: &str| shape_filter.is_some_and(|f| !s.contains(f));
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let shapes: Vec<(usize, usize, SsdDims)> = if cfg.quick {
        vec![(2, 200, SsdDims { heads: 4, head_dim: 16, groups: 2, n: 16 })]
    } else {
        vec![
            (8, 4096, SsdDims { heads: 16, head_dim: 128, groups: 16, n: 128 }),
            (8, 4096, SsdDims { heads: 24, head_dim: 64, groups: 1, n: 128 }),
            (8, 16384, SsdDims { heads: 24, head_dim: 64, groups: 1, n: 128 }),
        ]
    };
    let flags = SsdFlags::default();
    let mut rng = Rng::new(21);
    for &(batch, l, d) in &shapes {
        let shape = format!("B={batch} L={l} H={} P={} N={} G={}", d.heads, d.head_dim, d.n, d.groups);
        if skip_shape(&shape) {
            continue;
        }
        let t = batch * l;
        let xbc_host = rng.vec(t * d.width(), -1.0, 1.0);
        let dt_host = rng.vec(t * d.heads, -4.0, 0.0);
        let a = rng.vec(d.heads, -4.0, -0.5);
        let heads_host =
            sd::pack_head_params(&a, Some(&rng.vec(d.heads, -1.0, 1.0)), Some(&vec![0.0; d.heads]));
        let xbc = Tensor::from_slice(dev, &[t, d.width()], &xbc_host)?;
        let dt = Tensor::from_slice(dev, &[t, d.heads], &dt_host)?;
        let heads = Tensor::from_slice(dev, &[d.heads, 4], &heads_host)?;
        let seqs = Sequences::new(dev, &vec![l; batch], None)?;
        let state = Tensor::empty(dev, &[batch, d.heads, d.head_dim, d.n], DType::F32)?;
        let y = Tensor::empty(dev, &[t, d.heads * d.head_dim], DType::F32)?;
        let args = SsdArgs { xbc: &xbc, dt: &dt, heads: &heads, seqs: &seqs, state: &state, dims: d, flags };
        let hp = d.heads * d.head_dim;
        let bytes = ((t * d.width() + t * d.heads + t * hp + batch * hp * d.n) * 4) as f64;
        // The first sequence's f64 reference, once per shape.
        let want = sd::ssd_ref(&SsdRef {
            xbc: &xbc_host[..l * d.width()],
            dt: &dt_host[..l * d.heads],
            heads: &heads_host,
            cu: &[0, l],
            resets: None,
            state: &[],
            dims: d,
            flags,
        })
        .0;
        for kernel in SsdKernel::ALL {
            let name = kernel.name();
            if filter.is_some_and(|f| !name.contains(f)) {
                continue;
            }
            let mut rec = Recorder::new(dev);
            match sd::ssd(&mut rec, kernel, &args, &y) {
                Err(Error::Limit(why)) => {
                    eprintln!("{name} {shape}: skipped, {why}");
                    continue;
                }
                r => r?,
            }
            let rec = rec.finish();
            let stats = measure(&rec, 1, cfg)?;
            let got = y.read::<f32>(dev)?;
            let c = compare(&got[..l * hp], &want);
            let ok = c.nonfinite_mismatches == 0 && c.nmse.sqrt() <= 1e-3; // relative RMSE
            let per_token = match kernel {
                SsdKernel::Sequential => 4 * d.head_dim * d.n,
                SsdKernel::Chunked(cs) => 4 * d.head_dim * d.n + cs * (d.n + d.head_dim),
            };
            let flops = (t * d.heads * per_token) as f64;
            rows.push(row("ssd", &name, shape.clone(), stats, Work { bytes, flops }, roof, Some(ok)));
            // Where the chunked path's time goes: each dispatch timed alone.
            if kernel == SsdKernel::Chunked(64) {
                for (stage, bit) in sd::STAGES {
                    let mut rec = Recorder::new(dev);
                    sd::record_chunked(&mut rec, &args, &y, 64, bit)?;
                    let stats = measure(&rec.finish(), 1, cfg)?;
                    let what = format!("{name}/{stage}");
                    rows.push(row(
                        "ssd-stage",
                        &what,
                        shape.clone(),
                        stats,
                        Work { bytes: 0.0, flops: 0.0 },
                        roof,
                        None,
                    ));
                }
            }
        }
    }
    // Decode step on Mamba-2-130M's layer shape.
    let d = if cfg.quick {
        SsdDims { heads: 4, head_dim: 16, groups: 1, n: 16 }
    } else {
        SsdDims { heads: 24, head_dim: 64, groups: 1, n: 128 }
    };
    for s in [1usize, 64] {
        let shape = format!("S={s} H={} P={} N={}", d.heads, d.head_dim, d.n);
        if skip_shape(&shape) || filter.is_some_and(|f| !"ssd.step".contains(f)) {
            continue;
        }
        let mk = |shape: &[usize]| Tensor::from_slice(dev, shape, &vec![0.25f32; shape.iter().product()]);
        let (xbc, dt, y) = (mk(&[s, d.width()])?, mk(&[s, d.heads])?, mk(&[s, d.heads * d.head_dim])?);
        let heads =
            Tensor::from_slice(dev, &[d.heads, 4], &sd::pack_head_params(&vec![-1.0; d.heads], None, None))?;
        let state = mk(&[s, d.heads, d.head_dim, d.n])?;
        let seqs = Sequences::decode(dev, s, None)?;
        let args = SsdArgs { xbc: &xbc, dt: &dt, heads: &heads, seqs: &seqs, state: &state, dims: d, flags };
        let inner = if cfg.quick { 2 } else { 100 };
        let mut rec = Recorder::new(dev);
        for _ in 0..inner {
            sd::ssd_step(&mut rec, &args, &y)?;
        }
        let rec = rec.finish();
        let stats = measure(&rec, inner, cfg)?;
        let bytes = ((s * (d.width() + d.heads + d.heads * d.head_dim) + 2 * s * d.heads * d.head_dim * d.n)
            * 4) as f64;
        rows.push(row("ssd-step", "ssd.step", shape, stats, Work { bytes, flops: 0.0 }, roof, None));
    }
    Ok(rows)
}
