//! Synthetic Mamba-style stacks for planning reports, executor tests and benchmarks.
//!
//! Each block is pre-norm residual: RMSNorm → in-projection (x and z halves, d_inner = 2·d)
//! → causal conv1d + silu (width 4, with state) → x-projection (dt rank, then B and C) →
//! dt projection → selective scan (N = 16, with state, gated by silu(z)) → out-projection →
//! residual add: the real conv and scan nodes ([`super::nodes`]), so the stack executes.
//! [`MixerKind::GateOnly`] leaves the sequence mixer out (norm → in-proj → gate → out-proj →
//! residual). With `activation_dtype` f16, the scan's inputs (or the gate) are cast to f16,
//! which the scan kernels and the elementwise ops take, and back to f32 where an op needs it.

use super::nodes::{ConvNode, ScanNode, SeqSpec};
use super::{Graph, TensorId};
use crate::error::Result;
use crate::ops::selective_scan::{ScanFlags, ScanKernel};
use crate::tensor::DType;

/// Which token mixer the synthetic block has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixerKind {
    /// Conv1d + selective scan.
    ConvScan,
    /// No sequence mixer: the gated projection only.
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
    /// The dtype of the mixer's activations (f32 or f16); state and accumulation stay f32.
    pub activation_dtype: DType,
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
            activation_dtype: DType::F32,
        }
    }
}

/// Builds the stack: input `x` [batch·seq_len, d_model], output the final normalised hidden
/// state.
pub fn mamba_stack(cfg: &SyntheticConfig) -> Result<(Graph, TensorId)> {
    let (d, di, n) = (cfg.d_model, 2 * cfg.d_model, cfg.d_state);
    let rank = d.div_ceil(16);
    let tokens = cfg.batch * cfg.seq_len;
    let (wdt, act) = (cfg.weight_dtype, cfg.activation_dtype);
    let mut g = Graph::new();
    let mut r = g.input("x", &[tokens, d], DType::F32);
    let seqs_spec = SeqSpec::uniform(cfg.batch, cfg.seq_len);
    // The packed-sequence table, an input of the conv and scan nodes only.
    let seqs = (cfg.mixer == MixerKind::ConvScan).then(|| g.input("seqs", &[cfg.batch + 1], DType::U32));
    for l in 0..cfg.layers {
        let p = |s: &str| format!("layers.{l}.{s}");
        let w_norm = g.weight(&p("norm.weight"), &[d], DType::F32);
        let w_x = g.weight(&p("in_proj_x.weight"), &[di, d], wdt);
        let w_z = g.weight(&p("in_proj_z.weight"), &[di, d], wdt);
        let w_out = g.weight(&p("out_proj.weight"), &[d, di], wdt);
        let h = g.rms_norm(r, w_norm, 1e-5)?;
        let x = g.linear(h, w_x, None)?;
        let z = g.linear(h, w_z, None)?;
        let gated = match cfg.mixer {
            MixerKind::ConvScan => {
                let w_conv = g.weight(&p("conv1d.weight"), &[di, 4], DType::F32);
                let conv_state = g.state(&p("conv_state"), &[cfg.batch, di, 3]);
                let w_dt_in = g.weight(&p("x_proj.dt.weight"), &[rank, di], wdt);
                let w_bc = g.weight(&p("x_proj.bc.weight"), &[2 * n, di], wdt);
                let w_dt = g.weight(&p("dt_proj.weight"), &[di, rank], wdt);
                let chan = g.weight(&p("chan"), &[di, n + 2], DType::F32);
                let ssm_state = g.state(&p("ssm_state"), &[cfg.batch, di, n]);
                let conv = ConvNode { seqs: seqs_spec.clone(), step: false, silu: true, init: false };
                let seqs = seqs.expect("declared for ConvScan");
                let xc = g.op(conv, &[x, w_conv, conv_state, seqs])?;
                let dt_in = g.linear(xc, w_dt_in, None)?;
                let bc = g.linear(xc, w_bc, None)?;
                let dt = g.linear(dt_in, w_dt, None)?;
                let flags = ScanFlags {
                    delta_softplus: true,
                    delta_bias: true,
                    d_skip: true,
                    ..ScanFlags::default()
                };
                let scan = ScanNode {
                    seqs: seqs_spec.clone(),
                    kernel: ScanKernel::Chunked,
                    flags,
                    groups: 1,
                    step: false,
                };
                let ins = [g.cast(xc, act)?, g.cast(dt, act)?, g.cast(bc, act)?];
                let z = g.cast(z, act)?;
                g.op(scan, &[ins[0], ins[1], ins[2], chan, ssm_state, seqs, z])?
            }
            MixerKind::GateOnly => {
                let (x, z) = (g.cast(x, act)?, g.cast(z, act)?);
                let gated = g.gate(x, z)?;
                g.cast(gated, DType::F32)?
            }
        };
        let o = g.linear(gated, w_out, None)?;
        r = g.add(r, o)?;
    }
    let w_norm_f = g.weight("norm_f.weight", &[d], DType::F32);
    let out = g.rms_norm(r, w_norm_f, 1e-5)?;
    g.output(out);
    Ok((g, out))
}
