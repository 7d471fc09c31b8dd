//! The gated delta rule's recurrent and chunked (WY) kernels against the f64 reference, final
//! states included: lengths around the chunk of 64, log-gates down to −20, β near 0, 1 and 2,
//! key head dims 64, 128 and 256, grouped value heads, ragged batches with resets, a carried
//! state (prefill, then decode steps), and NaN containment.

use crate::common::devices;
use linseq::ops::delta_rule::{self as dr, cases, DeltaArgs, DeltaDims, DeltaKernel, DeltaRef};
use linseq::ops::sequences::Sequences;
use linseq::ops::Recorder;
use linseq::testing::{compare, GuardedOutput, Rng};
use linseq::{DType, Device, Tensor};

/// (GPU out, GPU final state), (reference out, reference final state).
type Outcome = ((Vec<f32>, Vec<f32>), (Vec<f64>, Vec<f64>));

/// One call's host inputs.
struct Case {
    lens: Vec<usize>,
    resets: Option<Vec<bool>>,
    dims: DeltaDims,
    qkv: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
    l2norm: bool,
    /// g holds one log decay per key channel (KDA).
    channel_gates: bool,
}

impl Case {
    fn new(rng: &mut Rng, lens: &[usize], dims: DeltaDims, g_min: f32, beta: (f32, f32)) -> Self {
        let t = lens.iter().sum();
        let (qkv, g, beta) = cases::inputs(rng, t, dims, g_min, beta);
        Self { lens: lens.to_vec(), resets: None, dims, qkv, g, beta, l2norm: true, channel_gates: false }
    }

    /// KDA's inputs: a log decay per key channel in [g_min, 0].
    fn kda(rng: &mut Rng, lens: &[usize], dims: DeltaDims, g_min: f32) -> Self {
        let t: usize = lens.iter().sum();
        let g = rng.vec(t * dims.value_heads * dims.dk, g_min, 0.0);
        Self { g, channel_gates: true, ..Self::new(rng, lens, dims, g_min, (0.0, 1.0)) }
    }

    /// Runs the kernel from `state0` (None: from zero); returns (out, final state) of GPU and
    /// reference.
    fn run(&self, dev: &Device, state0: Option<&[f32]>) -> Outcome {
        self.run_with(dev, state0, None)
    }

    /// [`Case::run`] with the kernel given (None: the op's choice).
    fn run_with(&self, dev: &Device, state0: Option<&[f32]>, kernel: Option<DeltaKernel>) -> Outcome {
        let d = self.dims;
        let (t, s) = (self.lens.iter().sum::<usize>(), self.lens.len());
        let seqs = Sequences::new(dev, &self.lens, self.resets.as_deref()).unwrap();
        let qkv = Tensor::from_slice(dev, &[t, d.row()], &self.qkv).unwrap();
        let gates = if self.channel_gates { d.value_heads * d.dk } else { d.value_heads };
        let g = Tensor::from_slice(dev, &[t, gates], &self.g).unwrap();
        let beta = Tensor::from_slice(dev, &[t, d.value_heads], &self.beta).unwrap();
        let shape = [s, d.value_heads, d.dk, d.dv];
        let zeros = vec![0.0f32; shape.iter().product()];
        let init = state0.unwrap_or(&zeros);
        let state = Tensor::from_slice(dev, &shape, init).unwrap();
        let out = GuardedOutput::new(dev, &[t, d.value_heads * d.dv], DType::F32).unwrap();
        let scale = 1.0 / (d.dk as f32).sqrt();
        let a = DeltaArgs {
            qkv: &qkv,
            cols: cases::packed_cols(d),
            g: &g,
            channel_gates: self.channel_gates,
            beta: &beta,
            state: &state,
            seqs: &seqs,
            dims: d,
            l2norm: self.l2norm,
            scale,
            init: state0.is_some(),
        };
        let mut rec = Recorder::new(dev);
        match kernel {
            Some(k) => dr::delta_rule_with(&mut rec, &a, &out.tensor, k).unwrap(),
            None => dr::delta_rule(&mut rec, &a, &out.tensor).unwrap(),
        }
        rec.run().unwrap();
        let cu = seqs.cu_seqlens().to_vec();
        let want = dr::delta_rule_ref(&DeltaRef {
            qkv: &self.qkv,
            width: d.row(),
            cols: cases::packed_cols(d),
            g: &self.g,
            channel_gates: self.channel_gates,
            beta: &self.beta,
            cu: &cu,
            resets: self.resets.as_deref(),
            state: init,
            init: state0.is_some(),
            dims: d,
            l2norm: self.l2norm,
            scale: scale as f64,
        });
        ((out.read_f32(dev).unwrap(), state.read_f32(dev).unwrap()), want)
    }
}

