//! A test-only hybrid architecture, declared in this one file and added with one registry line
//! (`model::arch::register`): a block stack of Mamba-2 mixers, MLP-only blocks and a token-shift
//! mixer defined here, whose state slot is of another kind (`SlotKind::TokenShift`). Its config
//! is typed (serde); random weights come from its own schema; prefill + decode must equal one
//! forward.

use super::{max_abs, scratch, write_checkpoint};
use crate::common::devices;
use linseq::device::Device;
use linseq::graph::TensorId;
use linseq::model::blocks::{Block, Stack, Sublayer};
use linseq::model::common::{check_config, Batch, Builder, Head};
use linseq::model::config::{Config, Size};
use linseq::model::mamba2::{Mamba2Config, Mamba2Mixer};
use linseq::model::mlp::{GatedMlp, MlpSpec};
use linseq::model::schema::{self, Init, WeightSpec};
use linseq::model::weights::Weights;
use linseq::model::{self, Architecture, Runtime, SlotKind, SlotSpec, State};
use linseq::{DType, Result, Tensor};

const MODEL_TYPE: &str = "linseq_test_hybrid";
/// The block list: what the config's `blocks` names, in order.
const BLOCKS: [&str; 5] = ["mamba2", "mlp", "shift", "mamba2", "mlp"];

/// The hybrid's own fields of config.json (the Mamba-2 sizes are read by `Mamba2Config`).
#[derive(serde::Deserialize)]
struct HybridConfig {
    blocks: Vec<BlockKind>,
    intermediate_size: Size,
}

#[derive(serde::Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum BlockKind {
    Mamba2,
    Mlp,
    Shift,
}

/// RMSNorm, then a per-channel mix of this token and the previous one (a width-2 causal conv +
/// silu whose state is the previous token), projected onto the residual.
struct Shift {
    norm: Tensor,
    mix: Tensor,
    out: Tensor,
    eps: f64,
}

impl Sublayer for Shift {
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        vec![SlotSpec::new(layer, "shift", SlotKind::TokenShift, &[s, self.norm.numel(), 1])]
    }
    fn build(
        &self,
        _dev: &Device,
        b: &mut Builder,
        batch: &Batch,
        state: &State,
        i: usize,
        h: TensorId,
    ) -> Result<TensorId> {
        let p = format!("layers.{i}");
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, self.eps)?;
        let xs = batch.conv(b, xn, &self.mix, None, state.slot(i, "shift")?, state.started())?;
        b.linear_add(&format!("{p}.out"), xs, &self.out, None, h)
    }
    fn parameters(&self) -> usize {
        self.norm.numel() + self.mix.numel() + self.out.numel()
    }
}

struct Hybrid {
    c: Mamba2Config,
    stack: Stack,
}

struct HybridArchitecture;
static HYBRID: HybridArchitecture = HybridArchitecture;

/// Every tensor of the checkpoint: what the loader checks and the test writes.
fn schema(c: &Mamba2Config, h: &HybridConfig) -> Vec<WeightSpec> {
    let (d, inter) = (c.d_model, h.intermediate_size.0);
    let mut out = vec![
        WeightSpec::new("backbone.embeddings.weight", &[c.vocab, d], Init::Uniform(-0.1, 0.1)),
        WeightSpec::new("backbone.norm_f.weight", &[d], Init::Uniform(0.9, 1.1)),
    ];
    for (i, kind) in h.blocks.iter().enumerate() {
        let p = format!("backbone.layers.{i}");
        let norm = format!("{p}.norm.weight");
        match kind {
            BlockKind::Mamba2 => out.extend(Mamba2Mixer::schema(c, &norm, &format!("{p}.mixer"))),
            BlockKind::Mlp => {
                out.extend(GatedMlp::schema(&MlpSpec::swiglu(d, inter, c.eps), &norm, &format!("{p}.mlp")))
            }
            BlockKind::Shift => out.extend([
                WeightSpec::new(norm, &[d], Init::Uniform(0.9, 1.1)),
                WeightSpec::new(format!("{p}.shift.mix"), &[d, 1, 2], Init::Uniform(-0.5, 0.5)),
                WeightSpec::new(format!("{p}.shift.out_proj.weight"), &[d, d], Init::FanIn),
            ]),
        }
    }
    out
}

impl Architecture for HybridArchitecture {
    fn model_types(&self) -> &'static [&'static str] {
        &[MODEL_TYPE]
    }
    fn check_config(&self, cfg: &Config) -> Result<()> {
        Mamba2Config::from_config(cfg)?;
        cfg.typed::<HybridConfig>().map(|_| ())
    }
    fn load(
        &self,
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        _progress: &dyn Fn(usize, usize),
    ) -> Result<Box<dyn Runtime>> {
        let c = Mamba2Config::from_config(cfg)?;
        let hc: HybridConfig = cfg.typed()?;
        check_config(w, "backbone.layers.", hc.blocks.len(), c.eps, &schema(&c, &hc))?;
        let (d, inter) = (c.d_model, hc.intermediate_size.0);
        let mut blocks = Vec::new();
        for (i, kind) in hc.blocks.iter().enumerate() {
            let p = format!("backbone.layers.{i}");
            let norm = format!("{p}.norm.weight");
            blocks.push(match kind {
                BlockKind::Mamba2 => {
                    Block::mixer(Mamba2Mixer::load(dev, w, &norm, &format!("{p}.mixer"), &c, dtype)?)
                }
                BlockKind::Mlp => {
                    let spec = MlpSpec::swiglu(d, inter, c.eps);
                    Block::mlp(GatedMlp::load(dev, w, &spec, &norm, &format!("{p}.mlp"), dtype)?)
                }
                BlockKind::Shift => Block::mixer(Shift {
                    norm: w.upload(dev, &norm, &[d], &[d], DType::F32)?,
                    // Stored like a conv1d weight [D, 1, 2]; the conv op takes [D, 2].
                    mix: w.upload(dev, &format!("{p}.shift.mix"), &[d, 1, 2], &[d, 2], DType::F32)?,
                    out: w.upload(dev, &format!("{p}.shift.out_proj.weight"), &[d, d], &[d, d], dtype)?,
                    eps: c.eps,
                }),
            });
        }
        let head = Head::load(dev, w, c.vocab, d, c.tie_embeddings, dtype)?;
        Ok(Box::new(Hybrid { stack: Stack { head, blocks, eps: c.eps }, c }))
    }
}

