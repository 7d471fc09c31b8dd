//! Mixture-of-experts MLPs (`shaders/moe.wgsl`): a router over E experts keeps the top K per
//! token ([`Scoring`]: Qwen3-Next's softmax, or Kimi-Linear's sigmoid with a correction bias and
//! a routed scale; renormalised with `norm_topk_prob`); each chosen expert is a SwiGLU MLP
//! (`gate` and `up` `[E, I, d]` each, `down` `[E, d, I]`; gate and up are kept apart so that a
//! large model's experts fit a binding, as Kimi-Linear-48B's, whose stacked gate and up would
//! take 2.4 GB), the outputs summed with the router's weights,
//! plus an optional shared expert's output (scaled by sigmoid of its gate where it has one).
//!
//! Three kernels: [`route`] (one workgroup per token), [`experts_up`] (silu(gate)·up of each
//! chosen expert, a GEMV per token and slot that reads only its expert's rows) and
//! [`experts_down`] (the weighted sum of the down projections, with the shared expert and the
//! residual add fused into its store). A token reads only its K experts' weights, as decoding
//! wants; a prefill reads them once per token (grouping tokens by expert is not done yet).

use super::{grid, word, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/moe.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("moe");

/// The most experts the router takes (its softmax lives in workgroup memory).
pub const MAX_EXPERTS: usize = 1024;

crate::uniform! {
    /// The MoE kernels' parameters.
    pub struct MoeParams { pub tokens: u32, pub experts: u32, pub k: u32, pub d: u32, pub inter: u32, pub flags: u32, pub scale: f32 }
}

crate::flags! {
    /// Bits of [`MoeParams::flags`].
    pub mod moe_flags { NORM_TOPK = 1, ACCUMULATE = 2, SHARED = 4, SIGMOID = 8, SHARED_GATE = 16 }
}

fn route_variant() -> Variant {
    Variant::new("moe.route", &SHADER, "moe_route")
        .define("ROUTE", 1)
        .define("EMAX", MAX_EXPERTS)
        .define("WG", 64)
        .define("SUBGROUPS", 0)
        .with_params::<MoeParams>()
        .with_flags(moe_flags::SET)
}

fn experts_variant(down: bool, f16: bool) -> Variant {
    let name = format!("moe.{}.{}", if down { "down" } else { "up" }, if f16 { "f16" } else { "f32" });
    Variant::new(name, &SHADER, if down { "moe_down" } else { "moe_up" })
        .define("EXPERTS", 1)
        .define(if down { "DOWN" } else { "UP" }, 1)
        .define("W_F16P", f16 as u32)
        .define("WTYPE", if f16 { "u32" } else { "f32" })
        .with_params::<MoeParams>()
        .with_flags(moe_flags::SET)
}

pub fn variants() -> Vec<Variant> {
    let mut v = vec![route_variant()];
    for down in [false, true] {
        for f16 in [false, true] {
            v.push(experts_variant(down, f16));
        }
    }
    v
}

/// Sizes of one MoE layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeDims {
    pub experts: usize,
    /// Experts per token.
    pub k: usize,
    pub d: usize,
    /// Each expert's intermediate width.
    pub inter: usize,
}

impl MoeDims {
    pub fn check(&self) -> Result<()> {
        let MoeDims { experts, k, d, inter } = *self;
        if experts == 0 || experts > MAX_EXPERTS || k == 0 || k > experts || k > 64 || d == 0 || inter == 0 {
            return Err(Error::Shape(format!(
                "MoE: {k} of {experts} experts (at most {MAX_EXPERTS} experts and 64 per token), d {d}, intermediate {inter}"
            )));
        }
        Ok(())
    }

    fn params(&self, tokens: usize, flags: u32, scale: f32) -> Result<Params> {
        Ok(Params::of(&MoeParams {
            tokens: word("tokens", tokens)?,
            experts: word("experts", self.experts)?,
            k: word("experts per token", self.k)?,
            d: word("hidden size", self.d)?,
            inter: word("expert width", self.inter)?,
            flags,
            scale,
        }))
    }
}

