// Elementwise ops on f32 activations. OP selects the function; the second operand of binary
// ops broadcasts with period `nb` (nb == n: same shape; nb == row length: per-column bias).
struct Params { n: u32, nb: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;

#include activations

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * {{WG}}u; }

#if UNARY
@group(0) @binding(1) var<storage, {{ACT}}> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{WG}})
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let x = a[i];
    out[i] = {{EXPR}};
}
#endif

#if BINARY
@group(0) @binding(1) var<storage, {{ACT}}> a: array<f32>;
@group(0) @binding(2) var<storage, {{ACT}}> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{WG}})
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let x = a[i];
    let y = b[i % p.nb];
    out[i] = {{EXPR}};
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
