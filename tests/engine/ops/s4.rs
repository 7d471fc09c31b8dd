//! The S4 family and its FFT against f64 references: the FFT against a direct DFT from 2 to
//! 2^20 points (one and two passes), forward and inverse.

use crate::common::{check_within, devices};
use linseq::ops::fft::{self, Plan};
use linseq::ops::s4::complex::C64;
use linseq::ops::Recorder;
use linseq::testing::{GuardedOutput, Rng};
use linseq::{DType, Device};

/// Transforms `rows` random rows of `n` points on the GPU; checks some bins of each row (all
/// of them for short rows) against a direct DFT, relative to the row's largest bin.
fn check_fft(dev: &Device, n: usize, rows: usize, inverse: bool) {
    let plan = Plan::new(dev, n).unwrap();
    let mut rng = Rng::new(n as u64 * 31 + rows as u64 + inverse as u64);
    let x: Vec<C64> = (0..rows * n)
        .map(|_| C64::new(rng.uniform(-1.0, 1.0) as f64, rng.uniform(-1.0, 1.0) as f64))
        .collect();
    // The inverse reads slot order: lay the input out as the forward transform leaves bins.
    let mut host = vec![0f32; 2 * rows * n];
    for r in 0..rows {
        for k in 0..n {
            let at = r * n + if inverse { plan.slot(k) } else { k };
            host[2 * at] = x[r * n + k].re as f32;
            host[2 * at + 1] = x[r * n + k].im as f32;
        }
    }
    let out = GuardedOutput::new(dev, &[rows * n * 2], DType::F32).unwrap();
    out.tensor.write(dev, &host).unwrap();
    let mut rec = Recorder::new(dev);
    fft::fft(&mut rec, &out.tensor, rows, &plan, inverse).unwrap();
    rec.run().unwrap();
    let got = out.read_f32(dev).unwrap();
    let bins: Vec<usize> = if n <= 512 {
        (0..n).collect()
    } else {
        (0..48).map(|_| (rng.next_u64() % n as u64) as usize).collect()
    };
    let (mut g, mut w) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let want = fft::dft_ref(&x[r * n..(r + 1) * n], &bins, inverse);
        let scale = (n as f64).sqrt();
        for (&k, v) in bins.iter().zip(want) {
            let at = r * n + if inverse { k } else { plan.slot(k) };
            g.extend([got[2 * at] / scale as f32, got[2 * at + 1] / scale as f32]);
            w.extend([v.re / scale, v.im / scale]);
        }
    }
    let what = format!("fft n {n} rows {rows} inverse {inverse} (n1 {})", plan.n1);
    check_within(dev, "fft", &what, &g, &w, (1e-10, 2e-5 * (n as f64).log2().max(1.0)));
}