fn tokens_of(x: &Tensor, cols: usize, name: &str) -> Result<usize> {
    match x.shape() {
        &[t, c] if c == cols && x.dtype() == DType::F32 => Ok(t),
        other => Err(Error::Shape(format!("MoE {name}: expected f32 [T, {cols}], got {other:?}"))),
    }
}

/// A weight `[E, rows, cols]` (f32, or f16 with an even element count).
fn check_weight(w: &Tensor, shape: [usize; 3], name: &str) -> Result<bool> {
    let f16 = w.dtype() == DType::F16;
    if w.shape() != shape || !(f16 || w.dtype() == DType::F32) || (f16 && !shape[2].is_multiple_of(2)) {
        return Err(Error::Shape(format!(
            "MoE {name}: expected {shape:?} f32 or f16 (f16 rows of even length), got {:?} {:?}",
            w.shape(),
            w.dtype()
        )));
    }
    Ok(f16)
}

/// How the router turns logits into the chosen experts' weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// Softmax over the experts (Qwen3-Next).
    Softmax,
    /// sigmoid(logit), chosen by score plus a correction bias `[E]`, the weights times `scale`
    /// (`routed_scaling_factor`; Kimi-Linear, DeepSeek-V3 with one expert group).
    Sigmoid { scale: f32 },
}

/// Records the routing: `route` `[T, 2·K]` (the experts as f32, then their weights) from
/// `logits` `[T, E]`; `bias` `[E]` is the sigmoid scoring's correction bias.
pub fn route(
    rec: &mut Recorder,
    m: MoeDims,
    logits: &Tensor,
    (scoring, norm_topk): (Scoring, bool),
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    m.check()?;
    let t = tokens_of(logits, m.experts, "router logits")?;
    super::expect("MoE route", out, &[t, 2 * m.k], DType::F32)?;
    let mut flags = if norm_topk { moe_flags::NORM_TOPK } else { 0 };
    // Softmax binds a 1-element placeholder for the bias (not logits: an arena buffer may not be
    // bound both read-write and read-only in one dispatch).
    let placeholder;
    let (scale, bias) = match (scoring, bias) {
        (Scoring::Softmax, _) => {
            placeholder = Tensor::empty(rec.device(), &[1], DType::F32)?;
            (1.0, &placeholder)
        }
        (Scoring::Sigmoid { scale }, Some(b)) => {
            super::expect("MoE router bias", b, &[m.experts], DType::F32)?;
            flags |= moe_flags::SIGMOID;
            (scale, b)
        }
        (Scoring::Sigmoid { .. }, None) => {
            return Err(Error::Invalid("sigmoid routing needs its correction bias".into()))
        }
    };
    if !scale.is_finite() {
        return Err(Error::Invalid(format!("routed scaling factor {scale} must be finite")));
    }
    let p = m.params(t, flags, scale)?;
    rec.dispatch(&route_variant(), &p, &[logits, out, bias], grid(rec.device(), t)?)
}

/// One of the experts' stacked weights (`gate` `[E, I, d]` or `down` `[E, d, I]`) with
/// the routing that picks its experts ([`route`]'s output).
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    pub weight: &'a Tensor,
    pub route: &'a Tensor,
}

/// Records `h` `[T, K·I]` = silu(gate)·up of each token's chosen experts; `x` `[T, d]`, the
/// weights `gate` (with the route) and `up`, `[E, I, d]` each and of one dtype.
pub fn experts_up(
    rec: &mut Recorder,
    m: MoeDims,
    x: &Tensor,
    gate: Routed,
    up: &Tensor,
    h: &Tensor,
) -> Result<()> {
    m.check()?;
    let t = tokens_of(x, m.d, "input")?;
    let Routed { weight: gate, route } = gate;
    let f16 = check_weight(gate, [m.experts, m.inter, m.d], "gate")?;
    if check_weight(up, [m.experts, m.inter, m.d], "up")? != f16 {
        return Err(Error::Shape(format!(
            "MoE gate {:?} and up {:?} must share a dtype",
            gate.dtype(),
            up.dtype()
        )));
    }
    super::expect("MoE route", route, &[t, 2 * m.k], DType::F32)?;
    super::expect("MoE h", h, &[t, m.k * m.inter], DType::F32)?;
    let p = m.params(t, 0, 1.0)?;
    let wg = grid(rec.device(), t * m.k * m.inter.div_ceil(2))?;
    rec.dispatch(&experts_variant(false, f16), &p, &[x, gate, route, h, up], wg)
}

