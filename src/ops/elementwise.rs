//! Elementwise ops: unary activations, broadcasting binary ops, dtype casts and the fused
//! residual add. Unary and binary ops take f32 or f16 activations (the output has the first
//! operand's dtype; a binary op's second operand may be either); arithmetic is f32. f16 is
//! packed two per u32 word, so no variant needs SHADER_F16.

use super::{grid, Params, Recorder};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/elementwise.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("elementwise");

const WG: u32 = 256;

/// Unary functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Silu,
    Softplus,
    Exp,
    Sigmoid,
    /// x · scale
    Scale,
    /// GELU, tanh approximation (transformers' `gelu_pytorch_tanh`).
    GeluTanh,
    /// GELU, exact: x·Φ(x) (PyTorch's `nn.GELU()`).
    Gelu,
    /// scale · tanh(x / scale): Gemma's logit soft cap (scale = the cap).
    SoftCap,
}

/// Binary functions; the second operand broadcasts with a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Mul,
    /// a · silu(b): the gate of Mamba blocks (and SwiGLU).
    MulSilu,
    /// a · gelu_tanh(b): GeGLU.
    MulGeluTanh,
    /// a · σ(b): the GLU (S4's output).
    MulSigmoid,
}

impl Unary {
    pub const ALL: [Unary; 8] = [
        Unary::Silu,
        Unary::Softplus,
        Unary::Exp,
        Unary::Sigmoid,
        Unary::Scale,
        Unary::GeluTanh,
        Unary::Gelu,
        Unary::SoftCap,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Unary::Silu => "silu",
            Unary::Softplus => "softplus",
            Unary::Exp => "exp",
            Unary::Sigmoid => "sigmoid",
            Unary::Scale => "scale",
            Unary::GeluTanh => "gelu_tanh",
            Unary::Gelu => "gelu",
            Unary::SoftCap => "soft_cap",
        }
    }
    fn expr(self) -> &'static str {
        match self {
            Unary::Silu => "silu(x)",
            Unary::Softplus => "softplus(x)",
            Unary::Exp => "exp(x)",
            Unary::Sigmoid => "sigmoid(x)",
            Unary::Scale => "x * p.scale",
            Unary::GeluTanh => "gelu_tanh(x)",
            Unary::Gelu => "gelu(x)",
            Unary::SoftCap => "p.scale * tanh(x / p.scale)",
        }
    }
    /// f64 reference.
    pub fn reference(self, x: f64, scale: f64) -> f64 {
        match self {
            Unary::Silu => x / (1.0 + (-x).exp()),
            Unary::Softplus => {
                if x > 20.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
            Unary::Exp => x.exp(),
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Scale => x * scale,
            Unary::GeluTanh => gelu_tanh_ref(x),
            Unary::Gelu => gelu_ref(x),
            Unary::SoftCap => scale * (x / scale).tanh(),
        }
    }
    fn variant(self, dtype: DType) -> Variant {
        let f16 = dtype == DType::F16;
        Variant::new(
            format!("elementwise.{}{}", self.name(), if f16 { ".f16" } else { "" }),
            &SHADER,
            "unary",
        )
        .define("WG", WG)
        .define("UNARY", 1)
        .define("F16", f16 as u32)
        .define("EXPR", self.expr())
        .with_params::<ElementwiseParams>()
    }
}

