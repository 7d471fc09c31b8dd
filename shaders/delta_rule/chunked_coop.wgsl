// The chunked WY form on 16×16×16 f16 cooperative matrices with f32 accumulation (included by
// delta_rule.wgsl; the `.coop` variants): the same three passes, scratch and chunk table as
// chunked.wgsl, whose comment has the algebra, so each pass can take either form. A
// workgroup is four subgroups of 32 lanes; subgroup `band` owns rows 16·band … 16·band + 15
// of every 64-row product. Operands are staged as f16 in workgroup memory with padded rows
// (DK + 8 or 40 halves; rows of 64 put the rows one fragment load touches in one bank), f32
// products come back through padded f32 rows for the elementwise work, which WGSL cannot do
// on fragments. Rows past a chunk's end are staged as zeros, so no product mixes tokens of two
// chunks (or sequences); the scratch W | K̂ and U (then V′, both f16) keep 64 rows per chunk,
// the rows past its end zeros, which the later passes read as they are. Every workgroup
// variable is a multiple of 128 bytes (see attention/prefill_coop.wgsl on small variables
// beside the tiles).
// Operands: coopLoadT reads a row-major tile, coopLoad a column-major one (the transpose of
// a row-major tile). Finite values beyond f16's range saturate to ±65504; NaN and ±Inf pass.
// Masked entries are zeros that still enter the products, so a non-finite k or v reaches the
// earlier tokens of its chunk too (0·NaN), never another chunk's sequence; the SIMT form
// keeps it to the token and those after it.
#if TC
const HS: u32 = DK + 8u; // f16 row stride of [token][dk] tiles
const FS: u32 = 68u;     // f32 row stride of [row][64] tiles
const PS: u32 = 72u;     // f16 row stride of [token][64] tiles
const BS: u32 = 40u;     // f16 row stride of [row][32] tiles
const KF: u32 = DK / 16u;
// Staging a chunk's 64 rows of dk as vec4s: DK4 lanes per row (within one subgroup), RPI
// rows per pass of the workgroup, NIT passes; all NIT loads are issued before any is used, so
// their latencies overlap (a load-convert-store loop waits out each load in turn).
const DK4: u32 = DK / 4u;
const RPI: u32 = 128u / DK4;

