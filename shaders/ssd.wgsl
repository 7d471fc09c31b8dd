// Mamba-2's state-space dual (SSD) scan, token-major packed layout:
//   xbc   : [T, W]  per token x (H·P, head-major), then B (G·N), then C (G·N): the layout of
//                   Mamba-2's conv output, read in place (W = H·P + 2·G·N)
//   dt    : [T, H]  raw step sizes; dt = clamp(softplus(dt + dt_bias), dt_min, dt_max)
//   heads : [H, 4]  A (negative), D, dt_bias, unused
//   y     : [T, H·P] f32, y = C·h + D·x
//   state : [S, H, P, N] f32
// Head h reads group h / (H / G). Recurrence: h_t = exp(dt·A)·h_{t−1} + dt·x_t ⊗ B_t.
// xbc and dt are f32, or f16 packed two per u32 word (F16IN); states and sums are f32.
struct Params {
    total: u32, heads: u32, hdim: u32, groups: u32,
    nstate: u32, nseq: u32, flags: u32, width: u32,
    dt_min: f32, dt_max: f32, win_start: u32, win_len: u32,
    nchunks: u32, chunk: u32, col0: u32, dt_col: u32,
    z_col: u32, seq_chunks: u32, pad1: u32, pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

const SOFTPLUS: u32 = 1u;
const HAS_BIAS: u32 = 2u;
const HAS_D: u32 = 4u;
const INIT: u32 = 8u;
const RESET: u32 = 16u;
// Decode step on a fused in_proj row [z | xBC | dt] (`xbc` bound to the whole row, x at col0):
// dt comes from column dt_col of the row, and y is gated by silu(z) from column z_col.
const ROW_IO: u32 = 32u;

// Chunk table entries (u32 × 4 per chunk): first token, length, sequence, flags; then the
// per-sequence chunk offsets [S + 1].
const FRESH: u32 = 1u; // the state before this chunk is zero (reset, or a sequence start without INIT)
const FIRST: u32 = 2u; // first chunk of its sequence

fn flag(f: u32) -> bool { return (p.flags & f) != 0u; }
fn ld(w: u32, i: u32) -> f32 { return unpack2x16float(w)[i & 1u]; }

fn group_of(h: u32) -> u32 { return h / (p.heads / p.groups); }
// col0: where x starts within a row (0, or the xBC band of a decode step's fused in_proj row).
fn x_ix(t: u32, h: u32, i: u32) -> u32 { return t * p.width + p.col0 + h * p.hdim + i; }
fn b_ix(t: u32, g: u32, n: u32) -> u32 { return t * p.width + p.col0 + p.heads * p.hdim + g * p.nstate + n; }
fn c_ix(t: u32, g: u32, n: u32) -> u32 { return b_ix(t, g, n) + p.groups * p.nstate; }

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

// Decode step (one token per sequence; `seqs` from Sequences::decode). A workgroup takes 64
// channels of one (sequence, head) with 4 invocations per channel; invocation (i, q) updates
// states n ≡ q (mod 4) of channel i in place, so the state is streamed once with no private
// array, and the channel's y is the sum of the four partials in workgroup memory.
var<workgroup> ypart: array<f32, 256>;

@compute @workgroup_size(256)
fn ssd_decode(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blocks = (p.hdim + 63u) / 64u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.heads * blocks) { return; } // workgroup-uniform
    let s = idx / (p.heads * blocks);
    let h = (idx / blocks) % p.heads;
    let i = (idx % blocks) * 64u + lid / 4u;
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
    ypart[lid] = acc;
    workgroupBarrier();
    if (live && q == 0u) {
        var yv = ypart[lid] + ypart[lid + 1u] + ypart[lid + 2u] + ypart[lid + 3u] + d_h * xv;
        if (flag(ROW_IO)) {
            let z = ld_x(t * p.width + p.z_col + h * p.hdim + i);
            yv *= z / (1.0 + exp(-z));
        }
        y[t * p.heads * p.hdim + h * p.hdim + i] = yv;
    }
}
#endif

#if CUMSUM
// Step 1: per (chunk, head), dt after bias/softplus/clamp and the running sum of dt·A from the
// chunk's start (inclusive).
@group(0) @binding(1) var<storage, {{ACT}}> dt: array<{{IN}}>;
@group(0) @binding(2) var<storage, read> heads: array<f32>;
@group(0) @binding(3) var<storage, read> chunks: array<u32>;
@group(0) @binding(4) var<storage, read_write> dts: array<f32>;
@group(0) @binding(5) var<storage, read_write> cs: array<f32>;

#if F16IN
fn ld_dt(i: u32) -> f32 { return ld(dt[i >> 1u], i); }
#else
fn ld_dt(i: u32) -> f32 { return dt[i]; }
#endif

@compute @workgroup_size(64)
fn ssd_cumsum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.nchunks * p.heads) { return; }
    let c = idx / p.heads;
    let h = idx % p.heads;
    let t0 = chunks[c * 4u];
    let len = chunks[c * 4u + 1u];
    let a_h = heads[h * 4u];
    let bias = select(0.0, heads[h * 4u + 2u], flag(HAS_BIAS));
    var acc = 0.0;
    for (var k = 0u; k < len; k++) {
        let t = t0 + k;
        var v = ld_dt(t * p.heads + h) + bias;
        if (flag(SOFTPLUS) && v <= 20.0) { v = log(1.0 + exp(v)); }
        v = clamp(v, p.dt_min, p.dt_max);
        acc += v * a_h;
        dts[t * p.heads + h] = v;
        cs[t * p.heads + h] = acc;
    }
}
#endif

