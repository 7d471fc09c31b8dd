//! Linear layers, `y = x · Wᵀ + b`, in HF `Linear` layout: x (M, K) f32, W (N, K) f32 or f16,
//! b (N) f32, y (M, N) f32. Accumulation is f32 in every variant.
//!
//! Kernels:
//! - `gemv`: M ≤ [`GEMV_MAX_M`]; memory-bound decode path, one workgroup per 4 output rows.
//! - `gemm`: register-tiled GEMM through workgroup memory (128×128 or 64×64 tiles).
//! - `gemm_coop`: f16 × f16 → f32 on cooperative matrices (tensor cores), when offered.
//!
//! f16 weights have two storage modes: `f16` reads packed words with `unpack2x16float`, which
//! every adapter runs (GL included); `f16n` uses native `f16` storage and needs SHADER_F16.

use super::{grid, Params, Recorder};
use crate::device::Capabilities;
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// Largest M served by the GEMV kernel.
pub const GEMV_MAX_M: usize = 8;
const GEMV_WG: u32 = 256;
/// Output rows per GEMV workgroup (the shader names its four accumulators).
const GEMV_ROWS: u32 = 4;

/// How the weight matrix is stored and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightMode {
    F32,
    /// f16 read as packed u32 words (portable).
    F16Packed,
    /// f16 read natively (SHADER_F16).
    F16Native,
}

impl WeightMode {
    const ALL: [WeightMode; 3] = [WeightMode::F32, WeightMode::F16Packed, WeightMode::F16Native];
    fn tag(self) -> &'static str {
        match self {
            WeightMode::F32 => "f32",
            WeightMode::F16Packed => "f16",
            WeightMode::F16Native => "f16n",
        }
    }
    fn flag(self) -> &'static str {
        match self {
            WeightMode::F32 => "W_F32",
            WeightMode::F16Packed => "W_F16P",
            WeightMode::F16Native => "W_F16N",
        }
    }
    /// WGSL element type of `w` and elements per vector load.
    fn wgsl(self, vec: bool) -> (&'static str, u32) {
        match (self, vec) {
            (WeightMode::F32, false) => ("f32", 1),
            (WeightMode::F32, true) => ("vec4<f32>", 4),
            (WeightMode::F16Packed, false) => ("u32", 1),
            (WeightMode::F16Packed, true) => ("vec4<u32>", 8),
            (WeightMode::F16Native, false) => ("f16", 1),
            (WeightMode::F16Native, true) => ("vec4<f16>", 4),
        }
    }
    fn with_requirement(self, v: Variant) -> Variant {
        if self == WeightMode::F16Native {
            v.needs_f16()
        } else {
            v
        }
    }
}

fn gemv_variant(mode: WeightMode, vec: bool, subgroups: bool) -> Variant {
    let (wty, chunk) = mode.wgsl(vec);
    let mut name = format!("matmul.gemv.{}", mode.tag());
    if !vec {
        name.push_str(".scalar");
    }
    if subgroups {
        name.push_str(".sg");
    }
    let v = Variant::new(name, "matmul", "gemv")
        .define("GEMV", 1)
        .define(mode.flag(), 1)
        .define("VEC", vec as u32)
        .with_subgroups(subgroups)
        .define("WTYPE", wty)
        .define("XTYPE", if vec { "vec4<f32>" } else { "f32" })
        .define("XPER", if vec { 4 } else { 1 })
        .define("CHUNK", chunk)
        .define("WG", GEMV_WG)
        .define("RED", GEMV_WG * GEMV_ROWS);
    mode.with_requirement(v)
}

/// Tile configurations of the tiled GEMM: (name, BM = BN, invocations). BK = 4·NT/BM so each
/// invocation stages one 4-wide k-slice of A and of B per tile.
const GEMM_TILES: [(&str, u32, u32); 2] = [("t128", 128, 256), ("t64", 64, 64)];

