// Griffin's RG-LRU (ops::rg_lru) over packed sequences:
//   x     : [T, D]    the conv'd input
//   gates : [T, 2D]   pre-activations of the input gate (first D) and the recurrence gate
//   lam   : [D]       Λ (recurrent_param)
//   state : [S, D]    h, read when INIT, always left at the last token's value
//   y     : [T, D]
// a = exp(−8·σ(g_a)·softplus(Λ)); h = a·h + √(1 − a²)·σ(g_x)·x, where a sequence's first
// token (without INIT) or a RESET token starts from h = 0 with multiplier 1.
//
// Two forms. SEQUENTIAL: one invocation per (sequence, channel) walks its tokens (decode steps,
// and the oracle); tokens [t_lo, t_hi) per dispatch (lavapipe ends very long loops). CHUNKED,
// the parallel prefill, in three dispatches over chunks of at most 64 tokens that never cross
// a sequence (`chunks`: per chunk (sequence, first token, length), then per sequence its first
// chunk, S + 1 entries): SUMMARY composes each chunk's steps into h ↦ A·h + B (A = Π a, B = h
// from 0); CARRY walks each sequence's chunks in order from its state, giving every chunk the
// h it starts from; APPLY reruns each chunk from that h and writes y. h_t = a_t·h_{t−1} + b_t
// composes associatively, so this is the scan machinery's chunked form.
struct Params { nseq: u32, dim: u32, t_lo: u32, t_hi: u32, flags: u32, nchunks: u32 }
@group(0) @binding(0) var<uniform> p: Params;

#include flags
#include activations

#if !CARRY
// The sequential walk, the summaries and the rerun read the same inputs.
@group(0) @binding(1) var<storage, {{ACT}}> x: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> gates: array<f32>;
@group(0) @binding(3) var<storage, read> lam: array<f32>;
@group(0) @binding(4) var<storage, read> seqs: array<u32>;

#include packed_seqs

// (a, b, starts) of token t, channel d, whose sequence starts at t0: h ↦ a·h + b, or b alone
// when the token starts from zero (tested as a flag, so a NaN before a reset stays behind it).
fn step_of(t: u32, d: u32, t0: u32) -> vec3<f32> {
    let start = is_reset(t) || (t == t0 && !flag(INIT));
    let log_a = -8.0 * softplus(lam[d]) * sigmoid(gates[t * 2u * p.dim + p.dim + d]);
    let mult = select(sqrt(1.0 - exp(2.0 * log_a)), 1.0, start);
    let b = sigmoid(gates[t * 2u * p.dim + d]) * x[t * p.dim + d] * mult;
    return vec3<f32>(exp(log_a), b, select(0.0, 1.0, start));
}

fn advance(h: f32, ab: vec3<f32>) -> f32 {
    return select(ab.x * h, 0.0, ab.z > 0.5) + ab.y;
}
#endif

#if SEQUENTIAL
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

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
    var h = select(0.0, state[s * p.dim + d], flag(INIT));
    for (var t = lo; t < hi; t++) {
        h = advance(h, step_of(t, d, t0));
        y[t * p.dim + d] = h;
    }
    state[s * p.dim + d] = h;
}
#endif

#if SUMMARY
@group(0) @binding(5) var<storage, read> chunks: array<u32>;
@group(0) @binding(6) var<storage, read_write> summary: array<vec2<f32>>; // [chunk, D]: (A, B)

@compute @workgroup_size(64)
fn rg_lru_summary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.nchunks * p.dim) { return; }
    let d = e % p.dim;
    let c = e / p.dim;
    let t0 = seqs[chunks[c * 3u]];
    let first = chunks[c * 3u + 1u];
    var acc = vec2<f32>(1.0, 0.0);
    for (var t = first; t < first + chunks[c * 3u + 2u]; t++) {
        let ab = step_of(t, d, t0);
        acc = select(vec2<f32>(ab.x * acc.x, ab.x * acc.y + ab.y), vec2<f32>(0.0, ab.y), ab.z > 0.5);
    }
    summary[c * p.dim + d] = acc;
}
#endif

#if CARRY
@group(0) @binding(1) var<storage, {{ACT}}> summary: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> chunks: array<u32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> h_in: array<f32>; // [chunk, D]

@compute @workgroup_size(64)
fn rg_lru_carry(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.nseq * p.dim) { return; }
    let d = e % p.dim;
    let s = e / p.dim;
    let c0 = chunks[3u * p.nchunks + s];
    let c1 = chunks[3u * p.nchunks + s + 1u];
    if (c0 >= c1) { return; }
    var h = select(0.0, state[s * p.dim + d], flag(INIT));
    for (var c = c0; c < c1; c++) {
        h_in[c * p.dim + d] = h;
        let ab = summary[c * p.dim + d];
        h = ab.x * h + ab.y;
    }
    state[s * p.dim + d] = h;
}
#endif

#if APPLY
@group(0) @binding(5) var<storage, read> chunks: array<u32>;
@group(0) @binding(6) var<storage, {{ACT}}> h_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn rg_lru_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.nchunks * p.dim) { return; }
    let d = e % p.dim;
    let c = e / p.dim;
    let t0 = seqs[chunks[c * 3u]];
    let first = chunks[c * 3u + 1u];
    var h = h_in[c * p.dim + d];
    for (var t = first; t < first + chunks[c * 3u + 2u]; t++) {
        h = advance(h, step_of(t, d, t0));
        y[t * p.dim + d] = h;
    }
}
#endif
