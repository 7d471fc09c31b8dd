// Batched complex FFTs (ops::fft), Stockham autosort in workgroup memory.
//
// `data` holds `rows` rows of `n` complex values. One dispatch transforms sub-sequences of
// length m (a power of two, at most LOCAL) in place: sub-sequence g of a row starts at
// g·gstride and steps by estride, and a workgroup takes `per_wg` consecutive sub-sequences
// (LOCAL values), so a whole row (m = n) is one pass and a longer row is two (the four-step
// form: columns with stride n2, a twiddle, then rows; see ops::fft). Each stage is radix 8, 4
// or 2 (lib/fft_stages).
//   TWIDDLE: each output value (g, e) is multiplied by ω_n^{±g·e} as it is written.
//   INVERSE: e^{+2πi} kernels (unscaled).
// Real signals (REAL_IN, SPLIT, JOIN, REAL_OUT) go two rows to a complex row: Z = x_a + i·x_b,
// whose transform gives both spectra, X_a(k) = (Z(k) + Z̄(n−k))/2 and X_b(k) = (Z(k) − Z̄(n−k))/2i;
// the inverse joins two half spectra into one complex row the same way.
#if PASS
struct Params { n: u32, m: u32, gstride: u32, estride: u32, subs: u32, per_wg: u32, total: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> data: array<vec2<f32>>;

#include flags

const WG: u32 = {{LOCAL}}u / 16u;
var<workgroup> buf: array<vec2<f32>, {{LOCAL}}>;
fn at(x: u32) -> u32 { return x; }

#include fft_stages

// Address of value e of local sub-sequence b (and whether it exists).
fn address(wg: u32, b: u32, e: u32) -> vec2<u32> {
    let g = wg * p.per_wg + b;
    let row = over(g, p.subs);
    let idx = row * p.n + modulo(g, p.subs) * p.gstride + e * p.estride;
    return vec2<u32>(idx, select(0u, 1u, g < p.total));
}

// Which (sub-sequence, value) the i-th of a workgroup's LOCAL loads takes: consecutive
// invocations take consecutive addresses, along a row (estride 1) or across columns.
fn slot(i: u32) -> vec2<u32> {
    if (p.estride == 1u) { return vec2<u32>(over(i, p.m), modulo(i, p.m)); }
    return vec2<u32>(modulo(i, p.per_wg), over(i, p.per_wg));
}

@compute @workgroup_size(WG)
fn fft(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    for (var j = 0u; j < 16u; j++) {
        let s = slot(lid + j * WG);
        let a = address(wg, s.x, s.y);
        buf[s.x * p.m + s.y] = select(vec2<f32>(0.0), data[min(a.x, arrayLength(&data) - 1u)], a.y == 1u);
    }
    workgroupBarrier();
    fft_local(lid, p.m, {{LOCAL}}u, flag(INVERSE));
    for (var j = 0u; j < 16u; j++) {
        let s = slot(lid + j * WG);
        let a = address(wg, s.x, s.y);
        if (a.y == 1u) {
            var x = buf[s.x * p.m + s.y];
            if (flag(TWIDDLE)) {
                let g = modulo(wg * p.per_wg + s.x, p.subs);
                x = fft_cmul(x, fft_twiddle(modulo(g * s.y, p.n), p.n, flag(INVERSE)));
            }
            data[a.x] = x;
        }
    }
}
#endif

#if REAL
// The real-signal passes (rows of n points; n1, n2 of the complex plan).
struct RealParams { rows: u32, n: u32, n1: u32, n2: u32 }
@group(0) @binding(0) var<uniform> p: RealParams;

fn slot(k: u32) -> u32 { return (k % p.n1) * p.n2 + k / p.n1; }
fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
fn conj(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x, -a.y); }
// (a − b)/2i
fn half_over_i(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.y, -a.x) * 0.5; }
fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 64u; }
#endif

#if REAL_IN
// z[i, t] = (x[2i, t], x[2i + 1, t]) (0 past the last row).
@group(0) @binding(1) var<storage, {{ACT}}> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<vec2<f32>>;

@compute @workgroup_size(64)
fn real_in(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    let pairs = (p.rows + 1u) / 2u;
    if (e >= pairs * p.n) { return; }
    let i = e / p.n;
    let t = e % p.n;
    let second = 2u * i + 1u < p.rows;
    z[e] = vec2<f32>(x[2u * i * p.n + t], select(0.0, x[min((2u * i + 1u) * p.n + t, arrayLength(&x) - 1u)], second));
}
#endif

#if SPLIT
// Both rows' half spectra [rows, n/2 + 1] in natural order from the pair's transform (slots).
@group(0) @binding(1) var<storage, {{ACT}}> z: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> spec: array<vec2<f32>>;

@compute @workgroup_size(64)
fn split(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    let bins = p.n / 2u + 1u;
    let pairs = (p.rows + 1u) / 2u;
    if (e >= pairs * bins) { return; }
    let i = e / bins;
    let k = e % bins;
    let zk = z[i * p.n + slot(k % p.n)];
    let zn = conj(z[i * p.n + slot((p.n - k) % p.n)]);
    spec[2u * i * bins + k] = (zk + zn) * 0.5;
    if (2u * i + 1u < p.rows) { spec[(2u * i + 1u) * bins + k] = half_over_i(zk - zn); }
}
#endif

#if JOIN
// Z = X_a + i·X_b over all n bins (X(n − k) = X̄(k); the imaginary parts of bins 0 and n/2 are
// ignored, as irfft does), in slot order for the inverse transform.
@group(0) @binding(1) var<storage, {{ACT}}> spec: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> z: array<vec2<f32>>;

fn bin_of(row: u32, k: u32) -> vec2<f32> {
    let bins = p.n / 2u + 1u;
    if (row >= p.rows) { return vec2<f32>(0.0); }
    var v: vec2<f32>;
    if (k < bins) { v = spec[row * bins + k]; } else { v = conj(spec[row * bins + p.n - k]); }
    if (k == 0u || 2u * k == p.n) { v.y = 0.0; }
    return v;
}

@compute @workgroup_size(64)
fn join(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    let pairs = (p.rows + 1u) / 2u;
    if (e >= pairs * p.n) { return; }
    let i = e / p.n;
    let k = e % p.n;
    let a = bin_of(2u * i, k);
    let b = bin_of(2u * i + 1u, k);
    z[i * p.n + slot(k)] = a + vec2<f32>(-b.y, b.x);
}
#endif

#if REAL_OUT
// x[2i, t] = Re z[i, t] / n, x[2i + 1, t] = Im z[i, t] / n (the inverse's natural order).
@group(0) @binding(1) var<storage, {{ACT}}> z: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn real_out(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if (e >= p.rows * p.n) { return; }
    let row = e / p.n;
    let t = e % p.n;
    let v = z[(row / 2u) * p.n + t];
    x[e] = select(v.x, v.y, row % 2u == 1u) / f32(p.n);
}
#endif
