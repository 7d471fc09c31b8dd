//! Mamba (transformers' `MambaForCausalLM`), token-major on the GPU:
//! embedding → per layer [RMSNorm → in_proj (x, z) → causal conv + silu → x_proj (dt, B, C) →
//! dt_proj → selective scan (softplus(dt + bias), D skip, silu(z) gate) → out_proj → residual]
//! → norm_f → lm_head (tied to the embeddings unless the checkpoint has `lm_head.weight`).
//!
//! in_proj and x_proj are split by rows at load time (HF Linear weights are [out, in], so a
//! row range is contiguous): x and z, and dt_in and (B, C), come out of separate GEMMs as the
//! contiguous `[T, ·]` tensors the conv and the scan read, with no column copies.

use super::common::{Batch, Head, RecurrentState};
use super::config::Config;
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::conv1d::ConvArgs;
use crate::ops::selective_scan::{self as ss, ScanArgs, ScanFlags, ScanKernel, ScanShape};
use crate::ops::{elementwise, embedding, matmul, norm, Recorder};
use crate::tensor::{DType, Tensor};

/// Sizes from config.json.
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
    pub fn from_config(c: &Config) -> Result<Self> {
        let d_model = c.usize("hidden_size")?;
        let expand = c.usize_or("expand", 2)?;
        let d_inner = c.usize_or("intermediate_size", expand * d_model)?;
        // `time_step_rank` may be "auto": ceil(d_model / 16).
        let dt_rank = match c.json.get("time_step_rank").and_then(|v| v.as_str()) {
            Some("auto") => d_model.div_ceil(16),
            _ => c.usize("time_step_rank")?,
        };
        let cfg = Self {
            d_model,
            d_inner,
            d_state: c.usize("state_size")?,
            dt_rank,
            conv_kernel: c.usize_or("conv_kernel", 4)?,
            layers: c.usize("num_hidden_layers")?,
            vocab: c.usize("vocab_size")?,
            eps: c.f64_or("layer_norm_epsilon", 1e-5)?,
            use_bias: c.bool_or("use_bias", false)?,
            use_conv_bias: c.bool_or("use_conv_bias", true)?,
            tie_embeddings: c.bool_or("tie_word_embeddings", true)?,
        };
        if !(2..=4).contains(&cfg.conv_kernel) {
            return Err(Error::Model(format!("conv_kernel {} is not supported (2–4)", cfg.conv_kernel)));
        }
        if cfg.d_state > ss::MAX_STATE {
            return Err(Error::Model(format!("state_size {} exceeds {}", cfg.d_state, ss::MAX_STATE)));
        }
        Ok(cfg)
    }
}

struct Layer {
    norm: Tensor,
    w_x: Tensor,
    w_z: Tensor,
    b_x: Option<Tensor>,
    b_z: Option<Tensor>,
    conv_w: Tensor,
    conv_b: Option<Tensor>,
    w_dt_in: Tensor,
    w_bc: Tensor,
    w_dt: Tensor,
    chan: Tensor,
    w_out: Tensor,
    b_out: Option<Tensor>,
}

/// A loaded Mamba model on the device.
pub struct Mamba {
    pub cfg: MambaConfig,
    head: Head,
    layers: Vec<Layer>,
    /// Weight dtype of the matmuls (f32 or f16).
    pub dtype: DType,
}

