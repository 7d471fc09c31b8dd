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
fn ld(w: u32, i: u32) -> f32 { return unpack2x16float(w)[i & 1u]; }
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

const SOFTPLUS: u32 = 1u;
const HAS_BIAS: u32 = 2u;
const HAS_D: u32 = 4u;
const HAS_Z: u32 = 8u;
const NEG_EIG: u32 = 16u;
const INIT: u32 = 32u;
const RESET: u32 = 64u;

fn flag(f: u32) -> bool { return (p.flags & f) != 0u; }

// Element (channel d, token t) of a token-major [T, D] tensor.
fn ix(d: u32, t: u32) -> u32 { return t * p.dim + d; }

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

fn is_reset(t: u32) -> bool { return flag(RESET) && seqs[p.nseq + 1u + t] != 0u; }

fn finish(d: u32, t: u32, x: f32, acc: f32) -> f32 {
    var out = acc;
    if (flag(HAS_D)) { out += chan[d * (p.nstate + 2u) + p.nstate] * x; }
    if (flag(HAS_Z)) {
        let zz = ld_z(ix(d, t));
        out *= zz / (1.0 + exp(-zz));
    }
    return out;
}

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
#endif

#if CHUNKED
// One workgroup per (sequence, channel). The sequence is cut into chunks of WG·4 tokens; each
// invocation owns 4 consecutive tokens. For a block of NB states at once, every invocation
// folds its tokens into one affine pair (a, b) ↦ h' = a·h + b, the workgroup scans those pairs
// with (a, b)∘(a′, b′) = (a′a, a′b + b′), and each invocation then replays its tokens from its
// exclusive prefix applied to the state carried in from the previous chunk. Products are
// formed directly, never as exp of a prefix sum of logs (that underflows).
const WG: u32 = {{WG}}u;
const NB: u32 = {{NB}}u;
var<workgroup> sa: array<f32, {{SCAN}}>;
var<workgroup> sb: array<f32, {{SCAN}}>;
var<workgroup> carry: array<f32, {{NMAX}}>;

#if SUBGROUPS
// Composes the first `count` subgroup totals of state j (stored at sa/sb[j·WG + k]) in order,
// as one affine pair (a, b).
fn fold_subgroup_totals(j: u32, count: u32) -> vec2<f32> {
    var a = 1.0;
    var b = 0.0;
    for (var k = 0u; k < count; k++) {
        let qa = sa[j * WG + k];
        b = qa * b + sb[j * WG + k];
        a = qa * a;
    }
    return vec2<f32>(a, b);
}
#endif