// x saturated to f16's finite range (NaN and ±Inf pass), and as an f16.
fn sat16(x: f32) -> f32 {
    let special = (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
    return select(clamp(x, -65504.0, 65504.0), x, special);
}

fn f16s(x: f32) -> f16 {
    return f16(sat16(x));
}

fn f16v(x: vec4<f32>) -> vec4<f16> {
    return vec4<f16>(vec4<f32>(sat16(x.x), sat16(x.y), sat16(x.z), sat16(x.w)));
}

// Eight values as the four words of f16 pairs the scratch holds (W, K̂ and S₀ go there as
// f16: the passes that read them stage them as f16 anyway, so this halves their traffic and
// changes no result).
fn pack4(a: vec4<f32>) -> vec2<u32> {
    let x = vec4<f32>(sat16(a.x), sat16(a.y), sat16(a.z), sat16(a.w));
    return vec2<u32>(pack2x16float(x.xy), pack2x16float(x.zw));
}

fn pack8(a: vec4<f32>, b: vec4<f32>) -> vec4<u32> {
    return vec4<u32>(pack4(a), pack4(b));
}

// Sum over the DK4 lanes of this lane's row.
fn row_sum(x: f32) -> f32 {
    var s = x;
    for (var o = 1u; o < DK4; o <<= 1u) { s += subgroupShuffleXor(s, o); }
    return s;
}

// The scale that L2-normalises a row whose lanes hold x (1 without L2NORM).
fn l2_scale(x: vec4<f32>) -> f32 {
    let ss = row_sum(dot(x, x));
    return select(1.0, inverseSqrt(ss + 1e-6), flag(L2NORM));
}

#if !STATE_TC
// Row r (< len, else zeros) of the chunk from t0: the vec4 `lane` of the dk values at
// vec4 column col4 of the packed rows.
fn row4(col4: u32, t0: u32, len: u32, r: u32, lane: u32) -> vec4<f32> {
    let x = qkv[(t0 + min(r, len - 1u)) * (p.width / 4u) + col4 + lane];
    return select(vec4<f32>(0.0), x, r < len);
}
#endif
#endif

#if PREP_TC
// Per (chunk, value head): K̂ staged once (its norms from the staged rows, by subgroup
// shuffles); A = K̂·K̂ᵀ on the tensor cores, masked and scaled by β_t·exp(γ_t − γ_u);
// T = (I + A)⁻¹ by forward substitution in f32 (64 dependent rows); then
// W = T·diag(β·exp(γ))·K̂ and U = T·diag(β)·V on the tensor cores, 64 columns at a time, with
// this subgroup's band of each T form held as A fragments. gn's q scale is left to the
// tensor-core output pass, which computes it from the q rows it stages.
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, {{ACT}}> g: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> beta: array<f32>;
// W and K̂ as f16: per (token, value head) DK4 words of eight halves, W's dk then K̂'s dk.
@group(0) @binding(6) var<storage, read_write> w: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> u: array<vec2<u32>>; // f16, four a word pair

var<workgroup> kt: array<f16, 64u * HS>; // K̂ [token][dk], then V 64 columns at a time
var<workgroup> tm: array<f32, 64u * FS>; // A, then T, then products 64 columns at a time
var<workgroup> pt: array<f16, 64u * PS>; // T·diag(β·exp(γ)), then T·diag(β)
var<workgroup> gv: array<f32, 256>;      // per token: γ, k̂ scale, β; [192]: subgroup 0's sum of g

// Rows lid / 16 + 8·I, vec4 column lid % 16 of the chunk's V block from column j0 (zeros
// past dv), for U's product.
struct VWords {
#for I in 0..8
    v{{I}}: vec4<f32>,
#endfor
}

fn v_words(j0: u32, t0: u32, len: u32, h: u32, lid: u32) -> VWords {
    var vw: VWords;
    let vcol = v_at(0u, h) / 4u + j0 / 4u;
    let live = j0 + 4u * (lid % 16u) < p.dv;
#for I in 0..8
    vw.v{{I}} = select(vec4<f32>(0.0), row4(vcol, t0, len, {{I}}u * 8u + lid / 16u, min(lid % 16u, (p.dv - j0) / 4u - 1u)), live);
#endfor
    return vw;
}

@compute @workgroup_size(128)
fn delta_prep_tc(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nchunks * p.hv) { return; } // workgroup-uniform
    let h = idx % p.hv;
    let c = idx / p.hv;
    let kh = h / (p.hv / p.hk);
    let t0 = chunk_t0(c);
    let len = chunk_len(c);
    let band = lid / 32u;
    let kcol = k_at(0u, kh) / 4u;
#for I in 0..NIT
    let x{{I}} = row4(kcol, t0, len, {{I}}u * RPI + lid / DK4, lid % DK4);
#endfor
    // γ by a prefix sum over the two subgroups of the first 64 lanes.
    let tg = t0 + min(lid % 64u, len - 1u);
    let gl = select(0.0, g[tg * p.hv + h], lid < len);
    let gs = subgroupInclusiveAdd(gl);
    if (lid == 31u) { gv[192u] = gs; }
    if (lid < 64u) { gv[128u + lid] = select(0.0, beta[tg * p.hv + h], lid < len); }
    workgroupBarrier();
    if (lid < 64u) { gv[lid] = gs + select(0.0, gv[192u], lid >= 32u); }
#for I in 0..NIT
    {
        let r = {{I}}u * RPI + lid / DK4;
        let ks = l2_scale(x{{I}});
        if (lid % DK4 == 0u) { gv[64u + r] = ks; }
        let y = x{{I}} * ks;
        let b = r * HS + 4u * (lid % DK4);
        kt[b] = f16s(y.x);
        kt[b + 1u] = f16s(y.y);
        kt[b + 2u] = f16s(y.z);
        kt[b + 3u] = f16s(y.w);
    }
#endfor
    workgroupBarrier();
    // K̂ out for the walk, eight halves a word.
    for (var e = lid; e < 64u * (DK / 8u); e += 128u) {
        let t = e / (DK / 8u);
        let b = t * HS + 8u * (e % (DK / 8u));
        w[((c * 64u + t) * p.hv + h) * DK4 + DK / 8u + e % (DK / 8u)] = pack8(
            vec4<f32>(f32(kt[b]), f32(kt[b + 1u]), f32(kt[b + 2u]), f32(kt[b + 3u])),
            vec4<f32>(f32(kt[b + 4u]), f32(kt[b + 5u]), f32(kt[b + 6u]), f32(kt[b + 7u])));
    }
    if (lid < len) {
        let e = gn_at(t0 + lid, h);
        gn[e] = gv[lid];
        gn[e + 2u] = gv[64u + lid];
        gn[e + 3u] = gv[128u + lid];
    }
    {
        // A = K̂·K̂ᵀ; B = K̂ᵀ (row i, column u): kt [u][i] is its column-major form.
#for N in 0..4
        var a{{N}}: coop_mat16x16<f32, C>;
#endfor
        for (var k = 0u; k < DK; k += 16u) {
            let ka = coopLoadT<coop_mat16x16<f16, A>>(&kt[band * 16u * HS + k], HS);
#for N in 0..4
            a{{N}} = coopMultiplyAdd(ka, coopLoad<coop_mat16x16<f16, B>>(&kt[{{N}}u * 16u * HS + k], HS), a{{N}});
#endfor
        }
#for N in 0..4
        coopStoreT(a{{N}}, &tm[band * 16u * FS + {{N}}u * 16u], FS);
#endfor
    }
    workgroupBarrier();
    for (var e = lid; e < 64u * 64u; e += 128u) {
        let t = e / 64u;
        let uu = e % 64u;
        let on = uu < t && t < len;
        // Masked before the exp, so it only sees γ_t − γ_u ≤ 0.
        let f = gv[128u + t] * exp(select(0.0, gv[t] - gv[uu], on));
        tm[t * FS + uu] = select(0.0, tm[t * FS + uu] * f, on);
    }
    workgroupBarrier();
    // T = (I + A)⁻¹ in 16 × 16 blocks, in place in tm (fla's blocked solve; a substitution
    // over all 64 rows is a chain of 64 dependent steps, and measured 1 ms of this pass).
    // First the diagonal blocks T_bb = (I + A_bb)⁻¹: lane lid < 64 holds column lid % 16 of
    // block lid / 16 in registers (dG[j] is row 4·G + j) and forms it row by row,
    // T[r][c] = −Σ_{m<r} A[r][m]·T[m][c] for r > c, from broadcast rows of A (entries at or
    // above the diagonal are the masked zeros, so whole vec4 groups enter the sums).
    let db = (lid / 16u) % 4u;
    let dc = lid % 16u;
#for G in 0..4
    var d{{G}} = select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(0u, 1u, 2u, 3u) + 4u * {{G}}u == vec4<u32>(dc));
