//! Selective scan and causal conv1d against their f64 references: edge lengths, state sizes,
//! groups, flags, ragged packed batches with resets, chunked prefill and prefill → decode
//! hand-over, and negative eigenvalues.

use crate::common::{devices, round_f16};
use linseq::ops::conv1d::{self, ConvArgs, ConvFlags};
use linseq::ops::selective_scan::{self as ss, ScanArgs, ScanFlags, ScanKernel, ScanShape, Sequences};
use linseq::ops::Recorder;
use linseq::testing::{compare, GuardedOutput, Rng};
use linseq::{DType, Device, Tensor};

/// mamba_ssm's f32 tolerance: NMSE ≤ 1e-7, or every element within rtol 6e-4 / atol 2e-3.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    let c = compare(got, want);
    let elementwise = got.iter().zip(want).all(|(&g, &w)| (g as f64 - w).abs() <= 2e-3 + 6e-4 * w.abs());
    assert!(
        c.nonfinite_mismatches == 0 && (c.nmse <= 1e-7 || elementwise),
        "{what}: nmse {:.3e}, max_abs {:.3e}, {} NaN/Inf mismatches (first at {:?})",
        c.nmse,
        c.max_abs,
        c.nonfinite_mismatches,
        got.iter()
            .zip(want)
            .position(|(&g, &w)| g.is_finite() != w.is_finite())
            .map(|i| (i, got[i], want[i]))
    );
}

// The case and its inputs are the family's own (`ops::selective_scan::cases`).
use linseq::ops::selective_scan::cases::{RaggedScanCase as Case, ScanInputs as Host};

fn host_inputs(rng: &mut Rng, c: &Case) -> Host {
    Host::random(rng, c)
}

/// Runs one scan on the GPU; returns (y, final state).
fn shape(c: &Case) -> ScanShape {
    ScanShape::new(c.dim, c.n, c.groups)
}

fn gpu_scan(
    dev: &Device,
    kernel: ScanKernel,
    c: &Case,
    h: &Host,
    seqs: &Sequences,
    step: bool,
) -> (Vec<f32>, Vec<f32>) {
    gpu_scan_as(dev, kernel, c, h, seqs, step, DType::F32)
}

/// [`gpu_scan`] with u, delta, bc and z uploaded as `input` (f32 or f16).
fn gpu_scan_as(
    dev: &Device,
    kernel: ScanKernel,
    c: &Case,
    h: &Host,
    seqs: &Sequences,
    step: bool,
    input: DType,
) -> (Vec<f32>, Vec<f32>) {
    let up = Uploaded::new(dev, c, h, seqs, input);
    let y = GuardedOutput::new(dev, &[seqs.total(), c.dim], DType::F32).unwrap();
    let args = up.args(c, seqs);
    let mut rec = Recorder::new(dev);
    if step {
        ss::selective_scan_step(&mut rec, &args, &y.tensor).unwrap();
    } else {
        ss::selective_scan(&mut rec, kernel, &args, &y.tensor).unwrap();
    }
    rec.run().unwrap();
    (y.read_f32(dev).unwrap(), up.state.read_f32(dev).unwrap())
}

/// A case's host inputs on the device, as `input` (f32 or f16), with a guarded state holding
/// the initial state.
struct Uploaded {
    u: Tensor,
    delta: Tensor,
    bc: Tensor,
    z: Option<Tensor>,
    chan: Tensor,
    state: GuardedOutput,
}

impl Uploaded {
    fn new(dev: &Device, c: &Case, h: &Host, seqs: &Sequences, input: DType) -> Self {
        let t = seqs.total();
        let state = GuardedOutput::new(dev, &[seqs.count(), c.dim, c.n], DType::F32).unwrap();
        state.tensor.write(dev, &h.state).unwrap();
        Self {
            u: Tensor::from_f32(dev, &[t, c.dim], &h.u, input).unwrap(),
            delta: Tensor::from_f32(dev, &[t, c.dim], &h.delta, input).unwrap(),
            bc: Tensor::from_f32(dev, &[t, 2, c.groups, c.n], &h.bc, input).unwrap(),
            z: h.z.as_ref().map(|z| Tensor::from_f32(dev, &[t, c.dim], z, input).unwrap()),
            chan: Tensor::from_slice(dev, &[c.dim, c.n + 2], &h.chan).unwrap(),
            state,
        }
    }