#if CHUNK_STATE
// Step 2: per (chunk, head), the chunk's own contribution to the state at its end,
// S_c[i, n] = Σ_t exp(cs_last − cs_t)·dt_t·x_t[i]·B_t[n], as a 64 × 64 output tile per
// workgroup (16 × 16 invocations, 4 × 4 each) with tokens staged 16 at a time.
@group(0) @binding(1) var<storage, {{ACT}}> xbc: array<{{IN}}>;
@group(0) @binding(2) var<storage, read> dts: array<f32>;
@group(0) @binding(3) var<storage, read> cs: array<f32>;
@group(0) @binding(4) var<storage, read> chunks: array<u32>;
@group(0) @binding(5) var<storage, read_write> cstates: array<f32>;

#if F16N
fn ld_x(i: u32) -> f32 { return f32(xbc[i]); } // native f16 (SHADER_F16)
#else
#if F16IN
fn ld_x(i: u32) -> f32 { return ld(xbc[i >> 1u], i); }
#else
fn ld_x(i: u32) -> f32 { return xbc[i]; }
#endif
#endif

var<workgroup> xs: array<array<vec4<f32>, 16>, 16>; // [token][i / 4]
var<workgroup> bs: array<array<vec4<f32>, 16>, 16>; // [token][n / 4], weighted

@compute @workgroup_size(16, 16)
fn ssd_chunk_state(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    // wid.x: tile over (i, n); wid.y: head; wid.z: chunk.
    let tiles_n = (p.nstate + 63u) / 64u;
    let i0 = (wid.x / tiles_n) * 64u;
    let n0 = (wid.x % tiles_n) * 64u;
    let h = wid.y;
    let c = wid.z;
    let g = group_of(h);
    let t0 = chunks[c * 4u];
    let len = chunks[c * 4u + 1u];
    let cs_last = cs[(t0 + len - 1u) * p.heads + h];
    // Register tile: rows i = 4·lid.y + (0..3) in acc0..acc3, columns n = 4·lid.x + (0..3) as
    // vec4 lanes (explicit vectors: arrays indexed by loop counters can end up in local memory).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Staging: invocation (k = lid.y, quad = lid.x) loads 4 consecutive x and 4 weighted B.
    // (Prefetching the next 16 tokens into registers before the multiply was 4–9% slower on
    // the H200.)
    let k = lid.y;
    let j = lid.x * 4u;
    for (var k0 = 0u; k0 < len; k0 += 16u) {
        var xv = vec4<f32>(0.0);
        var bv = vec4<f32>(0.0);
        if (k0 + k < len) {
            let t = t0 + k0 + k;
            let w = exp(cs_last - cs[t * p.heads + h]) * dts[t * p.heads + h];
            for (var q = 0u; q < 4u; q++) {
                if (i0 + j + q < p.hdim) { xv[q] = ld_x(x_ix(t, h, i0 + j + q)); }
                if (n0 + j + q < p.nstate) { bv[q] = w * ld_x(b_ix(t, g, n0 + j + q)); }
            }
        }
        xs[k][lid.x] = xv;
        bs[k][lid.x] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let xr = xs[kk][lid.y];
            let br = bs[kk][lid.x];
            acc0 = fma(vec4<f32>(xr.x), br, acc0);
            acc1 = fma(vec4<f32>(xr.y), br, acc1);
            acc2 = fma(vec4<f32>(xr.z), br, acc2);
            acc3 = fma(vec4<f32>(xr.w), br, acc3);
        }
        workgroupBarrier();
    }
    let out = (c * p.heads + h) * p.hdim;
    store_row(out, i0 + lid.y * 4u, n0 + lid.x * 4u, acc0);
    store_row(out, i0 + lid.y * 4u + 1u, n0 + lid.x * 4u, acc1);
    store_row(out, i0 + lid.y * 4u + 2u, n0 + lid.x * 4u, acc2);
    store_row(out, i0 + lid.y * 4u + 3u, n0 + lid.x * 4u, acc3);
}

fn store_row(out: u32, i: u32, n: u32, v: vec4<f32>) {
    if (i >= p.hdim) { return; }
    for (var q = 0u; q < 4u; q++) {
        if (n + q < p.nstate) { cstates[(out + i) * p.nstate + n + q] = v[q]; }
    }
}
#endif

#if STATE_PASSING
// Step 3: per (sequence, head, i, n), walk the sequence's chunks in order: replace each
// chunk's own state with the state entering it, and carry exp(cs_last)·carry + S_c on.
// Chunks go four at a time with their loads issued before any store (the loads do not depend
// on the carry): one chunk at a time, each iteration waited a full memory latency.
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<storage, read> chunks: array<u32>;
@group(0) @binding(3) var<storage, read_write> cstates: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

