// S4 and S4D (ops::s4): kernel generation, the convolution (FFT and direct) and the recurrent
// view. One entry per define; each is described where it starts.
struct Params { a: u32, b: u32, c: u32, d: u32, e: u32, f: u32, g: u32, flags: u32, pair0: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;

#include flags

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
fn conj(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x, -a.y); }
fn cdiv(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return cmul(a, conj(b)) / dot(b, b); }

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 64u; }

#if POWER
// The high word of the 64-bit product of a and b.
fn mulhi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = ((a0 * b0) >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

// e^{x·l} for x = (t.z + 2πi·θ): the decay in f32, the phase from the top 32 bits of frac(l·θ)
// (θ a 64-bit binary fraction, (hi, lo)) as a signed turn in [−½, ½).
fn power(re: f32, th: vec2<u32>, l: u32) -> vec2<f32> {
    let turn = bitcast<i32>(l * th.x + mulhi(l, th.y));
    let angle = f32(turn) * 1.4629180792671596e-9; // 2π / 2^32
    return exp(re * f32(l)) * vec2<f32>(cos(angle), sin(angle));
}
#endif

#if STATE
// S4D's state at the end of a convolution-mode prefill, as the module's forward_state
// computes it, in parallel (a = S, b = H, c = N, d = t_lo, e = t_hi, f = 1 on a sequence's
// first piece): x_n = Σ_t Ā_n^{end − 1 − t}·B̄_n·u_t over the tokens since the sequence's start
// or last reset (`ranges` [S, 2]), one invocation per (sequence, channel, state); tokens in
// pieces [t_lo, t_hi) per dispatch, each adding its share. terms[h·N + n] = (Re B̄, Im B̄,
// Re log Ā, 0), theta the turn counts as the Vandermonde kernel's; the state is written in
// real coordinates [Re x, Im x].
@group(0) @binding(1) var<storage, {{ACT}}> u: array<f32>;
@group(0) @binding(2) var<storage, read> terms: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> theta: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read> ranges: array<u32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;

@compute @workgroup_size(64)
fn state_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if (e >= p.a * p.b * p.c) { return; }
    let n = e % p.c;
    let h = (e / p.c) % p.b;
    let s = e / (p.c * p.b);
    let start = ranges[2u * s];
    let end = ranges[2u * s + 1u];
    let lo = start + min(p.d, end - start);
    let hi = start + min(p.e, end - start);
    let at = (s * p.b + h) * 2u * p.c + n;
    var acc = vec2<f32>(0.0);
    if (p.f == 0u) { acc = vec2<f32>(state[at], state[at + p.c]); }
    let tm = terms[h * p.c + n];
    let th = theta[h * p.c + n];
    let b = vec2<f32>(tm.x, tm.y);
    for (var t = lo; t < hi; t++) {
        acc += cmul(power(tm.z, th, end - 1u - t), b) * u[t * p.b + h];
    }
    if (p.f != 0u || lo < hi) {
        state[at] = acc.x;
        state[at + p.c] = acc.y;
    }
}
#endif

#if VANDERMONDE
// S4D's kernel: k[h, l] = 2·Re Σ_n v_n·e^{x_n·l} (a = H, b = N, c = L, f = where in k the
// H × L values start: the backward half of a bidirectional kernel), with e^{x·l} evaluated
// at every l, not by repeated multiplication. terms[h·N + n] = (Re v, Im v, Re x, 0) and
// theta[h·N + n] the turn count Im x / 2π as a 64-bit binary fraction (hi, lo): l·θ mod 1 is
// exact in integers, so the phase keeps full f32 precision at any l.
@group(0) @binding(1) var<storage, read> terms: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> theta: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> k: array<f32>;

#if STAGED
// The staged form: a workgroup takes 64 consecutive lags of one channel and first copies that
// channel's N terms to workgroup memory (N ≤ 256), so every lag reads them from there.
var<workgroup> t_terms: array<vec4<f32>, 256>;
var<workgroup> t_theta: array<vec2<u32>, 256>;

