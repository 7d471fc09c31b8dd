//! Recurrent state as a list of per-layer named slots, whatever the architecture: a conv
//! window, a diagonal SSM state, a matrix state `[S, H, K, V]`, an attention KV cache (a ring of
//! W positions, or storage growing in fixed blocks) or a token shift. Snapshot, restore, clone
//! and save/load work over the slots generically; a state and its snapshots record which model
//! (and configuration) they belong to.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use std::path::Path;

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

/// One slot on the device: fixed-size kinds hold one tensor; `KvBlocks` one per block.
#[derive(Debug, Clone)]
pub struct Slot {
    pub spec: SlotSpec,
    pub tensors: Vec<Tensor>,
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
}

impl State {
    /// Zeroed slots for `sequences` sequences of the model `owner`. Every size is checked (no
    /// overflow, within the device's binding limit) before anything is allocated; wgpu
    /// zero-initialises buffers, so nothing is built on the host.
    pub fn zeros(dev: &Device, sequences: usize, specs: Vec<SlotSpec>, owner: String) -> Result<Self> {
        if sequences == 0 {
            return Err(Error::Invalid("a state needs at least one sequence".into()));
        }
        let max = dev.caps().max_storage_buffer_binding_size.min(dev.caps().max_buffer_size);
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
                SlotKind::KvBlocks { .. } => Vec::new(), // blocks are added as the cache grows
                _ => vec![Tensor::empty(dev, &spec.shape, spec.dtype())?],
            };
            slots.push(Slot { spec, tensors });
        }
        Ok(Self { slots, sequences, started: false, owner })
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
        self.slots
            .iter()
            .find(|s| s.spec.layer == layer && s.spec.name == name)
            .and_then(|s| s.tensors.first())
            .ok_or_else(|| Error::Invalid(format!("this state has no slot {layer}.{name}")))
    }

    /// The positions tensor `[S]` u32, when the model keeps one (attention layers).
    pub fn positions(&self) -> Option<&Tensor> {
        self.slots.iter().find(|s| s.spec.kind == SlotKind::Positions).and_then(|s| s.tensors.first())
    }

    /// Bytes the state holds on the device.
    pub fn bytes(&self) -> u64 {
        self.slots.iter().flat_map(|s| &s.tensors).map(|t| (t.numel() * 4) as u64).sum()
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
            for (b, t) in s.tensors.iter().enumerate() {
                let name = if s.tensors.len() > 1 { format!("{}.{b}", s.spec.key()) } else { s.spec.key() };
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
        let targets: Vec<&Tensor> = self.slots.iter().flat_map(|s| &s.tensors).collect();
        if self.sequences != snap.sequences || targets.len() != snap.tensors.len() {
            return Err(Error::Invalid(format!(
                "snapshot of {} sequences / {} tensors does not fit a state of {} / {}",
                snap.sequences,
                snap.tensors.len(),
                self.sequences,
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
            t.reinterpret(DType::F32)?.write(dev, data)?;
        }
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