    fn args<'a>(&'a self, c: &Case, seqs: &'a Sequences) -> ScanArgs<'a> {
        ScanArgs {
            u: &self.u,
            delta: &self.delta,
            bc: &self.bc,
            z: self.z.as_ref(),
            chan: &self.chan,
            seqs,
            state: &self.state.tensor,
            groups: c.groups,
            flags: c.flags,
        }
    }
}

fn reference(c: &Case, h: &Host, cu: &[usize], resets: Option<&[bool]>) -> (Vec<f64>, Vec<f64>) {
    h.reference(c, cu, resets)
}

fn check_case(dev: &Device, rng: &mut Rng, c: &Case, label: &str) {
    let h = host_inputs(rng, c);
    let seqs = Sequences::new(dev, &c.lens, c.resets.as_deref()).unwrap();
    let (want_y, want_s) = reference(c, &h, seqs.cu_seqlens(), c.resets.as_deref());
    for kernel in ScanKernel::ALL {
        if !kernel.runs(dev.caps(), shape(c)) {
            continue;
        }
        let (y, st) = gpu_scan(dev, kernel, c, &h, &seqs, false);
        let what = format!("[{}] {:?} {label}", dev.caps().backend, kernel);
        assert_close(&format!("{what} y"), &y, &want_y);
        assert_close(&format!("{what} state"), &st, &want_s);
    }
}

#[test]
fn scan_matches_reference_on_edge_lengths() {
    for dev in devices() {
        let mut rng = Rng::new(41);
        let lengths = [1usize, 7, 64, 255, 2049, 16384];
        let states = [1usize, 16, 64];
        for (i, &l) in lengths.iter().enumerate() {
            for (j, &n) in states.iter().enumerate() {
                let k = i * 3 + j;
                let flags = ScanFlags {
                    delta_softplus: k % 2 == 0,
                    delta_bias: k % 3 != 0,
                    d_skip: k % 4 != 1,
                    neg_eigen: false,
                    init_state: k % 5 == 2,
                };
                let groups = 1 + k % 2;
                // N = 16 with D / G = 64 also runs the tiled, solo and paired kernels.
                let dim = if n == 16 {
                    64 * groups
                } else if l >= 2049 {
                    4
                } else {
                    6
                };
                let c = Case { dim, n, groups, lens: vec![l], resets: None, flags, z: k % 3 != 1 };
                check_case(dev, &mut rng, &c, &format!("L={l} N={n} G={groups} {flags:?} z={}", c.z));
            }
        }
    }
}

#[test]
fn scan_ragged_packed_batches_with_resets() {
    for dev in devices() {
        let mut rng = Rng::new(42);
        let lens = vec![5usize, 300, 1, 1030, 64];
        let t: usize = lens.iter().sum();
        let resets: Vec<bool> = (0..t).map(|_| rng.next_u64().is_multiple_of(50)).collect();
        for neg_eigen in [false, true] {
            let flags = ScanFlags {
                delta_softplus: true,
                delta_bias: true,
                d_skip: true,
                neg_eigen,
                init_state: true,
            };
            let c = Case {
                dim: 128,
                n: 16,
                groups: 2,
                lens: lens.clone(),
                resets: Some(resets.clone()),
                flags,
                z: true,
            };
            check_case(dev, &mut rng, &c, &format!("ragged {lens:?} with resets, neg_eigen={neg_eigen}"));
        }
    }
}

