//! Mamba-2 (transformers' `Mamba2ForCausalLM`), token-major on the GPU:
//! embedding → per layer [RMSNorm → in_proj (z, xBC, dt) → causal conv + silu over xBC → SSD
//! (softplus(dt + dt_bias) clamped to `time_step_limit`, D skip) → y·silu(z) → RMSNorm per
//! group of d_inner / n_groups → out_proj → residual] → norm_f → lm_head (tied unless the
//! checkpoint has `lm_head.weight`).
//!
//! Prefill: in_proj is split by rows into z, xBC and dt (HF Linear weights are [out, in]; the
//! parts are views of one device tensor), so each comes out of its own GEMM as a contiguous
//! `[T, ·]` tensor; the SSD op reads the conv output `[T, H·P + 2·G·N]` in place.
//!
//! Decode steps of up to [`GEMV_MAX_M`] sequences (with `n_groups` = 1) take a fused path of
//! three dispatches per layer instead of nine: RMSNorm + the whole in_proj + the conv step over
//! the xBC band (`linear_in_step`), the SSD step reading x, B, C, dt and z out of that row and
//! gating its output (`ssd_step_row`), and the gated RMSNorm folded into out_proj, which
//! accumulates onto the residual stream in place (`linear_normed`).

use super::blocks::{Block, Stack, Sublayer};
use super::common::{self, Batch, Builder, Head};
use super::config::{Config, Float, Size};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{NormedOutNode, SeqSpec, SsdNode, SsdStepRowNode};
use crate::graph::TensorId;
use crate::ops::elementwise::Binary;
use crate::ops::matmul::GEMV_MAX_M;
use crate::ops::norm;
use crate::ops::ssd::{self, SsdDims, SsdFlags, SsdKernel};
use crate::tensor::{DType, Tensor};

/// config.json of a `Mamba2ForCausalLM` checkpoint, in transformers' names (absent and
/// `null` fields take transformers' defaults in [`Mamba2Config::from_config`]).
#[derive(Debug, serde::Deserialize)]
struct HfMamba2Config {
    hidden_size: Size,
    head_dim: Option<Size>,
    expand: Option<Size>,
    num_heads: Option<Size>,
    n_groups: Option<Size>,
    state_size: Size,
    conv_kernel: Option<Size>,
    num_hidden_layers: Size,
    vocab_size: Size,
    layer_norm_epsilon: Option<Float>,
    chunk_size: Option<Size>,
    time_step_limit: Option<[Float; 2]>,
    use_bias: Option<bool>,
    use_conv_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Mamba2Config {
    pub d_model: usize,
    pub d_inner: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub groups: usize,
    pub d_state: usize,
    pub conv_kernel: usize,
    pub layers: usize,
    pub vocab: usize,
    pub eps: f64,
    pub chunk: usize,
    pub dt_limit: (f64, f64),
    pub use_bias: bool,
    pub use_conv_bias: bool,
    pub tie_embeddings: bool,
}

impl Mamba2Config {
    /// Every tensor of a `Mamba2ForCausalLM` checkpoint of this configuration.
    pub fn schema(&self) -> Vec<WeightSpec> {
        let (d, v) = (self.d_model, self.vocab);
        let mut t = vec![
            WeightSpec::new("backbone.embeddings.weight", &[v, d], Init::Uniform(-0.1, 0.1)),
            WeightSpec::new("backbone.norm_f.weight", &[d], Init::Uniform(0.9, 1.1)),
        ];
        if !self.tie_embeddings {
            t.push(WeightSpec::new("lm_head.weight", &[v, d], Init::Uniform(-0.1, 0.1)));
        }
        for i in 0..self.layers {
            let p = format!("backbone.layers.{i}");
            t.extend(Mamba2Mixer::schema(self, &format!("{p}.norm.weight"), &format!("{p}.mixer")));
        }
        t
    }

