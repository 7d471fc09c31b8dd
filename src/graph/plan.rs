//! Memory planning for activations.
//!
//! 1. **Lifetimes.** An activation lives from the node that produces it to the last node that
//!    reads it (graph outputs: to the end).
//! 2. **In-place groups.** Following each op's contract ([`Op::inplace_input`]), a node's output
//!    joins its input's storage group when that input is an activation of the same size read
//!    for the last time by this node (at that input only) and is not a graph output.
//! 3. **Placement.** Groups are placed largest first; each goes at the best-fitting free gap
//!    (smallest gap that holds it, among groups whose lifetimes overlap) of the first buffer
//!    where it fits under the binding limit, else on top, else in a new buffer. Offsets are
//!    multiples of the storage offset alignment. This is greedy-by-size with best fit, as in
//!    TFLite's and ggml's allocators.
//!
//! **Legal bindings.** All activations of a buffer may be read and written by one dispatch, so
//! the executor binds activation inputs `read_write` (the arena `.rw` shader variants): wgpu
//! rejects one buffer bound read-only and writable in a dispatch, but accepts it bound writable
//! several times. Weights, state and inputs live in buffers of their own.

use super::{Graph, Role};
use crate::device::Capabilities;
use crate::error::{Error, Result};
use serde::Serialize;

/// Planner settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// Offset alignment of every activation (≥ 4).
    pub align: u64,
    /// Largest buffer an activation arena may have (min of max binding and max buffer size).
    pub max_buffer: u64,
    /// Reuse storage across lifetimes; off gives every activation its own buffer (naive).
    pub reuse: bool,
    /// Apply ops' in-place contracts.
    pub inplace: bool,
}

impl PlanOptions {
    /// Settings for a device: its alignment and binding limits.
    pub fn for_device(caps: &Capabilities) -> Self {
        Self {
            align: (caps.min_storage_buffer_offset_alignment as u64).max(4),
            max_buffer: caps.max_storage_buffer_binding_size.min(caps.max_buffer_size),
            reuse: true,
            inplace: true,
        }
    }

    /// Device-independent settings for reports: 256-byte alignment (the largest WebGPU
    /// requires) and 2 GiB buffers.
    pub fn offline() -> Self {
        Self { align: 256, max_buffer: 2 << 30, reuse: true, inplace: true }
    }
}

/// Where an activation lives: arena buffer index and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub buffer: usize,
    pub offset: u64,
}

/// Memory figures of a plan (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    /// One buffer per activation (aligned sizes summed).
    pub naive_bytes: u64,
    /// Sum of the planned arena buffers.
    pub planned_bytes: u64,
    /// Maximum over time of live activation bytes (storage groups counted once).
    pub lower_bound_bytes: u64,
    pub weight_bytes: u64,
    pub state_bytes: u64,
    pub input_bytes: u64,
    pub activations: usize,
    pub arena_buffers: usize,
    /// Nodes whose output took its input's storage.
    pub inplace_nodes: usize,
}

/// A memory plan for one graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Per tensor: its placement (activations only).
    pub placements: Vec<Option<Placement>>,
    /// Size of each arena buffer.
    pub buffers: Vec<u64>,
    /// Per tensor: (first node, last node) during which it is live (activations only).
    pub lifetimes: Vec<Option<(usize, usize)>>,
    /// Per node: whether its output shares its input's storage.
    pub inplace: Vec<bool>,
    pub report: MemoryReport,
}

fn round_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

struct Group {
    members: Vec<usize>,
    size: u64,
    start: usize,
    end: usize,
}

