//! Linear layers, `y = x · Wᵀ + b`, in HF `Linear` layout: x (M, K) f32, W (N, K) f32 or f16,
//! b (N) f32, y (M, N) f32. Accumulation is f32 in every variant.
//!
//! Kernels:
//! - `gemv`: M ≤ [`GEMV_MAX_M`]; memory-bound decode path, one workgroup per 4 output rows.
//! - `gemv_skinny`: M ≤ [`SKINNY_MAX_M`] (batched decode): 4 columns × 8 rows per workgroup,
//!   weights read once per 8 rows and from L2 after that.
//! - `gemm`: register-tiled GEMM through workgroup memory (128×128 or 64×64 tiles).
//! - `gemm_coop`: f16 × f16 → f32 on cooperative matrices (tensor cores), when offered.
//!
//! f16 weights have two storage modes: `f16` reads packed words with `unpack2x16float`, which
//! every adapter runs (GL included); `f16n` uses native `f16` storage and needs SHADER_F16.

use super::{grid, Params, Recorder};
use crate::device::Capabilities;
use crate::error::{Error, Result};
use crate::shader::uniform::bits;
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/matmul.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("matmul");
/// The family's WGSL (`shaders/matmul_coop.wgsl`).
pub const COOP_SHADER: crate::shader::Source = crate::wgsl_source!("matmul_coop");

/// Largest M served by the GEMV kernel.
pub const GEMV_MAX_M: usize = 8;
const GEMV_WG: u32 = 256;
/// Output rows per GEMV workgroup (the shader names its four accumulators).
const GEMV_ROWS: u32 = 4;

/// How the weight matrix is stored and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightMode {
    F32,
    /// f16 read as packed u32 words (portable).
    F16Packed,
    /// f16 read natively (SHADER_F16).
    F16Native,
}

impl WeightMode {
    pub(crate) const ALL: [WeightMode; 3] = [WeightMode::F32, WeightMode::F16Packed, WeightMode::F16Native];
    pub(crate) fn tag(self) -> &'static str {
        match self {
            WeightMode::F32 => "f32",
            WeightMode::F16Packed => "f16",
            WeightMode::F16Native => "f16n",
        }
    }
    pub(crate) fn flag(self) -> &'static str {
        match self {
            WeightMode::F32 => "W_F32",
            WeightMode::F16Packed => "W_F16P",
            WeightMode::F16Native => "W_F16N",
        }
    }
    /// WGSL element type of `w` and elements per vector load.
    pub(crate) fn wgsl(self, vec: bool) -> (&'static str, u32) {
        match (self, vec) {
            (WeightMode::F32, false) => ("f32", 1),
            (WeightMode::F32, true) => ("vec4<f32>", 4),
            (WeightMode::F16Packed, false) => ("u32", 1),
            (WeightMode::F16Packed, true) => ("vec4<u32>", 8),
            (WeightMode::F16Native, false) => ("f16", 1),
            (WeightMode::F16Native, true) => ("vec4<f16>", 4),
        }
    }
    pub(crate) fn with_requirement(self, v: Variant) -> Variant {
        if self == WeightMode::F16Native {
            v.needs_f16()
        } else {
            v
        }
    }
}

crate::uniform! {
    /// The GEMV, skinny and tiled GEMM kernels' parameters (`xs`: x's row stride).
    pub struct MatmulParams { pub m: u32, pub n: u32, pub k: u32, pub flags: u32, pub xs: u32 }
}

crate::uniform! {
    /// The fused in_proj step's parameters: [`MatmulParams`], then the conv band
    /// `[conv_lo, conv_hi)`, its width and the RMSNorm's eps.
    pub struct InStepParams {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        pub flags: u32,
        pub xs: u32,
        pub conv_lo: u32,
        pub conv_hi: u32,
        pub width: u32,
        pub eps: f32,
    }
}

crate::uniform! {
    /// The cooperative-matrix GEMM's parameters.
    pub struct CoopGemmParams { pub m: u32, pub n: u32, pub k: u32 }
}

crate::uniform! {
    /// The cooperative-matrix probes' parameters.
    pub struct ProbeParams { pub iters: u32, pub pad0: u32, pub pad1: u32, pub pad2: u32 }
}

crate::flags! {
    /// Bits of [`MatmulParams::flags`]: a bias is bound; y += x·Wᵀ + b (a residual add fused
    /// into the epilogue); the in_proj step's conv band has a bias.
    pub mod matmul_flags { HAS_BIAS = 1, ACCUMULATE = 2, CONV_BIAS = 4 }
}