#endfor
    if (lid < 64u) {
        for (var r = 1u; r < 16u; r++) {
            let a = (16u * db + r) * FS + 16u * db;
            var acc = vec4<f32>(0.0);
#for G in 0..4
            acc += d{{G}} * vec4<f32>(tm[a + 4u * {{G}}u], tm[a + 4u * {{G}}u + 1u], tm[a + 4u * {{G}}u + 2u], tm[a + 4u * {{G}}u + 3u]);
#endfor
            let on = vec4<bool>(r > dc);
            let v = vec4<f32>(-(acc.x + acc.y + acc.z + acc.w));
#for G in 0..4
            d{{G}} = select(d{{G}}, v, (vec4<u32>(0u, 1u, 2u, 3u) + 4u * {{G}}u == vec4<u32>(r)) & on);
#endfor
        }
    }
    workgroupBarrier();
    if (lid < 64u) {
#for G in 0..4
        tm[(16u * db + 4u * {{G}}u) * FS + 16u * db + dc] = d{{G}}.x;
        tm[(16u * db + 4u * {{G}}u + 1u) * FS + 16u * db + dc] = d{{G}}.y;
        tm[(16u * db + 4u * {{G}}u + 2u) * FS + 16u * db + dc] = d{{G}}.z;
        tm[(16u * db + 4u * {{G}}u + 3u) * FS + 16u * db + dc] = d{{G}}.w;
#endfor
    }
    workgroupBarrier();
    // Then block rows I = 1, 2, 3 in turn: T_IJ = −T_II·Σ_{K=J}^{I−1} A_IK·T_KJ for J < I, from
    // row block I of A (not yet overwritten) and the T blocks above it. An invocation takes
    // the elements (row lid / 16 + 8·Q, column lid % 16) of each block; X = the sum goes into
    // A_IJ's place, then T_IJ.
    let br = lid / 16u;
    let bc = lid % 16u;
#for I in 1..4
    {
#for J in 0..I
#for Q in 0..2
        var x{{J}}_{{Q}} = 0.0;
#for K in J..I
        for (var m = 0u; m < 16u; m++) {
            x{{J}}_{{Q}} += tm[(16u * {{I}}u + br + 8u * {{Q}}u) * FS + 16u * {{K}}u + m] * tm[(16u * {{K}}u + m) * FS + 16u * {{J}}u + bc];
        }
#endfor
#endfor
#endfor
        workgroupBarrier();
#for J in 0..I
#for Q in 0..2
        tm[(16u * {{I}}u + br + 8u * {{Q}}u) * FS + 16u * {{J}}u + bc] = x{{J}}_{{Q}};
#endfor
#endfor
        workgroupBarrier();
#for J in 0..I
#for Q in 0..2
        var y{{J}}_{{Q}} = 0.0;
        for (var m = 0u; m < 16u; m++) {
            y{{J}}_{{Q}} -= tm[(16u * {{I}}u + br + 8u * {{Q}}u) * FS + 16u * {{I}}u + m] * tm[(16u * {{I}}u + m) * FS + 16u * {{J}}u + bc];
        }
#endfor
#endfor
        workgroupBarrier();
#for J in 0..I
#for Q in 0..2
        tm[(16u * {{I}}u + br + 8u * {{Q}}u) * FS + 16u * {{J}}u + bc] = y{{J}}_{{Q}};
#endfor
#endfor
        workgroupBarrier();
    }
