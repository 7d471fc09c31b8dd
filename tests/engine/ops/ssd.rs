//! Mamba-2 SSD: every kernel (sequential and each chunk size) against the f64 recurrence on
//! edge lengths, groups 1 / 2 / heads, tile-boundary sizes, ragged packed batches with resets,
//! chunked prefill then decode, and f16 inputs. Bound: relative RMSE ≤ 1e-3 (f32), 5e-3 (f16
//! inputs), for y and the final state (fla's and the metric).

use crate::common::devices;
use linseq::ops::selective_scan::Sequences;
use linseq::ops::ssd::{self, SsdArgs, SsdDims, SsdFlags, SsdKernel};
use linseq::ops::Recorder;
use linseq::testing::{compare, GuardedOutput, Rng};
use linseq::{DType, Device, Tensor};

/// Relative RMSE = √NMSE, and no NaN/Inf where the reference is finite.
fn assert_rel(what: &str, got: &[f32], want: &[f64], bound: f64) {
    let c = compare(got, want);
    let e = c.nmse.sqrt();
    assert!(c.nonfinite_mismatches == 0, "{what}: {} non-finite outputs", c.nonfinite_mismatches);
    assert!(e <= bound, "{what}: relative RMSE {e:.3e} > {bound:.0e}");
}

// The case and its inputs are the family's own (`ops::ssd::cases`), shared with the bench.
use linseq::ops::ssd::cases::{SsdCase as Case, SsdInputs as Host};

fn host_inputs(rng: &mut Rng, c: &Case) -> Host {
    Host::random(rng, c)
}

fn host_inputs_f16(rng: &mut Rng, c: &Case) -> Host {
    Host::random_f16(rng, c)
}

fn reference(c: &Case, h: &Host, cu: &[usize]) -> (Vec<f64>, Vec<f64>) {
    h.reference(c, cu)
}

/// One prefill (or decode step) on the GPU; returns (y, final state).
fn gpu(
    dev: &Device,
    kernel: SsdKernel,
    c: &Case,
    h: &Host,
    step: bool,
    input: DType,
) -> (Vec<f32>, Vec<f32>) {
    let seqs = Sequences::new(dev, &c.lens, c.resets.as_deref()).unwrap();
    let t = seqs.total();
    let d = c.dims;
    let xbc = Tensor::from_f32(dev, &[t, d.width()], &h.xbc, input).unwrap();
    let dt = Tensor::from_f32(dev, &[t, d.heads], &h.dt, input).unwrap();
    let heads = Tensor::from_slice(dev, &[d.heads, 4], &h.heads).unwrap();
    let state = GuardedOutput::new(dev, &[c.lens.len(), d.heads, d.head_dim, d.n], DType::F32).unwrap();
    state.tensor.write(dev, &h.state).unwrap();
    let y = GuardedOutput::new(dev, &[t, d.heads * d.head_dim], DType::F32).unwrap();
    let args = SsdArgs {
        xbc: &xbc,
        dt: &dt,
        heads: &heads,
        seqs: &seqs,
        state: &state.tensor,
        dims: d,
        flags: c.flags,
    };
    let mut rec = Recorder::new(dev);
    if step {
        ssd::ssd_step(&mut rec, &args, &y.tensor).unwrap();
    } else {
        ssd::ssd(&mut rec, kernel, &args, &y.tensor).unwrap();
    }
    rec.run().unwrap();
    (y.read_f32(dev).unwrap(), state.read_f32(dev).unwrap())
}

fn check(dev: &Device, rng: &mut Rng, c: &Case, what: &str) {
    let h = host_inputs(rng, c);
    let cu: Vec<usize> = std::iter::once(0)
        .chain(c.lens.iter().scan(0, |a, &l| {
            *a += l;
            Some(*a)
        }))
        .collect();
    let (want_y, want_s) = reference(c, &h, &cu);
    for kernel in SsdKernel::ALL.into_iter().filter(|k| k.runs(dev.caps(), DType::F32)) {
        let (y, st) = gpu(dev, kernel, c, &h, false, DType::F32);
        let tag = format!("[{:?}] {} {what}", dev.adapter_info().backend, kernel.name());
        assert_rel(&format!("{tag}: y"), &y, &want_y, 1e-3);
        assert_rel(&format!("{tag}: state"), &st, &want_s, 1e-3);
    }
}

