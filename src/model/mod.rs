//! Model runtimes that load Hugging Face-format checkpoints (config.json + safetensors) with no
//! conversion step.
//!
//! ```no_run
//! use linseq::{model, DType, Device};
//! let dev = Device::new()?;
//! let m = model::load(&dev, "path/to/checkpoint".as_ref(), DType::F32)?;
//! let mut state = m.new_state(&dev, 1)?;
//! let logits = m.forward(&dev, &[82, 79, 77], &[3], &mut state)?; // token ids: [3, vocab]
//! let next = m.forward(&dev, &[10], &[1], &mut state)?; // one decode step
//! let params = model::SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 7 };
//! let token = model::sample(&next, &params, 0);
//! let fork = state.try_clone(&m, &dev)?; // same history, independent future
//! # let _ = (logits, token, fork);
//! # Ok::<(), linseq::Error>(())
//! ```

pub mod arch;
pub mod attention;
pub mod blocks;
pub mod common;
pub mod config;
pub mod conformance;
pub mod gated_deltanet;
pub mod generation;
pub mod kda;
pub mod kimi_linear;
pub mod mamba;
pub mod mamba2;
pub mod mistral;
pub mod mla;
pub mod mlp;
pub mod moe;
pub mod olmo_hybrid;
pub mod qwen3_next;
pub mod random;
pub mod recurrent_gemma;
pub mod s4;
pub mod schema;
pub mod state;
pub mod tokenizer;
pub mod weights;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::DType;
use std::path::Path;

pub use arch::{Architecture, Runtime};
pub use config::Config;
pub use state::{Slot, SlotKind, SlotSpec, Snapshot, State};
pub use weights::Weights;

pub use crate::ops::sampling::SamplingParams;
pub use generation::{BatchStop, StopCriteria};

/// Picks the next token from one row of logits: seeded temperature / top-k / top-p sampling
/// (`step` decorrelates successive draws), or the argmax when `params.temperature` is 0. The
/// same arithmetic as the GPU sampling kernel, on the host.
pub fn sample(logits: &[f32], params: &SamplingParams, step: u32) -> u32 {
    crate::ops::sampling::sample_ref(logits, params, step, 0)
}

/// Errors when a row of `logits` (`[rows, vocab]`) holds NaN or Inf, naming the first such row
/// and `what` produced it (a forward pass over non-finite weights or inputs).
pub fn check_finite(logits: &[f32], vocab: usize, what: &str) -> Result<()> {
    match logits.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::NonFinite(format!(
            "the logits of row {} of {what} hold NaN or Inf (non-finite weights or activations)",
            i / vocab.max(1)
        ))),
        None => Ok(()),
    }
}

/// −log p(target) in nats under one row of logits (log-sum-exp in f64).
pub fn cross_entropy(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = max + logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    lse - logits[target as usize] as f64
}

/// A loaded model: the runtime its architecture built from the checkpoint.
pub struct Model {
    runtime: Box<dyn Runtime>,
    /// [`Model::identity`], computed once.
    identity: String,
}

/// Loads the checkpoint in `dir`, holding matmul weights as `dtype` (f32 or f16).
pub fn load(dev: &Device, dir: &Path, dtype: DType) -> Result<Model> {
    load_with_progress(dev, dir, dtype, &|_, _| {})
}

/// [`load`], calling `progress(layers done, layers)` while uploading. The architecture is
/// found by `model_type` in the registry ([`arch::find`]); its config is checked before any
/// weight is read.
pub fn load_with_progress(
    dev: &Device,
    dir: &Path,
    dtype: DType,
    progress: &dyn Fn(usize, usize),
) -> Result<Model> {
    if !matches!(dtype, DType::F32 | DType::F16) {
        return Err(Error::Invalid(format!("model weights can be held as f32 or f16, not {dtype:?}")));
    }
    let cfg = Config::load(dir)?;
    let kind = cfg.model_type()?;
    let arch = arch::find(&kind).ok_or_else(|| {
        Error::Model(format!(
            "{}: model_type `{kind}` is not supported (supported: {})",
            dir.display(),
            arch::supported().join(", ")
        ))
    })?;
    arch.check_config(&cfg)?; // config errors first, before the weights
    let w = Weights::open(dir)?;
    Ok(Model::from_runtime(arch.load(dev, &cfg, &w, dtype, progress)?))
}

