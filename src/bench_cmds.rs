//! `linseq bench` and `linseq tune`.

use clap::Args;
use linseq::bench::{self, BenchConfig, BenchRow, ScanCase, SsdCase, Variants};
use linseq::{tune, Device};
use std::path::PathBuf;
use std::process::ExitCode;

type CmdResult = Result<ExitCode, Box<dyn std::error::Error>>;

#[derive(Args)]
pub struct BenchArgs {
    /// What to benchmark: `core` (copy roofline, GEMV, GEMM), `selective-scan` (every scan
    /// kernel and the decode step), `ssd` (Mamba-2's SSD kernels and decode step), `attention`
    /// (prefill on the peer shapes, the sliding window's scaling in L, the ring decode against
    /// the position), `delta-rule` (the gated delta rule's recurrent and chunked kernels),
    /// `model` (prefill and decode tokens/s of --preset on random weights) or `decode` (CPU and GPU
    /// cost of replaying a 24-layer decode-step graph).
    #[arg(default_value = "core")]
    what: String,
    /// `all`, or variants whose name contains one of these comma-separated patterns.
    #[arg(long, alias = "filter", default_value = "all")]
    variants: String,
    /// Only shapes whose description contains this, e.g. "d=2048 L=16384".
    #[arg(long)]
    shape: Option<String>,
    /// Scaling report instead: the op at L = 1K, 2K, … up to --max-len tokens; writes an SVG
    /// plot (--svg) and prints each variant's fitted exponent.
    #[arg(long)]
    scaling: bool,
    /// Scaling report: channels (batch 1).
    #[arg(long, default_value_t = 384)]
    scaling_dim: usize,
    /// Scaling report: longest length.
    #[arg(long, default_value_t = 1 << 20)]
    max_len: usize,
    /// Scaling report: redraw the plot of WHAT (selective-scan, attention, delta-rule) from this
    /// saved `--json` file instead of measuring.
    #[arg(long, value_name = "FILE", requires = "scaling")]
    replot: Option<PathBuf>,
    /// Scaling report: where to write the plot (default `scaling-<op>.svg`, e.g.
    /// `scaling-selective-scan.svg`, `scaling-attention.svg`).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Model benchmark: mamba-130m, mamba2-130m, mamba-1.4b, recurrentgemma-2b, mistral-7b-8l, qwen3.5-0.8b or kimi-linear-48b-4l (random weights of the real
    /// configuration, written once to --model-dir).
    #[arg(long, default_value = "mamba-130m")]
    preset: String,
    /// Model benchmark: weight dtype on the device, f32 or f16.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Model benchmark: where the random checkpoint lives (default: the temp directory).
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Model benchmark: prefill lengths, comma-separated ("none" skips prefill).
    #[arg(long, value_name = "LIST")]
    prefill_lens: Option<String>,
    /// Model benchmark: decode batch sizes, comma-separated ("none" skips decode).
    #[arg(long, value_name = "LIST")]
    decode_batches: Option<String>,
    /// Model benchmark: also print a per-op GPU profile of one decode step (delta-rule: the
    /// GPU time of each kernel of one call).
    #[arg(long)]
    profile: bool,
    /// Small sizes, few repetitions (the default on CPU adapters such as lavapipe).
    #[arg(long)]
    quick: bool,
    /// Full sizes even on a CPU adapter (can take hours there).
    #[arg(long, conflicts_with = "quick")]
    full: bool,
    /// Also write the rows as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl BenchArgs {
    /// The scaling plot's path: --svg, else `scaling-<op>.svg`.
    fn svg_or(&self, op: &str) -> PathBuf {
        self.svg.clone().unwrap_or_else(|| PathBuf::from(format!("scaling-{op}.svg")))
    }
}

#[derive(Args)]
pub struct TuneArgs {
    /// Ops to tune, comma-separated: selective-scan, ssd, attention (its prefill kernel),
    /// delta-rule (its prefill kernel).
    #[arg(long, default_value = "selective-scan,ssd,attention,delta-rule,s4")]
    ops: String,
    /// Small shapes (smoke run; the default on CPU adapters).
    #[arg(long)]
    quick: bool,
    /// Cache file (default: LINSEQ_TUNE_CACHE, else the user cache directory).
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// Print the choices without saving them.
    #[arg(long)]
    dry_run: bool,
}

/// A comma-separated list of positive sizes ("none" for an empty list).
fn parse_list(list: &str, what: &str) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|s| match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => {
                Err(format!("{what}: {s:?} is not a positive size (expected e.g. 1024,4096 or none)").into())
            }
        })
        .collect()
}

