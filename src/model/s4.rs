//! S4 and S4D language models over state-spaces/s4's `S4Block` (`models/s4/s4.py`), loaded
//! from the module's own `state_dict` with a `config.json` (`model_type: s4`, the block's
//! arguments under `block`): embedding → per layer x + S4Block(LayerNorm(x)) → LayerNorm →
//! lm_head, where S4Block is the FFT convolution with its D skip, GELU, then the GLU output
//! linear. Prefill convolves with the kernel generated on the GPU for its length (S4D's
//! Vandermonde sum, S4's Cauchy sums with the Woodbury correction); decode steps the
//! recurrent view from the state the prompt leaves.

use super::blocks::{Block, Stack, Sublayer};
use super::common::{self, Batch, Builder, Head, HeadNames};
use super::config::{Config, Float, Size};
use super::schema::{Init, WeightSpec};
use super::state::{SlotKind, SlotSpec, State};
use super::weights::Weights;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::nodes::{KernelGen, S4Node, SeqSpec};
use crate::graph::TensorId;
use crate::ops::elementwise::{Binary, Unary};
use crate::ops::s4::complex::C64;
use crate::ops::s4::kernels::{self as s4k, ConvMethod};
use crate::ops::s4::layer::{Mode, Prepared, Ssm};
use crate::ops::s4::{hippo, Discretization};
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Mutex;

/// config.json's `block`: the S4Block / FFTConv / kernel arguments.
#[derive(Debug, serde::Deserialize)]
struct HfS4Block {
    final_act: Option<String>,
    activation: Option<String>,
    bidirectional: Option<bool>,
    channels: Option<Size>,
    mode: Option<String>,
    init: Option<String>,
    disc: Option<String>,
    d_state: Option<Size>,
    rank: Option<Size>,
    dt_transform: Option<String>,
    real_transform: Option<String>,
    imag_transform: Option<String>,
    gate: Option<serde_json::Value>,
    bottleneck: Option<serde_json::Value>,
}

/// config.json of an S4 language model.
#[derive(Debug, serde::Deserialize)]
struct HfS4Config {
    vocab_size: Size,
    d_model: Size,
    n_layers: Size,
    prenorm: Option<bool>,
    norm: Option<String>,
    norm_eps: Option<Float>,
    tie_word_embeddings: Option<bool>,
    block: HfS4Block,
}

/// Sizes and choices from config.json, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct S4Config {
    pub vocab: usize,
    pub d_model: usize,
    pub layers: usize,
    pub eps: f64,
    pub mode: Mode,
    /// States per conjugate pair: d_state / 2.
    pub n: usize,
    pub tie_embeddings: bool,
    /// Two kernels per layer, forward and backward (an encoder: no recurrent view).
    pub bidirectional: bool,
}

fn unsupported(what: &str, value: &str, supported: &str) -> Error {
    Error::UnsupportedVariant(format!("S4 config: {what} `{value}` is not implemented ({supported})"))
}

/// A string option that must equal `want` (its default when absent).
fn only(what: &str, v: &Option<String>, want: &str) -> Result<()> {
    match v.as_deref() {
        None => Ok(()),
        Some(x) if x == want => Ok(()),
        Some(x) => Err(unsupported(what, x, &format!("only `{want}`"))),
    }
}

