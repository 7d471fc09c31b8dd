//! Recurrent state as a list of per-layer named slots, whatever the architecture: a conv
//! window, a diagonal SSM state, a matrix state `[S, H, K, V]`, an attention KV cache (a ring of
//! W positions, or storage growing in fixed blocks) or a token shift. Snapshot, restore, clone
//! and save/load work over the slots generically; a state and its snapshots record which model
//! (and configuration) they belong to.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use std::path::Path;
use std::sync::Mutex;

/// What a slot holds (how it grows, and what a reader of a snapshot should expect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// The last W − 1 inputs of a causal conv, `[S, C, W − 1]`.
    ConvWindow,
    /// A diagonal (per-channel) SSM state, `[S, D, N]` or `[S, H, P, N]`.
    DiagonalSsm,
    /// A matrix-valued state per head, `[S, H, K, V]` (linear attention, the delta rule).
    MatrixState,
    /// An attention KV cache of the last `window` positions, a ring: fixed size.
    KvRing { window: usize },
    /// An attention KV cache that grows in blocks of `block` positions (never reallocated).
    KvBlocks { block: usize },
    /// The previous token's activations, `[S, C]` (token shift).
    TokenShift,
    /// Positions cached per sequence, `[S]` u32 (what RoPE and the KV caches index by).
    Positions,
}

/// A slot a runtime asks for: its layer, its name within the layer and its shape (S first).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotSpec {
    pub layer: usize,
    pub name: &'static str,
    pub kind: SlotKind,
    pub shape: Vec<usize>,
}

impl SlotSpec {
    pub fn new(layer: usize, name: &'static str, kind: SlotKind, shape: &[usize]) -> Self {
        Self { layer, name, kind, shape: shape.to_vec() }
    }

    /// The positions slot of `sequences` sequences (one per model, keyed `0.positions`).
    pub fn positions(sequences: usize) -> Self {
        Self::new(0, "positions", SlotKind::Positions, &[sequences])
    }

    /// The dtype of the slot's tensors: u32 positions, f32 everything else.
    pub fn dtype(&self) -> DType {
        match self.kind {
            SlotKind::Positions => DType::U32,
            _ => DType::F32,
        }
    }

    /// `layer.name`, the slot's key in snapshots.
    pub fn key(&self) -> String {
        format!("{}.{}", self.layer, self.name)
    }
}

/// One slot on the device: fixed-size kinds hold one tensor; `KvBlocks` one per block
/// allocated so far (behind a lock: a graph built from a shared `&State` may add blocks).
#[derive(Debug)]
pub struct Slot {
    pub spec: SlotSpec,
    tensors: Vec<Tensor>,
    blocks: Mutex<Vec<Tensor>>,
}

impl Slot {
    /// The slot's tensors now (a growing cache's blocks so far).
    pub fn tensors(&self) -> Vec<Tensor> {
        match self.spec.kind {
            SlotKind::KvBlocks { .. } => self.lock().clone(),
            _ => self.tensors.clone(),
        }
    }

