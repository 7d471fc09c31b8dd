// Selective scan: the N = 16 paired kernel (included by selective_scan.wgsl).
#if PAIRED
// Mamba-1's fast path, register-blocked (N = 16). Like `tiled`, four consecutive lanes share a
// channel and each holds four of its states as a vec4, but every lane holds them for two
// channels (c and c + 32 of a 64-channel block), so one workgroup-memory read of B and C
// serves two channels. On the H200 `tiled` is bound by workgroup-memory bytes delivered to
// lanes (B, C, dt and dt·u: 40 bytes per lane and token for four state updates); here it is 48
// bytes for eight. Tiles are 16 tokens (11 KiB of workgroup memory, under WebGPU's 16 KiB).
// - Staging: lane (p, q) owns tokens i ≡ q (mod 4) of both its channels: it computes dt and
//   dt·u into workgroup memory as one vec2, keeps D·u and silu(z), and stores y.
// - y is reduced over the channel's four lanes with the same reduce-scatter as `tiled`.
// On the H200 this is only 2% faster than `tiled` at d = 2048 (slower at 1536 and 5120), so
// workgroup-memory bytes are not what bounds `tiled` either; a variant that took one decay in
// four off the special-function unit (a polynomial on the FMA pipe) was 8% slower still.
const PNS: u32 = 16u;
const PCH: u32 = 64u;
const PTT: u32 = 16u;
const PROW: u32 = 72u; // row stride of s_dd in vec2: the four token rows a warp stages fall in two bank halves

var<workgroup> s_dd: array<vec2<f32>, 1152>; // [PTT, PROW]: (dt, dt·u) per token and channel
var<workgroup> s_pbc: array<vec4<f32>, 128>; // [PTT, 2, 4]: B then C of each token, in quarters
var<workgroup> s_pkeep: array<f32, 16>;      // 0 before a reset token (RSTC)

var<private> pp: u32;          // channel pair within the workgroup
var<private> pa0: vec4<f32>;   // A·log2(e) of this lane's four states, channel c
var<private> pa1: vec4<f32>;   // and channel c + 32

struct PairPre { u0: vec4<f32>, u1: vec4<f32>, d0: vec4<f32>, d1: vec4<f32>, z0: vec4<f32>, z1: vec4<f32>, bc: vec4<f32> }

fn pair_load(d: u32, g: u32, lid: u32, t0: u32) -> PairPre {
    var pre: PairPre;
    let t = t0 + tq;
    pre.u0 = own_u(d, t);
    pre.u1 = own_u(d + 32u, t);
    pre.d0 = own_delta(d, t);
    pre.d1 = own_delta(d + 32u, t);
    if (flag(HAS_Z)) {
        pre.z0 = own_z(d, t);
        pre.z1 = own_z(d + 32u, t);
    }
    let e = lid; // entry of the [PTT, 2, 4] table
    let i = ((tok(t0 + e / 8u) * 2u + (e % 8u) / 4u) * p.groups + g) * PNS + (e % 4u) * 4u;
    pre.bc = vec4<f32>(ld_bc(i), ld_bc(i + 1u), ld_bc(i + 2u), ld_bc(i + 3u));
    return pre;
}

// Stages (dt, dt·u) of the four owned tokens of channel c (0 or 1 of the pair).
fn pair_stage(t0: u32, t_end: u32, c: u32, dl: vec4<f32>, u4: vec4<f32>, bias: f32) -> vec4<f32> {
    let i = tq + vec4<u32>(0u, 4u, 8u, 12u);
    var v = dl + bias;
    if (flag(SOFTPLUS)) { v = select(log(1.0 + exp(v)), v, v > vec4<f32>(20.0)); }
    v = select(vec4<f32>(0.0), v, vec4<u32>(t0) + i < vec4<u32>(t_end));
    let du = v * u4;
    let col = pp + 32u * c;
    s_dd[i.x * PROW + col] = vec2<f32>(v.x, du.x);
    s_dd[i.y * PROW + col] = vec2<f32>(v.y, du.y);
    s_dd[i.z * PROW + col] = vec2<f32>(v.z, du.z);
    s_dd[i.w * PROW + col] = vec2<f32>(v.w, du.w);
    return v;
}

fn pair_decay(x: vec4<f32>) -> vec4<f32> {
    var a = exp2(x);
#if NEGC
    a = 2.0 * a - 1.0;
#endif
    return a;
}

// One token for both channels; returns their shares of y.
fn pair_token(h0: ptr<function, vec4<f32>>, h1: ptr<function, vec4<f32>>, i: u32) -> vec2<f32> {
    let e0 = s_dd[i * PROW + pp];
    let e1 = s_dd[i * PROW + pp + 32u];
    let b = s_pbc[i * 8u + tq];
    let c = s_pbc[i * 8u + 4u + tq];
#if RSTC
    let keep = s_pkeep[i];
    *h0 *= keep;
    *h1 *= keep;
#endif
    *h0 = fma(pair_decay(e0.x * pa0), *h0, e0.y * b);
    *h1 = fma(pair_decay(e1.x * pa1), *h1, e1.y * b);
    return vec2<f32>(dot(*h0, c), dot(*h1, c));
}