#[test]
fn real_ffts_match_a_direct_dft_and_invert() {
    let mut rng = Rng::new(77);
    for dev in devices() {
        // An odd row count (the last complex row has one real row), one and two passes.
        for (n, rows) in [(2, 1), (8, 3), (64, 5), (1024, 2), (16384, 3)] {
            let x = rng.vec(rows * n, -1.0, 1.0);
            let xt = Tensor::from_slice(dev, &[rows, n], &x).unwrap();
            let spec = GuardedOutput::new(dev, &[rows, n / 2 + 1, 2], DType::F32).unwrap();
            let back = GuardedOutput::new(dev, &[rows, n], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            fft::rfft(&mut rec, &xt, None, &spec.tensor).unwrap();
            fft::irfft(&mut rec, &spec.tensor, None, &back.tensor).unwrap();
            rec.run().unwrap();
            let got = spec.read_f32(dev).unwrap();
            let bins: Vec<usize> = if n <= 1024 {
                (0..=n / 2).collect()
            } else {
                (0..40).map(|i| i * 97 % (n / 2 + 1)).collect()
            };
            let (mut g, mut w) = (Vec::new(), Vec::new());
            let scale = (n as f64).sqrt();
            for r in 0..rows {
                let xr: Vec<C64> = x[r * n..(r + 1) * n].iter().map(|&v| C64::new(v as f64, 0.0)).collect();
                for (&k, v) in bins.iter().zip(fft::dft_ref(&xr, &bins, false)) {
                    let at = (r * (n / 2 + 1) + k) * 2;
                    g.extend([got[at] / scale as f32, got[at + 1] / scale as f32]);
                    w.extend([v.re / scale, v.im / scale]);
                }
            }
            check_within(dev, "rfft", &format!("n {n} rows {rows}"), &g, &w, (1e-10, 1e-4));
            let want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            check_within(
                dev,
                "irfft",
                &format!("irfft(rfft(x)) n {n} rows {rows}"),
                &back.read_f32(dev).unwrap(),
                &want,
                (1e-12, 1e-5),
            );
        }
        // irfft of arbitrary half spectra (imaginary parts at bins 0 and n/2 too, which it
        // ignores as numpy and torch do) against the f64 inverse real DFT.
        let (n, rows) = (16, 3);
        let spec = rng.vec(rows * (n / 2 + 1) * 2, -1.0, 1.0);
        let st = Tensor::from_slice(dev, &[rows, n / 2 + 1, 2], &spec).unwrap();
        let x = GuardedOutput::new(dev, &[rows, n], DType::F32).unwrap();
        let mut rec = Recorder::new(dev);
        fft::irfft(&mut rec, &st, None, &x.tensor).unwrap();
        rec.run().unwrap();
        let want: Vec<f64> = (0..rows)
            .flat_map(|r| {
                let bins: Vec<C64> = (0..=n / 2)
                    .map(|k| {
                        let at = (r * (n / 2 + 1) + k) * 2;
                        C64::new(spec[at] as f64, spec[at + 1] as f64)
                    })
                    .collect();
                linseq::ops::s4::reference::irfft(&bins, n)
            })
            .collect();
        check_within(dev, "irfft", "arbitrary half spectra", &x.read_f32(dev).unwrap(), &want, (1e-12, 1e-6));
    }
}

#[test]
fn fft_matches_a_direct_dft_from_2_to_2_pow_20_points() {
    for dev in devices() {
        for (n, rows) in [(2, 3), (4, 1), (8, 5), (16, 2), (64, 7), (256, 3), (512, 2), (4096, 3), (8192, 2)]
        {
            check_fft(dev, n, rows, false);
            check_fft(dev, n, rows, true);
        }
        for n in [1 << 14, 1 << 17, 1 << 20] {
            check_fft(dev, n, 1, false);
            check_fft(dev, n, 1, true);
        }
    }
}

use linseq::ops::s4::cases;
use linseq::ops::s4::fftconv;
use linseq::ops::s4::kernels::{self, ConvMethod, Sum};
use linseq::ops::s4::layer::{conv_ref, conv_ref_with, Mode, Prepared, Ssm};
use linseq::ops::s4::reference::{dplr_spectrum, irfft_at, vandermonde_kernel};
use linseq::ops::s4::Discretization;
use linseq::ops::sequences::Sequences;
use linseq::Tensor;

fn s4d_layer(rng: &mut Rng, h: usize, n: usize, disc: Discretization) -> Ssm {
    cases::s4d_layer(rng, h, n, disc).unwrap()
}

fn s4_layer(rng: &mut Rng, h: usize, n: usize) -> Ssm {
    cases::s4_layer(rng, h, n).unwrap()
}

/// The layer's kernel `[H, L]` generated on the GPU (Vandermonde or Cauchy + inverse FFT).
fn gpu_kernel(dev: &Device, prep: &Prepared, l: usize) -> Vec<f32> {
    gpu_kernel_with(dev, prep, l, Sum::PerOutput)
}

/// [`gpu_kernel`] with the generators' sums in the form `sum`.
fn gpu_kernel_with(dev: &Device, prep: &Prepared, l: usize, sum: Sum) -> Vec<f32> {
    let (h, n) = (prep.ssm.h, prep.ssm.n);
    let out = GuardedOutput::new(dev, &[h, l], DType::F32).unwrap();
    let mut rec = Recorder::new(dev);
    match prep.ssm.mode {
        Mode::Diag(_) => {
            let t = prep.vandermonde_terms().unwrap();
            let terms = Tensor::from_slice(dev, &[h * n, 4], &t.terms).unwrap();
            let theta = Tensor::from_slice(dev, &[h * n, 2], &t.theta).unwrap();
            kernels::vandermonde_with(&mut rec, &terms, &theta, n, &out.tensor, 0, sum).unwrap();
            rec.run().unwrap();
        }
        Mode::Dplr => {
            let terms = prep.cauchy_terms(kernels::cauchy_length(l)).unwrap();
            let terms = Tensor::from_slice(dev, &[h * n, 5, 2], &terms).unwrap();
            let spec = Tensor::empty(dev, &kernels::cauchy_scratch(h, l), DType::F32).unwrap();
            kernels::cauchy_with(&mut rec, &terms, n, &spec, &out.tensor, 0, sum).unwrap();
            rec.run().unwrap();
        }
    }
    out.read_f32(dev).unwrap()
}

/// max |got − want| / max |want|, failing on any non-finite value.
fn relative(got: &[f32], want: &[f64]) -> f64 {
    assert!(got.iter().all(|v| v.is_finite()), "non-finite kernel values");
    let err = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    err / want.iter().map(|w| w.abs()).fold(0.0, f64::max)
}

#[test]
fn kernel_generation_matches_f64_references() {
    let mut rng = Rng::new(18);
    for dev in devices() {
        // N ≤ 64 states, L ≤ 1024: within 1e-4 of the dense recurrent view in f64.
        for (n, l) in [(2, 1), (4, 2), (8, 63), (16, 200), (32, 1000), (32, 1024)] {
            for (what, ssm) in [
                ("s4d zoh", s4d_layer(&mut rng, 3, n, Discretization::Zoh)),
                ("s4d bilinear", s4d_layer(&mut rng, 3, n, Discretization::Bilinear)),
                ("s4 legs", s4_layer(&mut rng, 3, n)),
            ] {
                let prep = ssm.prepare().unwrap();
                let want = prep.kernel_ref(l);
                // The subgroup form of the sums too, where the adapter has subgroups, and the
                // form with each channel's terms staged in workgroup memory.
                let sums: &[Sum] = if dev.caps().subgroups {
                    &[Sum::PerOutput, Sum::Subgroup, Sum::Staged]
                } else {
                    &[Sum::PerOutput, Sum::Staged]
                };
                for &sum in sums {
                    let err = relative(&gpu_kernel_with(dev, &prep, l, sum), &want);
                    eprintln!(
                        "[{}] {what} {sum:?} N {} L {l}: relative error {err:.2e}",
                        dev.caps().backend,
                        2 * n
                    );
                    assert!(err <= 1e-4, "{what} {sum:?} N {} L {l}: relative error {err:.2e}", 2 * n);
                }
            }
        }
        // N = 256, L = 64K: within 1e-3 of the module's own formulas in f64 (the Vandermonde
        // sum at every l; the Cauchy spectrum inverted at sampled l).
        let l = 1 << 16;
        let ssm = s4d_layer(&mut rng, 2, 128, Discretization::Zoh);
        let prep = ssm.clone().prepare().unwrap();
        let want: Vec<f64> = (0..2)
            .flat_map(|h| {
                let at = |v: &[C64]| v[h * 128..(h + 1) * 128].to_vec();
                vandermonde_kernel(Discretization::Zoh, ssm.dt[h], &at(&ssm.a), &at(&ssm.b), &at(&ssm.c), l)
            })
            .collect();
        let err = relative(&gpu_kernel(dev, &prep, l), &want);
        eprintln!("[{}] s4d N 256 L 64K: relative error {err:.2e}", dev.caps().backend);
        assert!(err <= 1e-3, "s4d N 256 L 64K: {err:.2e}");

        let ssm = s4_layer(&mut rng, 1, 128);
        let prep = ssm.clone().prepare().unwrap();
        let ct = prep.c_tilde(l).unwrap();
        let spec = dplr_spectrum(ssm.dt[0], &ssm.a, &ssm.p, &ssm.b, &ct, l);
        let ts: Vec<usize> = (0..64).map(|i| (i * 1031 + i * i * 7) % l).collect();
        let want = irfft_at(&spec, l, &ts);
        let got = gpu_kernel(dev, &prep, l);
        let picked: Vec<f32> = ts.iter().map(|&t| got[t]).collect();
        let scale = got.iter().map(|v| v.abs()).fold(0.0, f32::max) as f64;
        let err = picked.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max) / scale;
        eprintln!("[{}] s4 N 256 L 64K: relative error {err:.2e}", dev.caps().backend);
        assert!(err <= 1e-3, "s4 N 256 L 64K: {err:.2e}");
    }
}