/// Plans activation storage for `g`.
pub fn plan(g: &Graph, opts: &PlanOptions) -> Result<Plan> {
    let align = opts.align.max(4);
    let n_nodes = g.nodes.len();
    let nt = g.tensors.len();
    for (i, node) in g.nodes.iter().enumerate() {
        if node.inputs.iter().chain(&node.scratch).any(|t| t.0 >= nt) || node.output.0 >= nt {
            return Err(Error::Invalid(format!("node {i} refers to a tensor outside the graph")));
        }
    }
    // Lifetimes.
    let mut life: Vec<Option<(usize, usize)>> = vec![None; nt];
    for (i, node) in g.nodes.iter().enumerate() {
        life[node.output.0] = Some((i, i));
        for t in &node.scratch {
            life[t.0] = Some((i, i)); // scratch lives while its node runs
        }
        for t in &node.inputs {
            if let Some((s, e)) = life[t.0] {
                life[t.0] = Some((s, e.max(i)));
            }
        }
    }
    for t in &g.outputs {
        if let Some((s, _)) = life[t.0] {
            life[t.0] = Some((s, n_nodes));
        }
    }
    let size = |t: usize| round_up(g.tensors[t].bytes().max(4), align);
    // In-place groups.
    let mut group_of: Vec<Option<usize>> = vec![None; nt];
    let mut groups: Vec<Group> = Vec::new();
    let mut inplace = vec![false; n_nodes];
    for (i, node) in g.nodes.iter().enumerate() {
        for t in &node.scratch {
            groups.push(Group { members: vec![t.0], size: size(t.0), start: i, end: i });
            group_of[t.0] = Some(groups.len() - 1);
        }
        let out = node.output.0;
        let (s, e) = life[out].expect("outputs have lifetimes");
        let src = node.op.inplace_input().map(|k| node.inputs[k].0);
        let joinable = src.filter(|&src| {
            opts.inplace
                && opts.reuse
                && g.tensors[src].role == Role::Activation
                && life[src].is_some_and(|(_, last)| last == i)
                && !g.outputs.iter().any(|o| o.0 == src)
                && size(src) == size(out)
                // Not read at another input too (a matmul reading x across invocations while
                // its store overwrites x in place would race).
                && node.inputs.iter().filter(|t| t.0 == src).count() == 1
        });
        match joinable.and_then(|src| group_of[src]) {
            Some(gi) => {
                let gr = &mut groups[gi];
                gr.members.push(out);
                gr.end = gr.end.max(e);
                group_of[out] = Some(gi);
                inplace[i] = true;
            }
            None => {
                groups.push(Group { members: vec![out], size: size(out), start: s, end: e });
                group_of[out] = Some(groups.len() - 1);
            }
        }
    }
    // Placement.
    for gr in &groups {
        if gr.size > opts.max_buffer {
            let t = &g.tensors[gr.members[0]];
            return Err(Error::Limit(format!(
                "activation {} {:?} needs {} bytes, more than one binding allows ({} bytes)",
                t.name, t.shape, gr.size, opts.max_buffer
            )));
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(groups[i].size), groups[i].start));
    let mut place: Vec<Option<Placement>> = vec![None; groups.len()];
    let mut buffers: Vec<u64> = Vec::new();
    let mut index = TimeIndex::new(n_nodes + 1, groups.len());
    for &gi in &order {
        let gr = &groups[gi];
        let p = if opts.reuse {
            best_fit(gi, &groups, &place, &buffers, opts.max_buffer, &mut index)
        } else {
            None
        };
        let p = p.unwrap_or_else(|| {
            buffers.push(0);
            Placement { buffer: buffers.len() - 1, offset: 0 }
        });
        buffers[p.buffer] = buffers[p.buffer].max(p.offset + gr.size);
        place[gi] = Some(p);
        index.insert(gi, gr.start, gr.end);
    }
    let mut placements = vec![None; nt];
    for (gi, gr) in groups.iter().enumerate() {
        for &m in &gr.members {
            placements[m] = place[gi];
        }
    }
    // Report.
    // Live bytes over time by a sweep: each group adds its size at its start and removes it
    // after its end.
    let mut delta = vec![0i128; n_nodes + 2];
    for gr in &groups {
        delta[gr.start] += gr.size as i128;
        delta[gr.end.min(n_nodes) + 1] -= gr.size as i128;
    }
    let (mut live, mut lower) = (0i128, 0i128);
    for d in &delta {
        live += d;
        lower = lower.max(live);
    }
    let lower = lower as u64;
    let sum_role = |r: Role| g.tensors.iter().filter(|t| t.role == r).map(|t| t.bytes()).sum::<u64>();
    let activations: Vec<usize> = (0..nt).filter(|&t| g.tensors[t].role == Role::Activation).collect();
    let report = MemoryReport {
        naive_bytes: activations.iter().map(|&t| size(t)).sum(),
        planned_bytes: buffers.iter().sum(),
        lower_bound_bytes: lower,
        weight_bytes: sum_role(Role::Weight),
        state_bytes: sum_role(Role::State),
        input_bytes: sum_role(Role::Input),
        activations: activations.len(),
        arena_buffers: buffers.len(),
        inplace_nodes: inplace.iter().filter(|&&b| b).count(),
    };
    Ok(Plan { placements, buffers, lifetimes: life, inplace, report })
}

