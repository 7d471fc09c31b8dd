// Selective scan: the N = 16 fast paths: tiled (4 lanes × vec4 per channel) and solo (one invocation per channel) (included by selective_scan.wgsl).
#if TILES
// Helpers of the tiled and paired kernels (both define TILES).
const LOG2E: f32 = 1.4426950408889634;

// Lane within the channel (four per channel): state quarter and token owner class.
var<private> tq: u32;

// Stores four owned outputs of channel d (tile rows tq + 16·half + 4k).
fn store4(d: u32, t0: u32, t_end: u32, half: u32, out: vec4<f32>) {
    let t = t0 + tq + 16u * half;
    if (t < t_end) { y[ix(d, t)] = out.x; }
    if (t + 4u < t_end) { y[ix(d, t + 4u)] = out.y; }
    if (t + 8u < t_end) { y[ix(d, t + 8u)] = out.z; }
    if (t + 12u < t_end) { y[ix(d, t + 12u)] = out.w; }
}

// Stores this lane's four final states at sidx.
fn store_state4(sidx: u32, h: vec4<f32>) {
    state[sidx] = h.x;
    state[sidx + 1u] = h.y;
    state[sidx + 2u] = h.z;
    state[sidx + 3u] = h.w;
}

// silu(z) when there is a gate, else 1.
fn silu_gate(z: vec4<f32>) -> vec4<f32> {
    if (flag(HAS_Z)) { return z / (1.0 + exp(-z)); }
    return vec4<f32>(1.0);
}

// Token-major elements of channel d at tokens t, t+4, t+8, t+12.
fn own_u(d: u32, t: u32) -> vec4<f32> {
    return vec4<f32>(ld_u(ix(d, tok(t))), ld_u(ix(d, tok(t + 4u))), ld_u(ix(d, tok(t + 8u))), ld_u(ix(d, tok(t + 12u))));
}
fn own_delta(d: u32, t: u32) -> vec4<f32> {
    return vec4<f32>(ld_delta(ix(d, tok(t))), ld_delta(ix(d, tok(t + 4u))), ld_delta(ix(d, tok(t + 8u))), ld_delta(ix(d, tok(t + 12u))));
}
fn own_z(d: u32, t: u32) -> vec4<f32> {
    return vec4<f32>(ld_z(ix(d, tok(t))), ld_z(ix(d, tok(t + 4u))), ld_z(ix(d, tok(t + 8u))), ld_z(ix(d, tok(t + 12u))));
}

#endif

#if TILED
// Mamba-1's fast path (N = 16). Four consecutive lanes share a channel, each holding four of
// its states as a vec4; a workgroup takes 32 consecutive channels of one sequence (all in one
// group) and walks the tokens in tiles of 32 (12 KiB of workgroup memory, under WebGPU's
// default 16 KiB).
// - Staging: each lane owns the tile's tokens i ≡ lane (mod 4). For them it computes
//   dt = softplus(delta + bias) and dt·u into workgroup memory, and keeps D·u and silu(z) for
//   the output, so the per-token transcendentals run once per channel, not once per lane. The
//   workgroup stages the tile's B and C there as well.
// - The next tile's global loads are issued before the current tile is computed.
// - y is reduced over the four lanes with a reduce-scatter (three shuffles per four tokens)
//   that leaves token i's sum on its owner, which finishes and stores it.
// Tokens past the end get dt = 0, which leaves the state unchanged (decay 1, no input).
// The inner loop is straight-line code over a tile (resets and the negative-eigenvalue map are
// compile-time switches), so the compiler can overlap consecutive tokens. On the H200 this
// kernel is bound by workgroup-memory reads (B, C, dt and dt·u per lane and token), not by exp:
// BENCHMARKS.md has the probes.
const NS: u32 = 16u;
const CH: u32 = 32u;
const TT: u32 = 32u;
const TWG: u32 = 128u;

var<workgroup> s_dt: array<f32, 1024>; // [TT, CH]
var<workgroup> s_du: array<f32, 1024>; // [TT, CH]
var<workgroup> s_bc: array<vec4<f32>, 256>; // [TT, 2, 4]: B then C of each token, in quarters
var<workgroup> s_keep: array<f32, 32>; // 0 before a reset token (RSTC)

// Per-invocation constants.
var<private> tc: u32; // channel within the workgroup
var<private> ta2: vec4<f32>; // A·log2(e) of this lane's four states