@compute @workgroup_size(64)
fn vandermonde(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let tiles = (p.c + 63u) / 64u;
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.a * tiles) { return; }
    let h = flat / tiles;
    let l = (flat % tiles) * 64u + lid;
    for (var n = lid; n < p.b; n += 64u) {
        t_terms[n] = terms[h * p.b + n];
        t_theta[n] = theta[h * p.b + n];
    }
    workgroupBarrier();
    if (l >= p.c) { return; }
    var acc = 0.0;
    for (var n = 0u; n < p.b; n++) {
        let t = t_terms[n];
        acc += dot(power(t.z, t_theta[n], l), vec2<f32>(t.x, -t.y));
    }
    k[p.f + h * p.c + l] = 2.0 * acc;
}
#else
#if SUBGROUPS
// The subgroup form: a workgroup's 64 outputs are shared among its subgroups, one output at
// a time per subgroup, its lanes splitting the N states and a subgroupAdd summing them.
@compute @workgroup_size(64)
fn vandermonde(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32,
               @builtin(subgroup_id) sg: u32) {
    let base = (wid.x + wid.y * nwg.x) * 64u;
    for (var o = sg; o < 64u; o += (64u + sgs - 1u) / sgs) {
        let e = base + o;
        if (e >= p.a * p.c) { break; }
        let h = e / p.c;
        let l = e % p.c;
        var acc = 0.0;
        for (var n = lane; n < p.b; n += sgs) {
            let t = terms[h * p.b + n];
            acc += dot(power(t.z, theta[h * p.b + n], l), vec2<f32>(t.x, -t.y));
        }
        acc = subgroupAdd(acc);
        if (lane == 0u) { k[p.f + e] = 2.0 * acc; }
    }
}
#else
@compute @workgroup_size(64)
fn vandermonde(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if (e >= p.a * p.c) { return; }
    let h = e / p.c;
    let l = e % p.c;
    var acc = 0.0;
    for (var n = 0u; n < p.b; n++) {
        let t = terms[h * p.b + n];
        acc += dot(power(t.z, theta[h * p.b + n], l), vec2<f32>(t.x, -t.y));
    }
    k[p.f + e] = 2.0 * acc;
}
#endif
#endif
#endif

#if CAUCHY
// S4's kernel in frequency (a = H, b = N, c = Lk, d = n1, e = n2 of the inverse FFT's plan):
// at ω = e^{−2πik/Lk}, k ≤ Lk/2, the resolvent's Cauchy sums over the N states and their
// conjugates, kept apart, with the rank-1 Woodbury correction and the bilinear factor
// 2/(1 + ω) folded in: with d(w) = 2(1 − ω) − (1 + ω)·w, s_ij = Σ v_ij/d(w) + v̄_ij/d(w̄), and
// K̂ = 2·(s00 − (1 + ω)·s01·s10 / (1 + (1 + ω)·s11)), finite at ω = −1 too. terms[h·N + n]
// hold (w, v00, v01, v10, v11); the spectrum is written Hermitian, in the FFT's slot order.
@group(0) @binding(1) var<storage, read> terms: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> spec: array<vec2<f32>>;

fn slot(k: u32) -> u32 { return (k % p.d) * p.e + k / p.d; }

// The Cauchy sums s_ij over the states n = n0, n0 + step, ... of channel h at ω.
fn cauchy_sums(h: u32, om: vec2<f32>, n0: u32, step: u32) -> array<vec2<f32>, 4> {
    let one_m = 2.0 * (vec2<f32>(1.0, 0.0) - om);
    let one_p = vec2<f32>(1.0, 0.0) + om;
    var s = array<vec2<f32>, 4>(vec2<f32>(0.0), vec2<f32>(0.0), vec2<f32>(0.0), vec2<f32>(0.0));
    for (var n = n0; n < p.b; n += step) {
        let base = (h * p.b + n) * 5u;
        let w = terms[base];
        let r1 = cdiv(vec2<f32>(1.0, 0.0), one_m - cmul(one_p, w));
        let r2 = cdiv(vec2<f32>(1.0, 0.0), one_m - cmul(one_p, conj(w)));
        for (var q = 0u; q < 4u; q++) {
            let v = terms[base + 1u + q];
            s[q] += cmul(v, r1) + cmul(conj(v), r2);
        }
    }
    return s;
}

// ω = e^{−2πik/Lk}.
fn omega(kk: u32) -> vec2<f32> {
    let angle = -6.283185307179586 * f32(kk) / f32(p.c);
    return vec2<f32>(cos(angle), sin(angle));
}

