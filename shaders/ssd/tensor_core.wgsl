// SSD: the cooperative-matrix state scan and chunk scan of coop64.fused (included by ssd.wgsl).
#if TC
// The tensor-core path (`ssd.coop64.fused`, f16 inputs, chunk 64): two kernels after the
// cumsum, each on 16×16×16 cooperative matrices fed from workgroup memory, four subgroups of
// 32 lanes per workgroup, subgroup b owning rows 16b … 16b + 15 of every 64-row tile.
// Operands are staged with 16-byte loads (xbc read as 8 halves per element: P, N and so the
// row width are multiples of 8) into rows of 72 halves, f32 tiles into rows of 68 floats: with
// rows of 64 the eight rows one fragment load touches share banks, and on the H200 loads were
// 5× slower (the `matmul.coop_probe.wg` vs `.wg.pad` probes).
@group(0) @binding(1) var<storage, {{ACT}}> xbc: array<vec4<u32>>;
@group(0) @binding(2) var<storage, {{ACT}}> dts: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> cs: array<f32>;
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
@group(0) @binding(5) var<storage, {{ACT}}> hin16: array<vec4<u32>>; // 8 halves per element
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