// Global loads of one tile, issued a tile ahead.
struct TilePre { u0: vec4<f32>, u1: vec4<f32>, d0: vec4<f32>, d1: vec4<f32>, z0: vec4<f32>, z1: vec4<f32>, bc0: vec4<f32>, bc1: vec4<f32> }

// Entry e of the tile's [TT, 2, 4] quarter table of B and C (group g).
fn bc_quarter(g: u32, t0: u32, e: u32) -> vec4<f32> {
    let half = (e % 8u) / 4u;
    let i = ((tok(t0 + e / 8u) * 2u + half) * p.groups + g) * NS + (e % 4u) * 4u;
    return vec4<f32>(ld_bc(i), ld_bc(i + 1u), ld_bc(i + 2u), ld_bc(i + 3u));
}

fn tile_load(d: u32, g: u32, lid: u32, t0: u32) -> TilePre {
    var pre: TilePre;
    let t = t0 + tq;
    pre.u0 = own_u(d, t);
    pre.u1 = own_u(d, t + 16u);
    pre.d0 = own_delta(d, t);
    pre.d1 = own_delta(d, t + 16u);
    if (flag(HAS_Z)) {
        pre.z0 = own_z(d, t);
        pre.z1 = own_z(d, t + 16u);
    }
    pre.bc0 = bc_quarter(g, t0, lid);
    pre.bc1 = bc_quarter(g, t0, lid + TWG);
    return pre;
}

// Stages dt and dt·u of four owned tokens (tile rows tq + 16·half + 4k) into workgroup memory.
fn stage4(t0: u32, t_end: u32, half: u32, dl: vec4<f32>, u4: vec4<f32>, bias: f32) {
    let i = tq + 16u * half + vec4<u32>(0u, 4u, 8u, 12u);
    var v = dl + bias;
    if (flag(SOFTPLUS)) { v = select(log(1.0 + exp(v)), v, v > vec4<f32>(20.0)); }
    v = select(vec4<f32>(0.0), v, vec4<u32>(t0) + i < vec4<u32>(t_end));
    let du = v * u4;
    s_dt[i.x * CH + tc] = v.x;
    s_dt[i.y * CH + tc] = v.y;
    s_dt[i.z * CH + tc] = v.z;
    s_dt[i.w * CH + tc] = v.w;
    s_du[i.x * CH + tc] = du.x;
    s_du[i.y * CH + tc] = du.y;
    s_du[i.z * CH + tc] = du.z;
    s_du[i.w * CH + tc] = du.w;
}

// One token of this lane's four states; returns their share of y.
fn tiled_token(h: ptr<function, vec4<f32>>, i: u32) -> f32 {
    let dt = s_dt[i * CH + tc];
    let du = s_du[i * CH + tc];
    let b = s_bc[i * 8u + tq];
    let c = s_bc[i * 8u + 4u + tq];
#if RSTC
    *h *= s_keep[i]; // branch-free: a branch per token would stop the compiler overlapping tokens
#endif
    let x = dt * ta2;
    var a = exp2(x);
#if NEGC
    a = 2.0 * a - 1.0;
#endif
    *h = fma(a, *h, du * b);
    return dot(*h, c);
}

// Tokens 4k..4k+3; returns y of token 4k + tq summed over the channel's four lanes.
fn tiled_group(h: ptr<function, vec4<f32>>, k: u32) -> f32 {
    let p0 = tiled_token(h, 4u * k);
    let p1 = tiled_token(h, 4u * k + 1u);
    let p2 = tiled_token(h, 4u * k + 2u);
    let p3 = tiled_token(h, 4u * k + 3u);
    // Lanes q and q^2 swap halves (tokens 0,1 ↔ 2,3), then q and q^1 swap the remaining pair.
    let hi = (tq & 2u) != 0u;
    let ka = select(p0, p2, hi) + subgroupShuffleXor(select(p2, p0, hi), 2u);
    let kb = select(p1, p3, hi) + subgroupShuffleXor(select(p3, p1, hi), 2u);
    let odd = (tq & 1u) != 0u;
    return select(ka, kb, odd) + subgroupShuffleXor(select(kb, ka, odd), 1u);
}

