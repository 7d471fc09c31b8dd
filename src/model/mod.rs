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

pub mod common;
pub mod config;
pub mod conformance;
pub mod generation;
pub mod mamba;
pub mod mamba2;
pub mod random;
pub mod tokenizer;
pub mod weights;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::DType;
use std::path::Path;

pub use common::RecurrentState;
pub use config::Config;
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

/// Architectures this build runs (`model_type` in config.json).
pub const SUPPORTED: &[&str] = &["mamba", "mamba2"];

/// A loaded model.
pub enum Model {
    Mamba(mamba::Mamba),
    Mamba2(mamba2::Mamba2),
}

/// Recurrent state of a batch of sequences.
pub enum State {
    Mamba(mamba::MambaState),
    Mamba2(mamba2::Mamba2State),
}

/// Loads the checkpoint in `dir`, holding matmul weights as `dtype` (f32 or f16).
pub fn load(dev: &Device, dir: &Path, dtype: DType) -> Result<Model> {
    load_with_progress(dev, dir, dtype, &|_, _| {})
}

/// [`load`], calling `progress(layers done, layers)` while uploading.
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
    match kind.as_str() {
        "mamba" => {
            mamba::MambaConfig::from_config(&cfg)?; // config errors first, before the weights
            let w = Weights::open(dir)?;
            Ok(Model::Mamba(mamba::Mamba::load(dev, &cfg, &w, dtype, progress)?))
        }
        "mamba2" => {
            mamba2::Mamba2Config::from_config(&cfg)?;
            let w = Weights::open(dir)?;
            Ok(Model::Mamba2(mamba2::Mamba2::load(dev, &cfg, &w, dtype, progress)?))
        }
        other => Err(Error::Model(format!(
            "{}: model_type `{other}` is not supported (supported: {})",
            dir.display(),
            SUPPORTED.join(", ")
        ))),
    }
}

impl Model {
    pub fn vocab(&self) -> usize {
        match self {
            Model::Mamba(m) => m.cfg.vocab,
            Model::Mamba2(m) => m.cfg.vocab,
        }
    }

    pub fn parameters(&self) -> usize {
        match self {
            Model::Mamba(m) => m.parameters(),
            Model::Mamba2(m) => m.parameters(),
        }
    }

    /// A zero state for `sequences` sequences.
    pub fn new_state(&self, dev: &Device, sequences: usize) -> Result<State> {
        let mut state = match self {
            Model::Mamba(m) => State::Mamba(m.new_state(dev, sequences)?),
            Model::Mamba2(m) => State::Mamba2(m.new_state(dev, sequences)?),
        };
        state.inner_mut().owner = self.identity();
        Ok(state)
    }

    /// The architecture and a fingerprint of its configuration (`mamba2/9c0e…`): what a state
    /// snapshot records, so that it is only restored into a state of the same model.
    pub fn identity(&self) -> String {
        let (kind, cfg) = match self {
            Model::Mamba(m) => ("mamba", format!("{:?}", m.cfg)),
            Model::Mamba2(m) => ("mamba2", format!("{:?}", m.cfg)),
        };
        // FNV-1a: stable across builds and platforms (std's hashers are not).
        let hash =
            cfg.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        format!("{kind}/{hash:016x}")
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
        let (t, step) = state.inner().check_batch(ids, lens, self.vocab())?;
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
        let exe = b.finish(dev, &[logits])?;
        exe.run()?;
        state.inner_mut().started = true;
        exe.read_output::<f32>(logits)
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
        match (self, state) {
            (Model::Mamba(m), State::Mamba(s)) => m.build(dev, b, batch, s),
            (Model::Mamba2(m), State::Mamba2(s)) => m.build(dev, b, batch, s),
            _ => Err(Error::Invalid("this state belongs to a model of another architecture".into())),
        }
    }
}

/// A host copy of a [`State`]: fixed size whatever the sequence length, so saving, restoring
/// and forking a conversation is cheap (attention models would have to copy a growing KV
/// cache).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// (name, shape, values) of every state tensor.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub sequences: usize,
    pub started: bool,
    /// The model it was taken from ([`Model::identity`]).
    pub model: String,
}

impl State {
    fn inner(&self) -> &common::RecurrentState {
        match self {
            State::Mamba(s) | State::Mamba2(s) => s,
        }
    }

    fn inner_mut(&mut self) -> &mut common::RecurrentState {
        match self {
            State::Mamba(s) | State::Mamba2(s) => s,
        }
    }

    /// Number of sequences this state holds.
    pub fn sequences(&self) -> usize {
        self.inner().sequences
    }

    /// Copies the state to the host.
    pub fn snapshot(&self, dev: &Device) -> Result<Snapshot> {
        let RecurrentState { conv, ssm, sequences, started, owner } = self.inner();
        let (sequences, started) = (*sequences, *started);
        let mut tensors = Vec::new();
        for (kind, list) in [("conv", conv), ("ssm", ssm)] {
            for (i, t) in list.iter().enumerate() {
                tensors.push((format!("{kind}.{i}"), t.shape().to_vec(), t.read::<f32>(dev)?));
            }
        }
        Ok(Snapshot { tensors, sequences, started, model: owner.clone() })
    }

    /// Bytes the state holds on the device.
    pub fn bytes(&self) -> u64 {
        self.inner().bytes()
    }

