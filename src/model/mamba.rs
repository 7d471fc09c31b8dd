//! Mamba (transformers' `MambaForCausalLM`), token-major on the GPU:
//! embedding → per layer [RMSNorm → in_proj (x, z) → causal conv + silu → x_proj (dt, B, C) →
//! dt_proj → selective scan (softplus(dt + bias), D skip, silu(z) gate) → out_proj → residual]
//! → norm_f → lm_head (tied to the embeddings unless the checkpoint has `lm_head.weight`).
//!
//! Prefill: in_proj and x_proj are split by rows (HF Linear weights are [out, in], so a row
//! range is contiguous, and the halves are views of one device tensor): x and z, and dt_in and
//! (B, C), come out of separate GEMMs as the contiguous `[T, ·]` tensors the conv and the scan
//! read, with no column copies.
//!
//! Decode steps of up to [`GEMV_MAX_M`] sequences take the fused path, four dispatches per
//! layer instead of nine (at batch 1 a step is bound by per-dispatch latency): RMSNorm +
//! in_proj + conv step (`linear_in_step`), x_proj reading the conv'd columns
//! (`linear_columns`), dt_proj + scan step + gate (`mamba_step`), out_proj + residual.

use super::blocks::{Block, Stack, Sublayer};
use super::common::{self, Batch, Builder, Head};
use super::config::{Config, Float, Size};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{ColumnsNode, MambaStepNode, ScanNode, SeqSpec};
use crate::graph::TensorId;
use crate::ops::matmul::GEMV_MAX_M;
use crate::ops::selective_scan::{self as ss, ScanFlags, ScanKernel, ScanShape};
use crate::tensor::{DType, Tensor};

/// config.json of a `MambaForCausalLM` checkpoint, in transformers' names (absent and
/// `null` fields take transformers' defaults in [`MambaConfig::from_config`]).
#[derive(Debug, serde::Deserialize)]
struct HfMambaConfig {
    hidden_size: Size,
    expand: Option<Size>,
    intermediate_size: Option<Size>,
    time_step_rank: Option<TimeStepRank>,
    state_size: Size,
    conv_kernel: Option<Size>,
    num_hidden_layers: Size,
    vocab_size: Size,
    layer_norm_epsilon: Option<Float>,
    use_bias: Option<bool>,
    use_conv_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
}

/// `time_step_rank`: a number, or `"auto"` for ceil(hidden_size / 16).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum TimeStepRank {
    Rank(Size),
    Auto(AutoRank),
}

#[derive(Debug, serde::Deserialize)]
enum AutoRank {
    #[serde(rename = "auto")]
    Auto,
}

/// Sizes from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MambaConfig {
    pub d_model: usize,
    pub d_inner: usize,
    pub d_state: usize,
    pub dt_rank: usize,
    pub conv_kernel: usize,
    pub layers: usize,
    pub vocab: usize,
    pub eps: f64,
    pub use_bias: bool,
    pub use_conv_bias: bool,
    pub tie_embeddings: bool,
}

