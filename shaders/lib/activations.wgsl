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