    /// Overwrites this state with a snapshot taken from a state of the same model and size.
    /// Everything is checked before anything is written: a refused snapshot leaves the state
    /// as it was.
    pub fn restore(&mut self, dev: &Device, snap: &Snapshot) -> Result<()> {
        let inner = self.inner_mut();
        if snap.model != inner.owner {
            return Err(Error::Invalid(format!(
                "the snapshot belongs to model {}, this state to {}",
                if snap.model.is_empty() { "(unrecorded)" } else { &snap.model },
                inner.owner
            )));
        }
        let sequences = inner.sequences;
        let targets: Vec<&crate::tensor::Tensor> = inner.conv.iter().chain(&inner.ssm).collect();
        if sequences != snap.sequences || targets.len() != snap.tensors.len() {
            return Err(Error::Invalid(format!(
                "snapshot of {} sequences / {} tensors does not fit a state of {sequences} / {}",
                snap.sequences,
                snap.tensors.len(),
                targets.len()
            )));
        }
        for (t, (name, shape, data)) in targets.iter().zip(&snap.tensors) {
            if t.shape() != shape.as_slice() || data.len() != t.numel() {
                return Err(Error::Invalid(format!(
                    "snapshot tensor {name} is {shape:?} with {} values, the state's is {:?}",
                    data.len(),
                    t.shape()
                )));
            }
        }
        for (t, (_, _, data)) in targets.iter().zip(&snap.tensors) {
            t.write(dev, data)?;
        }
        inner.started = snap.started;
        Ok(())
    }

    /// An independent copy on the device (to fork a conversation).
    pub fn try_clone(&self, model: &Model, dev: &Device) -> Result<State> {
        let mut out = model.new_state(dev, self.sequences())?;
        out.restore(dev, &self.snapshot(dev)?)?;
        Ok(out)
    }
}

impl Snapshot {
    /// Writes the snapshot as a safetensors file (tensors `conv.i`, `ssm.i`; metadata
    /// `sequences`, `started`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<Vec<u8>> =
            self.tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let mut views = Vec::new();
        for ((name, shape, _), b) in self.tensors.iter().zip(&bytes) {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            views.push((name.clone(), view));
        }
        let meta = std::collections::HashMap::from([
            ("sequences".to_string(), self.sequences.to_string()),
            ("started".to_string(), self.started.to_string()),
            ("model".to_string(), self.model.clone()),
        ]);
        safetensors::serialize_to_file(views, Some(meta), path)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))
    }

    /// Reads a snapshot written by [`Snapshot::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let info = meta.metadata().clone().unwrap_or_default();
        let sequences = info.get("sequences").and_then(|s| s.parse().ok()).ok_or_else(|| {
            Error::Model(format!("{}: not a linseq state snapshot (no `sequences`)", path.display()))
        })?;
        let started = info.get("started").is_some_and(|s| s == "true");
        let model = info.get("model").cloned().unwrap_or_default();
        let mut tensors = Vec::new();
        for kind in ["conv", "ssm"] {
            for i in 0.. {
                let name = format!("{kind}.{i}");
                let Ok(t) = st.tensor(&name) else { break };
                let v =
                    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                tensors.push((name, t.shape().to_vec(), v));
            }
        }
        Ok(Self { tensors, sequences, started, model })
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
    _state: std::marker::PhantomData<&'s mut State>,
    exe: crate::graph::Executable<'d>,
    ids: crate::tensor::Tensor,
    logits: crate::graph::TensorId,
    sequences: usize,
    vocab: usize,
}

impl Model {
    /// Records the decode step for `state` (one token per sequence); the state must have been
    /// started by a prefill.
    pub fn decoder<'d, 's>(&self, dev: &'d Device, state: &'s mut State) -> Result<Decoder<'d, 's>> {
        let (b, ids, logits) = self.build_step(dev, state)?;
        let sequences = state.sequences();
        let exe = b.finish(dev, &[logits])?;
        Ok(Decoder {
            dev,
            _state: std::marker::PhantomData,
            exe,
            ids,
            logits,
            sequences,
            vocab: self.vocab(),
        })
    }
}

impl Decoder<'_, '_> {
    /// Feeds one token per sequence and returns the logits `[S, vocab]`.
    pub fn step(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.len() != self.sequences {
            return Err(Error::Invalid(format!(
                "{} ids for a decoder of {} sequences",
                ids.len(),
                self.sequences
            )));
        }
        crate::ops::embedding::check_ids(ids, self.vocab)?;
        self.ids.write(self.dev, ids)?;
        self.exe.run()?;
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
    _state: std::marker::PhantomData<&'s mut State>,
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
        &self,
        dev: &'d Device,
        state: &'s mut State,
        params: &SamplingParams,
        max_steps: usize,
    ) -> Result<Generator<'d, 's>> {
        params.validate()?;
        let (mut b, ids, logits) = self.build_step(dev, state)?;
        let sequences = state.sequences();
        let history = crate::tensor::Tensor::empty(dev, &[max_steps.max(1), sequences], DType::U32)?;
        let next = if params.temperature > 0.0 { b.g.sample(logits, *params)? } else { b.g.argmax(logits)? };
        let exe = b.finish(dev, &[next])?;
        Ok(Generator {
            dev,
            _state: std::marker::PhantomData,
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

impl Generator<'_, '_> {
    /// A token that stops [`Generator::generate`] between steps when cancelled (from any
    /// thread); it stays cancelled until [`CancelToken::reset`].
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Feeds `first` (one id per sequence) and generates `steps` tokens per sequence; returns
    /// them per sequence. The sampling seed's step counter runs from `step0`. When the cancel
    /// token fires, the steps submitted so far are returned (possibly none).
    pub fn generate(&self, first: &[u32], steps: usize, step0: u32) -> Result<Vec<Vec<u32>>> {
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
        let RecurrentState { sequences, started, .. } = *state.inner();
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
