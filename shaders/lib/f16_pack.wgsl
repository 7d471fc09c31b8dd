// Element i of an f16 tensor stored two per u32 word (w = the word holding it): readable on
// every backend, with or without SHADER_F16.
fn ld(w: u32, i: u32) -> f32 { return unpack2x16float(w)[i & 1u]; }