    pub fn from_config(c: &Config) -> Result<Self> {
        let j: HfMamba2Config = c.typed()?;
        let d_model = j.hidden_size.0;
        let head_dim = j.head_dim.map_or(64, |h| h.0);
        let d_inner = j.expand.map_or(2, |e| e.0) * d_model;
        let heads = j.num_heads.map_or(d_inner / head_dim.max(1), |h| h.0);
        let dt_limit = j.time_step_limit.map_or((0.0, f64::INFINITY), |[lo, hi]| (lo.0, hi.0));
        let cfg = Self {
            d_model,
            d_inner,
            heads,
            head_dim,
            groups: j.n_groups.map_or(1, |g| g.0),
            d_state: j.state_size.0,
            conv_kernel: j.conv_kernel.map_or(4, |k| k.0),
            layers: j.num_hidden_layers.0,
            vocab: j.vocab_size.0,
            eps: j.layer_norm_epsilon.map_or(1e-5, |e| e.0),
            chunk: j.chunk_size.map_or(64, |c| c.0),
            dt_limit,
            use_bias: j.use_bias.unwrap_or(false),
            use_conv_bias: j.use_conv_bias.unwrap_or(true),
            tie_embeddings: j.tie_word_embeddings.unwrap_or(true),
        };
        common::check_eps(cfg.eps)?;
        if heads.checked_mul(head_dim) != Some(d_inner) {
            return Err(Error::Model(format!(
                "num_heads {heads} × head_dim {head_dim} must equal expand × hidden_size = {d_inner}"
            )));
        }
        if cfg.groups == 0 || !heads.is_multiple_of(cfg.groups) {
            return Err(Error::Model(format!("n_groups {} must divide num_heads {heads}", cfg.groups)));
        }
        if !(2..=4).contains(&cfg.conv_kernel) {
            return Err(Error::Model(format!("conv_kernel {} is not supported (2–4)", cfg.conv_kernel)));
        }
        if cfg.d_state > ssd::MAX_STATE {
            return Err(Error::Model(format!("state_size {} exceeds {}", cfg.d_state, ssd::MAX_STATE)));
        }
        Ok(cfg)
    }

    fn dims(&self) -> SsdDims {
        SsdDims { heads: self.heads, head_dim: self.head_dim, groups: self.groups, n: self.d_state }
    }

    /// Channels of the conv: x, B and C.
    fn conv_dim(&self) -> usize {
        self.d_inner + 2 * self.groups * self.d_state
    }

    /// The SSD chunk size to use: the config's, rounded to a supported one.
    fn kernel(&self) -> SsdKernel {
        SsdKernel::Chunked(match self.chunk {
            0..=32 => 32,
            33..=64 => 64,
            65..=128 => 128,
            _ => 256,
        })
    }
}

/// One Mamba-2 layer's mixer: RMSNorm, in_proj, conv, SSD, gated norm, out_proj onto the
/// residual (a [`Block::mixer`]; hybrids use it as one of their blocks).
pub struct Mamba2Mixer {
    c: Mamba2Config,
    norm: Tensor,
    /// in_proj `[z | xBC | dt, d]` and its bias; `w_z`, `w_xbc`, `w_dt` (and the biases) are
    /// its row ranges.
    w_in: Tensor,
    b_in: Option<Tensor>,
    w_z: Tensor,
    w_xbc: Tensor,
    w_dt: Tensor,
    b_z: Option<Tensor>,
    b_xbc: Option<Tensor>,
    b_dt: Option<Tensor>,
    conv_w: Tensor,
    conv_b: Option<Tensor>,
    heads: Tensor,
    gate_norm: Tensor,
    w_out: Tensor,
    b_out: Option<Tensor>,
}

impl Mamba2Mixer {
    /// Loads one block: its RMSNorm weight `norm_name` and the mixer's tensors under `p`
    /// (`backbone.layers.{i}.mixer` in a Mamba-2 checkpoint), checking names and shapes.
    pub fn load(
        dev: &Device,
        w: &Weights,
        norm_name: &str,
        p: &str,
        c: &Mamba2Config,
        dtype: DType,
    ) -> Result<Self> {
        let (d, di, h, k) = (c.d_model, c.d_inner, c.heads, c.conv_kernel);
        let cd = c.conv_dim();
        let proj = 2 * di + 2 * c.groups * c.d_state + h;
        let up = |data: &[f32], shape: &[usize], dt: DType| Tensor::from_f32(dev, shape, data, dt);
        let get = |name: &str, shape: &[usize]| w.f32(name, Some(shape)).map(|v| v.0);
        // Matrices go to the device dtype straight from the checkpoint's bytes.
        let w_in = w.upload(dev, &format!("{p}.in_proj.weight"), &[proj, d], &[proj, d], dtype)?;
        let b_in = if c.use_bias {
            Some(w.upload(dev, &format!("{p}.in_proj.bias"), &[proj], &[proj], DType::F32)?)
        } else {
            None
        };
        let rows = |full: &Tensor, lo: usize, hi: usize| common::rows(dev, full, lo, hi);
        let part = |lo: usize, hi: usize| -> Result<Option<Tensor>> {
            match &b_in {
                Some(full) => rows(full, lo, hi).map(Some),
                None => Ok(None),
            }
        };
        let a: Vec<f32> = get(&format!("{p}.A_log"), &[h])?.iter().map(|v| -v.exp()).collect();
        let heads = ssd::pack_head_params(
            &a,
            Some(&get(&format!("{p}.D"), &[h])?),
            Some(&get(&format!("{p}.dt_bias"), &[h])?),
        );
        Ok(Mamba2Mixer {
            c: c.clone(),
            norm: up(&get(norm_name, &[d])?, &[d], DType::F32)?,
            w_z: rows(&w_in, 0, di)?,
            w_xbc: rows(&w_in, di, di + cd)?,
            w_dt: rows(&w_in, di + cd, proj)?,
            b_z: part(0, di)?,
            b_xbc: part(di, di + cd)?,
            b_dt: part(di + cd, proj)?,
            w_in,
            b_in,
            conv_w: up(&get(&format!("{p}.conv1d.weight"), &[cd, 1, k])?, &[cd, k], DType::F32)?,
            conv_b: if c.use_conv_bias {
                Some(up(&get(&format!("{p}.conv1d.bias"), &[cd])?, &[cd], DType::F32)?)
            } else {
                None
            },
            heads: up(&heads, &[h, 4], DType::F32)?,
            gate_norm: up(&get(&format!("{p}.norm.weight"), &[di])?, &[di], DType::F32)?,
            w_out: w.upload(dev, &format!("{p}.out_proj.weight"), &[d, di], &[d, di], dtype)?,
            b_out: if c.use_bias {
                Some(up(&get(&format!("{p}.out_proj.bias"), &[d])?, &[d], DType::F32)?)
            } else {
                None
            },
        })
    }