/// The shared expert of [`experts_down`]: its output `[T, d]` and, when it is gated, the gate
/// logits `[T, 1]` (sigmoid).
pub struct Shared<'a> {
    pub out: &'a Tensor,
    pub gate: Option<&'a Tensor>,
}

/// Records `y` `[T, d]` = Σ_k weight_k · down[e_k]·h_k (+ sigmoid(gate)·shared) (+ y when
/// `accumulate`); the weight `down`.
pub fn experts_down(
    rec: &mut Recorder,
    m: MoeDims,
    h: &Tensor,
    down: Routed,
    shared: Option<Shared>,
    accumulate: bool,
    y: &Tensor,
) -> Result<()> {
    m.check()?;
    let Routed { weight: down, route } = down;
    let t = tokens_of(h, m.k * m.inter, "h")?;
    let f16 = check_weight(down, [m.experts, m.d, m.inter], "down")?;
    super::expect("MoE route", route, &[t, 2 * m.k], DType::F32)?;
    super::expect("MoE out", y, &[t, m.d], DType::F32)?;
    let mut flags = if accumulate { moe_flags::ACCUMULATE } else { 0 };
    let (so, sg) = match &shared {
        Some(s) => {
            super::expect("MoE shared expert output", s.out, &[t, m.d], DType::F32)?;
            flags |= moe_flags::SHARED;
            if let Some(g) = s.gate {
                super::expect("MoE shared expert gate", g, &[t, 1], DType::F32)?;
                flags |= moe_flags::SHARED_GATE;
            }
            (s.out, s.gate.unwrap_or(s.out))
        }
        None => (h, h),
    };
    let p = m.params(t, flags, 1.0)?;
    let wg = grid(rec.device(), t * m.d.div_ceil(4))?;
    rec.dispatch(&experts_variant(true, f16), &p, &[h, down, route, y, so, sg], wg)
}

/// f64 reference of the whole MLP after its norm: y `[T, d]` from x `[T, d]`, the router
/// weight `[E, d]`, gate and up `[E, I, d]`, down `[E, d, I]`, and optionally the shared expert's
/// output `[T, d]` with (gated) its gate logits `[T]`.
pub struct MoeRef<'a> {
    pub m: MoeDims,
    pub x: &'a [f32],
    pub router: &'a [f32],
    pub gate: &'a [f32],
    pub up: &'a [f32],
    pub down: &'a [f32],
    pub norm_topk: bool,
    pub scoring: Scoring,
    /// The sigmoid scoring's correction bias `[E]`.
    pub bias: &'a [f32],
    /// The shared expert's output `[T, d]` and (gated) its gate logits `[T]`.
    pub shared: Option<(&'a [f32], Option<&'a [f32]>)>,
}