/// Random u `[T, H]`.
fn inputs(rng: &mut Rng, t: usize, h: usize) -> Vec<f32> {
    rng.vec(t * h, -1.0, 1.0)
}

/// Runs the convolution on the GPU over `segs` with kernel `k` `[H, L]`; returns y.
fn gpu_conv(
    dev: &Device,
    u: &[f32],
    h: usize,
    segs: &[usize],
    k: &[f32],
    d: &[f32],
    m: ConvMethod,
) -> Vec<f32> {
    gpu_conv_with(dev, u, h, segs, k, d, m, false)
}

/// [`gpu_conv`] with a bidirectional kernel `[2, H, L]` when `bidi`.
#[allow(clippy::too_many_arguments)]
fn gpu_conv_with(
    dev: &Device,
    u: &[f32],
    h: usize,
    segs: &[usize],
    k: &[f32],
    d: &[f32],
    m: ConvMethod,
    bidi: bool,
) -> Vec<f32> {
    let t = u.len() / h;
    let halves = if bidi { 2 } else { 1 };
    let l = k.len() / h / halves;
    let ut = Tensor::from_slice(dev, &[t, h], u).unwrap();
    let kt = if bidi { Tensor::from_slice(dev, &[2, h, l], k) } else { Tensor::from_slice(dev, &[h, l], k) }
        .unwrap();
    let dt = Tensor::from_slice(dev, &[h], d).unwrap();
    let y = GuardedOutput::new(dev, &[t, h], DType::F32).unwrap();
    let mut rec = Recorder::new(dev);
    kernels::conv(&mut rec, &ut, segs, &kt, &dt, m, None, &y.tensor).unwrap();
    rec.run().unwrap();
    y.read_f32(dev).unwrap()
}