#[test]
fn prefill_then_decode_equals_one_prefill() {
    for dev in devices() {
        let mut rng = Rng::new(43);
        let (l, k) = (600usize, 517usize); // the split falls inside a chunk
        let flags = ScanFlags {
            delta_softplus: true,
            delta_bias: true,
            d_skip: true,
            neg_eigen: false,
            init_state: false,
        };
        let c = Case { dim: 64, n: 16, groups: 1, lens: vec![l], resets: None, flags, z: true };
        let h = host_inputs(&mut rng, &c);
        let (want_y, want_s) = reference(&c, &h, &[0, l], None);
        // Tokens [a, b) of a token-major input with `width` values per token.
        let cols =
            |v: &[f32], width: usize, a: usize, b: usize| -> Vec<f32> { v[a * width..b * width].to_vec() };
        let part = |a: usize, b: usize, state: Vec<f32>| Host {
            u: cols(&h.u, c.dim, a, b),
            delta: cols(&h.delta, c.dim, a, b),
            bc: cols(&h.bc, 2 * c.groups * c.n, a, b),
            z: h.z.as_ref().map(|z| cols(z, c.dim, a, b)),
            chan: h.chan.clone(),
            state,
        };
        for kernel in ScanKernel::ALL.into_iter().filter(|k| k.runs(dev.caps(), shape(&c))) {
            // Prefill of the first k tokens.
            let first = Case { lens: vec![k], ..c.clone() };
            let seqs = Sequences::new(dev, &[k], None).unwrap();
            let (mut y_all, mut state) = {
                let (y, s) = gpu_scan(dev, kernel, &first, &part(0, k, h.state.clone()), &seqs, false);
                (vec![y], s)
            };
            // Then the rest: a second prefill chunk (init from state) for kernel-chunked runs,
            // and token-by-token decode steps.
            let one = Sequences::decode(dev, 1, None).unwrap();
            let step_case =
                Case { lens: vec![1], flags: ScanFlags { init_state: true, ..flags }, ..c.clone() };
            for t in k..l {
                let (y, s) = gpu_scan(dev, kernel, &step_case, &part(t, t + 1, state), &one, true);
                y_all.push(y);
                state = s;
            }
            // Token-major pieces concatenate in order.
            let y: Vec<f32> = y_all.concat();
            assert_close(&format!("{kernel:?} prefill {k} + decode {}: y", l - k), &y, &want_y);
            assert_close(&format!("{kernel:?} prefill + decode: state"), &state, &want_s);
            // Chunked prefill: [0, k) then [k, l) from the carried state.
            let (_, s1) = gpu_scan(dev, kernel, &first, &part(0, k, h.state.clone()), &seqs, false);
            let rest =
                Case { lens: vec![l - k], flags: ScanFlags { init_state: true, ..flags }, ..c.clone() };
            let seqs2 = Sequences::new(dev, &[l - k], None).unwrap();
            let (y2, s2) = gpu_scan(dev, kernel, &rest, &part(k, l, s1), &seqs2, false);
            let want_tail: Vec<f64> = want_y[k * c.dim..].to_vec();
            assert_close(&format!("{kernel:?} chunked prefill: y"), &y2, &want_tail);
            assert_close(&format!("{kernel:?} chunked prefill: state"), &s2, &want_s);
        }
    }
}

#[test]
fn negative_eigenvalues_flip_the_state_sign() {
    // Parity: a = exp(dt·A) ≈ 0 maps to 2a − 1 ≈ −1, so a unit impulse alternates in sign
    // forever; with eigenvalues in [0, 1] it would decay to zero instead.
    // N = 1 runs the general kernels, N = 16 with 64 channels the tiled ones too.
    for (dev, (dim, n)) in devices().iter().flat_map(|d| [(d, (2, 1)), (d, (64, 16))]) {
        let l = 1030; // crosses chunk boundaries
        let chan = ss::pack_channel_params(&vec![-60.0; dim * n], None, None, dim, n);
        let mut u = vec![0f32; dim * l];
        u[..dim].fill(1.0); // token 0, every channel
        let h = Host {
            u,
            delta: vec![1.0; dim * l],
            bc: vec![1.0; 2 * n * l],
            z: None,
            chan,
            state: vec![0.0; dim * n],
        };
        let flags = ScanFlags { neg_eigen: true, ..Default::default() };
        let c = Case { dim, n, groups: 1, lens: vec![l], resets: None, flags, z: false };
        let seqs = Sequences::new(dev, &[l], None).unwrap();
        for kernel in ScanKernel::ALL.into_iter().filter(|k| k.runs(dev.caps(), shape(&c))) {
            let (y, st) = gpu_scan(dev, kernel, &c, &h, &seqs, false);
            for d in 0..dim {
                for t in 0..l {
                    // Σₙ h·C with every state at ±1.
                    let want = if t % 2 == 0 { n as f32 } else { -(n as f32) };
                    assert!(
                        (y[t * dim + d] - want).abs() < 1e-5,
                        "{kernel:?} d={d} t={t}: {}",
                        y[t * dim + d]
                    );
                }
            }
            assert!(st.iter().all(|&v| (v - -1.0).abs() < 1e-5), "{kernel:?} final state {st:?}");
        }
    }
}

