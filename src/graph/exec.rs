//! Executing a planned graph: allocation, one-time recording, and replay.
//!
//! [`Executable::new`] plans the graph, allocates the arena buffers and the persistent
//! tensors, and records every node once into a [`Recording`] (pipelines, parameter buffers and
//! bind groups included). [`Executable::submit`] then encodes that recording into one compute
//! pass and submits it: one submit per run, and no new buffers or bind groups, which is what a
//! decode step needs. Only outputs the caller asks for are read back, through staging buffers
//! made once per output.

use super::plan::{plan, Plan, PlanOptions};
use super::{Graph, Op, Role, TensorId};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::{elementwise, embedding, matmul, norm, sampling, softmax, Recorder, Recording};
use crate::tensor::{DType, Element, Tensor, TENSOR_USAGE};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// A graph planned, allocated and recorded on a device.
pub struct Executable<'d> {
    dev: &'d Device,
    graph: Graph,
    plan: Plan,
    tensors: Vec<Tensor>,
    recording: Recording<'d>,
    node_dispatches: Vec<Range<usize>>,
    staging: HashMap<TensorId, crate::device::Buffer>,
}

impl<'d> Executable<'d> {
    /// Plans, allocates and records `graph`. Ops without a kernel yet are an error.
    pub fn new(dev: &'d Device, graph: Graph, opts: &PlanOptions) -> Result<Self> {
        Self::with_bound(dev, graph, opts, Vec::new())
    }