impl Binary {
    pub const ALL: [Binary; 5] =
        [Binary::Add, Binary::Mul, Binary::MulSilu, Binary::MulGeluTanh, Binary::MulSigmoid];
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Mul => "mul",
            Binary::MulSilu => "mul_silu",
            Binary::MulGeluTanh => "mul_gelu_tanh",
            Binary::MulSigmoid => "mul_sigmoid",
        }
    }
    fn expr(self) -> &'static str {
        match self {
            Binary::Add => "x + y",
            Binary::Mul => "x * y",
            Binary::MulSilu => "x * silu(y)",
            Binary::MulGeluTanh => "x * gelu_tanh(y)",
            Binary::MulSigmoid => "x * sigmoid(y)",
        }
    }
    /// f64 reference.
    pub fn reference(self, x: f64, y: f64) -> f64 {
        match self {
            Binary::Add => x + y,
            Binary::Mul => x * y,
            Binary::MulSilu => x * y / (1.0 + (-y).exp()),
            Binary::MulGeluTanh => x * gelu_tanh_ref(y),
            Binary::MulSigmoid => x / (1.0 + (-y).exp()),
        }
    }
    /// The variant for an `a` (and output) of `a` and a second operand of `b`: named
    /// `elementwise.<op>` for f32, `.f16` for f16 a and b, `.f16.b32` for f16 a and f32 b.
    fn variant(self, a: DType, b: DType) -> Variant {
        let (a16, b16) = (a == DType::F16, b == DType::F16);
        let tag = match (a16, b16) {
            (false, false) => "",
            (true, true) => ".f16",
            (true, false) => ".f16.b32",
            (false, true) => ".b16",
        };
        Variant::new(format!("elementwise.{}{tag}", self.name()), &SHADER, "binary")
            .define("WG", WG)
            .define("BINARY", 1)
            .define("F16", a16 as u32)
            .define("B16", b16 as u32)
            .define("EXPR", self.expr())
            .with_params::<ElementwiseParams>()
    }
}

/// GELU's tanh approximation in f64.
pub fn gelu_tanh_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.7978845608028654 * (x + 0.044715 * x * x * x)).tanh())
}

/// The cast kernel to `to` (f16 or f32) from the other float dtype.
fn cast_variant(to: DType) -> Variant {
    let f16 = to == DType::F16;
    Variant::new(format!("elementwise.cast.{}", to.name()), &SHADER, "convert")
        .define("WG", WG)
        .define("F16", f16 as u32)
        .define("CAST_F16", f16 as u32)
        .define("CAST_F32", !f16 as u32)
        .with_params::<ElementwiseParams>()
}

crate::uniform! {
    /// Parameters of the elementwise kernels: `n` elements, `b` repeating every `nb`.
    pub struct ElementwiseParams { pub n: u32, pub nb: u32, pub scale: f32 }
}

fn params(n: usize, nb: usize, scale: f32) -> Result<Params> {
    Ok(Params::of(&ElementwiseParams {
        n: super::word("elements", n)?,
        nb: super::word("elements", nb)?,
        scale,
    }))
}

fn residual_variant() -> Variant {
    Variant::new("elementwise.residual_add", &SHADER, "residual_add")
        .define("WG", WG)
        .define("INPLACE", 1)
        .with_params::<ElementwiseParams>()
}

pub fn variants() -> Vec<Variant> {
    let floats = [DType::F32, DType::F16];
    let mut v: Vec<Variant> =
        floats.iter().flat_map(|&d| Unary::ALL.iter().map(move |u| u.variant(d))).collect();
    for a in floats {
        for b in floats {
            v.extend(Binary::ALL.iter().map(|op| op.variant(a, b)));
        }
    }
    v.extend(floats.map(cast_variant));
    v.push(residual_variant());
    v
}

fn check_f32(name: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::Shape(format!("{name}: the residual add takes f32, got {:?}", t.dtype())));
    }
    Ok(())
}

/// An activation operand: f32 or f16.
fn check_float(name: &str, t: &Tensor) -> Result<()> {
    if !matches!(t.dtype(), DType::F32 | DType::F16) {
        return Err(Error::Shape(format!("{name}: elementwise ops take f32 or f16, got {:?}", t.dtype())));
    }
    Ok(())
}

/// Workgroups over `n` elements of `dtype` (f16: one invocation per word of two).
fn elementwise_grid(rec: &Recorder, n: usize, dtype: DType) -> Result<[u32; 3]> {
    let items = if dtype == DType::F16 { n.div_ceil(2) } else { n };
    grid(rec.device(), items.div_ceil(WG as usize))
}

