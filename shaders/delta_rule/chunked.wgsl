// The chunked WY-form prefill (included by delta_rule.wgsl), in three dispatches over chunks
// of at most CL = 64 tokens that never cross a sequence or a reset (`chunks`, the table of
// ops::sequences::chunk_table: per chunk (first token, length, sequence, FRESH at a reset /
// FIRST of its sequence), then each sequence's first chunk, S + 1 entries).
// Within a chunk, with γ_t the cumulative log-gate (γ_t − γ_u ≤ 0 for u ≤ t, so every
// exponent is a difference of cumulative sums that stays ≤ 0):
//   A[t][u] = β_t·exp(γ_t − γ_u)·k̂_t·k̂_u (u < t),  T = (I + A)⁻¹ (unit lower triangular)
//   W = T·diag(β·exp(γ))·K̂,  U = T·diag(β)·V
//   V′ = U − W·S₀,  o_t = exp(γ_t)·q̂_t·S₀ + Σ_{u≤t} exp(γ_t − γ_u)(q̂_t·k̂_u)·v′_u
//   S₁ = exp(γ_last)·S₀ + Σ_t exp(γ_last − γ_t)·k̂_t ⊗ v′_t
// PREP (per chunk and value head) builds T by forward substitution, row by row, then W and U;
// STATE (per sequence, value head and 64 state columns) walks the sequence's chunks in order
// with S[:, j] in registers, leaving each chunk's entering state S₀ and V′ (in place of U);
// OUT (per chunk, value head and 64 columns) forms the outputs from S₀ and V′.
// Scratch: w [T, Hv, DK], u [T, Hv, dv], gn [T, Hv, 4] (γ, q̂ and k̂ scales, β),
// s0 [chunks, Hv, DK, dv].
// GATE_K (Kimi Delta Attention): γ is per key channel, so every exp(γ_t − γ_u) moves inside
// the sums over channels (A's and M's dot products, W's columns, the state's rows); the passes
// form the per-channel cumulative gates from g [T, Hv, DK] as they go (prefix sums over the
// chunk's tokens), and each exponent is still a difference that stays ≤ 0.
// (delta_rule_chunked_ref is this algebra in f64.)
#if CHUNKED
const CL: u32 = 64u;
@group(0) @binding(4) var<storage, read> chunks: array<u32>;
@group(0) @binding(5) var<storage, read_write> gn: array<f32>;

fn chunk_t0(c: u32) -> u32 { return chunks[c * 4u]; }
fn chunk_len(c: u32) -> u32 { return chunks[c * 4u + 1u]; }
fn gn_at(t: u32, h: u32) -> u32 { return (t * p.hv + h) * 4u; }
#endif

#if CHUNKED
#if !TC
// (The SIMT passes': each declares g.) KW channels at a time of the chunk's rows, staged with padded rows against bank conflicts.
const KW: u32 = 16u;
var<workgroup> kst: array<f32, 64u * (KW + 1u)>;
// GATE_K: the cumulative gates of channels i0 … i0 + KW − 1, [token][channel] (rows past the
// chunk repeat its last), by KW invocations' prefix sums.
var<workgroup> gst: array<f32, 64u * (KW + 1u)>;

fn stage_gates(lid: u32, t0: u32, len: u32, h: u32, i0: u32) {
    if (flag(GATE_K) && lid < KW) {
        var acc = 0.0;
        for (var r = 0u; r < CL; r++) {
            if (r < len) { acc += g[((t0 + r) * p.hv + h) * DK + i0 + lid]; }
            gst[r * (KW + 1u) + lid] = acc;
        }
    }
}

// exp(γ_t − γ_u) of staged channel i (1 without GATE_K, whose decay is applied per pair).
fn pair_decay(t: u32, u: u32, i: u32) -> f32 {
    return select(1.0, exp(gst[t * (KW + 1u) + i] - gst[u * (KW + 1u) + i]), flag(GATE_K));
}
#endif
#endif