@compute @workgroup_size(64)
fn ssd_state_passing(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let per_seq = p.heads * p.hdim * p.nstate;
    if (idx >= p.nseq * per_seq) { return; }
    let s = idx / per_seq;
    let r = idx % per_seq; // (h, i, n)
    let h = r / (p.hdim * p.nstate);
    var carry = select(0.0, state[idx], flag(INIT));
    let offs = p.nchunks * 4u;
    var c = chunks[offs + s];
    let end = chunks[offs + s + 1u];
    for (; c + 4u <= end; c += 4u) {
        let o = vec4<f32>(cstates[c * per_seq + r], cstates[(c + 1u) * per_seq + r],
                          cstates[(c + 2u) * per_seq + r], cstates[(c + 3u) * per_seq + r]);
        let a = vec4<f32>(chunk_decay(c, h), chunk_decay(c + 1u, h), chunk_decay(c + 2u, h), chunk_decay(c + 3u, h));
        for (var q = 0u; q < 4u; q++) {
            if ((chunks[(c + q) * 4u + 3u] & FRESH) != 0u) { carry = 0.0; }
            cstates[(c + q) * per_seq + r] = carry;
            carry = a[q] * carry + o[q];
        }
    }
    for (; c < end; c++) {
        if ((chunks[c * 4u + 3u] & FRESH) != 0u) { carry = 0.0; }
        let own = cstates[c * per_seq + r];
        cstates[c * per_seq + r] = carry;
        carry = chunk_decay(c, h) * carry + own;
    }
    state[idx] = carry;
}

// exp(Σ dt·A) over chunk c of head h: the decay of a state across the whole chunk.
fn chunk_decay(c: u32, h: u32) -> f32 {
    let t_last = chunks[c * 4u] + chunks[c * 4u + 1u] - 1u;
    return exp(cs[t_last * p.heads + h]);
}
#endif

#if CHUNK_SCAN
// Steps 4–5: outputs of a 64-token row tile × 64 channels of one (chunk, head):
//   y_t = exp(cs_t)·(C_t · h_in) + Σ_{j ≤ t} (C_t · B_j)·exp(cs_t − cs_j)·dt_j·x_j + D·x_t.
// The causal mask is applied before the exp, so exp only ever sees cs_t − cs_j ≤ 0 for j ≤ t.
// 256 invocations (16 × 16); invocation (tx, ty) owns rows 4·ty … 4·ty + 3 and channels (for
// C·Bᵀ: column tokens) 4·tx … 4·tx + 3, a 4 × 4 register tile, so each k step reads two vec4
// from workgroup memory for 16 FMAs. Operands are staged k-major, which makes those reads
// vec4. The state size goes 16 at a time; C·h_in rides along the first column block's C·Bᵀ
// (same staged C); M·X goes 32 column tokens at a time (28 KB of workgroup memory in all).
@group(0) @binding(1) var<storage, {{ACT}}> xbc: array<{{IN}}>;
@group(0) @binding(2) var<storage, read> dts: array<f32>;
@group(0) @binding(3) var<storage, read> cs: array<f32>;
@group(0) @binding(4) var<storage, read> chunks: array<u32>;
@group(0) @binding(5) var<storage, read> cstates: array<f32>;
@group(0) @binding(6) var<storage, read> heads: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

#if F16N
fn ld_x(i: u32) -> f32 { return f32(xbc[i]); } // native f16 (SHADER_F16)
#else
#if F16IN
fn ld_x(i: u32) -> f32 { return ld(xbc[i >> 1u], i); }
#else
fn ld_x(i: u32) -> f32 { return xbc[i]; }
#endif
#endif

var<workgroup> cs_row: array<f32, 64>;
var<workgroup> cs_col: array<f32, 64>;
var<workgroup> dt_col: array<f32, 64>;
var<workgroup> ct: array<vec4<f32>, 256>; // C slice [n][row / 4]
var<workgroup> bt: array<vec4<f32>, 256>; // B slice [n][column token / 4]
var<workgroup> ht: array<vec4<f32>, 256>; // h_in slice [n][channel / 4]
var<workgroup> mt: array<vec4<f32>, 512>; // M half [column token][row / 4]
var<workgroup> xt: array<vec4<f32>, 512>; // x half [column token][channel / 4]

// Four consecutive inputs from element i, the first `valid` of them real.
fn ld4(i: u32, valid: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if (q < valid) { v[q] = ld_x(i + q); }
    }
    return v;
}

fn valid4(col: u32, limit: u32) -> u32 { return select(min(limit - col, 4u), 0u, col >= limit); }

// Stages states n0 … n0 + 15 of C (rows r0 …), B (column tokens j0 …) and, with `with_h`,
// h_in (channels i0 …); each invocation moves four consecutive states of one row.
fn stage_slices(t0: u32, len: u32, g: u32, r0: u32, j0: u32, n0: u32, i0: u32, st_base: u32, flat: u32, with_h: bool) {
    let r = flat / 4u;
    let nq = (flat % 4u) * 4u;
    let vn = valid4(n0 + nq, p.nstate);
    let cv = ld4(c_ix(t0 + min(r0 + r, len - 1u), g, n0 + nq), select(0u, vn, r0 + r < len));
    let bv = ld4(b_ix(t0 + min(j0 + r, len - 1u), g, n0 + nq), select(0u, vn, j0 + r < len));
    var hv = vec4<f32>(0.0);
    if (with_h && i0 + r < p.hdim) {
        for (var q = 0u; q < 4u; q++) {
            if (q < vn) { hv[q] = cstates[st_base + (i0 + r) * p.nstate + n0 + nq + q]; }
        }
    }
    for (var q = 0u; q < 4u; q++) {
        ct[(nq + q) * 16u + r / 4u][r % 4u] = cv[q];
        bt[(nq + q) * 16u + r / 4u][r % 4u] = bv[q];
        if (with_h) { ht[(nq + q) * 16u + r / 4u][r % 4u] = hv[q]; }
    }
}