#endfor
    // This band's rows of T·diag(β·exp(γ)) (for W), then of T·diag(β) (for U), as fragments
    // (tm holds T below the diagonal blocks' unit diagonals and zeros above).
#for F in 0..2
    for (var e = lid; e < 64u * 64u; e += 128u) {
        let t = e / 64u;
        let uu = e % 64u;
        let col = select(gv[128u + uu], gv[128u + uu] * exp(gv[uu]), {{F}}u == 0u);
        pt[t * PS + uu] = f16s(select(0.0, tm[t * FS + uu] * col, uu <= t && t < len));
    }
    workgroupBarrier();
#for K in 0..4
    let t{{F}}_{{K}} = coopLoadT<coop_mat16x16<f16, A>>(&pt[band * 16u * PS + {{K}}u * 16u], PS);
#endfor
    workgroupBarrier();
#endfor
    // W = (T·diag(β·exp(γ)))·K̂, 64 columns of dk at a time; B = K̂ (row u, column i), row-major.
    for (var i0 = 0u; i0 < DK; i0 += 64u) {
#for N in 0..4
        var w{{N}}: coop_mat16x16<f32, C>;
#endfor
#for K in 0..4
#for N in 0..4
        w{{N}} = coopMultiplyAdd(t0_{{K}}, coopLoadT<coop_mat16x16<f16, B>>(&kt[{{K}}u * 16u * HS + i0 + {{N}}u * 16u], HS), w{{N}});
#endfor
#endfor
#for N in 0..4
        coopStoreT(w{{N}}, &tm[band * 16u * FS + {{N}}u * 16u], FS);
#endfor
        workgroupBarrier();
        for (var e = lid; e < 64u * 8u; e += 128u) {
            let t = e / 8u;
            let f = t * FS + 8u * (e % 8u);
            w[((c * 64u + t) * p.hv + h) * DK4 + i0 / 8u + e % 8u] = pack8(
                vec4<f32>(tm[f], tm[f + 1u], tm[f + 2u], tm[f + 3u]),
                vec4<f32>(tm[f + 4u], tm[f + 5u], tm[f + 6u], tm[f + 7u]));
        }
        workgroupBarrier();
    }
    // U = (T·diag(β))·V, 64 columns of dv at a time (dv is a multiple of 32). (V's first block
    // loaded before the inverse, to be in flight during it, held 12 more registers through
    // the pass, for no gain.)
    var vw = v_words(0u, t0, len, h, lid);
    for (var j0 = 0u; j0 < p.dv; j0 += 64u) {
#for I in 0..8
        {
            let b = ({{I}}u * 8u + lid / 16u) * HS + 4u * (lid % 16u);
            kt[b] = f16s(vw.v{{I}}.x);
            kt[b + 1u] = f16s(vw.v{{I}}.y);
            kt[b + 2u] = f16s(vw.v{{I}}.z);
            kt[b + 3u] = f16s(vw.v{{I}}.w);
        }
#endfor
        // The next block's V, in flight during this one's product.
        if (j0 + 64u < p.dv) { vw = v_words(j0 + 64u, t0, len, h, lid); }
        workgroupBarrier();
#for N in 0..4
        var u{{N}}: coop_mat16x16<f32, C>;
#endfor
#for K in 0..4
#for N in 0..4
        u{{N}} = coopMultiplyAdd(t1_{{K}}, coopLoadT<coop_mat16x16<f16, B>>(&kt[{{K}}u * 16u * HS + {{N}}u * 16u], HS), u{{N}});
#endfor
#endfor
#for N in 0..4
        coopStoreT(u{{N}}, &tm[band * 16u * FS + {{N}}u * 16u], FS);
#endfor
        workgroupBarrier();
        for (var e = lid; e < 64u * 16u; e += 128u) {
            let t = e / 16u;
            let j = j0 + 4u * (e % 16u);
            let f = t * FS + 4u * (e % 16u);
            if (j < p.dv) {
                u[(((c * 64u + t) * p.hv + h) * p.dv + j) / 4u] = pack4(vec4<f32>(tm[f], tm[f + 1u], tm[f + 2u], tm[f + 3u]));
            }
        }
        workgroupBarrier();
    }
}
#endif

