// The gated delta rule (ops::delta_rule) over packed sequences. Layouts:
//   qkv   : [T, width]   per token q of the Hk key heads (from q_col), k (from k_col), v of the
//                        Hv value heads (from v_col): the short convolution's output, read in
//                        place (value head h reads key head h / (Hv / Hk))
//   g     : [T, Hv]      log decay per step (≤ 0), or (GATE_K, Kimi Delta Attention) one per
//                        key channel [T, Hv, DK]: S's row i decays by exp(g[i])
//   beta  : [T, Hv]      the write strength β (sigmoid, or 2·sigmoid for negative eigenvalues)
//   state : [S, Hv, dk, dv] f32, read when INIT, left at each sequence's last state
//   out   : [T, Hv·dv]
// Per token, with q̂ = l2norm(q)·scale and k̂ = l2norm(k) (L2NORM; else q·scale and k):
//   S ← exp(g)·S (GATE_K: diag(exp(g))·S);  S ← S + k̂ ⊗ β·(v − Sᵀk̂);  o = Sᵀq̂
// A sequence's first token (without INIT) or a RESET token starts from S = 0.
struct Params {
    nseq: u32, hk: u32, hv: u32, dv: u32,
    width: u32, q_col: u32, k_col: u32, v_col: u32,
    flags: u32, t_lo: u32, t_hi: u32, scale: f32,
    nchunks: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

#include flags

const DK: u32 = {{DK}}u;

// Where head parts start in a qkv row.
fn q_at(t: u32, g: u32) -> u32 { return t * p.width + p.q_col + g * DK; }
fn k_at(t: u32, g: u32) -> u32 { return t * p.width + p.k_col + g * DK; }
fn v_at(t: u32, h: u32) -> u32 { return t * p.width + p.v_col + h * p.dv; }

#include delta_rule/recurrent
#include delta_rule/chunked
#include delta_rule/chunked_coop