impl S4Config {
    pub fn from_config(c: &Config) -> Result<Self> {
        let j: HfS4Config = c.typed()?;
        let blk = &j.block;
        if j.prenorm == Some(false) {
            return Err(unsupported("prenorm", "false", "pre-norm blocks only"));
        }
        only("norm", &j.norm, "layer")?;
        only("block.final_act", &blk.final_act, "glu")?;
        only("block.activation", &blk.activation, "gelu")?;
        only("block.dt_transform", &blk.dt_transform, "exp")?;
        only("block.real_transform", &blk.real_transform, "exp")?;
        only("block.imag_transform", &blk.imag_transform, "none")?;
        if let Some(ch) = &blk.channels {
            if ch.0 != 1 {
                return Err(unsupported("block.channels", &ch.0.to_string(), "only 1"));
            }
        }
        for (what, v) in [("block.gate", &blk.gate), ("block.bottleneck", &blk.bottleneck)] {
            if v.as_ref().is_some_and(|v| !v.is_null()) {
                return Err(unsupported(
                    what,
                    &v.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    "none",
                ));
            }
        }
        let mode = match blk.mode.as_deref().unwrap_or("dplr") {
            "dplr" | "nplr" | "s4" => Mode::Dplr,
            "diag" | "s4d" => {
                let disc = blk.disc.as_deref().unwrap_or("zoh");
                Mode::Diag(Discretization::parse(disc)?)
            }
            other => return Err(unsupported("block.mode", other, "dplr, nplr, s4, diag, s4d")),
        };
        // The init only matters for random weights, but a name the module would refuse is refused.
        if let Some(init) = blk.init.as_deref() {
            let known = match mode {
                Mode::Dplr => hippo::Measure::parse(init).is_ok(),
                Mode::Diag(_) => hippo::DiagInit::parse(init).is_ok() || hippo::Measure::parse(init).is_ok(),
            };
            if !known {
                return Err(unsupported(
                    "block.init",
                    init,
                    "legs, legt, lagt, fourier, diag-lin, diag-inv, diag-legs",
                ));
            }
        }
        if mode == Mode::Dplr && blk.rank.as_ref().is_some_and(|r| r.0 != 1) {
            return Err(unsupported(
                "block.rank",
                &blk.rank.as_ref().map_or(0, |r| r.0).to_string(),
                "rank 1",
            ));
        }
        let d_state = blk.d_state.as_ref().map_or(64, |d| d.0);
        if d_state == 0 || !d_state.is_multiple_of(2) || d_state > s4k::MAX_ROWS {
            return Err(Error::Model(format!(
                "S4 config: d_state {d_state} must be even and at most {}",
                s4k::MAX_ROWS
            )));
        }
        let cfg = Self {
            vocab: j.vocab_size.0,
            d_model: j.d_model.0,
            layers: j.n_layers.0,
            eps: j.norm_eps.map_or(1e-5, |e| e.0),
            mode,
            n: d_state / 2,
            tie_embeddings: j.tie_word_embeddings.unwrap_or(false),
            bidirectional: blk.bidirectional.unwrap_or(false),
        };
        if cfg.d_model == 0 || cfg.vocab == 0 || cfg.layers == 0 {
            return Err(Error::Model(format!("S4 config: empty model {cfg:?}")));
        }
        common::check_eps(cfg.eps)?;
        Ok(cfg)
    }

    /// Every float tensor of the checkpoint (complex ones with their last dimension of 2).
    pub fn schema(&self) -> Vec<WeightSpec> {
        let (d, v, n) = (self.d_model, self.vocab, self.n);
        let kernels = 1 + self.bidirectional as usize;
        let mut t = vec![
            WeightSpec::new("embedding.weight", &[v, d], Init::Uniform(-0.1, 0.1)),
            WeightSpec::new("norm_f.weight", &[d], Init::Uniform(0.9, 1.1)),
            WeightSpec::new("norm_f.bias", &[d], Init::Uniform(-0.1, 0.1)),
        ];
        if !self.tie_embeddings {
            t.push(WeightSpec::new("lm_head.weight", &[v, d], Init::Uniform(-0.1, 0.1)));
        }
        for i in 0..self.layers {
            let k = format!("layers.{i}.layer.kernel");
            t.extend([
                WeightSpec::new(format!("norms.{i}.weight"), &[d], Init::Uniform(0.9, 1.1)),
                WeightSpec::new(format!("norms.{i}.bias"), &[d], Init::Uniform(-0.1, 0.1)),
                WeightSpec::new(format!("layers.{i}.layer.D"), &[1, d], Init::Uniform(-1.0, 1.0)),
                WeightSpec::new(format!("{k}.inv_dt"), &[d, 1], Init::Uniform(-6.9, -2.3)),
                WeightSpec::new(format!("{k}.A_real"), &[d, n], Init::Uniform(-0.7, -0.69)),
                WeightSpec::new(format!("{k}.A_imag"), &[d, n], Init::Uniform(0.0, 100.0)),
                WeightSpec::new(format!("{k}.B"), &[1, d, n, 2], Init::Uniform(-1.0, 1.0)),
                WeightSpec::new(format!("{k}.C"), &[kernels, d, n, 2], Init::Uniform(-0.5, 0.5)),
                WeightSpec::new(format!("layers.{i}.output_linear.0.weight"), &[2 * d, d], Init::FanIn),
                WeightSpec::new(
                    format!("layers.{i}.output_linear.0.bias"),
                    &[2 * d],
                    Init::Uniform(-0.1, 0.1),
                ),
            ]);
            if self.mode == Mode::Dplr {
                t.push(WeightSpec::new(format!("{k}.P"), &[1, d, n, 2], Init::Uniform(-0.5, 0.5)));
            }
        }
        t
    }
}

