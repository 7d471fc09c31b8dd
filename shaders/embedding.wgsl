// Embedding gather: out[t, :] = table[ids[t], :]. Ids past the vocabulary produce zero rows
// (the host API checks ids it uploads; on-GPU ids come from sampling and are in range).
struct Params { tokens: u32, dim: u32, vocab: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> ids: array<u32>;
@group(0) @binding(2) var<storage, {{ACT}}> table: array<{{TTYPE}}>; // an activation when gathering rows of one
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn load(e: u32) -> f32 {
#if F16P
    return unpack2x16float(table[e >> 1u])[e & 1u];
#else
    return f32(table[e]);
#endif
}

@compute @workgroup_size({{WG}})
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * {{WG}}u;
    if (i >= p.tokens * p.dim) { return; }
    let t = i / p.dim;
    let d = i % p.dim;
    let id = ids[t];
    var v = 0.0;
    if (id < p.vocab) { v = load(id * p.dim + d); }
    out[i] = v;
}