#[test]
fn ssd_matches_reference_on_edge_lengths_and_groups() {
    for dev in devices() {
        let mut rng = Rng::new(51);
        for c in Case::edge_lengths() {
            check(dev, &mut rng, &c, &format!("L={} G={}", c.len(), c.dims.groups));
        }
    }
}

#[test]
fn ssd_tile_boundaries_and_dt_limits() {
    // P and N beyond one 64-wide tile and not multiples of 16; dt clamped to a window.
    for dev in devices() {
        let mut rng = Rng::new(52);
        let dims = SsdDims { heads: 2, head_dim: 72, groups: 1, n: 80 };
        let flags = SsdFlags { init_state: true, dt_limit: (0.05, 0.5), ..SsdFlags::default() };
        let c = Case { dims, lens: vec![130, 7], resets: None, flags };
        check(dev, &mut rng, &c, "P=72 N=80 dt in [0.05, 0.5]");
        let flags =
            SsdFlags { dt_softplus: false, dt_bias: false, dt_limit: (0.01, 2.0), ..SsdFlags::default() };
        let c = Case {
            dims: SsdDims { heads: 3, head_dim: 5, groups: 3, n: 3 },
            lens: vec![200],
            resets: None,
            flags,
        };
        check(dev, &mut rng, &c, "no softplus, tiny P and N");
    }
}

#[test]
fn ssd_ragged_packed_batches_with_resets() {
    for dev in devices() {
        let mut rng = Rng::new(53);
        let lens = vec![5usize, 300, 1, 1030, 64];
        let t: usize = lens.iter().sum();
        let mut resets: Vec<bool> = (0..t).map(|_| rng.next_u64().is_multiple_of(97)).collect();
        resets[5] = true; // at a sequence start
        resets[6] = true; // right after it
        let dims = SsdDims { heads: 4, head_dim: 16, groups: 2, n: 32 };
        let flags = SsdFlags { init_state: true, ..SsdFlags::default() };
        let c = Case { dims, lens, resets: Some(resets), flags };
        check(dev, &mut rng, &c, "ragged with resets");
    }
}

#[test]
fn ssd_chunked_prefill_then_decode_continues() {
    for dev in devices() {
        let mut rng = Rng::new(54);
        let dims = SsdDims { heads: 4, head_dim: 16, groups: 2, n: 16 };
        let (l, k) = (300usize, 237usize);
        let c = Case { dims, lens: vec![l], resets: None, flags: SsdFlags::default() };
        let h = host_inputs(&mut rng, &c);
        let (want_y, want_s) = reference(&c, &h, &[0, l]);
        let hp = dims.heads * dims.head_dim;
        for kernel in SsdKernel::ALL.into_iter().filter(|k| k.runs(dev.caps(), DType::F32)) {
            // Prefill the first k tokens, then decode the rest one at a time.
            let first = Case { lens: vec![k], ..c.clone() };
            let h1 = Host {
                xbc: h.xbc[..k * dims.width()].to_vec(),
                dt: h.dt[..k * dims.heads].to_vec(),
                heads: h.heads.clone(),
                state: h.state.clone(),
            };
            let (mut y, mut st) = gpu(dev, kernel, &first, &h1, false, DType::F32);
            for t in k..l {
                let one = Case { lens: vec![1], ..c.clone() };
                let h1 = Host {
                    xbc: h.xbc[t * dims.width()..(t + 1) * dims.width()].to_vec(),
                    dt: h.dt[t * dims.heads..(t + 1) * dims.heads].to_vec(),
                    heads: h.heads.clone(),
                    state: st,
                };
                let (y1, s1) = gpu(dev, kernel, &one, &h1, true, DType::F32);
                y.extend(y1);
                st = s1;
            }
            assert_eq!(y.len(), l * hp);
            assert_rel(&format!("{} prefill {k} + decode: y", kernel.name()), &y, &want_y, 1e-3);
            assert_rel(&format!("{} prefill {k} + decode: state", kernel.name()), &st, &want_s, 1e-3);
        }
    }
}