impl MambaConfig {
    /// Every tensor of a `MambaForCausalLM` checkpoint of this configuration.
    pub fn schema(&self) -> Vec<WeightSpec> {
        let (d, di, n, r, k, v) =
            (self.d_model, self.d_inner, self.d_state, self.dt_rank, self.conv_kernel, self.vocab);
        let mut t = vec![
            WeightSpec::new("backbone.embeddings.weight", &[v, d], Init::Uniform(-0.1, 0.1)),
            WeightSpec::new("backbone.norm_f.weight", &[d], Init::Uniform(0.9, 1.1)),
        ];
        if !self.tie_embeddings {
            t.push(WeightSpec::new("lm_head.weight", &[v, d], Init::Uniform(-0.1, 0.1)));
        }
        for i in 0..self.layers {
            let p = format!("backbone.layers.{i}");
            let m = format!("{p}.mixer");
            t.push(WeightSpec::new(format!("{p}.norm.weight"), &[d], Init::Uniform(0.9, 1.1)));
            t.push(WeightSpec::new(format!("{m}.in_proj.weight"), &[2 * di, d], Init::FanIn));
            t.push(WeightSpec::new(format!("{m}.conv1d.weight"), &[di, 1, k], Init::Uniform(-0.5, 0.5)));
            if self.use_conv_bias {
                t.push(WeightSpec::new(format!("{m}.conv1d.bias"), &[di], Init::Uniform(-0.1, 0.1)));
            }
            t.push(WeightSpec::new(format!("{m}.x_proj.weight"), &[r + 2 * n, di], Init::FanIn));
            t.push(WeightSpec::new(format!("{m}.dt_proj.weight"), &[di, r], Init::FanIn));
            // dt = softplus(bias) ≈ 0.001–0.1, as in trained checkpoints.
            t.push(WeightSpec::new(format!("{m}.dt_proj.bias"), &[di], Init::Uniform(-6.9, -2.3)));
            t.push(WeightSpec::new(format!("{m}.A_log"), &[di, n], Init::S4dLog(n)));
            t.push(WeightSpec::new(format!("{m}.D"), &[di], Init::Uniform(0.9, 1.1)));
            t.push(WeightSpec::new(format!("{m}.out_proj.weight"), &[d, di], Init::FanIn));
            if self.use_bias {
                t.push(WeightSpec::new(format!("{m}.in_proj.bias"), &[2 * di], Init::Uniform(-0.1, 0.1)));
                t.push(WeightSpec::new(format!("{m}.out_proj.bias"), &[d], Init::Uniform(-0.1, 0.1)));
            }
        }
        t
    }

    pub fn from_config(c: &Config) -> Result<Self> {
        let j: HfMambaConfig = c.typed()?;
        let d_model = j.hidden_size.0;
        let d_inner = j.intermediate_size.map_or(j.expand.map_or(2, |e| e.0) * d_model, |s| s.0);
        let dt_rank = match j.time_step_rank {
            Some(TimeStepRank::Auto(_)) | None => d_model.div_ceil(16),
            Some(TimeStepRank::Rank(r)) => r.0,
        };
        let cfg = Self {
            d_model,
            d_inner,
            d_state: j.state_size.0,
            dt_rank,
            conv_kernel: j.conv_kernel.map_or(4, |k| k.0),
            layers: j.num_hidden_layers.0,
            vocab: j.vocab_size.0,
            eps: j.layer_norm_epsilon.map_or(1e-5, |e| e.0),
            use_bias: j.use_bias.unwrap_or(false),
            use_conv_bias: j.use_conv_bias.unwrap_or(true),
            tie_embeddings: j.tie_word_embeddings.unwrap_or(true),
        };
        common::check_eps(cfg.eps)?;
        if !(2..=4).contains(&cfg.conv_kernel) {
            return Err(Error::Model(format!("conv_kernel {} is not supported (2–4)", cfg.conv_kernel)));
        }
        if cfg.d_state > ss::MAX_STATE {
            return Err(Error::Model(format!("state_size {} exceeds {}", cfg.d_state, ss::MAX_STATE)));
        }
        Ok(cfg)
    }
}

/// One Mamba layer's mixer: RMSNorm, in_proj, conv, x_proj, dt_proj, the selective scan,
/// out_proj onto the residual (a [`Block::mixer`]).
pub struct MambaMixer {
    c: MambaConfig,
    norm: Tensor,
    /// in_proj `[2·D_inner, d]` and its bias; `w_x`, `w_z`, `b_x`, `b_z` are its row halves.
    w_in: Tensor,
    b_in: Option<Tensor>,
    w_x: Tensor,
    w_z: Tensor,
    b_x: Option<Tensor>,
    b_z: Option<Tensor>,
    conv_w: Tensor,
    conv_b: Option<Tensor>,
    /// x_proj `[R + 2N, D_inner]`; `w_dt_in` and `w_bc` are its row ranges.
    w_xproj: Tensor,
    w_dt_in: Tensor,
    w_bc: Tensor,
    w_dt: Tensor,
    chan: Tensor,
    w_out: Tensor,
    b_out: Option<Tensor>,
}

