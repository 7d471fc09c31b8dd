// Stockham FFT stages in workgroup memory, radix 8, 4 and 2 (ops::fft, and the S4 family's
// fused convolution). The includer declares `const WG: u32` (invocations, LOCAL / 16), the
// buffer `var<workgroup> buf: array<vec2<f32>, _>` and `fn at(x: u32) -> u32`, where value x
// of the LOCAL logical ones lives in buf (the identity, or a swizzle against bank conflicts).

// x / d and x mod d for d a power of two (every size here is one), without a division.
fn over(x: u32, d: u32) -> u32 { return x >> countTrailingZeros(d); }
fn modulo(x: u32, d: u32) -> u32 { return x & (d - 1u); }

fn fft_cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }

// ω^{num} for ω = e^{∓2πi/den} (num < den, den a power of two; e^{+} when inverse): the
// angle is reduced to [−π, π] in integers first.
fn fft_twiddle(num: u32, den: u32, inverse: bool) -> vec2<f32> {
    var s = i32(num);
    if (2u * num > den) { s = i32(num) - i32(den); }
    let sign = select(-1.0, 1.0, inverse);
    // den is a power of two: scaling by 2^−log2(den) is exact, and no division.
    let a = sign * 6.283185307179586 * ldexp(f32(s), -i32(countTrailingZeros(den)));
    return vec2<f32>(cos(a), sin(a));
}

// Multiplication by −i (forward) or +i (inverse): the quarter turn of the radix-4 butterfly.
fn fft_quarter(a: vec2<f32>, inverse: bool) -> vec2<f32> {
    if (inverse) { return vec2<f32>(-a.y, a.x); }
    return vec2<f32>(a.y, -a.x);
}

// The butterflies, on values rather than through pointers, with every index a constant: an
// array indexed by a runtime value sits in memory on some drivers (and takes llvmpipe's GL
// compiler minutes to lower).
fn fft_dft2(a: array<vec2<f32>, 2>) -> array<vec2<f32>, 2> {
    return array<vec2<f32>, 2>(a[0] + a[1], a[0] - a[1]);
}

fn fft_dft4(a: array<vec2<f32>, 4>, inverse: bool) -> array<vec2<f32>, 4> {
    let t0 = a[0] + a[2];
    let t1 = a[0] - a[2];
    let t2 = a[1] + a[3];
    let t3 = fft_quarter(a[1] - a[3], inverse);
    return array<vec2<f32>, 4>(t0 + t2, t1 + t3, t0 - t2, t1 - t3);
}

// Radix-8: radix-4s over the even and the odd inputs, ω_8^r on the odd half, then a radix-2
// across; the outputs in natural order.
fn fft_dft8(a: array<vec2<f32>, 8>, inverse: bool) -> array<vec2<f32>, 8> {
    let e = fft_dft4(array<vec2<f32>, 4>(a[0], a[2], a[4], a[6]), inverse);
    let o = fft_dft4(array<vec2<f32>, 4>(a[1], a[3], a[5], a[7]), inverse);
    let h = 0.7071067811865476;
    let sg = select(-1.0, 1.0, inverse);
    let o1 = fft_cmul(o[1], vec2<f32>(h, sg * h));
    let o2 = fft_cmul(o[2], vec2<f32>(0.0, sg));
    let o3 = fft_cmul(o[3], vec2<f32>(-h, sg * h));
    return array<vec2<f32>, 8>(e[0] + o[0], e[1] + o1, e[2] + o2, e[3] + o3, e[0] - o[0], e[1] - o1, e[2] - o2, e[3] - o3);
}

// A Stockham stage of radix R over the length-m sub-sequences of the first `len` values:
// sub-transforms of length pp combine into length R·pp. Butterfly i of a sub-sequence reads
// i + q·m/R (times ω^{q·k}, k = i mod pp) and writes (i − k)·R + k + q·pp. An invocation takes
// up to 16/R butterflies (len ≥ R·WG), all read before the barrier and written after it, so
// one buffer serves as input and output. Every loop over registers is unrolled by #for, and
// m, pp and R are powers of two, so no index needs a division. Input q's twiddle ω_{R·pp}^{q·k}
// comes from sin/cos for q = 1, 2, 4, the others as one product of two of those (so each stays
// within a few ulp).

// (sub-sequence b, butterfly i, k = i mod pp) of butterfly bf.
fn fft_terms(bf: u32, pp: u32, m: u32, r: u32) -> vec3<u32> {
    let per = m / r;
    let i = modulo(bf, per);
    return vec3<u32>(over(bf, per), i, modulo(i, pp));
}

// Input q of butterfly t.
fn fft_load(t: vec3<u32>, q: u32, per: u32, r: u32) -> vec2<f32> {
    return buf[at(t.x * per * r + t.y + q * per)];
}

fn fft_gather2(bf: u32, pp: u32, m: u32, inverse: bool) -> array<vec2<f32>, 2> {
    let t = fft_terms(bf, pp, m, 2u);
    var v: array<vec2<f32>, 2>;
    v[0] = fft_load(t, 0u, m / 2u, 2u);
    let w = array<vec2<f32>, 2>(vec2<f32>(1.0, 0.0), fft_twiddle(t.z, 2u * pp, inverse));
#for Q in 1..2
    v[{{Q}}] = fft_cmul(fft_load(t, {{Q}}u, m / 2u, 2u), w[{{Q}}]);
#endfor
    return v;
}

