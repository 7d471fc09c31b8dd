// Workgroup reductions shared by row-wise kernels (included with `#include reduce`): one
// workgroup per row, WG invocations. Call the reductions from uniform control flow.
// Entry points take a `RowInvocation` (its built-ins depend on SUBGROUPS) and call `lane()`.
struct RowInvocation {
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if SUBGROUPS
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
#endif
}

struct Lane { lid: u32, sg_lane: u32, sg_id: u32, sg_count: u32 }

fn lane(inv: RowInvocation) -> Lane {
#if SUBGROUPS
    return Lane(inv.lid, inv.sg_lane, inv.sg_id, inv.sg_count);
#else
    return Lane(inv.lid, 0u, 0u, 0u);
#endif
}

// Flat workgroup index over a 2-D grid (see ops::grid).
fn row_of(inv: RowInvocation) -> u32 {
    return inv.wid.x + inv.wid.y * inv.nwg.x;
}
var<workgroup> red_f: array<f32, {{WG}}>;
var<workgroup> red_u: array<u32, {{WG}}>;

fn reduce_sum(v: f32, l: Lane) -> f32 {
#if SUBGROUPS
    let s = subgroupAdd(v);
    if (l.sg_lane == 0u) { red_f[l.sg_id] = s; }
    workgroupBarrier();
    var t = 0.0;
    for (var i = 0u; i < l.sg_count; i++) { t += red_f[i]; }
    workgroupBarrier();
    return t;
#else
    red_f[l.lid] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
        if (l.lid < s) { red_f[l.lid] += red_f[l.lid + s]; }
        workgroupBarrier();
    }
    let t = red_f[0];
    workgroupBarrier();
    return t;
#endif
}

fn reduce_max(v: f32, l: Lane) -> f32 {
#if SUBGROUPS
    let s = subgroupMax(v);
    if (l.sg_lane == 0u) { red_f[l.sg_id] = s; }
    workgroupBarrier();
    var t = red_f[0];
    for (var i = 1u; i < l.sg_count; i++) { t = max(t, red_f[i]); }
    workgroupBarrier();
    return t;
#else
    red_f[l.lid] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
        if (l.lid < s) { red_f[l.lid] = max(red_f[l.lid], red_f[l.lid + s]); }
        workgroupBarrier();
    }
    let t = red_f[0];
    workgroupBarrier();
    return t;
#endif
}

// Sum of u32 counts (workgroup memory only: exact on every adapter).
fn reduce_count(v: u32, l: Lane) -> u32 {
    red_u[l.lid] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
        if (l.lid < s) { red_u[l.lid] += red_u[l.lid + s]; }
        workgroupBarrier();
    }
    let t = red_u[0];
    workgroupBarrier();
    return t;
}

// (max value, lowest index holding it) over the workgroup.
fn reduce_argmax(v: f32, i: u32, l: Lane) -> u32 {
    red_f[l.lid] = v;
    red_u[l.lid] = i;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
        if (l.lid < s) {
            let ov = red_f[l.lid + s];
            let oi = red_u[l.lid + s];
            if (ov > red_f[l.lid] || (ov == red_f[l.lid] && oi < red_u[l.lid])) {
                red_f[l.lid] = ov;
                red_u[l.lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let t = red_u[0];
    workgroupBarrier();
    return t;
}
