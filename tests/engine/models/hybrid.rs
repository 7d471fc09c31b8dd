//! A test-only hybrid architecture, declared in this one file and added with one registry line
//! (`model::arch::register`): Mamba-2 blocks interleaved with an MLP-only block and a
//! token-shift block, whose state slot is of another kind (`SlotKind::TokenShift`). Random
//! weights from its own schema; prefill + decode must equal one forward.

use super::{max_abs, scratch, write_checkpoint};
use crate::common::devices;
use linseq::device::Device;
use linseq::graph::TensorId;
use linseq::model::common::{check_config, Batch, Builder, Head};
use linseq::model::config::Config;
use linseq::model::mamba2::{Mamba2Block, Mamba2Config};
use linseq::model::schema::{self, Init, WeightSpec};
use linseq::model::weights::Weights;
use linseq::model::{self, Architecture, Runtime, SlotKind, SlotSpec, State};
use linseq::ops::elementwise::Binary;
use linseq::{DType, Error, Result, Tensor};

const MODEL_TYPE: &str = "linseq_test_hybrid";
/// The block list: what the config's `blocks` names, in order.
const BLOCKS: [&str; 5] = ["mamba2", "mlp", "shift", "mamba2", "mlp"];

enum Block {
    Mamba2(Box<Mamba2Block>),
    /// RMSNorm, then down(silu(gate(x)) ⊙ up(x)) onto the residual.
    Mlp {
        norm: Tensor,
        gate: Tensor,
        up: Tensor,
        down: Tensor,
    },
    /// RMSNorm, then a per-channel mix of this token and the previous one (a width-2 causal
    /// conv + silu whose state is the previous token), projected onto the residual.
    Shift {
        norm: Tensor,
        mix: Tensor,
        out: Tensor,
    },
}

struct Hybrid {
    c: Mamba2Config,
    inter: usize,
    head: Head,
    blocks: Vec<Block>,
}

struct HybridArchitecture;
static HYBRID: HybridArchitecture = HybridArchitecture;

fn blocks(cfg: &Config) -> Result<Vec<String>> {
    let list = cfg.json["blocks"].as_array().ok_or_else(|| Error::Model("`blocks` must be a list".into()))?;
    list.iter()
        .map(|b| match b.as_str() {
            Some(k @ ("mamba2" | "mlp" | "shift")) => Ok(k.to_string()),
            other => Err(Error::Model(format!("unknown block {other:?}"))),
        })
        .collect()
}