impl Model {
    /// A model of a runtime built elsewhere (an architecture registered by an application).
    pub fn from_runtime(runtime: Box<dyn Runtime>) -> Self {
        // FNV-1a: stable across builds and platforms (std's hashers are not).
        let hash = runtime
            .config_text()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let identity = format!("{}/{hash:016x}", runtime.model_type());
        Self { runtime, identity }
    }

    pub fn vocab(&self) -> usize {
        self.runtime.vocab()
    }

    pub fn parameters(&self) -> usize {
        self.runtime.parameters()
    }

    /// Parameters one decode step of `batch` sequences reads: all of them, but of a mixture of
    /// experts only the experts `batch` tokens are expected to route to.
    pub fn parameters_read(&self, batch: usize) -> usize {
        self.runtime.parameters_read(batch)
    }

    /// The architecture's `model_type`.
    pub fn model_type(&self) -> &'static str {
        self.runtime.model_type()
    }

    /// A zero state for `sequences` sequences: the runtime's slots.
    pub fn new_state(&self, dev: &Device, sequences: usize) -> Result<State> {
        State::zeros(dev, sequences, self.runtime.state_slots(sequences), self.identity.clone())
    }

    /// The architecture and a fingerprint of its configuration (`mamba2/9c0e…`): what a state
    /// snapshot records, so that it is only restored into a state of the same model.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Feeds packed tokens like [`Model::forward`] but computes the logits of each sequence's
    /// last token only (`[S, vocab]`): what generation needs after a prompt, and the only way
    /// to prefill long prompts, whose full logits would not fit a binding.
    pub fn prefill(&self, dev: &Device, ids: &[u32], lens: &[usize], state: &mut State) -> Result<Vec<f32>> {
        if lens.contains(&0) {
            return Err(Error::Invalid(format!(
                "prefill: every sequence needs a token, got lengths {lens:?}"
            )));
        }
        self.run(dev, ids, lens, state, true)
    }

    /// Feeds packed token ids (`lens[s]` for sequence s; text becomes ids through the model's
    /// tokenizer, `model::tokenizer`) and returns logits `[T, vocab]`.
    pub fn forward(&self, dev: &Device, ids: &[u32], lens: &[usize], state: &mut State) -> Result<Vec<f32>> {
        self.run(dev, ids, lens, state, false)
    }

    /// The f64 reference of [`Model::forward`] (logits `[T, vocab]`): the same graph evaluated
    /// on the CPU by [`crate::graph::reference`], every weight and state read back from the
    /// device (f16 weights as their f16 values). The oracle of a whole model, prefill or
    /// decode step (the fused decode-step nodes have references too). The state is not
    /// changed.
    pub fn forward_reference(
        &self,
        dev: &Device,
        ids: &[u32],
        lens: &[usize],
        state: &State,
    ) -> Result<Vec<f64>> {
        let (b, logits) = self.forward_graph(dev, ids, lens, state, false)?;
        let mut host = std::collections::HashMap::new();
        for (id, t) in &b.bound {
            let v = match t.dtype() {
                DType::U32 => t.read::<u32>(dev)?.into_iter().map(|x| x as f32).collect(),
                _ => t.read_f32(dev)?,
            };
            host.insert(b.g.desc(*id).name.clone(), v);
        }
        let mut vals = crate::graph::reference::evaluate(&b.g, &host)?;
        Ok(std::mem::take(&mut vals[logits.0]))
    }

    /// One forward pass: checks the batch, records, submits, marks the state started and
    /// reads the logits (of every token, or of each sequence's last token).
    fn run(
        &self,
        dev: &Device,
        ids: &[u32],
        lens: &[usize],
        state: &mut State,
        last_only: bool,
    ) -> Result<Vec<f32>> {
        let (b, logits) = self.forward_graph(dev, ids, lens, state, last_only)?;
        let exe = b.finish(dev, &[logits])?;
        exe.run()?;
        state.started = true;
        state.advance(lens);
        exe.read_output::<f32>(logits)
    }

    /// The graph of a forward pass over `ids` (checked against the state and the vocabulary):
    /// the builder holding it and its logits, of every token or of each sequence's last.
    fn forward_graph(
        &self,
        dev: &Device,
        ids: &[u32],
        lens: &[usize],
        state: &State,
        last_only: bool,
    ) -> Result<(common::Builder, crate::graph::TensorId)> {
        let (t, step) = state.check_batch(ids, lens, self.vocab())?;
        let ids_t = crate::tensor::Tensor::from_slice(dev, &[t], ids)?;
        let rows = if last_only {
            let ends: Vec<u32> = lens
                .iter()
                .scan(0, |acc, &l| {
                    *acc += l as u32;
                    Some(*acc - 1)
                })
                .collect();
            Some(crate::tensor::Tensor::from_slice(dev, &[ends.len()], &ends)?)
        } else {
            None
        };
        let batch = common::Batch::new(dev, &ids_t, lens, step, rows.as_ref())?;
        let mut b = common::Builder::new();
        let logits = self.build(dev, &mut b, &batch, state)?;
        Ok((b, logits))
    }

    /// The graph executor's memory plan of a prefill of `lens` tokens per sequence (last-token
    /// logits) on `state`'s batch: planned activation arenas against one buffer per
    /// activation and the lower bound, plus weight and state bytes.
    pub fn memory_plan(
        &self,
        dev: &Device,
        state: &State,
        lens: &[usize],
    ) -> Result<crate::graph::MemoryReport> {
        let t = common::total_tokens(lens)?;
        if lens.len() != state.sequences() || lens.contains(&0) {
            return Err(Error::Invalid(format!(
                "lengths {lens:?} for a state of {} sequences",
                state.sequences()
            )));
        }
        let ids = crate::tensor::Tensor::empty(dev, &[t], DType::U32)?;
        let rows = crate::tensor::Tensor::empty(dev, &[lens.len()], DType::U32)?;
        let batch = common::Batch::new(dev, &ids, lens, false, Some(&rows))?;
        let mut b = common::Builder::new();
        let logits = self.build(dev, &mut b, &batch, state)?;
        b.g.output(logits);
        Ok(crate::graph::plan(&b.g, &crate::graph::PlanOptions::for_device(dev.caps()))?.report)
    }

    /// Builds the forward pass of `batch` as a graph with the architecture's runtime.
    fn build(
        &self,
        dev: &Device,
        b: &mut common::Builder,
        batch: &common::Batch,
        state: &State,
    ) -> Result<crate::graph::TensorId> {
        if state.owner() != self.identity {
            return Err(Error::Invalid(format!(
                "this state belongs to model {}, not {}",
                state.owner(),
                self.identity()
            )));
        }
        self.runtime.build(dev, b, batch, state)
    }
}