@compute @workgroup_size(128)
fn scan_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blocks = p.dim / CH;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * blocks) { return; } // workgroup-uniform
    let s = idx / blocks;
    tq = lid % 4u;
    tc = lid / 4u;
    let d = (idx % blocks) * CH + tc;
    let g = d / (p.dim / p.groups);
    let base = d * (NS + 2u);
    let q4 = base + 4u * tq;
    ta2 = vec4<f32>(chan[q4], chan[q4 + 1u], chan[q4 + 2u], chan[q4 + 3u]) * LOG2E;
    let bias = select(0.0, chan[base + NS + 1u], flag(HAS_BIAS));
    let dskip = select(0.0, chan[base + NS], flag(HAS_D));
    let sidx = (s * p.dim + d) * NS + 4u * tq;
    var h = vec4<f32>(0.0);
    if (flag(INIT)) { h = vec4<f32>(state[sidx], state[sidx + 1u], state[sidx + 2u], state[sidx + 3u]); }
    let t_begin = seqs[s] + min(p.win_start, seqs[s + 1u] - seqs[s]);
    let t_end = min(seqs[s + 1u], t_begin + p.win_len);
    var pre = tile_load(d, g, lid, t_begin);
    for (var t0 = t_begin; t0 < t_end; t0 += TT) {
        // Stage this tile.
        stage4(t0, t_end, 0u, pre.d0, pre.u0, bias);
        stage4(t0, t_end, 1u, pre.d1, pre.u1, bias);
        s_bc[lid] = pre.bc0;
        s_bc[lid + TWG] = pre.bc1;
#if RSTC
        if (lid < TT) { s_keep[lid] = select(1.0, 0.0, t0 + lid < t_end && is_reset(tok(t0 + lid))); }
#endif
        let skip0 = dskip * pre.u0;
        let skip1 = dskip * pre.u1;
        let gate0 = silu_gate(pre.z0);
        let gate1 = silu_gate(pre.z1);
        workgroupBarrier();
        // Issue the next tile's loads, then compute this one.
        pre = tile_load(d, g, lid, t0 + TT);
        let y0 = vec4<f32>(tiled_group(&h, 0u), tiled_group(&h, 1u), tiled_group(&h, 2u), tiled_group(&h, 3u));
        let y1 = vec4<f32>(tiled_group(&h, 4u), tiled_group(&h, 5u), tiled_group(&h, 6u), tiled_group(&h, 7u));
        store4(d, t0, t_end, 0u, (y0 + skip0) * gate0);
        store4(d, t0, t_end, 1u, (y1 + skip1) * gate1);
        workgroupBarrier();
    }
    store_state4(sidx, h);
}
#endif

#if SOLO
// One invocation holds all 16 states of its channel (no reduction across lanes), a workgroup
// takes 64 consecutive channels of one sequence (one group) and walks the tokens in tiles of
// 16. B and C of a tile are staged in workgroup memory, where all invocations read the same
// address (a broadcast); dt, dt·u, D·u and silu(z) are computed by the channel's own
// invocation; the next tile's loads are issued before the current tile is computed.
// Compared with `tiled` (four lanes per channel) this reads four times fewer bytes of
// workgroup memory per state update, but runs a quarter as many invocations.
const SOLO_TT: u32 = 16u;
var<workgroup> s_bc16: array<vec4<f32>, 128>; // [TT, 2, 4]: B then C of each token, in quarters
var<workgroup> s_keep16: array<f32, 16>;     // 0 before a reset token (RSTC)
var<private> sa2: array<vec4<f32>, 4>;       // A·log2(e), states 4k..4k+3 in sa2[k]

fn solo_a2(i: u32) -> vec4<f32> {
    return vec4<f32>(chan[i], chan[i + 1u], chan[i + 2u], chan[i + 3u]) * 1.4426950408889634;
}

struct Solo { h0: vec4<f32>, h1: vec4<f32>, h2: vec4<f32>, h3: vec4<f32> }
struct SoloPre { u: mat4x4<f32>, dl: mat4x4<f32>, z: mat4x4<f32>, bc0: vec4<f32>, bc1: vec4<f32> }

// Tokens t..t+3 of channel d.
fn solo4(d: u32, t: u32, which: u32) -> vec4<f32> {
    let i = vec4<u32>(ix(d, tok(t)), ix(d, tok(t + 1u)), ix(d, tok(t + 2u)), ix(d, tok(t + 3u)));
    if (which == 0u) { return vec4<f32>(ld_u(i.x), ld_u(i.y), ld_u(i.z), ld_u(i.w)); }
    if (which == 1u) { return vec4<f32>(ld_delta(i.x), ld_delta(i.y), ld_delta(i.z), ld_delta(i.w)); }
    return vec4<f32>(ld_z(i.x), ld_z(i.y), ld_z(i.z), ld_z(i.w));
}

