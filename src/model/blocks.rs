//! Layers as blocks. A block is an optional sequence mixer and an optional MLP, each a
//! residual [`Sublayer`] (its pre-norm inside, reading the residual stream and returning the
//! new one), so that a hybrid is a list of blocks, not a new enum: Mamba is `[mixer, none]`
//! per layer, a transformer `[attention, MLP]`, and a test's hybrid mixes them freely.
//! A [`Stack`] is the whole model: embedding, blocks, final norm and LM head.

use super::common::{Batch, Builder, Head};
use super::state::{SlotSpec, State};
use crate::device::Device;
use crate::error::Result;
use crate::graph::TensorId;

/// One residual part of a block: a sequence mixer (with state slots) or an MLP (without).
pub trait Sublayer: Send + Sync {
    /// The state slots of `sequences` sequences that the sublayer of layer `layer` keeps.
    fn state_slots(&self, _layer: usize, _sequences: usize) -> Vec<SlotSpec> {
        Vec::new()
    }
    /// Adds the sublayer of layer `layer` to `b`: reads the residual `h`, returns the new one.
    fn build(
        &self,
        dev: &Device,
        b: &mut Builder,
        batch: &Batch,
        state: &State,
        layer: usize,
        h: TensorId,
    ) -> Result<TensorId>;
    /// Parameters, as the checkpoint counts them.
    fn parameters(&self) -> usize;
    /// Parameters one decode step of `batch` sequences reads: all of them, but for a mixture
    /// of experts only the experts its tokens are expected to route to.
    fn parameters_read(&self, _batch: usize) -> usize {
        self.parameters()
    }
    /// Whether it reads the state's positions (RoPE, KV caches): the stack then keeps a
    /// positions slot and advances it at the end of every forward pass.
    fn uses_positions(&self) -> bool {
        false
    }
}

/// One layer: a mixer, then an MLP; either may be absent.
#[derive(Default)]
pub struct Block {
    pub mixer: Option<Box<dyn Sublayer>>,
    pub mlp: Option<Box<dyn Sublayer>>,
}

impl Block {
    /// A block of only a mixer (Mamba, Mamba-2).
    pub fn mixer(m: impl Sublayer + 'static) -> Self {
        Self { mixer: Some(Box::new(m)), mlp: None }
    }
    /// A block of only an MLP.
    pub fn mlp(m: impl Sublayer + 'static) -> Self {
        Self { mixer: None, mlp: Some(Box::new(m)) }
    }
    fn parts(&self) -> impl Iterator<Item = &dyn Sublayer> {
        self.mixer.iter().chain(self.mlp.iter()).map(|p| p.as_ref())
    }
}

/// A model as embedding → blocks → final norm → LM head.
pub struct Stack {
    pub head: Head,
    pub blocks: Vec<Block>,
    /// The final norm's epsilon.
    pub eps: f64,
}

impl Stack {
    /// Loads `layers` blocks with `load(i)`, reporting `progress(i, layers)` as it goes.
    pub fn load_blocks(
        layers: usize,
        progress: &dyn Fn(usize, usize),
        mut load: impl FnMut(usize) -> Result<Block>,
    ) -> Result<Vec<Block>> {
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            progress(i, layers);
            blocks.push(load(i)?);
        }
        progress(layers, layers);
        Ok(blocks)
    }

    /// Every block's state slots, in layer order, then the positions when a part uses them.
    pub fn state_slots(&self, sequences: usize) -> Vec<SlotSpec> {
        let per_block = self.blocks.iter().enumerate();
        let mut slots: Vec<SlotSpec> =
            per_block.flat_map(|(i, b)| b.parts().flat_map(move |p| p.state_slots(i, sequences))).collect();
        if self.blocks.iter().flat_map(Block::parts).any(|p| p.uses_positions()) {
            slots.push(SlotSpec::positions(sequences));
        }
        slots
    }

    /// Adds the forward pass of `batch` to `b` and returns the logits `[T, vocab]` (or
    /// `[rows, vocab]`).
    pub fn build(&self, dev: &Device, b: &mut Builder, batch: &Batch, state: &State) -> Result<TensorId> {
        let mut h = self.head.embed(b, batch.ids)?;
        for (i, block) in self.blocks.iter().enumerate() {
            for part in block.parts() {
                h = part.build(dev, b, batch, state, i, h)?;
            }
        }
        let logits = self.head.build(b, h, batch.rows, self.eps)?;
        if let Some(pos) = state.positions() {
            // After every reader of the positions (the logits depend on all of them).
            let pos = b.state("positions", pos);
            let seqs = b.seqs(&batch.seqs);
            let node =
                crate::graph::nodes::AdvanceNode { seqs: crate::graph::nodes::SeqSpec::of(&batch.seqs) };
            b.g.op(node, &[pos, seqs, logits])?;
        }
        Ok(logits)
    }

    /// Parameters (tied embeddings counted once).
    pub fn parameters(&self) -> usize {
        self.head.parameters()
            + self.blocks.iter().flat_map(Block::parts).map(|p| p.parameters()).sum::<usize>()
    }

    /// Parameters one decode step of `batch` sequences reads ([`Sublayer::parameters_read`]).
    pub fn parameters_read(&self, batch: usize) -> usize {
        self.head.parameters()
            + self.blocks.iter().flat_map(Block::parts).map(|p| p.parameters_read(batch)).sum::<usize>()
    }
}