/// Every tensor of the checkpoint: what the loader checks and the test writes.
fn schema(c: &Mamba2Config, inter: usize, kinds: &[String]) -> Vec<WeightSpec> {
    let d = c.d_model;
    let norm = |p: &str| WeightSpec::new(format!("{p}.norm.weight"), &[d], Init::Uniform(0.9, 1.1));
    let mut out = vec![
        WeightSpec::new("backbone.embeddings.weight", &[c.vocab, d], Init::Uniform(-0.1, 0.1)),
        WeightSpec::new("backbone.norm_f.weight", &[d], Init::Uniform(0.9, 1.1)),
    ];
    for (i, kind) in kinds.iter().enumerate() {
        let p = format!("backbone.layers.{i}");
        match kind.as_str() {
            "mamba2" => {
                out.extend(Mamba2Block::schema(c, &format!("{p}.norm.weight"), &format!("{p}.mixer")))
            }
            "mlp" => out.extend([
                norm(&p),
                WeightSpec::new(format!("{p}.mlp.gate_proj.weight"), &[inter, d], Init::FanIn),
                WeightSpec::new(format!("{p}.mlp.up_proj.weight"), &[inter, d], Init::FanIn),
                WeightSpec::new(format!("{p}.mlp.down_proj.weight"), &[d, inter], Init::FanIn),
            ]),
            _ => out.extend([
                norm(&p),
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
        blocks(cfg).map(|_| ())
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
        let kinds = blocks(cfg)?;
        let inter = cfg.usize("intermediate_size")?;
        check_config(w, "backbone.layers.", kinds.len(), c.eps, &schema(&c, inter, &kinds))?;
        let get = |name: &str, shape: &[usize], dt: DType| {
            let (v, _) = w.f32(name, Some(shape))?;
            Tensor::from_f32(dev, shape, &v, dt)
        };
        let d = c.d_model;
        let mut out = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let p = format!("backbone.layers.{i}");
            let norm = || get(&format!("{p}.norm.weight"), &[d], DType::F32);
            out.push(match kind.as_str() {
                "mamba2" => Block::Mamba2(Box::new(Mamba2Block::load(
                    dev,
                    w,
                    &format!("{p}.norm.weight"),
                    &format!("{p}.mixer"),
                    &c,
                    dtype,
                )?)),
                "mlp" => Block::Mlp {
                    norm: norm()?,
                    gate: get(&format!("{p}.mlp.gate_proj.weight"), &[inter, d], dtype)?,
                    up: get(&format!("{p}.mlp.up_proj.weight"), &[inter, d], dtype)?,
                    down: get(&format!("{p}.mlp.down_proj.weight"), &[d, inter], dtype)?,
                },
                _ => Block::Shift {
                    norm: norm()?,
                    mix: {
                        // Stored like a conv1d weight [D, 1, 2]; the conv op takes [D, 2].
                        let (v, _) = w.f32(&format!("{p}.shift.mix"), Some(&[d, 1, 2]))?;
                        Tensor::from_f32(dev, &[d, 2], &v, DType::F32)?
                    },
                    out: get(&format!("{p}.shift.out_proj.weight"), &[d, d], dtype)?,
                },
            });
        }
        let head = Head::load(dev, w, c.vocab, d, c.tie_embeddings, dtype)?;
        Ok(Box::new(Hybrid { c, inter, head, blocks: out }))
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
        self.blocks.len() * self.inter // not needed by the test beyond being a number
    }
    fn config_text(&self) -> String {
        format!("{:?} inter {} blocks {}", self.c, self.inter, self.blocks.len())
    }
    fn state_slots(&self, s: usize) -> Vec<SlotSpec> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            match b {
                Block::Mamba2(_) => out.extend(Mamba2Block::state_slots(&self.c, i, s)),
                Block::Mlp { .. } => {}
                Block::Shift { .. } => {
                    out.push(SlotSpec::new(i, "shift", SlotKind::TokenShift, &[s, self.c.d_model, 1]))
                }
            }
        }
        out
    }
    fn build(&self, dev: &Device, b: &mut Builder, batch: &Batch, state: &State) -> Result<TensorId> {
        let eps = self.c.eps;
        let mut h = self.head.embed(b, batch.ids)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let p = format!("layers.{i}");
            h = match block {
                Block::Mamba2(m) => m.build(dev, b, batch, state, &self.c, i, h)?,
                Block::Mlp { norm, gate, up, down } => {
                    let xn = b.rms_norm(&format!("{p}.norm"), h, norm, eps)?;
                    let g = b.linear(&format!("{p}.gate"), xn, gate, None)?;
                    let u = b.linear(&format!("{p}.up"), xn, up, None)?;
                    let a = b.g.binary(Binary::MulSilu, u, g)?;
                    b.linear_add(&format!("{p}.down"), a, down, None, h)?
                }
                Block::Shift { norm, mix, out } => {
                    let xn = b.rms_norm(&format!("{p}.norm"), h, norm, eps)?;
                    let xs = batch.conv(b, xn, mix, None, state.slot(i, "shift")?, state.started())?;
                    b.linear_add(&format!("{p}.out"), xs, out, None, h)?
                }
            };
        }
        self.head.build(b, h, batch.rows, eps)
    }
}

#[test]
fn a_registered_hybrid_runs_prefill_and_decode_as_one_forward() {
    model::arch::register(&HYBRID); // the one registry line
    let dir = scratch("hybrid");
    let kinds: Vec<String> = BLOCKS.iter().map(|s| s.to_string()).collect();
    let cfg_text = serde_json::json!({
        "model_type": MODEL_TYPE, "hidden_size": 64, "expand": 2, "head_dim": 16, "num_heads": 8,
        "n_groups": 1, "state_size": 16, "conv_kernel": 4, "num_hidden_layers": BLOCKS.len(),
        "vocab_size": 256, "layer_norm_epsilon": 1e-5, "intermediate_size": 96, "chunk_size": 64,
        "tie_word_embeddings": true, "blocks": BLOCKS,
    })
    .to_string();
    let c = Mamba2Config::from_config(&Config::parse(&cfg_text, "test").unwrap()).unwrap();
    write_checkpoint(&dir, &cfg_text, &schema::random_tensors(&schema(&c, 96, &kinds), 97));
    let text = b"Now is the winter of our discontent made glorious summer";
    let ids: Vec<u32> = text.iter().map(|&b| u32::from(b)).collect();
    for dev in devices() {
        let m = model::load(dev, &dir, DType::F32).unwrap();
        assert_eq!(m.model_type(), MODEL_TYPE);
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
        let dec = m.decoder(dev, &mut s).unwrap();
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
