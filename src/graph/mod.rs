//! The graph executor: a graph of ops over tensors, a memory planner that reuses activation
//! storage from tensor lifetimes, and an executor that records a whole graph into one compute
//! pass and replays it.
//!
//! ```no_run
//! use linseq::graph::{Graph, Executable, PlanOptions};
//! use linseq::{DType, Device};
//! let dev = Device::new()?;
//! let mut g = Graph::new();
//! let x = g.input("x", &[1, 64], DType::F32);
//! let w_norm = g.weight("norm.weight", &[64], DType::F32);
//! let w_in = g.weight("in_proj.weight", &[128, 64], DType::F16);
//! let h = g.rms_norm(x, w_norm, 1e-5)?;
//! let y = g.linear(h, w_in, None)?;
//! g.output(y);
//! let exe = Executable::new(&dev, g, &PlanOptions::for_device(dev.caps()))?;
//! exe.write_f32("x", &[0.5; 64])?;
//! exe.run()?;
//! let y: Vec<f32> = exe.read_output(y)?;
//! # Ok::<(), linseq::Error>(())
//! ```

mod exec;
pub mod nodes;
mod plan;
pub mod reference;
pub mod synthetic;

pub use exec::{Executable, PlanCache};
pub use plan::{plan, MemoryReport, Placement, Plan, PlanOptions};

use crate::error::{Error, Result};
use crate::ops::elementwise::{Binary, Unary};
use crate::ops::norm::NormKind;
use crate::ops::sampling::SamplingParams;
use crate::tensor::{DType, Tensor};

/// Index of a tensor in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// What a tensor is for; decides where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Model parameters: persistent, written by the host, read-only to the graph.
    Weight,
    /// Recurrent state: persistent across runs (conv and SSM state).
    State,
    /// Written by the host before each run (token ids, embeddings): its own buffer.
    Input,
    /// Produced by a node; transient, placed in the planned arenas.
    Activation,
}

/// A tensor of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub role: Role,
}

impl TensorDesc {
    /// Data size in bytes.
    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dtype.size() as u64
    }
}

/// How an [`Op::Custom`] node records itself: (recorder, input tensors, output tensor).
pub type RecordFn = std::sync::Arc<
    dyn Fn(&mut crate::ops::Recorder, &[&crate::tensor::Tensor], &crate::tensor::Tensor) -> Result<()>
        + Send
        + Sync,
>;

/// An extension op: a named recording closure over the node's activations. The closure may
/// capture persistent tensors (weights, recurrent state, a sequence table) and host-side
/// choices (kernel, flags); the planner sees only the inputs and the output, and never runs
/// it in place. The model runtimes use it for the scan, conv and SSD ops.
#[derive(Clone)]
pub struct CustomOp {
    pub name: String,
    pub record: RecordFn,
    /// The in-place contract (see [`Op::inplace_input`]): the input whose storage the output
    /// may take. The record function must then work either way (it can tell by comparing the
    /// output's buffer and offset with that input's).
    pub inplace: Option<usize>,
}

impl std::fmt::Debug for CustomOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomOp({})", self.name)
    }
}

impl PartialEq for CustomOp {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && std::sync::Arc::ptr_eq(&self.record, &other.record)
    }
}

/// An operation. Each op has an explicit in-place contract ([`Op::inplace_input`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// y = x·Wᵀ (+ b); inputs x, W [, b].
    Linear,
    /// y = r + x·Wᵀ (+ b), the add fused into the matmul's store; inputs x, W, r [, b]. Runs in
    /// place on r (the residual stream) when r dies here.
    LinearAdd,
    /// Normalisation; inputs x, weight [, bias].
    Norm {
        kind: NormKind,
        eps: f32,
    },
    Unary {
        op: Unary,
        scale: f32,
    },
    /// a ∘ b with b repeating over a.
    Binary {
        op: Binary,
    },
    /// x converted to another float dtype (f32 ↔ f16).
    Cast {
        to: DType,
    },
    /// inputs ids (u32), table.
    Embedding,
    Softmax {
        scale: f32,
    },
    Argmax,
    Sample {
        params: SamplingParams,
    },
    /// An op declared through [`NodeOp`] (the sequence mixers: conv, scans): weights and state
    /// are its inputs, its scratch is planned with everything else.
    Node(NodeRef),
    /// A recording closure (see [`CustomOp`]): for fused decode-step kernels that read the
    /// rows of one another's outputs; prefer [`NodeOp`].
    Custom(CustomOp),
}