    /// A decode step's layer in three dispatches (RMSNorm + in_proj + conv step over the xBC
    /// band; the SSD step reading that row, gated by silu(z); the gated RMSNorm folded into
    /// out_proj, which accumulates onto the residual `h`). Returns the new residual.
    fn fused_step(
        &self,
        b: &mut Builder,
        h: TensorId,
        state: &State,
        i: usize,
        batch: &Batch,
        flags: SsdFlags,
    ) -> Result<TensorId> {
        let c = &self.c;
        let (s, di, cd) = (state.sequences(), c.d_inner, c.conv_dim());
        debug_assert_eq!(s, batch.lens.len());
        let p = format!("layers.{i}");
        let conv = (&self.conv_w, self.conv_b.as_ref());
        let proj = (&self.w_in, self.b_in.as_ref());
        let row = b.in_step(&p, h, (&self.norm, c.eps), proj, conv, state.slot(i, "conv")?, di)?;
        let heads = b.weight(&format!("{p}.heads"), &self.heads);
        let ssm = b.state(&format!("{p}.ssm_state"), state.slot(i, "ssm")?);
        let seqs = b.seqs(&batch.seqs);
        let cols = ssd::RowColumns { x: di, dt: di + cd, z: 0 };
        let step = SsdStepRowNode { seqs: SeqSpec::of(&batch.seqs), cols, dims: c.dims(), flags };
        let y = b.g.op(step, &[row, heads, ssm, seqs])?;
        // In place on the residual stream where the planner allows, like Graph::linear_add.
        let mut ins = vec![
            y,
            h,
            b.weight(&format!("{p}.gate_norm"), &self.gate_norm),
            b.weight(&format!("{p}.out_proj"), &self.w_out),
        ];
        if let Some(bias) = &self.b_out {
            ins.push(b.weight(&format!("{p}.out_proj.bias"), bias));
        }
        b.g.op(NormedOutNode { eps: c.eps, bias: self.b_out.is_some() }, &ins)
    }

    /// The block's state slots for layer `layer`: the conv window over xBC and the SSD state.
    pub fn slots(c: &Mamba2Config, layer: usize, sequences: usize) -> [SlotSpec; 2] {
        let s = sequences;
        [
            SlotSpec::new(layer, "conv", SlotKind::ConvWindow, &[s, c.conv_dim(), c.conv_kernel - 1]),
            SlotSpec::new(layer, "ssm", SlotKind::DiagonalSsm, &[s, c.heads, c.head_dim, c.d_state]),
        ]
    }