#if STATE_TC
// Per (sequence, value head, 32 state columns): the walk over the sequence's chunks with the
// state's columns in registers (f32; invocation lid holds rows lid / 8 + 16k and 4 columns
// from cq). Per chunk: hand the entering state S₀ to the output pass and to workgroup memory
// as f16; W·S₀ on the tensor cores; V′ = U − W·S₀ (in place of U, f16); then
// S₁ = exp(γ_last)·S₀ + K̂ᵀ·(diag(exp(γ_last − γ))·V′) on the tensor cores.
// (No qkv: K̂ comes from the prep's words.) A chunk's words, U rows and table entries are
// loaded at the top of its step; its scratch rows past its end are the prep's zeros.
// (W and K̂ fragments loaded straight from storage instead of staged made this pass 1.8×
// slower on the H200.)
@group(0) @binding(1) var<storage, read_write> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> u: array<vec4<f16>>; // U, then V′
@group(0) @binding(3) var<storage, read_write> s0: array<vec2<u32>>; // f16, four a word pair
@group(0) @binding(6) var<storage, read_write> state: array<f32>;

const RB: u32 = DK / 64u; // 16-row bands of K̂ᵀ·V′ per subgroup
var<workgroup> hs: array<f16, DK * BS>;  // S₀ [i][32], then V′ scaled [token][32]
var<workgroup> ws: array<f16, 64u * HS>; // W [token][dk], then K̂ [token][dk]
var<workgroup> fw: array<f32, DK * 36u>; // W·S₀ [token][32], then K̂ᵀ·V′ [i][32]

// One chunk's words for this invocation: its W or K̂ word (f16 from the prep: a lane's word
// is W's in the first half of a row, K̂'s in the second) of rows I·RPI + lid / DK4, and its U
// words of row lid / 2 (16 columns from (lid % 2)·16 of this workgroup's 32).
struct ChunkWords {
#for I in 0..NIT
    w{{I}}: vec4<u32>,
#endfor
#for M in 0..4
    u{{M}}: vec4<f16>,
#endfor
    // The chunk's flags, length and γ at its last token and at this invocation's V′ row.
    cf: u32,
    len: u32,
    g_last: f32,
    g_row: f32,
}

fn chunk_words(c: u32, lid: u32, h: u32, j0: u32) -> ChunkWords {
    var cw: ChunkWords;
#for I in 0..NIT
    cw.w{{I}} = w[((c * 64u + {{I}}u * RPI + lid / DK4) * p.hv + h) * DK4 + lid % DK4];
#endfor
    let ub = (((c * 64u + lid / 2u) * p.hv + h) * p.dv + j0 + (lid % 2u) * 16u) / 4u;
#for M in 0..4
    cw.u{{M}} = u[ub + {{M}}u];
#endfor
    let t0 = chunk_t0(c);
    cw.len = chunk_len(c);
    cw.cf = chunks[c * 4u + 3u];
    cw.g_last = gn[gn_at(t0 + cw.len - 1u, h)];
    cw.g_row = gn[gn_at(t0 + min(lid / 2u, cw.len - 1u), h)];
    return cw;
}