impl MambaMixer {
    /// Loads layer `p` (`backbone.layers.{i}`: its norm and `mixer.*`), checking names and
    /// shapes; matrices as `dtype`.
    pub fn load(dev: &Device, w: &Weights, p: &str, c: &MambaConfig, dtype: DType) -> Result<Self> {
        let (d, di, n, r, k) = (c.d_model, c.d_inner, c.d_state, c.dt_rank, c.conv_kernel);
        let up = |data: &[f32], shape: &[usize], dt: DType| Tensor::from_f32(dev, shape, data, dt);
        let rows = |full: &Tensor, lo: usize, hi: usize| common::rows(dev, full, lo, hi);
        // Matrices go to the device dtype straight from the checkpoint's bytes.
        let mat = |name: &str, shape: &[usize]| w.upload(dev, name, shape, shape, dtype);
        let get = |name: &str, shape: &[usize]| w.f32(name, Some(shape)).map(|v| v.0);
        let w_in = mat(&format!("{p}.mixer.in_proj.weight"), &[2 * di, d])?;
        let (b_in, b_x, b_z) = if c.use_bias {
            let b = get(&format!("{p}.mixer.in_proj.bias"), &[2 * di])?;
            let full = up(&b, &[2 * di], DType::F32)?;
            let (bx, bz) = (rows(&full, 0, di)?, rows(&full, di, 2 * di)?);
            (Some(full), Some(bx), Some(bz))
        } else {
            (None, None, None)
        };
        let w_xproj = mat(&format!("{p}.mixer.x_proj.weight"), &[r + 2 * n, di])?;
        let a_log = get(&format!("{p}.mixer.A_log"), &[di, n])?;
        let a: Vec<f32> = a_log.iter().map(|v| -v.exp()).collect();
        let d_skip = get(&format!("{p}.mixer.D"), &[di])?;
        let dt_bias = get(&format!("{p}.mixer.dt_proj.bias"), &[di])?;
        let conv_b = if c.use_conv_bias {
            Some(up(&get(&format!("{p}.mixer.conv1d.bias"), &[di])?, &[di], DType::F32)?)
        } else {
            None
        };
        let b_out = if c.use_bias {
            Some(up(&get(&format!("{p}.mixer.out_proj.bias"), &[d])?, &[d], DType::F32)?)
        } else {
            None
        };
        Ok(Self {
            c: c.clone(),
            norm: up(&get(&format!("{p}.norm.weight"), &[d])?, &[d], DType::F32)?,
            w_x: rows(&w_in, 0, di)?,
            w_z: rows(&w_in, di, 2 * di)?,
            w_in,
            b_in,
            b_x,
            b_z,
            conv_w: up(&get(&format!("{p}.mixer.conv1d.weight"), &[di, 1, k])?, &[di, k], DType::F32)?,
            conv_b,
            w_dt_in: rows(&w_xproj, 0, r)?,
            w_bc: rows(&w_xproj, r, r + 2 * n)?,
            w_xproj,
            w_dt: mat(&format!("{p}.mixer.dt_proj.weight"), &[di, r])?,
            chan: up(
                &ss::pack_channel_params(&a, Some(&d_skip), Some(&dt_bias), di, n),
                &[di, n + 2],
                DType::F32,
            )?,
            w_out: mat(&format!("{p}.mixer.out_proj.weight"), &[d, di])?,
            b_out,
        })
    }

    /// A decode step's layer from the RMSNorm to the gated scan output, in three dispatches
    /// (see the module docs); returns y `[S, D_inner]`.
    fn fused_step(
        &self,
        b: &mut Builder,
        h: TensorId,
        state: &State,
        i: usize,
        flags: ScanFlags,
    ) -> Result<TensorId> {
        let c = &self.c;
        let (s, di, n, r) = (state.sequences(), c.d_inner, c.d_state, c.dt_rank);
        let p = format!("layers.{i}");
        let conv = (&self.conv_w, self.conv_b.as_ref());
        let proj = (&self.w_in, self.b_in.as_ref());
        let xz = b.in_step(&p, h, (&self.norm, c.eps), proj, conv, state.slot(i, "conv")?, 0)?;
        let w_xproj = b.weight(&format!("{p}.x_proj"), &self.w_xproj);
        let xdbl = b.g.op(ColumnsNode, &[xz, w_xproj])?;
        let w_dt = b.weight(&format!("{p}.dt_proj"), &self.w_dt);
        let chan = b.weight(&format!("{p}.chan"), &self.chan);
        let ssm = b.state(&format!("{p}.ssm_state"), state.slot(i, "ssm")?);
        debug_assert_eq!((s, r + 2 * n), (state.sequences(), self.w_xproj.shape()[0]));
        b.g.op(MambaStepNode { z_col: di, flags }, &[xz, xdbl, w_dt, chan, ssm])
    }
}