// Entry e of the tile's [TT, 2, 4] quarter table of B and C (group g).
fn solo_bc(g: u32, t0: u32, e: u32) -> vec4<f32> {
    let half = (e % 8u) / 4u;
    let i = ((tok(t0 + e / 8u) * 2u + half) * p.groups + g) * 16u + (e % 4u) * 4u;
    return vec4<f32>(ld_bc(i), ld_bc(i + 1u), ld_bc(i + 2u), ld_bc(i + 3u));
}

fn solo_load(d: u32, g: u32, lid: u32, t0: u32) -> SoloPre {
    var pre: SoloPre;
    pre.u = mat4x4<f32>(solo4(d, t0, 0u), solo4(d, t0 + 4u, 0u), solo4(d, t0 + 8u, 0u), solo4(d, t0 + 12u, 0u));
    pre.dl = mat4x4<f32>(solo4(d, t0, 1u), solo4(d, t0 + 4u, 1u), solo4(d, t0 + 8u, 1u), solo4(d, t0 + 12u, 1u));
    if (flag(HAS_Z)) {
        pre.z = mat4x4<f32>(solo4(d, t0, 2u), solo4(d, t0 + 4u, 2u), solo4(d, t0 + 8u, 2u), solo4(d, t0 + 12u, 2u));
    }
    pre.bc0 = solo_bc(g, t0, lid);
    pre.bc1 = solo_bc(g, t0, lid + 64u);
    return pre;
}

fn solo_decay(x: vec4<f32>) -> vec4<f32> {
    var a = exp2(x);
#if NEGC
    a = 2.0 * a - 1.0;
#endif
    return a;
}

// Quarter e of the tile's B/C table.
fn solo_q(e: u32) -> vec4<f32> { return s_bc16[e]; }

// One token: all 16 states; returns Σₙ h·C.
fn solo_token(h: ptr<function, Solo>, j: u32, dt: f32, du: f32) -> f32 {
#if RSTC
    let keep = s_keep16[j];
    (*h).h0 *= keep;
    (*h).h1 *= keep;
    (*h).h2 *= keep;
    (*h).h3 *= keep;
#endif
    let b = j * 8u;
    (*h).h0 = fma(solo_decay(dt * sa2[0]), (*h).h0, du * solo_q(b));
    (*h).h1 = fma(solo_decay(dt * sa2[1]), (*h).h1, du * solo_q(b + 1u));
    (*h).h2 = fma(solo_decay(dt * sa2[2]), (*h).h2, du * solo_q(b + 2u));
    (*h).h3 = fma(solo_decay(dt * sa2[3]), (*h).h3, du * solo_q(b + 3u));
    return dot((*h).h0, solo_q(b + 4u)) + dot((*h).h1, solo_q(b + 5u)) + dot((*h).h2, solo_q(b + 6u))
        + dot((*h).h3, solo_q(b + 7u));
}

fn solo_quad(h: ptr<function, Solo>, m: u32, dt: vec4<f32>, du: vec4<f32>) -> vec4<f32> {
    let j = 4u * m;
    let y0 = solo_token(h, j, dt.x, du.x);
    let y1 = solo_token(h, j + 1u, dt.y, du.y);
    let y2 = solo_token(h, j + 2u, dt.z, du.z);
    let y3 = solo_token(h, j + 3u, dt.w, du.w);
    return vec4<f32>(y0, y1, y2, y3);
}

// dt for tokens t..t+3 (0 past the end: the state stays as it is).
fn solo_dt(dl: vec4<f32>, bias: f32, t: u32, t_end: u32) -> vec4<f32> {
    var v = dl + bias;
    if (flag(SOFTPLUS)) { v = select(log(1.0 + exp(v)), v, v > vec4<f32>(20.0)); }
    return select(vec4<f32>(0.0), v, vec4<u32>(t) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(t_end));
}

fn solo_store(d: u32, t: u32, t_end: u32, out: vec4<f32>) {
    if (t < t_end) { y[ix(d, t)] = out.x; }
    if (t + 1u < t_end) { y[ix(d, t + 1u)] = out.y; }
    if (t + 2u < t_end) { y[ix(d, t + 2u)] = out.z; }
    if (t + 3u < t_end) { y[ix(d, t + 3u)] = out.w; }
}