@compute @workgroup_size(128)
fn delta_state_tc(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = p.dv / 32u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.hv * blocks) { return; } // workgroup-uniform
    let j0 = (idx % blocks) * 32u;
    let h = (idx / blocks) % p.hv;
    let s = idx / (blocks * p.hv);
    let band = lid / 32u;
    let first = chunks[p.nchunks * 4u + s];
    let end = chunks[p.nchunks * 4u + s + 1u];
    let c_lo = first + min(p.t_lo, end - first);
    let c_hi = first + min(p.t_hi, end - first);
    if (c_lo >= c_hi) { return; } // workgroup-uniform
    let dv = p.dv;
    let cq = (lid % 8u) * 4u;
    let sbase = ((s * p.hv + h) * DK) * dv + j0 + cq;
    var st: array<vec4<f32>, KF>;
    if (flag(INIT) || p.t_lo > 0u) {
        for (var k = 0u; k < KF; k++) {
            let b = sbase + (lid / 8u + 16u * k) * dv;
            st[k] = vec4<f32>(state[b], state[b + 1u], state[b + 2u], state[b + 3u]);
        }
    }
    // SIMT roles: V′ rows lid / 2 with 16 columns from vq.
    let vr = lid / 2u;
    let vq = (lid % 2u) * 16u;
    for (var c = c_lo; c < c_hi; c++) {
        // This chunk's words, in flight during the S₀ hand-over. (Loaded a chunk ahead they
        // held 27 more registers, 206 against 179, which kept the H200 at two workgroups
        // per SM: 0.92 ms against 0.74 on fla's shape.)
        let cw = chunk_words(c, lid, h, j0);
        if ((cw.cf & FRESH) != 0u || ((cw.cf & FIRST) != 0u && !flag(INIT))) {
            for (var k = 0u; k < KF; k++) { st[k] = vec4<f32>(0.0); }
        }
        let len = cw.len;
        let g_last = cw.g_last;
        let cbase = ((c * p.hv + h) * DK) * dv + j0 + cq;
        // This chunk's words (`cw`); halves from column kq.
        let kq = 8u * (lid % (DK4 / 2u));
#for I in 0..NIT
        let wr{{I}} = {{I}}u * RPI + lid / DK4;
#endfor
        let live = vr < len;
        let ub = (((c * 64u + vr) * p.hv + h) * dv + j0 + vq) / 4u;
        let f = select(0.0, exp(g_last - cw.g_row), live);
        // The previous chunk's readers of hs, ws and fw are done.
        workgroupBarrier();
        for (var k = 0u; k < KF; k++) {
            let r = lid / 8u + 16u * k;
            s0[(cbase + r * dv) / 4u] = pack4(st[k]);
            hs[r * BS + cq] = f16s(st[k].x);
            hs[r * BS + cq + 1u] = f16s(st[k].y);
            hs[r * BS + cq + 2u] = f16s(st[k].z);
            hs[r * BS + cq + 3u] = f16s(st[k].w);
        }
        if (lid % DK4 < DK4 / 2u) {
#for I in 0..NIT
#for Z in 0..4
            let w{{I}}_{{Z}} = unpack2x16float(cw.w{{I}}[{{Z}}u]);
            ws[wr{{I}} * HS + kq + 2u * {{Z}}u] = f16(w{{I}}_{{Z}}.x);
            ws[wr{{I}} * HS + kq + 2u * {{Z}}u + 1u] = f16(w{{I}}_{{Z}}.y);
#endfor
#endfor
        }
        workgroupBarrier();
        {
            // W·S₀: this band's 16 tokens × 32 columns.
            var p0: coop_mat16x16<f32, C>;
            var p1: coop_mat16x16<f32, C>;
            for (var k = 0u; k < DK; k += 16u) {
                let wa = coopLoadT<coop_mat16x16<f16, A>>(&ws[band * 16u * HS + k], HS);
                p0 = coopMultiplyAdd(wa, coopLoadT<coop_mat16x16<f16, B>>(&hs[k * BS], BS), p0);
                p1 = coopMultiplyAdd(wa, coopLoadT<coop_mat16x16<f16, B>>(&hs[k * BS + 16u], BS), p1);
            }
            coopStoreT(p0, &fw[band * 16u * 36u], 36u);
            coopStoreT(p1, &fw[band * 16u * 36u + 16u], 36u);
        }
        workgroupBarrier();
        // V′ = U − W·S₀ into U; its f16 copy scaled by exp(γ_last − γ_t) into hs (whose
        // readers are done); K̂ into ws.
#for M in 0..4
        {
            let fb = vr * 36u + vq + {{M}}u * 4u;
            let vp = select(vec4<f32>(0.0), vec4<f32>(cw.u{{M}}) - vec4<f32>(fw[fb], fw[fb + 1u], fw[fb + 2u], fw[fb + 3u]), live);
            u[ub + {{M}}u] = f16v(vp);
            let hb = vr * BS + vq + {{M}}u * 4u;
            hs[hb] = f16s(vp.x * f);
            hs[hb + 1u] = f16s(vp.y * f);
            hs[hb + 2u] = f16s(vp.z * f);
            hs[hb + 3u] = f16s(vp.w * f);
        }
#endfor
        if (lid % DK4 >= DK4 / 2u) {
#for I in 0..NIT
#for Z in 0..4
            let k{{I}}_{{Z}} = unpack2x16float(cw.w{{I}}[{{Z}}u]);
            ws[wr{{I}} * HS + kq + 2u * {{Z}}u] = f16(k{{I}}_{{Z}}.x);
            ws[wr{{I}} * HS + kq + 2u * {{Z}}u + 1u] = f16(k{{I}}_{{Z}}.y);
#endfor
#endfor
        }
        workgroupBarrier();
        {
            // K̂ᵀ·V′: rows 16·(RB·band + R) of dk × 32 columns. A = K̂ᵀ (row i, column t): ws
            // [t][i] is its column-major form.
#for R in 0..RB
            var q{{R}}_0: coop_mat16x16<f32, C>;
            var q{{R}}_1: coop_mat16x16<f32, C>;
#endfor
            for (var k = 0u; k < 64u; k += 16u) {
                let vb0 = coopLoadT<coop_mat16x16<f16, B>>(&hs[k * BS], BS);
                let vb1 = coopLoadT<coop_mat16x16<f16, B>>(&hs[k * BS + 16u], BS);
#for R in 0..RB
                {
                    let ka = coopLoad<coop_mat16x16<f16, A>>(&ws[k * HS + (RB * band + {{R}}u) * 16u], HS);
                    q{{R}}_0 = coopMultiplyAdd(ka, vb0, q{{R}}_0);
                    q{{R}}_1 = coopMultiplyAdd(ka, vb1, q{{R}}_1);
                }
#endfor
            }
#for R in 0..RB
            coopStoreT(q{{R}}_0, &fw[(RB * band + {{R}}u) * 16u * 36u], 36u);
            coopStoreT(q{{R}}_1, &fw[(RB * band + {{R}}u) * 16u * 36u + 16u], 36u);
#endfor
        }
        workgroupBarrier();
        let dl = exp(g_last);
        for (var k = 0u; k < KF; k++) {
            let f = (lid / 8u + 16u * k) * 36u + cq;
            st[k] = st[k] * dl + vec4<f32>(fw[f], fw[f + 1u], fw[f + 2u], fw[f + 3u]);
        }
    }
    for (var k = 0u; k < KF; k++) {
        let b = sbase + (lid / 8u + 16u * k) * dv;
        state[b] = st[k].x;
        state[b + 1u] = st[k].y;
        state[b + 2u] = st[k].z;
        state[b + 3u] = st[k].w;
    }
}
#endif

