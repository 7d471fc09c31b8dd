//! The fused decode-step kernels of the Mamba runtime, against f64 references composed from
//! the unfused ops' definitions: the in_proj step (RMSNorm + GEMV + conv band), the GEMV over
//! leading columns of a wider x, and the fused selective-scan step.

use crate::common::{check, devices, f16_round};
use linseq::ops::mamba_step::{self, MambaStepArgs, MambaStepRef};
use linseq::ops::matmul::{self, ConvBand};
use linseq::ops::selective_scan::{pack_channel_params, ScanFlags};
use linseq::ops::Recorder;
use linseq::testing::{GuardedOutput, Rng};
use linseq::{DType, Tensor};

/// One in_proj step case: M sequences, N outputs, K inputs, conv band [lo, lo + c) of width w.
struct InStep {
    m: usize,
    n: usize,
    k: usize,
    lo: usize,
    c: usize,
    width: usize,
    bias: bool,
    conv_bias: bool,
    wdt: DType,
}

/// f64 reference of the in_proj step: (y [M, N], new conv state [M, C, W − 1]).
#[allow(clippy::too_many_arguments)]
fn in_step_ref(
    s: &InStep,
    x: &[f32],
    g: &[f32],
    eps: f64,
    w: &[f32],
    b: Option<&[f32]>,
    cw: &[f32],
    cb: Option<&[f32]>,
    state: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (m, n, k, c, wd) = (s.m, s.n, s.k, s.c, s.width);
    let mut y = vec![0f64; m * n];
    let mut st: Vec<f64> = state.iter().map(|&v| v as f64).collect();
    for row in 0..m {
        let xr = &x[row * k..(row + 1) * k];
        let ms = xr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / k as f64;
        let r = 1.0 / (ms + eps).sqrt();
        for col in 0..n {
            let mut v: f64 = (0..k).map(|j| xr[j] as f64 * r * g[j] as f64 * w[col * k + j] as f64).sum();
            v += b.map_or(0.0, |b| b[col] as f64);
            if col >= s.lo && col < s.lo + c {
                let ch = col - s.lo;
                let hist = &mut st[(row * c + ch) * (wd - 1)..(row * c + ch + 1) * (wd - 1)];
                let mut acc = cw[ch * wd + wd - 1] as f64 * v + cb.map_or(0.0, |cb| cb[ch] as f64);
                for j in 0..wd - 1 {
                    acc += cw[ch * wd + j] as f64 * hist[j];
                }
                hist.rotate_left(1);
                hist[wd - 2] = v;
                v = acc / (1.0 + (-acc).exp());
            }
            y[row * n + col] = v;
        }
    }
    (y, st)
}

#[test]
fn fused_in_proj_step_matches_reference() {
    let cases = [
        // Mamba-1: the x half of in_proj convolved (K multiple of 8: vector loads).
        InStep { m: 1, n: 144, k: 64, lo: 0, c: 72, width: 4, bias: false, conv_bias: true, wdt: DType::F16 },
        // K = 40 is no multiple of 8: f16 goes scalar; three sequences.
        InStep {
            m: 3,
            n: 200,
            k: 40,
            lo: 0,
            c: 100,
            width: 3,
            bias: true,
            conv_bias: false,
            wdt: DType::F16,
        },
        // Mamba-2: a band in the middle ([z | xBC | dt]); eight sequences.
        InStep {
            m: 8,
            n: 130,
            k: 96,
            lo: 20,
            c: 50,
            width: 2,
            bias: false,
            conv_bias: true,
            wdt: DType::F32,
        },
        InStep {
            m: 2,
            n: 1024,
            k: 512,
            lo: 0,
            c: 512,
            width: 4,
            bias: true,
            conv_bias: true,
            wdt: DType::F32,
        },
        InStep { m: 1, n: 37, k: 19, lo: 5, c: 7, width: 4, bias: true, conv_bias: true, wdt: DType::F32 },
    ];
    let eps = 1e-5;
    for dev in devices() {
        let mut rng = Rng::new(41);
        for s in &cases {
            let x = rng.vec(s.m * s.k, -2.0, 2.0);
            let g = rng.vec(s.k, 0.5, 1.5);
            let w0 = rng.vec(s.n * s.k, -0.3, 0.3);
            let w = if s.wdt == DType::F16 { f16_round(&w0) } else { w0 };
            let b = rng.vec(s.n, -0.5, 0.5);
            let cw = rng.vec(s.c * s.width, -0.7, 0.7);
            let cb = rng.vec(s.c, -0.3, 0.3);
            let state0 = rng.vec(s.m * s.c * (s.width - 1), -1.0, 1.0);
            let xt = Tensor::from_slice(dev, &[s.m, s.k], &x).unwrap();
            let gt = Tensor::from_slice(dev, &[s.k], &g).unwrap();
            let wt = Tensor::from_f32(dev, &[s.n, s.k], &w, s.wdt).unwrap();
            let bt = Tensor::from_slice(dev, &[s.n], &b).unwrap();
            let cwt = Tensor::from_slice(dev, &[s.c, s.width], &cw).unwrap();
            let cbt = Tensor::from_slice(dev, &[s.c], &cb).unwrap();
            let state = GuardedOutput::new(dev, &[s.m, s.c, s.width - 1], DType::F32).unwrap();
            state.tensor.write(dev, &state0).unwrap();
            let out = GuardedOutput::new(dev, &[s.m, s.n], DType::F32).unwrap();
            let band =
                ConvBand { lo: s.lo, weight: &cwt, bias: s.conv_bias.then_some(&cbt), state: &state.tensor };
            let mut rec = Recorder::new(dev);
            matmul::linear_in_step(&mut rec, &xt, &gt, eps, &wt, s.bias.then_some(&bt), &band, &out.tensor)
                .unwrap();
            rec.run().unwrap();
            let (want_y, want_state) = in_step_ref(
                s,
                &x,
                &g,
                eps,
                &w,
                s.bias.then_some(&b[..]),
                &cw,
                s.conv_bias.then_some(&cb[..]),
                &state0,
            );
            let case = format!("M={} N={} K={} band [{}, +{}) W={}", s.m, s.n, s.k, s.lo, s.c, s.width);
            check(dev, "matmul", s.wdt, &format!("in_step y {case}"), &out, &want_y);
            check(dev, "matmul", s.wdt, &format!("in_step state {case}"), &state, &want_state);
        }
    }
}