#[test]
fn scan_rejects_bad_shapes() {
    let dev = &devices()[0];
    let seqs = Sequences::new(dev, &[4, 3], None).unwrap();
    let u = Tensor::empty(dev, &[2, 7], DType::F32).unwrap();
    let bad_bc = Tensor::empty(dev, &[2, 1, 4, 6], DType::F32).unwrap();
    let chan = Tensor::empty(dev, &[2, 6], DType::F32).unwrap();
    let state = Tensor::empty(dev, &[2, 2, 4], DType::F32).unwrap();
    let y = Tensor::empty(dev, &[2, 7], DType::F32).unwrap();
    let args = ScanArgs {
        u: &u,
        delta: &u,
        bc: &bad_bc,
        z: None,
        chan: &chan,
        seqs: &seqs,
        state: &state,
        groups: 1,
        flags: ScanFlags::default(),
    };
    let mut rec = Recorder::new(dev);
    assert!(matches!(
        ss::selective_scan(&mut rec, ScanKernel::Sequential, &args, &y),
        Err(linseq::Error::Shape(_))
    ));
    assert!(Sequences::new(dev, &[3], Some(&[true])).is_err());
    assert!(ss::selective_scan_step(&mut rec, &args, &y).is_err());

    // The N = 16 fast paths refuse shapes they do not cover, with a clear error, and `best`
    // only picks kernels that run the shape.
    let n16 = |d: usize| -> (Tensor, Tensor, Tensor, Tensor, Tensor) {
        (
            Tensor::empty(dev, &[7, d], DType::F32).unwrap(),
            Tensor::empty(dev, &[7, 2, 1, 16], DType::F32).unwrap(),
            Tensor::empty(dev, &[d, 18], DType::F32).unwrap(),
            Tensor::empty(dev, &[2, d, 16], DType::F32).unwrap(),
            Tensor::empty(dev, &[7, d], DType::F32).unwrap(),
        )
    };
    let (u, bc, chan, state, y) = n16(40);
    let args = ScanArgs { u: &u, delta: &u, bc: &bc, chan: &chan, state: &state, ..args };
    for kernel in [ScanKernel::Tiled, ScanKernel::Solo, ScanKernel::Paired] {
        let err = ss::selective_scan(&mut rec, kernel, &args, &y).unwrap_err();
        assert!(matches!(err, linseq::Error::UnsupportedVariant(_)), "{kernel:?}: {err}");
    }
    for (dim, groups, seqs) in [(40, 1, 2), (64, 2, 2), (2048, 1, 8), (5120, 1, 8), (64, 1, 1000)] {
        let shape = ScanShape::new(dim, 16, groups);
        let best = ScanKernel::best(dev.caps(), shape, seqs);
        assert!(best.runs(dev.caps(), shape), "{best:?} picked for {shape:?}");
    }
}

#[test]
fn causal_conv1d_matches_reference() {
    for dev in devices() {
        let mut rng = Rng::new(44);
        for width in 2..=4 {
            for (case, lens) in [vec![1usize], vec![7], vec![3, 300, 1, 2]].into_iter().enumerate() {
                let t: usize = lens.iter().sum();
                let c = 5;
                let resets: Option<Vec<bool>> = (case == 2).then(|| (0..t).map(|i| i % 37 == 5).collect());
                let x = rng.vec(c * t, -2.0, 2.0);
                let w = rng.vec(c * width, -1.0, 1.0);
                let b = rng.vec(c, -0.5, 0.5);
                let st = rng.vec(lens.len() * c * (width - 1), -1.0, 1.0);
                let seqs = Sequences::new(dev, &lens, resets.as_deref()).unwrap();
                for flags in
                    [ConvFlags { silu: true, init_state: true }, ConvFlags { silu: false, init_state: false }]
                {
                    let with_bias = flags.silu;
                    let xt = Tensor::from_slice(dev, &[t, c], &x).unwrap();
                    let wt = Tensor::from_slice(dev, &[c, width], &w).unwrap();
                    let bt = Tensor::from_slice(dev, &[c], &b).unwrap();
                    let state = GuardedOutput::new(dev, &[lens.len(), c, width - 1], DType::F32).unwrap();
                    state.tensor.write(dev, &st).unwrap();
                    let out = GuardedOutput::new(dev, &[t, c], DType::F32).unwrap();
                    let mut rec = Recorder::new(dev);
                    let bias = with_bias.then_some(&bt);
                    let args = ConvArgs { x: &xt, weight: &wt, bias, seqs: &seqs, state: &state.tensor };
                    conv1d::causal_conv1d(&mut rec, &args, flags, &out.tensor).unwrap();
                    rec.run().unwrap();
                    let (want, want_state) = conv1d::causal_conv1d_ref(
                        &x,
                        &w,
                        with_bias.then_some(&b[..]),
                        seqs.cu_seqlens(),
                        resets.as_deref(),
                        &st,
                        c,
                        width,
                        flags,
                    );
                    let what = format!("[{}] conv W={width} lens={lens:?} {flags:?}", dev.caps().backend);
                    assert_close(&format!("{what} out"), &out.read_f32(dev).unwrap(), &want);
                    assert_close(&format!("{what} state"), &state.read_f32(dev).unwrap(), &want_state);
                }
            }
        }
    }
}