/// (chosen experts, their weights) of one token's router logits.
pub fn route_ref(
    logits: &[f64],
    k: usize,
    scoring: Scoring,
    bias: &[f32],
    norm_topk: bool,
) -> (Vec<usize>, Vec<f64>) {
    let e = logits.len();
    let (rank, weight, total): (Vec<f64>, Vec<f64>, f64) = match scoring {
        Scoring::Softmax => {
            let m = logits.iter().cloned().fold(f64::MIN, f64::max);
            let ex: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let s = ex.iter().sum();
            (ex.clone(), ex, s)
        }
        Scoring::Sigmoid { .. } => {
            let sc: Vec<f64> = logits.iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect();
            (sc.iter().zip(bias).map(|(s, &b)| s + b as f64).collect(), sc, 1.0)
        }
    };
    let mut order: Vec<usize> = (0..e).collect();
    order
        .sort_by(|&a, &b| rank[b].partial_cmp(&rank[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    let chosen = order[..k].to_vec();
    let mut w: Vec<f64> = chosen.iter().map(|&i| weight[i] / total).collect();
    if norm_topk {
        let picked: f64 =
            w.iter().sum::<f64>() + if matches!(scoring, Scoring::Sigmoid { .. }) { 1e-20 } else { 0.0 };
        w.iter_mut().for_each(|v| *v /= picked);
    }
    if let Scoring::Sigmoid { scale } = scoring {
        w.iter_mut().for_each(|v| *v *= scale as f64);
    }
    (chosen, w)
}

/// Token t's row of a route `[T, 2·K]`: (chosen experts, their weights).
fn route_row(route: &[f64], k: usize, t: usize) -> (Vec<usize>, Vec<f64>) {
    let row = &route[t * 2 * k..(t + 1) * 2 * k];
    (row[..k].iter().map(|&e| e as usize).collect(), row[k..].to_vec())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// f64 reference of [`experts_up`]: h `[T, K·I]` from x `[T, d]`, gate, up and the route.
pub fn experts_up_ref(m: MoeDims, x: &[f64], gate: &[f64], up: &[f64], route: &[f64]) -> Vec<f64> {
    let MoeDims { k, d, inter, .. } = m;
    let mut out = Vec::with_capacity(route.len() / 2 * inter);
    for t in 0..route.len() / (2 * k) {
        let xr = &x[t * d..(t + 1) * d];
        let row = |w: &[f64], e: usize, n: usize| dot(&w[(e * inter + n) * d..][..d], xr);
        for e in route_row(route, k, t).0 {
            out.extend((0..inter).map(|n| {
                let g = row(gate, e, n);
                g / (1.0 + (-g).exp()) * row(up, e, n)
            }));
        }
    }
    out
}

/// f64 reference of [`experts_down`] added to `residual` `[T, d]`: from h, down, the route and
/// optionally the shared expert's output `[T, d]` with (gated) its gate logits `[T]`.
pub fn experts_down_ref(
    m: MoeDims,
    h: &[f64],
    down: &[f64],
    route: &[f64],
    shared: Option<(&[f64], Option<&[f64]>)>,
    residual: &[f64],
) -> Vec<f64> {
    let MoeDims { k, d, inter, .. } = m;
    let mut out = residual.to_vec();
    for t in 0..route.len() / (2 * k) {
        let (experts, weights) = route_row(route, k, t);
        for (slot, (e, w)) in experts.into_iter().zip(weights).enumerate() {
            let hr = &h[(t * k + slot) * inter..][..inter];
            for n in 0..d {
                out[t * d + n] += w * dot(&down[(e * d + n) * inter..][..inter], hr);
            }
        }
        if let Some((so, sg)) = shared {
            let g = sg.map_or(1.0, |sg| 1.0 / (1.0 + (-sg[t]).exp()));
            for n in 0..d {
                out[t * d + n] += so[t * d + n] * g;
            }
        }
    }
    out
}

/// The whole MLP as the three kernels compute it, in f64.
pub fn moe_ref(r: &MoeRef) -> Vec<f64> {
    let MoeDims { experts, k, d, .. } = r.m;
    let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
    let (x, router) = (wide(r.x), wide(r.router));
    let t_all = x.len() / d;
    let mut route = Vec::with_capacity(t_all * 2 * k);
    for t in 0..t_all {
        let logits: Vec<f64> =
            (0..experts).map(|e| dot(&router[e * d..(e + 1) * d], &x[t * d..(t + 1) * d])).collect();
        let (chosen, weights) = route_ref(&logits, k, r.scoring, r.bias, r.norm_topk);
        route.extend(chosen.iter().map(|&e| e as f64));
        route.extend(weights);
    }
    let h = experts_up_ref(r.m, &x, &wide(r.gate), &wide(r.up), &route);
    let shared = r.shared.map(|(so, sg)| (wide(so), sg.map(wide)));
    let shared = shared.as_ref().map(|(so, sg)| (so.as_slice(), sg.as_deref()));
    experts_down_ref(r.m, &h, &wide(r.down), &route, shared, &vec![0.0; t_all * d])
}