fn gemv_variant(mode: WeightMode, vec: bool, subgroups: bool, in_step: bool) -> Variant {
    let (wty, chunk) = mode.wgsl(vec);
    let mut name = format!("matmul.gemv.{}", mode.tag());
    if !vec {
        name.push_str(".scalar");
    }
    if subgroups {
        name.push_str(".sg");
    }
    if in_step {
        name.push_str(".in_step");
    }
    // The fused form reduces a fifth value per invocation: the sum of squares of x.
    let reduced = GEMV_ROWS + in_step as u32;
    let v = Variant::new(name, &SHADER, "gemv")
        .define("GEMV", 1)
        .define(mode.flag(), 1)
        .define("VEC", vec as u32)
        .with_subgroups(subgroups)
        .define("IN_STEP", in_step as u32)
        .define("WTYPE", wty)
        .define("XTYPE", if vec { "vec4<f32>" } else { "f32" })
        .define("XPER", if vec { 4 } else { 1 })
        .define("CHUNK", chunk)
        .define("WG", GEMV_WG)
        .define("REDROWS", reduced)
        .define("RED", GEMV_WG * reduced)
        .with_flags(matmul_flags::SET);
    let v = if in_step { v.with_params::<InStepParams>() } else { v.with_params::<MatmulParams>() };
    mode.with_requirement(v)
}

/// Largest M served by the skinny kernel (batched decode); larger M takes the tiled GEMM.
pub const SKINNY_MAX_M: usize = 128;

/// The skinny kernel (`gemv_skinny`): 4 columns × 8 rows per workgroup, for M in
/// (`GEMV_MAX_M`, `SKINNY_MAX_M`]; vector loads of f32 or native f16 weights, subgroups.
fn skinny_variant(mode: WeightMode) -> Option<Variant> {
    if mode == WeightMode::F16Packed {
        return None;
    }
    let v = Variant::new(format!("matmul.skinny.{}", mode.tag()), &SHADER, "gemv_skinny")
        .define("SKINNY", 1)
        .define(mode.flag(), 1)
        .define("VEC", 1)
        .define("WTYPE", mode.wgsl(true).0)
        .define("XTYPE", "vec4<f32>")
        .define("WG", GEMV_WG)
        // 8 sums per subgroup; room for subgroups of 4 lanes or more.
        .define("REDV", GEMV_WG / 4 * 8)
        .needs_subgroups()
        .with_params::<MatmulParams>()
        .with_flags(matmul_flags::SET);
    Some(mode.with_requirement(v))
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
    let v = Variant::new(name, &SHADER, "gemm")
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
        .define("BS4", bk * (b + 4) / 4)
        .with_params::<MatmulParams>()
        .with_flags(matmul_flags::SET);
    mode.with_requirement(v)
}

/// Cooperative-matrix GEMM with BM × 64 output blocks per subgroup (BM = 32 or 64).
fn coop_variant(bm: u32) -> Variant {
    let name =
        if bm == 32 { "matmul.gemm_coop.f16".to_string() } else { format!("matmul.gemm_coop.f16.m{bm}") };
    Variant::new(name, &COOP_SHADER, "gemm_coop")
        .define("WG", 32)
        .define("BM", bm)
        .define("ROWS64", (bm == 64) as u32)
        .needs_coop_matrix()
        .with_params::<CoopGemmParams>()
}

pub fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for mode in WeightMode::ALL {
        for vec in [true, false] {
            for sg in [false, true] {
                for in_step in [false, true] {
                    v.push(gemv_variant(mode, vec, sg, in_step));
                }
            }
        }
        for tile in GEMM_TILES {
            for vec in [true, false] {
                v.push(gemm_variant(mode, tile, vec));
            }
        }
        v.extend(skinny_variant(mode));
    }
    v.push(coop_variant(32));
    v.push(coop_variant(64));
    v.extend(CoopProbe::ALL.map(CoopProbe::variant));
    v
}