#[test]
fn fused_in_proj_step_rejects_bad_shapes() {
    let dev = &devices()[0];
    let t = |shape: &[usize]| Tensor::empty(dev, shape, DType::F32).unwrap();
    let (g, w) = (t(&[8]), t(&[16, 8]));
    // (rows, conv weight, conv state, band start): each wrong in one way.
    type Case<'a> = (usize, &'a [usize], &'a [usize], usize, &'a str);
    let cases: [Case; 5] = [
        (1, &[8, 4], &[1, 8, 3], 0, ""),
        (1, &[8, 4], &[1, 8, 3], 9, "band past the outputs"),
        (1, &[8, 5], &[1, 8, 4], 0, "width 5"),
        (1, &[8, 4], &[2, 8, 3], 0, "state of 2 sequences"),
        (9, &[8, 4], &[9, 8, 3], 0, "9 rows, past the GEMV"),
    ];
    for (m, cw, st, lo, wrong) in cases {
        let (cw, st) = (t(cw), t(st));
        let band = ConvBand { lo, weight: &cw, bias: None, state: &st };
        let mut rec = Recorder::new(dev);
        let r = matmul::linear_in_step(&mut rec, &t(&[m, 8]), &g, 1e-5, &w, None, &band, &t(&[m, 16]));
        match (wrong, r) {
            ("", Err(e)) => panic!("a valid in_proj step was refused: {e}"),
            ("", Ok(())) => {}
            (_, Ok(())) => panic!("{wrong}: accepted"),
            (_, Err(e)) => eprintln!("{wrong}: {e}"),
        }
    }
}