/// Recurrent state of a batch of sequences.
pub type MambaState = RecurrentState;

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
        let (d, di, n, r, k) = (c.d_model, c.d_inner, c.d_state, c.dt_rank, c.conv_kernel);
        let up = |data: &[f32], shape: &[usize], dt: DType| Tensor::from_f32(dev, shape, data, dt);
        let get = |name: &str, shape: &[usize]| w.f32(name, Some(shape)).map(|v| v.0);
        let head = Head::load(dev, w, c.vocab, d, c.tie_embeddings, dtype)?;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            progress(i, c.layers);
            let p = format!("backbone.layers.{i}");
            let in_proj = get(&format!("{p}.mixer.in_proj.weight"), &[2 * di, d])?;
            let (bx, bz) = if c.use_bias {
                let b = get(&format!("{p}.mixer.in_proj.bias"), &[2 * di])?;
                (Some(up(&b[..di], &[di], DType::F32)?), Some(up(&b[di..], &[di], DType::F32)?))
            } else {
                (None, None)
            };
            let x_proj = get(&format!("{p}.mixer.x_proj.weight"), &[r + 2 * n, di])?;
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
            layers.push(Layer {
                norm: up(&get(&format!("{p}.norm.weight"), &[d])?, &[d], DType::F32)?,
                w_x: up(&in_proj[..di * d], &[di, d], dtype)?,
                w_z: up(&in_proj[di * d..], &[di, d], dtype)?,
                b_x: bx,
                b_z: bz,
                conv_w: up(&get(&format!("{p}.mixer.conv1d.weight"), &[di, 1, k])?, &[di, k], DType::F32)?,
                conv_b,
                w_dt_in: up(&x_proj[..r * di], &[r, di], dtype)?,
                w_bc: up(&x_proj[r * di..], &[2 * n, di], dtype)?,
                w_dt: up(&get(&format!("{p}.mixer.dt_proj.weight"), &[di, r])?, &[di, r], dtype)?,
                chan: up(
                    &ss::pack_channel_params(&a, Some(&d_skip), Some(&dt_bias), di, n),
                    &[di, n + 2],
                    DType::F32,
                )?,
                w_out: up(&get(&format!("{p}.mixer.out_proj.weight"), &[d, di])?, &[d, di], dtype)?,
                b_out,
            });
        }
        progress(c.layers, c.layers);
        Ok(Self { cfg: c, head, layers, dtype })
    }

    /// A zero state for `sequences` sequences.
    pub fn new_state(&self, dev: &Device, sequences: usize) -> Result<MambaState> {
        let c = &self.cfg;
        let (s, di) = (sequences, c.d_inner);
        RecurrentState::zeros(dev, c.layers, &[s, di, c.conv_kernel - 1], &[s, di, c.d_state])
    }

    /// Records a forward pass over the ids in `ids_t` into `rec` and returns the logits tensor
    /// `[T, vocab]` it will fill (decode steps are recorded once and replayed by
    /// [`super::Decoder`]).
    pub(crate) fn record(
        &self,
        dev: &Device,
        rec: &mut Recorder,
        batch: &Batch,
        state: &MambaState,
    ) -> Result<Tensor> {
        let Batch { ids: ids_t, step, rows, .. } = *batch;
        let c = &self.cfg;
        let t = ids_t.numel();
        let (d, di, n) = (c.d_model, c.d_inner, c.d_state);
        let seqs = batch.sequences(dev)?;
        let f32t = |shape: &[usize]| Tensor::empty(dev, shape, DType::F32);
        let h = f32t(&[t, d])?;
        let xn = f32t(&[t, d])?;
        let x = f32t(&[t, di])?;
        let z = f32t(&[t, di])?;
        let xc = f32t(&[t, di])?;
        let dt_in = f32t(&[t, c.dt_rank])?;
        let bc = f32t(&[t, 2 * n])?;
        let dt = f32t(&[t, di])?;
        let y = f32t(&[t, di])?;
        let o = f32t(&[t, d])?;
        let kernel = ScanKernel::choose(dev, ScanShape::new(di, n, 1), batch.lens.len());
        let flags = ScanFlags {
            delta_softplus: true,
            delta_bias: true,
            d_skip: true,
            neg_eigen: false,
            init_state: state.started,
        };
        embedding::embedding(rec, ids_t, &self.head.embed, &h)?;
        for (i, l) in self.layers.iter().enumerate() {
            norm::rms_norm(rec, &h, &l.norm, c.eps as f32, &xn)?;
            matmul::linear(rec, &xn, &l.w_x, l.b_x.as_ref(), &x)?;
            matmul::linear(rec, &xn, &l.w_z, l.b_z.as_ref(), &z)?;
            let conv = ConvArgs {
                x: &x,
                weight: &l.conv_w,
                bias: l.conv_b.as_ref(),
                seqs: &seqs,
                state: &state.conv[i],
            };
            batch.conv(rec, &conv, state.started, &xc)?;
            matmul::linear(rec, &xc, &l.w_dt_in, None, &dt_in)?;
            matmul::linear(rec, &xc, &l.w_bc, None, &bc)?;
            matmul::linear(rec, &dt_in, &l.w_dt, None, &dt)?;
            let bc4 = bc.reshape(&[t, 2, 1, n])?;
            let args = ScanArgs {
                u: &xc,
                delta: &dt,
                bc: &bc4,
                z: Some(&z),
                chan: &l.chan,
                seqs: &seqs,
                state: &state.ssm[i],
                groups: 1,
                flags,
            };
            if step {
                ss::selective_scan_step(rec, &args, &y)?;
            } else {
                ss::selective_scan(rec, kernel, &args, &y)?;
            }
            matmul::linear(rec, &y, &l.w_out, l.b_out.as_ref(), &o)?;
            elementwise::residual_add(rec, &h, &o, 1.0)?;
        }
        self.head.record(dev, rec, &h, &xn, rows, c.eps as f32)
    }

    /// Number of parameters (as in the checkpoint, tied embeddings counted once).
    pub fn parameters(&self) -> usize {
        let c = &self.cfg;
        let per_layer = c.d_model
            + 2 * c.d_inner * c.d_model
            + c.d_inner * c.conv_kernel
            + if c.use_conv_bias { c.d_inner } else { 0 }
            + (c.dt_rank + 2 * c.d_state) * c.d_inner
            + c.d_inner * c.dt_rank
            + c.d_inner
            + c.d_inner * c.d_state
            + c.d_inner
            + c.d_model * c.d_inner;
        c.vocab * c.d_model * if c.tie_embeddings { 1 } else { 2 } + c.layers * per_layer + c.d_model
    }
}
