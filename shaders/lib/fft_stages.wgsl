// Stockham FFT stages in workgroup memory, radix 8, 4 and 2 (ops::fft, and the S4 family's
// fused convolution). The includer declares `const WG: u32` (invocations, LOCAL / 16), the
// buffer `var<workgroup> buf: array<vec2<f32>, _>` and `fn at(x: u32) -> u32`, where value x
// of the LOCAL logical ones lives in buf (the identity, or a padding against bank conflicts).
// Each invocation holds 16 values in registers between a stage's reads and writes, so one
// buffer serves as both input and output.

fn fft_cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }

// ω^{num} for ω = e^{∓2πi/den} (num < den; e^{+} when inverse): the angle is reduced to
// [−π, π] in integers first.
fn fft_twiddle(num: u32, den: u32, inverse: bool) -> vec2<f32> {
    var s = i32(num);
    if (2u * num > den) { s = i32(num) - i32(den); }
    let sign = select(-1.0, 1.0, inverse);
    let a = sign * 6.283185307179586 * f32(s) / f32(den);
    return vec2<f32>(cos(a), sin(a));
}

// Multiplication by −i (forward) or +i (inverse): the quarter turn of the radix-4 butterfly.
fn fft_quarter(a: vec2<f32>, inverse: bool) -> vec2<f32> {
    if (inverse) { return vec2<f32>(-a.y, a.x); }
    return vec2<f32>(a.y, -a.x);
}

fn fft_dft2(a: ptr<function, array<vec2<f32>, 16>>, o: u32) {
    let x = (*a)[o];
    let y = (*a)[o + 1u];
    (*a)[o] = x + y;
    (*a)[o + 1u] = x - y;
}

// Radix-4 butterfly on a[o .. o + 4], results in natural order.
fn fft_dft4(a: ptr<function, array<vec2<f32>, 16>>, o: u32, inverse: bool) {
    let t0 = (*a)[o] + (*a)[o + 2u];
    let t1 = (*a)[o] - (*a)[o + 2u];
    let t2 = (*a)[o + 1u] + (*a)[o + 3u];
    let t3 = fft_quarter((*a)[o + 1u] - (*a)[o + 3u], inverse);
    (*a)[o] = t0 + t2;
    (*a)[o + 1u] = t1 + t3;
    (*a)[o + 2u] = t0 - t2;
    (*a)[o + 3u] = t1 - t3;
}

// Radix-8 on a[o .. o + 8]: radix-4s over the even and the odd inputs, ω_8^r on the odd
// half, then a radix-2 across; the outputs come back in natural order.
fn fft_dft8(a: ptr<function, array<vec2<f32>, 16>>, o: u32, inverse: bool) {
    var e: array<vec2<f32>, 16>;
    for (var q = 0u; q < 4u; q++) {
        e[q] = (*a)[o + 2u * q];
        e[q + 4u] = (*a)[o + 2u * q + 1u];
    }
    fft_dft4(&e, 0u, inverse);
    fft_dft4(&e, 4u, inverse);
    let h = 0.7071067811865476;
    let sg = select(-1.0, 1.0, inverse);
    e[5] = fft_cmul(e[5], vec2<f32>(h, sg * h));
    e[6] = fft_cmul(e[6], vec2<f32>(0.0, sg));
    e[7] = fft_cmul(e[7], vec2<f32>(-h, sg * h));
    for (var q = 0u; q < 4u; q++) {
        (*a)[o + q] = e[q] + e[q + 4u];
        (*a)[o + q + 4u] = e[q] - e[q + 4u];
    }
}

// One Stockham stage of radix r over the length-m sub-sequences of the first `len` values:
// sub-transforms of length pp combine into length r·pp. Butterfly i of a sub-sequence reads
// i + q·m/r and writes (i − k)·r + k + q·pp (k = i mod pp). Each invocation takes at most 16/r
// butterflies (len ≥ r·WG).
fn fft_stage(lid: u32, r: u32, pp: u32, m: u32, len: u32, inverse: bool) {
    let per = m / r;
    let count = len / (r * WG);
    var v: array<vec2<f32>, 16>;
    for (var j = 0u; j < count; j++) {
        let bf = lid + j * WG;
        let b = bf / per;
        let i = bf % per;
        let k = i % pp;
        for (var q = 0u; q < r; q++) {
            let x = buf[at(b * m + i + q * per)];
            v[j * r + q] = select(fft_cmul(x, fft_twiddle(q * k, r * pp, inverse)), x, q == 0u || k == 0u);
        }
        switch (r) {
            case 8u: { fft_dft8(&v, j * r, inverse); }
            case 4u: { fft_dft4(&v, j * r, inverse); }
            default: { fft_dft2(&v, j * r); }
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < count; j++) {
        let bf = lid + j * WG;
        let b = bf / per;
        let i = bf % per;
        let k = i % pp;
        let base = b * m + (i - k) * r + k;
        for (var q = 0u; q < r; q++) { buf[at(base + q * pp)] = v[j * r + q]; }
    }
    workgroupBarrier();
}

// Transforms every length-m sub-sequence of the first `len` values of buf in place (natural
// order in and out; the inverse unscaled). The values must be in buf, behind a barrier.
fn fft_local(lid: u32, m: u32, len: u32, inverse: bool) {
    var pp = 1u;
    while (pp < m) {
        let left = m / pp;
        var r = 2u;
        if (left % 8u == 0u) { r = 8u; } else if (left % 4u == 0u) { r = 4u; }
        fft_stage(lid, r, pp, m, len, inverse);
        pp *= r;
    }
}