/// Whether the kernels run on `dev`; where they do not (GL), the call is a clear error, which
/// this asserts.
fn runs_here(dev: &Device) -> bool {
    if dr::runs(dev.caps()) {
        return true;
    }
    let t = Tiny::new(dev, dims(1, 1, 64, 64));
    let e = dr::delta_rule(&mut Recorder::new(dev), &t.args(), &t.out).expect_err("refused on this backend");
    assert!(e.to_string().contains("Vulkan"), "{e}");
    false
}

/// A three-token call's tensors (contents unset): for the error paths.
struct Tiny {
    d: DeltaDims,
    seqs: Sequences,
    qkv: Tensor,
    g: Tensor,
    state: Tensor,
    out: Tensor,
}

impl Tiny {
    fn new(dev: &Device, d: DeltaDims) -> Self {
        let empty = |shape: &[usize]| Tensor::empty(dev, shape, DType::F32).unwrap();
        Self {
            d,
            seqs: Sequences::new(dev, &[3], None).unwrap(),
            qkv: empty(&[3, d.row()]),
            g: empty(&[3, d.value_heads]),
            state: empty(&[1, d.value_heads, d.dk, d.dv]),
            out: empty(&[3, d.value_heads * d.dv]),
        }
    }

    fn args(&self) -> DeltaArgs<'_> {
        DeltaArgs {
            qkv: &self.qkv,
            cols: cases::packed_cols(self.d),
            g: &self.g,
            channel_gates: false,
            beta: &self.g,
            state: &self.state,
            seqs: &self.seqs,
            dims: self.d,
            l2norm: true,
            scale: 0.125,
            init: false,
        }
    }
}

/// Bounds (NMSE, max-abs) of the f32 kernels against the f64 reference.
const F32_BOUND: (f64, f64) = (1e-9, 1e-3);
/// Bounds of the tensor-core form (K, W, V′, chunk states and scores rounded to f16; fla tests
/// its chunked Gated DeltaNet to 5e-3 relative RMS error, NMSE 2.5e-5).
const F16_BOUND: (f64, f64) = (2.5e-5, 5e-2);

fn check(dev: &Device, what: &str, got: &[f32], want: &[f64]) {
    check_within(dev, what, got, want, F32_BOUND)
}

fn check_within(dev: &Device, what: &str, got: &[f32], want: &[f64], bounds: (f64, f64)) {
    crate::common::check_within(dev, "delta rule", what, got, want, bounds)
}

/// The kernels that run `d` on `dev`, each with its bounds: the recurrent and SIMT chunked
/// forms everywhere, the tensor-core chunked form where the adapter has cooperative matrices.
fn kernels(dev: &Device, d: DeltaDims) -> Vec<(DeltaKernel, (f64, f64))> {
    [DeltaKernel::Recurrent, DeltaKernel::Chunked, DeltaKernel::ChunkedCoop]
        .into_iter()
        .filter(|k| k.runs(dev.caps(), d))
        .map(|k| (k, if k.uses_f16() { F16_BOUND } else { F32_BOUND }))
        .collect()
}

fn dims(key_heads: usize, value_heads: usize, dk: usize, dv: usize) -> DeltaDims {
    DeltaDims { key_heads, value_heads, dk, dv }
}