// One row of M for this invocation's four column tokens: C·Bᵀ masked, decayed and times dt.
fn mask_row(s: vec4<f32>, row: u32, jl: u32, j0: u32, r0: u32, len: u32) -> vec4<f32> {
    var m = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        let j = jl + q;
        if (j0 + j <= r0 + row && j0 + j < len && r0 + row < len) {
            m[q] = s[q] * exp(cs_row[row] - cs_col[j]) * dt_col[j];
        }
    }
    return m;
}

@compute @workgroup_size(16, 16)
fn ssd_chunk_scan(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    // wid.x: (row tile, channel tile); wid.y: head; wid.z: chunk.
    let tiles_i = (p.hdim + 63u) / 64u;
    let r0 = (wid.x / tiles_i) * 64u; // first row of this tile, within the chunk
    let i0 = (wid.x % tiles_i) * 64u;
    let h = wid.y;
    let c = wid.z;
    let g = group_of(h);
    let t0 = chunks[c * 4u];
    let len = chunks[c * 4u + 1u];
    if (r0 >= len) { return; } // workgroup-uniform
    let tx = lid.x;
    let ty = lid.y;
    let flat = ty * 16u + tx;
    let st_base = (c * p.heads + h) * p.hdim * p.nstate;
    if (flat < 64u) { cs_row[flat] = cs[(t0 + min(r0 + flat, len - 1u)) * p.heads + h]; }
    var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
    var off0 = vec4<f32>(0.0); var off1 = vec4<f32>(0.0); var off2 = vec4<f32>(0.0); var off3 = vec4<f32>(0.0);
    for (var j0 = 0u; j0 <= r0; j0 += 64u) {
        let first = j0 == 0u;
        workgroupBarrier();
        if (flat < 64u) {
            let tj = (t0 + min(j0 + flat, len - 1u)) * p.heads + h;
            cs_col[flat] = cs[tj];
            dt_col[flat] = dts[tj];
        }
        var s0 = vec4<f32>(0.0); var s1 = vec4<f32>(0.0); var s2 = vec4<f32>(0.0); var s3 = vec4<f32>(0.0);
        for (var n0 = 0u; n0 < p.nstate; n0 += 16u) {
            workgroupBarrier();
            stage_slices(t0, len, g, r0, j0, n0, i0, st_base, flat, first);
            workgroupBarrier();
            for (var k = 0u; k < 16u; k++) {
                let c4 = ct[k * 16u + ty];
                let b4 = bt[k * 16u + tx];
                s0 = fma(vec4<f32>(c4.x), b4, s0);
                s1 = fma(vec4<f32>(c4.y), b4, s1);
                s2 = fma(vec4<f32>(c4.z), b4, s2);
                s3 = fma(vec4<f32>(c4.w), b4, s3);
                if (first) {
                    let h4 = ht[k * 16u + tx];
                    off0 = fma(vec4<f32>(c4.x), h4, off0);
                    off1 = fma(vec4<f32>(c4.y), h4, off1);
                    off2 = fma(vec4<f32>(c4.z), h4, off2);
                    off3 = fma(vec4<f32>(c4.w), h4, off3);
                }
            }
        }
        // M·X, 32 column tokens at a time.
        for (var half = 0u; half < 2u; half++) {
            workgroupBarrier();
            if (tx / 8u == half) {
                let jl = tx * 4u; // this invocation's column tokens within the block
                let m0 = mask_row(s0, ty * 4u, jl, j0, r0, len);
                let m1 = mask_row(s1, ty * 4u + 1u, jl, j0, r0, len);
                let m2 = mask_row(s2, ty * 4u + 2u, jl, j0, r0, len);
                let m3 = mask_row(s3, ty * 4u + 3u, jl, j0, r0, len);
                for (var q = 0u; q < 4u; q++) {
                    mt[(jl - half * 32u + q) * 16u + ty] = vec4<f32>(m0[q], m1[q], m2[q], m3[q]);
                }
            }
            for (var e = flat; e < 512u; e += 256u) {
                let jl = e / 16u;
                let quad = e % 16u;
                let tok = j0 + half * 32u + jl;
                let live = tok < len;
                xt[e] = ld4(x_ix(t0 + min(tok, len - 1u), h, i0 + quad * 4u), select(0u, valid4(i0 + quad * 4u, p.hdim), live));
            }
            workgroupBarrier();
            for (var k = 0u; k < 32u; k++) {
                let m4 = mt[k * 16u + ty];
                let x4 = xt[k * 16u + tx];
                acc0 = fma(vec4<f32>(m4.x), x4, acc0);
                acc1 = fma(vec4<f32>(m4.y), x4, acc1);
                acc2 = fma(vec4<f32>(m4.z), x4, acc2);
                acc3 = fma(vec4<f32>(m4.w), x4, acc3);
            }
        }
    }
    let d_h = select(0.0, heads[h * 4u + 1u], flag(HAS_D));
    let ra = ty * 4u;
    store_y(t0, len, h, r0 + ra, i0 + tx * 4u, acc0 + off0 * exp(cs_row[ra]), d_h);
    store_y(t0, len, h, r0 + ra + 1u, i0 + tx * 4u, acc1 + off1 * exp(cs_row[ra + 1u]), d_h);
    store_y(t0, len, h, r0 + ra + 2u, i0 + tx * 4u, acc2 + off2 * exp(cs_row[ra + 2u]), d_h);
    store_y(t0, len, h, r0 + ra + 3u, i0 + tx * 4u, acc3 + off3 * exp(cs_row[ra + 3u]), d_h);
}