// The Woodbury-corrected bin from the sums, written Hermitian in slot order.
fn write_bin(h: u32, kk: u32, om: vec2<f32>, s: array<vec2<f32>, 4>) {
    let one_p = vec2<f32>(1.0, 0.0) + om;
    let corr = cdiv(cmul(one_p, cmul(s[1], s[2])), vec2<f32>(1.0, 0.0) + cmul(one_p, s[3]));
    let kf = 2.0 * (s[0] - corr);
    let row = h * p.c;
    if (kk == 0u || kk == p.c / 2u) {
        // A real signal's first and middle bins are real (irfft ignores their imaginary parts).
        spec[row + slot(kk)] = vec2<f32>(kf.x, 0.0);
    } else {
        spec[row + slot(kk)] = kf;
        spec[row + slot(p.c - kk)] = conj(kf);
    }
}

#if STAGED
// The staged form: a workgroup takes 64 consecutive bins of one channel and first copies the
// channel's N × 5 terms to workgroup memory (N ≤ 256).
var<workgroup> c_terms: array<vec2<f32>, 1280>;

@compute @workgroup_size(64)
fn cauchy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let bins = p.c / 2u + 1u;
    let tiles = (bins + 63u) / 64u;
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.a * tiles) { return; }
    let h = flat / tiles;
    let kk = (flat % tiles) * 64u + lid;
    for (var i = lid; i < p.b * 5u; i += 64u) { c_terms[i] = terms[h * p.b * 5u + i]; }
    workgroupBarrier();
    if (kk >= bins) { return; }
    let om = omega(kk);
    let one_m = 2.0 * (vec2<f32>(1.0, 0.0) - om);
    let one_p = vec2<f32>(1.0, 0.0) + om;
    var s = array<vec2<f32>, 4>(vec2<f32>(0.0), vec2<f32>(0.0), vec2<f32>(0.0), vec2<f32>(0.0));
    for (var n = 0u; n < p.b; n++) {
        let w = c_terms[n * 5u];
        let r1 = cdiv(vec2<f32>(1.0, 0.0), one_m - cmul(one_p, w));
        let r2 = cdiv(vec2<f32>(1.0, 0.0), one_m - cmul(one_p, conj(w)));
        for (var q = 0u; q < 4u; q++) {
            let v = c_terms[n * 5u + 1u + q];
            s[q] += cmul(v, r1) + cmul(conj(v), r2);
        }
    }
    write_bin(h, kk, om, s);
}
#else
#if SUBGROUPS
// The subgroup form: lanes split the N states of one bin, subgroupAdd sums them.
@compute @workgroup_size(64)
fn cauchy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32,
          @builtin(subgroup_id) sg: u32) {
    let half = p.c / 2u;
    let base = (wid.x + wid.y * nwg.x) * 64u;
    for (var o = sg; o < 64u; o += (64u + sgs - 1u) / sgs) {
        let e = base + o;
        if (e >= p.a * (half + 1u)) { break; }
        let h = e / (half + 1u);
        let kk = e % (half + 1u);
        let om = omega(kk);
        var s = cauchy_sums(h, om, lane, sgs);
        for (var q = 0u; q < 4u; q++) { s[q] = subgroupAdd(s[q]); }
        if (lane == 0u) { write_bin(h, kk, om, s); }
    }
}
#else
@compute @workgroup_size(64)
fn cauchy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.c / 2u;
    let e = index(gid, nwg);
    if (e >= p.a * (half + 1u)) { return; }
    let h = e / (half + 1u);
    let kk = e % (half + 1u);
    let om = omega(kk);
    write_bin(h, kk, om, cauchy_sums(h, om, 0u, 1u));
}
#endif
#endif
#endif

#if EXTRACT
// k[h, l] = Re x[h, l] / Lk for l < L, from the inverse FFT of the spectrum (a = H, b = L,
// c = Lk, f = where in k the H × L values start).
@group(0) @binding(1) var<storage, {{ACT}}> spec: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;

@compute @workgroup_size(64)
fn extract(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if (e >= p.a * p.b) { return; }
    k[p.f + e] = spec[(e / p.b) * p.c + e % p.b].x / f32(p.c);
}
#endif

#if PACK
// The FFT convolution's rows (a = segments, b = P = ⌈H/2⌉ channel pairs, c = H, d = n, e = L
// the kernel's length, f = the longest segment, g = bidirectional): row (segment s, pair j)
// holds u of channels 2j and 2j + 1 as one complex signal, zero past the segment's end; then
// P rows of the kernel k [H, L] paired the same way. One dispatch packs both, so one FFT
// dispatch transforms the batch, its channels and the kernel. A bidirectional kernel
// [2, H, L] puts its backward half at the end of the row reversed, g[n − 1 − m] = k_b[m], so
// the circular convolution adds Σ_m k_b[m]·u[t + 1 + m] (the module's two-sided kernel). The
// rows hold the b pairs from pair0 on: a convolution too large for one scratch buffer runs in
// groups of channel pairs.
@group(0) @binding(1) var<storage, {{ACT}}> u: array<f32>;
@group(0) @binding(2) var<storage, read> segs: array<u32>;
@group(0) @binding(3) var<storage, {{ACT}}> k: array<f32>;
@group(0) @binding(4) var<storage, read_write> data: array<vec2<f32>>;

