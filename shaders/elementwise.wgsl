// Elementwise ops on f32 or f16 activations. OP selects the function; the second operand of
// binary ops broadcasts with period `nb` (nb == n: same shape; nb == row length: per-column
// bias). With F16, `a` and `out` are f16 packed two per u32 word and each invocation takes one
// word (the pad half of an odd-length tensor's last word is written as 0); with B16, `b` is
// packed f16 too. Arithmetic is f32 either way.
struct Params { n: u32, nb: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;

#include activations

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * {{WG}}u; }

#if F16
// The two elements of word w of a, with f applied, packed (the pad half as 0).
fn packed(lo: f32, hi: f32, w: u32) -> u32 {
    return pack2x16float(vec2<f32>(lo, select(0.0, hi, 2u * w + 1u < p.n)));
}
#endif

#if UNARY
fn f(x: f32) -> f32 { return {{EXPR}}; }
#if F16
@group(0) @binding(1) var<storage, {{ACT}}> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size({{WG}})
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = index(gid, nwg);
    if (2u * w >= p.n) { return; }
    let x = unpack2x16float(a[w]);
    out[w] = packed(f(x.x), f(x.y), w);
}
#else
@group(0) @binding(1) var<storage, {{ACT}}> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{WG}})
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = f(a[i]);
}
#endif
#endif

#if BINARY
fn f(x: f32, y: f32) -> f32 { return {{EXPR}}; }
#if B16
@group(0) @binding(2) var<storage, {{ACT}}> b: array<u32>;
fn b_at(i: u32) -> f32 { let k = i % p.nb; return unpack2x16float(b[k >> 1u])[k & 1u]; }
#else
@group(0) @binding(2) var<storage, {{ACT}}> b: array<f32>;
fn b_at(i: u32) -> f32 { return b[i % p.nb]; }
#endif
#if F16
@group(0) @binding(1) var<storage, {{ACT}}> a: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

@compute @workgroup_size({{WG}})
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = index(gid, nwg);
    if (2u * w >= p.n) { return; }
    let x = unpack2x16float(a[w]);
    // The pad half reads b at a valid index; its result is dropped.
    let hi = min(2u * w + 1u, p.n - 1u);
    out[w] = packed(f(x.x, b_at(2u * w)), f(x.y, b_at(hi)), w);
}
#else
@group(0) @binding(1) var<storage, {{ACT}}> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{WG}})
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = f(a[i], b_at(i));
}
#endif
#endif

#if CAST_F16
// f32 → f16: one output word (two elements) per invocation.
@group(0) @binding(1) var<storage, {{ACT}}> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size({{WG}})
fn convert(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = index(gid, nwg);
    if (2u * w >= p.n) { return; }
    out[w] = packed(a[2u * w], a[min(2u * w + 1u, p.n - 1u)], w);
}
#endif

#if CAST_F32
// f16 → f32: one element per invocation.
@group(0) @binding(1) var<storage, {{ACT}}> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{WG}})
fn convert(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = unpack2x16float(a[i >> 1u])[i & 1u];
}
#endif

#if INPLACE
// Fused residual add: acc += scale * x, in place (acc is the only binding written).
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> b: array<f32>;

@compute @workgroup_size({{WG}})
fn residual_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    acc[i] = acc[i] + p.scale * b[i % p.nb];
}
#endif