fn store_y(t0: u32, len: u32, h: u32, r: u32, i: u32, v: vec4<f32>, d_h: f32) {
    if (r >= len) { return; }
    let t = t0 + r;
    for (var q = 0u; q < 4u; q++) {
        if (i + q < p.hdim) {
            y[t * p.heads * p.hdim + h * p.hdim + i + q] = v[q] + d_h * ld_x(x_ix(t, h, i + q));
        }
    }
}
#endif

#if TC
// The tensor-core path (`ssd.coop64.fused`, f16 inputs, chunk 64): two kernels after the
// cumsum, each on 16×16×16 cooperative matrices fed from workgroup memory, four subgroups of
// 32 lanes per workgroup, subgroup b owning rows 16b … 16b + 15 of every 64-row tile.
// Operands are staged with 16-byte loads (xbc read as 8 halves per element: P, N and so the
// row width are multiples of 8) into rows of 72 halves, f32 tiles into rows of 68 floats: with
// rows of 64 the eight rows one fragment load touches share banks, and on the H200 loads were
// 5× slower (the `matmul.coop_probe.wg` vs `.wg.pad` probes).
@group(0) @binding(1) var<storage, {{ACT}}> xbc: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> dts: array<f32>;
@group(0) @binding(3) var<storage, read> cs: array<f32>;
@group(0) @binding(4) var<storage, read> chunks: array<u32>;

const HS: u32 = 72u; // f16 row stride in workgroup memory
const FS: u32 = 68u; // f32 row stride in workgroup memory

// The eight halves of one 16-byte load, times w. (Workgroup pointers can't be passed to
// functions, so callers store them.)
fn half8(v: vec4<u32>, w: f32) -> array<f16, 8> {
    var out: array<f16, 8>;
    for (var q = 0u; q < 4u; q++) {
        let pair = unpack2x16float(v[q]) * w;
        out[2u * q] = f16(pair.x);
        out[2u * q + 1u] = f16(pair.y);
    }
    return out;
}

// Four packed halves as a vector (naga has no bitcast from vec2<u32> to vec4<f16>).
fn halves4(w: vec2<u32>) -> vec4<f16> {
    return vec4<f16>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)));
}

// 16-byte load of halves i … i + 7 of xbc (i a multiple of 8), or zeros.
fn xbc8(i: u32, live: bool) -> vec4<u32> {
    if (!live) { return vec4<u32>(0u); }
    return xbc[i / 8u];
}
#endif

#if STATE_SCAN
// Steps 2–3 fused: per (sequence, head, 64 × 64 tile of the (P, N) state), walk the sequence's
// chunks in order with the state tile in registers (f32). Per chunk: the chunk's own part
// Xᵀ·(w ⊙ B), w_t = exp(cs_last − cs_t)·dt_t, on tensor cores; then hand the entering state to
// the chunk scan as f16 (zero for a chunk that starts fresh), decay it across the chunk and add
// the chunk's part. The last state goes to `state` as f32. The walk is a chain of dependent
// steps, so each chunk's operands are fetched into registers one step ahead. (Per-chunk states
// and a separate state passing wrote and re-read every chunk's state in f32.)
// No workgroupUniformLoad here: on the H200 a kernel that used one (for this loop's bounds)
// got wrong cooperative-matrix products, even with the loop bounded from the uniform buffer.
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> hin16: array<vec2<u32>>; // 4 halves per element

const HV: u32 = 18u; // row stride in vec4<f16> (72 halves)
var<workgroup> xv: array<vec4<f16>, 1152>; // x of the chunk, [token][channel]
var<workgroup> bv: array<vec4<f16>, 1152>; // w ⊙ B, [token][state]
var<workgroup> sc: array<f32, 4352>; // the chunk's own part of the state tile, [channel][state]

// One chunk's operands, fetched a step ahead: for rows j = lid / 8 + 16k, 8 channels of x and
// 8 states of B from column lid % 8 · 8, and the row's weight.
struct Fetch { x: array<vec4<u32>, 4>, b: array<vec4<u32>, 4>, w: vec4<f32>, decay: f32, fresh: bool }

fn fetch(c: u32, lid: u32, h: u32, g: u32, i0: u32, n0: u32) -> Fetch {
    var f: Fetch;
    let t0 = chunks[c * 4u];
    let len = chunks[c * 4u + 1u];
    let cs_last = cs[(t0 + len - 1u) * p.heads + h];
    f.decay = exp(cs_last);
    f.fresh = (chunks[c * 4u + 3u] & FRESH) != 0u;
    let q8 = (lid % 8u) * 8u;
    for (var k = 0u; k < 4u; k++) {
        let j = lid / 8u + 16u * k;
        let live = j < len;
        let t = t0 + min(j, len - 1u);
        f.w[k] = select(0.0, exp(cs_last - cs[t * p.heads + h]) * dts[t * p.heads + h], live);
        f.x[k] = xbc8(x_ix(t, h, i0 + q8), live);
        f.b[k] = xbc8(b_ix(t, g, n0 + q8), live && n0 + q8 < p.nstate);
    }
    return f;
}