fn gemm_variant(mode: WeightMode, tile: (&str, u32, u32), vec: bool) -> Variant {
    let (tname, b, nt) = tile;
    debug_assert_eq!((b / 8) * (b / 8), nt, "8×8 outputs per invocation");
    let bk = 4 * nt / b;
    let wty = match (mode, vec) {
        (WeightMode::F32, true) => "vec4<f32>",
        (WeightMode::F16Packed, true) => "vec2<u32>",
        (WeightMode::F16Native, true) => "vec4<f16>",
        (m, false) => m.wgsl(false).0,
    };
    let name = format!("matmul.gemm.{}.{}{}", tname, mode.tag(), if vec { "" } else { ".scalar" });
    let v = Variant::new(name, "matmul", "gemm")
        .define("GEMM", 1)
        .define("VEC", vec as u32)
        .define(mode.flag(), 1)
        .define("WTYPE", wty)
        .define("XTYPE", if vec { "vec4<f32>" } else { "f32" })
        .define("BM", b)
        .define("BN", b)
        .define("BK", bk)
        .define("NT", nt)
        .define("AS4", bk * (b + 4) / 4)
        .define("BS4", bk * (b + 4) / 4);
    mode.with_requirement(v)
}

/// Cooperative-matrix GEMM with BM × 64 output blocks per subgroup (BM = 32 or 64).
fn coop_variant(bm: u32) -> Variant {
    let name =
        if bm == 32 { "matmul.gemm_coop.f16".to_string() } else { format!("matmul.gemm_coop.f16.m{bm}") };
    Variant::new(name, "matmul_coop", "gemm_coop")
        .define("WG", 32)
        .define("BM", bm)
        .define("ROWS64", (bm == 64) as u32)
        .needs_coop_matrix()
}

pub fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for mode in WeightMode::ALL {
        for vec in [true, false] {
            for sg in [false, true] {
                v.push(gemv_variant(mode, vec, sg));
            }
        }
        for tile in GEMM_TILES {
            for vec in [true, false] {
                v.push(gemm_variant(mode, tile, vec));
            }
        }
    }
    v.push(coop_variant(32));
    v.push(coop_variant(64));
    v
}

/// The variant linseq picks for these sizes on this device.
pub fn choose(caps: &Capabilities, m: usize, n: usize, k: usize, wdtype: DType) -> Variant {
    // Native f16 loads where the adapter has SHADER_F16 (on the H200: GEMV 93% of copy against
    // 91% packed, GEMM equal); packed words elsewhere (GL, SwiftShader).
    let mode = match wdtype {
        DType::F16 if caps.shader_f16 => WeightMode::F16Native,
        DType::F16 => WeightMode::F16Packed,
        _ => WeightMode::F32,
    };
    if m <= GEMV_MAX_M {
        let (_, chunk) = mode.wgsl(true);
        return gemv_variant(mode, k.is_multiple_of(chunk as usize), caps.subgroups);
    }
    let tile = if m >= 256 && n >= 256 { GEMM_TILES[0] } else { GEMM_TILES[1] };
    gemm_variant(mode, tile, k.is_multiple_of(4))
}