impl Op {
    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Op::Linear => "linear".into(),
            Op::LinearAdd => "linear_add".into(),
            Op::Norm { kind, .. } => format!("norm.{kind:?}"),
            Op::Unary { op, .. } => op.name().into(),
            Op::Binary { op } => op.name().into(),
            Op::Cast { to } => format!("cast.{}", to.name()),
            Op::Embedding => "embedding".into(),
            Op::Softmax { .. } => "softmax".into(),
            Op::Argmax => "argmax".into(),
            Op::Sample { .. } => "sample".into(),
            Op::Node(n) => n.0.name().into(),
            Op::Custom(c) => c.name.clone(),
        }
    }

    /// The in-place contract: the index of the input whose storage the output may take when
    /// no later node reads that input. Elementwise kernels read element i before writing
    /// element i, so output and that input may be the same bytes. Everything else (matmul,
    /// norms, reductions) reads inputs across invocations and never runs in place.
    pub fn inplace_input(&self) -> Option<usize> {
        match self {
            Op::Unary { .. } | Op::Binary { .. } => Some(0),
            // The matmul's store reads and writes each element of r in the same invocation.
            Op::LinearAdd => Some(2),
            Op::Custom(c) => c.inplace,
            Op::Node(n) => n.0.inplace_input(),
            _ => None,
        }
    }
}

/// A graph op declared as a type: its name, the output it makes of its inputs, its in-place
/// contract, the scratch it needs (placed by the planner with every other activation, live
/// during the node only), how it records, and optionally its f64 reference (so that
/// [`reference::evaluate`] can run a whole model on the CPU). Weights and recurrent state are
/// inputs with their roles, not captures; host-side choices (kernel, flags, the sequence
/// table) are the op's fields.
pub trait NodeOp: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    /// The output's shape and dtype, checking the inputs' descriptions.
    fn output(&self, inputs: &[&TensorDesc]) -> Result<(Vec<usize>, DType)>;
    /// The input whose storage the output may take (see [`Op::inplace_input`]).
    fn inplace_input(&self) -> Option<usize> {
        None
    }
    /// Scratch tensors (shape, dtype) the node needs while it runs.
    fn scratch(&self, _inputs: &[&TensorDesc]) -> Vec<(Vec<usize>, DType)> {
        Vec::new()
    }
    /// Records the node's dispatches.
    fn record(
        &self,
        rec: &mut crate::ops::Recorder,
        inputs: &[&Tensor],
        scratch: &[&Tensor],
        out: &Tensor,
    ) -> Result<()>;
    /// The f64 reference of the output from the inputs' values (`None`: the op has none).
    fn reference(&self, _inputs: &[&[f64]], _shapes: &[&[usize]]) -> Option<Result<Vec<f64>>> {
        None
    }
}

/// A shared [`NodeOp`] in a graph (compared by identity).
#[derive(Debug, Clone)]
pub struct NodeRef(pub std::sync::Arc<dyn NodeOp>);

impl PartialEq for NodeRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A node: an op, its inputs and its single output.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
    /// Activations the op uses only while it runs ([`NodeOp::scratch`]).
    pub scratch: Vec<TensorId>,
}