#if PREP
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> g: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> w: array<f32>;
@group(0) @binding(7) var<storage, read_write> u: array<f32>;

var<workgroup> tm: array<f32, 4096>; // A, then T, row-major [t][u]
// (The dot products and W read the chunk's k rows from kst, not each invocation from global
// memory.)
var<workgroup> gam: array<f32, 64>;
var<workgroup> kn: array<f32, 64>;   // 1 / |k_t| (or 1)
var<workgroup> bt: array<f32, 64>;

// Stages columns i0 … i0 + KW − 1 of the chunk's k rows into `kst` (rows past the chunk: 0)
// and (GATE_K) their cumulative gates, with a barrier before (the previous columns' readers
// are done) and after.
fn stage_k(lid: u32, t0: u32, len: u32, kh: u32, h: u32, i0: u32) {
    workgroupBarrier();
    for (var e = lid; e < CL * KW; e += 64u) {
        let r = e / KW;
        let i = e % KW;
        kst[r * (KW + 1u) + i] = select(0.0, qkv[k_at(t0 + min(r, len - 1u), kh) + i0 + i], r < len);
    }
    stage_gates(lid, t0, len, h, i0);
    workgroupBarrier();
}

@compute @workgroup_size(64)
fn delta_prep(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nchunks * p.hv) { return; } // workgroup-uniform
    let h = idx % p.hv;
    let c = idx / p.hv;
    let kh = h / (p.hv / p.hk);
    let t0 = chunk_t0(c);
    let len = chunk_len(c);
    let t = min(lid, len - 1u);
    let live = lid < len;
    // Per token: norms, β; then γ by one invocation (64 adds).
    var nq = 0.0;
    var nk = 0.0;
    for (var i = 0u; i < DK; i++) {
        let qv = qkv[q_at(t0 + t, kh) + i];
        let kv = qkv[k_at(t0 + t, kh) + i];
        nq += qv * qv;
        nk += kv * kv;
    }
    var qs = p.scale;
    var ks = 1.0;
    if (flag(L2NORM)) {
        qs *= inverseSqrt(nq + 1e-6);
        ks = inverseSqrt(nk + 1e-6);
    }
    kn[lid] = ks;
    bt[lid] = select(0.0, beta[(t0 + t) * p.hv + h], live);
    if (lid == 0u) {
        // (GATE_K: the per-channel gates are staged with k; γ here is unused.)
        var acc = 0.0;
        for (var k = 0u; k < len; k++) {
            acc += select(g[(t0 + k) * p.hv + h], 0.0, flag(GATE_K));
            gam[k] = acc;
        }
    }
    workgroupBarrier();
    if (live) {
        let e = gn_at(t0 + t, h);
        gn[e] = gam[t];
        gn[e + 1u] = qs;
        gn[e + 2u] = ks;
        gn[e + 3u] = bt[t];
    }
    // Row t of A (u < t; nothing reads the rest), its dot products KW columns at a time.
    // Bounded by the row, not by CL: constant bounds here would be unrolled by Mesa's GL compiler.
    for (var uu = 0u; uu < CL; uu++) { tm[lid * CL + uu] = 0.0; }
    for (var i0 = 0u; i0 < DK; i0 += KW) {
        stage_k(lid, t0, len, kh, h, i0);
        for (var uu = 0u; live && uu < t; uu++) {
            var dot = 0.0;
            for (var i = 0u; i < KW; i++) {
                dot += kst[t * (KW + 1u) + i] * kst[uu * (KW + 1u) + i] * pair_decay(t, uu, i);
            }
            tm[t * CL + uu] += dot;
        }
        workgroupBarrier();
    }
    for (var uu = 0u; live && uu < t; uu++) {
        tm[t * CL + uu] *= bt[t] * exp(gam[t] - gam[uu]) * kn[t] * kn[uu];
    }
    workgroupBarrier();
    // T = (I + A)⁻¹ by forward substitution, in place: row r of T from row r of A and the rows
    // of T above it; T[r][r] = 1 is implicit (stored as 0 in the strict lower part's place).
    for (var r = 1u; r < len; r++) {
        var v = 0.0;
        if (lid < r) {
            v = -tm[r * CL + lid];
            for (var m = lid + 1u; m < r; m++) { v -= tm[r * CL + m] * tm[m * CL + lid]; }
        }
        workgroupBarrier();
        if (lid < r) { tm[r * CL + lid] = v; }
        workgroupBarrier();
    }
    // W = T·diag(β·exp(γ))·K̂ and U = T·diag(β)·V, row t by this invocation's share; W KW
    // columns at a time from the staged k.
    for (var i0 = 0u; i0 < DK; i0 += KW) {
        stage_k(lid, t0, len, kh, h, i0);
        for (var e = lid; e < len * KW; e += 64u) {
            let tt = e / KW;
            let i = e % KW;
            var acc = 0.0;
            for (var uu = 0u; uu <= tt; uu++) {
                let tu = select(tm[tt * CL + uu], 1.0, uu == tt);
                let decay = select(exp(gam[uu]), exp(gst[uu * (KW + 1u) + i]), flag(GATE_K));
                acc += tu * bt[uu] * decay * kn[uu] * kst[uu * (KW + 1u) + i];
            }
            w[((t0 + tt) * p.hv + h) * DK + i0 + i] = acc;
        }
        workgroupBarrier();
    }
    for (var e = lid; e < len * p.dv; e += 64u) {
        let tt = e / p.dv;
        let j = e % p.dv;
        var acc = 0.0;
        for (var uu = 0u; uu <= tt; uu++) {
            let tu = select(tm[tt * CL + uu], 1.0, uu == tt);
            acc += tu * bt[uu] * qkv[v_at(t0 + uu, h) + j];
        }
        u[((t0 + tt) * p.hv + h) * p.dv + j] = acc;
    }
}
#endif