#[test]
fn both_kernels_match_the_reference_over_lengths_dims_and_groups() {
    let cases: &[(&[usize], DeltaDims)] = &[
        (&[1], dims(2, 2, 64, 64)),
        (&[15, 16], dims(1, 2, 64, 32)),     // grouped value heads
        (&[63, 64, 65], dims(2, 4, 64, 64)), // around the chunk of 64
        (&[1047], dims(1, 1, 128, 128)),
        (&[40, 7], dims(1, 3, 256, 80)), // dk 256, dv not a multiple of 64
        (&[4103], dims(1, 1, 64, 64)),   // long: many dispatch pieces
        (&[3; 33], dims(2, 4, 64, 64)),  // enough workgroups for one invocation per column
    ];
    // The recurrent kernel's two column forms are both among these cases.
    assert_eq!(dr::recurrent_cols(1, dims(2, 2, 64, 64)), 16);
    assert_eq!(dr::recurrent_cols(33, dims(2, 4, 64, 64)), 64);
    for dev in devices().iter().filter(|d| runs_here(d)) {
        let mut rng = Rng::new(71);
        for &(lens, d) in cases {
            let c = Case::new(&mut rng, lens, d, -1.0, (0.0, 1.0));
            for (k, bound) in kernels(dev, d) {
                let ((out, st), (want, want_st)) = c.run_with(dev, None, Some(k));
                check_within(dev, &format!("{k:?} {lens:?} {d:?}"), &out, &want, bound);
                check_within(dev, &format!("{k:?} final state {lens:?} {d:?}"), &st, &want_st, bound);
            }
        }
    }
}

#[test]
fn kda_gates_per_key_channel_match_the_reference() {
    // Kimi Delta Attention: a log decay per key channel (down to −20 per step), through the
    // recurrent and the SIMT chunked kernel (its exponents per channel inside the sums), over
    // lengths, dims, ragged batches with resets and a carried state; the tensor-core form
    // refuses per-channel gates.
    let cases: &[(&[usize], DeltaDims, f32)] = &[
        (&[1], dims(4, 4, 32, 32), -1.0),
        (&[15, 16, 65], dims(2, 2, 32, 32), -5.0),
        (&[63, 64], dims(1, 2, 64, 64), -20.0),
        (&[200], dims(1, 1, 128, 128), -0.5),
        (&[9, 4], dims(1, 1, 256, 64), -2.0),
    ];
    for dev in devices().iter().filter(|d| runs_here(d)) {
        let mut rng = Rng::new(79);
        for &(lens, d, g_min) in cases {
            let c = Case::kda(&mut rng, lens, d, g_min);
            let mut c2 = Case::kda(&mut rng, lens, d, g_min);
            let t: usize = lens.iter().sum();
            c2.resets = Some((0..t).map(|i| i == t / 2 && lens[0] > t / 2).collect());
            for k in [DeltaKernel::Recurrent, DeltaKernel::Chunked] {
                let what = format!("KDA {k:?} {lens:?} {d:?} g ≥ {g_min}");
                let ((out, st), (want, want_st)) = c.run_with(dev, None, Some(k));
                check(dev, &what, &out, &want);
                check(dev, &format!("{what}, final state"), &st, &want_st);
                // Continued from a state, with a reset in the first sequence.
                let ((out, st2), (want, want_st2)) = c2.run_with(dev, Some(&st), Some(k));
                check(dev, &format!("{what}, carried"), &out, &want);
                check(dev, &format!("{what}, carried final state"), &st2, &want_st2);
            }
        }
        let c = Case::kda(&mut rng, &[20], dims(1, 1, 32, 32), -1.0);
        let t = Tiny::new(dev, dims(1, 1, 32, 32));
        let g = Tensor::from_slice(dev, &[20, 32], &c.g).unwrap();
        let seqs = Sequences::new(dev, &[20], None).unwrap();
        let qkv = Tensor::from_slice(dev, &[20, t.d.row()], &c.qkv).unwrap();
        let beta = Tensor::from_slice(dev, &[20, 1], &c.beta).unwrap();
        let out = Tensor::empty(dev, &[20, 32], DType::F32).unwrap();
        let a = DeltaArgs { qkv: &qkv, g: &g, beta: &beta, seqs: &seqs, channel_gates: true, ..t.args() };
        let e = dr::delta_rule_with(&mut Recorder::new(dev), &a, &out, DeltaKernel::ChunkedCoop).unwrap_err();
        assert!(e.to_string().contains("per-channel") || e.to_string().contains("cooperative"), "{e}");
        let a = DeltaArgs { channel_gates: false, ..a };
        let e = dr::delta_rule(&mut Recorder::new(dev), &a, &out).unwrap_err();
        assert!(e.to_string().contains("g"), "per-channel gates read as per-head: {e}");
    }
}