impl Runtime for Hybrid {
    fn model_type(&self) -> &'static str {
        MODEL_TYPE
    }
    fn vocab(&self) -> usize {
        self.c.vocab
    }
    fn parameters(&self) -> usize {
        self.stack.parameters()
    }
    fn config_text(&self) -> String {
        format!("{:?} blocks {}", self.c, self.stack.blocks.len())
    }
    fn state_slots(&self, s: usize) -> Vec<SlotSpec> {
        self.stack.state_slots(s)
    }
    fn build(&self, dev: &Device, b: &mut Builder, batch: &Batch, state: &State) -> Result<TensorId> {
        self.stack.build(dev, b, batch, state)
    }
}

#[test]
fn a_registered_hybrid_runs_prefill_and_decode_as_one_forward() {
    model::arch::register(&HYBRID); // the one registry line
    let dir = scratch("hybrid");
    let cfg_text = serde_json::json!({
        "model_type": MODEL_TYPE, "hidden_size": 64, "expand": 2, "head_dim": 16, "num_heads": 8,
        "n_groups": 1, "state_size": 16, "conv_kernel": 4, "num_hidden_layers": BLOCKS.len(),
        "vocab_size": 256, "layer_norm_epsilon": 1e-5, "intermediate_size": 96, "chunk_size": 64,
        "tie_word_embeddings": true, "blocks": BLOCKS,
    })
    .to_string();
    let parsed = Config::parse(&cfg_text, "test").unwrap();
    let (c, hc) = (Mamba2Config::from_config(&parsed).unwrap(), parsed.typed::<HybridConfig>().unwrap());
    write_checkpoint(&dir, &cfg_text, &schema::random_tensors(&schema(&c, &hc), 97));
    let text = b"Now is the winter of our discontent made glorious summer";
    let ids: Vec<u32> = text.iter().map(|&b| u32::from(b)).collect();
    for dev in devices() {
        let m = model::load(dev, &dir, DType::F32).unwrap();
        assert_eq!(m.model_type(), MODEL_TYPE);
        let held: usize = schema(&c, &hc).iter().map(|t| t.shape.iter().product::<usize>()).sum();
        assert_eq!(m.parameters(), held, "the stack counts every tensor of the schema once");
        let s = m.new_state(dev, 1).unwrap();
        let kinds: Vec<SlotKind> = s.slots().iter().map(|sl| sl.spec.kind).collect();
        assert!(kinds.contains(&SlotKind::TokenShift) && kinds.contains(&SlotKind::DiagonalSsm), "{kinds:?}");
        // One forward against a prefill of 40 tokens then 1-token steps.
        let mut s = m.new_state(dev, 1).unwrap();
        let full = m.forward(dev, &ids, &[ids.len()], &mut s).unwrap();
        assert!(full.iter().all(|v| v.is_finite()));
        let k = 40;
        let mut s = m.new_state(dev, 1).unwrap();
        let mut stepped = m.forward(dev, &ids[..k], &[k], &mut s).unwrap();
        let snap = s.snapshot(dev).unwrap();
        for &id in &ids[k..] {
            stepped.extend(m.forward(dev, &[id], &[1], &mut s).unwrap());
        }
        let e = max_abs(&full, &stepped);
        assert!(e < 2e-3, "prefill + decode differs from one forward by {e} on {}", dev.describe());
        // The recorded decoder continues a restored snapshot the same way.
        s.restore(dev, &snap).unwrap();
        let mut dec = m.decoder(dev, &mut s).unwrap();
        let vocab = m.vocab();
        for (j, &id) in ids[k..k + 4].iter().enumerate() {
            let got = dec.step(&[id]).unwrap();
            let want = &full[(k + j) * vocab..(k + j + 1) * vocab];
            assert!(max_abs(&got, want) < 2e-3, "decoder step {j}");
        }
        drop(dec);
        // A ragged batch of two equals each alone.
        let mut two = m.new_state(dev, 2).unwrap();
        let both: Vec<u32> = ids.iter().chain(&ids[..9]).copied().collect();
        let batched = m.forward(dev, &both, &[ids.len(), 9], &mut two).unwrap();
        let mut one = m.new_state(dev, 1).unwrap();
        let alone = m.forward(dev, &ids[..9], &[9], &mut one).unwrap();
        assert!(max_abs(&batched[ids.len() * vocab..], &alone) < 1e-4);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