// Kernel half `half` (0 forward, 1 backward) of channels 2j and 2j + 1 at lag m.
fn kernel_pair(half: u32, j: u32, m: u32, second: bool) -> vec2<f32> {
    let base = half * p.c * p.e;
    let last = arrayLength(&k) - 1u;
    return vec2<f32>(k[base + 2u * j * p.e + m], select(0.0, k[min(base + (2u * j + 1u) * p.e + m, last)], second));
}

// The value of row (s, pair j) at position t: the segment's input, the kernel, or zero.
fn row_value(s: u32, j: u32, t: u32) -> vec2<f32> {
    let second = 2u * j + 1u < p.c;
    let lags = min(p.e, p.f);
    if (s < p.a) {
        let t0 = segs[s];
        if (t0 + t < segs[s + 1u]) {
            let at = (t0 + t) * p.c + 2u * j;
            return vec2<f32>(u[at], select(0.0, u[min(at + 1u, arrayLength(&u) - 1u)], second));
        }
    } else if (t < lags) {
        return kernel_pair(0u, j, t, second);
    } else if (p.g != 0u && t >= p.d - lags) {
        return kernel_pair(1u, j, p.d - 1u - t, second);
    }
    return vec2<f32>(0.0);
}

// A tile of 64 positions × 8 pairs per workgroup, through workgroup memory: reads take 8
// neighbouring pairs of a token (u's rows are token-major), writes 64 neighbouring positions
// of a row, so both are contiguous.
var<workgroup> tile: array<vec2<f32>, 576>; // [64][9], the pad column against bank conflicts

@compute @workgroup_size(64)
fn pack(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let jtiles = (p.b + 7u) / 8u;
    let ttiles = (p.d + 63u) / 64u;
    let wg = wid.x + wid.y * nwg.x;
    if (wg >= (p.a + 1u) * jtiles * ttiles) { return; }
    let s = wg / (jtiles * ttiles);
    let jt = (wg / ttiles) % jtiles;
    let tt = wg % ttiles;
    for (var q = 0u; q < 8u; q++) {
        let tl = lid / 8u + 8u * q;
        let jl = lid % 8u;
        let t = tt * 64u + tl;
        let j = jt * 8u + jl;
        var v = vec2<f32>(0.0);
        if (t < p.d && j < p.b) { v = row_value(s, p.pair0 + j, t); }
        tile[tl * 9u + jl] = v;
    }
    workgroupBarrier();
    let t = tt * 64u + lid;
    for (var jl = 0u; jl < 8u; jl++) {
        let j = jt * 8u + jl;
        if (t < p.d && j < p.b) { data[(s * p.b + j) * p.d + t] = tile[lid * 9u + jl]; }
    }
}
#endif

#if POINTWISE
// Y = U·K̂ per channel, two channels to a complex row (a = segments, b = P, c = n, d = n1,
// e = n2): with Z = FFT(u_a + i·u_b), U_a(k) = (Z(k) + Z̄(n−k))/2 and U_b(k) = (Z(k) −
// Z̄(n−k))/2i, likewise the kernel's row; Y(k) = U_a·K_a + i·U_b·K_b and Y(n−k) from the
// conjugates, so the inverse FFT gives y_a + i·y_b. Bins sit in slot order.
@group(0) @binding(1) var<storage, read_write> data: array<vec2<f32>>;

fn slot(k: u32) -> u32 { return (k % p.d) * p.e + k / p.d; }
fn bin(s: u32) -> u32 { return s / p.e + p.d * (s % p.e); }
fn minus_i(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.y, -a.x); }
fn plus_i(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(-a.y, a.x); }