// Tokens t0 + 4m .. t0 + 4m + 3: scan, finish and store.
fn solo_part(h: ptr<function, Solo>, d: u32, t0: u32, t_end: u32, m: u32, dl: vec4<f32>, u4: vec4<f32>, z4: vec4<f32>, bias: f32, dskip: f32) {
    let t = t0 + 4u * m;
    let dt = solo_dt(dl, bias, t, t_end);
    var out = solo_quad(h, m, dt, dt * u4) + dskip * u4;
    if (flag(HAS_Z)) { out *= z4 / (1.0 + exp(-z4)); }
    solo_store(d, t, t_end, out);
}

@compute @workgroup_size(64)
fn scan_solo(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blocks = p.dim / 64u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * blocks) { return; } // workgroup-uniform
    let s = idx / blocks;
    let d = (idx % blocks) * 64u + lid;
    let g = d / (p.dim / p.groups);
    let base = d * 18u;
    sa2[0] = solo_a2(base);
    sa2[1] = solo_a2(base + 4u);
    sa2[2] = solo_a2(base + 8u);
    sa2[3] = solo_a2(base + 12u);
    let bias = select(0.0, chan[base + 17u], flag(HAS_BIAS));
    let dskip = select(0.0, chan[base + 16u], flag(HAS_D));
    let sidx = (s * p.dim + d) * 16u;
    var h: Solo;
    if (flag(INIT)) {
        h.h0 = vec4<f32>(state[sidx], state[sidx + 1u], state[sidx + 2u], state[sidx + 3u]);
        h.h1 = vec4<f32>(state[sidx + 4u], state[sidx + 5u], state[sidx + 6u], state[sidx + 7u]);
        h.h2 = vec4<f32>(state[sidx + 8u], state[sidx + 9u], state[sidx + 10u], state[sidx + 11u]);
        h.h3 = vec4<f32>(state[sidx + 12u], state[sidx + 13u], state[sidx + 14u], state[sidx + 15u]);
    }
    let t_begin = seqs[s] + min(p.win_start, seqs[s + 1u] - seqs[s]);
    let t_end = min(seqs[s + 1u], t_begin + p.win_len);
    var pre = solo_load(d, g, lid, t_begin);
    for (var t0 = t_begin; t0 < t_end; t0 += SOLO_TT) {
        s_bc16[lid] = pre.bc0;
        s_bc16[lid + 64u] = pre.bc1;
#if RSTC
        if (lid < SOLO_TT) { s_keep16[lid] = select(1.0, 0.0, t0 + lid < t_end && is_reset(tok(t0 + lid))); }
#endif
        let cur = pre;
        workgroupBarrier();
        pre = solo_load(d, g, lid, t0 + SOLO_TT);
        // Four explicit quads: a loop counter indexing `cur` would push it to local memory.
        solo_part(&h, d, t0, t_end, 0u, cur.dl[0], cur.u[0], cur.z[0], bias, dskip);
        solo_part(&h, d, t0, t_end, 1u, cur.dl[1], cur.u[1], cur.z[1], bias, dskip);
        solo_part(&h, d, t0, t_end, 2u, cur.dl[2], cur.u[2], cur.z[2], bias, dskip);
        solo_part(&h, d, t0, t_end, 3u, cur.dl[3], cur.u[3], cur.z[3], bias, dskip);
        workgroupBarrier();
    }
    state[sidx] = h.h0.x;
    state[sidx + 1u] = h.h0.y;
    state[sidx + 2u] = h.h0.z;
    state[sidx + 3u] = h.h0.w;
    state[sidx + 4u] = h.h1.x;
    state[sidx + 5u] = h.h1.y;
    state[sidx + 6u] = h.h1.z;
    state[sidx + 7u] = h.h1.w;
    state[sidx + 8u] = h.h2.x;
    state[sidx + 9u] = h.h2.y;
    state[sidx + 10u] = h.h2.z;
    state[sidx + 11u] = h.h2.w;
    state[sidx + 12u] = h.h3.x;
    state[sidx + 13u] = h.h3.y;
    state[sidx + 14u] = h.h3.z;
    state[sidx + 15u] = h.h3.w;
}
#endif