/// Bench probes of the cooperative-matrix (tensor-core) rate, by where the operands come from
/// (see `coop_probe` in shaders/matmul_coop.wgsl): they bound what a kernel built on
/// 16×16×16 tiles can reach on the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopProbe {
    pub name: &'static str,
    /// REGS (fragments loaded once: the multiply-add rate alone), WG (one A and four B
    /// fragments from workgroup memory per four multiply-adds), WG22 (two A and two B) or
    /// STORAGE (one A and four B from cache-resident storage).
    source: &'static str,
    /// Row stride of the operand block in workgroup memory, in halves (64, or 72 padded).
    stride: u32,
    /// B fragments load column-major (`coopLoad`) rather than row-major.
    b_col_major: bool,
}

impl CoopProbe {
    const fn new(name: &'static str, source: &'static str, stride: u32, b_col_major: bool) -> Self {
        Self { name, source, stride, b_col_major }
    }

    pub const ALL: [CoopProbe; 7] = [
        Self::new("matmul.coop_probe.regs", "REGS", 64, false),
        Self::new("matmul.coop_probe.wg", "WG", 64, false),
        Self::new("matmul.coop_probe.wg.pad", "WG", 72, false),
        Self::new("matmul.coop_probe.wg.pad.bcol", "WG", 72, true),
        Self::new("matmul.coop_probe.wg22", "WG22", 64, false),
        Self::new("matmul.coop_probe.wg22.pad", "WG22", 72, false),
        Self::new("matmul.coop_probe.storage", "STORAGE", 64, false),
    ];

    pub fn variant(self) -> Variant {
        Variant::new(self.name, &COOP_SHADER, "coop_probe")
            .define("PROBE", 1)
            .define(self.source, 1)
            .define("STRIDE", self.stride)
            .define("LOADB", if self.b_col_major { "coopLoad" } else { "coopLoadT" })
            .needs_coop_matrix()
            .with_params::<ProbeParams>()
    }

    /// Floating-point operations of one [`coop_probe`] dispatch.
    pub fn flops(workgroups: usize, iters: usize) -> f64 {
        // 4 subgroups × 4 multiply-adds of 16 × 16 × 16 per step.
        (workgroups * iters * 16) as f64 * 2.0 * 4096.0
    }
}

/// Runs a [`CoopProbe`] on `workgroups` workgroups of `iters` steps each. `x` is a 64 × 64 f16
/// operand block; `y` gets one f32 per workgroup (so that nothing is optimised away).
pub fn coop_probe(
    rec: &mut Recorder,
    probe: CoopProbe,
    x: &Tensor,
    y: &Tensor,
    workgroups: usize,
    iters: usize,
) -> Result<()> {
    super::expect("x", x, &[64, 64], DType::F16)?;
    super::expect("y", y, &[workgroups], DType::F32)?;
    let grid = [workgroups.min(65535) as u32, workgroups.div_ceil(65535) as u32, 1];
    if workgroups > 65535 && !workgroups.is_multiple_of(65535) {
        return Err(Error::Invalid("more than 65535 probe workgroups must be a multiple of 65535".into()));
    }
    // The pipeline cache refuses the probe where the adapter lacks cooperative matrices.
    rec.dispatch(
        &probe.variant(),
        &Params::of(&ProbeParams { iters: super::word("iterations", iters)?, ..Default::default() }),
        &[x, y],
        grid,
    )
}

pub(crate) fn weight_mode(caps: &Capabilities, wdtype: DType) -> WeightMode {
    // Native f16 loads where the adapter has SHADER_F16 (on the H200: GEMV 93% of copy against
    // 91% packed, GEMM equal); packed words elsewhere (GL, SwiftShader).
    match wdtype {
        DType::F16 if caps.shader_f16 => WeightMode::F16Native,
        DType::F16 => WeightMode::F16Packed,
        _ => WeightMode::F32,
    }
}

/// The GEMV variant for K columns: vector loads when K (and the x row stride) allow them.
fn choose_gemv(caps: &Capabilities, k: usize, xs: usize, wdtype: DType, in_step: bool) -> Variant {
    let mode = weight_mode(caps, wdtype);
    let (_, chunk) = mode.wgsl(true);
    let vec = k.is_multiple_of(chunk as usize) && xs.is_multiple_of(4);
    gemv_variant(mode, vec, caps.subgroups, in_step)
}

/// The tiled GEMM's tiles for an M × N output: 128 × 128 once both sides fill them.
fn gemm_tile(m: usize, n: usize) -> (&'static str, u32, u32) {
    if m >= 256 && n >= 256 {
        GEMM_TILES[0]
    } else {
        GEMM_TILES[1]
    }
}

