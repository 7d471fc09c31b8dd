// Selective scan: the sequential baseline and the decode step (included by selective_scan.wgsl).
#if SEQUENTIAL
// Baseline: one invocation per (sequence, channel) walks its tokens in order.
@compute @workgroup_size({{WG}})
fn scan_sequential(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * {{WG}}u;
    if (idx >= p.nseq * p.dim) { return; }
    let s = idx / p.dim;
    let d = idx % p.dim;
    let g = d / (p.dim / p.groups);
    var h: array<f32, {{NMAX}}>;
    for (var n = 0u; n < p.nstate; n++) {
        h[n] = select(0.0, state[(s * p.dim + d) * p.nstate + n], flag(INIT));
    }
    let t_first = seqs[s] + min(p.win_start, seqs[s + 1u] - seqs[s]);
    let t_last = min(seqs[s + 1u], t_first + p.win_len);
    for (var t = t_first; t < t_last; t++) {
        let dt = dt_at(d, t);
        let x = ld_u(ix(d, t));
        let keep = select(1.0, 0.0, is_reset(t));
        var acc = 0.0;
        for (var n = 0u; n < p.nstate; n++) {
            let a = decay(dt, chan[d * (p.nstate + 2u) + n]) * keep;
            h[n] = a * h[n] + dt * b_at(g, n, t) * x;
            acc += h[n] * c_at(g, n, t);
        }
        y[ix(d, t)] = finish(d, t, x, acc);
    }
    for (var n = 0u; n < p.nstate; n++) {
        state[(s * p.dim + d) * p.nstate + n] = h[n];
    }
}

// Decode step (one token per sequence; `seqs` from Sequences::decode), on the decode-step
// skeleton: 64 channels of one sequence per workgroup, 4 invocations per channel; invocation
// (c, q) updates states n ≡ q (mod 4) of its channel in place, and the channel's y is the sum
// of the four partials, then D skip and the silu(z) gate.
#include decode_step

@compute @workgroup_size(256)
fn scan_decode(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = step_workgroup(wid, nwg);
    if (idx >= p.nseq * step_blocks(p.dim)) { return; } // workgroup-uniform
    let s = idx / step_blocks(p.dim);
    let d = step_channel(idx, p.dim, lid);
    let q = lid % 4u;
    let t = seqs[s];
    let live = d < p.dim;
    let dd = min(d, p.dim - 1u);
    let g = dd / (p.dim / p.groups);
    let dt = dt_at(dd, t);
    let keep = select(1.0, 0.0, is_reset(t));
    let x = ld_u(ix(dd, t));
    var acc = 0.0;
    if (live) {
        let base = (s * p.dim + d) * p.nstate;
        for (var n = q; n < p.nstate; n += 4u) {
            let a = decay(dt, chan[d * (p.nstate + 2u) + n]) * keep;
            let hn = a * select(0.0, state[base + n], flag(INIT)) + dt * b_at(g, n, t) * x;
            state[base + n] = hn;
            acc += hn * c_at(g, n, t);
        }
    }
    let sum = quad_sum(lid, acc, 0u);
    if (live && q == 0u) {
        y[ix(d, t)] = finish(d, t, x, sum);
    }
}
#endif
