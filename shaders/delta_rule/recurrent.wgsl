// The recurrent form (included by delta_rule.wgsl): the decode step, and the chunked prefill's
// oracle. A workgroup takes 64 value columns of one (sequence, value head); invocation j keeps
// column j of the state, S[:, j] (DK floats), in registers and walks the tokens [t_lo, t_hi) of
// its sequence (later pieces continue with INIT: lavapipe ends very long invocations). Each
// token's q and k are staged in workgroup memory once for the 64 columns; every invocation
// forms the norms itself (DK reads of a broadcast value, no reduction tree).
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

@compute @workgroup_size(64)
fn delta_recurrent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Workgroup index: (sequence · Hv + head) · column blocks + block.
    let blocks = (p.dv + 63u) / 64u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.hv * blocks) { return; } // workgroup-uniform
    let j = (idx % blocks) * 64u + lid;
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
    var st: array<f32, DK>;
    let resume = flag(INIT) || p.t_lo > 0u;
    if (resume && lo < hi) {
        for (var i = 0u; i < DK; i++) { st[i] = state[sbase + i * p.dv]; }
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
        for (var i = 0u; i < DK; i++) {
            st[i] = select(st[i] * select(decay, gs[i], flag(GATE_K)), 0.0, fresh);
            kv += st[i] * ks[i];
        }
        let delta = (qkv[v_at(t, h) + jj] - kv * kscale) * beta[t * p.hv + h];
        var o = 0.0;
        for (var i = 0u; i < DK; i++) {
            st[i] += ks[i] * kscale * delta;
            o += st[i] * qs[i];
        }
        if (live) { out[(t * p.hv + h) * p.dv + jj] = o * qscale; }
    }
    if (live && lo < hi) {
        for (var i = 0u; i < DK; i++) { state[sbase + i * p.dv] = st[i]; }
    }
}
#endif