// Tokens 4k..4k+3; returns y of token 4k + q of both channels, summed over the four lanes.
fn pair_group(h0: ptr<function, vec4<f32>>, h1: ptr<function, vec4<f32>>, k: u32) -> vec2<f32> {
    let p0 = pair_token(h0, h1, 4u * k);
    let p1 = pair_token(h0, h1, 4u * k + 1u);
    let p2 = pair_token(h0, h1, 4u * k + 2u);
    let p3 = pair_token(h0, h1, 4u * k + 3u);
    let hi = (tq & 2u) != 0u;
    let ka = select(p0, p2, hi) + subgroupShuffleXor(select(p2, p0, hi), 2u);
    let kb = select(p1, p3, hi) + subgroupShuffleXor(select(p3, p1, hi), 2u);
    let odd = (tq & 1u) != 0u;
    return select(ka, kb, odd) + subgroupShuffleXor(select(kb, ka, odd), 1u);
}

@compute @workgroup_size(128)
fn scan_paired(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blocks = p.dim / PCH;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * blocks) { return; } // workgroup-uniform
    let s = idx / blocks;
    tq = lid % 4u;
    pp = lid / 4u;
    let d = (idx % blocks) * PCH + pp; // and d + 32
    let g = d / (p.dim / p.groups);
    let base0 = d * (PNS + 2u);
    let base1 = (d + 32u) * (PNS + 2u);
    let q0 = base0 + 4u * tq;
    let q1 = base1 + 4u * tq;
    pa0 = vec4<f32>(chan[q0], chan[q0 + 1u], chan[q0 + 2u], chan[q0 + 3u]) * LOG2E;
    pa1 = vec4<f32>(chan[q1], chan[q1 + 1u], chan[q1 + 2u], chan[q1 + 3u]) * LOG2E;
    let bias0 = select(0.0, chan[base0 + PNS + 1u], flag(HAS_BIAS));
    let bias1 = select(0.0, chan[base1 + PNS + 1u], flag(HAS_BIAS));
    let dskip0 = select(0.0, chan[base0 + PNS], flag(HAS_D));
    let dskip1 = select(0.0, chan[base1 + PNS], flag(HAS_D));
    let sidx0 = (s * p.dim + d) * PNS + 4u * tq;
    let sidx1 = sidx0 + 32u * PNS;
    var h0 = vec4<f32>(0.0);
    var h1 = vec4<f32>(0.0);
    if (flag(INIT)) {
        h0 = vec4<f32>(state[sidx0], state[sidx0 + 1u], state[sidx0 + 2u], state[sidx0 + 3u]);
        h1 = vec4<f32>(state[sidx1], state[sidx1 + 1u], state[sidx1 + 2u], state[sidx1 + 3u]);
    }
    let t_begin = seqs[s] + min(p.win_start, seqs[s + 1u] - seqs[s]);
    let t_end = min(seqs[s + 1u], t_begin + p.win_len);
    var pre = pair_load(d, g, lid, t_begin);
    for (var t0 = t_begin; t0 < t_end; t0 += PTT) {
        pair_stage(t0, t_end, 0u, pre.d0, pre.u0, bias0);
        pair_stage(t0, t_end, 1u, pre.d1, pre.u1, bias1);
        s_pbc[lid] = pre.bc;
#if RSTC
        if (lid < PTT) { s_pkeep[lid] = select(1.0, 0.0, t0 + lid < t_end && is_reset(tok(t0 + lid))); }
#endif
        let skip0 = dskip0 * pre.u0;
        let skip1 = dskip1 * pre.u1;
        let gate0 = silu_gate(pre.z0);
        let gate1 = silu_gate(pre.z1);
        workgroupBarrier();
        pre = pair_load(d, g, lid, t0 + PTT);
        let r0 = pair_group(&h0, &h1, 0u);
        let r1 = pair_group(&h0, &h1, 1u);
        let r2 = pair_group(&h0, &h1, 2u);
        let r3 = pair_group(&h0, &h1, 3u);
        store4(d, t0, t_end, 0u, (vec4<f32>(r0.x, r1.x, r2.x, r3.x) + skip0) * gate0);
        store4(d + 32u, t0, t_end, 0u, (vec4<f32>(r0.y, r1.y, r2.y, r3.y) + skip1) * gate1);
        workgroupBarrier();
    }
    store_state4(sidx0, h0);
    store_state4(sidx1, h1);
}
#endif
