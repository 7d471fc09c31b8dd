// Whether v is NaN or ±Inf, by its exponent bits (a comparison such as v != v may be folded
// away by compilers that assume finite math).
fn nonfinite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; }
