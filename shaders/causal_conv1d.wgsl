// Depthwise causal conv1d over packed sequences, token-major:
//   x, out : [T, C]        T = total packed tokens
//   w      : [C, W]        W = width (2..4); out[c,t] = bias[c] + Σₖ w[c,k]·x[c, t−(W−1)+k]
//   bias   : [C]           (placeholder when HAS_BIAS is off)
//   seqs   : u32 [S+1] cu_seqlens, then (RESET) u32 [T] reset flags
//   state  : [S, C, W−1]   the W−1 inputs before each sequence, oldest first (INIT), and the
//                          last W−1 inputs after it (written by conv_state)
// Inputs before a sequence's start come from its state (zero without INIT); inputs before a
// reset token are zero. SILU applies silu to the output.
struct Params { channels: u32, total: u32, width: u32, nseq: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, {{ACT}}> seqs: array<u32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// Flag constants (HAS_BIAS, SILU, INIT, RESET) come from Rust (`conv1d::conv_flags`).

#include flags
#include packed_seqs

// Earliest position whose input is visible from token t (after the last reset at or before t).
fn history_start(s: u32, t: u32) -> i32 {
    var start = i32(seqs[s]) - i32(p.width - 1u);
    if (!flag(INIT)) { start = i32(seqs[s]); }
    if (flag(RESET)) {
        for (var k = 0u; k < p.width; k++) {
            if (t >= k && t - k >= seqs[s] && is_reset(t - k)) { return max(start, i32(t - k)); }
        }
    }
    return start;
}

// Input at position pos (may be before the sequence: then from state).
fn input_at(s: u32, c: u32, pos: i32) -> f32 {
    let t0 = i32(seqs[s]);
    if (pos >= t0) { return x[u32(pos) * p.channels + c]; }
    let k = i32(p.width - 1u) + (pos - t0); // index into the state, oldest first
    return state[(s * p.channels + c) * (p.width - 1u) + u32(k)];
}

fn activate(c: u32, v: f32) -> f32 {
    var o = v;
    if (flag(HAS_BIAS)) { o += bias[c]; }
    if (flag(SILU)) { o = o / (1.0 + exp(-o)); }
    return o;
}

#if PREFILL
@compute @workgroup_size({{WG}})
fn conv_prefill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * {{WG}}u;
    if (idx >= p.channels * p.total) { return; }
    let t = idx / p.channels; // neighbouring invocations: neighbouring channels, coalesced
    let c = idx % p.channels;
    let s = seq_of(t);
    let first = history_start(s, t);
    var acc = 0.0;
    for (var k = 0u; k < p.width; k++) {
        let pos = i32(t) - i32(p.width - 1u) + i32(k);
        if (pos >= first) { acc += w[c * p.width + k] * input_at(s, c, pos); }
    }
    out[t * p.channels + c] = activate(c, acc);
}

// Second dispatch: each (sequence, channel) replaces its state with its last W−1 inputs.
@compute @workgroup_size({{WG}})
fn conv_state(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * {{WG}}u;
    if (idx >= p.nseq * p.channels) { return; }
    let s = idx / p.channels;
    let c = idx % p.channels;
    let end = seqs[s + 1u];
    var first = i32(seqs[s]) - i32(p.width - 1u);
    if (!flag(INIT)) { first = i32(seqs[s]); }
    if (end > seqs[s]) { first = max(first, history_start(s, end - 1u)); }
    var keep: array<f32, 3>;
    for (var k = 0u; k < p.width - 1u; k++) {
        let pos = i32(end) - i32(p.width - 1u) + i32(k);
        keep[k] = select(0.0, input_at(s, c, pos), pos >= first);
    }
    for (var k = 0u; k < p.width - 1u; k++) {
        state[(s * p.channels + c) * (p.width - 1u) + k] = keep[k];
    }
    // Never true (width ≥ 2): references w, bias and out so that this entry's automatic bind
    // group layout matches conv_prefill's and both dispatches take the same bindings.
    if (p.width == 0u) { out[0] = w[0] + bias[0]; }
}
#endif

#if STEP
// Decode: one token per sequence (T = S, token s belongs to sequence s); the state rolls in
// place. A reset flag on the token clears the history first.
@compute @workgroup_size({{WG}})
fn conv_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * {{WG}}u;
    if (idx >= p.nseq * p.channels) { return; }
    let s = idx / p.channels;
    let c = idx % p.channels;
    let sb = (s * p.channels + c) * (p.width - 1u);
    let xv = x[s * p.channels + c];
    let fresh = is_reset(s);
    var hist: array<f32, 3>;
    for (var k = 0u; k < p.width - 1u; k++) { hist[k] = select(state[sb + k], 0.0, fresh); }
    var acc = w[c * p.width + p.width - 1u] * xv;
    for (var k = 0u; k < p.width - 1u; k++) { acc += w[c * p.width + k] * hist[k]; }
    out[s * p.channels + c] = activate(c, acc);
    for (var k = 0u; k + 1u < p.width - 1u; k++) { state[sb + k] = hist[k + 1u]; }
    state[sb + p.width - 2u] = xv;
}
#endif