impl State {
    /// An independent copy on the device (to fork a conversation).
    pub fn try_clone(&self, model: &Model, dev: &Device) -> Result<State> {
        let mut out = model.new_state(dev, self.sequences())?;
        out.restore(dev, &self.snapshot(dev)?)?;
        Ok(out)
    }
}

/// A decode step recorded once for a state's batch and replayed: each [`Decoder::step`]
/// writes the token ids, submits the recorded dispatches (one compute pass, one submit, no
/// new buffers or bind groups) and reads the logits. It updates the state it was made from in
/// place, and borrows that state mutably for its lifetime `'s`, so the state cannot be fed
/// through [`Model::forward`] (or restored) while a decoder runs it. `Send`: a decoder may run
/// on another thread.
pub struct Decoder<'d, 's> {
    dev: &'d Device,
    model: &'s Model,
    state: &'s mut State,
    exe: crate::graph::Executable<'d>,
    ids: crate::tensor::Tensor,
    logits: crate::graph::TensorId,
    sequences: usize,
    vocab: usize,
}

impl Model {
    /// Records the decode step for `state` (one token per sequence); the state must have been
    /// started by a prefill.
    pub fn decoder<'d, 's>(&'s self, dev: &'d Device, state: &'s mut State) -> Result<Decoder<'d, 's>> {
        let (b, ids, logits) = self.build_step(dev, state)?;
        let sequences = state.sequences();
        let exe = b.finish(dev, &[logits])?;
        Ok(Decoder { dev, model: self, state, exe, ids, logits, sequences, vocab: self.vocab() })
    }
}

