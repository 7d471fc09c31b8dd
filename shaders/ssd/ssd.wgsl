// Mamba-2's state-space dual (SSD) scan, token-major packed layout:
//   xbc   : [T, W]  per token x (H·P, head-major), then B (G·N), then C (G·N): the layout of
//                   Mamba-2's conv output, read in place (W = H·P + 2·G·N)
//   dt    : [T, H]  raw step sizes; dt = clamp(softplus(dt + dt_bias), dt_min, dt_max)
//   heads : [H, 4]  A (negative), D, dt_bias, unused
//   y     : [T, H·P] f32, y = C·h + D·x
//   state : [S, H, P, N] f32
// Head h reads group h / (H / G). Recurrence: h_t = exp(dt·A)·h_{t−1} + dt·x_t ⊗ B_t.
// xbc and dt are f32, or f16 packed two per u32 word (F16IN); states and sums are f32.
struct Params {
    total: u32, heads: u32, hdim: u32, groups: u32,
    nstate: u32, nseq: u32, flags: u32, width: u32,
    dt_min: f32, dt_max: f32, win_start: u32, win_len: u32,
    nchunks: u32, chunk: u32, col0: u32, dt_col: u32,
    z_col: u32, seq_chunks: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

// Flag constants come from Rust: SOFTPLUS, HAS_BIAS, HAS_D, INIT, RESET and ROW_IO
// (`ssd::ssd_flags`; ROW_IO: a decode step on a fused in_proj row [z | xBC | dt], `xbc` bound
// to the whole row with x at col0, dt at dt_col and the silu(z) gate at z_col).
// Chunk table entries (u32 × 4 per chunk): first token, length, sequence, flags (FRESH, FIRST
// from `ssd::chunk_flags`); then the per-sequence chunk offsets [S + 1].

#include flags
#include f16_pack

fn group_of(h: u32) -> u32 { return h / (p.heads / p.groups); }
// col0: where x starts within a row (0, or the xBC band of a decode step's fused in_proj row).
fn x_ix(t: u32, h: u32, i: u32) -> u32 { return t * p.width + p.col0 + h * p.hdim + i; }
fn b_ix(t: u32, g: u32, n: u32) -> u32 { return t * p.width + p.col0 + p.heads * p.hdim + g * p.nstate + n; }
fn c_ix(t: u32, g: u32, n: u32) -> u32 { return b_ix(t, g, n) + p.groups * p.nstate; }


// The kernels, one file per form (each guarded by its own #if):
#include ssd/sequential
#include ssd/chunked
#include ssd/tensor_core