@compute @workgroup_size({{WG}})
fn scan_chunked(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
#endif
) {
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.dim) { return; } // workgroup-uniform
    let s = idx / p.dim;
    let d = idx % p.dim;
    let g = d / (p.dim / p.groups);
    let t_begin = seqs[s] + min(p.win_start, seqs[s + 1u] - seqs[s]);
    let t_end = min(seqs[s + 1u], t_begin + p.win_len);
    let base = d * (p.nstate + 2u);
    for (var n = lid; n < p.nstate; n += WG) {
        carry[n] = select(0.0, state[(s * p.dim + d) * p.nstate + n], flag(INIT));
    }
    workgroupBarrier();
    for (var t0 = t_begin; t0 < t_end; t0 += 4u * WG) {
        let tt = t0 + 4u * lid;
        var x = vec4<f32>(0.0);
        var dt = vec4<f32>(0.0);
        var keep = vec4<f32>(1.0);
        var valid = vec4<bool>(false);
        for (var i = 0u; i < 4u; i++) {
            let t = tt + i;
            if (t < t_end) {
                valid[i] = true;
                x[i] = ld_u(ix(d, t));
                dt[i] = dt_at(d, t);
                keep[i] = select(1.0, 0.0, is_reset(t));
            }
        }
        var acc = vec4<f32>(0.0);
        for (var n0 = 0u; n0 < p.nstate; n0 += NB) {
            // 1. Fold own tokens into one pair per state.
            for (var j = 0u; j < NB; j++) {
                let n = n0 + j;
                var pa = 1.0;
                var pb = 0.0;
                if (n < p.nstate) {
                    let a_dn = chan[base + n];
                    for (var i = 0u; i < 4u; i++) {
                        if (valid[i]) {
                            let a = decay(dt[i], a_dn) * keep[i];
                            pa = a * pa;
                            pb = a * pb + dt[i] * b_at(g, n, tt + i) * x[i];
                        }
                    }
                }
#if SUBGROUPS
                // 2a. Inclusive scan inside the subgroup with shuffles.
                for (var off = 1u; off < sg_size; off <<= 1u) {
                    let qa = subgroupShuffleUp(pa, off);
                    let qb = subgroupShuffleUp(pb, off);
                    if (lane >= off) {
                        pb = pa * qb + pb;
                        pa = pa * qa;
                    }
                }
                // Exclusive value for this lane: the inclusive value of the lane before it.
                var ea = subgroupShuffleUp(pa, 1u);
                var eb = subgroupShuffleUp(pb, 1u);
                if (lane == 0u) { ea = 1.0; eb = 0.0; }
                if (lane == sg_size - 1u) {
                    sa[j * WG + sg_id] = pa;
                    sb[j * WG + sg_id] = pb;
                }
                sa[NB * WG + j * WG + lid] = ea;
                sb[NB * WG + j * WG + lid] = eb;
#else
                sa[j * WG + lid] = pa;
                sb[j * WG + lid] = pb;
#endif
            }
            workgroupBarrier();
#if SUBGROUPS
            // 2b. Prefix over earlier subgroups' totals, then this lane's exclusive pair.
            for (var j = 0u; j < NB; j++) {
                let pre = fold_subgroup_totals(j, sg_id);
                let pa = pre.x;
                let pb = pre.y;
                let ea = sa[NB * WG + j * WG + lid];
                let eb = sb[NB * WG + j * WG + lid];
                // exclusive = (subgroup prefix) then (lane-exclusive)
                sa[NB * WG + j * WG + lid] = ea * pa;
                sb[NB * WG + j * WG + lid] = ea * pb + eb;
            }
            workgroupBarrier();
            let ex_base = NB * WG;
#else
            // 2. Hillis–Steele inclusive scan of the pairs across the workgroup.
            for (var off = 1u; off < WG; off <<= 1u) {
                var na: array<f32, {{NB}}>;
                var nb: array<f32, {{NB}}>;
                for (var j = 0u; j < NB; j++) {
                    na[j] = sa[j * WG + lid];
                    nb[j] = sb[j * WG + lid];
                    if (lid >= off) {
                        let qa = sa[j * WG + lid - off];
                        let qb = sb[j * WG + lid - off];
                        nb[j] = na[j] * qb + nb[j];
                        na[j] = na[j] * qa;
                    }
                }
                workgroupBarrier();
                for (var j = 0u; j < NB; j++) {
                    sa[j * WG + lid] = na[j];
                    sb[j * WG + lid] = nb[j];
                }
                workgroupBarrier();
            }
            let ex_base = 0u;
#endif
            // 3. Replay own tokens from the carried state and the exclusive prefix.
            for (var j = 0u; j < NB; j++) {
                let n = n0 + j;
                if (n < p.nstate) {
                    let a_dn = chan[base + n];
                    var ea = 1.0;
                    var eb = 0.0;
#if SUBGROUPS
                    ea = sa[ex_base + j * WG + lid];
                    eb = sb[ex_base + j * WG + lid];
#else
                    if (lid > 0u) {
                        ea = sa[j * WG + lid - 1u];
                        eb = sb[j * WG + lid - 1u];
                    }
#endif
                    var h = ea * carry[n] + eb;
                    for (var i = 0u; i < 4u; i++) {
                        if (valid[i]) {
                            let a = decay(dt[i], a_dn) * keep[i];
                            h = a * h + dt[i] * b_at(g, n, tt + i) * x[i];
                            acc[i] += h * c_at(g, n, tt + i);
                        }
                    }
                }
            }
            workgroupBarrier();
            // 4. Carry the chunk's total into the next chunk.
            if (lid < NB && n0 + lid < p.nstate) {
                let j = lid;
#if SUBGROUPS
                // The chunk's total: all subgroup totals composed in order.
                let tot = fold_subgroup_totals(j, sg_count);
                let ta = tot.x;
                let tb = tot.y;
#else
                let ta = sa[j * WG + WG - 1u];
                let tb = sb[j * WG + WG - 1u];
#endif
                carry[n0 + j] = ta * carry[n0 + j] + tb;
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            if (valid[i]) {
                y[ix(d, tt + i)] = finish(d, tt + i, x[i], acc[i]);
            }
        }
    }
    for (var n = lid; n < p.nstate; n += WG) {
        state[(s * p.dim + d) * p.nstate + n] = carry[n];
    }
}
#endif

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