#[test]
fn gates_and_write_strengths_at_their_extremes() {
    let d = dims(1, 2, 64, 64);
    for dev in devices().iter().filter(|d| runs_here(d)) {
        let mut rng = Rng::new(72);
        // Log-gates down to −20 per step; β near 0, near 1 and near 2 (negative eigenvalues).
        for (g_min, beta) in
            [(-20.0, (0.0, 1.0)), (-1.0, (0.0, 1e-3)), (-0.1, (0.999, 1.0)), (-0.1, (1.99, 2.0))]
        {
            let c = Case::new(&mut rng, &[100, 33], d, g_min, beta);
            for (k, bound) in kernels(dev, d) {
                let ((out, st), (want, want_st)) = c.run_with(dev, None, Some(k));
                check_within(dev, &format!("{k:?} g ≥ {g_min}, β in {beta:?}"), &out, &want, bound);
                let what = format!("{k:?} final state, g ≥ {g_min}, β in {beta:?}");
                check_within(dev, &what, &st, &want_st, bound);
            }
        }
        // Without the in-kernel norm (small q and k, so that β·|k|² < 2 keeps it stable).
        let mut c = Case::new(&mut rng, &[70], d, -0.5, (0.0, 1.0));
        c.qkv.iter_mut().for_each(|v| *v *= 0.15);
        c.l2norm = false;
        for (k, bound) in kernels(dev, d) {
            let ((out, _), (want, _)) = c.run_with(dev, None, Some(k));
            check_within(dev, &format!("{k:?} no l2norm"), &out, &want, bound);
        }
    }
}

#[test]
fn ragged_resets_and_a_carried_state_continue_exactly() {
    let d = dims(2, 4, 64, 64);
    for dev in devices().iter().filter(|d| runs_here(d)) {
        let mut rng = Rng::new(73);
        // Resets inside sequences, from a random initial state.
        let lens = [50usize, 3, 77];
        let mut c = Case::new(&mut rng, &lens, d, -0.5, (0.0, 1.5));
        let t: usize = lens.iter().sum();
        c.resets = Some((0..t).map(|i| i == 20 || i == 60 || i == 100).collect());
        let state0 = rng.vec(lens.len() * d.value_heads * d.dk * d.dv, -0.5, 0.5);
        let ((rec_out, rec_st), _) = c.run_with(dev, Some(&state0), Some(DeltaKernel::Recurrent));
        let ((out, st), (want, want_st)) = c.run(dev, Some(&state0));
        check(dev, "ragged with resets, from a state", &out, &want);
        check(dev, "its final state", &st, &want_st);
        // The chunked prefill equals the step kernel.
        let cmp = compare(&out, &rec_out.iter().map(|&v| v as f64).collect::<Vec<_>>());
        assert!(cmp.nmse < 1e-10, "chunked vs recurrent outputs: {cmp:?}");
        let cmp = compare(&st, &rec_st.iter().map(|&v| v as f64).collect::<Vec<_>>());
        assert!(cmp.nmse < 1e-10, "chunked vs recurrent states: {cmp:?}");
        // The tensor-core form, where it runs, to f16's bounds.
        if DeltaKernel::ChunkedCoop.runs(dev.caps(), d) {
            let ((out, st), _) = c.run_with(dev, Some(&state0), Some(DeltaKernel::ChunkedCoop));
            check_within(dev, "tensor cores, ragged with resets, from a state", &out, &want, F16_BOUND);
            check_within(dev, "tensor cores, its final state", &st, &want_st, F16_BOUND);
        }
        // Prefill, then three decode steps from the state it left, equals the reference of the
        // whole sequence (whose first part is the prefill's reference above).
        let mut state = st;
        for k in 0..3 {
            let step = Case::new(&mut rng, &[1, 1, 1], d, -0.5, (0.0, 1.5));
            let ((out, st), (want, want_st)) = step.run(dev, Some(&state));
            check(dev, &format!("decode step {k}"), &out, &want);
            check(dev, &format!("decode step {k} state"), &st, &want_st);
            state = st;
        }
    }
}

