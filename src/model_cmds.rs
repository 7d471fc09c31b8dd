//! `linseq generate`, `linseq eval` and `linseq inspect`: the model commands of the CLI.

use indicatif::{ProgressBar, ProgressStyle};
use linseq::model::tokenizer::Tokenizer;
use linseq::model::{self, Config, Model, Weights};
use linseq::ops::sampling::SamplingParams;
use linseq::{DType, Device};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

pub fn parse_dtype(s: &str) -> Result<DType, Box<dyn std::error::Error>> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        other => Err(format!("--dtype {other}: use f32 or f16").into()),
    }
}

/// Loads a model with a progress bar on stderr.
pub fn load(dev: &Device, dir: &Path, dtype: DType) -> Result<Model, Box<dyn std::error::Error>> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} layers")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(dir.display().to_string());
    let m = model::load_with_progress(dev, dir, dtype, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(m)
}

fn tokenizer(model: &Model, dir: &Path) -> Result<Tokenizer, Box<dyn std::error::Error>> {
    Ok(Tokenizer::for_model(dir, model.vocab())?)
}

/// Options of `linseq generate`.
pub struct Generate<'a> {
    pub model: &'a Path,
    pub prompt: &'a str,
    pub max_tokens: usize,
    pub sampling: Option<SamplingParams>,
    pub dtype: DType,
    pub raw: bool,
    pub stop: Vec<String>,
}