/// A complex tensor stored as real pairs, `[.., 2]`, as complex values.
fn complex(w: &Weights, name: &str, shape: &[usize]) -> Result<Vec<C64>> {
    let (v, _) = w.f32(name, Some(shape))?;
    Ok(v.chunks_exact(2).map(|p| C64::new(p[0] as f64, p[1] as f64)).collect())
}

/// One layer's S4Block as a residual sublayer.
pub struct S4Mixer {
    c: S4Config,
    norm_w: Tensor,
    norm_b: Tensor,
    /// The state space of each kernel: forward, then backward when bidirectional.
    preps: Vec<Prepared>,
    /// S4D's Vandermonde terms and turn counts, per kernel.
    vandermonde: Vec<(Tensor, Tensor)>,
    /// The state's input after the kernel terms: S4D's state-sum terms, or S4's
    /// M^STATE_CHUNK for the chunked state.
    state_terms: Tensor,
    /// S4's Cauchy terms per (kernel, inverse-FFT length).
    cauchy: Mutex<HashMap<(usize, usize), Tensor>>,
    dskip: Tensor,
    mat: Tensor,
    bvec: Tensor,
    /// The GLU's value and gate halves of output_linear.
    w_a: Tensor,
    b_a: Tensor,
    w_g: Tensor,
    b_g: Tensor,
}

impl S4Mixer {
    /// The layer's state space as the module holds it after its parameter transforms (C of
    /// the forward kernel), and a bidirectional layer's backward C.
    fn ssm(c: &S4Config, w: &Weights, i: usize) -> Result<(Ssm, Option<Vec<C64>>)> {
        let (d, n) = (c.d_model, c.n);
        let k = format!("layers.{i}.layer.kernel");
        let (inv_dt, _) = w.f32(&format!("{k}.inv_dt"), Some(&[d, 1]))?;
        let (a_re, _) = w.f32(&format!("{k}.A_real"), Some(&[d, n]))?;
        let (a_im, _) = w.f32(&format!("{k}.A_imag"), Some(&[d, n]))?;
        let a = a_re.iter().zip(&a_im).map(|(&r, &m)| C64::new(-(r as f64).exp(), -(m as f64))).collect();
        let b = complex(w, &format!("{k}.B"), &[1, d, n, 2])?;
        let kernels = 1 + c.bidirectional as usize;
        let mut cc = complex(w, &format!("{k}.C"), &[kernels, d, n, 2])?;
        let backward = c.bidirectional.then(|| cc.split_off(d * n));
        let (dd, _) = w.f32(&format!("layers.{i}.layer.D"), Some(&[1, d]))?;
        let (p, l_kernel) = match c.mode {
            Mode::Dplr => {
                let p = complex(w, &format!("{k}.P"), &[1, d, n, 2])?;
                let name = format!("{k}.l_kernel");
                let l = if w.has(&name) { w.int_scalar(&name)? } else { 0 };
                // Its power of two is checked with the rest of the layer (Ssm::prepare).
                let l = usize::try_from(l)
                    .map_err(|_| Error::Model(format!("{name} = {l}: a kernel length cannot be negative")))?;
                (vec![p], l)
            }
            Mode::Diag(_) => (Vec::new(), 0),
        };
        let ssm = Ssm {
            mode: c.mode,
            h: d,
            n,
            dt: inv_dt.iter().map(|&x| (x as f64).exp()).collect(),
            a,
            b,
            c: cc,
            p,
            l_kernel,
            d: dd.iter().map(|&x| x as f64).collect(),
        };
        Ok((ssm, backward))
    }