    /// The block's tensors under `p`, its norm weight `norm_name` first: the schema its
    /// loader checks, and what a random checkpoint of it holds.
    pub fn schema(c: &Mamba2Config, norm_name: &str, p: &str) -> Vec<WeightSpec> {
        let (d, di, h, k, cd) = (c.d_model, c.d_inner, c.heads, c.conv_kernel, c.conv_dim());
        let proj = 2 * di + 2 * c.groups * c.d_state + h;
        let mut out = vec![
            WeightSpec::new(norm_name, &[d], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.in_proj.weight"), &[proj, d], Init::FanIn),
            WeightSpec::new(format!("{p}.conv1d.weight"), &[cd, 1, k], Init::Uniform(-0.5, 0.5)),
            // A = −exp(A_log) in [−16, −1]; dt = softplus(dt_bias) ≈ 0.001–0.1.
            WeightSpec::new(format!("{p}.A_log"), &[h], Init::Uniform(0.0, 2.77)),
            WeightSpec::new(format!("{p}.D"), &[h], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.dt_bias"), &[h], Init::Uniform(-6.9, -2.3)),
            WeightSpec::new(format!("{p}.norm.weight"), &[di], Init::Uniform(0.9, 1.1)),
            WeightSpec::new(format!("{p}.out_proj.weight"), &[d, di], Init::FanIn),
        ];
        if c.use_conv_bias {
            out.push(WeightSpec::new(format!("{p}.conv1d.bias"), &[cd], Init::Uniform(-0.1, 0.1)));
        }
        if c.use_bias {
            out.push(WeightSpec::new(format!("{p}.in_proj.bias"), &[proj], Init::Uniform(-0.1, 0.1)));
            out.push(WeightSpec::new(format!("{p}.out_proj.bias"), &[d], Init::Uniform(-0.1, 0.1)));
        }
        out
    }
}

impl Sublayer for Mamba2Mixer {
    fn state_slots(&self, layer: usize, sequences: usize) -> Vec<SlotSpec> {
        Mamba2Mixer::slots(&self.c, layer, sequences).to_vec()
    }

    /// Decode steps (up to GEMV_MAX_M sequences, one group) take the fused three-dispatch path.
    fn build(
        &self,
        dev: &Device,
        b: &mut Builder,
        batch: &Batch,
        state: &State,
        i: usize,
        h: TensorId,
    ) -> Result<TensorId> {
        let c = &self.c;
        let flags = SsdFlags {
            dt_softplus: true,
            dt_bias: true,
            d_skip: true,
            init_state: state.started(),
            dt_limit: (c.dt_limit.0 as f32, c.dt_limit.1 as f32),
        };
        let kernel = SsdKernel::choose(dev, c.dims(), batch.seqs.total(), DType::F32, c.kernel());
        // The gated norm folds into out_proj's GEMV only as one RMS over the whole row.
        let fused_step = batch.step && batch.lens.len() <= GEMV_MAX_M && c.groups == 1;
        let p = format!("layers.{i}");
        if fused_step {
            return self.fused_step(b, h, state, i, batch, flags);
        }
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, c.eps)?;
        let z = b.linear(&format!("{p}.in_proj.z"), xn, &self.w_z, self.b_z.as_ref())?;
        let xbc = b.linear(&format!("{p}.in_proj.xbc"), xn, &self.w_xbc, self.b_xbc.as_ref())?;
        let dt = b.linear(&format!("{p}.in_proj.dt"), xn, &self.w_dt, self.b_dt.as_ref())?;
        let xbc_c = batch.conv(
            b,
            xbc,
            &self.conv_w,
            self.conv_b.as_ref(),
            state.slot(i, "conv")?,
            state.started(),
        )?;
        let heads = b.weight(&format!("{p}.heads"), &self.heads);
        let ssm = b.state(&format!("{p}.ssm_state"), state.slot(i, "ssm")?);
        let seqs = b.seqs(&batch.seqs);
        let node =
            SsdNode { seqs: SeqSpec::of(&batch.seqs), kernel, dims: c.dims(), flags, step: batch.step };
        let y = b.g.op(node, &[xbc_c, dt, heads, ssm, seqs])?;
        let yg = b.g.binary(Binary::MulSilu, y, z)?;
        let gate_norm = b.weight(&format!("{p}.gate_norm"), &self.gate_norm);
        let yn = b.g.norm(norm::NormKind::Rms { groups: c.groups }, yg, gate_norm, None, c.eps as f32)?;
        b.linear_add(&format!("{p}.out_proj"), yn, &self.w_out, self.b_out.as_ref(), h)
    }

    fn parameters(&self) -> usize {
        let c = &self.c;
        let proj = 2 * c.d_inner + 2 * c.groups * c.d_state + c.heads;
        c.d_model
            + proj * c.d_model
            + c.conv_dim() * c.conv_kernel
            + if c.use_conv_bias { c.conv_dim() } else { 0 }
            + 3 * c.heads
            + c.d_inner
            + c.d_model * c.d_inner
    }
}

/// A loaded Mamba-2 model on the device: one [`Mamba2Mixer`] block per layer.
pub struct Mamba2 {
    pub cfg: Mamba2Config,
    stack: Stack,
}

impl Mamba2 {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let c = Mamba2Config::from_config(cfg)?;
        common::check_config(w, "backbone.layers.", c.layers, c.eps, &c.schema())?;
        let head = Head::load(dev, w, c.vocab, c.d_model, c.tie_embeddings, dtype)?;
        let blocks = Stack::load_blocks(c.layers, progress, |i| {
            let p = format!("backbone.layers.{i}");
            let norm = format!("{p}.norm.weight");
            Ok(Block::mixer(Mamba2Mixer::load(dev, w, &norm, &format!("{p}.mixer"), &c, dtype)?))
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `mamba2` architecture (transformers' `Mamba2ForCausalLM`).
    Mamba2Architecture: Mamba2, Mamba2Config, "mamba2"
}
