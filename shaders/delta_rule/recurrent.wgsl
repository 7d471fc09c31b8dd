// The recurrent form (included by delta_rule.wgsl): the decode step, and the chunked prefill's
// oracle. A workgroup takes COLS value columns of one (sequence, value head), LANES = 64 / COLS
// invocations per column, each keeping DK / LANES rows of it (rows r, r + LANES, …) in
// registers, and walks the tokens [t_lo, t_hi) of its sequence (later pieces continue with
// INIT: lavapipe ends very long invocations). COLS 64 (one invocation per column) when the
// batch fills the GPU; COLS 16 gives a small batch four times the workgroups, at the cost of
// two 4-lane sums per token through workgroup memory. Each token's q and k are staged in
// workgroup memory once for the workgroup; every invocation forms the norms itself (DK reads of
// a broadcast value, no reduction tree).
#if RECURRENT
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> g: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> beta: array<f32>;
@group(0) @binding(4) var<storage, read> seqs: array<u32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

#include packed_seqs

var<workgroup> qs: array<f32, DK>;
var<workgroup> ks: array<f32, DK>;
var<workgroup> gs: array<f32, DK>; // GATE_K: exp(g) per key channel
const COLS: u32 = {{COLS}}u;
const LANES: u32 = 64u / COLS;
const ROWS: u32 = DK / LANES;
var<workgroup> part: array<f32, 64>;

// The sum over a column's LANES invocations (uniform control flow: it has barriers).
fn column_sum(v: f32, lid: u32) -> f32 {
    if (LANES == 1u) { return v; }
    part[lid] = v;
    workgroupBarrier();
    let b = lid - lid % LANES;
    var s = 0.0;
    for (var r = 0u; r < LANES; r++) { s += part[b + r]; }
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(64)
fn delta_recurrent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Workgroup index: (sequence · Hv + head) · column blocks + block.
    let blocks = (p.dv + COLS - 1u) / COLS;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.hv * blocks) { return; } // workgroup-uniform
    let j = (idx % blocks) * COLS + lid / LANES;
    let r0 = lid % LANES; // this invocation's rows: r0, r0 + LANES, …
    let h = (idx / blocks) % p.hv;
    let s = idx / (blocks * p.hv);
    let kh = h / (p.hv / p.hk);
    let live = j < p.dv;
    let jj = min(j, p.dv - 1u);
    let t0 = seqs[s];
    let t1 = seqs[s + 1u];
    let lo = t0 + min(p.t_lo, t1 - t0);
    let hi = t0 + min(p.t_hi, t1 - t0);
    let sbase = ((s * p.hv + h) * DK) * p.dv + jj;
    var st: array<f32, ROWS>;
    let resume = flag(INIT) || p.t_lo > 0u;
    if (resume && lo < hi) {
        for (var m = 0u; m < ROWS; m++) { st[m] = state[sbase + (r0 + m * LANES) * p.dv]; }
    }
    for (var t = lo; t < hi; t++) {
        workgroupBarrier(); // the previous token's readers of qs and ks are done
        for (var i = lid; i < DK; i += 64u) {
            qs[i] = qkv[q_at(t, kh) + i];
            ks[i] = qkv[k_at(t, kh) + i];
            if (flag(GATE_K)) { gs[i] = exp(g[(t * p.hv + h) * DK + i]); }
        }
        workgroupBarrier();
        var qscale = p.scale;
        var kscale = 1.0;
        if (flag(L2NORM)) {
            var nq = 0.0;
            var nk = 0.0;
            for (var i = 0u; i < DK; i++) {
                nq += qs[i] * qs[i];
                nk += ks[i] * ks[i];
            }
            qscale *= inverseSqrt(nq + 1e-6);
            kscale = inverseSqrt(nk + 1e-6);
        }
        // A fresh start is a flag, not a multiplication by 0, so a NaN before it stays there.
        let fresh = is_reset(t) || (t == t0 && !resume);
        var decay = 1.0;
        if (!flag(GATE_K)) { decay = exp(g[t * p.hv + h]); }
        var kv = 0.0;
        for (var m = 0u; m < ROWS; m++) {
            let i = r0 + m * LANES;
            st[m] = select(st[m] * select(decay, gs[i], flag(GATE_K)), 0.0, fresh);
            kv += st[m] * ks[i];
        }
        kv = column_sum(kv, lid);
        let delta = (qkv[v_at(t, h) + jj] - kv * kscale) * beta[t * p.hv + h];
        var o = 0.0;
        for (var m = 0u; m < ROWS; m++) {
            let i = r0 + m * LANES;
            st[m] += ks[i] * kscale * delta;
            o += st[m] * qs[i];
        }
        o = column_sum(o, lid);
        if (live && r0 == 0u) { out[(t * p.hv + h) * p.dv + jj] = o * qscale; }
    }
    if (live && lo < hi) {
        for (var m = 0u; m < ROWS; m++) { state[sbase + (r0 + m * LANES) * p.dv] = st[m]; }
    }
}
#endif