#[test]
fn conv_decode_steps_continue_a_prefill() {
    for dev in devices() {
        let mut rng = Rng::new(45);
        let (c, width, l, k) = (3usize, 4usize, 20usize, 13usize);
        let x = rng.vec(c * l, -2.0, 2.0);
        let w = rng.vec(c * width, -1.0, 1.0);
        let b = rng.vec(c, -0.5, 0.5);
        let flags = ConvFlags { silu: true, init_state: false };
        let (want, want_state) =
            conv1d::causal_conv1d_ref(&x, &w, Some(&b), &[0, l], None, &[0.0; 9], c, width, flags);
        let wt = Tensor::from_slice(dev, &[c, width], &w).unwrap();
        let bt = Tensor::from_slice(dev, &[c], &b).unwrap();
        let state = Tensor::empty(dev, &[1, c, width - 1], DType::F32).unwrap();
        let cols = |a: usize, bnd: usize| -> Vec<f32> { x[a * c..bnd * c].to_vec() };
        let seqs = Sequences::new(dev, &[k], None).unwrap();
        let xt = Tensor::from_slice(dev, &[k, c], &cols(0, k)).unwrap();
        let out = Tensor::empty(dev, &[k, c], DType::F32).unwrap();
        let mut rec = Recorder::new(dev);
        let args = ConvArgs { x: &xt, weight: &wt, bias: Some(&bt), seqs: &seqs, state: &state };
        conv1d::causal_conv1d(&mut rec, &args, flags, &out).unwrap();
        rec.run().unwrap();
        let mut y = out.read_f32(dev).unwrap();
        let one = Sequences::decode(dev, 1, None).unwrap();
        for t in k..l {
            let xt = Tensor::from_slice(dev, &[1, c], &cols(t, t + 1)).unwrap();
            let out = Tensor::empty(dev, &[1, c], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            let args = ConvArgs { x: &xt, weight: &wt, bias: Some(&bt), seqs: &one, state: &state };
            conv1d::causal_conv1d_step(&mut rec, &args, true, &out).unwrap();
            rec.run().unwrap();
            y.extend(out.read_f32(dev).unwrap());
        }
        assert_close("conv prefill + decode", &y, &want);
        assert_close("conv prefill + decode state", &state.read_f32(dev).unwrap(), &want_state);
    }
}

#[test]
fn scan_with_f16_inputs() {
    // f16 u, delta, B, C and z with f32 state and sums: the reference sees the same f16-rounded
    // inputs; mamba_ssm's f16 tolerance (rtol 3e-3, atol 5e-3) applies.
    for dev in devices() {
        let mut rng = Rng::new(46);
        let flags = ScanFlags {
            delta_softplus: true,
            delta_bias: true,
            d_skip: true,
            neg_eigen: false,
            init_state: true,
        };
        let c = Case { dim: 128, n: 16, groups: 2, lens: vec![3, 700, 1], resets: None, flags, z: true };
        let mut h = host_inputs(&mut rng, &c);
        h.u = round_f16(&h.u);
        h.delta = round_f16(&h.delta);
        h.bc = round_f16(&h.bc);
        h.z = h.z.as_deref().map(round_f16);
        let seqs = Sequences::new(dev, &c.lens, None).unwrap();
        let (want_y, want_s) = reference(&c, &h, seqs.cu_seqlens(), None);
        for kernel in ScanKernel::ALL.into_iter().filter(|k| k.runs(dev.caps(), shape(&c))) {
            let (y, st) = gpu_scan_as(dev, kernel, &c, &h, &seqs, false, DType::F16);
            for (what, got, want) in [("y", &y, &want_y), ("state", &st, &want_s)] {
                let ok =
                    got.iter().zip(want.iter()).all(|(&g, &w)| (g as f64 - w).abs() <= 5e-3 + 3e-3 * w.abs());
                assert!(
                    ok,
                    "[{}] {kernel:?} f16 inputs: {what} outside rtol 3e-3 / atol 5e-3",
                    dev.caps().backend
                );
            }
        }
    }
}

#[test]
fn decode_step_kernel_matches_reference() {
    // Three sequences, one token each, from a given state: a partial 64-channel block
    // (D = 70), N not a multiple of 4, groups, resets and negative eigenvalues.
    for dev in devices() {
        let mut rng = Rng::new(47);
        for (resets, neg_eigen) in [(None, false), (Some(vec![true, false, true]), true)] {
            let flags = ScanFlags {
                delta_softplus: true,
                delta_bias: true,
                d_skip: true,
                neg_eigen,
                init_state: true,
            };
            let c = Case {
                dim: 70,
                n: 21,
                groups: 2,
                lens: vec![1, 1, 1],
                resets: resets.clone(),
                flags,
                z: true,
            };
            let h = host_inputs(&mut rng, &c);
            let seqs = Sequences::new(dev, &c.lens, resets.as_deref()).unwrap();
            let (want_y, want_s) = reference(&c, &h, seqs.cu_seqlens(), resets.as_deref());
            let (y, st) = gpu_scan(dev, ScanKernel::Sequential, &c, &h, &seqs, true);
            assert_close(&format!("decode step {resets:?}: y"), &y, &want_y);
            assert_close(&format!("decode step {resets:?}: state"), &st, &want_s);
        }
    }
}

#[test]
fn ceiling_probe_computes_the_scan_with_the_recurrence_cut() {
    // The bench probe: y = (Σₙ exp(dt·Aₙ)·dt·u·Bₙ·Cₙ + D·u)·silu(z) per token, with the decays
    // on the special-function unit and (poly) a quarter of them on the FMA pipe.
    let flags = ScanFlags { delta_softplus: true, delta_bias: true, d_skip: true, ..Default::default() };
    let c = Case { dim: 128, n: 16, groups: 2, lens: vec![37], resets: None, flags, z: true };
    for dev in devices() {
        let mut rng = Rng::new(91);
        let h = host_inputs(&mut rng, &c);
        let t = 37;
        let (dim, n, g) = (c.dim, c.n, c.groups);
        let mut want = vec![0f64; t * dim];
        for tt in 0..t {
            for d in 0..dim {
                let cp = &h.chan[d * (n + 2)..(d + 1) * (n + 2)];
                let grp = d / (dim / g);
                let dt = (h.delta[tt * dim + d] as f64 + cp[n + 1] as f64).exp().ln_1p();
                let x = h.u[tt * dim + d] as f64;
                let acc: f64 = (0..n)
                    .map(|k| {
                        let b = h.bc[(tt * 2 * g + grp) * n + k] as f64;
                        let cc = h.bc[(tt * 2 * g + g + grp) * n + k] as f64;
                        (dt * cp[k] as f64).exp() * dt * x * b * cc
                    })
                    .sum();
                let zz = h.z.as_ref().unwrap()[tt * dim + d] as f64;
                want[tt * dim + d] = (acc + cp[n] as f64 * x) * zz / (1.0 + (-zz).exp());
            }
        }
        let seqs = Sequences::new(dev, &c.lens, None).unwrap();
        let up = Uploaded::new(dev, &c, &h, &seqs, DType::F32);
        let args = up.args(&c, &seqs);
        for probe in [ss::CeilingProbe::Full, ss::CeilingProbe::Poly] {
            let y = GuardedOutput::new(dev, &[t, dim], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            ss::ceiling_probe(&mut rec, &args, &y.tensor, probe).unwrap();
            rec.run().unwrap();
            let what = format!("[{}] ceiling probe {probe:?}", dev.caps().backend);
            assert_close(&what, &y.read_f32(dev).unwrap(), &want);
        }
        // The compute-only probe runs the same arithmetic and writes nothing.
        let y = GuardedOutput::new(dev, &[t, dim], DType::F32).unwrap();
        y.tensor.write(dev, &vec![7.0f32; t * dim]).unwrap();
        let mut rec = Recorder::new(dev);
        ss::ceiling_probe(&mut rec, &args, &y.tensor, ss::CeilingProbe::ComputeOnly).unwrap();
        rec.run().unwrap();
        assert!(y.read_f32(dev).unwrap().iter().all(|&v| v == 7.0), "the compute-only probe wrote y");
    }
}