#if OUT_TC
// Per (chunk, value head): Q̂ as A fragments; the scores Q̂·K̂ᵀ on the tensor cores, masked and
// decayed to P (exp(γ_t − γ_u), u ≤ t) in f32 and kept as A fragments; then per 32 columns
// of dv, o = exp(γ_t)·(Q̂·S₀) + P·V′ from S₀ and V′ staged as f16.
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> u: array<vec4<f16>>; // V′
@group(0) @binding(3) var<storage, read_write> s0: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> w: array<vec4<u32>>; // K̂ in each row's second half

// Q̂ [token][dk], then K̂, then per 32 columns S₀ [i][32] with V′ [token][32] below it.
var<workgroup> at: array<f16, {{AT_HALVES}}>;
var<workgroup> sc: array<f32, 64u * FS>; // scores [t][u], then Q̂·S₀ | P·V′ [t][32 | 32]
var<workgroup> pt: array<f16, 64u * PS>; // P [t][u]
var<workgroup> gv: array<f32, 128>;      // per token: γ

// S₀'s rows lid / 8 + 16·K and V′'s rows lid / 8 + 16·M, vec4 column lid % 8 of the 32
// columns from j0 (S₀ as f16 words).
struct OutWords {
#for K in 0..KF
    s{{K}}: vec2<u32>,
#endfor
#for M in 0..4
    v{{M}}: vec4<f16>,
#endfor
}

fn out_words(j0: u32, c: u32, h: u32, lid: u32) -> OutWords {
    var ow: OutWords;
    let cbase = ((c * p.hv + h) * DK) * p.dv;
    let q4 = lid % 8u;
#for K in 0..KF
    ow.s{{K}} = s0[(cbase + (lid / 8u + 16u * {{K}}u) * p.dv + j0) / 4u + q4];
#endfor
#for M in 0..4
    ow.v{{M}} = u[(((c * 64u + lid / 8u + 16u * {{M}}u) * p.hv + h) * p.dv + j0) / 4u + q4];
#endfor
    return ow;
}

@compute @workgroup_size(128)
fn delta_out_tc(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nchunks * p.hv) { return; } // workgroup-uniform
    let h = idx % p.hv;
    let c = idx / p.hv;
    let kh = h / (p.hv / p.hk);
    let t0 = chunk_t0(c);
    let len = chunk_len(c);
    let band = lid / 32u;
    // The chunk's q rows (their scales from the rows) and K̂ words (eight halves from column
    // kq of its rows), all issued before any is used.
    let qcol = q_at(0u, kh) / 4u;
#for I in 0..NIT
    let xr{{I}} = {{I}}u * RPI + lid / DK4;
    let qx{{I}} = row4(qcol, t0, len, xr{{I}}, lid % DK4);
#endfor
    let kq = 8u * (lid % (DK4 / 2u));
#for I in 0..KWP
    let kr{{I}} = {{I}}u * 2u * RPI + lid / (DK4 / 2u);
    let kw{{I}} = w[((c * 64u + kr{{I}}) * p.hv + h) * DK4 + DK4 / 2u + lid % (DK4 / 2u)];
#endfor
    if (lid < 64u) { gv[lid] = gn[gn_at(t0 + min(lid, len - 1u), h)]; }
#for I in 0..NIT
    {
        let y = qx{{I}} * (p.scale * l2_scale(qx{{I}}));
        let b = xr{{I}} * HS + 4u * (lid % DK4);
        at[b] = f16s(y.x);
        at[b + 1u] = f16s(y.y);
        at[b + 2u] = f16s(y.z);
        at[b + 3u] = f16s(y.w);
    }
#endfor
    workgroupBarrier();
#for K in 0..KF
    let qa{{K}} = coopLoadT<coop_mat16x16<f16, A>>(&at[band * 16u * HS + {{K}}u * 16u], HS);
#endfor
    workgroupBarrier();