/// The variant linseq picks for these sizes on this device.
pub fn choose(caps: &Capabilities, m: usize, n: usize, k: usize, wdtype: DType) -> Variant {
    if m <= GEMV_MAX_M {
        return choose_gemv(caps, k, k, wdtype, false);
    }
    let mode = weight_mode(caps, wdtype);
    // The skinny kernel's parallelism pays on GPUs; on CPU adapters the tiled GEMM is faster.
    if m <= SKINNY_MAX_M && caps.subgroups && !caps.software && k.is_multiple_of(4) {
        if let Some(v) = skinny_variant(mode) {
            return v;
        }
    }
    gemm_variant(mode, gemm_tile(m, n), k.is_multiple_of(4))
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

/// Records `y = x[:, :K] · Wᵀ + b`: the first K columns of each row of a wider x `[M, X]`
/// (X ≥ K), as when one activation holds several projections' inputs side by side.
pub fn linear_columns(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    let shape = Shape::of(x, w, true)?;
    let caps = rec.device().caps();
    let mut v = if shape.m <= GEMV_MAX_M {
        choose_gemv(caps, shape.k, shape.xs, w.dtype(), false)
    } else {
        choose(caps, shape.m, shape.n, shape.k, w.dtype())
    };
    if def_of(&v, "VEC") == Some("1") && !shape.xs.is_multiple_of(4) && v.entry != "gemv" {
        // Vector loads need an aligned row stride: the tiled GEMM's scalar form.
        v = gemm_variant(weight_mode(caps, w.dtype()), gemm_tile(shape.m, shape.n), false);
    }
    record(rec, &v, x, w, b, y, Epilogue::Store, true)
}

/// The conv step the fused in_proj GEMV applies to a band of its output columns
/// ([`linear_in_step`]).
pub struct ConvBand<'a> {
    /// First output column of the band; the band is `weight`'s C channels wide.
    pub lo: usize,
    /// Depthwise conv weights `[C, W]`, W ∈ 2..=4.
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    /// Rolling conv inputs `[M, C, W − 1]`, oldest first, updated in place.
    pub state: &'a Tensor,
}

/// Records the input side of a Mamba block's decode step in one dispatch (M ≤ [`GEMV_MAX_M`]
/// sequences, one token each): `y = x̂ · Wᵀ + b` with `x̂ = RMSNorm(x; norm_w, eps)`, and the
/// output columns of `conv`'s band replaced by silu(causal conv step) with the state rolled.
#[allow(clippy::too_many_arguments)]
pub fn linear_in_step(
    rec: &mut Recorder,
    x: &Tensor,
    norm_w: &Tensor,
    eps: f64,
    w: &Tensor,
    b: Option<&Tensor>,
    conv: &ConvBand,
    y: &Tensor,
) -> Result<()> {
    record_normed(rec, x, norm_w, eps, w, b, Some(conv), false, y)
}

/// Records `y = RMSNorm(x; norm_w, eps) · Wᵀ + b`, or `y +=` it with `accumulate`, in one
/// dispatch (M ≤ [`GEMV_MAX_M`] rows), the norm reduced in the GEMV's own loop: a decode step's
/// gated-norm output projection onto the residual stream.
#[allow(clippy::too_many_arguments)]
pub fn linear_normed(
    rec: &mut Recorder,
    x: &Tensor,
    norm_w: &Tensor,
    eps: f64,
    w: &Tensor,
    b: Option<&Tensor>,
    accumulate: bool,
    y: &Tensor,
) -> Result<()> {
    record_normed(rec, x, norm_w, eps, w, b, None, accumulate, y)
}