    /// A growing cache's blocks, allocating (zeroed) blocks until they hold `positions`
    /// positions per sequence.
    fn grow(&self, dev: &Device, positions: usize) -> Result<Vec<Tensor>> {
        let (layer, name) = (self.spec.layer, self.spec.name);
        let SlotKind::KvBlocks { block } = self.spec.kind else {
            return Err(Error::Invalid(format!("state slot {layer}.{name} is not a growing KV cache")));
        };
        let capacity = block * crate::ops::attention::KV_BLOCKS;
        if positions > capacity {
            return Err(Error::Limit(format!(
                "{positions} positions exceed the {capacity} the KV cache of layer {layer} holds \
                 ({} blocks of {block}: the model's max_position_embeddings, rounded up, or what one \
                 binding holds for this many sequences)",
                crate::ops::attention::KV_BLOCKS
            )));
        }
        let mut blocks = self.lock();
        while blocks.len() * block < positions {
            blocks.push(Tensor::empty(dev, &self.spec.shape, self.spec.dtype())?);
        }
        Ok(blocks.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tensor>> {
        // A panic while holding the lock cannot leave the list half-changed (pushes only).
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Recurrent state of a batch of sequences.
#[derive(Debug)]
pub struct State {
    slots: Vec<Slot>,
    sequences: usize,
    /// False until the first tokens went through (prefill then starts from zero).
    pub(crate) started: bool,
    /// The model it belongs to ([`crate::model::Model::identity`]).
    owner: String,
    /// The host's count of positions each sequence has cached (the device keeps its own in
    /// the positions slot): what growing caches are sized by.
    cached: Vec<usize>,
}

impl State {
    /// Zeroed slots for `sequences` sequences of the model `owner`. Every size is checked (no
    /// overflow, within the device's binding limit) before anything is allocated; wgpu
    /// zero-initialises buffers, so nothing is built on the host. A growing cache's spec is
    /// the shape of one block; its blocks are allocated as positions reach them.
    pub fn zeros(dev: &Device, sequences: usize, specs: Vec<SlotSpec>, owner: String) -> Result<Self> {
        if sequences == 0 {
            return Err(Error::Invalid("a state needs at least one sequence".into()));
        }
        let max = dev.caps().max_storage_buffer_binding_size.min(dev.caps().max_buffer_size);
        let mut specs = specs;
        for s in &mut specs {
            // A growing cache's blocks shrink (in whole 64-position tiles) until one fits a
            // binding: a big batch holds fewer positions, and says so when it runs out.
            if let SlotKind::KvBlocks { block } = s.kind {
                let per_position = s
                    .shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 1)
                    .map(|(_, &d)| d as u64)
                    .product::<u64>()
                    * 4;
                let fits = (max / per_position.max(1)) as usize / 64 * 64;
                if fits > 0 && fits < block {
                    log::warn!(
                        "state slot {}: blocks of {fits} positions, not {block}, fit one binding ({max} bytes) for {sequences} sequences",
                        s.key()
                    );
                    s.kind = SlotKind::KvBlocks { block: fits };
                    s.shape[1] = fits;
                }
            }
        }
        for s in &specs {
            let bytes = s.shape.iter().try_fold(4u64, |b, &d| b.checked_mul(d as u64));
            if bytes.is_none_or(|b| b > max) {
                return Err(Error::Limit(format!(
                    "state slot {} {:?} needs more than one binding allows ({max} bytes)",
                    s.key(),
                    s.shape
                )));
            }
            if s.shape.first() != Some(&sequences) {
                return Err(Error::Invalid(format!(
                    "state slot {} {:?} must start with {sequences} sequences",
                    s.key(),
                    s.shape
                )));
            }
        }
        let mut slots = Vec::with_capacity(specs.len());
        for spec in specs {
            let tensors = match spec.kind {
                SlotKind::KvBlocks { .. } => Vec::new(),
                _ => vec![Tensor::empty(dev, &spec.shape, spec.dtype())?],
            };
            slots.push(Slot { spec, tensors, blocks: Mutex::new(Vec::new()) });
        }
        Ok(Self { slots, sequences, started: false, owner, cached: vec![0; sequences] })
    }

    /// The spec of slot `name` of `layer` (as allocated: a growing cache's block may be
    /// smaller than the runtime asked for).
    pub fn slot_spec(&self, layer: usize, name: &str) -> Option<&SlotSpec> {
        self.find(layer, name).ok().map(|s| &s.spec)
    }

    /// Positions each sequence has cached, as the host counts them.
    pub fn cached_positions(&self) -> &[usize] {
        &self.cached
    }

    /// Counts `lens[s]` more positions for each sequence (after a pass went through).
    pub(crate) fn advance(&mut self, lens: &[usize]) {
        for (c, l) in self.cached.iter_mut().zip(lens) {
            *c += l;
        }
    }

    /// Slot `name` of `layer`.
    fn find(&self, layer: usize, name: &str) -> Result<&Slot> {
        self.slots
            .iter()
            .find(|s| s.spec.layer == layer && s.spec.name == name)
            .ok_or_else(|| Error::Invalid(format!("this state has no slot {layer}.{name}")))
    }

    /// The blocks of growing cache `name` of `layer`, allocating (zeroed) blocks until they
    /// hold `positions` positions per sequence. Blocks already there are never moved.
    pub fn kv_blocks(&self, dev: &Device, layer: usize, name: &str, positions: usize) -> Result<Vec<Tensor>> {
        self.find(layer, name)?.grow(dev, positions)
    }

    /// Allocates every growing cache's blocks for `steps` more positions of each sequence.
    pub(crate) fn reserve(&self, dev: &Device, steps: usize) -> Result<()> {
        let need = self.cached.iter().max().copied().unwrap_or(0).saturating_add(steps);
        for s in self.slots.iter().filter(|s| matches!(s.spec.kind, SlotKind::KvBlocks { .. })) {
            s.grow(dev, need)?;
        }
        Ok(())
    }

    /// Positions every sequence can still add before a growing cache needs another block
    /// (`usize::MAX` without growing caches).
    pub(crate) fn room(&self) -> usize {
        let most = self.cached.iter().max().copied().unwrap_or(0);
        self.slots
            .iter()
            .filter_map(|s| match s.spec.kind {
                SlotKind::KvBlocks { block } => Some((s.lock().len() * block).saturating_sub(most)),
                _ => None,
            })
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Number of sequences this state holds.
    pub fn sequences(&self) -> usize {
        self.sequences
    }

    /// Whether tokens went through it (a prefill then continues it).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The model it belongs to.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The tensor of slot `name` of `layer` (fixed-size kinds).
    pub fn slot(&self, layer: usize, name: &str) -> Result<&Tensor> {
        self.find(layer, name)?.tensors.first().ok_or_else(|| {
            Error::Invalid(format!("state slot {layer}.{name} is a growing cache: see State::kv_blocks"))
        })
    }

    /// The positions tensor `[S]` u32, when the model keeps one (attention layers).
    pub fn positions(&self) -> Option<&Tensor> {
        self.slots.iter().find(|s| s.spec.kind == SlotKind::Positions).and_then(|s| s.tensors.first())
    }

    /// Bytes the state holds on the device.
    pub fn bytes(&self) -> u64 {
        self.slots.iter().flat_map(|s| s.tensors()).map(|t| (t.numel() * 4) as u64).sum()
    }

    /// Checks a forward call's ids and lengths against this state and the vocabulary; returns
    /// (tokens, whether this is a decode step: one token per sequence of a started state).
    pub(crate) fn check_batch(&self, ids: &[u32], lens: &[usize], vocab: usize) -> Result<(usize, bool)> {
        let t = super::common::total_tokens(lens)?;
        if lens.len() != self.sequences || t != ids.len() || t == 0 {
            return Err(Error::Invalid(format!(
                "{} ids for sequence lengths {lens:?} and a state of {} sequences",
                ids.len(),
                self.sequences
            )));
        }
        crate::ops::embedding::check_ids(ids, vocab)?;
        Ok((t, self.started && lens.iter().all(|&l| l == 1)))
    }

    /// Copies the state to the host.
    pub fn snapshot(&self, dev: &Device) -> Result<Snapshot> {
        let mut tensors = Vec::new();
        for s in &self.slots {
            for (b, t) in s.tensors().iter().enumerate() {
                let name = match s.spec.kind {
                    SlotKind::KvBlocks { .. } => format!("{}.{b}", s.spec.key()),
                    _ => s.spec.key(),
                };
                // u32 positions travel as their bits in f32 words, as every slot does.
                tensors.push((name, t.shape().to_vec(), t.reinterpret(DType::F32)?.read::<f32>(dev)?));
            }
        }
        Ok(Snapshot { tensors, sequences: self.sequences, started: self.started, model: self.owner.clone() })
    }

    /// Overwrites this state with a snapshot of a state of the same model and size. Everything
    /// is checked before anything is written: a refused snapshot leaves the state as it was.
    pub fn restore(&mut self, dev: &Device, snap: &Snapshot) -> Result<()> {
        if snap.model != self.owner {
            return Err(Error::Invalid(format!(
                "the snapshot belongs to model {}, this state to {}",
                if snap.model.is_empty() { "(unrecorded)" } else { &snap.model },
                self.owner
            )));
        }
        if self.sequences != snap.sequences {
            return Err(Error::Invalid(format!(
                "a snapshot of {} sequences does not fit a state of {}",
                snap.sequences, self.sequences
            )));
        }
        // Each slot's entries: one, or a growing cache's `key.0`, `key.1`, … (as many as the
        // snapshot has; blocks are allocated or dropped to match).
        let mut rest = snap.tensors.as_slice();
        let mut plan = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let n = match s.spec.kind {
                SlotKind::KvBlocks { .. } => {
                    let prefix = format!("{}.", s.spec.key());
                    rest.iter().take_while(|(name, ..)| name.starts_with(&prefix)).count()
                }
                _ => 1,
            };
            if n > rest.len() || n > crate::ops::attention::KV_BLOCKS {
                return Err(Error::Invalid(format!("the snapshot lacks state slot {}", s.spec.key())));
            }
            let (mine, tail) = rest.split_at(n);
            for (name, shape, data) in mine {
                if *shape != s.spec.shape || data.len() != s.spec.shape.iter().product::<usize>() {
                    return Err(Error::Invalid(format!(
                        "snapshot tensor {name} is {shape:?} with {} values, the state's is {:?}",
                        data.len(),
                        s.spec.shape
                    )));
                }
            }
            plan.push(mine);
            rest = tail;
        }
        if let Some((name, ..)) = rest.first() {
            return Err(Error::Invalid(format!("snapshot tensor {name} has no slot in this state")));
        }
        let cached = self.slots.iter().zip(&plan).find(|(s, _)| s.spec.kind == SlotKind::Positions);
        for (s, mine) in self.slots.iter().zip(&plan) {
            let targets = match s.spec.kind {
                SlotKind::KvBlocks { .. } => {
                    let mut blocks = s.lock();
                    blocks.truncate(mine.len());
                    while blocks.len() < mine.len() {
                        blocks.push(Tensor::empty(dev, &s.spec.shape, s.spec.dtype())?);
                    }
                    blocks.clone()
                }
                _ => s.tensors.clone(),
            };
            for (t, (_, _, data)) in targets.iter().zip(mine.iter()) {
                t.reinterpret(DType::F32)?.write(dev, data)?;
            }
        }
        self.cached = match cached {
            // u32 positions travel as their bits in f32 words.
            Some((_, [(_, _, data)])) => data.iter().map(|x| x.to_bits() as usize).collect(),
            _ => vec![0; self.sequences],
        };
        self.started = snap.started;
        Ok(())
    }
}

/// A host copy of a [`State`]: every slot's tensors, the batch size, whether it was started,
/// and the model it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// (slot key, shape, values) of every state tensor.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub sequences: usize,
    pub started: bool,
    /// The model it was taken from ([`crate::model::Model::identity`]).
    pub model: String,
}

impl Snapshot {
    /// Writes the snapshot as a safetensors file (one tensor per slot, in slot order;
    /// metadata `sequences`, `started`, `model`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<Vec<u8>> =
            self.tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let mut views = Vec::new();
        let order: Vec<String> = self.tensors.iter().map(|t| t.0.clone()).collect();
        for ((name, shape, _), b) in self.tensors.iter().zip(&bytes) {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            views.push((name.clone(), view));
        }
        let meta = std::collections::HashMap::from([
            ("sequences".to_string(), self.sequences.to_string()),
            ("started".to_string(), self.started.to_string()),
            ("model".to_string(), self.model.clone()),
            ("order".to_string(), order.join(",")),
        ]);
        safetensors::serialize_to_file(views, Some(meta), path)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))
    }

    /// Reads a snapshot written by [`Snapshot::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let err = |e: String| Error::Model(format!("{}: {e}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
        let info = meta.metadata().clone().unwrap_or_default();
        let sequences = info
            .get("sequences")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("not a linseq state snapshot (no `sequences`)".into()))?;
        let started = info.get("started").is_some_and(|s| s == "true");
        let model = info.get("model").cloned().unwrap_or_default();
        let order = info.get("order").cloned().unwrap_or_default();
        let mut tensors = Vec::new();
        for name in order.split(',').filter(|n| !n.is_empty()) {
            let t = st.tensor(name).map_err(|e| err(format!("{name}: {e}")))?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(err(format!("{name}: a state tensor must be f32")));
            }
            let v = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            tensors.push((name.to_string(), t.shape().to_vec(), v));
        }
        Ok(Self { tensors, sequences, started, model })
    }
}