pub fn generate(o: Generate) -> CliResult {
    if o.prompt.is_empty() {
        return Err("--prompt must not be empty".into());
    }
    if let Some(p) = &o.sampling {
        p.validate()?;
    }
    let dev = Device::new()?;
    if !o.raw {
        eprintln!("adapter: {}", dev.describe());
    }
    let model = load(&dev, o.model, o.dtype)?;
    let tok = tokenizer(&model, o.model)?;
    let vocab = model.vocab();
    let mut state = model.new_state(&dev, 1)?;
    let prompt = tok.encode(o.prompt)?;
    if prompt.is_empty() {
        return Err("the prompt encodes to no tokens".into());
    }
    let mut out = std::io::stdout().lock();
    if !o.raw {
        out.write_all(o.prompt.as_bytes())?;
        out.flush()?;
    }
    let t0 = Instant::now();
    let logits = model.prefill(&dev, &prompt, &[prompt.len()], &mut state)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    // Temperature 0 is greedy (argmax) in the sampler.
    let params = o.sampling.unwrap_or(SamplingParams { temperature: 0.0, ..SamplingParams::default() });
    let first = model::sample(&logits[..vocab], &params, 0);
    // Decode runs on the GPU in chunks of CHUNK steps (sampling included, no readback between
    // steps); each chunk's tokens are printed as it returns. Token k is drawn with step k, as
    // the host sampler would.
    const CHUNK: usize = 16;
    let mut generator = model.generator(&dev, &mut state, &params, CHUNK)?;
    let t1 = Instant::now();
    // Stop at the checkpoint's eos ids and the user's stop strings; text is streamed through
    // the tokenizer's incremental decoder, so a character split across tokens prints whole.
    let criteria = model::StopCriteria::from_checkpoint(o.model)?.with_stop_strings(o.stop.iter().cloned());
    let mut stop = model::BatchStop::new(criteria, 1);
    let mut stream = tok.stream();
    let mut pending = if o.max_tokens == 0 { Vec::new() } else { vec![first] };
    let (mut generated, mut last) = (0usize, first);
    let show = |out: &mut std::io::StdoutLock, text: &str| -> std::io::Result<()> {
        out.write_all(text.as_bytes())?;
        out.flush()
    };
    'outer: loop {
        for &id in &pending {
            if !stop.accept_id(0, id) {
                break 'outer;
            }
            generated += 1;
            last = id;
            let piece = stop.accept_text(0, &stream.push(id)?);
            show(&mut out, &piece)?;
            if stop.is_done(0) {
                break 'outer;
            }
        }
        let left = o.max_tokens.saturating_sub(generated);
        if left == 0 {
            break;
        }
        pending = generator.generate(&[last], left.min(CHUNK), generated as u32)?.swap_remove(0);
    }
    let tail = stream.finish()?;
    let tail = stop.accept_text(0, &tail) + &stop.flush(0);
    show(&mut out, &tail)?;
    let decode_s = t1.elapsed().as_secs_f64();
    if !o.raw {
        writeln!(out)?;
        eprintln!(
            "prefill: {} tokens in {:.1} ms ({:.1} tokens/s); decode: {} tokens in {:.1} ms ({:.1} tokens/s)",
            prompt.len(),
            prefill_s * 1e3,
            prompt.len() as f64 / prefill_s,
            generated,
            decode_s * 1e3,
            generated.saturating_sub(1) as f64 / decode_s.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `linseq eval`: bits per byte and perplexity of a text under the model, in chunks that carry
/// the state.
pub fn eval(dir: &Path, text: &Path, dtype: DType, chunk: usize) -> CliResult {
    let bytes = std::fs::read(text).map_err(|e| format!("{}: {e}", text.display()))?;
    let dev = Device::new()?;
    eprintln!("adapter: {}", dev.describe());
    let model = load(&dev, dir, dtype)?;
    let tok = tokenizer(&model, dir)?;
    let ids = tok.encode_bytes(&bytes)?;
    if ids.len() < 2 {
        return Err(format!("{}: fewer than two tokens", text.display()).into());
    }
    let vocab = model.vocab();
    let mut state = model.new_state(&dev, 1)?;
    let bar = ProgressBar::new(ids.len() as u64).with_style(
        ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} tokens {per_sec} {eta}").expect("template"),
    );
    let mut nats = 0f64;
    let mut count = 0usize;
    let t0 = Instant::now();
    let chunk = chunk.max(1);
    for (c, piece) in ids.chunks(chunk).enumerate() {
        let logits = model.forward(&dev, piece, &[piece.len()], &mut state)?;
        model::check_finite(&logits, vocab, &format!("the chunk at token {}", c * chunk))?;
        for (i, row) in logits.chunks(vocab).enumerate() {
            let pos = c * chunk + i + 1; // the token this row predicts
            if pos >= ids.len() {
                break;
            }
            nats += model::cross_entropy(row, ids[pos]);
            count += 1;
        }
        bar.inc(piece.len() as u64);
    }
    bar.finish_and_clear();
    // Bits per byte divide by the bytes predicted (all but the first token's), so that
    // byte-level and tokenised models compare; perplexity is per token.
    let first = tok.decode(&ids[..1])?.len();
    let predicted_bytes = bytes.len().saturating_sub(first).max(1);
    println!(
        "{}: {count} predictions, {:.4} bits per byte, perplexity {:.3} per token ({:.1} s)",
        text.display(),
        nats / std::f64::consts::LN_2 / predicted_bytes as f64,
        (nats / count as f64).exp(),
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `linseq inspect`: architecture, parameters, stored dtypes, and the device memory for a
/// sequence length and batch.
pub fn inspect(dir: &Path, seq_len: usize, batch: usize, dtype: DType) -> CliResult {
    let cfg = Config::load(dir)?;
    let kind = cfg.model_type()?;
    let w = Weights::open(dir)?;
    let mut dtypes = std::collections::BTreeMap::new();
    for name in w.names() {
        if let Some((dt, _)) = w.info(&name) {
            *dtypes.entry(format!("{dt:?}")).or_insert(0usize) += 1;
        }
    }
    println!(
        "{}: model_type {kind}, {} tensors, {} MiB on disk",
        dir.display(),
        w.names().len(),
        w.bytes() >> 20
    );
    println!("  stored dtypes: {dtypes:?}");
    let dev = Device::new()?;
    let model = load(&dev, dir, dtype)?;
    let params = model.parameters();
    let wbytes = |p: usize| p * if dtype == DType::F16 { 2 } else { 4 };
    let state = model.new_state(&dev, batch)?;
    let state_bytes = state.bytes() as usize;
    println!(
        "  parameters: {params} ({:.2} M); held as {dtype:?}: ~{} MiB",
        params as f64 / 1e6,
        wbytes(params) >> 20
    );
    // Growing KV caches (full attention) add a block per layer as positions reach it.
    let growing: Vec<(usize, usize)> = state
        .slots()
        .iter()
        .filter_map(|s| match s.spec.kind {
            linseq::model::SlotKind::KvBlocks { block } => {
                Some((block, s.spec.shape.iter().product::<usize>() * 4))
            }
            _ => None,
        })
        .collect();
    let length =
        if growing.is_empty() { "independent of length".to_string() } else { "before any token".to_string() };
    println!(
        "  recurrent state for batch {batch}: {} KiB ({} KiB per sequence, {length})",
        state_bytes >> 10,
        (state_bytes / batch.max(1)) >> 10
    );
    if let Some(&(block, bytes)) = growing.first() {
        println!(
            "  full-attention KV caches: {} layer(s), each growing by blocks of {block} positions ({} KiB per block, at most {} blocks)",
            growing.len(),
            bytes >> 10,
            linseq::ops::attention::KV_BLOCKS
        );
    }
    let r = model.memory_plan(&dev, &state, &vec![seq_len; batch])?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "  prefill of {batch} × {seq_len} tokens (graph executor's plan, last-token logits): activations \
         {:.1} MiB in {} arena buffer(s) ({:.1}% of one buffer per activation, {:.3}× the lower bound), \
         {} of {} activations in place",
        mib(r.planned_bytes),
        r.arena_buffers,
        100.0 * r.planned_bytes as f64 / r.naive_bytes.max(1) as f64,
        r.planned_bytes as f64 / r.lower_bound_bytes.max(1) as f64,
        r.inplace_nodes,
        r.activations
    );
    Ok(ExitCode::SUCCESS)
}
