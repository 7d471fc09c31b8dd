//! The sequence mixers as graph nodes ([`NodeOp`]): the causal conv, Mamba's selective scan and
//! Mamba-2's SSD. Their weights, recurrent state and packed-sequence table are node inputs
//! (graph tensors with the roles `Weight`, `State` and `Input`); the host-side choices (kernel,
//! switches, the host copy of cu_seqlens) are fields. Each has an f64 reference from its op family, so [`super::reference`]
//! evaluates graphs that use them, and the SSD declares its chunked path's scratch, which the
//! planner places in the arenas with every other activation.

mod attention;
mod delta_rule;
mod moe;
mod rg_lru;
mod s4;
pub use attention::{AdvanceNode, AttentionNode, RopeNode};
pub use delta_rule::DeltaRuleNode;
pub use moe::{MoeDownNode, MoeRouteNode, MoeUpNode};
pub use rg_lru::RgLruNode;
pub use s4::{KernelGen, S4Node};

use super::{NodeOp, Role, TensorDesc};
use crate::error::{Error, Result};
use crate::ops::conv1d::{self, ConvArgs, ConvFlags};
use crate::ops::selective_scan::{self as ss, ScanArgs, ScanFlags, ScanKernel, Sequences};

/// The host side of a packed batch (cu_seqlens and reset flags); the device table is the
/// node's `seqs` input.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqSpec {
    pub cu: Vec<usize>,
    pub resets: Option<Vec<bool>>,
}