@compute @workgroup_size(128)
fn ssd_state_scan(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let tiles_n = (p.nstate + 63u) / 64u;
    let i0 = (wid.x / tiles_n) * 64u;
    let n0 = (wid.x % tiles_n) * 64u;
    let h = wid.y;
    let s = wid.z;
    let g = group_of(h);
    let band = lid / 32u;
    // The state tile lives in registers, in f32: invocation lid holds rows lid / 16 + 8k and
    // the four columns from cq (N % 4 == 0).
    let cq = (lid % 16u) * 4u;
    let live_n = n0 + cq < p.nstate;
    let sbase = ((s * p.heads + h) * p.hdim + i0) * p.nstate + n0 + cq;
    var st: array<vec4<f32>, 8>;
    if (flag(INIT) && live_n) {
        for (var k = 0u; k < 8u; k++) {
            let e = sbase + (lid / 16u + 8u * k) * p.nstate;
            st[k] = vec4<f32>(state[e], state[e + 1u], state[e + 2u], state[e + 3u]);
        }
    }
    // This sequence's chunks (used for addressing only: the loop's bound is uniform).
    let cr = vec2<u32>(chunks[p.nchunks * 4u + s], chunks[p.nchunks * 4u + s + 1u]);
    let per_chunk = p.heads * p.hdim * p.nstate;
    let q8 = (lid % 8u) * 8u;
    var next: Fetch;
    if (cr.x < cr.y) { next = fetch(cr.x, lid, h, g, i0, n0); }
    // As many steps as the longest sequence has chunks, a bound from the uniform buffer (the
    // cooperative ops need uniform control flow); steps past this sequence's end do nothing.
    for (var step = 0u; step < p.seq_chunks; step++) {
        let c = cr.x + step;
        let on = c < cr.y;
        let cur = next;
        // The previous step's fragment loads from xv / bv and reads of sc are done.
        workgroupBarrier();
        for (var k = 0u; k < 4u; k++) {
            let e = (lid / 8u + 16u * k) * HV + q8 / 4u;
            xv[e] = halves4(cur.x[k].xy);
            xv[e + 1u] = halves4(cur.x[k].zw);
            let b = cur.b[k];
            let w = cur.w[k];
            bv[e] = vec4<f16>(vec4<f32>(unpack2x16float(b.x), unpack2x16float(b.y)) * w);
            bv[e + 1u] = vec4<f16>(vec4<f32>(unpack2x16float(b.z), unpack2x16float(b.w)) * w);
        }
        if (c + 1u < cr.y) { next = fetch(c + 1u, lid, h, g, i0, n0); }
        workgroupBarrier();
        // The chunk's own part, Xᵀ·(w ⊙ B).
        var s0: coop_mat16x16<f32, C>;
        var s1: coop_mat16x16<f32, C>;
        var s2: coop_mat16x16<f32, C>;
        var s3: coop_mat16x16<f32, C>;
        for (var k = 0u; k < 64u; k += 16u) {
            // A = Xᵀ (row i, column t): xv [t][i] is its column-major form. Strides and
            // offsets count vec4s.
            let a = coopLoad<coop_mat16x16<f16, A>>(&xv[k * HV + band * 4u], HV);
            s0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&bv[k * HV], HV), s0);
            s1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&bv[k * HV + 4u], HV), s1);
            s2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&bv[k * HV + 8u], HV), s2);
            s3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&bv[k * HV + 12u], HV), s3);
        }
        coopStoreT(s0, &sc[band * 16u * FS], FS);
        coopStoreT(s1, &sc[band * 16u * FS + 16u], FS);
        coopStoreT(s2, &sc[band * 16u * FS + 32u], FS);
        coopStoreT(s3, &sc[band * 16u * FS + 48u], FS);
        workgroupBarrier();
        // Hand the entering state over (zero where the chunk starts fresh), then decay it
        // across the chunk and add the chunk's own part.
        if (on && live_n) {
            let hout = c * per_chunk + ((h * p.hdim + i0) * p.nstate + n0 + cq);
            for (var k = 0u; k < 8u; k++) {
                let r = lid / 16u + 8u * k;
                let v = select(st[k], vec4<f32>(0.0), cur.fresh);
                let v16 = clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0));
                hin16[(hout + r * p.nstate) / 4u] = vec2<u32>(pack2x16float(v16.xy), pack2x16float(v16.zw));
                let f = r * FS + cq;
                st[k] = v * cur.decay + vec4<f32>(sc[f], sc[f + 1u], sc[f + 2u], sc[f + 3u]);
            }
        }
    }
    if (live_n) {
        for (var k = 0u; k < 8u; k++) {
            let e = sbase + (lid / 16u + 8u * k) * p.nstate;
            state[e] = st[k].x;
            state[e + 1u] = st[k].y;
            state[e + 2u] = st[k].z;
            state[e + 3u] = st[k].w;
        }
    }
}
#endif

