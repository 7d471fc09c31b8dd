// The S4 family's fused FFT convolution (ops::s4::fftconv): y = (k + D·δ) ∗ u within each
// segment, two channels to a complex row (Z = u_a + i·u_b, likewise the kernel), in as few
// passes over memory as the FFT length allows.
//   WHOLE   (n ≤ LOCAL/2): one pass. A workgroup loads its pairs' input rows and kernel rows,
//           transforms both, multiplies, transforms back and writes y.
//   COLUMNS, ROWS, OUTPUT (n = n1·n2, the four-step form): COLUMNS reads u and k themselves
//           into the length-n1 column transforms (with the twiddle, into `data`); ROWS takes
//           the two rows that hold bins k and n − k, of the input and of the kernel,
//           transforms them along, multiplies, and transforms the input's back with the
//           inverse twiddle; OUTPUT runs the inverse columns and writes y.
// The skip D·u rides in the kernel (D is added to its lag 0), so y needs no second read of u.
// Separating the two channels of a row needs bin n − k beside bin k:
//   U_a = (Z(k) + Z̄(n−k))/2, U_b = (Z(k) − Z̄(n−k))/2i, and Y(k) = U_a·K_a + i·U_b·K_b.
// p: segs, pairs (of this group, from pair0), h channels, n = n1·n2, lk the kernel's row
// length, lags = min(lk, longest segment), bidi (k is [2, H, lk]), ppw pairs and cols columns
// per workgroup (WHOLE: ppw pairs).
struct Params {
    segs: u32, pairs: u32, h: u32, n: u32, n1: u32, n2: u32, lk: u32, lags: u32,
    bidi: u32, pair0: u32, ppw: u32, cols: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = {{LOCAL}}u / 16u;
const HALF: u32 = {{LOCAL}}u / 2u;
var<workgroup> buf: array<vec2<f32>, {{LOCAL}}>;

// Rows of m ≥ 16 values have their low four bits XORed with the row's index, so the column
// passes' accesses (consecutive invocations, consecutive rows, the same column) hit distinct
// banks; m is the pass's transform length.
var<private> row_shift: u32;
var<private> swizzle: u32;
fn set_rows(m: u32) {
    row_shift = countTrailingZeros(m);
    swizzle = select(0u, 15u, m >= 16u);
}
fn at(x: u32) -> u32 { return x ^ ((x >> row_shift) & swizzle); }

#include fft_stages

fn conj(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x, -a.y); }
fn minus_i(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.y, -a.x); }
fn plus_i(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(-a.y, a.x); }
fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }
fn blocks() -> u32 { return (p.pairs + p.ppw - 1u) / p.ppw; }

#if LOADS
// The entries that load u and k (WHOLE, COLUMNS) take these first, then their output at 5;
// the others declare their own, numbered in the order ops::s4::fftconv passes them.
@group(0) @binding(1) var<storage, read> segs: array<u32>;
@group(0) @binding(2) var<storage, {{ACT}}> u: array<f32>;
@group(0) @binding(3) var<storage, {{ACT}}> k: array<f32>;
@group(0) @binding(4) var<storage, read> dskip: array<f32>;

// Channels 2j and 2j + 1 (j counted from pair0) of token t (the second 0 past H).
fn input_pair(t: u32, j: u32) -> vec2<f32> {
    let c = 2u * (p.pair0 + j);
    let idx = t * p.h + c;
    return vec2<f32>(u[idx], select(0.0, u[min(idx + 1u, arrayLength(&u) - 1u)], c + 1u < p.h));
}

// One channel's kernel row value at FFT position m: lag m of the forward half (plus D at lag
// 0), or, for a bidirectional kernel, lag n − 1 − m of the backward half at the row's end, so
// the circular convolution adds Σ_m k_b[m]·u[t + 1 + m] (the module's two-sided kernel).
fn kernel_value(c: u32, m: u32) -> f32 {
    if (c >= p.h) { return 0.0; }
    if (m < p.lags) { return k[c * p.lk + m] + select(0.0, dskip[c], m == 0u); }
    if (p.bidi != 0u && m >= p.n - p.lags) { return k[(p.h + c) * p.lk + p.n - 1u - m]; }
    return 0.0;
}

fn kernel_pair(j: u32, m: u32) -> vec2<f32> {
    let c = 2u * (p.pair0 + j);
    return vec2<f32>(kernel_value(c, m), kernel_value(c + 1u, m));
}
#endif

#if STORES

// y of channels 2j and 2j + 1 (from pair0) at token t, scaled by 1/n (the inverse is unscaled).
fn store_pair(t: u32, j: u32, v: vec2<f32>) {
    let c = 2u * (p.pair0 + j);
    let w = v / f32(p.n);
    y[t * p.h + c] = w.x;
    if (c + 1u < p.h) { y[t * p.h + c + 1u] = w.y; }
}
#endif