@compute @workgroup_size(64)
fn pointwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if (e >= p.a * p.b * p.c) { return; }
    let row = e / p.c;
    let s = e % p.c;
    let kk = bin(s);
    let kp = (p.c - kk) % p.c;
    if (kk > kp) { return; } // its partner's invocation writes both
    let sp = slot(kp);
    let ur = row * p.c;
    let kr = (p.a * p.b + row % p.b) * p.c;
    let zu = data[ur + s];
    let zup = conj(data[ur + sp]);
    let zk = data[kr + s];
    let zkp = conj(data[kr + sp]);
    let ya = cmul(zu + zup, zk + zkp) * 0.25;
    let yb = cmul(minus_i(zu - zup), minus_i(zk - zkp)) * 0.25;
    data[ur + s] = ya + plus_i(yb);
    data[ur + sp] = conj(ya) + plus_i(conj(yb));
}
#endif

#if SEGMENTS
// The segment holding token t (binary search over the segments' cu table `segs`, which the
// entries below bind).
fn segment_of(t: u32) -> u32 {
    var lo = 0u;
    var hi = p.a;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (segs[mid] <= t) { lo = mid; } else { hi = mid; }
    }
    return lo;
}
#endif

#if UNPACK
// y[t, h] = (u ∗ k)[t, h] + D[h]·u[t, h] from the inverse FFT's rows (a = segments, b = the
// group's P pairs from pair0, c = H, d = n, e = T): channel 2j is the real part of pair j's
// row, 2j + 1 the imaginary.
@group(0) @binding(1) var<storage, {{ACT}}> u: array<f32>;
@group(0) @binding(2) var<storage, read> segs: array<u32>;
@group(0) @binding(3) var<storage, read> dskip: array<f32>;
@group(0) @binding(4) var<storage, {{ACT}}> data: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// A tile of 64 tokens × 8 pairs per workgroup, through workgroup memory: reads take 64
// neighbouring positions of a row, writes 16 neighbouring channels of a token.
var<workgroup> tile: array<vec2<f32>, 576>; // [64][9]

@compute @workgroup_size(64)
fn unpack(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let jtiles = (p.b + 7u) / 8u;
    let ttiles = (p.e + 63u) / 64u;
    let wg = wid.x + wid.y * nwg.x;
    if (wg >= jtiles * ttiles) { return; }
    let jt = wg / ttiles;
    let tt = wg % ttiles;
    let t = tt * 64u + lid;
    if (t < p.e) {
        let sg = segment_of(t);
        let at = t - segs[sg];
        for (var jl = 0u; jl < 8u; jl++) {
            let j = jt * 8u + jl;
            if (j < p.b) { tile[lid * 9u + jl] = data[(sg * p.b + j) * p.d + at]; }
        }
    }
    workgroupBarrier();
    for (var q = 0u; q < 8u; q++) {
        let tl = lid / 8u + 8u * q;
        let jl = lid % 8u;
        let tk = tt * 64u + tl;
        let h = 2u * (p.pair0 + jt * 8u + jl);
        if (tk < p.e && jt * 8u + jl < p.b && h < p.c) {
            let v = tile[tl * 9u + jl] / f32(p.d);
            let e = tk * p.c + h;
            y[e] = v.x + dskip[h] * u[e];
            if (h + 1u < p.c) { y[e + 1u] = v.y + dskip[h + 1u] * u[e + 1u]; }
        }
    }
}
#endif

#if DIRECT
// The causal convolution summed directly, for short segments (a = segments, c = H, e = T,
// b = L, g = bidirectional): y[t, h] = D[h]·u[t, h] + Σ_{τ ≤ t − t0} k[h, τ]·u[t − τ, h], plus
// for a bidirectional kernel [2, H, L] Σ_m k_b[h, m]·u[t + 1 + m, h] up to the segment's end.
@group(0) @binding(1) var<storage, {{ACT}}> u: array<f32>;
@group(0) @binding(2) var<storage, read> segs: array<u32>;
@group(0) @binding(3) var<storage, read> dskip: array<f32>;
@group(0) @binding(4) var<storage, {{ACT}}> k: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if (e >= p.e * p.c) { return; }
    let t = e / p.c;
    let h = e % p.c;
    let sg = segment_of(t);
    let t0 = segs[sg];
    var acc = dskip[h] * u[e];
    for (var tau = 0u; tau <= min(t - t0, p.b - 1u); tau++) {
        acc += k[h * p.b + tau] * u[(t - tau) * p.c + h];
    }
    if (p.g != 0u) {
        let ahead = min(segs[sg + 1u] - t - 1u, p.b);
        for (var m = 0u; m < ahead; m++) {
            acc += k[(p.c + h) * p.b + m] * u[(t + 1u + m) * p.c + h];
        }
    }
    y[e] = acc;
}
#endif