impl Sublayer for MambaMixer {
    /// The conv window `[S, D_inner, W − 1]` and the SSM state `[S, D_inner, N]`.
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        let c = &self.c;
        vec![
            SlotSpec::new(layer, "conv", SlotKind::ConvWindow, &[s, c.d_inner, c.conv_kernel - 1]),
            SlotSpec::new(layer, "ssm", SlotKind::DiagonalSsm, &[s, c.d_inner, c.d_state]),
        ]
    }

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
        let flags = ScanFlags {
            delta_softplus: true,
            delta_bias: true,
            d_skip: true,
            neg_eigen: false,
            init_state: state.started,
        };
        let p = format!("layers.{i}");
        if batch.step && batch.lens.len() <= GEMV_MAX_M {
            let y = self.fused_step(b, h, state, i, flags)?;
            return b.linear_add(&format!("{p}.out_proj"), y, &self.w_out, self.b_out.as_ref(), h);
        }
        let kernel = ScanKernel::choose(dev, ScanShape::new(c.d_inner, c.d_state, 1), batch.lens.len());
        let xn = b.rms_norm(&format!("{p}.norm"), h, &self.norm, c.eps)?;
        let x = b.linear(&format!("{p}.in_proj.x"), xn, &self.w_x, self.b_x.as_ref())?;
        let z = b.linear(&format!("{p}.in_proj.z"), xn, &self.w_z, self.b_z.as_ref())?;
        let conv = (&self.conv_w, self.conv_b.as_ref());
        let xc = batch.conv(b, x, conv.0, conv.1, state.slot(i, "conv")?, state.started())?;
        let dt_in = b.linear(&format!("{p}.x_proj.dt"), xc, &self.w_dt_in, None)?;
        let bc = b.linear(&format!("{p}.x_proj.bc"), xc, &self.w_bc, None)?;
        let dt = b.linear(&format!("{p}.dt_proj"), dt_in, &self.w_dt, None)?;
        let chan = b.weight(&format!("{p}.chan"), &self.chan);
        let ssm = b.state(&format!("{p}.ssm_state"), state.slot(i, "ssm")?);
        let seqs = b.seqs(&batch.seqs);
        let scan = ScanNode { seqs: SeqSpec::of(&batch.seqs), kernel, flags, groups: 1, step: batch.step };
        let y = b.g.op(scan, &[xc, dt, bc, chan, ssm, seqs, z])?;
        b.linear_add(&format!("{p}.out_proj"), y, &self.w_out, self.b_out.as_ref(), h)
    }

    /// As the checkpoint counts them (biases of `use_bias` aside).
    fn parameters(&self) -> usize {
        let c = &self.c;
        c.d_model
            + 2 * c.d_inner * c.d_model
            + c.d_inner * c.conv_kernel
            + if c.use_conv_bias { c.d_inner } else { 0 }
            + (c.dt_rank + 2 * c.d_state) * c.d_inner
            + c.d_inner * c.dt_rank
            + c.d_inner
            + c.d_inner * c.d_state
            + c.d_inner
            + c.d_model * c.d_inner
    }
}

/// A loaded Mamba model on the device: one [`MambaMixer`] block per layer.
pub struct Mamba {
    pub cfg: MambaConfig,
    stack: Stack,
}

impl Mamba {
    /// Loads the checkpoint's tensors, checking every name and shape; matmul weights are held
    /// as `dtype` (f32 or f16), everything else as f32.
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let c = MambaConfig::from_config(cfg)?;
        common::check_config(w, "backbone.layers.", c.layers, c.eps, &c.schema())?;
        let head = Head::load(dev, w, c.vocab, c.d_model, c.tie_embeddings, dtype)?;
        let blocks = Stack::load_blocks(c.layers, progress, |i| {
            Ok(Block::mixer(MambaMixer::load(dev, w, &format!("backbone.layers.{i}"), &c, dtype)?))
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `mamba` architecture (transformers' `MambaForCausalLM`).
    MambaArchitecture: Mamba, MambaConfig, "mamba"
}
