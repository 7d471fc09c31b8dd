// Selective scan: states over 8 lanes, tokens in order (N ≤ 16) (included by selective_scan.wgsl).
#if LANES
// States spread over lanes: 8 consecutive invocations share one (sequence, channel), each
// holding states n = lane and n = lane + 8 (N ≤ 16, Mamba-1's size) in registers, and walk the
// tokens in order; y = Σₙ h·C is reduced with three xor-shuffles per token. S·D·8 independent
// invocations keep the GPU full without any scan across time. Tokens go in blocks of 4 whose
// loads are issued one block ahead (the H200 measured the one-token loop latency-bound).
// Needs subgroups whose size is a multiple of 8. Invocations past the end, or past their
// sequence's end, keep stepping without effect so that every shuffle is in uniform control flow.
struct Block { x: vec4<f32>, dt: vec4<f32>, z: vec4<f32>, b0: vec4<f32>, c0: vec4<f32>, b1: vec4<f32>, c1: vec4<f32> }

fn load_block(d: u32, g: u32, n0: u32, n1: u32, t: u32) -> Block {
    let last = p.total - 1u;
    let i = vec4<u32>(min(t, last), min(t + 1u, last), min(t + 2u, last), min(t + 3u, last));
    var blk: Block;
    blk.x = vec4<f32>(ld_u(ix(d, i.x)), ld_u(ix(d, i.y)), ld_u(ix(d, i.z)), ld_u(ix(d, i.w)));
    blk.dt = vec4<f32>(ld_delta(ix(d, i.x)), ld_delta(ix(d, i.y)), ld_delta(ix(d, i.z)), ld_delta(ix(d, i.w)));
    if (flag(HAS_Z)) { blk.z = vec4<f32>(ld_z(ix(d, i.x)), ld_z(ix(d, i.y)), ld_z(ix(d, i.z)), ld_z(ix(d, i.w))); }
    blk.b0 = vec4<f32>(b_at(g, n0, i.x), b_at(g, n0, i.y), b_at(g, n0, i.z), b_at(g, n0, i.w));
    blk.c0 = vec4<f32>(c_at(g, n0, i.x), c_at(g, n0, i.y), c_at(g, n0, i.z), c_at(g, n0, i.w));
    if (n1 < p.nstate) {
        blk.b1 = vec4<f32>(b_at(g, n1, i.x), b_at(g, n1, i.y), b_at(g, n1, i.z), b_at(g, n1, i.w));
        blk.c1 = vec4<f32>(c_at(g, n1, i.x), c_at(g, n1, i.y), c_at(g, n1, i.z), c_at(g, n1, i.w));
    }
    return blk;
}

// Per-invocation constants of the lanes kernel.
struct Lane8 { live: bool, lane: u32, has0: bool, has1: bool, a0: f32, a1: f32, bias: f32, dskip: f32, d: u32, t_last: u32 }

// One token: update this lane's two states, reduce y over the 8 lanes, lane 0 writes it.
fn lane_step(h0: ptr<function, f32>, h1: ptr<function, f32>, c: Lane8, t: u32, x: f32, draw: f32, zz: f32, b0: f32, c0: f32, b1: f32, c1: f32) {
    let on = c.live && t < c.t_last;
    var dt = draw + c.bias;
    if (flag(SOFTPLUS) && dt <= 20.0) { dt = log(1.0 + exp(dt)); }
    let keep = select(1.0, 0.0, is_reset(min(t, p.total - 1u)));
    var part = 0.0;
    if (c.has0) {
        let h = decay(dt, c.a0) * keep * *h0 + dt * b0 * x;
        *h0 = select(*h0, h, on);
        part += h * c0;
    }
    if (c.has1) {
        let h = decay(dt, c.a1) * keep * *h1 + dt * b1 * x;
        *h1 = select(*h1, h, on);
        part += h * c1;
    }
    part += subgroupShuffleXor(part, 4u);
    part += subgroupShuffleXor(part, 2u);
    part += subgroupShuffleXor(part, 1u);
    if (on && c.lane == 0u) {
        var out = part + c.dskip * x;
        if (flag(HAS_Z)) { out *= zz / (1.0 + exp(-zz)); }
        y[ix(c.d, t)] = out;
    }
}

@compute @workgroup_size({{WG}})
fn scan_lanes(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = gid.x + gid.y * nwg.x * {{WG}}u;
    let live = idx < p.nseq * p.dim * 8u;
    let pair = min(idx / 8u, p.nseq * p.dim - 1u);
    let lane = idx % 8u;
    let s = pair / p.dim;
    let d = pair % p.dim;
    let g = d / (p.dim / p.groups);
    let n0 = min(lane, p.nstate - 1u);
    let n1 = min(lane + 8u, p.nstate - 1u);
    let has0 = lane < p.nstate;
    let has1 = lane + 8u < p.nstate;
    let base = d * (p.nstate + 2u);
    let a0 = chan[base + n0];
    let a1 = chan[base + n1];
    var bias = 0.0;
    if (flag(HAS_BIAS)) { bias = chan[base + p.nstate + 1u]; }
    var dskip = 0.0;
    if (flag(HAS_D)) { dskip = chan[base + p.nstate]; }
    let sidx = (s * p.dim + d) * p.nstate;
    var h0 = 0.0;
    var h1 = 0.0;
    if (flag(INIT)) {
        h0 = select(0.0, state[sidx + n0], has0);
        h1 = select(0.0, state[sidx + n1], has1);
    }
    let t_first = seqs[s] + min(p.win_start, seqs[s + 1u] - seqs[s]);
    let t_last = min(seqs[s + 1u], t_first + p.win_len);
    let steps = subgroupMax(t_last - t_first);
    var cur = load_block(d, g, n0, n1, t_first);
    for (var k = 0u; k < steps; k += 4u) {
        let nxt = load_block(d, g, n0, n1, t_first + k + 4u);
        // Four explicit steps: indexing the block's vectors with a loop counter made the
        // driver keep them in local memory.
        let t = t_first + k;
        let c = Lane8(live, lane, has0, has1, a0, a1, bias, dskip, d, t_last);
        lane_step(&h0, &h1, c, t, cur.x.x, cur.dt.x, cur.z.x, cur.b0.x, cur.c0.x, cur.b1.x, cur.c1.x);
        lane_step(&h0, &h1, c, t + 1u, cur.x.y, cur.dt.y, cur.z.y, cur.b0.y, cur.c0.y, cur.b1.y, cur.c1.y);
        lane_step(&h0, &h1, c, t + 2u, cur.x.z, cur.dt.z, cur.z.z, cur.b0.z, cur.c0.z, cur.b1.z, cur.c1.z);
        lane_step(&h0, &h1, c, t + 3u, cur.x.w, cur.dt.w, cur.z.w, cur.b0.w, cur.c0.w, cur.b1.w, cur.c1.w);
        cur = nxt;
    }
    if (live) {
        if (has0) { state[sidx + n0] = h0; }
        if (has1) { state[sidx + n1] = h1; }
    }
}
#endif