#[test]
fn ssd_with_f16_inputs() {
    for dev in devices() {
        let mut rng = Rng::new(55);
        let dims = SsdDims { heads: 4, head_dim: 16, groups: 2, n: 32 };
        let flags = SsdFlags { init_state: true, ..SsdFlags::default() };
        let c = Case { dims, lens: vec![3, 700, 1], resets: None, flags };
        let h = host_inputs_f16(&mut rng, &c);
        let (want_y, want_s) = reference(&c, &h, &[0, 3, 703, 704]);
        for kernel in SsdKernel::ALL.into_iter().filter(|k| k.runs(dev.caps(), DType::F16)) {
            let (y, st) = gpu(dev, kernel, &c, &h, false, DType::F16);
            assert_rel(&format!("{} f16: y", kernel.name()), &y, &want_y, 5e-3);
            assert_rel(&format!("{} f16: state", kernel.name()), &st, &want_s, 5e-3);
        }
    }
}

/// f16 inputs (rounded on the host, so the reference sees the same values) through every kernel
/// that takes them, chunk 64 and the tensor-core kernel where the adapter has one.
fn check_f16(dev: &Device, rng: &mut Rng, c: &Case, what: &str) -> usize {
    let h = host_inputs_f16(rng, c);
    let cu: Vec<usize> = std::iter::once(0)
        .chain(c.lens.iter().scan(0, |a, &l| {
            *a += l;
            Some(*a)
        }))
        .collect();
    let (want_y, want_s) = reference(c, &h, &cu);
    let mut ran = 0;
    for kernel in [SsdKernel::Chunked(64), SsdKernel::Coop64Fused] {
        if !kernel.runs(dev.caps(), DType::F16) {
            continue;
        }
        let (y, st) = gpu(dev, kernel, c, &h, false, DType::F16);
        let tag = format!("[{:?}] {} f16 {what}", dev.adapter_info().backend, kernel.name());
        assert_rel(&format!("{tag}: y"), &y, &want_y, 5e-3);
        assert_rel(&format!("{tag}: state"), &st, &want_s, 5e-3);
        ran += 1;
    }
    ran
}

#[test]
fn ssd_f16_kernels_on_edge_shapes_ragged_batches_and_resets() {
    // The cases of the f32 tests, with f16 inputs: on adapters with cooperative matrices this
    // is the tensor-core kernel's test (elsewhere chunk 64 stands in, so the test still runs).
    for dev in devices() {
        let mut rng = Rng::new(56);
        let mut ran = 0;
        for (k, &l) in [1usize, 63, 64, 65, 1000, 4103].iter().enumerate() {
            let groups_list = if l >= 1000 { vec![[1, 2][k % 2]] } else { vec![1, 2, 4] };
            for groups in groups_list {
                let dims = SsdDims { heads: 4, head_dim: 8, groups, n: 16 };
                let flags = SsdFlags { init_state: k % 2 == 1, d_skip: k != 2, ..SsdFlags::default() };
                let c = Case { dims, lens: vec![l], resets: None, flags };
                ran += check_f16(dev, &mut rng, &c, &format!("L={l} G={groups}"));
            }
        }
        // P and N past one 64-wide block and no multiples of 16 or 32; dt clamped.
        let flags = SsdFlags { init_state: true, dt_limit: (0.05, 0.5), ..SsdFlags::default() };
        let dims = SsdDims { heads: 2, head_dim: 72, groups: 1, n: 80 };
        ran += check_f16(dev, &mut rng, &Case { dims, lens: vec![130, 7], resets: None, flags }, "P=72 N=80");
        // Mamba-2's head shape.
        let dims = SsdDims { heads: 2, head_dim: 64, groups: 1, n: 128 };
        ran += check_f16(dev, &mut rng, &Case { dims, lens: vec![200], resets: None, flags }, "P=64 N=128");
        // Shapes the tensor-core kernel takes (P a multiple of 64, N of 8): two channel blocks
        // and a ragged batch with resets (chunks cut short by sequence ends and resets, fresh
        // chunks), and exactly one chunk.
        let dims = SsdDims { heads: 2, head_dim: 128, groups: 2, n: 64 };
        let lens = vec![1usize, 70, 129, 64, 5];
        let t: usize = lens.iter().sum();
        let mut resets: Vec<bool> = (0..t).map(|_| rng.next_u64().is_multiple_of(53)).collect();
        resets[1] = true;
        resets[100] = true;
        let c = Case { dims, lens, resets: Some(resets), flags };
        ran += check_f16(dev, &mut rng, &c, "P=128 N=64 ragged with resets");
        let dims = SsdDims { heads: 4, head_dim: 64, groups: 1, n: 16 };
        ran +=
            check_f16(dev, &mut rng, &Case { dims, lens: vec![64], resets: None, flags }, "L=64 P=64 N=16");
        // Shapes the fused tensor-core kernel takes (P a multiple of 64, N of 8), at the
        // issue's lengths, with 8, 4, 2 and 1 heads per group (heads per workgroup in its chunk
        // scan) and N = 24 (a partial 64-wide block, not a multiple of 16).
        for (k, &l) in [1usize, 63, 65, 1000].iter().enumerate() {
            let dims = SsdDims { heads: 8, head_dim: 64, groups: [1, 2, 4, 8][k], n: 24 };
            let flags = SsdFlags { init_state: k % 2 == 0, ..SsdFlags::default() };
            let c = Case { dims, lens: vec![l], resets: None, flags };
            ran += check_f16(dev, &mut rng, &c, &format!("L={l} P=64 N=24 G={}", dims.groups));
        }
        // 24 and 12 heads per group (Mamba-2's 24 heads share one group), two sequences.
        for groups in [1, 2] {
            let dims = SsdDims { heads: 24, head_dim: 64, groups, n: 16 };
            let c = Case { dims, lens: vec![130, 70], resets: None, flags };
            ran += check_f16(dev, &mut rng, &c, &format!("H=24 G={groups}"));
        }
        // Ragged packed batch with resets.
        let lens = vec![5usize, 300, 1, 1030, 64];
        let t: usize = lens.iter().sum();
        let mut resets: Vec<bool> = (0..t).map(|_| rng.next_u64().is_multiple_of(97)).collect();
        resets[5] = true;
        resets[6] = true;
        let dims = SsdDims { heads: 4, head_dim: 16, groups: 2, n: 32 };
        let flags = SsdFlags { init_state: true, ..SsdFlags::default() };
        ran +=
            check_f16(dev, &mut rng, &Case { dims, lens, resets: Some(resets), flags }, "ragged with resets");
        assert!(ran >= 25, "only {ran} f16 SSD runs on {}", dev.describe());
    }
}

