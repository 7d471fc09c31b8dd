// Griffin's RG-LRU (ops::rg_lru) over packed sequences, one invocation per (sequence, channel)
// walking its tokens with the state in a register:
//   x     : [T, D]    the conv'd input
//   gates : [T, 2D]   pre-activations of the input gate (first D) and the recurrence gate
//   lam   : [D]       Λ (recurrent_param)
//   state : [S, D]    h, read when INIT, always left at the last token's value
//   y     : [T, D]
// a = exp(−8·σ(g_a)·softplus(Λ)); h = a·h + √(1 − a²)·σ(g_x)·x, where a sequence's first
// token (without INIT) or a RESET token starts from h = 0 with multiplier 1. Tokens
// [t_lo, t_hi) of each sequence per dispatch (lavapipe ends very long loops).
struct Params { nseq: u32, dim: u32, t_lo: u32, t_hi: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> x: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> gates: array<f32>;
@group(0) @binding(3) var<storage, read> lam: array<f32>;
@group(0) @binding(4) var<storage, read> seqs: array<u32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

#include flags
#include activations
#include packed_seqs

@compute @workgroup_size(64)
fn rg_lru(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.nseq * p.dim) { return; }
    let d = e % p.dim;
    let s = e / p.dim;
    let t0 = seqs[s];
    let t1 = seqs[s + 1u];
    let lo = t0 + min(p.t_lo, t1 - t0);
    let hi = t0 + min(p.t_hi, t1 - t0);
    if (lo >= hi) { return; }
    let c = -8.0 * softplus(lam[d]);
    var h = state[s * p.dim + d];
    for (var t = lo; t < hi; t++) {
        let start = is_reset(t) || (t == t0 && !flag(INIT));
        let log_a = c * sigmoid(gates[t * 2u * p.dim + p.dim + d]);
        let a = exp(log_a);
        let mult = select(sqrt(1.0 - exp(2.0 * log_a)), 1.0, start);
        let b = sigmoid(gates[t * 2u * p.dim + d]) * x[t * p.dim + d] * mult;
        h = select(a * h, 0.0, start) + b;
        y[t * p.dim + d] = h;
    }
    state[s * p.dim + d] = h;
}