impl Decoder<'_, '_> {
    /// Feeds one token per sequence and returns the logits `[S, vocab]`. When a growing KV
    /// cache is full, the step is recorded again with one more block.
    pub fn step(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.len() != self.sequences {
            return Err(Error::Invalid(format!(
                "{} ids for a decoder of {} sequences",
                ids.len(),
                self.sequences
            )));
        }
        crate::ops::embedding::check_ids(ids, self.vocab)?;
        if self.state.room() == 0 {
            let (b, ids, logits) = self.model.build_step(self.dev, self.state)?;
            (self.exe, self.ids, self.logits) = (b.finish(self.dev, &[logits])?, ids, logits);
        }
        self.ids.write(self.dev, ids)?;
        self.exe.run()?;
        self.state.advance(&vec![1; self.sequences]);
        let logits = self.exe.read_output::<f32>(self.logits)?;
        check_finite(&logits, self.vocab, "a decode step")?;
        Ok(logits)
    }

    /// Dispatches per step.
    pub fn dispatches(&self) -> usize {
        self.exe.dispatches()
    }

    /// Runs one step (on the ids last written) and reports the pass's GPU time, host costs
    /// excluded.
    pub fn gpu_time(&self) -> Result<crate::ops::Timing> {
        self.exe.run_timed()
    }

    /// Runs one step (on the ids last written) with a timestamp after every dispatch: each
    /// graph node's name and GPU seconds (see [`crate::graph::Executable::profile`]).
    pub fn profile(&self) -> Result<Vec<(String, f64)>> {
        self.exe.profile()
    }
}

/// Generation that stays on the GPU: a decode step recorded once with the sampling kernel at
/// its end writing the next token ids into the step's own input, so consecutive steps are
/// submitted back to back with no readback in between (the CPU encodes step k + 1 while the
/// GPU runs step k). Each step's ids are copied into a history buffer, read once at the end.
/// Like [`Decoder`], it updates the state it was made from in place and borrows it mutably
/// for its lifetime; it is `Send`, and a [`CancelToken`] stops it between steps.
pub struct Generator<'d, 's> {
    dev: &'d Device,
    model: &'s Model,
    state: &'s mut State,
    params: SamplingParams,
    cancel: CancelToken,
    exe: crate::graph::Executable<'d>,
    ids: crate::tensor::Tensor,
    /// The sampled ids of a step, copied into `ids` and the history after the pass.
    next: crate::graph::TensorId,
    history: crate::tensor::Tensor,
    /// Whether the step samples (its seed's step counter is set per step) or takes the argmax.
    sampling: bool,
    sequences: usize,
    vocab: usize,
    max_steps: usize,
}

impl Model {
    /// Records a GPU-resident generation loop for `state` (started by a prefill) that can run
    /// up to `max_steps` steps per [`Generator::generate`] call; `params.temperature == 0`
    /// is greedy (argmax).
    pub fn generator<'d, 's>(
        &'s self,
        dev: &'d Device,
        state: &'s mut State,
        params: &SamplingParams,
        max_steps: usize,
    ) -> Result<Generator<'d, 's>> {
        params.validate()?;
        state.reserve(dev, max_steps.max(1))?;
        let (exe, ids, next) = self.generation_step(dev, state, params)?;
        let sequences = state.sequences();
        let history = crate::tensor::Tensor::empty(dev, &[max_steps.max(1), sequences], DType::U32)?;
        Ok(Generator {
            dev,
            model: self,
            state,
            params: *params,
            cancel: CancelToken::default(),
            exe,
            ids,
            next,
            history,
            sampling: params.temperature > 0.0,
            sequences,
            vocab: self.vocab(),
            max_steps: max_steps.max(1),
        })
    }
}