fn fft_scatter2(bf: u32, pp: u32, m: u32, v: array<vec2<f32>, 2>) {
    let t = fft_terms(bf, pp, m, 2u);
    let base = t.x * m + (t.y - t.z) * 2u + t.z;
#for Q in 0..2
    buf[at(base + {{Q}}u * pp)] = v[{{Q}}];
#endfor
}

fn fft_stage2(lid: u32, pp: u32, m: u32, len: u32, inverse: bool) {
    let count = len / (2u * WG);
#for J in 0..8
    var x{{J}}: array<vec2<f32>, 2>;
    if ({{J}}u < count) { x{{J}} = fft_dft2(fft_gather2(lid + {{J}}u * WG, pp, m, inverse)); }
#endfor
    workgroupBarrier();
#for J in 0..8
    if ({{J}}u < count) { fft_scatter2(lid + {{J}}u * WG, pp, m, x{{J}}); }
#endfor
    workgroupBarrier();
}

fn fft_gather4(bf: u32, pp: u32, m: u32, inverse: bool) -> array<vec2<f32>, 4> {
    let t = fft_terms(bf, pp, m, 4u);
    var v: array<vec2<f32>, 4>;
    v[0] = fft_load(t, 0u, m / 4u, 4u);
    let w1 = fft_twiddle(t.z, 4u * pp, inverse);
    let w2 = fft_twiddle(2u * t.z, 4u * pp, inverse);
    let w = array<vec2<f32>, 4>(vec2<f32>(1.0, 0.0), w1, w2, fft_cmul(w1, w2));
#for Q in 1..4
    v[{{Q}}] = fft_cmul(fft_load(t, {{Q}}u, m / 4u, 4u), w[{{Q}}]);
#endfor
    return v;
}

fn fft_scatter4(bf: u32, pp: u32, m: u32, v: array<vec2<f32>, 4>) {
    let t = fft_terms(bf, pp, m, 4u);
    let base = t.x * m + (t.y - t.z) * 4u + t.z;
#for Q in 0..4
    buf[at(base + {{Q}}u * pp)] = v[{{Q}}];
#endfor
}

fn fft_stage4(lid: u32, pp: u32, m: u32, len: u32, inverse: bool) {
    let count = len / (4u * WG);
#for J in 0..4
    var x{{J}}: array<vec2<f32>, 4>;
    if ({{J}}u < count) { x{{J}} = fft_dft4(fft_gather4(lid + {{J}}u * WG, pp, m, inverse), inverse); }
#endfor
    workgroupBarrier();
#for J in 0..4
    if ({{J}}u < count) { fft_scatter4(lid + {{J}}u * WG, pp, m, x{{J}}); }
#endfor
    workgroupBarrier();
}

fn fft_gather8(bf: u32, pp: u32, m: u32, inverse: bool) -> array<vec2<f32>, 8> {
    let t = fft_terms(bf, pp, m, 8u);
    var v: array<vec2<f32>, 8>;
    v[0] = fft_load(t, 0u, m / 8u, 8u);
    let w1 = fft_twiddle(t.z, 8u * pp, inverse);
    let w2 = fft_twiddle(2u * t.z, 8u * pp, inverse);
    let w4 = fft_twiddle(4u * t.z, 8u * pp, inverse);
    let w3 = fft_cmul(w1, w2);
    let w = array<vec2<f32>, 8>(vec2<f32>(1.0, 0.0), w1, w2, w3, w4, fft_cmul(w1, w4), fft_cmul(w2, w4), fft_cmul(w3, w4));
#for Q in 1..8
    v[{{Q}}] = fft_cmul(fft_load(t, {{Q}}u, m / 8u, 8u), w[{{Q}}]);
#endfor
    return v;
}

fn fft_scatter8(bf: u32, pp: u32, m: u32, v: array<vec2<f32>, 8>) {
    let t = fft_terms(bf, pp, m, 8u);
    let base = t.x * m + (t.y - t.z) * 8u + t.z;
#for Q in 0..8
    buf[at(base + {{Q}}u * pp)] = v[{{Q}}];
#endfor
}

fn fft_stage8(lid: u32, pp: u32, m: u32, len: u32, inverse: bool) {
    let count = len / (8u * WG);
#for J in 0..2
    var x{{J}}: array<vec2<f32>, 8>;
    if ({{J}}u < count) { x{{J}} = fft_dft8(fft_gather8(lid + {{J}}u * WG, pp, m, inverse), inverse); }
#endfor
    workgroupBarrier();
#for J in 0..2
    if ({{J}}u < count) { fft_scatter8(lid + {{J}}u * WG, pp, m, x{{J}}); }
#endfor
    workgroupBarrier();
}

// Transforms every length-m sub-sequence of the first `len` values of buf in place (natural
// order in and out; the inverse unscaled). The values must be in buf, behind a barrier.
fn fft_local(lid: u32, m: u32, len: u32, inverse: bool) {
    var pp = 1u;
    while (pp < m) {
        let left = m / pp;
        if (left % 8u == 0u) {
            fft_stage8(lid, pp, m, len, inverse);
            pp *= 8u;
        } else if (left % 4u == 0u) {
            fft_stage4(lid, pp, m, len, inverse);
            pp *= 4u;
        } else {
            fft_stage2(lid, pp, m, len, inverse);
            pp *= 2u;
        }
    }
}