#[test]
fn convolution_by_fft_and_directly_matches_an_f64_convolution() {
    let mut rng = Rng::new(4);
    for dev in devices() {
        // Odd H (one channel has no partner in its complex row); lengths around the FFT's
        // sizes; 4103 takes the two-pass FFT (n = 16384); a reset cuts one sequence in two.
        let h = 5;
        let lens = [1usize, 63, 64, 65, 1000, 4103];
        let mut cu = vec![0];
        lens.iter().for_each(|l| cu.push(cu.last().unwrap() + l));
        let t = *cu.last().unwrap();
        let mut resets = vec![false; t];
        resets[cu[4] + 300] = true;
        let segs = kernels::segments(&cu, Some(&resets));
        let l = 4103;
        let k: Vec<f32> =
            (0..h * l).map(|i| rng.uniform(-1.0, 1.0) * (-((i % l) as f32) / 500.0).exp()).collect();
        let d = rng.vec(h, -1.0, 1.0);
        let u = inputs(&mut rng, t, h);
        let k64: Vec<f64> = k.iter().map(|&v| v as f64).collect();
        let d64: Vec<f64> = d.iter().map(|&v| v as f64).collect();
        let want = conv_ref(&u, &segs, &k64, l, &d64);
        for m in [ConvMethod::Fft, ConvMethod::Direct] {
            let got = gpu_conv(dev, &u, h, &segs, &k, &d, m);
            check_within(dev, "s4 conv", &format!("{m:?} lens {lens:?}"), &got, &want, (1e-10, 1e-3));
        }
        // A bidirectional kernel: the backward half reaches the tokens after t in its segment.
        let kb: Vec<f32> =
            (0..2 * h * l).map(|i| rng.uniform(-1.0, 1.0) * (-((i % l) as f32) / 300.0).exp()).collect();
        let kb64: Vec<f64> = kb.iter().map(|&v| v as f64).collect();
        let want = conv_ref_with(&u, &segs, &kb64, l, &d64, true);
        for m in [ConvMethod::Fft, ConvMethod::Direct] {
            let got = gpu_conv_with(dev, &u, h, &segs, &kb, &d, m, true);
            check_within(dev, "s4 conv", &format!("bidirectional {m:?}"), &got, &want, (1e-10, 1e-3));
        }
        // In groups of channel pairs (as a convolution too large for one scratch buffer runs):
        // one pair per group, and two pairs then the odd channel's.
        let group = |pairs: usize| segs.len() * kernels::conv_length(4103) * 8 * pairs;
        let want = conv_ref(&u, &segs, &k64, l, &d64);
        for pairs in [1, 2] {
            let ut = Tensor::from_slice(dev, &[t, h], &u).unwrap();
            let kt = Tensor::from_slice(dev, &[h, l], &k).unwrap();
            let dt = Tensor::from_slice(dev, &[h], &d).unwrap();
            let y = GuardedOutput::new(dev, &[t, h], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            kernels::conv_in_groups(
                &mut rec,
                &ut,
                &segs,
                &kt,
                &dt,
                ConvMethod::Fft,
                None,
                &y.tensor,
                group(pairs),
            )
            .unwrap();
            rec.run().unwrap();
            let got = y.read_f32(dev).unwrap();
            check_within(
                dev,
                "s4 conv",
                &format!("fft in groups of {pairs} pairs"),
                &got,
                &want,
                (1e-10, 1e-3),
            );
        }
        // One token, and a batch of one-token sequences (the decode shapes).
        for segs in [vec![0, 1], vec![0, 1, 2, 3]] {
            let t = *segs.last().unwrap();
            let u = inputs(&mut rng, t, h);
            let want = conv_ref(&u, &segs, &k64, l, &d64);
            let got = gpu_conv(dev, &u, h, &segs, &k, &d, ConvMethod::Fft);
            check_within(dev, "s4 conv", &format!("fft segs {segs:?}"), &got, &want, (1e-12, 1e-5));
        }
    }
}

/// Runs the recurrence on the GPU; returns (y, state).
fn gpu_recurrence(
    dev: &Device,
    prep: &Prepared,
    u: &[f32],
    cu: &[usize],
    resets: Option<&[bool]>,
    init: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (h, r) = (prep.ssm.h, prep.rows);
    let s = cu.len() - 1;
    let t = *cu.last().unwrap();
    let lens: Vec<usize> = cu.windows(2).map(|w| w[1] - w[0]).collect();
    let seqs = Sequences::new(dev, &lens, resets).unwrap();
    let (mat, bvec) = prep.recurrence();
    let mat = Tensor::from_slice(dev, &[h, r + 1, r], &mat).unwrap();
    let bvec = Tensor::from_slice(dev, &[h, r + 1], &bvec).unwrap();
    let ut = Tensor::from_slice(dev, &[t, h], u).unwrap();
    let zeros = vec![0f32; s * h * r];
    let state = Tensor::from_slice(dev, &[s, h, r], init.unwrap_or(&zeros)).unwrap();
    let y = GuardedOutput::new(dev, &[t, h], DType::F32).unwrap();
    let mut rec = Recorder::new(dev);
    kernels::recurrence(&mut rec, &ut, &mat, &bvec, &seqs, &state, init.is_some(), Some(&y.tensor)).unwrap();
    rec.run().unwrap();
    (y.read_f32(dev).unwrap(), state.read_f32(dev).unwrap())
}

#[test]
fn the_recurrent_view_matches_f64_and_the_convolution_view() {
    let mut rng = Rng::new(7);
    for dev in devices() {
        for (what, ssm) in
            [("s4d", s4d_layer(&mut rng, 3, 8, Discretization::Zoh)), ("s4", s4_layer(&mut rng, 3, 8))]
        {
            let prep = ssm.prepare().unwrap();
            let h = prep.ssm.h;
            let cu = vec![0, 1, 66, 266];
            let u = inputs(&mut rng, 266, h);
            let (y, state) = gpu_recurrence(dev, &prep, &u, &cu, None, None);
            let (want_y, want_state) = prep.recurrence_ref(&u, &cu, None);
            check_within(dev, "s4 recurrence", &format!("{what} prefill y"), &y, &want_y, (1e-10, 1e-4));
            check_within(dev, "s4 recurrence", &format!("{what} state"), &state, &want_state, (1e-10, 1e-4));
            // The convolution view with the GPU's own kernel gives the same y.
            let k = gpu_kernel(dev, &prep, 200);
            let d: Vec<f32> = prep.ssm.d.iter().map(|&v| v as f32).collect();
            let conv_y = gpu_conv(dev, &u, h, &cu, &k, &d, ConvMethod::Fft);
            let y64: Vec<f64> = y.iter().map(|&v| v as f64).collect();
            check_within(dev, "s4 views", &format!("{what} conv = recurrence"), &conv_y, &y64, (1e-10, 1e-4));
            // Decode: one more token per sequence from the prefill's state.
            let step_u = inputs(&mut rng, 3, h);
            let (y1, s1) = gpu_recurrence(dev, &prep, &step_u, &[0, 1, 2, 3], None, Some(&state));
            let (want_y1, want_s1) = prep.recurrence_ref(&step_u, &[0, 1, 2, 3], Some(&state));
            check_within(dev, "s4 recurrence", &format!("{what} decode y"), &y1, &want_y1, (1e-10, 1e-4));
            check_within(dev, "s4 recurrence", &format!("{what} decode state"), &s1, &want_s1, (1e-10, 1e-4));
            // A reset restarts the state: y equals the f64 view of the two halves apart.
            let mut resets = vec![false; 266];
            resets[100] = true;
            let (yr, _) = gpu_recurrence(dev, &prep, &u, &cu, Some(&resets), None);
            let (want_r, _) = prep.recurrence_ref(&u, &[0, 1, 66, 100, 266], None);
            check_within(dev, "s4 recurrence", &format!("{what} reset"), &yr, &want_r, (1e-10, 1e-4));
        }
    }
}

#[test]
fn s4d_state_sum_matches_the_recurrence() {
    // The state a convolution-mode prefill leaves, summed in parallel over the tokens (the
    // module's forward_state), against the f64 recurrence: ragged sequences, a reset, an empty
    // sequence, and a sequence longer than one dispatch's piece of 8192 tokens.
    let mut rng = Rng::new(12);
    for dev in devices() {
        let prep = s4d_layer(&mut rng, 3, 8, Discretization::Zoh).prepare().unwrap();
        let (h, r) = (prep.ssm.h, prep.rows);
        let lens = [1usize, 70, 0, 9000];
        let mut cu = vec![0];
        lens.iter().for_each(|l| cu.push(cu.last().unwrap() + l));
        let t = *cu.last().unwrap();
        let mut resets = vec![false; t];
        resets[30] = true;
        let u = inputs(&mut rng, t, h);
        let seqs = Sequences::new(dev, &lens, Some(&resets)).unwrap();
        let st = prep.state_terms().unwrap();
        let terms = Tensor::from_slice(dev, &[h * 8, 4], &st.terms).unwrap();
        let theta = Tensor::from_slice(dev, &[h * 8, 2], &st.theta).unwrap();
        let state = Tensor::from_slice(dev, &[4, h, r], &vec![0f32; 4 * h * r]).unwrap();
        let ut = Tensor::from_slice(dev, &[t, h], &u).unwrap();
        let mut rec = Recorder::new(dev);
        kernels::state_sum(&mut rec, &ut, &terms, &theta, &seqs, &state).unwrap();
        rec.run().unwrap();
        let got = state.read_f32(dev).unwrap();
        // The reference restarts at the reset: the second sequence's state comes from 30..71.
        let (_, mut want) = prep.recurrence_ref(&u, &cu, None);
        let (_, part) = prep.recurrence_ref(&u[30 * h..71 * h], &[0, 41], None);
        want[h * r..2 * h * r].copy_from_slice(&part);
        check_within(dev, "s4 state", "state sum = recurrence", &got, &want, (1e-10, 1e-4));
    }
}

#[test]
fn chunked_state_matches_the_recurrence() {
    // S4's state after a long prefill: chunks of 256 walked in parallel, then combined with
    // M^256, against the f64 recurrence: lengths around the chunk, an empty sequence, and a
    // reset (the state restarts there; the tokens before it are walked but unread).
    let mut rng = Rng::new(21);
    for dev in devices() {
        let prep = s4_layer(&mut rng, 3, 8).prepare().unwrap();
        let (h, r) = (prep.ssm.h, prep.rows);
        let lens = [1usize, 255, 256, 257, 0, 1000];
        let mut cu = vec![0];
        lens.iter().for_each(|l| cu.push(cu.last().unwrap() + l));
        let t = *cu.last().unwrap();
        let mut resets = vec![false; t];
        resets[cu[5] + 300] = true;
        let u = inputs(&mut rng, t, h);
        let seqs = Sequences::new(dev, &lens, Some(&resets)).unwrap();
        let (mat, bvec) = prep.recurrence();
        let mat = Tensor::from_slice(dev, &[h, r + 1, r], &mat).unwrap();
        let bvec = Tensor::from_slice(dev, &[h, r + 1], &bvec).unwrap();
        let pw = Tensor::from_slice(dev, &[h, r, r], &prep.chunk_power(kernels::STATE_CHUNK)).unwrap();
        let state = Tensor::from_slice(dev, &[6, h, r], &vec![0f32; 6 * h * r]).unwrap();
        let ut = Tensor::from_slice(dev, &[t, h], &u).unwrap();
        let mut rec = Recorder::new(dev);
        kernels::state_chunked(&mut rec, &ut, &mat, &bvec, &pw, &seqs, &state).unwrap();
        rec.run().unwrap();
        let got = state.read_f32(dev).unwrap();
        let (_, mut want) = prep.recurrence_ref(&u, &cu, None);
        let from = cu[5] + 300;
        let (_, part) = prep.recurrence_ref(&u[from * h..cu[6] * h], &[0, cu[6] - from], None);
        want[5 * h * r..6 * h * r].copy_from_slice(&part);
        check_within(dev, "s4 state", "chunked state = recurrence", &got, &want, (1e-10, 1e-4));
    }
}

#[test]
fn non_finite_input_stays_in_its_sequence() {
    let mut rng = Rng::new(9);
    for dev in devices() {
        let prep = s4_layer(&mut rng, 4, 4).prepare().unwrap();
        let h = 4;
        let cu = vec![0, 90, 190, 300];
        let mut u = inputs(&mut rng, 300, h);
        let clean = u.clone();
        u[120 * h + 1] = f32::NAN;
        u[150 * h + 2] = f32::INFINITY;
        let k = gpu_kernel(dev, &prep, 110);
        let d: Vec<f32> = prep.ssm.d.iter().map(|&v| v as f32).collect();
        let ref_y = gpu_conv(dev, &clean, h, &cu, &k, &d, ConvMethod::Fft);
        let views = [
            ("fft", gpu_conv(dev, &u, h, &cu, &k, &d, ConvMethod::Fft)),
            ("direct", gpu_conv(dev, &u, h, &cu, &k, &d, ConvMethod::Direct)),
            ("recurrence", gpu_recurrence(dev, &prep, &u, &cu, None, None).0),
        ];
        for (what, y) in views {
            for (s, w) in cu.windows(2).enumerate() {
                let part = &y[w[0] * h..w[1] * h];
                if s == 1 {
                    assert!(part.iter().any(|v| !v.is_finite()), "{what}: the bad sequence stayed finite");
                } else {
                    assert!(
                        part.iter().all(|v| v.is_finite()),
                        "{what}: sequence {s} caught a non-finite value"
                    );
                    let want = &ref_y[w[0] * h..w[1] * h];
                    let err = part.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                    assert!(err < 1e-4, "{what}: sequence {s} changed by {err}");
                }
            }
        }
    }
}

/// The fused FFT convolution in both its forms (one pass for n ≤ local/2, the three-pass
/// four-step form past local; the separate passes between) against f64 and the separate passes: ragged segments, odd and even
/// H (one channel alone too), a one-token segment, bidirectional kernels, and an input kernel
/// longer than needed.
#[test]
fn fused_fft_convolution_matches_f64_in_both_forms() {
    let mut rng = Rng::new(18);
    for dev in devices() {
        let local = Plan::local(dev);
        for (h, lens) in [
            (1usize, vec![300usize, 2]),
            (3, vec![1, 5, 16]),
            (4, vec![200, 3, 64]),
            (7, vec![local / 4 + 1, 9]),
            (2, vec![1200, local]),
            (2, vec![3000, 20000]),
        ] {
            let mut segs = vec![0];
            lens.iter().for_each(|l| segs.push(segs.last().unwrap() + l));
            let t = *segs.last().unwrap();
            let l = lens.iter().max().unwrap() + 3;
            let n = kernels::conv_length(l - 3);
            let form = fftconv::FusedPlan::new(n, local).map_or("passes", |f| {
                if f.whole() {
                    "whole"
                } else {
                    "four-step"
                }
            });
            let u = inputs(&mut rng, t, h);
            let d = rng.vec(h, -1.0, 1.0);
            let d64: Vec<f64> = d.iter().map(|&v| v as f64).collect();
            for bidi in [false, true] {
                let halves = 1 + bidi as usize;
                let k: Vec<f32> = (0..halves * h * l)
                    .map(|i| rng.uniform(-1.0, 1.0) * (-((i % l) as f32) / 100.0).exp())
                    .collect();
                let k64: Vec<f64> = k.iter().map(|&v| v as f64).collect();
                let want = conv_ref_with(&u, &segs, &k64, l, &d64, bidi);
                let what = format!("H {h} lens {lens:?} n {n} {form} bidirectional {bidi}");
                for m in [ConvMethod::Fft, ConvMethod::FftPasses] {
                    let got = gpu_conv_with(dev, &u, h, &segs, &k, &d, m, bidi);
                    check_within(dev, "s4 fused conv", &format!("{m:?} {what}"), &got, &want, (1e-10, 1e-3));
                }
            }
        }
    }
}
