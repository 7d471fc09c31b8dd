// Scalar activations, as PyTorch defines them.
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu(x: f32) -> f32 { return x * sigmoid(x); }
// softplus with PyTorch's threshold: linear above 20, and log1p form to keep precision.
fn softplus(x: f32) -> f32 {
    if (x > 20.0) { return x; }
    return log(1.0 + exp(x));
}
// GELU, tanh approximation (PyTorch's `gelu(approximate="tanh")`, transformers'
// gelu_pytorch_tanh). tanh is written through exp so that large |u| saturates cleanly.
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    let e = exp(-2.0 * abs(u));
    let th = sign(u) * (1.0 - e) / (1.0 + e);
    return 0.5 * x * (1.0 + th);
}
// GELU, exact form x·Φ(x) (PyTorch's nn.GELU()), with erf by Abramowitz & Stegun 7.1.26
// (absolute error ≤ 1.5e-7).
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-a * a));
}
fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476)); }
