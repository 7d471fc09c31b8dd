// Selective scan: the chunked affine-pair scan in workgroup memory (with or without subgroups) (included by selective_scan.wgsl).
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