#[test]
fn linear_reads_leading_columns_of_a_wider_x() {
    // x [M, X] with X > K: the first K columns of each row (x_proj reading the conv'd half of
    // the in_proj step's output), on the GEMV (M ≤ 8) and GEMM paths.
    for dev in devices() {
        let mut rng = Rng::new(43);
        for &(m, n, k, xs, wdt) in &[
            (1, 40, 64, 128, DType::F16),
            (5, 33, 24, 52, DType::F16),
            (3, 17, 13, 26, DType::F32),
            (20, 70, 64, 100, DType::F32),
            (70, 30, 48, 96, DType::F16),
        ] {
            let x = rng.vec(m * xs, -1.0, 1.0);
            let w0 = rng.vec(n * k, -0.5, 0.5);
            let w = if wdt == DType::F16 { f16_round(&w0) } else { w0 };
            let xt = Tensor::from_slice(dev, &[m, xs], &x).unwrap();
            let wt = Tensor::from_f32(dev, &[n, k], &w, wdt).unwrap();
            let out = GuardedOutput::new(dev, &[m, n], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            matmul::linear_columns(&mut rec, &xt, &wt, None, &out.tensor).unwrap();
            rec.run().unwrap();
            let lead: Vec<f32> = x.chunks(xs).flat_map(|r| r[..k].to_vec()).collect();
            let want = matmul::linear_ref(&lead, &w, None, m, n, k);
            check(dev, "matmul", wdt, &format!("columns M={m} N={n} K={k} of {xs}"), &out, &want);
        }
    }
}

#[test]
fn fused_mamba_step_matches_reference() {
    // (S, D, R, N, dt weight dtype, negative eigenvalues): D not a multiple of the 64-channel
    // workgroup, N not a multiple of the 4 lanes per channel, R not a multiple of 4.
    for dev in devices() {
        let mut rng = Rng::new(47);
        for &(s, d, r, n, wdt, neg) in &[
            (1, 72, 5, 16, DType::F16, false),
            (5, 130, 48, 16, DType::F32, true),
            (3, 64, 8, 1, DType::F16, false),
            (8, 200, 33, 7, DType::F32, false),
        ] {
            let xs = 2 * d + 3; // room on the right, as a wider activation would have
            let xz = rng.vec(s * xs, -1.5, 1.5);
            let xdbl = rng.vec(s * (r + 2 * n), -1.0, 1.0);
            let w0 = rng.vec(d * r, -0.5, 0.5);
            let w_dt = if wdt == DType::F16 { f16_round(&w0) } else { w0 };
            let a: Vec<f32> = (0..d * n).map(|_| -rng.uniform(0.1, 2.0)).collect();
            let dskip = rng.vec(d, -1.0, 1.0);
            let dbias = rng.vec(d, -2.0, 0.5);
            let chan = pack_channel_params(&a, Some(&dskip), Some(&dbias), d, n);
            let state0 = rng.vec(s * d * n, -1.0, 1.0);
            let flags = ScanFlags {
                delta_softplus: true,
                delta_bias: true,
                d_skip: true,
                neg_eigen: neg,
                init_state: true,
            };
            let xzt = Tensor::from_slice(dev, &[s, xs], &xz).unwrap();
            let xdt = Tensor::from_slice(dev, &[s, r + 2 * n], &xdbl).unwrap();
            let wt = Tensor::from_f32(dev, &[d, r], &w_dt, wdt).unwrap();
            let ct = Tensor::from_slice(dev, &[d, n + 2], &chan).unwrap();
            let state = GuardedOutput::new(dev, &[s, d, n], DType::F32).unwrap();
            state.tensor.write(dev, &state0).unwrap();
            let out = GuardedOutput::new(dev, &[s, d], DType::F32).unwrap();
            let z_col = d + 1;
            let args = MambaStepArgs {
                xz: &xzt,
                z_col,
                xdbl: &xdt,
                w_dt: &wt,
                chan: &ct,
                state: &state.tensor,
                flags,
            };
            let mut rec = Recorder::new(dev);
            mamba_step::mamba_step(&mut rec, &args, &out.tensor).unwrap();
            rec.run().unwrap();
            let (want_y, want_state) = mamba_step::mamba_step_ref(&MambaStepRef {
                xz: &xz,
                xs,
                z_col,
                xdbl: &xdbl,
                w_dt: &w_dt,
                chan: &chan,
                state: &state0,
                sequences: s,
                dim: d,
                rank: r,
                n,
                flags,
            });
            let case = format!("S={s} D={d} R={r} N={n} neg={neg}");
            check(dev, "selective_scan", wdt, &format!("step y {case}"), &out, &want_y);
            check(dev, "selective_scan", wdt, &format!("step state {case}"), &state, &want_state);
        }
    }
}

#[test]
fn normed_linear_stores_or_accumulates() {
    // y (+)= RMSNorm(x; g) · Wᵀ + b: Mamba-2's gated-norm out_proj onto the residual stream.
    let eps = 1e-5;
    for dev in devices() {
        let mut rng = Rng::new(49);
        for &(m, n, k, wdt, accumulate) in
            &[(1, 64, 96, DType::F16, true), (3, 33, 40, DType::F32, false), (8, 100, 128, DType::F32, true)]
        {
            let x = rng.vec(m * k, -2.0, 2.0);
            let g = rng.vec(k, 0.5, 1.5);
            let w0 = rng.vec(n * k, -0.3, 0.3);
            let w = if wdt == DType::F16 { f16_round(&w0) } else { w0 };
            let b = rng.vec(n, -0.5, 0.5);
            let r = rng.vec(m * n, -1.0, 1.0);
            let out = GuardedOutput::new(dev, &[m, n], DType::F32).unwrap();
            out.tensor.write(dev, &r).unwrap();
            let mut rec = Recorder::new(dev);
            let (xt, gt) =
                (Tensor::from_slice(dev, &[m, k], &x).unwrap(), Tensor::from_slice(dev, &[k], &g).unwrap());
            let wt = Tensor::from_f32(dev, &[n, k], &w, wdt).unwrap();
            let bt = Tensor::from_slice(dev, &[n], &b).unwrap();
            matmul::linear_normed(&mut rec, &xt, &gt, eps, &wt, Some(&bt), accumulate, &out.tensor).unwrap();
            rec.run().unwrap();
            let mut want = vec![0f64; m * n];
            for row in 0..m {
                let xr = &x[row * k..(row + 1) * k];
                let ms = xr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / k as f64;
                let s = 1.0 / (ms + eps).sqrt();
                for col in 0..n {
                    let dot: f64 =
                        (0..k).map(|j| xr[j] as f64 * s * g[j] as f64 * w[col * k + j] as f64).sum();
                    let base = if accumulate { r[row * n + col] as f64 } else { 0.0 };
                    want[row * n + col] = base + dot + b[col] as f64;
                }
            }
            let case = format!("normed M={m} N={n} K={k} accumulate={accumulate}");
            check(dev, "matmul", wdt, &case, &out, &want);
        }
    }
}

#[test]
fn ssd_step_reads_a_fused_in_proj_row() {
    // The decode step on [z | xBC | dt | spare] rows equals the plain-layout recurrence, gated
    // by silu(z).
    use linseq::ops::selective_scan::Sequences;
    use linseq::ops::ssd::{self, RowColumns, SsdDims, SsdFlags, SsdRef};
    for dev in devices() {
        let mut rng = Rng::new(50);
        for &(s, dims) in &[
            (1, SsdDims { heads: 4, head_dim: 8, groups: 1, n: 16 }),
            (3, SsdDims { heads: 2, head_dim: 72, groups: 2, n: 20 }),
        ] {
            let (hp, w) = (dims.heads * dims.head_dim, dims.width());
            let r = hp + w + dims.heads + 5;
            let cols = RowColumns { x: hp, dt: hp + w, z: 0 };
            let row = rng.vec(s * r, -1.0, 1.0);
            let a: Vec<f32> = (0..dims.heads).map(|_| -rng.uniform(0.2, 3.0)).collect();
            let heads = ssd::pack_head_params(
                &a,
                Some(&rng.vec(dims.heads, -1.0, 1.0)),
                Some(&rng.vec(dims.heads, -2.0, 0.0)),
            );
            let state0 = rng.vec(s * hp * dims.n, -0.5, 0.5);
            let flags = SsdFlags { init_state: true, dt_limit: (0.0, 3.0), ..SsdFlags::default() };
            let seqs = Sequences::decode(dev, s, None).unwrap();
            let state = GuardedOutput::new(dev, &[s, dims.heads, dims.head_dim, dims.n], DType::F32).unwrap();
            state.tensor.write(dev, &state0).unwrap();
            let y = GuardedOutput::new(dev, &[s, hp], DType::F32).unwrap();
            let rowt = Tensor::from_slice(dev, &[s, r], &row).unwrap();
            let ht = Tensor::from_slice(dev, &[dims.heads, 4], &heads).unwrap();
            let mut rec = Recorder::new(dev);
            ssd::ssd_step_row(&mut rec, &rowt, cols, &ht, &seqs, &state.tensor, dims, flags, &y.tensor)
                .unwrap();
            rec.run().unwrap();
            let xbc: Vec<f32> = row.chunks(r).flat_map(|q| q[cols.x..cols.x + w].to_vec()).collect();
            let dt: Vec<f32> =
                row.chunks(r).flat_map(|q| q[cols.dt..cols.dt + dims.heads].to_vec()).collect();
            let cu: Vec<usize> = (0..=s).collect();
            let (plain, want_state) = ssd::ssd_ref(&SsdRef {
                xbc: &xbc,
                dt: &dt,
                heads: &heads,
                cu: &cu,
                resets: None,
                state: &state0,
                dims,
                flags,
            });
            let want: Vec<f64> = plain
                .iter()
                .enumerate()
                .map(|(e, &v)| {
                    let z = row[(e / hp) * r + cols.z + e % hp] as f64;
                    v * z / (1.0 + (-z).exp())
                })
                .collect();
            let case = format!("S={s} {dims:?}");
            check(dev, "ssd", DType::F32, &format!("row step y {case}"), &y, &want);
            check(dev, "ssd", DType::F32, &format!("row step state {case}"), &state, &want_state);
        }
    }
}
