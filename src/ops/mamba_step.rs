//! The fused decode step of a Mamba block (`shaders/mamba_step.wgsl`): dt_proj, softplus, the
//! selective scan's state update, the D skip and the silu(z) gate in one dispatch, for one token
//! per sequence. With the fused in_proj step ([`super::matmul::linear_in_step`]: RMSNorm,
//! in_proj and the conv step) and x_proj reading its columns ([`super::matmul::linear_columns`])
//! a decode layer is four dispatches instead of nine: at batch 1 a decode step is bound by
//! per-dispatch latency, not by the bytes it moves.

use super::matmul::{weight_mode, WeightMode};
use super::selective_scan::{scan_flags, ScanFlags};
use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/mamba_step.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("mamba_step");

/// Tensors of one fused step; layouts as in the shader's header.
pub struct MambaStepArgs<'a> {
    /// `[S, X]`: the conv'd x at columns `[0, D)`, the gate z at `[z_col, z_col + D)`.
    pub xz: &'a Tensor,
    pub z_col: usize,
    /// `[S, R + 2N]`: x_proj's output (dt_in, B, C).
    pub xdbl: &'a Tensor,
    /// dt_proj weight `[D, R]`, f32 or f16.
    pub w_dt: &'a Tensor,
    /// `[D, N + 2]`: A, D skip and dt bias ([`super::selective_scan::pack_channel_params`]).
    pub chan: &'a Tensor,
    /// `[S, D, N]`, updated in place.
    pub state: &'a Tensor,
    /// Softplus, dt bias, D skip and negative eigenvalues; `init_state` is implied (a decode
    /// step continues a state).
    pub flags: ScanFlags,
}

crate::uniform! {
    /// `mamba_step`'s parameters: x at columns [0, dim) and z at [zc, zc + dim) of rows of `xs`.
    pub struct MambaStepParams {
        pub dim: u32,
        pub nstate: u32,
        pub rank: u32,
        pub nseq: u32,
        pub flags: u32,
        pub xs: u32,
        pub zc: u32,
    }
}

fn variant(mode: WeightMode) -> Variant {
    let v = Variant::new(format!("mamba_step.{}", mode.tag()), &SHADER, "mamba_step")
        .with_params::<MambaStepParams>()
        .with_flags(scan_flags::SET)
        .define(mode.flag(), 1)
        .define("WTYPE", mode.wgsl(false).0);
    mode.with_requirement(v)
}

pub fn variants() -> Vec<Variant> {
    WeightMode::ALL.iter().map(|&m| variant(m)).collect()
}

/// Records the fused step: `y` `[S, D]` f32.
pub fn mamba_step(rec: &mut Recorder, a: &MambaStepArgs, y: &Tensor) -> Result<()> {
    let (d, r) = match a.w_dt.shape() {
        &[d, r] if d > 0 && r > 0 => (d, r),
        other => return Err(Error::Shape(format!("w_dt: expected [D, R], got {other:?}"))),
    };
    let cs = a.chan.shape();
    if cs.len() != 2 || cs[0] != d || cs[1] < 3 || a.chan.dtype() != DType::F32 {
        return Err(Error::Shape(format!("chan: expected f32 [{d}, N + 2], got {cs:?}")));
    }
    let n = cs[1] - 2;
    let (s, xs) = match a.xz.shape() {
        &[s, xs] if s > 0 && xs >= d && a.z_col + d <= xs => (s, xs),
        other => {
            return Err(Error::Shape(format!(
                "xz: expected [S, X] holding x at [0, {d}) and z at [{}, {}), got {other:?}",
                a.z_col,
                a.z_col + d
            )))
        }
    };
    super::expect("xz", a.xz, &[s, xs], DType::F32)?;
    super::expect("xdbl", a.xdbl, &[s, r + 2 * n], DType::F32)?;
    super::expect("state", a.state, &[s, d, n], DType::F32)?;
    super::expect("y", y, &[s, d], DType::F32)?;
    let f = a.flags;
    let f = ScanFlags { init_state: false, ..f };
    let params = Params::of(&MambaStepParams {
        dim: super::word("channels", d)?,
        nstate: n as u32,
        rank: super::word("dt rank", r)?,
        nseq: super::word("sequences", s)?,
        flags: f.bits(true),
        xs: super::word("row stride", xs)?,
        zc: super::word("z column", a.z_col)?,
    });
    let v = variant(weight_mode(rec.device().caps(), a.w_dt.dtype()));
    let wg = grid(rec.device(), s * d.div_ceil(64))?;
    rec.dispatch(&v, &params, &[a.xz, a.xdbl, a.w_dt, a.chan, a.state, y], wg)
}

/// Host inputs of [`mamba_step_ref`] (shapes as in [`MambaStepArgs`]).
pub struct MambaStepRef<'a> {
    pub xz: &'a [f32],
    pub xs: usize,
    pub z_col: usize,
    pub xdbl: &'a [f32],
    pub w_dt: &'a [f32],
    pub chan: &'a [f32],
    pub state: &'a [f32],
    pub sequences: usize,
    pub dim: usize,
    pub rank: usize,
    pub n: usize,
    pub flags: ScanFlags,
}

/// f64 reference: returns (y `[S, D]`, new state `[S, D, N]`).
pub fn mamba_step_ref(r: &MambaStepRef) -> (Vec<f64>, Vec<f64>) {
    let (d_all, n, rk) = (r.dim, r.n, r.rank);
    let mut y = vec![0f64; r.sequences * d_all];
    let mut state: Vec<f64> = r.state.iter().map(|&v| v as f64).collect();
    for s in 0..r.sequences {
        let row = &r.xdbl[s * (rk + 2 * n)..(s + 1) * (rk + 2 * n)];
        for d in 0..d_all {
            let cp = &r.chan[d * (n + 2)..(d + 1) * (n + 2)];
            let mut dt: f64 = (0..rk).map(|k| row[k] as f64 * r.w_dt[d * rk + k] as f64).sum();
            if r.flags.delta_bias {
                dt += cp[n + 1] as f64;
            }
            if r.flags.delta_softplus && dt <= 20.0 {
                dt = dt.exp().ln_1p();
            }
            let x = r.xz[s * r.xs + d] as f64;
            let mut acc = 0.0;
            for k in 0..n {
                let mut a = (dt * cp[k] as f64).exp();
                if r.flags.neg_eigen {
                    a = 2.0 * a - 1.0;
                }
                let h = &mut state[(s * d_all + d) * n + k];
                *h = a * *h + dt * row[rk + k] as f64 * x;
                acc += *h * row[rk + n + k] as f64;
            }
            if r.flags.d_skip {
                acc += cp[n] as f64 * x;
            }
            let z = r.xz[s * r.xs + r.z_col + d] as f64;
            y[s * d_all + d] = acc * z / (1.0 + (-z).exp());
        }
    }
    (y, state)
}