#if RECURRENCE
// The recurrent view on the discretised state in real coordinates (a = S, b = H, c = R = 2N
// real state rows, d = t_lo, e = t_hi): one workgroup per (sequence, channel) walks its tokens,
// r ← M·r + b·u, with row R of (mat, bvec) giving y = C̄·r + D·u of the new state. A
// sequence's first token (without INIT), or a RESET token, starts from r = 0. The state is
// left at the last token; OUTPUT writes y.
@group(0) @binding(1) var<storage, {{ACT}}> u: array<f32>;
@group(0) @binding(2) var<storage, read> mat: array<f32>;
@group(0) @binding(3) var<storage, read> bvec: array<f32>;
@group(0) @binding(4) var<storage, read> seqs: array<u32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// Whether token t starts from a zero state (the table's per-token flags follow cu_seqlens).
fn is_reset(t: u32) -> bool { return flag(RESET) && seqs[p.a + 1u + t] != 0u; }

var<workgroup> r_cur: array<f32, 512>;

@compute @workgroup_size(64)
fn recurrence(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.a * p.b) { return; }
    let s = g / p.b;
    let h = g % p.b;
    let rr = p.c;
    let t0 = seqs[s];
    let t1 = seqs[s + 1u];
    let lo = t0 + min(p.d, t1 - t0);
    let hi = t0 + min(p.e, t1 - t0);
    if (lo >= hi) { return; }
    let sbase = (s * p.b + h) * rr;
    for (var i = lid; i < rr; i += 64u) {
        r_cur[i] = select(0.0, state[sbase + i], flag(INIT) || lo > t0);
    }
    workgroupBarrier();
    let mbase = h * (rr + 1u) * rr;
    for (var t = lo; t < hi; t++) {
        let fresh = is_reset(t) || (t == t0 && !flag(INIT));
        let x = u[t * p.b + h];
        var next: array<f32, 9>;
        var slot = 0u;
        for (var i = lid; i <= rr; i += 64u) {
            var acc = bvec[h * (rr + 1u) + i] * x;
            if (!fresh) {
                for (var j = 0u; j < rr; j++) { acc += mat[mbase + i * rr + j] * r_cur[j]; }
            }
            next[slot] = acc;
            slot++;
        }
        workgroupBarrier();
        slot = 0u;
        for (var i = lid; i <= rr; i += 64u) {
            if (i < rr) { r_cur[i] = next[slot]; } else if (flag(OUTPUT)) { y[t * p.b + h] = next[slot]; }
            slot++;
        }
        workgroupBarrier();
    }
    for (var i = lid; i < rr; i += 64u) { state[sbase + i] = r_cur[i]; }
}
#endif

#if COMBINE
// The state at the end of a long prefill from its chunks' states (a = S, b = H, c = R real
// rows): each sequence's tokens since its start or last reset are cut into chunks of C, the
// partial one first, and each chunk's state from zero is walked in parallel (the recurrence
// entry over the chunks as sequences); then x ← M^C·x + x_c over the chunks in order gives the
// state (`pw` = M^C per channel, `table` per sequence (first chunk, chunks)).
@group(0) @binding(1) var<storage, read> cstate: array<f32>;
@group(0) @binding(2) var<storage, read> pw: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

var<workgroup> x_cur: array<f32, 512>;

@compute @workgroup_size(64)
fn combine(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.a * p.b) { return; }
    let s = g / p.b;
    let h = g % p.b;
    let rr = p.c;
    let first = table[2u * s];
    let count = table[2u * s + 1u];
    if (count == 0u) { return; }
    for (var i = lid; i < rr; i += 64u) { x_cur[i] = cstate[(first * p.b + h) * rr + i]; }
    workgroupBarrier();
    let mbase = h * rr * rr;
    for (var c = 1u; c < count; c++) {
        var next: array<f32, 8>;
        var slot = 0u;
        for (var i = lid; i < rr; i += 64u) {
            var acc = cstate[((first + c) * p.b + h) * rr + i];
            for (var j = 0u; j < rr; j++) { acc += pw[mbase + i * rr + j] * x_cur[j]; }
            next[slot] = acc;
            slot++;
        }
        workgroupBarrier();
        slot = 0u;
        for (var i = lid; i < rr; i += 64u) {
            x_cur[i] = next[slot];
            slot++;
        }
        workgroupBarrier();
    }
    for (var i = lid; i < rr; i += 64u) { state[(s * p.b + h) * rr + i] = x_cur[i]; }
}
#endif