impl Model {
    /// A decode step that ends in sampling (or the argmax): (executable, ids input, next ids).
    fn generation_step<'d>(
        &self,
        dev: &'d Device,
        state: &State,
        params: &SamplingParams,
    ) -> Result<(crate::graph::Executable<'d>, crate::tensor::Tensor, crate::graph::TensorId)> {
        let (mut b, ids, logits) = self.build_step(dev, state)?;
        let next = if params.temperature > 0.0 { b.g.sample(logits, *params)? } else { b.g.argmax(logits)? };
        Ok((b.finish(dev, &[next])?, ids, next))
    }
}

impl Generator<'_, '_> {
    /// A token that stops [`Generator::generate`] between steps when cancelled (from any
    /// thread); it stays cancelled until [`CancelToken::reset`].
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Feeds `first` (one id per sequence) and generates `steps` tokens per sequence; returns
    /// them per sequence. The sampling seed's step counter runs from `step0`. When the cancel
    /// token fires, the steps submitted so far are returned (possibly none).
    pub fn generate(&mut self, first: &[u32], steps: usize, step0: u32) -> Result<Vec<Vec<u32>>> {
        let s = self.sequences;
        if first.len() != s {
            return Err(Error::Invalid(format!("{} ids for a generator of {s} sequences", first.len())));
        }
        if steps > self.max_steps {
            return Err(Error::Invalid(format!(
                "{steps} steps asked of a generator made for {}",
                self.max_steps
            )));
        }
        crate::ops::embedding::check_ids(first, self.vocab)?;
        if self.state.room() < steps {
            // A growing KV cache needs more blocks: record the step again over them.
            self.state.reserve(self.dev, steps)?;
            (self.exe, self.ids, self.next) =
                self.model.generation_step(self.dev, self.state, &self.params)?;
        }
        self.ids.write(self.dev, first)?;
        let bytes = (s * 4) as u64;
        let mut done = 0;
        for k in 0..steps {
            if self.cancel.is_cancelled() {
                break;
            }
            done += 1;
            if self.sampling {
                self.exe.set_sampling_step(step0 + k as u32)?;
            }
            let next = self.exe.tensor(self.next);
            self.exe.submit_then(|enc| {
                enc.copy_buffer_to_buffer(
                    next.buffer(),
                    next.offset(),
                    self.ids.buffer(),
                    self.ids.offset(),
                    bytes,
                );
                enc.copy_buffer_to_buffer(
                    next.buffer(),
                    next.offset(),
                    self.history.buffer(),
                    self.history.offset() + k as u64 * bytes,
                    bytes,
                );
            })?;
        }
        self.dev.wait()?;
        self.state.advance(&vec![done; s]);
        let all: Vec<u32> = self.history.read(self.dev)?;
        let steps = done;
        if let Some(i) = all[..steps * s].iter().position(|&id| id == crate::ops::sampling::NONFINITE_ID) {
            return Err(Error::NonFinite(format!(
                "the logits of sequence {} at generation step {} hold NaN or Inf (non-finite weights or activations)",
                i % s,
                step0 as usize + i / s
            )));
        }
        Ok((0..s).map(|q| (0..steps).map(|k| all[k * s + q]).collect()).collect())
    }

    /// Dispatches per step.
    pub fn dispatches(&self) -> usize {
        self.exe.dispatches()
    }
}

/// Cancels a [`Generator`] between steps; cheap to clone and to share across threads.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn reset(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Model {
    /// The graph of one decode step of `state`'s batch: (builder, ids input [S], logits
    /// [S, vocab]). The state must have been started by a prefill.
    fn build_step(
        &self,
        dev: &Device,
        state: &State,
    ) -> Result<(common::Builder, crate::tensor::Tensor, crate::graph::TensorId)> {
        let (sequences, started) = (state.sequences(), state.started());
        if !started {
            return Err(Error::Invalid(
                "decoding continues a prefill: run Model::forward on the prompt first".into(),
            ));
        }
        let ids = crate::tensor::Tensor::from_slice(dev, &[sequences], &vec![0u32; sequences])?;
        let lens = vec![1; sequences];
        let batch = common::Batch::new(dev, &ids, &lens, true, None)?;
        let mut b = common::Builder::new();
        let logits = self.build(dev, &mut b, &batch, state)?;
        Ok((b, ids, logits))
    }
}