fn open_device() -> Result<(Device, bool), Box<dyn std::error::Error>> {
    let dev = Device::new()?;
    eprintln!("adapter: {}", dev.describe());
    let software = dev.caps().software;
    Ok((dev, software))
}

/// Writes the scaling plot and prints each variant's fitted exponent.
fn scaling_report(
    series: &std::collections::BTreeMap<String, bench::plot::Series>,
    title: &str,
    fit_from: f64,
    svg: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write(svg, bench::plot::svg(title, series, fit_from))?;
    eprintln!("wrote {}", svg.display());
    for (name, pts) in series {
        let span = pts.last().map_or(0.0, |p| p.0);
        match bench::plot::fitted_exponent(pts, fit_from) {
            Some(k) => println!("{name}: time ∝ L^{k:.3} (fit over {fit_from} ≤ L ≤ {span})"),
            None => println!("{name}: too few points to fit"),
        }
    }
    Ok(())
}

pub fn bench(a: BenchArgs) -> CmdResult {
    if let Some(path) = &a.replot {
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )?;
        let field = |name: &str| {
            doc["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|r| bench::plot::shape_field(r["shape"].as_str()?, name).map(str::to_string))
                .unwrap_or_default()
        };
        let adapter = doc["adapter"].as_str().unwrap_or("?").split(" (").next().unwrap_or("?").to_string();
        // The plot of the op named by WHAT (the selective scan by default).
        let (case, op, title) = match a.what.as_str() {
            "attention" => (
                "attention",
                "attention",
                format!(
                    "sliding-window attention prefill, batch 1, W = {}, H = 8/1, D = 128 — {adapter}",
                    field("W=")
                ),
            ),
            "delta-rule" => (
                "delta-rule",
                "delta-rule",
                format!("gated delta rule prefill, batch 1, H = 1, dk = dv = 128 — {adapter}"),
            ),
            _ => (
                "scan",
                "selective-scan",
                format!("selective scan, batch 1, d = {}, N = 16 — {adapter}", field("d=")),
            ),
        };
        let series = bench::plot::series_from_json(&doc, case);
        let fit_from = if case == "attention" { 4096.0 } else { 16384.0 };
        scaling_report(&series, &title, fit_from, &a.svg_or(op))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (dev, software) = open_device()?;
    if software && !a.quick && !a.full {
        eprintln!("CPU adapter: using --quick sizes (pass --full for the GPU sizes)");
    }
    let quick = a.quick || (software && !a.full);
    let cfg = if quick { BenchConfig::quick() } else { BenchConfig::full() };
    let variants = Variants::parse(&a.variants);
    if a.what == "decode" {
        return decode(&dev, quick, a.json);
    }
    let keep = |label: &str| a.shape.as_deref().is_none_or(|f| label.contains(f));
    let rows: Vec<BenchRow> = match (a.what.as_str(), a.scaling) {
        ("selective-scan" | "scan", true) => {
            let (dim, max_len) = if quick { (64, a.max_len.min(8192)) } else { (a.scaling_dim, a.max_len) };
            let rows = bench::scan::selective_scan_scaling(&dev, cfg, &variants, 1, dim, max_len, 1.0)?;
            let series = bench::plot::series(&rows, "scan");
            let fit_from = if quick { 2048.0 } else { 16384.0 };
            let title = format!("selective scan, batch 1, d = {dim}, N = 16 — {}", dev.adapter_info().name);
            scaling_report(&series, &title, fit_from, &a.svg_or("selective-scan"))?;
            rows
        }
        ("attention", true) => {
            // The sliding-window prefill at batch 1, W = 2048 (256 quick), L = 1K doubling.
            // At most 256K: an f32 qkv of 1M tokens would pass a 2 GiB binding.
            let (window, max_len) =
                if quick { (256, a.max_len.min(8192)) } else { (2048, a.max_len.min(262_144)) };
            let rows = bench::attention::window_scaling(&dev, cfg, &variants, max_len, window)?;
            let series = bench::plot::series(&rows, "attention");
            let title = format!(
                "sliding-window attention prefill, batch 1, W = {window}, H = 8/1, D = 128 — {}",
                dev.adapter_info().name
            );
            scaling_report(&series, &title, 4096.0, &a.svg_or("attention"))?;
            rows
        }
        ("delta-rule", true) => {
            // Batch 1, one head of 128: at 1M tokens the f32 [q | k | v] rows take 1.5 GiB, just
            // under a 2 GiB binding.
            let max_len = if quick { a.max_len.min(4096) } else { a.max_len.min(1 << 20) };
            let rows = bench::delta_rule::scaling(&dev, cfg, &variants, max_len)?;
            let series = bench::plot::series(&rows, "delta-rule");
            let title = format!(
                "gated delta rule prefill, batch 1, H = 1, dk = dv = 128 — {}",
                dev.adapter_info().name
            );
            scaling_report(&series, &title, if quick { 2048.0 } else { 16384.0 }, &a.svg_or("delta-rule"))?;
            rows
        }
        (other, true) => {
            return Err(format!(
                "no scaling report for {other:?}; available: selective-scan, attention, delta-rule"
            )
            .into())
        }
        ("core", false) => bench::run_core(&dev, cfg, &variants)?,
        ("model", false) => {
            let dtype = crate::model_cmds::parse_dtype(&a.dtype)?;
            let dir = a
                .model_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join(format!("linseq-bench-{}", a.preset)));
            let mut plan = bench::model::ModelBench::new(cfg);
            if let Some(list) = &a.prefill_lens {
                plan.prefill_lens = parse_list(list, "--prefill-lens")?;
            }
            if let Some(list) = &a.decode_batches {
                plan.decode_batches = parse_list(list, "--decode-batches")?;
            }
            plan.profile = a.profile;
            bench::model::model(&dev, cfg, &a.preset, dtype, &dir, &plan)?
        }
        ("selective-scan" | "scan", false) => {
            let cases: Vec<ScanCase> =
                ScanCase::bench_grid(cfg.quick).into_iter().filter(|c| keep(&c.label())).collect();
            let mut rows = bench::selective_scan(&dev, cfg, &variants, &cases)?;
            let steps = bench::selective_scan_step(&dev, cfg, &variants)?;
            rows.extend(steps.into_iter().skip(1).filter(|r| keep(&r.shape)));
            rows
        }
        ("ssd", false) => {
            let cases: Vec<SsdCase> =
                SsdCase::bench_grid(cfg.quick).into_iter().filter(|c| keep(&c.label())).collect();
            let mut rows = bench::ssd(&dev, cfg, &variants, &cases, true)?;
            let steps = bench::ssd_step(&dev, cfg, &variants)?;
            rows.extend(steps.into_iter().skip(1).filter(|r| keep(&r.shape)));
            rows
        }
        ("attention", false) => {
            let cases: Vec<_> = linseq::ops::attention::cases::AttnCase::bench(cfg.quick)
                .into_iter()
                .filter(|c| keep(&c.describe()))
                .collect();
            let mut rows = bench::attention::prefill(&dev, cfg, &variants, &cases)?;
            // The window's scaling in L, and the ring decode against the position.
            let (max_len, positions) = if cfg.quick {
                (4096, vec![1024, 4096])
            } else {
                (262_144, vec![4096, 16384, 65536, 262_144])
            };
            let window = if cfg.quick { 256 } else { 2048 };
            if variants.matches("attention.prefill.d128") {
                let scaling = bench::attention::window_scaling(&dev, cfg, &variants, max_len, window)?;
                rows.extend(scaling.into_iter().skip(1).filter(|r| keep(&r.shape)));
            }
            if variants.matches("attention.decode.d128") {
                let decode = bench::attention::ring_decode(
                    &dev,
                    cfg,
                    &positions,
                    if cfg.quick { 64 } else { 4096 },
                    1,
                )?;
                rows.extend(decode.into_iter().skip(1).filter(|r| keep(&r.shape)));
            }
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| {
                    r.case == "attention"
                        && r.shape.starts_with("B=1 ")
                        && r.shape.contains(&format!("W={window}"))
                })
                .filter_map(|r| {
                    let l: f64 = bench::plot::shape_field(&r.shape, "L=")?.parse().ok()?;
                    Some((l, r.stats.median))
                })
                .collect();
            if let Some(e) = bench::plot::fitted_exponent(&pts, 4096.0) {
                eprintln!("attention.prefill W={window}: time ∝ L^{e:.3} (fit over L ≥ 4096)");
            }
            rows
        }
        ("delta-rule", false) => {
            let cases: Vec<_> = bench::delta_rule::DeltaCase::bench(cfg.quick)
                .into_iter()
                .filter(|c| keep(&c.describe()))
                .collect();
            bench::delta_rule::delta_rule(&dev, cfg, &variants, &cases, a.profile)?
        }
        ("s4", false) => {
            // The layer's scaling over 128 channels, 1K to 1M tokens.
            let max_len = if quick { a.max_len.min(4096) } else { a.max_len.min(1 << 20) };
            let rows: Vec<BenchRow> =
                bench::s4::s4(&dev, cfg, &variants, max_len)?.into_iter().filter(|r| keep(&r.shape)).collect();
            let series = bench::plot::series(&rows, "s4-layer");
            if !series.is_empty() {
                let title = format!(
                    "S4 layer (kernel generation + FFT convolution), batch 1, H = {}, N = 64 — {}",
                    if quick { 16 } else { 128 },
                    dev.adapter_info().name
                );
                scaling_report(&series, &title, if quick { 2048.0 } else { 16384.0 }, &a.svg_or("s4"))?;
            }
            rows
        }
        (other, false) => {
            return Err(format!(
                "unknown benchmark {other:?}; available: attention, core, decode, delta-rule, model, s4, selective-scan, ssd"
            )
            .into())
        }
    };
    if rows.iter().all(|r| r.case == "copy") && (a.what != "core" || !variants.matches("copy.vec4")) {
        return Err(format!(
            "nothing matched --variants {:?}{}; `linseq shaders --list` names the variants",
            a.variants,
            a.shape.as_deref().map(|s| format!(" and --shape {s:?}")).unwrap_or_default()
        )
        .into());
    }
    print!("{}", bench::table(&rows));
    if let Some(path) = a.json {
        let doc = serde_json::json!({ "adapter": dev.describe(), "caps": dev.caps(), "rows": rows });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    let bad = rows.iter().filter(|r| r.agrees == Some(false)).count();
    Ok(if bad > 0 {
        eprintln!("{bad} benchmark output(s) disagree with the reference");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn decode(dev: &Device, quick: bool, json: Option<PathBuf>) -> CmdResult {
    let (layers, steps) = if quick { (4, 20) } else { (24, 500) };
    let mut all = Vec::new();
    for greedy in [true, false] {
        let s = bench::decode_replay(dev, layers, 768, 50280, steps, greedy)?;
        println!(
            "decode replay ({}): {} layers, d_model {}, vocab {}: {} dispatches in one pass",
            s.sampling, s.layers, s.d_model, s.vocab, s.dispatches
        );
        println!("  CPU encode + submit   {:>9.1} µs/step (median of {steps})", s.encode_submit_us);
        println!("  GPU                   {:>9.1} µs/step ({})", s.gpu_us, s.clock);
        println!("  submit + wait (wall)  {:>9.1} µs/step", s.step_wall_us);
        println!(
            "  per step: {} submit(s), {} new buffers, {} new bind groups",
            s.submits_per_step, s.buffers_per_step, s.bind_groups_per_step
        );
        all.push(s);
    }
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tune(a: TuneArgs) -> CmdResult {
    let (dev, software) = open_device()?;
    let quick = a.quick || software;
    if software && !a.quick {
        eprintln!("CPU adapter: tuning on --quick shapes");
    }
    let path = a.cache.or_else(tune::default_path);
    if let (Some(path), false) = (&path, a.dry_run) {
        // Refuse an unreadable or unwritable cache before the run, not after it.
        tune::TuneFile::load(path)?;
        tune::TuneFile::check_writable(path)?;
    }
    let ops: Vec<&str> = a.ops.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} buckets  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (table, refused) = tune::tune_ops(&dev, &ops, quick, &|i, n, what| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
        bar.set_message(what.to_string());
    })?;
    bar.finish_and_clear();
    println!("{:<36} {:<28} {:>10}  candidates (median µs)", "op/bucket", "chosen", "µs");
    for (k, e) in &table.entries {
        let cands: Vec<String> = e
            .candidates
            .iter()
            .map(|(n, t)| format!("{}={:.1}", n.rsplit('.').next().unwrap_or(n), t * 1e6))
            .collect();
        println!("{k:<36} {:<28} {:>10.1}  {}", e.variant, e.candidates[&e.variant] * 1e6, cands.join(" "));
    }
    for r in &refused {
        eprintln!("refused: {r}");
    }
    if !a.dry_run {
        let Some(path) = path else {
            return Err("no cache location: set LINSEQ_TUNE_CACHE or HOME, or pass --cache FILE".into());
        };
        let mut file = tune::TuneFile::load(&path)?;
        file.merge(table);
        file.save(&path)?;
        eprintln!("saved {} ({} table(s))", path.display(), file.tables.len());
    }
    Ok(if refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