    /// [`Executable::new`], with some persistent tensors (weights, state, inputs) bound to
    /// existing device tensors instead of allocated: a model's uploaded weights and its
    /// recurrent state, say. Each must match its description's shape and dtype.
    pub fn with_bound(
        dev: &'d Device,
        graph: Graph,
        opts: &PlanOptions,
        bound: Vec<(TensorId, Tensor)>,
    ) -> Result<Self> {
        let plan = plan(&graph, opts)?;
        let arenas: Vec<Arc<crate::device::Buffer>> = plan
            .buffers
            .iter()
            .map(|&size| {
                Arc::new(dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("arena"),
                    size: size.max(4),
                    usage: TENSOR_USAGE,
                    mapped_at_creation: false,
                }))
            })
            .collect();
        let mut bound: HashMap<TensorId, Tensor> = bound.into_iter().collect();
        let mut tensors = Vec::with_capacity(graph.tensors.len());
        for (i, t) in graph.tensors.iter().enumerate() {
            if let Some(b) = bound.remove(&TensorId(i)) {
                if t.role == Role::Activation || b.shape() != t.shape.as_slice() || b.dtype() != t.dtype {
                    return Err(Error::Shape(format!(
                        "binding {}: {:?} {:?} {:?} cannot take a {:?} {:?} tensor",
                        t.name,
                        t.role,
                        t.shape,
                        t.dtype,
                        b.shape(),
                        b.dtype()
                    )));
                }
                tensors.push(b);
                continue;
            }
            tensors.push(match (t.role, plan.placements[i]) {
                (Role::Activation, Some(p)) => {
                    Tensor::in_buffer(arenas[p.buffer].clone(), p.offset, &t.shape, t.dtype)
                }
                _ => Tensor::empty(dev, &t.shape, t.dtype)?,
            });
        }
        if let Some(id) = bound.keys().next() {
            return Err(Error::Invalid(format!("binding of tensor {} that is not in the graph", id.0)));
        }
        let mut rec = Recorder::for_arena(dev);
        let mut node_dispatches = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let start = rec.len();
            let ins: Vec<&Tensor> = node.inputs.iter().map(|t| &tensors[t.0]).collect();
            let scratch: Vec<&Tensor> = node.scratch.iter().map(|t| &tensors[t.0]).collect();
            record_node(&mut rec, &node.op, &ins, &scratch, &tensors[node.output.0]).map_err(|e| {
                Error::Invalid(format!("recording {}: {e}", graph.tensors[node.output.0].name))
            })?;
            node_dispatches.push(start..rec.len());
        }
        let mut staging = HashMap::new();
        for &o in &graph.outputs {
            let buf = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("output staging"),
                size: tensors[o.0].binding_size(),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            staging.insert(o, buf);
        }
        Ok(Self { dev, graph, plan, tensors, recording: rec.finish(), node_dispatches, staging })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Number of dispatches one run submits.
    pub fn dispatches(&self) -> usize {
        self.recording.len()
    }

    /// The device tensor behind a graph tensor.
    pub fn tensor(&self, t: TensorId) -> &Tensor {
        &self.tensors[t.0]
    }

    /// Writes host data into a weight, state or input (by name), converting f32 to f16 for f16
    /// tensors.
    pub fn write_f32(&self, name: &str, data: &[f32]) -> Result<()> {
        let t = self.graph.find(name)?;
        self.check_writable(t)?;
        let tensor = &self.tensors[t.0];
        match tensor.dtype() {
            DType::F32 => tensor.write(self.dev, data),
            DType::F16 => tensor.write(self.dev, &crate::tensor::f32_to_f16(data)),
            other => Err(Error::Invalid(format!("{name} is {other:?}; use write()"))),
        }
    }

    /// Writes host data of the tensor's own element type.
    pub fn write<T: Element>(&self, name: &str, data: &[T]) -> Result<()> {
        let t = self.graph.find(name)?;
        self.check_writable(t)?;
        self.tensors[t.0].write(self.dev, data)
    }

    fn check_writable(&self, t: TensorId) -> Result<()> {
        if self.graph.desc(t).role == Role::Activation {
            return Err(Error::Invalid(format!(
                "{} is an activation; only weights, state and inputs are written by the host",
                self.graph.desc(t).name
            )));
        }
        Ok(())
    }

    /// Sets the step counter of every sampling node (decorrelates successive draws).
    pub fn set_sampling_step(&self, step: u32) -> Result<()> {
        for (node, range) in self.graph.nodes.iter().zip(&self.node_dispatches) {
            if let Op::Sample { params } = &node.op {
                if params.temperature > 0.0 {
                    let logits = &self.tensors[node.inputs[0].0];
                    let n = *logits.shape().last().expect("logits have a last dim");
                    let p = sampling::params(n, logits.numel() / n, params, step)?;
                    self.recording.set_params(range.start, &p)?;
                }
            }
        }
        Ok(())
    }

    /// Submits the whole graph once (one compute pass, one submit), without waiting.
    pub fn submit(&self) -> Result<()> {
        self.recording.submit()
    }

    /// Submits once with `after` appending commands behind the pass (see
    /// [`Recording::submit_then`]); does not wait.
    pub fn submit_then(&self, after: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<()> {
        self.recording.submit_then(after)
    }

    /// Submits once and waits.
    pub fn run(&self) -> Result<()> {
        self.recording.run()
    }

    /// Runs once and reports the pass's GPU time (timestamps) or wall time.
    pub fn run_timed(&self) -> Result<crate::ops::Timing> {
        self.recording.run_timed()
    }

    /// Runs once with a timestamp after every dispatch and returns a label per node and its
    /// GPU time in seconds, in graph order (see [`Recording::run_profiled`]). The label is the
    /// node's first weight's name where it has one (`layers.3.in_proj.x`), else its op's name.
    ///
    /// [`Recording::run_profiled`]: crate::ops::Recording::run_profiled
    pub fn profile(&self) -> Result<Vec<(String, f64)>> {
        let per_dispatch = self.recording.run_profiled()?;
        Ok(self
            .graph
            .nodes
            .iter()
            .zip(&self.node_dispatches)
            .map(|(node, range)| {
                let weight = node.inputs.iter().map(|&t| self.graph.desc(t)).find(|d| d.role == Role::Weight);
                let label = match weight {
                    Some(w) => w.name.clone(),
                    None => node.op.name().to_string(),
                };
                (label, per_dispatch[range.clone()].iter().sum())
            })
            .collect())
    }

    /// Reads back a graph output through its staging buffer.
    pub fn read_output<T: Element>(&self, t: TensorId) -> Result<Vec<T>> {
        let staging = self.staging.get(&t).ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not a graph output; mark it with Graph::output",
                self.graph.desc(t).name
            ))
        })?;
        let tensor = &self.tensors[t.0];
        if T::DTYPE != tensor.dtype() {
            return Err(Error::Invalid(format!("read of {:?} as {:?}", tensor.dtype(), T::DTYPE)));
        }
        let bytes = tensor.read_bytes_via(self.dev, staging)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