/// A graph under construction or ready for planning. Nodes run in insertion order, which is a
/// topological order by construction (a node can only use tensors that already exist).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub(crate) tensors: Vec<TensorDesc>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<TensorId>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn tensors(&self) -> &[TensorDesc] {
        &self.tensors
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }

    pub fn desc(&self, t: TensorId) -> &TensorDesc {
        &self.tensors[t.0]
    }

    /// Looks a tensor up by name.
    pub fn find(&self, name: &str) -> Result<TensorId> {
        self.tensors
            .iter()
            .position(|t| t.name == name)
            .map(TensorId)
            .ok_or_else(|| Error::Invalid(format!("the graph has no tensor named {name:?}")))
    }

    fn add_tensor(&mut self, name: String, shape: &[usize], dtype: DType, role: Role) -> TensorId {
        self.tensors.push(TensorDesc { name, shape: shape.to_vec(), dtype, role });
        TensorId(self.tensors.len() - 1)
    }

    /// Declares a weight.
    pub fn weight(&mut self, name: &str, shape: &[usize], dtype: DType) -> TensorId {
        self.add_tensor(name.into(), shape, dtype, Role::Weight)
    }

    /// Declares recurrent state (f32).
    pub fn state(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.add_tensor(name.into(), shape, DType::F32, Role::State)
    }

    /// Declares recurrent state of another dtype (the u32 positions of a KV cache).
    pub fn state_of(&mut self, name: &str, shape: &[usize], dtype: DType) -> TensorId {
        self.add_tensor(name.into(), shape, dtype, Role::State)
    }

    /// Declares a host-written input.
    pub fn input(&mut self, name: &str, shape: &[usize], dtype: DType) -> TensorId {
        self.add_tensor(name.into(), shape, dtype, Role::Input)
    }

    /// Marks a tensor as a graph output: it stays alive to the end and can be read back.
    pub fn output(&mut self, t: TensorId) {
        if !self.outputs.contains(&t) {
            self.outputs.push(t);
        }
    }

    fn node(&mut self, op: Op, inputs: &[TensorId], shape: &[usize], dtype: DType) -> TensorId {
        let name = format!("{}#{}", op.name(), self.nodes.len());
        let output = self.add_tensor(name, shape, dtype, Role::Activation);
        self.nodes.push(Node { op, inputs: inputs.to_vec(), output, scratch: Vec::new() });
        output
    }

    /// Adds a [`NodeOp`] node over `inputs`; its output and scratch tensors are activations.
    pub fn op(&mut self, op: impl NodeOp + 'static, inputs: &[TensorId]) -> Result<TensorId> {
        let descs: Vec<&TensorDesc> = inputs.iter().map(|&t| self.check(t)).collect::<Result<_>>()?;
        let (shape, dtype) = op.output(&descs)?;
        let scratch_shapes = op.scratch(&descs);
        let name = op.name().to_string();
        let scratch: Vec<TensorId> = scratch_shapes
            .iter()
            .enumerate()
            .map(|(k, (sh, dt))| {
                self.add_tensor(format!("{name}#{}.scratch{k}", self.nodes.len()), sh, *dt, Role::Activation)
            })
            .collect();
        let output = self.node(Op::Node(NodeRef(std::sync::Arc::new(op))), inputs, &shape, dtype);
        self.nodes.last_mut().expect("just added").scratch = scratch;
        Ok(output)
    }

    fn check(&self, t: TensorId) -> Result<&TensorDesc> {
        self.tensors.get(t.0).ok_or_else(|| Error::Invalid(format!("tensor {} is not in this graph", t.0)))
    }

    /// An activation operand of an op that takes f32 or f16.
    fn expect_float(&self, what: &str, t: TensorId) -> Result<&TensorDesc> {
        let d = self.check(t)?;
        if !matches!(d.dtype, DType::F32 | DType::F16) {
            return Err(Error::Shape(format!("{what}: {} must be f32 or f16, is {:?}", d.name, d.dtype)));
        }
        Ok(d)
    }

    fn expect_f32(&self, what: &str, t: TensorId) -> Result<&TensorDesc> {
        let d = self.check(t)?;
        if d.dtype != DType::F32 {
            return Err(Error::Shape(format!("{what}: {} must be f32, is {:?}", d.name, d.dtype)));
        }
        Ok(d)
    }

    /// y = x·Wᵀ + b, HF `Linear` layout (W is [out, in]).
    pub fn linear(&mut self, x: TensorId, w: TensorId, b: Option<TensorId>) -> Result<TensorId> {
        let shape = self.linear_shape(x, w, b)?;
        let mut inputs = vec![x, w];
        inputs.extend(b);
        Ok(self.node(Op::Linear, &inputs, &shape, DType::F32))
    }

    /// r + x·Wᵀ + b: a linear layer whose output is added to the residual stream `r` in the
    /// matmul's store (in place when `r` dies here).
    pub fn linear_add(
        &mut self,
        x: TensorId,
        w: TensorId,
        b: Option<TensorId>,
        r: TensorId,
    ) -> Result<TensorId> {
        let shape = self.linear_shape(x, w, b)?;
        let rd = self.expect_f32("linear_add residual", r)?;
        if rd.shape != shape {
            return Err(Error::Shape(format!(
                "linear_add: residual {} {:?} does not match the output {shape:?}",
                rd.name, rd.shape
            )));
        }
        let mut inputs = vec![x, w, r];
        inputs.extend(b);
        Ok(self.node(Op::LinearAdd, &inputs, &shape, DType::F32))
    }

    /// Checks the operands of a linear layer and returns its output shape.
    fn linear_shape(&self, x: TensorId, w: TensorId, b: Option<TensorId>) -> Result<Vec<usize>> {
        let xd = self.expect_f32("linear", x)?.clone();
        let wd = self.check(w)?.clone();
        let k = *xd.shape.last().unwrap_or(&0);
        if wd.shape.len() != 2 || wd.shape[1] != k || !matches!(wd.dtype, DType::F32 | DType::F16) {
            return Err(Error::Shape(format!(
                "linear: {} {:?} does not fit weight {} {:?} {:?} (HF layout [out, in])",
                xd.name, xd.shape, wd.name, wd.shape, wd.dtype
            )));
        }
        if let Some(b) = b {
            let bd = self.expect_f32("linear bias", b)?;
            if bd.shape != [wd.shape[0]] {
                return Err(Error::Shape(format!(
                    "linear: bias {} {:?} should be [{}]",
                    bd.name, bd.shape, wd.shape[0]
                )));
            }
        }
        let mut shape = xd.shape.clone();
        *shape.last_mut().expect("x has a last dim") = wd.shape[0];
        Ok(shape)
    }

    /// Normalisation of the last dim (see [`NormKind`]).
    pub fn norm(
        &mut self,
        kind: NormKind,
        x: TensorId,
        w: TensorId,
        b: Option<TensorId>,
        eps: f32,
    ) -> Result<TensorId> {
        let xd = self.expect_f32("norm", x)?.clone();
        let c = *xd.shape.last().unwrap_or(&0);
        for (what, t) in [("weight", Some(w)), ("bias", b)] {
            if let Some(t) = t {
                let d = self.expect_f32("norm", t)?;
                if d.shape != [c] {
                    return Err(Error::Shape(format!(
                        "norm {what} {} {:?} should be [{c}]",
                        d.name, d.shape
                    )));
                }
            }
        }
        let groups = match kind {
            NormKind::Rms { groups } | NormKind::Group { groups } => groups,
            NormKind::Layer => 1,
        };
        if groups == 0 || c % groups != 0 {
            return Err(Error::Shape(format!("norm: {groups} groups do not divide {c} channels")));
        }
        let mut inputs = vec![x, w];
        inputs.extend(b);
        Ok(self.node(Op::Norm { kind, eps }, &inputs, &xd.shape, DType::F32))
    }

    /// RMSNorm.
    pub fn rms_norm(&mut self, x: TensorId, w: TensorId, eps: f32) -> Result<TensorId> {
        self.norm(NormKind::Rms { groups: 1 }, x, w, None, eps)
    }

    /// Unary elementwise op; f32 or f16 `x`, and the output of x's dtype.
    pub fn unary(&mut self, op: Unary, x: TensorId, scale: f32) -> Result<TensorId> {
        let d = self.expect_float(op.name(), x)?.clone();
        Ok(self.node(Op::Unary { op, scale }, &[x], &d.shape, d.dtype))
    }

    /// `x` as `dtype` (f32 or f16): x itself when it already is.
    pub fn cast(&mut self, x: TensorId, dtype: DType) -> Result<TensorId> {
        let d = self.expect_float("cast", x)?.clone();
        if !matches!(dtype, DType::F32 | DType::F16) {
            return Err(Error::Shape(format!("cast: {} can become f32 or f16, not {dtype:?}", d.name)));
        }
        if d.dtype == dtype {
            return Ok(x);
        }
        Ok(self.node(Op::Cast { to: dtype }, &[x], &d.shape, dtype))
    }

    pub fn silu(&mut self, x: TensorId) -> Result<TensorId> {
        self.unary(Unary::Silu, x, 1.0)
    }

    /// Binary elementwise op; `b`'s length must divide `a`'s. Either may be f32 or f16; the
    /// output has a's dtype.
    pub fn binary(&mut self, op: Binary, a: TensorId, b: TensorId) -> Result<TensorId> {
        let ad = self.expect_float(op.name(), a)?.clone();
        let bd = self.expect_float(op.name(), b)?;
        let (n, nb) = (ad.shape.iter().product::<usize>(), bd.shape.iter().product::<usize>());
        if nb == 0 || n % nb != 0 {
            return Err(Error::Shape(format!(
                "{}: {} {:?} does not broadcast over {:?}",
                op.name(),
                bd.name,
                bd.shape,
                ad.shape
            )));
        }
        Ok(self.node(Op::Binary { op }, &[a, b], &ad.shape, ad.dtype))
    }

    /// a + b (a residual add when `a` dies here: the planner then runs it in place).
    pub fn add(&mut self, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.binary(Binary::Add, a, b)
    }

    /// y · silu(z): the Mamba gate.
    pub fn gate(&mut self, y: TensorId, z: TensorId) -> Result<TensorId> {
        self.binary(Binary::MulSilu, y, z)
    }

    /// Embedding gather: ids (u32, [T]) into table [V, D] → [T, D].
    pub fn embedding(&mut self, ids: TensorId, table: TensorId) -> Result<TensorId> {
        let (idd, td) = (self.check(ids)?.clone(), self.check(table)?.clone());
        if idd.dtype != DType::U32 || td.shape.len() != 2 {
            return Err(Error::Shape(format!(
                "embedding: ids {} must be u32 and table {} 2-D",
                idd.name, td.name
            )));
        }
        let t: usize = idd.shape.iter().product();
        Ok(self.node(Op::Embedding, &[ids, table], &[t, td.shape[1]], DType::F32))
    }

    pub fn softmax(&mut self, x: TensorId, scale: f32) -> Result<TensorId> {
        let shape = self.expect_f32("softmax", x)?.shape.clone();
        Ok(self.node(Op::Softmax { scale }, &[x], &shape, DType::F32))
    }

    fn rows(&self, x: TensorId) -> Result<usize> {
        let d = self.expect_f32("row op", x)?;
        let n = *d.shape.last().unwrap_or(&0);
        if n == 0 {
            return Err(Error::Shape(format!("{} is empty", d.name)));
        }
        Ok(d.shape.iter().product::<usize>() / n)
    }

    /// Index of the largest logit per row (u32).
    pub fn argmax(&mut self, x: TensorId) -> Result<TensorId> {
        let rows = self.rows(x)?;
        Ok(self.node(Op::Argmax, &[x], &[rows], DType::U32))
    }

    /// One sampled id per row (u32). The step counter is set per run with
    /// [`Executable::set_sampling_step`].
    pub fn sample(&mut self, logits: TensorId, params: SamplingParams) -> Result<TensorId> {
        params.validate()?;
        let rows = self.rows(logits)?;
        Ok(self.node(Op::Sample { params }, &[logits], &[rows], DType::U32))
    }

    /// An extension node: `record` runs with the node's input tensors and its output (of
    /// `shape` and `dtype`) when the graph is made executable.
    pub fn custom(
        &mut self,
        name: &str,
        inputs: &[TensorId],
        shape: &[usize],
        dtype: DType,
        record: impl Fn(&mut crate::ops::Recorder, &[&crate::tensor::Tensor], &crate::tensor::Tensor) -> Result<()>
            + Send
            + Sync
            + 'static,
    ) -> Result<TensorId> {
        for &t in inputs {
            self.check(t)?;
        }
        let op = Op::Custom(CustomOp {
            name: name.to_string(),
            record: std::sync::Arc::new(record),
            inplace: None,
        });
        Ok(self.node(op, inputs, shape, dtype))
    }

    /// An extension node computing a new value of `r` from `x` and `r` (a residual update):
    /// inputs [x, r], output shaped like r, allowed to run in place on r (the planner decides).
    /// `record` gets [x, r] and the output, and must handle both the in-place case (output and
    /// r the same bytes) and a separate output.
    pub fn custom_in_place(
        &mut self,
        name: &str,
        x: TensorId,
        r: TensorId,
        record: impl Fn(&mut crate::ops::Recorder, &[&crate::tensor::Tensor], &crate::tensor::Tensor) -> Result<()>
            + Send
            + Sync
            + 'static,
    ) -> Result<TensorId> {
        self.check(x)?;
        let rd = self.expect_f32("custom_in_place", r)?.clone();
        let op = Op::Custom(CustomOp {
            name: name.to_string(),
            record: std::sync::Arc::new(record),
            inplace: Some(1),
        });
        Ok(self.node(op, &[x, r], &rd.shape, DType::F32))
    }
}
