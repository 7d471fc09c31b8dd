//! Synthetic Mamba-style stacks for planning reports, executor tests and benchmarks.
//!
//! Each block is pre-norm residual: RMSNorm → in-projection (x and z halves, d_inner = 2·d)
//! → causal conv1d (width 4, with state) → x-projection (dt rank + 2·N) → selective scan
//! (N = 16, with state) → gate y·silu(z) → out-projection → residual add. The conv and scan
//! nodes are shape-only in graphs for now, so [`MixerKind::GateOnly`] builds an
//! executable block without them (norm → in-proj → gate → out-proj → residual).

use super::{Graph, TensorId};
use crate::error::Result;
use crate::tensor::DType;

/// Which token mixer the synthetic block has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixerKind {
    /// Conv1d + selective scan (plannable, not yet executable).
    ConvScan,
    /// No sequence mixer: the gated projection only (executable today).
    GateOnly,
}

/// Shape of a synthetic stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticConfig {
    pub layers: usize,
    pub d_model: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub d_state: usize,
    pub mixer: MixerKind,
    pub weight_dtype: DType,
}

impl SyntheticConfig {
    pub fn mamba(layers: usize, d_model: usize, seq_len: usize, batch: usize) -> Self {
        Self {
            layers,
            d_model,
            seq_len,
            batch,
            d_state: 16,
            mixer: MixerKind::ConvScan,
            weight_dtype: DType::F16,
        }
    }
}

/// Builds the stack: input `x` [batch·seq_len, d_model], output the final normalised hidden
/// state.
pub fn mamba_stack(cfg: &SyntheticConfig) -> Result<(Graph, TensorId)> {
    let (d, di, n) = (cfg.d_model, 2 * cfg.d_model, cfg.d_state);
    let rank = d.div_ceil(16);
    let tokens = cfg.batch * cfg.seq_len;
    let wdt = cfg.weight_dtype;
    let mut g = Graph::new();
    let mut r = g.input("x", &[tokens, d], DType::F32);
    for l in 0..cfg.layers {
        let p = |s: &str| format!("layers.{l}.{s}");
        let w_norm = g.weight(&p("norm.weight"), &[d], DType::F32);
        let w_x = g.weight(&p("in_proj_x.weight"), &[di, d], wdt);
        let w_z = g.weight(&p("in_proj_z.weight"), &[di, d], wdt);
        let w_out = g.weight(&p("out_proj.weight"), &[d, di], wdt);
        let h = g.rms_norm(r, w_norm, 1e-5)?;
        let x = g.linear(h, w_x, None)?;
        let z = g.linear(h, w_z, None)?;
        let y = match cfg.mixer {
            MixerKind::ConvScan => {
                let w_conv = g.weight(&p("conv1d.weight"), &[di, 4], DType::F32);
                let conv_state = g.state(&p("conv_state"), &[cfg.batch, di, 3]);
                let w_xproj = g.weight(&p("x_proj.weight"), &[rank + 2 * n, di], wdt);
                let a = g.weight(&p("A"), &[di, n], DType::F32);
                let ssm_state = g.state(&p("ssm_state"), &[cfg.batch, di, n]);
                let xc = g.causal_conv1d(x, w_conv, conv_state)?;
                let dbc = g.linear(xc, w_xproj, None)?;
                g.selective_scan(xc, dbc, a, ssm_state)?
            }
            MixerKind::GateOnly => x,
        };
        let gated = g.gate(y, z)?;
        let o = g.linear(gated, w_out, None)?;
        r = g.add(r, o)?;
    }
    let w_norm_f = g.weight("norm_f.weight", &[d], DType::F32);
    let out = g.rms_norm(r, w_norm_f, 1e-5)?;
    g.output(out);
    Ok((g, out))
}
