// Mamba's selective scan (mamba_ssm selective_scan_ref semantics), token-major packed layout
// (the layout linear layers produce, and one where a warp's loads for one token coalesce):
//   u, delta, z, y : [T, D]      T = total tokens of all packed sequences (no padding)
//   bc             : [T, 2, G, N] per token: B of every group, then C; channel d uses group d / (D / G)
//   chan           : [D, N + 2]  A[d, 0..N], then D_skip[d], then delta_bias[d]
//   seqs           : u32 [S + 1] cu_seqlens, then (RESET flag) u32 [T] reset flags
//   state          : [S, D, N]   initial state in (INIT flag), final state out
// Per token: dt = softplus(delta + bias) (threshold 20); a = exp(dt·A) (NEG_EIG: 2a − 1);
// h = a·h + dt·B·u, with h = 0 before a reset token; y = Σₙ h·C + D·u; y *= silu(z).
// u, delta, bc and z are f32, or f16 (F16IN). State and accumulation are f32. At most 8 storage bindings (WebGPU's default limit).
// Each dispatch covers a window of every sequence's tokens, [win_start, win_start + win_len)
// relative to its start (the op splits very long sequences into several dispatches that carry
// the state: llvmpipe ends any invocation after ~65k loop iterations).
struct Params { dim: u32, total: u32, nstate: u32, groups: u32, nseq: u32, flags: u32, win_start: u32, win_len: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> u: array<{{IN}}>;
@group(0) @binding(2) var<storage, {{ACT}}> delta: array<{{IN}}>;
@group(0) @binding(3) var<storage, {{ACT}}> bc: array<{{IN}}>;
@group(0) @binding(4) var<storage, {{ACT}}> z: array<{{IN}}>;
@group(0) @binding(5) var<storage, read> chan: array<f32>;
@group(0) @binding(6) var<storage, {{ACT}}> seqs: array<u32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<storage, read_write> state: array<f32>;

// Input loads: f32, or f16 packed two per u32 word (F16IN; state and sums stay f32).
#include f16_pack
#if F16IN
fn ld_u(i: u32) -> f32 { return ld(u[i >> 1u], i); }
fn ld_delta(i: u32) -> f32 { return ld(delta[i >> 1u], i); }
fn ld_bc(i: u32) -> f32 { return ld(bc[i >> 1u], i); }
fn ld_z(i: u32) -> f32 { return ld(z[i >> 1u], i); }
#else
fn ld_u(i: u32) -> f32 { return u[i]; }
fn ld_delta(i: u32) -> f32 { return delta[i]; }
fn ld_bc(i: u32) -> f32 { return bc[i]; }
fn ld_z(i: u32) -> f32 { return z[i]; }
#endif

// Flag constants (SOFTPLUS, HAS_BIAS, HAS_D, HAS_Z, NEG_EIG, INIT, RESET) come from Rust
// (`selective_scan::scan_flags`).

#include flags
#include packed_seqs

// Element (channel d, token t) of a token-major [T, D] tensor.
fn ix(d: u32, t: u32) -> u32 { return t * p.dim + d; }

// Token t clamped into range (loads past a sequence's end read a valid token and are masked).
fn tok(t: u32) -> u32 { return min(t, p.total - 1u); }

fn dt_at(d: u32, t: u32) -> f32 {
    var v = ld_delta(ix(d, t));
    if (flag(HAS_BIAS)) { v += chan[d * (p.nstate + 2u) + p.nstate + 1u]; }
    if (flag(SOFTPLUS) && v <= 20.0) { v = log(1.0 + exp(v)); }
    return v;
}

// Decay of state n for step size dt: exp(dt·A), mapped to 2a − 1 for negative eigenvalues.
fn decay(dt: f32, a_dn: f32) -> f32 {
    let a = exp(dt * a_dn);
    return select(a, 2.0 * a - 1.0, flag(NEG_EIG));
}

// Token-major: a token's B (all groups) then C (all groups) are contiguous.
fn b_at(g: u32, n: u32, t: u32) -> f32 { return ld_bc((t * 2u * p.groups + g) * p.nstate + n); }
fn c_at(g: u32, n: u32, t: u32) -> f32 { return ld_bc((t * 2u * p.groups + p.groups + g) * p.nstate + n); }


fn finish(d: u32, t: u32, x: f32, acc: f32) -> f32 {
    var out = acc;
    if (flag(HAS_D)) { out += chan[d * (p.nstate + 2u) + p.nstate] * x; }
    if (flag(HAS_Z)) {
        let zz = ld_z(ix(d, t));
        out *= zz / (1.0 + exp(-zz));
    }
    return out;
}

// The kernels, one file per form (each guarded by its own #if):
#include selective_scan/sequential
#include selective_scan/chunked
#include selective_scan/lanes
#include selective_scan/fast16
#include selective_scan/paired
#include selective_scan/ceiling