#[test]
fn nan_in_one_sequence_stays_in_that_sequence() {
    let d = dims(1, 1, 64, 64);
    for dev in devices().iter().filter(|d| runs_here(d)) {
        let mut rng = Rng::new(74);
        let mut c = Case::new(&mut rng, &[20, 20], d, -0.5, (0.0, 1.0));
        c.qkv[5 * d.row() + 70] = f32::NAN; // a key element of sequence 0
        for (k, _) in kernels(dev, d) {
            let ((out, st), _) = c.run_with(dev, None, Some(k));
            let hd = d.value_heads * d.dv;
            assert!(out[20 * hd..].iter().all(|v| v.is_finite()), "sequence 1 is untouched");
            assert!(out[5 * hd..20 * hd].iter().any(|v| !v.is_finite()), "sequence 0 reports its NaN");
            // (The tensor-core form's masked zeros still enter its products, so there the NaN
            // reaches the earlier tokens of its chunk too; never the other sequence.)
            if !k.uses_f16() {
                assert!(out[..5 * hd].iter().all(|v| v.is_finite()), "tokens before the NaN are untouched");
            }
            let per_seq = d.value_heads * d.dk * d.dv;
            assert!(st[per_seq..].iter().all(|v| v.is_finite()), "{k:?}: sequence 1's state is finite");
        }
    }
}

#[test]
fn bad_delta_rule_calls_are_clear_errors() {
    let dev = devices().iter().find(|d| runs_here(d)).expect("a device that runs the delta rule");
    let t = Tiny::new(dev, dims(2, 4, 64, 64));
    let (a, out) = (t.args(), &t.out);
    let mut rec = Recorder::new(dev);
    let short = Tensor::empty(dev, &[3, 2], DType::F32).unwrap();
    for (bad, what) in [
        (DeltaArgs { dims: dims(3, 4, 64, 64), ..a }, "value heads not a multiple of key heads"),
        (DeltaArgs { dims: dims(2, 4, 96, 64), ..a }, "key head dim without kernels"),
        (DeltaArgs { cols: [0, 128, 300], ..a }, "v past the row"),
        (DeltaArgs { beta: &short, ..a }, "beta of the wrong shape"),
        (DeltaArgs { scale: f32::INFINITY, ..a }, "infinite scale"),
    ] {
        let e = dr::delta_rule(&mut rec, &bad, out).expect_err(what);
        assert!(!e.to_string().is_empty(), "{what}");
    }
    // The tensor-core form refuses dims (and adapters) it has no kernels for, by name.
    let big = Tiny::new(dev, dims(1, 1, 256, 64));
    let e = dr::delta_rule_with(&mut rec, &big.args(), &big.out, DeltaKernel::ChunkedCoop).unwrap_err();
    assert!(e.to_string().contains("cooperative matrices"), "{e}");
    if !DeltaKernel::ChunkedCoop.runs(dev.caps(), t.d) {
        let e = dr::delta_rule_with(&mut rec, &a, out, DeltaKernel::ChunkedCoop).unwrap_err();
        assert!(e.to_string().contains(&dev.caps().adapter), "{e}");
    }
    assert!(rec.is_empty());
}