    fn load(dev: &Device, c: &S4Config, w: &Weights, i: usize, dtype: DType) -> Result<Self> {
        let d = c.d_model;
        let (ssm, backward) = Self::ssm(c, w, i)?;
        let preps =
            ssm.prepare_outputs(backward.as_slice()).map_err(|e| Error::Model(format!("layer {i}: {e}")))?;
        let mut vandermonde = Vec::new();
        if let Mode::Diag(_) = c.mode {
            for prep in &preps {
                let t = prep.vandermonde_terms()?;
                vandermonde.push((
                    Tensor::from_slice(dev, &[d * c.n, 4], &t.terms)?,
                    Tensor::from_slice(dev, &[d * c.n, 2], &t.theta)?,
                ));
            }
        }
        let prep = &preps[0];
        let state_terms = match c.mode {
            Mode::Diag(_) => Tensor::from_slice(dev, &[d * c.n, 4], &prep.state_terms()?.terms)?,
            Mode::Dplr => {
                let r = prep.rows;
                Tensor::from_slice(dev, &[d, r, r], &prep.chunk_power(s4k::STATE_CHUNK))?
            }
        };
        let (mat, bvec) = prep.recurrence();
        let r = prep.rows;
        let (lin_w, _) = w.f32(&format!("layers.{i}.output_linear.0.weight"), Some(&[2 * d, d]))?;
        let (lin_b, _) = w.f32(&format!("layers.{i}.output_linear.0.bias"), Some(&[2 * d]))?;
        let dskip: Vec<f32> = prep.ssm.d.iter().map(|&x| x as f32).collect();
        Ok(Self {
            c: c.clone(),
            norm_w: w.norm(dev, &format!("norms.{i}.weight"), d, false)?,
            norm_b: w.norm(dev, &format!("norms.{i}.bias"), d, false)?,
            vandermonde,
            state_terms,
            cauchy: Mutex::new(HashMap::new()),
            dskip: Tensor::from_slice(dev, &[d], &dskip)?,
            mat: Tensor::from_slice(dev, &[d, r + 1, r], &mat)?,
            bvec: Tensor::from_slice(dev, &[d, r + 1], &bvec)?,
            // torch's GLU: the first half of the features times σ(the second half).
            w_a: Tensor::from_f32(dev, &[d, d], &lin_w[..d * d], dtype)?,
            b_a: Tensor::from_slice(dev, &[d], &lin_b[..d])?,
            w_g: Tensor::from_f32(dev, &[d, d], &lin_w[d * d..], dtype)?,
            b_g: Tensor::from_slice(dev, &[d], &lin_b[d..])?,
            preps,
        })
    }

    /// Kernel `half`'s Cauchy terms for an inverse FFT of `lk` points, computed once per length.
    fn cauchy_terms(&self, dev: &Device, half: usize, lk: usize) -> Result<Tensor> {
        let mut cache = self.cauchy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(&(half, lk)) {
            return Ok(t.clone());
        }
        let terms = self.preps[half].cauchy_terms(lk)?;
        let t = Tensor::from_slice(dev, &[self.c.d_model * self.c.n, 5, 2], &terms)?;
        cache.insert((half, lk), t.clone());
        Ok(t)
    }
}