/// Placed groups by the stretch of time they live in, so that a placement looks only at the
/// groups whose lifetimes can overlap its own (planning stays near-linear in the node count:
/// most activations live for a few nodes). Time is cut into buckets of [`TimeIndex::WIDTH`]
/// nodes; a group is listed in every bucket its lifetime touches.
struct TimeIndex {
    buckets: Vec<Vec<usize>>,
    /// Per group, the last query that saw it (to list each candidate once).
    seen: Vec<usize>,
    query: usize,
}

impl TimeIndex {
    const WIDTH: usize = 32;

    fn new(steps: usize, groups: usize) -> Self {
        Self {
            buckets: vec![Vec::new(); steps.div_ceil(Self::WIDTH) + 1],
            seen: vec![usize::MAX; groups],
            query: 0,
        }
    }

    fn insert(&mut self, group: usize, start: usize, end: usize) {
        for b in start / Self::WIDTH..=end / Self::WIDTH {
            self.buckets[b].push(group);
        }
    }

    /// Placed groups listed in the buckets that [start, end] touches (a superset of those that
    /// overlap it), each once.
    fn candidates(&mut self, start: usize, end: usize) -> Vec<usize> {
        self.query += 1;
        let mut out = Vec::new();
        for b in start / Self::WIDTH..=end / Self::WIDTH {
            for &g in &self.buckets[b] {
                if self.seen[g] != self.query {
                    self.seen[g] = self.query;
                    out.push(g);
                }
            }
        }
        out
    }
}

/// Best-fit placement of group `gi` among already placed groups with overlapping lifetimes.
fn best_fit(
    gi: usize,
    groups: &[Group],
    place: &[Option<Placement>],
    buffers: &[u64],
    cap: u64,
    index: &mut TimeIndex,
) -> Option<Placement> {
    let gr = &groups[gi];
    let near = index.candidates(gr.start, gr.end);
    for b in 0..buffers.len() {
        // Address intervals used during this group's lifetime in buffer b, sorted.
        let mut used: Vec<(u64, u64)> = near
            .iter()
            .filter_map(|&o| {
                let (og, p) = (&groups[o], place[o]?);
                (p.buffer == b && og.start <= gr.end && gr.start <= og.end)
                    .then_some((p.offset, p.offset + og.size))
            })
            .collect();
        used.sort_unstable();
        let mut best: Option<(u64, u64)> = None; // (gap size, offset)
        let mut cursor = 0u64;
        for &(lo, hi) in &used {
            if lo > cursor {
                let gap = lo - cursor;
                if gap >= gr.size && best.is_none_or(|(bg, _)| gap < bg) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(hi);
        }
        if let Some((_, offset)) = best {
            return Some(Placement { buffer: b, offset });
        }
        if cursor + gr.size <= cap {
            return Some(Placement { buffer: b, offset: cursor });
        }
    }
    None
}