impl SeqSpec {
    pub fn of(seqs: &Sequences) -> Self {
        Self { cu: seqs.cu_seqlens().to_vec(), resets: seqs.resets().map(<[bool]>::to_vec) }
    }
    /// `batch` sequences of `len` tokens.
    pub fn uniform(batch: usize, len: usize) -> Self {
        Self { cu: (0..=batch).map(|s| s * len).collect(), resets: None }
    }
    pub(crate) fn bind(&self, table: &Tensor) -> Result<Sequences> {
        Sequences::from_parts(table, &self.cu, self.resets.as_deref())
    }
}
use crate::ops::ssd::{self, SsdArgs, SsdDims, SsdFlags, SsdKernel, SsdScratch};
use crate::ops::Recorder;
use crate::tensor::{DType, Tensor};

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Columns `[lo, lo + n)` of a row-major `[rows, width]` matrix, as f32 (the references'
/// view of a fused kernel's row slices).
fn columns(v: &[f64], width: usize, lo: usize, n: usize) -> Vec<f32> {
    v.chunks(width).flat_map(|row| row[lo..lo + n].iter().map(|&x| x as f32)).collect()
}

/// RMSNorm of each row of `x` `[rows, width]` by `w`, then `· Wᵀ + b` (`w_lin` `[N, width]`):
/// the f64 reference of the fused norm + GEMV kernels.
fn normed_linear_ref(x: &[f64], norm_w: &[f64], eps: f64, w_lin: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let k = norm_w.len();
    let (rows, n) = (x.len() / k.max(1), w_lin.len() / k.max(1));
    let xn = crate::ops::norm::norm_ref(
        crate::ops::norm::NormKind::Rms { groups: 1 },
        &f32s(x),
        k,
        &f32s(norm_w),
        None,
        eps,
    );
    let b = b.map(f32s);
    crate::ops::matmul::linear_ref(&f32s(&xn), &f32s(w_lin), b.as_deref(), rows, n, k)
}

/// y ⊙ silu(z), the gate the fused step kernels apply.
fn silu_gate(y: &mut [f64], z: &[f32]) {
    for (y, &z) in y.iter_mut().zip(z) {
        *y *= z as f64 / (1.0 + (-(z as f64)).exp());
    }
}

/// The activation inputs `ins` of node `what`: all of one dtype, one of `allowed`; returns it.
pub(crate) fn activations(what: &str, ins: &[&TensorDesc], allowed: &[DType]) -> Result<DType> {
    let dtype = ins[0].dtype;
    if let Some(bad) = ins.iter().find(|d| d.dtype != dtype || !allowed.contains(&d.dtype)) {
        return Err(Error::Shape(format!(
            "{what}: activation {} is {:?}; its activations must all be one of {allowed:?} ({} is {dtype:?})",
            bad.name, bad.dtype, ins[0].name
        )));
    }
    Ok(dtype)
}

const F32: &[DType] = &[DType::F32];
const FLOATS: &[DType] = &[DType::F32, DType::F16];

pub(crate) fn expect_state(what: &str, d: &TensorDesc) -> Result<()> {
    if d.role != Role::State {
        return Err(Error::Shape(format!("{what}: its state input {} is not a State tensor", d.name)));
    }
    Ok(())
}

/// Depthwise causal conv + optional silu over packed sequences. Inputs: x `[T, C]`, weight
/// `[C, W]`, state `[S, C, W − 1]`, the sequence table, then an optional bias `[C]`. A decode step (`step`) rolls
/// the state in place; a prefill continues it when `init` and leaves the last inputs in it.
#[derive(Debug)]
pub struct ConvNode {
    pub seqs: SeqSpec,
    pub step: bool,
    pub silu: bool,
    pub init: bool,
}

impl NodeOp for ConvNode {
    fn name(&self) -> &str {
        "causal_conv1d"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if !(4..=5).contains(&ins.len()) {
            return Err(Error::Shape("causal_conv1d takes x, weight, state, seqs [, bias]".into()));
        }
        expect_state("causal_conv1d", ins[2])?;
        activations("causal_conv1d", &ins[..1], F32)?;
        Ok((ins[0].shape.clone(), DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[3])?;
        let args =
            ConvArgs { x: ins[0], weight: ins[1], bias: ins.get(4).copied(), seqs: &seqs, state: ins[2] };
        if self.step {
            conv1d::causal_conv1d_step(rec, &args, self.silu, out)
        } else {
            conv1d::causal_conv1d(rec, &args, ConvFlags { silu: self.silu, init_state: self.init }, out)
        }
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let (c, width) = (shapes[1][0], shapes[1][1]);
        let bias = ins.get(4).map(|b| f32s(b));
        let flags = ConvFlags { silu: self.silu, init_state: self.init || self.step };
        let cu = &self.seqs.cu;
        let (y, _) = conv1d::causal_conv1d_ref(
            &f32s(ins[0]),
            &f32s(ins[1]),
            bias.as_deref(),
            cu,
            self.seqs.resets.as_deref(),
            &f32s(ins[2]),
            c,
            width,
            flags,
        );
        Some(Ok(y))
    }
}

/// Mamba's selective scan. Inputs: u `[T, D]`, delta `[T, D]`, bc `[T, 2·G·N]` (B then C per
/// token), chan `[D, N + 2]`, state `[S, D, N]`, the sequence table, then an optional gate z
/// `[T, D]`.
#[derive(Debug)]
pub struct ScanNode {
    pub seqs: SeqSpec,
    pub kernel: ScanKernel,
    pub flags: ScanFlags,
    pub groups: usize,
    pub step: bool,
}

impl NodeOp for ScanNode {
    fn name(&self) -> &str {
        "selective_scan"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if !(6..=7).contains(&ins.len()) {
            return Err(Error::Shape("selective_scan takes u, delta, bc, chan, state, seqs [, z]".into()));
        }
        expect_state("selective_scan", ins[4])?;
        // u, delta, bc and z: f32 or f16 (the kernels' f16-input forms); y is f32.
        let acts: Vec<&TensorDesc> = [0, 1, 2, 6].iter().filter_map(|&i| ins.get(i).copied()).collect();
        activations("selective_scan", &acts, FLOATS)?;
        Ok((ins[0].shape.clone(), DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let (t, n) = (ins[0].shape()[0], ins[3].shape()[1] - 2);
        let bc4 = ins[2].reshape(&[t, 2, self.groups, n])?;
        let seqs = self.seqs.bind(ins[5])?;
        let args = ScanArgs {
            u: ins[0],
            delta: ins[1],
            bc: &bc4,
            z: ins.get(6).copied(),
            chan: ins[3],
            seqs: &seqs,
            state: ins[4],
            groups: self.groups,
            flags: self.flags,
        };
        if self.step {
            ss::selective_scan_step(rec, &args, out)
        } else {
            ss::selective_scan(rec, self.kernel, &args, out)
        }
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let (dim, n) = (shapes[0][1], shapes[3][1] - 2);
        let z = ins.get(6).map(|z| f32s(z));
        let flags = ScanFlags { init_state: self.flags.init_state || self.step, ..self.flags };
        let (y, _) = ss::selective_scan_ref(&ss::ScanRef {
            u: &f32s(ins[0]),
            delta: &f32s(ins[1]),
            bc: &f32s(ins[2]),
            z: z.as_deref(),
            chan: &f32s(ins[3]),
            cu: &self.seqs.cu,
            resets: self.seqs.resets.as_deref(),
            state: &f32s(ins[4]),
            dim,
            n,
            groups: self.groups,
            flags,
        });
        Some(Ok(y))
    }
}

/// Mamba-2's SSD. Inputs: xbc `[T, H·P + 2·G·N]`, dt `[T, H]`, heads `[H, 4]`, state
/// `[S, H, P, N]`, the sequence table. The chunked kernels' dt, cumsum and per-chunk state buffers are scratch.
#[derive(Debug)]
pub struct SsdNode {
    pub seqs: SeqSpec,
    pub kernel: SsdKernel,
    pub dims: SsdDims,
    pub flags: SsdFlags,
    pub step: bool,
}

impl NodeOp for SsdNode {
    fn name(&self) -> &str {
        "ssd"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 5 {
            return Err(Error::Shape("ssd takes xbc, dt, heads, state, seqs".into()));
        }
        expect_state("ssd", ins[3])?;
        // xbc and dt: f32 or f16 (coop64.fused takes f16); y is f32.
        activations("ssd", &ins[..2], FLOATS)?;
        Ok((vec![ins[0].shape[0], self.dims.heads * self.dims.head_dim], DType::F32))
    }
    fn scratch(&self, _ins: &[&TensorDesc]) -> Vec<(Vec<usize>, DType)> {
        if self.step {
            return Vec::new();
        }
        ssd::scratch_shapes(self.kernel, self.dims, &self.seqs.cu, self.seqs.resets.as_deref())
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[4])?;
        let args = SsdArgs {
            xbc: ins[0],
            dt: ins[1],
            heads: ins[2],
            seqs: &seqs,
            state: ins[3],
            dims: self.dims,
            flags: self.flags,
        };
        if self.step {
            return ssd::ssd_step(rec, &args, out);
        }
        let scratch = match scratch {
            [dts, cs, states] => Some(SsdScratch { dts, cs, states }),
            _ => None,
        };
        ssd::ssd_in(rec, self.kernel, &args, out, scratch.as_ref())
    }
    fn reference(&self, ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let flags = SsdFlags { init_state: self.flags.init_state || self.step, ..self.flags };
        let (y, _) = ssd::ssd_ref(&ssd::SsdRef {
            xbc: &f32s(ins[0]),
            dt: &f32s(ins[1]),
            heads: &f32s(ins[2]),
            cu: &self.seqs.cu,
            resets: self.seqs.resets.as_deref(),
            state: &f32s(ins[3]),
            dims: self.dims,
            flags,
        });
        Some(Ok(y))
    }
}

/// Picks `ins[k]` when `present`, advancing `k` (for nodes with optional trailing inputs).
fn optional<'a>(ins: &[&'a Tensor], k: &mut usize, present: bool) -> Option<&'a Tensor> {
    present.then(|| {
        let t = ins[*k];
        *k += 1;
        t
    })
}