#if CHUNK_SCAN_TC
// Steps 4–5 per (chunk, HEADS_WG heads of one group, 64 channels; with one head, all of its
// channels, 64 at a time, ALL_BLOCKS):
//   S = C·Bᵀ, once for the workgroup's heads (it depends on the group only), kept as f16;
//   per head, M = S masked before the exp, ⊙ exp(cs_t − cs_j)·dt_j, with D on the diagonal
//   (so M·X carries D·x), and y = M·X + (exp(cs) ⊙ C)·h_inᵀ, the entering state h_in from
//   the state scan (f16). The state size goes 64 at a time. Rows and columns outside the
//   chunk are staged as zeros, so other sequences' tokens never enter a product.
@group(0) @binding(5) var<storage, read> hin16: array<vec4<u32>>; // 8 halves per element
@group(0) @binding(6) var<storage, read> heads: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<vec4<f32>>;

var<workgroup> cs_s: array<f32, 64>;
var<workgroup> dt_s: array<f32, 64>;
const HEADS_WG: u32 = {{HEADS_WG}}u;
var<workgroup> fs: array<f32, 4352>; // S, then y: [row t][column]
var<workgroup> s_h: array<f16, 4608>; // S as f16, [row t][token j]
var<workgroup> a_h: array<f16, 4608>; // A operands: C, then M, then exp(cs) ⊙ C
var<workgroup> b_h: array<f16, 4608>; // B operands: B, then x, then h_in

