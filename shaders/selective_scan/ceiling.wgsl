// Selective scan: the ceiling probe (the arithmetic with the recurrence cut; a bound, not a scan) (included by selective_scan.wgsl).
#if CEILING
// Bench probe, not a scan: per channel and token the loads, stores and transcendental ops of
// the N = 16 scan (softplus, 16 decays, silu) with the recurrence cut (each token's states
// start from zero), so nothing is serial and tokens are independent. With POLY, the decays of
// states 12…15 use exp2_fma (the FMA pipe) instead of the special-function unit; COMPUTE_ONLY
// makes the inputs from the index and stores nothing (the arithmetic alone). A workgroup
// takes 64 channels of one group × 4 tiles of 16 tokens, four tokens per invocation and tile;
// B and C of a tile are staged.
var<workgroup> c_bc: array<vec4<f32>, 128>; // [token][B quarters 0..3, C quarters 0..3]
const CEIL_TILES: u32 = 4u;

// 2^x for x ≥ −126 on the FMA pipe: round-to-nearest through the 1.5·2²³ shifter, a degree-5
// polynomial on [−0.5, 0.5] (relative error ~2e-7), and the integer part added to the exponent
// bits (the shifter's own bits vanish in the shift). `shifter` is 1.5·2²³ passed in as a run-time
// value: with the literal on both sides, compilers that reassociate (Mesa's NIR does) fold
// (x + c) − c to x and the rounding disappears.
fn exp2_fma(x: f32, shifter: f32) -> f32 {
    let xc = max(x, -126.0);
    let t = xc + 12582912.0;
    let f = xc - (t - shifter);
    var q = fma(1.3333558e-3, f, 9.6181291e-3);
    q = fma(q, f, 5.5504109e-2);
    q = fma(q, f, 2.4022651e-1);
    q = fma(q, f, 6.9314718e-1);
    q = fma(q, f, 1.0);
    return bitcast<f32>(bitcast<i32>(q) + (bitcast<i32>(t) << 23u));
}

fn ceil_decay3(x: vec4<f32>, s: f32) -> vec4<f32> {
#if POLY
    return vec4<f32>(exp2_fma(x.x, s), exp2_fma(x.y, s), exp2_fma(x.z, s), exp2_fma(x.w, s));
#else
    return exp2(x);
#endif
}

@compute @workgroup_size(64, 4)
fn scan_ceiling(@builtin(local_invocation_id) l3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let d = wid.x * 64u + l3.x;
    let lid = l3.y * 64u + l3.x;
    let g = d / (p.dim / p.groups);
    let cb = d * (p.nstate + 2u);
    let a0 = vec4<f32>(chan[cb], chan[cb + 1u], chan[cb + 2u], chan[cb + 3u]) * 1.4426950408889634;
    let a1 = vec4<f32>(chan[cb + 4u], chan[cb + 5u], chan[cb + 6u], chan[cb + 7u]) * 1.4426950408889634;
    let a2 = vec4<f32>(chan[cb + 8u], chan[cb + 9u], chan[cb + 10u], chan[cb + 11u]) * 1.4426950408889634;
    let a3 = vec4<f32>(chan[cb + 12u], chan[cb + 13u], chan[cb + 14u], chan[cb + 15u]) * 1.4426950408889634;
    let dsk = chan[cb + 16u];
    let bias = chan[cb + 17u];
    let shifter = select(12582912.0, 0.0, p.total == 0u);
    // CEIL_TILES tiles of 16 tokens per workgroup, so the per-channel loads above are amortised.
    for (var sub = 0u; sub < CEIL_TILES; sub++) {
        let t0 = seqs[0] + (wid.y * CEIL_TILES + sub) * 16u;
        workgroupBarrier();
        if (lid < 128u) {
            let half = (lid % 8u) / 4u;
            let i = ((tok(t0 + lid / 8u) * 2u + half) * p.groups + g) * 16u + (lid % 4u) * 4u;
            c_bc[lid] = vec4<f32>(ld_bc(i), ld_bc(i + 1u), ld_bc(i + 2u), ld_bc(i + 3u));
        }
        var uu: array<f32, 4>;
        var dl: array<f32, 4>;
        var zz: array<f32, 4>;
        for (var j = 0u; j < 4u; j++) {
            let i = ix(d, tok(t0 + l3.y * 4u + j));
#if COMPUTE_ONLY
            let v = f32((i * 2654435761u) >> 9u) * 1e-7;
            uu[j] = v - 0.5;
            dl[j] = v - 2.0;
            zz[j] = v;
            if (p.total == 0u) { uu[j] = ld_u(i) + ld_delta(i) + ld_z(i); } // keeps the bindings
#else
            uu[j] = ld_u(i);
            dl[j] = ld_delta(i);
            zz[j] = ld_z(i);
#endif
        }
        workgroupBarrier();
        for (var j = 0u; j < 4u; j++) {
            var dt = dl[j] + bias;
            dt = select(log(1.0 + exp(dt)), dt, dt > 20.0);
            let du = dt * uu[j];
            let b = (l3.y * 4u + j) * 8u;
            let acc = dot(exp2(dt * a0) * c_bc[b], c_bc[b + 4u]) + dot(exp2(dt * a1) * c_bc[b + 1u], c_bc[b + 5u])
                + dot(exp2(dt * a2) * c_bc[b + 2u], c_bc[b + 6u]) + dot(ceil_decay3(dt * a3, shifter) * c_bc[b + 3u], c_bc[b + 7u]);
            let out = (du * acc + dsk * uu[j]) * (zz[j] / (1.0 + exp(-zz[j])));
            let t = t0 + l3.y * 4u + j;
#if COMPUTE_ONLY
            if (out == -1234.5678) { y[ix(d, t)] = out; }
#else
            if (t < p.total) { y[ix(d, t)] = out; }
#endif
        }
    }
}
#endif
