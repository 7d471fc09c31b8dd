// Columns gathered from up to three row-aligned sources (ops::gather): out[t, c] is column
// `table[c] & 0xffffff` of row t of source `table[c] >> 24` (1: a, 2: b, 3: c), or 0 where the
// source is 0. It assembles rows whose parts come from different projections, such as MLA's
// per-head keys (a shared latent part beside each head's own).
struct Params { rows: u32, n: u32, wa: u32, wb: u32, wc: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> a: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> b: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> c: array<f32>;
@group(0) @binding(4) var<storage, read> table: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn gather_columns(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.rows * p.n) { return; }
    let t = e / p.n;
    let m = table[e % p.n];
    let col = m & 0xffffffu;
    var v = 0.0;
    switch (m >> 24u) {
        case 1u: { v = a[t * p.wa + col]; }
        case 2u: { v = b[t * p.wb + col]; }
        case 3u: { v = c[t * p.wc + col]; }
        default: {}
    }
    out[e] = v;
}
