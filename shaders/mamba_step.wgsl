// Fused selective-scan decode step of a Mamba block (one token per sequence), the layer's
// work between x_proj and out_proj in one dispatch:
//   xz    : [S, XS]        the fused in_proj step's output: conv'd x at columns [0, D), the
//                          gate z at columns [ZC, ZC + D)
//   xdbl  : [S, R + 2N]    x_proj's output: dt_in (R), then B (N), then C (N)
//   w_dt  : [D, R]         dt_proj weight (f32, f16 packed in u32 words, or native f16)
//   chan  : [D, N + 2]     A[d, 0..N], D_skip[d], dt_proj bias[d] (the selective scan's layout)
//   state : [S, D, N]      SSM state, updated in place
//   y     : [S, D]
// Per channel: dt = softplus(dt_in · w_dt[d] + bias) (threshold 20); then the selective scan's
// decode step: h = exp(dt·A)·h + dt·B·x (NEG_EIG: 2a − 1), y = (Σ h·C + D·x)·silu(z).
// The decode-step skeleton (lib/decode_step): 64 channels of one sequence per workgroup, 4
// invocations per channel; each sums a quarter of dt's dot product and updates the states
// n ≡ q (mod 4).
struct Params { dim: u32, nstate: u32, rank: u32, nseq: u32, flags: u32, xs: u32, zc: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> xz: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> xdbl: array<f32>;
@group(0) @binding(3) var<storage, read> w_dt: array<{{WTYPE}}>;
@group(0) @binding(4) var<storage, read> chan: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// Flag constants come from Rust (`selective_scan::scan_flags`, INIT and RESET unused here).

#include flags

fn wload(e: u32) -> f32 {
#if W_F32
    return w_dt[e];
#endif
#if W_F16P
    return unpack2x16float(w_dt[e >> 1u])[e & 1u];
#endif
#if W_F16N
    return f32(w_dt[e]);
#endif
}

#include decode_step

@compute @workgroup_size(256)
fn mamba_step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = step_workgroup(wid, nwg);
    if (idx >= p.nseq * step_blocks(p.dim)) { return; } // workgroup-uniform
    let s = idx / step_blocks(p.dim);
    let c = step_channel(idx, p.dim, lid);
    let d = min(c, p.dim - 1u); // lanes past D compute, never store
    let live = c < p.dim;
    let q = lid % 4u;
    let row = s * (p.rank + 2u * p.nstate);
    let np2 = p.nstate + 2u;
    // dt_proj: this lane's quarter of the dot product (neighbouring lanes, neighbouring elements).
    var part = 0.0;
    for (var r = q; r < p.rank; r += 4u) { part += xdbl[row + r] * wload(d * p.rank + r); }
    var dt = quad_sum(lid, part, 0u);
    if (flag(HAS_BIAS)) { dt += chan[d * np2 + p.nstate + 1u]; }
    if (flag(SOFTPLUS) && dt <= 20.0) { dt = log(1.0 + exp(dt)); }
    let x = xz[s * p.xs + d];
    let base = (s * p.dim + d) * p.nstate;
    var acc = 0.0;
    for (var n = q; n < p.nstate; n += 4u) {
        var a = exp(dt * chan[d * np2 + n]);
        if (flag(NEG_EIG)) { a = 2.0 * a - 1.0; }
        let h = a * state[base + n] + dt * xdbl[row + p.rank + n] * x;
        if (live) { state[base + n] = h; }
        acc += h * xdbl[row + p.rank + p.nstate + n];
    }
    var out = quad_sum(lid, acc, 1u);
    if (live && q == 0u) {
        if (flag(HAS_D)) { out += chan[d * np2 + p.nstate] * x; }
        if (flag(HAS_Z)) {
            let z = xz[s * p.xs + p.zc + d];
            out *= z / (1.0 + exp(-z));
        }
        y[s * p.dim + d] = out;
    }
}