#if MULTIPLY
// Y = U_a·K_a + i·U_b·K_b over the first `len` values of buf (the input rows), the kernel's
// transform `koff` further on, bin n − k of value x at partner(x) (each entry defines it).
fn multiply(lid: u32, len: u32, koff: u32) {
    let count = len / WG;
#for J in 0..8
    var y{{J}} = vec2<f32>(0.0);
    if ({{J}}u < count) { y{{J}} = product(lid + {{J}}u * WG, koff); }
#endfor
    workgroupBarrier();
#for J in 0..8
    if ({{J}}u < count) { buf[at(lid + {{J}}u * WG)] = y{{J}}; }
#endfor
    workgroupBarrier();
}

// The input rows (the buffer's first half) and the kernel rows (its second) of length m, loaded
// by every invocation: both transformed, multiplied into the first half, transformed back.
fn convolve_rows(lid: u32, m: u32) {
    workgroupBarrier();
    fft_local(lid, m, {{LOCAL}}u, false);
    multiply(lid, HALF, HALF);
    fft_local(lid, m, HALF, true);
}

fn product(x: u32, koff: u32) -> vec2<f32> {
    let px = partner(x);
    let zu = buf[at(x)];
    let zup = conj(buf[at(px)]);
    let zk = buf[at(koff + x)];
    let zkp = conj(buf[at(koff + px)]);
    let ya = fft_cmul(zu + zup, zk + zkp) * 0.25;
    let yb = fft_cmul(minus_i(zu - zup), minus_i(zk - zkp)) * 0.25;
    return ya + plus_i(yb);
}
#endif

#if WHOLE
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// A workgroup takes ppw = LOCAL/(2n) pairs of one segment: their input rows in the first half
// of buf, their kernel rows in the second.
var<private> row_len: u32;
fn partner(x: u32) -> u32 {
    let k = modulo(x, row_len);
    return x - k + modulo(row_len - k, row_len);
}

@compute @workgroup_size(WG)
fn whole(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wg_index(wid, nwg);
    if (wg >= p.segs * blocks()) { return; }
    set_rows(p.n);
    row_len = p.n;
    let s = wg / blocks();
    let j0 = (wg % blocks()) * p.ppw;
    let t0 = segs[s];
    let len = segs[s + 1u] - t0;
    // Inputs pair-fastest (u is token-major), kernels position-fastest (k is channel-major).
    for (var q = 0u; q < 8u; q++) {
        let i = lid + q * WG;
        let jl = modulo(i, p.ppw);
        let t = over(i, p.ppw);
        var v = vec2<f32>(0.0);
        if (j0 + jl < p.pairs && t < len) { v = input_pair(t0 + t, j0 + jl); }
        buf[at(jl * p.n + t)] = v;
        let kj = over(i, p.n);
        var kv = vec2<f32>(0.0);
        if (j0 + kj < p.pairs) { kv = kernel_pair(j0 + kj, modulo(i, p.n)); }
        buf[at(HALF + i)] = kv;
    }
    convolve_rows(lid, p.n);
    for (var q = 0u; q < 8u; q++) {
        let i = lid + q * WG;
        let jl = modulo(i, p.ppw);
        let t = over(i, p.ppw);
        if (j0 + jl < p.pairs && t < len) { store_pair(t0 + t, j0 + jl, buf[at(jl * p.n + t)]); }
    }
}
#endif

#if TILES
// A column pass's workgroup: ppw pairs × cols columns of one row set (segment, or the
// kernel), each column n1 long at stride n2; the local sub-sequence of (column cl, pair jl)
// is cl·ppw + jl.
struct Tile { row: u32, j0: u32, c0: u32 }
fn tile(wg: u32) -> Tile {
    let cblocks = p.n2 / p.cols;
    return Tile(wg / (blocks() * cblocks), ((wg / cblocks) % blocks()) * p.ppw, (wg % cblocks) * p.cols);
}
// Value i of a tile, column-fastest (along a row of `data`): (cl, jl, e).
fn column_fastest(i: u32) -> vec3<u32> {
    return vec3<u32>(modulo(i, p.cols), modulo(over(i, p.cols), p.ppw), over(i, p.cols * p.ppw));
}
// Pair-fastest (along a token of u or y).
fn pair_fastest(i: u32) -> vec3<u32> {
    return vec3<u32>(modulo(over(i, p.ppw), p.cols), modulo(i, p.ppw), over(i, p.cols * p.ppw));
}
fn local_at(c: vec3<u32>) -> u32 { return at((c.x * p.ppw + c.y) * p.n1 + c.z); }
fn data_at(row: u32, j: u32, col: u32, e: u32) -> u32 { return (row * p.pairs + j) * p.n + col + e * p.n2; }
#endif

#if COLUMNS
@group(0) @binding(5) var<storage, read_write> data: array<vec2<f32>>;