@compute @workgroup_size(128)
fn ssd_chunk_scan_tc(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let i0 = wid.x * 64u;
    let h_first = wid.y * HEADS_WG;
    let c = wid.z;
    let g = group_of(h_first);
    let t0 = chunks[c * 4u];
    let len = chunks[c * 4u + 1u];
    let band = lid / 32u;
    let q8 = (lid % 8u) * 8u; // staging: rows lid / 8 + 16k, 8 halves from column q8
    let cq = (lid % 16u) * 4u; // SIMT passes: rows lid / 16 + 8k, 4 columns from cq
    var s0: coop_mat16x16<f32, C>;
    var s1: coop_mat16x16<f32, C>;
    var s2: coop_mat16x16<f32, C>;
    var s3: coop_mat16x16<f32, C>;
    for (var n0 = 0u; n0 < p.nstate; n0 += 64u) {
        workgroupBarrier();
        for (var k = 0u; k < 4u; k++) {
            let j = lid / 8u + 16u * k;
            let live = j < len && n0 + q8 < p.nstate;
            let t = t0 + min(j, len - 1u);
            let a_h8 = half8(xbc8(c_ix(t, g, n0 + q8), live), 1.0);
            for (var m = 0u; m < 8u; m++) { a_h[j * HS + q8 + m] = a_h8[m]; }
            let b_h8 = half8(xbc8(b_ix(t, g, n0 + q8), live), 1.0);
            for (var m = 0u; m < 8u; m++) { b_h[j * HS + q8 + m] = b_h8[m]; }
        }
        workgroupBarrier();
        for (var k = 0u; k < 64u && n0 + k < p.nstate; k += 16u) {
            let ca = coopLoadT<coop_mat16x16<f16, A>>(&a_h[band * 16u * HS + k], HS);
            // B operand = Bᵀ (row n, column j): b_h [j][n] is its column-major form.
            s0 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[k], HS), s0);
            s1 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[16u * HS + k], HS), s1);
            s2 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[32u * HS + k], HS), s2);
            s3 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[48u * HS + k], HS), s3);
        }
    }
    coopStoreT(s0, &fs[band * 16u * FS], FS);
    coopStoreT(s1, &fs[band * 16u * FS + 16u], FS);
    coopStoreT(s2, &fs[band * 16u * FS + 32u], FS);
    coopStoreT(s3, &fs[band * 16u * FS + 48u], FS);
    workgroupBarrier();
    for (var k = 0u; k < 8u; k++) {
        let r = lid / 16u + 8u * k;
        for (var m = 0u; m < 4u; m++) { s_h[r * HS + cq + m] = f16(fs[r * FS + cq + m]); }
    }
    let jj = vec4<u32>(cq) + vec4<u32>(0u, 1u, 2u, 3u);
    for (var hh = 0u; hh < HEADS_WG; hh++) {
        let h = h_first + hh;
        // The previous head's (or S's) readers of fs, a_h, b_h and cs_s are done.
        workgroupBarrier();
        if (lid < 64u) {
            let r = (t0 + min(lid, len - 1u)) * p.heads + h;
            cs_s[lid] = select(0.0, cs[r], lid < len);
            dt_s[lid] = select(0.0, dts[r], lid < len);
        }
        workgroupBarrier();
        // M: mask first, then decay and dt, so exp only ever sees cs_t − cs_j ≤ 0.
        let d_h = select(0.0, heads[h * 4u + 1u], flag(HAS_D));
        let cj = vec4<f32>(cs_s[cq], cs_s[cq + 1u], cs_s[cq + 2u], cs_s[cq + 3u]);
        let dj = vec4<f32>(dt_s[cq], dt_s[cq + 1u], dt_s[cq + 2u], dt_s[cq + 3u]);
        for (var k = 0u; k < 8u; k++) {
            let t = lid / 16u + 8u * k;
            let live = jj <= vec4<u32>(t) & vec4<bool>(t < len);
            let dec = exp(select(vec4<f32>(-1e30), vec4<f32>(cs_s[t]) - cj, live));
            let e = t * HS + cq;
            let sv = vec4<f32>(f32(s_h[e]), f32(s_h[e + 1u]), f32(s_h[e + 2u]), f32(s_h[e + 3u]));
            var m = select(vec4<f32>(0.0), sv * dec * dj, live);
            m += select(vec4<f32>(0.0), vec4<f32>(d_h), jj == vec4<u32>(t) & live);
#if ALL_BLOCKS
            s_h[e] = f16(m.x);
            s_h[e + 1u] = f16(m.y);
            s_h[e + 2u] = f16(m.z);
            s_h[e + 3u] = f16(m.w);
#else
            a_h[e] = f16(m.x);
            a_h[e + 1u] = f16(m.y);
            a_h[e + 2u] = f16(m.z);
            a_h[e + 3u] = f16(m.w);
#endif
        }
#if ALL_BLOCKS
        // One head per workgroup: M replaced S in s_h and serves every 64-channel block.
        let blocks = p.hdim / 64u;
#else
        let blocks = 1u;
#endif
        for (var ib = 0u; ib < blocks; ib++) {
            let i0 = i0 + ib * 64u;
            // The previous block's readers of b_h and fs are done.
            workgroupBarrier();
            for (var k = 0u; k < 4u; k++) {
                let j = lid / 8u + 16u * k;
                let t = t0 + min(j, len - 1u);
                let b_h8 = half8(xbc8(x_ix(t, h, i0 + q8), j < len), 1.0);
                for (var m = 0u; m < 8u; m++) { b_h[j * HS + q8 + m] = b_h8[m]; }
            }
            workgroupBarrier();
            var y0: coop_mat16x16<f32, C>;
            var y1: coop_mat16x16<f32, C>;
            var y2: coop_mat16x16<f32, C>;
            var y3: coop_mat16x16<f32, C>;
            for (var k = 0u; k < 64u; k += 16u) {
#if ALL_BLOCKS
                let ma = coopLoadT<coop_mat16x16<f16, A>>(&s_h[band * 16u * HS + k], HS);
#else
                let ma = coopLoadT<coop_mat16x16<f16, A>>(&a_h[band * 16u * HS + k], HS);
#endif
                y0 = coopMultiplyAdd(ma, coopLoadT<coop_mat16x16<f16, B>>(&b_h[k * HS], HS), y0);
                y1 = coopMultiplyAdd(ma, coopLoadT<coop_mat16x16<f16, B>>(&b_h[k * HS + 16u], HS), y1);
                y2 = coopMultiplyAdd(ma, coopLoadT<coop_mat16x16<f16, B>>(&b_h[k * HS + 32u], HS), y2);
                y3 = coopMultiplyAdd(ma, coopLoadT<coop_mat16x16<f16, B>>(&b_h[k * HS + 48u], HS), y3);
            }
            // Off-diagonal part: (exp(cs) ⊙ C)·h_inᵀ, exp(cs_t) ≤ 1 folded into the staged C rows.
            let hb = (c * p.heads + h) * p.hdim + i0;
            for (var n0 = 0u; n0 < p.nstate; n0 += 64u) {
                workgroupBarrier();
                for (var k = 0u; k < 4u; k++) {
                    let j = lid / 8u + 16u * k;
                    let live_n = n0 + q8 < p.nstate;
                    let t = t0 + min(j, len - 1u);
                    let a_h8 = half8(xbc8(c_ix(t, g, n0 + q8), j < len && live_n), exp(cs_s[j]));
                    for (var m = 0u; m < 8u; m++) { a_h[j * HS + q8 + m] = a_h8[m]; }
                    // h_in rows are channels i0 + j.
                    let hi = (hb + j) * p.nstate + n0 + q8;
                    var hv = vec4<u32>(0u);
                    if (live_n) { hv = hin16[hi / 8u]; }
                    let b_h8 = half8(hv, 1.0);
                    for (var m = 0u; m < 8u; m++) { b_h[j * HS + q8 + m] = b_h8[m]; }
                }
                workgroupBarrier();
                for (var k = 0u; k < 64u && n0 + k < p.nstate; k += 16u) {
                    let ca = coopLoadT<coop_mat16x16<f16, A>>(&a_h[band * 16u * HS + k], HS);
                    // B operand = h_inᵀ (row n, column i): b_h [i][n] is its column-major form.
                    y0 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[k], HS), y0);
                    y1 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[16u * HS + k], HS), y1);
                    y2 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[32u * HS + k], HS), y2);
                    y3 = coopMultiplyAdd(ca, coopLoad<coop_mat16x16<f16, B>>(&b_h[48u * HS + k], HS), y3);
                }
            }
            coopStoreT(y0, &fs[band * 16u * FS], FS);
            coopStoreT(y1, &fs[band * 16u * FS + 16u], FS);
            coopStoreT(y2, &fs[band * 16u * FS + 32u], FS);
            coopStoreT(y3, &fs[band * 16u * FS + 48u], FS);
            workgroupBarrier();
            for (var k = 0u; k < 8u; k++) {
                let t = lid / 16u + 8u * k;
                if (t < len) {
                    let f = t * FS + cq;
                    y[((t0 + t) * p.heads * p.hdim + h * p.hdim + i0 + cq) / 4u] =
                        vec4<f32>(fs[f], fs[f + 1u], fs[f + 2u], fs[f + 3u]);
                }
            }
        }
    }
}
#endif
