// Batched complex FFTs (ops::fft), Stockham autosort in workgroup memory.
//
// `data` holds `rows` rows of `n` complex values. One dispatch transforms sub-sequences of
// length m (a power of two, at most LOCAL) in place: sub-sequence g of a row starts at
// g·gstride and steps by estride, and a workgroup takes `per_wg` consecutive sub-sequences
// (LOCAL values), so a whole row (m = n) is one pass and a longer row is two (the four-step
// form: columns with stride n2, a twiddle, then rows; see ops::fft). Each stage is radix 8, 4
// or 2: every invocation holds 16 values in registers between the stage's reads and writes,
// so one LOCAL-value buffer serves as both input and output.
//   TWIDDLE: each output value (g, e) is multiplied by ω_n^{±g·e} as it is written.
//   INVERSE: e^{+2πi} kernels (unscaled).
struct Params { n: u32, m: u32, gstride: u32, estride: u32, subs: u32, per_wg: u32, total: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> data: array<vec2<f32>>;

#include flags

const WG: u32 = {{LOCAL}}u / 16u;
var<workgroup> buf: array<vec2<f32>, {{LOCAL}}>;

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }

// ω^{num} for ω = e^{∓2πi/den} (num < den): the angle is reduced to [−π, π] in integers first.
fn twiddle(num: u32, den: u32) -> vec2<f32> {
    var s = i32(num);
    if (2u * num > den) { s = i32(num) - i32(den); }
    let sign = select(-1.0, 1.0, flag(INVERSE));
    let a = sign * 6.283185307179586 * f32(s) / f32(den);
    return vec2<f32>(cos(a), sin(a));
}

// Multiplication by −i (forward) or +i (inverse): the quarter turn of the radix-4 butterfly.
fn quarter(a: vec2<f32>) -> vec2<f32> {
    if (flag(INVERSE)) { return vec2<f32>(-a.y, a.x); }
    return vec2<f32>(a.y, -a.x);
}

fn dft2(a: ptr<function, array<vec2<f32>, 16>>, o: u32) {
    let x = (*a)[o];
    let y = (*a)[o + 1u];
    (*a)[o] = x + y;
    (*a)[o + 1u] = x - y;
}

// Radix-4 butterfly on a[o .. o + 4], results in natural order.
fn dft4(a: ptr<function, array<vec2<f32>, 16>>, o: u32) {
    let t0 = (*a)[o] + (*a)[o + 2u];
    let t1 = (*a)[o] - (*a)[o + 2u];
    let t2 = (*a)[o + 1u] + (*a)[o + 3u];
    let t3 = quarter((*a)[o + 1u] - (*a)[o + 3u]);
    (*a)[o] = t0 + t2;
    (*a)[o + 1u] = t1 + t3;
    (*a)[o + 2u] = t0 - t2;
    (*a)[o + 3u] = t1 - t3;
}

// Radix-8 on a[o .. o + 8]: radix-4s over the even and the odd inputs, ω_8^r on the odd
// half, then a radix-2 across; the outputs come back in natural order.
fn dft8(a: ptr<function, array<vec2<f32>, 16>>, o: u32) {
    var e: array<vec2<f32>, 16>;
    for (var q = 0u; q < 4u; q++) {
        e[q] = (*a)[o + 2u * q];
        e[q + 4u] = (*a)[o + 2u * q + 1u];
    }
    dft4(&e, 0u);
    dft4(&e, 4u);
    let h = 0.7071067811865476;
    let sg = select(-1.0, 1.0, flag(INVERSE));
    e[5] = cmul(e[5], vec2<f32>(h, sg * h));
    e[6] = cmul(e[6], vec2<f32>(0.0, sg));
    e[7] = cmul(e[7], vec2<f32>(-h, sg * h));
    for (var q = 0u; q < 4u; q++) {
        (*a)[o + q] = e[q] + e[q + 4u];
        (*a)[o + q + 4u] = e[q] - e[q + 4u];
    }
}

// One Stockham stage of radix r over every sub-sequence in buf: sub-transforms of length pp
// combine into length r·pp. Butterfly i of a sub-sequence reads i + q·m/r and writes
// (i − k)·r + k + q·pp (k = i mod pp). Each invocation takes 16/r butterflies, whose 16
// values stay in registers across the barrier.
fn stage(lid: u32, r: u32, pp: u32) {
    let per = p.m / r;
    let count = 16u / r;
    var v: array<vec2<f32>, 16>;
    for (var j = 0u; j < count; j++) {
        let bf = lid + j * WG;
        let b = bf / per;
        let i = bf % per;
        let k = i % pp;
        for (var q = 0u; q < r; q++) {
            let x = buf[b * p.m + i + q * per];
            v[j * r + q] = select(cmul(x, twiddle(q * k, r * pp)), x, q == 0u || k == 0u);
        }
        switch (r) {
            case 8u: { dft8(&v, j * r); }
            case 4u: { dft4(&v, j * r); }
            default: { dft2(&v, j * r); }
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < count; j++) {
        let bf = lid + j * WG;
        let b = bf / per;
        let i = bf % per;
        let k = i % pp;
        let base = b * p.m + (i - k) * r + k;
        for (var q = 0u; q < r; q++) { buf[base + q * pp] = v[j * r + q]; }
    }
    workgroupBarrier();
}

// Address of value e of local sub-sequence b (and whether it exists).
fn address(wg: u32, b: u32, e: u32) -> vec2<u32> {
    let g = wg * p.per_wg + b;
    let row = g / p.subs;
    let at = row * p.n + (g % p.subs) * p.gstride + e * p.estride;
    return vec2<u32>(at, select(0u, 1u, g < p.total));
}

// Which (sub-sequence, value) the i-th of a workgroup's LOCAL loads takes: consecutive
// invocations take consecutive addresses, along a row (estride 1) or across columns.
fn slot(i: u32) -> vec2<u32> {
    if (p.estride == 1u) { return vec2<u32>(i / p.m, i % p.m); }
    return vec2<u32>(i % p.per_wg, i / p.per_wg);
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
    var pp = 1u;
    while (pp < p.m) {
        let left = p.m / pp;
        var r = 2u;
        if (left % 8u == 0u) { r = 8u; } else if (left % 4u == 0u) { r = 4u; }
        stage(lid, r, pp);
        pp *= r;
    }
    for (var j = 0u; j < 16u; j++) {
        let s = slot(lid + j * WG);
        let a = address(wg, s.x, s.y);
        if (a.y == 1u) {
            var x = buf[s.x * p.m + s.y];
            if (flag(TWIDDLE)) {
                let g = (wg * p.per_wg + s.x) % p.subs;
                x = cmul(x, twiddle((g * s.y) % p.n, p.n));
            }
            data[a.x] = x;
        }
    }
}