fn check_broadcast(a: &Tensor, b: &Tensor) -> Result<()> {
    let (n, nb) = (a.numel(), b.numel());
    if nb == 0 || n % nb != 0 {
        return Err(Error::Shape(format!(
            "operand {:?} does not broadcast over {:?} (its length must divide {n})",
            b.shape(),
            a.shape()
        )));
    }
    Ok(())
}

/// Records `out = f(a)` (out of a's shape and dtype).
pub fn unary(rec: &mut Recorder, op: Unary, a: &Tensor, scale: f32, out: &Tensor) -> Result<()> {
    check_float("a", a)?;
    super::expect("out", out, a.shape(), a.dtype())?;
    let n = a.numel();
    let wg = elementwise_grid(rec, n, a.dtype())?;
    rec.dispatch(&op.variant(a.dtype()), &params(n, n, scale)?, &[a, out], wg)
}

/// Records `out = a ∘ b`, with `b` repeating over `a` (its length must divide a's); out has
/// a's shape and dtype.
pub fn binary(rec: &mut Recorder, op: Binary, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    check_float("a", a)?;
    check_float("b", b)?;
    check_broadcast(a, b)?;
    super::expect("out", out, a.shape(), a.dtype())?;
    let n = a.numel();
    let wg = elementwise_grid(rec, n, a.dtype())?;
    rec.dispatch(&op.variant(a.dtype(), b.dtype()), &params(n, b.numel(), 0.0)?, &[a, b, out], wg)
}

/// Records `out = a` converted to out's dtype, f32 → f16 (rounding to nearest) or f16 → f32
/// (exact).
pub fn cast(rec: &mut Recorder, a: &Tensor, out: &Tensor) -> Result<()> {
    check_float("a", a)?;
    check_float("out", out)?;
    if out.shape() != a.shape() || out.dtype() == a.dtype() {
        return Err(Error::Shape(format!(
            "cast: out must have a's shape {:?} and the other float dtype, got {:?} {:?} from {:?}",
            a.shape(),
            out.shape(),
            out.dtype(),
            a.dtype()
        )));
    }
    let n = a.numel();
    let wg = elementwise_grid(rec, n, out.dtype())?;
    rec.dispatch(&cast_variant(out.dtype()), &params(n, n, 0.0)?, &[a, out], wg)
}

/// The f64 reference of [`cast`] to `to`: f16 rounds each value (round to nearest even).
pub fn cast_ref(a: &[f64], to: DType) -> Vec<f64> {
    match to {
        DType::F16 => a.iter().map(|&v| half::f16::from_f64(v).to_f64()).collect(),
        _ => a.to_vec(),
    }
}

/// Records the fused residual add `acc += scale · b`, in place.
pub fn residual_add(rec: &mut Recorder, acc: &Tensor, b: &Tensor, scale: f32) -> Result<()> {
    check_f32("acc", acc)?;
    check_f32("b", b)?;
    check_broadcast(acc, b)?;
    let n = acc.numel();
    let wg = grid(rec.device(), n.div_ceil(WG as usize))?;
    rec.dispatch(&residual_variant(), &params(n, b.numel(), scale)?, &[acc, b], wg)
}

/// f64 GELU: x·Φ(x) = x/2·(1 + erf(x/√2)).
pub fn gelu_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + erf_ref(x / std::f64::consts::SQRT_2))
}

/// erf in f64: its Maclaurin series for |x| ≤ 3 (to about 1e-13), else 1 − erfc by the
/// continued fraction.
pub fn erf_ref(x: f64) -> f64 {
    let a = x.abs();
    let v = if a <= 3.0 {
        let (mut term, mut sum) = (a, a);
        for n in 1..200 {
            term *= -a * a / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = e^{−a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))).
        let mut f = a;
        for k in (1..80).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    v.copysign(x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_tabulated_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (-2.5, -0.999593047982555),
            (3.5, 0.9999992569016276),
            (6.0, 1.0),
        ] {
            let got = super::erf_ref(x);
            assert!((got - want).abs() < 1e-13, "erf({x}) = {got}, want {want}");
        }
    }
}