#for I in 0..KWP
#for Z in 0..4
    let k{{I}}_{{Z}} = unpack2x16float(kw{{I}}[{{Z}}u]);
    at[kr{{I}} * HS + kq + 2u * {{Z}}u] = f16(k{{I}}_{{Z}}.x);
    at[kr{{I}} * HS + kq + 2u * {{Z}}u + 1u] = f16(k{{I}}_{{Z}}.y);
#endfor
#endfor
    workgroupBarrier();
    // The first 32 columns' S₀ and V′, in flight during the scores.
    var ow = out_words(0u, c, h, lid);
    {
        // B = K̂ᵀ (row i, column u): at [u][i] is its column-major form.
#for N in 0..4
        var s{{N}}: coop_mat16x16<f32, C>;
#endfor
#for K in 0..KF
#for N in 0..4
        s{{N}} = coopMultiplyAdd(qa{{K}}, coopLoad<coop_mat16x16<f16, B>>(&at[{{N}}u * 16u * HS + {{K}}u * 16u], HS), s{{N}});
#endfor
#endfor
#for N in 0..4
        coopStoreT(s{{N}}, &sc[band * 16u * FS + {{N}}u * 16u], FS);
#endfor
    }
    workgroupBarrier();
    for (var e = lid; e < 64u * 64u; e += 128u) {
        let t = e / 64u;
        let uu = e % 64u;
        let on = uu <= t && t < len;
        pt[t * PS + uu] = f16s(select(0.0, sc[t * FS + uu] * exp(select(0.0, gv[t] - gv[uu], on)), on));
    }
    workgroupBarrier();
#for K in 0..4
    let pa{{K}} = coopLoadT<coop_mat16x16<f16, A>>(&pt[band * 16u * PS + {{K}}u * 16u], PS);
#endfor
    for (var j0 = 0u; j0 < p.dv; j0 += 32u) {
        // The previous block's (or the scores') readers of `at` and `sc` are done.
        workgroupBarrier();
        let q4 = lid % 8u;
#for K in 0..KF
        {
            let b = (lid / 8u + 16u * {{K}}u) * BS + 4u * q4;
            let lo = unpack2x16float(ow.s{{K}}.x);
            let hi = unpack2x16float(ow.s{{K}}.y);
            at[b] = f16(lo.x);
            at[b + 1u] = f16(lo.y);
            at[b + 2u] = f16(hi.x);
            at[b + 3u] = f16(hi.y);
        }
#endfor
#for M in 0..4
        {
            let b = (DK + lid / 8u + 16u * {{M}}u) * BS + 4u * q4;
            at[b] = ow.v{{M}}.x;
            at[b + 1u] = ow.v{{M}}.y;
            at[b + 2u] = ow.v{{M}}.z;
            at[b + 3u] = ow.v{{M}}.w;
        }
#endfor
        // The next 32 columns', in flight during this block's products.
        if (j0 + 32u < p.dv) { ow = out_words(j0 + 32u, c, h, lid); }
        workgroupBarrier();
        var o0: coop_mat16x16<f32, C>;
        var o1: coop_mat16x16<f32, C>;
        var v0: coop_mat16x16<f32, C>;
        var v1: coop_mat16x16<f32, C>;
#for K in 0..KF
        o0 = coopMultiplyAdd(qa{{K}}, coopLoadT<coop_mat16x16<f16, B>>(&at[{{K}}u * 16u * BS], BS), o0);
        o1 = coopMultiplyAdd(qa{{K}}, coopLoadT<coop_mat16x16<f16, B>>(&at[{{K}}u * 16u * BS + 16u], BS), o1);
#endfor
#for K in 0..4
        v0 = coopMultiplyAdd(pa{{K}}, coopLoadT<coop_mat16x16<f16, B>>(&at[(DK + {{K}}u * 16u) * BS], BS), v0);
        v1 = coopMultiplyAdd(pa{{K}}, coopLoadT<coop_mat16x16<f16, B>>(&at[(DK + {{K}}u * 16u) * BS + 16u], BS), v1);
#endfor
        coopStoreT(o0, &sc[band * 16u * FS], FS);
        coopStoreT(o1, &sc[band * 16u * FS + 16u], FS);
        coopStoreT(v0, &sc[band * 16u * FS + 32u], FS);
        coopStoreT(v1, &sc[band * 16u * FS + 48u], FS);
        workgroupBarrier();
        for (var e = lid; e < len * 8u; e += 128u) {
            let t = e / 8u;
            let f = t * FS + 4u * (e % 8u);
            let a = vec4<f32>(sc[f], sc[f + 1u], sc[f + 2u], sc[f + 3u]);
            let b = vec4<f32>(sc[f + 32u], sc[f + 33u], sc[f + 34u], sc[f + 35u]);
            out[(((t0 + t) * p.hv + h) * p.dv + j0) / 4u + e % 8u] = exp(gv[t]) * a + b;
        }
    }
}
#endif
