// SSD: the SIMT chunked path: cumsum, chunk states, state passing, chunk scan (included by ssd.wgsl).
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
@group(0) @binding(2) var<storage, {{ACT}}> dts: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> cs: array<f32>;
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
@group(0) @binding(1) var<storage, {{ACT}}> cs: array<f32>;
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
@group(0) @binding(2) var<storage, {{ACT}}> dts: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> cs: array<f32>;
@group(0) @binding(4) var<storage, read> chunks: array<u32>;
@group(0) @binding(5) var<storage, {{ACT}}> cstates: array<f32>;
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