#if STATE
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> u: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<f32>;
@group(0) @binding(7) var<storage, read_write> s0: array<f32>;
@group(0) @binding(8) var<storage, {{ACT}}> g: array<f32>; // read with GATE_K

@compute @workgroup_size(64)
fn delta_state(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.dv + 63u) / 64u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.hv * blocks) { return; }
    let j = (idx % blocks) * 64u + lid;
    if (j >= p.dv) { return; } // no barriers below
    let h = (idx / blocks) % p.hv;
    let s = idx / (blocks * p.hv);
    let kh = h / (p.hv / p.hk);
    // This piece's chunks of the sequence: [t_lo, t_hi) counts chunks here.
    let first = chunks[p.nchunks * 4u + s];
    let end = chunks[p.nchunks * 4u + s + 1u];
    let c_lo = first + min(p.t_lo, end - first);
    let c_hi = first + min(p.t_hi, end - first);
    if (c_lo >= c_hi) { return; }
    let sbase = ((s * p.hv + h) * DK) * p.dv + j;
    // The column as DK / 4 vec4s (dims 4i … 4i + 3), so the loops below are short enough for
    // the compiler to keep it in registers.
    var st: array<vec4<f32>, DK / 4u>;
    let dv = p.dv;
    if (flag(INIT) || p.t_lo > 0u) {
        for (var i = 0u; i < DK / 4u; i++) {
            let b = sbase + 4u * i * dv;
            st[i] = vec4<f32>(state[b], state[b + dv], state[b + 2u * dv], state[b + 3u * dv]);
        }
    }
    for (var c = c_lo; c < c_hi; c++) {
        // A reset, or a sequence's first chunk without INIT, starts from zero.
        let cf = chunks[c * 4u + 3u];
        if ((cf & FRESH) != 0u || ((cf & FIRST) != 0u && !flag(INIT))) {
            for (var i = 0u; i < DK / 4u; i++) { st[i] = vec4<f32>(0.0); }
        }
        let t0 = chunk_t0(c);
        let len = chunk_len(c);
        let cbase = ((c * p.hv + h) * DK) * dv + j;
        for (var i = 0u; i < DK / 4u; i++) {
            let b = cbase + 4u * i * dv;
            s0[b] = st[i].x;
            s0[b + dv] = st[i].y;
            s0[b + 2u * dv] = st[i].z;
            s0[b + 3u * dv] = st[i].w;
        }
        // V′ = U − W·S₀, in place of U.
        for (var t = t0; t < t0 + len; t++) {
            var ws = vec4<f32>(0.0);
            let wb = (t * p.hv + h) * DK;
            for (var i = 0u; i < DK / 4u; i++) {
                let b = wb + 4u * i;
                ws += vec4<f32>(w[b], w[b + 1u], w[b + 2u], w[b + 3u]) * st[i];
            }
            let e = (t * p.hv + h) * dv + j;
            u[e] = u[e] - (ws.x + ws.y + ws.z + ws.w);
        }
        // S₁ = exp(γ_last)·S₀ + Σ_t exp(γ_last − γ_t)·k̂_t ⊗ v′_t.
        if (flag(GATE_K)) {
            // Per channel, the tokens from the last back: γ_last − γ_t is the sum of the gates
            // after t (`suf`), which ends as γ_last, S₀'s decay.
            var inc: array<vec4<f32>, DK / 4u>;
            var suf: array<vec4<f32>, DK / 4u>;
            for (var t = t0 + len; t > t0; t--) {
                let e = gn_at(t - 1u, h);
                let coef = gn[e + 2u] * u[((t - 1u) * p.hv + h) * dv + j];
                let kb = k_at(t - 1u, kh);
                let gb = ((t - 1u) * p.hv + h) * DK;
                for (var i = 0u; i < DK / 4u; i++) {
                    let b = kb + 4u * i;
                    inc[i] += coef * exp(suf[i]) * vec4<f32>(qkv[b], qkv[b + 1u], qkv[b + 2u], qkv[b + 3u]);
                    let c4 = gb + 4u * i;
                    suf[i] += vec4<f32>(g[c4], g[c4 + 1u], g[c4 + 2u], g[c4 + 3u]);
                }
            }
            for (var i = 0u; i < DK / 4u; i++) { st[i] = st[i] * exp(suf[i]) + inc[i]; }
        } else {
            let g_last = gn[gn_at(t0 + len - 1u, h)];
            let dl = exp(g_last);
            for (var i = 0u; i < DK / 4u; i++) { st[i] *= dl; }
            for (var t = t0; t < t0 + len; t++) {
                let e = gn_at(t, h);
                let coef = exp(g_last - gn[e]) * gn[e + 2u] * u[(t * p.hv + h) * dv + j];
                let kb = k_at(t, kh);
                for (var i = 0u; i < DK / 4u; i++) {
                    let b = kb + 4u * i;
                    st[i] += coef * vec4<f32>(qkv[b], qkv[b + 1u], qkv[b + 2u], qkv[b + 3u]);
                }
            }
        }
    }
    for (var i = 0u; i < DK / 4u; i++) {
        let b = sbase + 4u * i * dv;
        state[b] = st[i].x;
        state[b + dv] = st[i].y;
        state[b + 2u * dv] = st[i].z;
        state[b + 3u * dv] = st[i].w;
    }
}
#endif