#[allow(clippy::too_many_arguments)]
fn record_normed(
    rec: &mut Recorder,
    x: &Tensor,
    norm_w: &Tensor,
    eps: f64,
    w: &Tensor,
    b: Option<&Tensor>,
    conv: Option<&ConvBand>,
    accumulate: bool,
    y: &Tensor,
) -> Result<()> {
    let s = Shape::of(x, w, false)?;
    if s.m > GEMV_MAX_M {
        return Err(Error::Invalid(format!("the normed GEMV serves at most {GEMV_MAX_M} rows, got {}", s.m)));
    }
    super::expect("norm_w", norm_w, &[s.k], DType::F32)?;
    let v = choose_gemv(rec.device().caps(), s.k, s.xs, w.dtype(), true);
    let Some(conv) = conv else {
        let epilogue = Epilogue::InStep { norm_w, eps, conv: None, width: 2, accumulate };
        return record(rec, &v, x, w, b, y, epilogue, false);
    };
    let (c, width) = match conv.weight.shape() {
        &[c, wd] if (2..=4).contains(&wd) && c > 0 => (c, wd),
        other => {
            return Err(Error::Shape(format!("conv weight: expected [C, W] with W in 2..=4, got {other:?}")))
        }
    };
    if conv.lo + c > s.n {
        return Err(Error::Shape(format!(
            "conv band [{}, {}) is outside {} output columns",
            conv.lo,
            conv.lo + c,
            s.n
        )));
    }
    super::expect("conv weight", conv.weight, &[c, width], DType::F32)?;
    super::expect("conv state", conv.state, &[s.m, c, width - 1], DType::F32)?;
    if let Some(cb) = conv.bias {
        super::expect("conv bias", cb, &[c], DType::F32)?;
    }
    let epilogue = Epilogue::InStep { norm_w, eps, conv: Some(conv), width, accumulate };
    record(rec, &v, x, w, b, y, epilogue, false)
}

/// Sizes of one linear layer: M rows of x with row stride `xs` (≥ K), N outputs, K inputs.
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    xs: usize,
}

impl Shape {
    /// `wide`: x's last dim may exceed K (the first K columns are read).
    fn of(x: &Tensor, w: &Tensor, wide: bool) -> Result<Self> {
        let (xsh, wsh) = (x.shape(), w.shape());
        let fits = wsh.len() == 2
            && !xsh.is_empty()
            && wsh[1] > 0
            && (xsh[xsh.len() - 1] == wsh[1] || (wide && xsh[xsh.len() - 1] > wsh[1]));
        if !fits {
            return Err(Error::Shape(format!(
                "linear: x {xsh:?} and W {wsh:?} do not fit HF Linear layout (x [.., K], W [N, K])"
            )));
        }
        let xs = xsh[xsh.len() - 1];
        Ok(Self { m: x.numel() / xs, n: wsh[0], k: wsh[1], xs })
    }
}

/// What the kernel does after the dot products.
enum Epilogue<'a> {
    Store,
    Accumulate,
    /// RMSNorm folded in; an optional conv band; optionally accumulating into y.
    InStep {
        norm_w: &'a Tensor,
        eps: f64,
        conv: Option<&'a ConvBand<'a>>,
        width: usize,
        accumulate: bool,
    },
}

fn record_chosen(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let s = Shape::of(x, w, false)?;
    let v = choose(rec.device().caps(), s.m, s.n, s.k, w.dtype());
    let epilogue = if accumulate { Epilogue::Accumulate } else { Epilogue::Store };
    record(rec, &v, x, w, b, y, epilogue, false)
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
    record(rec, v, x, w, b, y, Epilogue::Store, false)
}