// Row sets 0 .. segs − 1 are the segments' inputs, row set segs the kernel.
@compute @workgroup_size(WG)
fn columns(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wg_index(wid, nwg);
    if (wg >= (p.segs + 1u) * blocks() * (p.n2 / p.cols)) { return; }
    set_rows(p.n1);
    let tl = tile(wg);
    let kernel = tl.row == p.segs;
    let s = min(tl.row, p.segs - 1u);
    let t0 = segs[s];
    let len = segs[s + 1u] - t0;
    for (var q = 0u; q < 16u; q++) {
        let i = lid + q * WG;
        var c = pair_fastest(i);
        if (kernel) { c = column_fastest(i); }
        let j = tl.j0 + c.y;
        let pos = tl.c0 + c.x + c.z * p.n2;
        var v = vec2<f32>(0.0);
        if (j < p.pairs) {
            if (kernel) { v = kernel_pair(j, pos); } else if (pos < len) { v = input_pair(t0 + pos, j); }
        }
        buf[local_at(c)] = v;
    }
    workgroupBarrier();
    fft_local(lid, p.n1, {{LOCAL}}u, false);
    for (var q = 0u; q < 16u; q++) {
        let c = column_fastest(lid + q * WG);
        let j = tl.j0 + c.y;
        let col = tl.c0 + c.x;
        if (j < p.pairs) {
            data[data_at(tl.row, j, col, c.z)] = fft_cmul(buf[local_at(c)], fft_twiddle(col * c.z, p.n, false));
        }
    }
}
#endif

#if ROWS
@group(0) @binding(1) var<storage, read_write> data: array<vec2<f32>>;

// A workgroup takes rq = LOCAL/(4·n2) row pairs of one (segment, pair): row pair q holds rows
// q and n1 − q (bins k and n − k; q = 0 takes rows 0 and n1/2, each its own partner), the
// input's as local rows 2·qq, 2·qq + 1 and the kernel's 2·rq further on.
var<private> q0: u32;
fn rq() -> u32 { return {{LOCAL}}u / (4u * p.n2); }
fn row_of(b: u32) -> u32 {
    let q = q0 + modulo(b, 2u * rq()) / 2u;
    if (b % 2u == 0u) { return select(q, 0u, q == 0u); }
    return select(p.n1 - q, p.n1 / 2u, q == 0u);
}
fn partner(x: u32) -> u32 {
    let b = over(x, p.n2);
    let k2 = modulo(x, p.n2);
    if (q0 + b / 2u == 0u && b % 2u == 0u) { return x - k2 + modulo(p.n2 - k2, p.n2); }
    if (q0 + b / 2u == 0u) { return x - k2 + p.n2 - 1u - k2; }
    return (b ^ 1u) * p.n2 + p.n2 - 1u - k2;
}

@compute @workgroup_size(WG)
fn rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wg_index(wid, nwg);
    let qblocks = p.n1 / (2u * rq());
    if (wg >= p.segs * p.pairs * qblocks) { return; }
    set_rows(p.n2);
    let s = wg / (p.pairs * qblocks);
    let j = (wg / qblocks) % p.pairs;
    q0 = (wg % qblocks) * rq();
    let input = (s * p.pairs + j) * p.n;
    let kernel = (p.segs * p.pairs + j) * p.n;
    for (var q = 0u; q < 16u; q++) {
        let i = lid + q * WG;
        let b = over(i, p.n2);
        let src = select(kernel, input, b < 2u * rq());
        buf[at(i)] = data[src + row_of(b) * p.n2 + modulo(i, p.n2)];
    }
    convolve_rows(lid, p.n2);
    for (var q = 0u; q < 8u; q++) {
        let i = lid + q * WG;
        let r = row_of(over(i, p.n2));
        let k2 = modulo(i, p.n2);
        data[input + r * p.n2 + k2] = fft_cmul(buf[at(i)], fft_twiddle(r * k2, p.n, true));
    }
}
#endif

#if OUTPUT
@group(0) @binding(1) var<storage, read> segs: array<u32>;
@group(0) @binding(2) var<storage, read_write> data: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn output(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wg_index(wid, nwg);
    if (wg >= p.segs * blocks() * (p.n2 / p.cols)) { return; }
    set_rows(p.n1);
    let tl = tile(wg);
    for (var q = 0u; q < 16u; q++) {
        let c = column_fastest(lid + q * WG);
        let j = tl.j0 + c.y;
        var v = vec2<f32>(0.0);
        if (j < p.pairs) { v = data[data_at(tl.row, j, tl.c0 + c.x, c.z)]; }
        buf[local_at(c)] = v;
    }
    workgroupBarrier();
    fft_local(lid, p.n1, {{LOCAL}}u, true);
    let t0 = segs[tl.row];
    let len = segs[tl.row + 1u] - t0;
    for (var q = 0u; q < 16u; q++) {
        let c = pair_fastest(lid + q * WG);
        let j = tl.j0 + c.y;
        let t = tl.c0 + c.x + c.z * p.n2;
        if (j < p.pairs && t < len) { store_pair(t0 + t, j, buf[local_at(c)]); }
    }
}
#endif