fn record_node(
    rec: &mut Recorder,
    op: &Op,
    ins: &[&Tensor],
    scratch: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    match op {
        Op::Linear => matmul::linear(rec, ins[0], ins[1], ins.get(2).copied(), out),
        Op::LinearAdd => {
            let (x, w, r, b) = (ins[0], ins[1], ins[2], ins.get(3).copied());
            if std::ptr::eq(r.buffer(), out.buffer()) && r.offset() == out.offset() {
                matmul::linear_accumulate(rec, x, w, b, out) // planned in place: one dispatch
            } else {
                matmul::linear(rec, x, w, b, out)?;
                elementwise::residual_add(rec, out, r, 1.0)
            }
        }
        Op::Norm { kind, eps } => norm::norm(rec, *kind, ins[0], ins[1], ins.get(2).copied(), *eps, out),
        Op::Unary { op, scale } => elementwise::unary(rec, *op, ins[0], *scale, out),
        Op::Binary { op } => elementwise::binary(rec, *op, ins[0], ins[1], out),
        Op::Cast { .. } => elementwise::cast(rec, ins[0], out),
        Op::Embedding => embedding::embedding(rec, ins[0], ins[1], out),
        Op::Softmax { scale } => softmax::softmax(rec, ins[0], *scale, out),
        Op::Argmax => softmax::argmax(rec, ins[0], out),
        Op::Sample { params } => sampling::sample(rec, ins[0], params, 0, out),
        Op::Node(n) => n.0.record(rec, ins, scratch, out),
        Op::Custom(c) => (c.record)(rec, ins, out),
    }
}

/// Executables keyed by power-of-two sequence-length buckets, so prefill at many lengths plans
/// and records once per bucket. `build(bucket_len)` makes the graph for a bucket; callers pad
/// inputs to the bucket length and read the rows they need.
pub struct PlanCache<'d> {
    dev: &'d Device,
    opts: PlanOptions,
    min_bucket: usize,
    build: Box<dyn Fn(usize) -> Result<Graph> + 'd>,
    plans: HashMap<usize, Executable<'d>>,
}

impl<'d> PlanCache<'d> {
    pub fn new(
        dev: &'d Device,
        opts: PlanOptions,
        min_bucket: usize,
        build: impl Fn(usize) -> Result<Graph> + 'd,
    ) -> Self {
        Self { dev, opts, min_bucket: min_bucket.max(1), build: Box::new(build), plans: HashMap::new() }
    }

    /// The bucket a length falls in: the next power of two, at least `min_bucket`.
    pub fn bucket(&self, len: usize) -> usize {
        len.max(self.min_bucket).next_power_of_two()
    }

    /// The executable for `len` tokens, built on first use of its bucket.
    pub fn get(&mut self, len: usize) -> Result<&Executable<'d>> {
        let b = self.bucket(len);
        if !self.plans.contains_key(&b) {
            let exe = Executable::new(self.dev, (self.build)(b)?, &self.opts)?;
            self.plans.insert(b, exe);
        }
        Ok(&self.plans[&b])
    }

    /// How many buckets have been planned.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}