#if OUT
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> s0: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, {{ACT}}> g: array<f32>; // read with GATE_K

var<workgroup> mm: array<f32, 4096>; // exp(γ_t − γ_u)·q̂_t·k̂_u, [t][u], u ≤ t
// KW columns of the chunk's q rows at a time (k's in kst), for M's dot products.
var<workgroup> qs_t: array<f32, 64u * (KW + 1u)>;

@compute @workgroup_size(64)
fn delta_out(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.dv + 63u) / 64u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nchunks * p.hv * blocks) { return; } // workgroup-uniform
    let jb = idx % blocks;
    let h = (idx / blocks) % p.hv;
    let c = idx / (blocks * p.hv);
    let kh = h / (p.hv / p.hk);
    let t0 = chunk_t0(c);
    let len = chunk_len(c);
    // Row lid of M.
    let t = min(lid, len - 1u);
    let gt = gn[gn_at(t0 + t, h)];
    let qk = gn[gn_at(t0 + t, h) + 1u];
    // (Only u ≤ t is read.) The dot products KW columns at a time from staged q and k.
    for (var uu = 0u; uu < CL; uu++) { mm[lid * CL + uu] = 0.0; }
    for (var i0 = 0u; i0 < DK; i0 += KW) {
        workgroupBarrier();
        for (var e = lid; e < CL * KW; e += 64u) {
            let r = e / KW;
            let i = e % KW;
            let tr = t0 + min(r, len - 1u);
            qs_t[r * (KW + 1u) + i] = qkv[q_at(tr, kh) + i0 + i];
            kst[r * (KW + 1u) + i] = qkv[k_at(tr, kh) + i0 + i];
        }
        stage_gates(lid, t0, len, h, i0);
        workgroupBarrier();
        for (var uu = 0u; lid < len && uu <= lid; uu++) {
            var dot = 0.0;
            for (var i = 0u; i < KW; i++) {
                dot += qs_t[lid * (KW + 1u) + i] * kst[uu * (KW + 1u) + i] * pair_decay(lid, uu, i);
            }
            mm[lid * CL + uu] += dot;
        }
    }
    for (var uu = 0u; lid < len && uu <= lid; uu++) {
        let e = gn_at(t0 + uu, h);
        mm[lid * CL + uu] *= exp(gt - gn[e]) * qk * gn[e + 2u];
    }
    workgroupBarrier();
    let j = jb * 64u + lid;
    if (j >= p.dv) { return; } // after the last barrier
    let cbase = ((c * p.hv + h) * DK) * p.dv + j;
    let dv = p.dv;
    // S₀'s column as DK / 4 vec4s (as the state walk holds it).
    var st: array<vec4<f32>, DK / 4u>;
    for (var i = 0u; i < DK / 4u; i++) {
        let b = cbase + 4u * i * dv;
        st[i] = vec4<f32>(s0[b], s0[b + dv], s0[b + 2u * dv], s0[b + 3u * dv]);
    }
    // GATE_K: γ_t per channel, the gates summed up to t.
    var pre: array<vec4<f32>, DK / 4u>;
    for (var tt = 0u; tt < len; tt++) {
        let e = gn_at(t0 + tt, h);
        var qv = vec4<f32>(0.0);
        let qb = q_at(t0 + tt, kh);
        let gb = ((t0 + tt) * p.hv + h) * DK;
        for (var i = 0u; i < DK / 4u; i++) {
            let b = qb + 4u * i;
            var qd = vec4<f32>(qkv[b], qkv[b + 1u], qkv[b + 2u], qkv[b + 3u]);
            if (flag(GATE_K)) {
                pre[i] += vec4<f32>(g[gb + 4u * i], g[gb + 4u * i + 1u], g[gb + 4u * i + 2u], g[gb + 4u * i + 3u]);
                qd *= exp(pre[i]);
            }
            qv += qd * st[i];
        }
        let qs = qv.x + qv.y + qv.z + qv.w;
        var o = exp(gn[e]) * gn[e + 1u] * qs;
        for (var uu = 0u; uu <= tt; uu++) { o += mm[tt * CL + uu] * u[((t0 + uu) * p.hv + h) * p.dv + j]; }
        out[((t0 + tt) * p.hv + h) * p.dv + j] = o;
    }
}
#endif