/// Records `y = x · Wᵀ + b` with the variant [`choose`] picks.
pub fn linear(rec: &mut Recorder, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<()> {
    record_chosen(rec, x, w, b, y, false)
}

/// Records `y += x · Wᵀ + b` (a residual add fused into the matmul's store) with the variant
/// [`choose`] picks.
pub fn linear_accumulate(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    record_chosen(rec, x, w, b, y, true)
}

fn record_chosen(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let (m, n, k) = dims(x, w)?;
    let v = choose(rec.device().caps(), m, n, k, w.dtype());
    record(rec, &v, x, w, b, y, accumulate)
}

fn dims(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    let (xs, ws) = (x.shape(), w.shape());
    if ws.len() != 2 || xs.is_empty() || xs[xs.len() - 1] != ws[1] {
        return Err(Error::Shape(format!(
            "linear: x {xs:?} and W {ws:?} do not fit HF Linear layout (x [.., K], W [N, K])"
        )));
    }
    Ok((x.numel() / ws[1].max(1), ws[0], ws[1]))
}

/// Records `y = x · Wᵀ + b` with an explicit matmul variant (for benchmarks and tests). Errors
/// if the variant's alignment or dtype constraints do not hold for these tensors.
pub fn linear_using(
    rec: &mut Recorder,
    v: &Variant,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    record(rec, v, x, w, b, y, false)
}

fn record(
    rec: &mut Recorder,
    v: &Variant,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let (m, n, k) = dims(x, w)?;
    let mut yshape = x.shape().to_vec();
    *yshape.last_mut().expect("x has a last dim") = n;
    super::expect("y", y, &yshape, DType::F32)?;
    if let Some(b) = b {
        super::expect("b", b, &[n], DType::F32)?;
    }
    let def = |key: &str| v.defines.get(key).map(String::as_str);
    let unsupported = |why: String| Err(Error::UnsupportedVariant(format!("{}: {why}", v.name)));
    if v.entry == "gemm_coop" {
        if x.dtype() != DType::F16 || w.dtype() != DType::F16 {
            return unsupported("takes f16 x and f16 W".into());
        }
        let bm: usize = def("BM").unwrap_or("32").parse().unwrap_or(32);
        if m % bm != 0 || n % 64 != 0 || k % 16 != 0 {
            return unsupported(format!("needs M%{bm}, N%64, K%16 == 0 (M={m}, N={n}, K={k})"));
        }
        if b.is_some() || accumulate {
            return unsupported("has no bias or accumulation".into());
        }
        let params = Params::new().u(m).u(n).u(k);
        return rec.dispatch(v, &params, &[x, w, y], [(n / 64) as u32, (m / 32) as u32, 1]);
    }
    if x.dtype() != DType::F32 {
        return unsupported(format!("takes f32 x, got {:?}", x.dtype()));
    }
    let wdt = if def("W_F32").is_some() { DType::F32 } else { DType::F16 };
    if w.dtype() != wdt {
        return unsupported(format!("takes {wdt:?} weights, got {:?}", w.dtype()));
    }
    let placeholder;
    let bias = match b {
        Some(b) => b,
        None => {
            placeholder = Tensor::empty(rec.device(), &[1], DType::F32)?;
            &placeholder
        }
    };
    let params = Params::new().u(m).u(n).u(k).u(b.is_some() as usize | (accumulate as usize) << 1);
    match v.entry {
        "gemv" => {
            let chunk: usize = def("CHUNK").unwrap_or("1").parse().unwrap_or(1);
            if def("VEC") == Some("1") && k % chunk != 0 {
                return unsupported(format!("vector loads need K % {chunk} == 0 (K={k})"));
            }
            if m > u16::MAX as usize {
                return unsupported(format!("M={m} is too large for GEMV"));
            }
            let mut wg = grid(rec.device(), n.div_ceil(GEMV_ROWS as usize))?;
            wg[2] = m as u32;
            rec.dispatch(v, &params, &[x, w, bias, y], wg)
        }
        "gemm" => {
            if def("VEC") == Some("1") && !k.is_multiple_of(4) {
                return unsupported(format!("vector loads need K % 4 == 0 (K={k})"));
            }
            let tile: usize = def("BM").unwrap_or("64").parse().unwrap_or(64);
            let wg = [n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1];
            rec.dispatch(v, &params, &[x, w, bias, y], wg)
        }
        other => unsupported(format!("entry {other} is not a matmul kernel")),
    }
}

/// f64 reference: `y[m][n] = Σ_k x[m][k]·W[n][k] + b[n]`.
pub fn linear_ref(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let mut s = b.map_or(0.0, |b| b[j] as f64);
            for t in 0..k {
                s += xr[t] as f64 * wr[t] as f64;
            }
            y[i * n + j] = s;
        }
    }
    y
}