#[test]
fn ssd_coop_kernel_is_refused_where_it_cannot_run() {
    // f32 inputs never take the tensor-core kernel; without cooperative matrices f16 inputs
    // do not either. Refused with an UnsupportedVariant naming what is missing.
    let dev = &devices()[0];
    let dims = SsdDims { heads: 2, head_dim: 8, groups: 1, n: 16 };
    let seqs = Sequences::new(dev, &[10], None).unwrap();
    let state = Tensor::empty(dev, &[1, 2, 8, 16], DType::F32).unwrap();
    let y = Tensor::empty(dev, &[10, 16], DType::F32).unwrap();
    let heads = Tensor::empty(dev, &[2, 4], DType::F32).unwrap();
    for (kernel, input) in
        [SsdKernel::Coop64Fused].into_iter().flat_map(|k| [(k, DType::F32), (k, DType::F16)])
    {
        if kernel.runs(dev.caps(), input) {
            continue;
        }
        let xbc = Tensor::empty(dev, &[10, dims.width()], input).unwrap();
        let dt = Tensor::empty(dev, &[10, 2], input).unwrap();
        let args = SsdArgs {
            xbc: &xbc,
            dt: &dt,
            heads: &heads,
            seqs: &seqs,
            state: &state,
            dims,
            flags: Default::default(),
        };
        let mut rec = Recorder::new(dev);
        match ssd::ssd(&mut rec, kernel, &args, &y) {
            Err(linseq::Error::UnsupportedVariant(msg)) => assert!(msg.contains("f16"), "{msg}"),
            other => panic!("{} with {input:?} inputs: expected a refusal, got {other:?}", kernel.name()),
        }
    }
}