#[test]
fn the_graph_node_plans_its_scratch_and_matches_the_graph_reference() {
    use linseq::graph::nodes::{DeltaRuleNode, SeqSpec};
    use linseq::graph::{reference, Executable, Graph, PlanOptions};
    use std::collections::HashMap;
    // Qwen3-Next's tiny linear layer: 2 key heads of 32, 4 value heads of 64, as a prefill and
    // a decode step; then a layer with f16 operands allowed and heads of 64, which the tensor
    // cores take where the adapter has them. Every kernel that supports the call, each
    // planning its own scratch.
    use linseq::ops::kernel::Kernel;
    for dev in devices().iter().filter(|d| runs_here(d)) {
        let mut rng = Rng::new(75);
        let calls = [
            (dims(2, 4, 32, 64), false, vec![70usize, 5]),
            (dims(2, 4, 32, 64), false, vec![1, 1]),
            (dims(1, 2, 64, 64), true, vec![70, 5]),
        ];
        let mut runs = Vec::new();
        for (d, f16_ok, lens) in calls {
            let cu: Vec<usize> = std::iter::once(0)
                .chain(lens.iter().scan(0, |a, &l| {
                    *a += l;
                    Some(*a)
                }))
                .collect();
            let p = dr::DeltaProblem::of(&cu, false, d, f16_ok);
            for k in DeltaKernel::all().into_iter().filter(|k| k.supports(dev.caps(), &p)) {
                runs.push((d, lens.clone(), k));
            }
        }
        for (d, lens, kernel) in runs {
            let t: usize = lens.iter().sum();
            let spec = SeqSpec {
                cu: std::iter::once(0)
                    .chain(lens.iter().scan(0, |a, &l| {
                        *a += l;
                        Some(*a)
                    }))
                    .collect(),
                resets: None,
            };
            let mut g = Graph::new();
            let qkv = g.input("qkv", &[t, d.row()], DType::F32);
            let gt = g.input("g", &[t, d.value_heads], DType::F32);
            let bt = g.input("beta", &[t, d.value_heads], DType::F32);
            let st = g.state("state", &[lens.len(), d.value_heads, d.dk, d.dv]);
            let seqs = g.input("seqs", &[lens.len() + 1], DType::U32);
            let node = DeltaRuleNode {
                seqs: spec.clone(),
                dims: d,
                cols: cases::packed_cols(d),
                l2norm: true,
                scale: 0.17,
                init: true,
                channel_gates: false,
                kernel,
            };
            let y = g.op(node, &[qkv, gt, bt, st, seqs]).unwrap();
            g.output(y);
            let (q, gv, bv) = cases::inputs(&mut rng, t, d, -2.0, (0.0, 2.0));
            let mut host = HashMap::new();
            host.insert("qkv".to_string(), q);
            host.insert("g".to_string(), gv);
            host.insert("beta".to_string(), bv);
            host.insert("state".to_string(), rng.vec(lens.len() * d.value_heads * d.dk * d.dv, -0.3, 0.3));
            host.insert("seqs".to_string(), spec.cu.iter().map(|&c| c as f32).collect());
            let exe = Executable::new(dev, g.clone(), &PlanOptions::for_device(dev.caps())).unwrap();
            for name in ["qkv", "g", "beta", "state"] {
                exe.write_f32(name, &host[name]).unwrap();
            }
            let table: Vec<u32> = spec.cu.iter().map(|&c| c as u32).collect();
            exe.write("seqs", &table).unwrap();
            exe.run().unwrap();
            let got = exe.read_output::<f32>(y).unwrap();
            let want = reference::evaluate(&g, &host).unwrap();
            let bounds = if kernel.uses_f16() { F16_BOUND } else { F32_BOUND };
            check_within(dev, &format!("graph node {d:?} {lens:?} {kernel:?}"), &got, &want[y.0], bounds);
        }
    }
}
