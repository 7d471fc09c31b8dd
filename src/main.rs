//! The `linseq` command-line tool.

use clap::{Parser, Subcommand};
use linseq::shader::validate::{self, Outcome};
use linseq::{device, Device};
use std::process::ExitCode;

mod bench_cmds;
mod model_cmds;

#[derive(Parser)]
#[command(name = "linseq", version, about = "GPU engine for linear-time sequence models (WGSL on wgpu)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter with backend, type, driver, features and key limits.
    Adapters {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List or validate the registered shader variants.
    Shaders {
        /// Print every registered variant by name, one per line.
        #[arg(long)]
        list: bool,
        /// Validate every variant with naga and translate it to SPIR-V, MSL, HLSL and GLSL.
        #[arg(long)]
        validate: bool,
        /// Only variants whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Print the preprocessed WGSL of one variant.
        #[arg(long, value_name = "VARIANT")]
        show: Option<String>,
        /// Compile the variants through Vulkan and print the driver's statistics of each
        /// (registers, spills, shared memory: what the driver reports through
        /// VK_KHR_pipeline_executable_properties); LINSEQ_ADAPTER picks the adapter by name.
        #[arg(long)]
        stats: bool,
    },
    /// Check model runtimes against reference logits of real checkpoints (each subfolder of
    /// DIR with a reference_logits.safetensors): full-forward logits, greedy continuation, and
    /// prefill + decode against one full forward, with f32 and f16 weights.
    Conformance {
        /// Folder of checkpoints, e.g. ../shared/models.
        #[arg(default_value = "../shared/models")]
        dir: std::path::PathBuf,
    },
    /// Generate text from a prompt, streaming tokens as they come, then report prefill and
    /// decode tokens/s.
    Generate {
        #[arg(long)]
        model: std::path::PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
        /// Sampling temperature (sampling is used when any of temperature/top-k/top-p is given).
        #[arg(long, conflicts_with = "greedy")]
        temperature: Option<f32>,
        #[arg(long, conflicts_with = "greedy")]
        top_k: Option<usize>,
        #[arg(long, conflicts_with = "greedy")]
        top_p: Option<f32>,
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Argmax decoding (the default when no sampling option is given).
        #[arg(long)]
        greedy: bool,
        /// Weight dtype on the device: f32 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Write only the generated text to stdout.
        #[arg(long)]
        raw: bool,
        /// Stop when the text contains this string (repeatable); generation also stops at the
        /// checkpoint's eos_token_id.
        #[arg(long)]
        stop: Vec<String>,
    },
    /// Bits per byte and perplexity of a text file under the model.
    Eval {
        #[arg(long)]
        model: std::path::PathBuf,
        #[arg(long)]
        text: std::path::PathBuf,
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Tokens per forward call (the state carries between calls).
        #[arg(long, default_value_t = 2048)]
        chunk: usize,
    },
    /// Architecture, parameters, dtypes and memory for a sequence length and batch.
    Inspect {
        #[arg(long)]
        model: std::path::PathBuf,
        #[arg(long, default_value_t = 4096)]
        seq_len: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Write the logits of a file's tokens from a fresh state, as the f32 tensor `logits`
    /// [T, vocab] of a safetensors file. The tokens are the file's raw bytes for byte-level
    /// models, else its text through the checkpoint's tokenizer.json.
    Logits {
        #[arg(long)]
        model: std::path::PathBuf,
        #[arg(long)]
        input: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
        /// Weight dtype on the device: f32 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Print the memory plan of a graph: naive, planned, lower bound, weight and state bytes.
    Plan {
        /// Plan a synthetic stack of Mamba-style blocks.
        #[arg(long)]
        synthetic: bool,
        /// A model directory (arrives with the model runtimes).
        #[arg(long, value_name = "DIR")]
        model: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 24)]
        layers: usize,
        #[arg(long, default_value_t = 768)]
        d_model: usize,
        #[arg(long, default_value_t = 4096)]
        seq_len: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Largest arena buffer in MiB (a device's max storage binding; default 2048).
        #[arg(long, default_value_t = 2048)]
        max_buffer_mib: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark kernels on the selected adapter (LINSEQ_BACKEND / LINSEQ_ADAPTER): GPU time
    /// (median, min, max), GB/s, TFLOP/s, % of the copy roofline measured in the same run, and
    /// agreement with the f64 reference.
    Bench(bench_cmds::BenchArgs),
    /// Pick the fastest variant per op and shape bucket on this adapter (every candidate must
    /// agree with the reference) and save the choices in the tuning cache.
    Tune(bench_cmds::TuneArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cmd {
        Command::Adapters { json } => adapters(json),
        Command::Conformance { dir } => conformance(&dir),
        Command::Generate {
            model,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            greedy,
            dtype,
            raw,
            stop,
        } => {
            let sampling =
                (!greedy && (temperature.is_some() || top_k.is_some() || top_p.is_some())).then(|| {
                    linseq::ops::sampling::SamplingParams {
                        temperature: temperature.unwrap_or(1.0),
                        top_k: top_k.unwrap_or(0),
                        top_p: top_p.unwrap_or(1.0),
                        seed,
                    }
                });
            model_cmds::generate(model_cmds::Generate {
                model: &model,
                prompt: &prompt,
                max_tokens,
                sampling,
                dtype: model_cmds::parse_dtype(&dtype)?,
                raw,
                stop,
            })
        }
        Command::Eval { model, text, dtype, chunk } => {
            model_cmds::eval(&model, &text, model_cmds::parse_dtype(&dtype)?, chunk)
        }
        Command::Inspect { model, seq_len, batch, dtype } => {
            model_cmds::inspect(&model, seq_len, batch, model_cmds::parse_dtype(&dtype)?)
        }
        Command::Logits { model, input, out, dtype } => logits(&model, &input, &out, &dtype),
        Command::Shaders { list, validate, filter, show, stats } => {
            if stats {
                shader_stats(filter.as_deref())
            } else {
                shaders(list, validate, filter.as_deref(), show.as_deref())
            }
        }
        Command::Plan { synthetic, model, layers, d_model, seq_len, batch, max_buffer_mib, json } => {
            match (model, synthetic) {
                (Some(dir), false) => plan_model(&dir, seq_len, batch, json),
                (None, true) => plan_synthetic(layers, d_model, seq_len, batch, max_buffer_mib, json),
                _ => Err("pass either --synthetic or --model DIR".into()),
            }
        }
        Command::Bench(args) => bench_cmds::bench(args),
        Command::Tune(args) => bench_cmds::tune(args),
    }
}

fn adapters(json: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let adapters = device::enumerate_adapters(wgpu::Backends::all());
    if adapters.is_empty() {
        return Err(format!("no adapters found: {}", device::INSTALL_HINT).into());
    }
    let mut docs = Vec::new();
    for a in adapters {
        let info = a.get_info();
        let l = a.limits();
        let f = a.features();
        if json {
            docs.push(serde_json::json!({
                "name": info.name, "backend": format!("{:?}", info.backend),
                "device_type": format!("{:?}", info.device_type), "driver": info.driver,
                "driver_info": info.driver_info, "features": format!("{f:?}"),
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "min_storage_buffer_offset_alignment": l.min_storage_buffer_offset_alignment,
                "subgroup_min_size": info.subgroup_min_size, "subgroup_max_size": info.subgroup_max_size,
            }));
            continue;
        }
        println!("{}", device::describe_info(&info));
        let has = |x: wgpu::Features| if f.contains(x) { "yes" } else { "no" };
        println!(
            "  shader-f16 {}  subgroups {} (size {}..{})  timestamps {} (inside passes {})  coop-matrix {}",
            has(wgpu::Features::SHADER_F16),
            has(wgpu::Features::SUBGROUP),
            info.subgroup_min_size,
            info.subgroup_max_size,
            has(wgpu::Features::TIMESTAMP_QUERY),
            has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            has(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        );
        println!(
            "  max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, invocations/workgroup {}, storage offset alignment {}",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.min_storage_buffer_offset_alignment
        );
        for p in a.cooperative_matrix_properties() {
            println!("  coop {}x{}x{} {:?}->{:?}", p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type);
        }
        println!("  features: {f:?}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&docs)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `linseq shaders --stats`: a line per variant with the driver's statistics.
#[cfg(not(any(target_os = "macos", target_os = "ios", target_arch = "wasm32")))]
fn shader_stats(filter: Option<&str>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let variants: Vec<_> =
        linseq::ops::registry().into_iter().filter(|v| filter.is_none_or(|f| v.name.contains(f))).collect();
    if variants.is_empty() {
        return Err(format!("no variant matches {filter:?}; `linseq shaders --list` names them").into());
    }
    let adapter = std::env::var("LINSEQ_ADAPTER").ok();
    let dev = linseq::shader::stats::StatsDevice::new(adapter.as_deref())?;
    println!("adapter: {}", dev.name);
    let bar = indicatif::ProgressBar::new(variants.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("compiling [{bar:30}] {pos}/{len} variants")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut failures = 0;
    for v in &variants {
        bar.inc(1);
        match dev.stats(v) {
            Ok(s) => {
                for (exe, stats) in &s.executables {
                    let cells: Vec<String> =
                        stats.iter().map(|st| format!("{}={}", st.name, st.value)).collect();
                    bar.suspend(|| println!("{} [{exe}]: {}", s.variant, cells.join(", ")));
                }
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| println!("FAIL {}: {e}", v.name));
            }
        }
    }
    bar.finish_and_clear();
    println!("{} variants, {failures} failure(s)", variants.len());
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(any(target_os = "macos", target_os = "ios", target_arch = "wasm32"))]
fn shader_stats(_: Option<&str>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    Err("--stats reads Vulkan's pipeline statistics, which this platform's build does not include".into())
}

fn shaders(
    list: bool,
    validate: bool,
    filter: Option<&str>,
    show: Option<&str>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let variants: Vec<_> =
        linseq::ops::registry().into_iter().filter(|v| filter.is_none_or(|f| v.name.contains(f))).collect();
    if let Some(name) = show {
        // A closed pipe (`| head`) ends the output quietly instead of panicking in print!.
        use std::io::Write;
        let text = linseq::ops::find(name)?.wgsl()?;
        return match std::io::stdout().write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
            r => r.map(|_| ExitCode::SUCCESS).map_err(Into::into),
        };
    }
    if list {
        for v in &variants {
            println!("{}", v.name);
        }
    }
    if !validate {
        if !list {
            return Err("nothing to do: pass --list, --validate or --show VARIANT".into());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failures = 0;
    for v in &variants {
        let r = validate::quietly(|| validate::check_variant(v));
        if let Some(e) = &r.validation {
            failures += 1;
            println!("FAIL {} [{}]: validation\n{e}", r.variant, r.requires);
            continue;
        }
        let mut cells = Vec::new();
        for (t, o) in &r.targets {
            match o {
                Outcome::Ok => cells.push(format!("{} ok", t.name())),
                Outcome::NotApplicable(why) => cells.push(format!("{} n/a ({why})", t.name())),
                Outcome::Failed(e) => {
                    failures += 1;
                    cells.push(format!("{} FAILED: {e}", t.name()));
                }
            }
        }
        println!(
            "{} {} [{}]: {}",
            if r.ok() { "ok  " } else { "FAIL" },
            r.variant,
            r.requires,
            cells.join("; ")
        );
    }
    println!("{} variants, {failures} failure(s)", variants.len());
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The memory plan of a checkpoint's prefill of `batch` × `seq_len` tokens on this device.
fn plan_model(
    dir: &std::path::Path,
    seq_len: usize,
    batch: usize,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if seq_len == 0 || batch == 0 {
        return Err("--seq-len and --batch must be positive".into());
    }
    let dev = Device::new()?;
    let model = model_cmds::load(&dev, dir, linseq::DType::F16)?;
    let state = model.new_state(&dev, batch)?;
    let r = model.memory_plan(&dev, &state, &vec![seq_len; batch])?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "{} ({}): prefill of {batch} × {seq_len} tokens, f16 weights",
        dir.display(),
        model.model_type()
    );
    println!("naive (one buffer per activation) {:>12.1} MiB", mib(r.naive_bytes));
    println!(
        "planned arenas                    {:>12.1} MiB  ({} buffer(s))",
        mib(r.planned_bytes),
        r.arena_buffers
    );
    println!("lower bound (peak live bytes)     {:>12.1} MiB", mib(r.lower_bound_bytes));
    println!("weights                           {:>12.1} MiB", mib(r.weight_bytes));
    println!("state                             {:>12.1} MiB", mib(r.state_bytes));
    Ok(ExitCode::SUCCESS)
}

fn plan_synthetic(
    layers: usize,
    d_model: usize,
    seq_len: usize,
    batch: usize,
    max_buffer_mib: u64,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use linseq::graph::{plan, synthetic, PlanOptions};
    if layers == 0 || d_model == 0 || seq_len == 0 || batch == 0 {
        return Err("--layers, --d-model, --seq-len and --batch must be positive".into());
    }
    let cfg = synthetic::SyntheticConfig::mamba(layers, d_model, seq_len, batch);
    let (g, _) = synthetic::mamba_stack(&cfg)?;
    let opts = PlanOptions { max_buffer: max_buffer_mib << 20, ..PlanOptions::offline() };
    let r = plan(&g, &opts)?.report;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "synthetic Mamba-style stack: {layers} layers, d_model {d_model}, seq_len {seq_len}, batch {batch} ({} nodes, {} activations)",
        g.nodes().len(),
        r.activations
    );
    println!("naive (one buffer per activation) {:>12.1} MiB", mib(r.naive_bytes));
    println!(
        "planned arenas                    {:>12.1} MiB  ({} buffer(s), {:.1}% of naive, {:.3}× lower bound)",
        mib(r.planned_bytes),
        r.arena_buffers,
        100.0 * r.planned_bytes as f64 / r.naive_bytes as f64,
        r.planned_bytes as f64 / r.lower_bound_bytes as f64
    );
    println!("lower bound (peak live bytes)     {:>12.1} MiB", mib(r.lower_bound_bytes));
    println!("weights                           {:>12.1} MiB", mib(r.weight_bytes));
    println!("state                             {:>12.1} MiB", mib(r.state_bytes));
    println!("in-place nodes                    {:>12}", r.inplace_nodes);
    Ok(ExitCode::SUCCESS)
}

fn conformance(dir: &std::path::Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use linseq::model::{self, conformance};
    if !dir.is_dir() {
        return Err(format!("{}: not a folder of checkpoints", dir.display()).into());
    }
    let dev = Device::new()?;
    eprintln!("adapter: {}", dev.describe());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let (mut failed, mut checked) = (0, 0);
    for path in entries.iter().filter(|p| p.join("reference_logits.safetensors").exists()) {
        let kind = model::Config::load(path)?.model_type()?;
        if !model::arch::supported().contains(&kind.as_str()) {
            println!("{}: model_type `{kind}` has no runtime yet: NOT CHECKED", path.display());
            continue;
        }
        for dtype in [linseq::DType::F32, linseq::DType::F16] {
            let r = conformance::check(&dev, path, dtype)?;
            checked += 1;
            let verdict = if r.passed() { "ok" } else { "FAILED" };
            println!(
                "{} {:?}: logits max-abs {:.2e} (bound {:.0e}), prefill+decode max-abs {:.2e}, greedy {}/{} identical (need {}): {verdict}",
                path.display(), r.dtype, r.max_abs, r.bound, r.decode_max_abs, r.greedy_match, r.greedy_total, r.greedy_needed
            );
            failed += !r.passed() as usize;
        }
    }
    if checked == 0 {
        return Err(
            format!("{}: no checkpoint with a runtime and reference logits found", dir.display()).into()
        );
    }
    // The GPT-NeoX tokenizer real Mamba checkpoints use, if it sits beside the models.
    let neox = dir.join("../tokenizers/gpt-neox-20b.json");
    if neox.exists() {
        let tok = linseq::model::tokenizer::Tokenizer::from_file(&neox)?;
        let text = "ROMEO:\nBut, soft! what light through yonder window breaks? Ünïcödé ✓";
        let ids = tok.encode(text)?;
        let back = tok.decode(&ids)?;
        let ok = back == text.as_bytes() && ids.len() < text.len() / 2;
        let verdict = if ok { "ok" } else { "FAILED" };
        println!("{}: {} bytes → {} tokens, round trip {verdict}", neox.display(), text.len(), ids.len());
        failed += !ok as usize;
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn logits(
    model_dir: &std::path::Path,
    input: &std::path::Path,
    out: &std::path::Path,
    dtype: &str,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let dtype = model_cmds::parse_dtype(dtype)?;
    let dev = Device::new()?;
    let model = model_cmds::load(&dev, model_dir, dtype)?;
    let tok = linseq::model::tokenizer::Tokenizer::for_model(model_dir, model.vocab())?;
    let ids = tok.encode_bytes(&std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?)?;
    if ids.is_empty() {
        return Err(format!("{}: no tokens", input.display()).into());
    }
    let mut state = model.new_state(&dev, 1)?;
    let logits = model.forward(&dev, &ids, &[ids.len()], &mut state)?;
    linseq::model::check_finite(&logits, model.vocab(), "the input")?;
    let data: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![ids.len(), model.vocab()], &data)?;
    safetensors::serialize_to_file([("logits", view)], None, out)?;
    eprintln!("wrote {} ({} × {} logits)", out.display(), ids.len(), model.vocab());
    Ok(ExitCode::SUCCESS)
}