#[test]
fn ssd_rejects_bad_input() {
    let dev = &devices()[0];
    let seqs = Sequences::new(dev, &[4, 3], None).unwrap();
    let dims = SsdDims { heads: 4, head_dim: 2, groups: 3, n: 4 }; // groups must divide heads
    let xbc = Tensor::empty(dev, &[7, dims.width()], DType::F32).unwrap();
    let dt = Tensor::empty(dev, &[7, 4], DType::F32).unwrap();
    let heads = Tensor::empty(dev, &[4, 4], DType::F32).unwrap();
    let state = Tensor::empty(dev, &[2, 4, 2, 4], DType::F32).unwrap();
    let y = Tensor::empty(dev, &[7, 8], DType::F32).unwrap();
    let mut args = SsdArgs {
        xbc: &xbc,
        dt: &dt,
        heads: &heads,
        seqs: &seqs,
        state: &state,
        dims,
        flags: SsdFlags::default(),
    };
    let mut rec = Recorder::new(dev);
    assert!(matches!(ssd::ssd(&mut rec, SsdKernel::Sequential, &args, &y), Err(linseq::Error::Shape(_))));
    args.dims.groups = 2; // valid dims, but xbc is not [T, H·P + 2·G·N] for them
    assert!(matches!(ssd::ssd(&mut rec, SsdKernel::Chunked(64), &args, &y), Err(linseq::Error::Shape(_))));
    let xbc = Tensor::empty(dev, &[7, args.dims.width()], DType::F32).unwrap();
    let args = SsdArgs { xbc: &xbc, ..args };
    assert!(ssd::ssd(&mut rec, SsdKernel::Chunked(64), &args, &y).is_ok());
    assert!(matches!(ssd::ssd(&mut rec, SsdKernel::Chunked(48), &args, &y), Err(linseq::Error::Invalid(_))));
    assert!(ssd::ssd_step(&mut rec, &args, &y).is_err()); // two tokens in the first sequence
}

#[test]
fn ssd_decode_kernel_matches_the_recurrence() {
    // Three sequences, one token each, from a given state: channel blocks with a partial
    // one (P = 72), N not a multiple of 4, groups, and a reset on two of the tokens.
    for dev in devices() {
        let mut rng = Rng::new(56);
        for resets in [None, Some(vec![true, false, true])] {
            let dims = SsdDims { heads: 4, head_dim: 72, groups: 2, n: 21 };
            let flags = SsdFlags { init_state: true, ..SsdFlags::default() };
            let c = Case { dims, lens: vec![1, 1, 1], resets, flags };
            let h = host_inputs(&mut rng, &c);
            let (want_y, want_s) = reference(&c, &h, &[0, 1, 2, 3]);
            let (y, st) = gpu(dev, SsdKernel::Sequential, &c, &h, true, DType::F32);
            assert_rel(&format!("decode step, resets {:?}: y", c.resets), &y, &want_y, 1e-5);
            assert_rel(&format!("decode step, resets {:?}: state", c.resets), &st, &want_s, 1e-5);
        }
    }
}

#[test]
fn ssd_non_finite_input_stays_in_its_sequence() {
    // A NaN in one sequence's x poisons that sequence and nothing else: the tensor-core kernel
    // stages 64-row tiles, and a short chunk's rows past its end must not bring in the next
    // sequence's tokens. (Within its own chunk a
    // NaN also reaches the tokens before it: the chunked forms multiply masked zeros by the
    // chunk's whole x, as fla's and mamba_ssm's chunked kernels do.)
    for dev in devices() {
        let mut rng = Rng::new(57);
        let dims = SsdDims { heads: 2, head_dim: 64, groups: 1, n: 32 };
        let c = Case { dims, lens: vec![70, 30], resets: None, flags: SsdFlags::default() };
        let mut h = host_inputs_f16(&mut rng, &c);
        h.xbc[40 * dims.width() + 3] = f32::NAN;
        let (want_y, _) = reference(&c, &h, &[0, 70, 100]);
        let hp = dims.heads * dims.head_dim;
        assert!(want_y[40 * hp + 3].is_nan() && want_y[70 * hp..].iter().all(|v| v.is_finite()));
        for kernel in [SsdKernel::Chunked(64), SsdKernel::Coop64Fused] {
            if !kernel.runs(dev.caps(), DType::F16) {
                continue;
            }
            let (y, _) = gpu(dev, kernel, &c, &h, false, DType::F16);
            let tag = format!("[{:?}] {}", dev.adapter_info().backend, kernel.name());
            assert!(y[40 * hp + 3].is_nan(), "{tag}: the NaN vanished from its own sequence");
            assert_rel(&format!("{tag}: the other sequence"), &y[70 * hp..], &want_y[70 * hp..], 5e-3);
        }
    }
}
