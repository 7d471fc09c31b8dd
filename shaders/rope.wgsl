// Rotary position embedding, in place on the q and k parts of fused qkv rows (ops::rope):
//   qkv      : [T, (H + 2·Hkv)·D]  q heads, then k heads, then v heads (v untouched)
//   seqs     : cu_seqlens [S + 1]
//   pos      : [S] u32             the position of each sequence's first new token
//   inv_freq : [R / 2] f32         θ^(−2i/R), as transformers computes it in f32
// Each head's first R dims rotate as pairs (i, i + R/2) (rotate_half); the rest pass. The
// angle is f32(position)·inv_freq[i], as in transformers, reduced to [−π, π] in two steps
// before cos and sin (GPU cos/sin are only accurate near zero).
struct Params { nseq: u32, heads: u32, kv_heads: u32, dim: u32, rot: u32, total: u32, flags: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;
#if ROPE
@group(0) @binding(2) var<storage, read> seqs: array<u32>;
@group(0) @binding(3) var<storage, read> pos: array<u32>;
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>;

// seq_of (RESET is never set: attention takes no reset flags).
#include flags
#include packed_seqs

#endif

// x − 2π·round(x / 2π), with 2π split in three so the product is exact for |x| < 2²⁴.
fn reduce_angle(x: f32) -> f32 {
    let k = round(x * 0.15915494309189535);
    return ((x - k * 6.28125) - k * 1.9353071693331003e-3) - k * 1.0253131677018246e-11;
}

// The pair (x1, x2) = (dim i, dim i + R/2) rotated by `angle` = position · inv_freq[i].
fn rotate_pair(x1: f32, x2: f32, angle: f32) -> vec2<f32> {
    let a = reduce_angle(angle);
    let c = cos(a);
    let sn = sin(a);
    return vec2<f32>(x1 * c - x2 * sn, x2 * c + x1 * sn);
}

#if ROPE
@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.rot / 2u;
    let e = gid.x + gid.y * nwg.x * 64u;
    let heads = p.heads + p.kv_heads; // rotated heads per token: q, then k
    if (e >= p.total * heads * half) { return; }
    let i = e % half;
    let head = (e / half) % heads;
    let t = e / (half * heads);
    let s = seq_of(t);
    let position = pos[s] + t - seqs[s];
    let base = t * (p.heads + 2u * p.kv_heads) * p.dim + head * p.dim;
    let r = rotate_pair(qkv[base + i], qkv[base + i + half], f32(position) * inv_freq[i]);
    qkv[base + i] = r.x;
    qkv[base + i + half] = r.y;
}
#endif

#if HEAD_NORM
// RMSNorm of the q and k parts of each row, in place, before RoPE: x / sqrt(mean(x²) + eps) · w,
// w [(H + Hkv)·D] over the q and k columns. Segments: each head (Qwen3-Next's q_norm and k_norm),
// or (WHOLE) all q heads together and all k heads together (OLMo's). One workgroup per
// (token, segment). With ROTATE the normalised values are also rotated (RoPE as above) before
// they are written: one pass over q and k instead of two.
@group(0) @binding(2) var<storage, read> norm_w: array<f32>;
#if ROTATE
@group(0) @binding(3) var<storage, read> seqs: array<u32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<storage, read> inv_freq: array<f32>;
#include flags
#include packed_seqs
#endif
// The sum of squares over the 64 invocations (lib/reduce, WG = 64, SUBGROUPS = 0).
#include reduce

@compute @workgroup_size(64)
fn head_norm(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let whole = (p.flags & WHOLE) != 0u;
    let segs = select(p.heads + p.kv_heads, 2u, whole);
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.total * segs) { return; } // workgroup-uniform
    let seg = idx % segs;
    let t = idx / segs;
    var col = seg * p.dim;
    var len = p.dim;
    if (whole) {
        col = select(0u, p.heads * p.dim, seg == 1u);
        len = select(p.heads, p.kv_heads, seg == 1u) * p.dim;
    }
    let base = t * (p.heads + 2u * p.kv_heads) * p.dim + col;
    var ss = 0.0;
    for (var d = lid; d < len; d += 64u) { ss += qkv[base + d] * qkv[base + d]; }
    let inv = inverseSqrt(reduce_sum(ss, Lane(lid, 0u, 0u, 0u)) / f32(len) + p.eps);
#if ROTATE
    let s = seq_of(t);
    let position = pos[s] + t - seqs[s];
    let half = p.rot / 2u;
    // Dim i < R/2 of a head rotates with i + R/2 (which its invocation writes too); dims from R
    // on are only normalised.
    for (var d = lid; d < len; d += 64u) {
        let i = d % p.dim;
        if (i < half) {
            let x1 = qkv[base + d] * inv * norm_w[col + d];
            let x2 = qkv[base + d + half] * inv * norm_w[col + d + half];
            let r = rotate_pair(x1, x2, f32(position) * inv_freq[i]);
            qkv[base + d] = r.x;
            qkv[base + d + half] = r.y;
        } else if (i >= p.rot) {
            qkv[base + d] = qkv[base + d] * inv * norm_w[col + d];
        }
    }
#else
    for (var d = lid; d < len; d += 64u) { qkv[base + d] = qkv[base + d] * inv * norm_w[col + d]; }
#endif
}
#endif