#[allow(clippy::too_many_arguments)]
fn record(
    rec: &mut Recorder,
    v: &Variant,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    epilogue: Epilogue,
    wide: bool,
) -> Result<()> {
    let Shape { m, n, k, xs } = Shape::of(x, w, wide)?;
    let accumulate = matches!(epilogue, Epilogue::Accumulate | Epilogue::InStep { accumulate: true, .. });
    let in_step = matches!(epilogue, Epilogue::InStep { .. });
    if in_step != (def_of(v, "IN_STEP") == Some("1")) {
        let why = if in_step { "is not the fused in_proj step" } else { "serves linear_in_step only" };
        return Err(Error::UnsupportedVariant(format!("{} {why}", v.name)));
    }
    let mut yshape = x.shape().to_vec();
    *yshape.last_mut().expect("x has a last dim") = n;
    super::expect("y", y, &yshape, DType::F32)?;
    if let Some(b) = b {
        super::expect("b", b, &[n], DType::F32)?;
    }
    let def = |key: &str| def_of(v, key);
    let unsupported = |why: String| Err(Error::UnsupportedVariant(format!("{}: {why}", v.name)));
    if v.entry == "gemm_coop" {
        if x.dtype() != DType::F16 || w.dtype() != DType::F16 {
            return unsupported("takes f16 x and f16 W".into());
        }
        let bm: usize = def("BM").unwrap_or("32").parse().unwrap_or(32);
        if m % bm != 0 || n % 64 != 0 || k % 16 != 0 {
            return unsupported(format!("needs M%{bm}, N%64, K%16 == 0 (M={m}, N={n}, K={k})"));
        }
        if b.is_some() || accumulate || xs != k {
            return unsupported("has no bias, accumulation or strided x".into());
        }
        let params = Params::of(&CoopGemmParams {
            m: super::word("M", m)?,
            n: super::word("N", n)?,
            k: super::word("K", k)?,
        });
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
    let conv_bias = matches!(epilogue, Epilogue::InStep { conv: Some(ConvBand { bias: Some(_), .. }), .. });
    let flags = bits(&[
        (b.is_some(), matmul_flags::HAS_BIAS),
        (accumulate, matmul_flags::ACCUMULATE),
        (conv_bias, matmul_flags::CONV_BIAS),
    ]);
    let base = MatmulParams {
        m: super::word("M", m)?,
        n: super::word("N", n)?,
        k: super::word("K", k)?,
        flags,
        xs: super::word("row stride", xs)?,
    };
    let mut params = Params::of(&base);
    let (conv_placeholder, state_placeholder);
    let mut tensors = vec![x, w, bias, y];
    if let Epilogue::InStep { norm_w, eps, conv, width, .. } = &epilogue {
        // Without a band, [0, 0) is empty and the conv bindings are 1-element placeholders (the
        // written state one of its own: a buffer cannot be bound read-only and writable at once);
        // without a conv bias, flag bit 2 is clear and the bias binding is a placeholder.
        let (lo, hi) = conv.map_or((0, 0), |cv| (cv.lo, cv.lo + cv.weight.shape()[0]));
        params = Params::of(&InStepParams {
            m: base.m,
            n: base.n,
            k: base.k,
            flags: base.flags,
            xs: base.xs,
            conv_lo: super::word("conv band", lo)?,
            conv_hi: super::word("conv band", hi)?,
            width: super::word("conv width", *width)?,
            eps: *eps as f32,
        });
        let (cw, cb, cs) = match conv {
            Some(ConvBand { weight, bias: Some(cb), state, .. }) => (*weight, *cb, *state),
            Some(ConvBand { weight, bias: None, state, .. }) => {
                conv_placeholder = Tensor::empty(rec.device(), &[1], DType::F32)?;
                (*weight, &conv_placeholder, *state)
            }
            None => {
                conv_placeholder = Tensor::empty(rec.device(), &[1], DType::F32)?;
                state_placeholder = Tensor::empty(rec.device(), &[1], DType::F32)?;
                (&conv_placeholder, &conv_placeholder, &state_placeholder)
            }
        };
        tensors.extend([*norm_w, cw, cb, cs]);
    }
    match v.entry {
        "gemv" => {
            let chunk: usize = def("CHUNK").unwrap_or("1").parse().unwrap_or(1);
            if def("VEC") == Some("1") && (k % chunk != 0 || xs % 4 != 0) {
                return unsupported(format!(
                    "vector loads need K % {chunk} == 0 and a row stride % 4 == 0 (K={k}, stride {xs})"
                ));
            }
            if m > u16::MAX as usize {
                return unsupported(format!("M={m} is too large for GEMV"));
            }
            let mut wg = grid(rec.device(), n.div_ceil(GEMV_ROWS as usize))?;
            wg[2] = m as u32;
            rec.dispatch(v, &params, &tensors, wg)
        }
        "gemv_skinny" => {
            if !k.is_multiple_of(4) || !xs.is_multiple_of(4) {
                return unsupported(format!(
                    "vector loads need K % 4 == 0 and a row stride % 4 == 0 (K={k}, stride {xs})"
                ));
            }
            rec.dispatch(v, &params, &tensors, grid(rec.device(), n.div_ceil(4) * m.div_ceil(8))?)
        }
        "gemm" => {
            if def("VEC") == Some("1") && (!k.is_multiple_of(4) || !xs.is_multiple_of(4)) {
                return unsupported(format!(
                    "vector loads need K % 4 == 0 and a row stride % 4 == 0 (K={k}, stride {xs})"
                ));
            }
            let tile: usize = def("BM").unwrap_or("64").parse().unwrap_or(64);
            let wg = [n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1];
            rec.dispatch(v, &params, &[x, w, bias, y], wg)
        }
        other => unsupported(format!("entry {other} is not a matmul kernel")),
    }
}

fn def_of<'v>(v: &'v Variant, key: &str) -> Option<&'v str> {
    v.defines.get(key).map(String::as_str)
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
