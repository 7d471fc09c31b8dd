//! Elementwise ops: unary activations, broadcasting binary ops and the fused residual add.

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
}

/// Binary functions; the second operand broadcasts with a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Mul,
    /// a · silu(b): the gate of Mamba blocks.
    MulSilu,
}

impl Unary {
    pub const ALL: [Unary; 5] = [Unary::Silu, Unary::Softplus, Unary::Exp, Unary::Sigmoid, Unary::Scale];
    pub fn name(self) -> &'static str {
        match self {
            Unary::Silu => "silu",
            Unary::Softplus => "softplus",
            Unary::Exp => "exp",
            Unary::Sigmoid => "sigmoid",
            Unary::Scale => "scale",
        }
    }
    fn expr(self) -> &'static str {
        match self {
            Unary::Silu => "silu(x)",
            Unary::Softplus => "softplus(x)",
            Unary::Exp => "exp(x)",
            Unary::Sigmoid => "sigmoid(x)",
            Unary::Scale => "x * p.scale",
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
        }
    }
    fn variant(self) -> Variant {
        Variant::new(format!("elementwise.{}", self.name()), &SHADER, "unary")
            .define("WG", WG)
            .define("UNARY", 1)
            .define("EXPR", self.expr())
            .with_params::<ElementwiseParams>()
    }
}

impl Binary {
    pub const ALL: [Binary; 3] = [Binary::Add, Binary::Mul, Binary::MulSilu];
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Mul => "mul",
            Binary::MulSilu => "mul_silu",
        }
    }
    fn expr(self) -> &'static str {
        match self {
            Binary::Add => "x + y",
            Binary::Mul => "x * y",
            Binary::MulSilu => "x * silu(y)",
        }
    }
    /// f64 reference.
    pub fn reference(self, x: f64, y: f64) -> f64 {
        match self {
            Binary::Add => x + y,
            Binary::Mul => x * y,
            Binary::MulSilu => x * y / (1.0 + (-y).exp()),
        }
    }
    fn variant(self) -> Variant {
        Variant::new(format!("elementwise.{}", self.name()), &SHADER, "binary")
            .define("WG", WG)
            .define("BINARY", 1)
            .define("EXPR", self.expr())
            .with_params::<ElementwiseParams>()
    }
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
    let mut v: Vec<Variant> = Unary::ALL.iter().map(|u| u.variant()).collect();
    v.extend(Binary::ALL.iter().map(|b| b.variant()));
    v.push(residual_variant());
    v
}

fn check_f32(name: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::Shape(format!("{name}: elementwise ops take f32, got {:?}", t.dtype())));
    }
    Ok(())
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

/// Records `out = f(a)`.
pub fn unary(rec: &mut Recorder, op: Unary, a: &Tensor, scale: f32, out: &Tensor) -> Result<()> {
    check_f32("a", a)?;
    super::expect("out", out, a.shape(), DType::F32)?;
    let n = a.numel();
    let wg = grid(rec.device(), n.div_ceil(WG as usize))?;
    rec.dispatch(&op.variant(), &params(n, n, scale)?, &[a, out], wg)
}

/// Records `out = a ∘ b`, with `b` repeating over `a` (its length must divide a's).
pub fn binary(rec: &mut Recorder, op: Binary, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    check_f32("a", a)?;
    check_f32("b", b)?;
    check_broadcast(a, b)?;
    super::expect("out", out, a.shape(), DType::F32)?;
    let n = a.numel();
    let wg = grid(rec.device(), n.div_ceil(WG as usize))?;
    rec.dispatch(&op.variant(), &params(n, b.numel(), 0.0)?, &[a, b, out], wg)
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
