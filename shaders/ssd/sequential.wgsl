// SSD: the sequential baseline and the decode step (included by ssd.wgsl).
#if SEQUENTIAL
// Baseline and GPU oracle: one invocation per (sequence, head, channel p) walks the tokens with
// its N states in a private array.
@group(0) @binding(1) var<storage, {{ACT}}> xbc: array<{{IN}}>;
@group(0) @binding(2) var<storage, {{ACT}}> dt: array<{{IN}}>;
@group(0) @binding(3) var<storage, read> heads: array<f32>;
@group(0) @binding(4) var<storage, {{ACT}}> seqs: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<f32>;

#if F16IN
fn ld_x(i: u32) -> f32 { return ld(xbc[i >> 1u], i); }
fn ld_dt(i: u32) -> f32 { return ld(dt[i >> 1u], i); }
#else
fn ld_x(i: u32) -> f32 { return xbc[i]; }
fn ld_dt(i: u32) -> f32 { return dt[i]; }
#endif

@compute @workgroup_size(64)
fn ssd_sequential(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let per_seq = p.heads * p.hdim;
    if (idx >= p.nseq * per_seq) { return; }
    let s = idx / per_seq;
    let h = (idx % per_seq) / p.hdim;
    let i = idx % p.hdim;
    let g = group_of(h);
    let a_h = heads[h * 4u];
    let d_h = select(0.0, heads[h * 4u + 1u], flag(HAS_D));
    let bias = select(0.0, heads[h * 4u + 2u], flag(HAS_BIAS));
    let sbase = idx * p.nstate; // [S, H, P, N]
    var hs: array<f32, {{NMAX}}>;
    for (var n = 0u; n < p.nstate; n++) {
        hs[n] = select(0.0, state[sbase + n], flag(INIT));
    }
    let t_first = seqs[s] + min(p.win_start, seqs[s + 1u] - seqs[s]);
    let t_last = min(seqs[s + 1u], t_first + p.win_len);
    for (var t = t_first; t < t_last; t++) {
        var v = ld_dt(t * p.heads + h) + bias;
        if (flag(SOFTPLUS) && v <= 20.0) { v = log(1.0 + exp(v)); }
        v = clamp(v, p.dt_min, p.dt_max);
        var a = exp(v * a_h);
        if (flag(RESET) && seqs[p.nseq + 1u + t] != 0u) { a = 0.0; } // state restarts here
        let xv = ld_x(x_ix(t, h, i));
        let vx = v * xv;
        var acc = 0.0;
        for (var n = 0u; n < p.nstate; n++) {
            hs[n] = a * hs[n] + vx * ld_x(b_ix(t, g, n));
            acc += hs[n] * ld_x(c_ix(t, g, n));
        }
        y[t * per_seq + h * p.hdim + i] = acc + d_h * xv;
    }
    for (var n = 0u; n < p.nstate; n++) {
        state[sbase + n] = hs[n];
    }
}

// Decode step (one token per sequence; `seqs` from Sequences::decode), on the decode-step
// skeleton: 64 channels of one (sequence, head) per workgroup, 4 invocations per channel;
// invocation (i, q) updates states n ≡ q (mod 4) of channel i in place, so the state is
// streamed once with no private array, and the channel's y is the sum of the four partials.
#include decode_step

@compute @workgroup_size(256)
fn ssd_decode(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blocks = step_blocks(p.hdim);
    let idx = step_workgroup(wid, nwg);
    if (idx >= p.nseq * p.heads * blocks) { return; } // workgroup-uniform
    let s = idx / (p.heads * blocks);
    let h = (idx / blocks) % p.heads;
    let i = step_channel(idx, p.hdim, lid);
    let q = lid % 4u;
    let t = seqs[s];
    let g = group_of(h);
    let a_h = heads[h * 4u];
    let d_h = select(0.0, heads[h * 4u + 1u], flag(HAS_D));
    let bias = select(0.0, heads[h * 4u + 2u], flag(HAS_BIAS));
    var v = bias;
    if (flag(ROW_IO)) { v += ld_x(t * p.width + p.dt_col + h); } else { v += ld_dt(t * p.heads + h); }
    if (flag(SOFTPLUS) && v <= 20.0) { v = log(1.0 + exp(v)); }
    v = clamp(v, p.dt_min, p.dt_max);
    var a = exp(v * a_h);
    if (flag(RESET) && seqs[p.nseq + 1u + t] != 0u) { a = 0.0; }
    let live = i < p.hdim;
    var xv = 0.0;
    var acc = 0.0;
    if (live) {
        xv = ld_x(x_ix(t, h, i));
        let vx = v * xv;
        let base = ((s * p.heads + h) * p.hdim + i) * p.nstate;
        for (var n = q; n < p.nstate; n += 4u) {
            let hn = a * select(0.0, state[base + n], flag(INIT)) + vx * ld_x(b_ix(t, g, n));
            state[base + n] = hn;
            acc += hn * ld_x(c_ix(t, g, n));
        }
    }
    let sum = quad_sum(lid, acc, 0u);
    if (live && q == 0u) {
        var yv = sum + d_h * xv;
        if (flag(ROW_IO)) {
            let z = ld_x(t * p.width + p.z_col + h * p.hdim + i);
            yv *= z / (1.0 + exp(-z));
        }
        y[t * p.heads * p.hdim + h * p.hdim + i] = yv;
    }
}
#endif