impl Sublayer for S4Mixer {
    fn state_slots(&self, layer: usize, s: usize) -> Vec<SlotSpec> {
        vec![SlotSpec::new(layer, "s4", SlotKind::DiagonalSsm, &[s, self.c.d_model, self.preps[0].rows])]
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
        let p = format!("layers.{i}");
        let xn = b.layer_norm(&format!("{p}.norm"), h, &self.norm_w, &self.norm_b, self.c.eps)?;
        let node = S4Node {
            seqs: SeqSpec::of(&batch.seqs),
            init: state.started(),
            gen: if self.vandermonde.is_empty() { KernelGen::Cauchy } else { KernelGen::Vandermonde },
            n: self.c.n,
            method: ConvMethod::Auto,
            bidirectional: self.c.bidirectional,
        };
        // The convolution the device's tuning (or the built-in crossover) picks for the length;
        // the node plans its scratch for it.
        let node = S4Node { method: s4k::choose_conv(dev, node.longest()), ..node };
        let dskip = b.weight(&format!("{p}.D"), &self.dskip);
        let mat = b.weight(&format!("{p}.recurrence"), &self.mat);
        let bvec = b.weight(&format!("{p}.recurrence_input"), &self.bvec);
        let st = b.state(&format!("{p}.s4_state"), state.slot(i, "s4")?);
        let seqs = b.seqs(&batch.seqs);
        let mut inputs = vec![xn, dskip, mat, bvec, st, seqs];
        // Kernel terms where the node convolves; elsewhere D stands in, unread.
        for half in 0..self.preps.len() {
            let terms: Vec<Tensor> = match (self.vandermonde.get(half), node.convolves()) {
                (Some((terms, theta)), true) => vec![terms.clone(), theta.clone()],
                (None, true) => {
                    vec![self.cauchy_terms(dev, half, s4k::cauchy_length(node.longest().max(1)))?]
                }
                (v, false) => vec![self.dskip.clone(); if v.is_some() { 2 } else { 1 }],
            };
            for (j, t) in terms.iter().enumerate() {
                inputs.push(b.weight(&format!("{p}.kernel{half}.terms{j}"), t));
            }
        }
        inputs.push(b.weight(&format!("{p}.state_terms"), &self.state_terms));
        let y = b.g.op(node, &inputs)?;
        let y = b.g.unary(Unary::Gelu, y, 1.0)?;
        let a = b.linear(&format!("{p}.glu_value"), y, &self.w_a, Some(&self.b_a))?;
        let g = b.linear(&format!("{p}.glu_gate"), y, &self.w_g, Some(&self.b_g))?;
        let glu = b.g.binary(Binary::MulSigmoid, a, g)?;
        b.g.add(h, glu)
    }

    fn parameters(&self) -> usize {
        let (d, n) = (self.c.d_model, self.c.n);
        let kernels = self.preps.len();
        let kernel = d
            + 2 * d * n
            + 2 * d * n
            + 2 * kernels * d * n
            + if self.c.mode == Mode::Dplr { 2 * d * n } else { 0 };
        2 * d + d + kernel + 2 * d * d + 2 * d
    }
}

/// A loaded S4 / S4D language model.
pub struct S4Model {
    pub cfg: S4Config,
    stack: Stack,
}

impl S4Model {
    pub fn load(
        dev: &Device,
        cfg: &Config,
        w: &Weights,
        dtype: DType,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self> {
        let c = S4Config::from_config(cfg)?;
        // Complex tensors first, so a wrong last dimension is named as such.
        for spec in c.schema().iter().filter(|s| s.shape.len() == 4) {
            if let Some((_, got)) = w.info(&spec.name) {
                if got.last() != Some(&2) {
                    return Err(Error::Model(format!(
                        "tensor `{}` {got:?} is complex and must have a last dimension of 2 (real, imaginary)",
                        spec.name
                    )));
                }
            }
        }
        common::check_config(w, "layers.", c.layers, c.eps, &c.schema())?;
        let names = HeadNames {
            embed: "embedding.weight",
            norm: "norm_f.weight",
            lm_head: "lm_head.weight",
            norm_plus_one: false,
        };
        let mut head = Head::load_named(dev, w, names, c.vocab, c.d_model, c.tie_embeddings, dtype)?;
        head.norm_f_bias = Some(w.norm(dev, "norm_f.bias", c.d_model, false)?);
        let blocks = Stack::load_blocks(c.layers, progress, |i| {
            Ok(Block::mixer(S4Mixer::load(dev, &c, w, i, dtype)?))
        })?;
        Ok(Self { stack: Stack { head, blocks, eps: c.eps }, cfg: c })
    }
}

super::arch::stack_architecture! {
    /// The `s4` architecture (state-spaces/s4's S4Block language model, S4 or S4D).
    S4Architecture: S4Model, S4Config, "s4"
}