/// A decode step's input side in one dispatch (`matmul::linear_in_step`): RMSNorm of x, the
/// in_proj GEMV, and the conv step + silu over the output columns `[lo, lo + C)` with the conv
/// state rolled in place. Inputs: x `[S, d]`, norm weight `[d]`, in_proj `[N, d]`, conv weight
/// `[C, W]`, conv state `[S, C, W − 1]`, then the in_proj bias (`bias`) and the conv bias
/// (`conv_bias`) when present.
#[derive(Debug)]
pub struct InStepNode {
    pub lo: usize,
    pub eps: f64,
    pub bias: bool,
    pub conv_bias: bool,
}

impl NodeOp for InStepNode {
    fn name(&self) -> &str {
        "in_step"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 5 + self.bias as usize + self.conv_bias as usize {
            return Err(Error::Shape(
                "in_step takes x, norm, w_in, conv_w, conv_state [, b_in] [, conv_b]".into(),
            ));
        }
        expect_state("in_step", ins[4])?;
        activations("in_step", &ins[..1], F32)?;
        Ok((vec![ins[0].shape[0], ins[2].shape[0]], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let mut k = 5;
        let b_in = optional(ins, &mut k, self.bias);
        let conv_b = optional(ins, &mut k, self.conv_bias);
        let band = crate::ops::matmul::ConvBand { lo: self.lo, weight: ins[3], bias: conv_b, state: ins[4] };
        crate::ops::matmul::linear_in_step(rec, ins[0], ins[1], self.eps, ins[2], b_in, &band, out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let b_in = self.bias.then(|| ins[5]);
        let conv_b = self.conv_bias.then(|| f32s(ins[5 + self.bias as usize]));
        let mut row = normed_linear_ref(ins[0], ins[1], self.eps, ins[2], b_in);
        let (s, width, (c, kw)) = (shapes[0][0], shapes[2][0], (shapes[3][0], shapes[3][1]));
        // The conv step over the band: one token per sequence, continuing the state.
        let cu: Vec<usize> = (0..=s).collect();
        let band = columns(&row, width, self.lo, c);
        let flags = ConvFlags { silu: true, init_state: true };
        let state = f32s(ins[4]);
        let (y, _) = conv1d::causal_conv1d_ref(
            &band,
            &f32s(ins[3]),
            conv_b.as_deref(),
            &cu,
            None,
            &state,
            c,
            kw,
            flags,
        );
        for (r, yr) in row.chunks_mut(width).zip(y.chunks(c)) {
            r[self.lo..self.lo + c].copy_from_slice(yr);
        }
        Some(Ok(row))
    }
}

/// x_proj of a decode step reading the first K columns of a wider row (`matmul::linear_columns`).
/// Inputs: x `[S, X]` (X ≥ K), weight `[N, K]`.
#[derive(Debug)]
pub struct ColumnsNode;

impl NodeOp for ColumnsNode {
    fn name(&self) -> &str {
        "x_proj"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 2 {
            return Err(Error::Shape("x_proj takes x, w".into()));
        }
        activations("x_proj", &ins[..1], F32)?;
        Ok((vec![ins[0].shape[0], ins[1].shape[0]], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        crate::ops::matmul::linear_columns(rec, ins[0], ins[1], None, out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let (rows, width, (n, k)) = (shapes[0][0], shapes[0][1], (shapes[1][0], shapes[1][1]));
        let x = columns(ins[0], width, 0, k);
        Some(Ok(crate::ops::matmul::linear_ref(&x, &f32s(ins[1]), None, rows, n, k)))
    }
}

/// Mamba's fused decode step (`ops::mamba_step`): dt_proj, softplus, the scan step, D skip and
/// the silu(z) gate. Inputs: xz `[S, X]` (x at columns [0, D), z at [z_col, z_col + D)), xdbl
/// `[S, R + 2N]`, dt_proj weight `[D, R]`, chan `[D, N + 2]`, state `[S, D, N]`.
#[derive(Debug)]
pub struct MambaStepNode {
    pub z_col: usize,
    pub flags: ScanFlags,
}

impl NodeOp for MambaStepNode {
    fn name(&self) -> &str {
        "mamba_step"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 5 {
            return Err(Error::Shape("mamba_step takes xz, xdbl, w_dt, chan, state".into()));
        }
        expect_state("mamba_step", ins[4])?;
        activations("mamba_step", &ins[..2], F32)?;
        Ok((vec![ins[0].shape[0], ins[2].shape[0]], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let args = crate::ops::mamba_step::MambaStepArgs {
            xz: ins[0],
            z_col: self.z_col,
            xdbl: ins[1],
            w_dt: ins[2],
            chan: ins[3],
            state: ins[4],
            flags: self.flags,
        };
        crate::ops::mamba_step::mamba_step(rec, &args, out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let (sequences, xs, (dim, rank), n) =
            (shapes[0][0], shapes[0][1], (shapes[2][0], shapes[2][1]), shapes[3][1] - 2);
        let (y, _) = crate::ops::mamba_step::mamba_step_ref(&crate::ops::mamba_step::MambaStepRef {
            xz: &f32s(ins[0]),
            xs,
            z_col: self.z_col,
            xdbl: &f32s(ins[1]),
            w_dt: &f32s(ins[2]),
            chan: &f32s(ins[3]),
            state: &f32s(ins[4]),
            sequences,
            dim,
            rank,
            n,
            flags: self.flags,
        });
        Some(Ok(y))
    }
}

/// Mamba-2's decode step reading x/B/C, dt and the gate z out of one fused in_proj row
/// (`ssd::ssd_step_row`). Inputs: row `[S, R]`, heads `[H, 4]`, state `[S, H, P, N]`, the
/// sequence table.
#[derive(Debug)]
pub struct SsdStepRowNode {
    pub seqs: SeqSpec,
    pub cols: ssd::RowColumns,
    pub dims: SsdDims,
    pub flags: SsdFlags,
}

impl NodeOp for SsdStepRowNode {
    fn name(&self) -> &str {
        "ssd_step"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 4 {
            return Err(Error::Shape("ssd_step takes row, heads, state, seqs".into()));
        }
        expect_state("ssd_step", ins[2])?;
        activations("ssd_step", &ins[..1], F32)?;
        Ok((vec![ins[0].shape[0], self.dims.heads * self.dims.head_dim], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let seqs = self.seqs.bind(ins[3])?;
        ssd::ssd_step_row(rec, ins[0], self.cols, ins[1], &seqs, ins[2], self.dims, self.flags, out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let (r, d) = (shapes[0][1], self.dims);
        let flags = SsdFlags { init_state: true, ..self.flags };
        let (mut y, _) = ssd::ssd_ref(&ssd::SsdRef {
            xbc: &columns(ins[0], r, self.cols.x, d.width()),
            dt: &columns(ins[0], r, self.cols.dt, d.heads),
            heads: &f32s(ins[1]),
            cu: &self.seqs.cu,
            resets: self.seqs.resets.as_deref(),
            state: &f32s(ins[2]),
            dims: d,
            flags,
        });
        silu_gate(&mut y, &columns(ins[0], r, self.cols.z, d.heads * d.head_dim));
        Some(Ok(y))
    }
}

/// The gated RMSNorm folded into out_proj, accumulated onto the residual, in place where the
/// planner allows (`matmul::linear_normed`). Inputs: y `[S, K]`, the residual `[S, N]`, norm
/// weight `[K]`, out_proj `[N, K]`, then its bias when `bias`.
#[derive(Debug)]
pub struct NormedOutNode {
    pub eps: f64,
    pub bias: bool,
}

impl NodeOp for NormedOutNode {
    fn name(&self) -> &str {
        "out_proj"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if ins.len() != 4 + self.bias as usize {
            return Err(Error::Shape("out_proj takes y, residual, norm, w_out [, b_out]".into()));
        }
        activations("out_proj", &ins[..2], F32)?;
        Ok((ins[1].shape.clone(), DType::F32))
    }
    fn inplace_input(&self) -> Option<usize> {
        Some(1)
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let (y, r, norm, w) = (ins[0], ins[1], ins[2], ins[3]);
        let b = ins.get(4).copied();
        if std::ptr::eq(r.buffer(), out.buffer()) && r.offset() == out.offset() {
            crate::ops::matmul::linear_normed(rec, y, norm, self.eps, w, b, true, out)
        } else {
            crate::ops::matmul::linear_normed(rec, y, norm, self.eps, w, b, false, out)?;
            crate::ops::elementwise::residual_add(rec, out, r, 1.0)
        }
    }
    fn reference(&self, ins: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let y = normed_linear_ref(ins[0], ins[2], self.eps, ins[3], ins.get(4).copied());
        Some(Ok(y.iter().zip(ins[1]).map(|(a, r)| a + r).collect()))
    }
}

/// Columns gathered from 1 to 3 row-aligned activations (`ops::gather`). Inputs: the sources
/// `[T, W_s]`, then the device table `[N]` (a weight built by `gather::table` from `picks`).
#[derive(Debug)]
pub struct GatherNode {
    pub picks: Vec<crate::ops::gather::Pick>,
}

impl NodeOp for GatherNode {
    fn name(&self) -> &str {
        "gather"
    }
    fn output(&self, ins: &[&TensorDesc]) -> Result<(Vec<usize>, DType)> {
        if !(2..=4).contains(&ins.len()) {
            return Err(Error::Shape("gather takes 1 to 3 sources and the table".into()));
        }
        let srcs = &ins[..ins.len() - 1];
        activations("gather", srcs, F32)?;
        if srcs.iter().any(|s| s.shape.len() != 2 || s.shape[0] != srcs[0].shape[0]) {
            return Err(Error::Shape("gather: the sources must be [T, W] with the same T".into()));
        }
        Ok((vec![srcs[0].shape[0], self.picks.len()], DType::F32))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], _scratch: &[&Tensor], out: &Tensor) -> Result<()> {
        let (srcs, table) = ins.split_at(ins.len() - 1);
        crate::ops::gather::gather_columns(rec, srcs, table[0], out)
    }
    fn reference(&self, ins: &[&[f64]], shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        let n = ins.len() - 1;
        let widths: Vec<usize> = shapes[..n].iter().map(|s| s[1]).collect();
        let t = shapes[0][0];
        Some(Ok(crate::ops::gather::gather_columns_ref(&ins[..n], &widths, &self.picks, t)))
    }
}
