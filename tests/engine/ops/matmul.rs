//! Every matmul variant the adapter supports, on edge shapes, against the f64 reference.

use crate::common::{check, devices, f16_round};
use linseq::ops::{matmul, Recorder};
use linseq::testing::{GuardedOutput, Rng};
use linseq::{shader, DType, Error, Tensor};

/// (M, N, K): single elements, sizes that are not multiples of tiles or workgroups, K multiples
/// of 8 so vector-load variants run, and a few larger ones.
const GEMV_SHAPES: [(usize, usize, usize); 6] =
    [(1, 1, 1), (1, 37, 19), (1, 257, 64), (3, 100, 520), (8, 65, 1032), (1, 1024, 4096)];
const GEMM_SHAPES: [(usize, usize, usize); 6] =
    [(9, 1, 1), (17, 33, 65), (64, 64, 64), (130, 70, 300), (129, 257, 136), (300, 260, 512)];

fn run_case(
    dev: &linseq::Device,
    v: &shader::Variant,
    m: usize,
    n: usize,
    k: usize,
    bias: bool,
    rng: &mut Rng,
) -> bool {
    let wdt = if v.defines.contains_key("W_F32") { DType::F32 } else { DType::F16 };
    let xs = rng.vec(m * k, -1.0, 1.0);
    let mut ws = rng.vec(n * k, -1.0, 1.0);
    if wdt == DType::F16 {
        ws = f16_round(&ws);
    }
    let bs = rng.vec(n, -1.0, 1.0);
    let x = Tensor::from_slice(dev, &[m, k], &xs).unwrap();
    let w = Tensor::from_f32(dev, &[n, k], &ws, wdt).unwrap();
    let b = Tensor::from_slice(dev, &[n], &bs).unwrap();
    let out = GuardedOutput::new(dev, &[m, n], DType::F32).unwrap();
    let mut rec = Recorder::new(dev);
    match matmul::linear_using(&mut rec, v, &x, &w, bias.then_some(&b), &out.tensor) {
        Ok(()) => {}
        // Vector-load variants need K % chunk == 0; those shapes go to the scalar variants.
        Err(Error::UnsupportedVariant(msg)) if msg.contains("vector loads") => return false,
        Err(e) => panic!("{}: {e}", v.name),
    }
    rec.run().unwrap();
    let want = matmul::linear_ref(&xs, &ws, bias.then_some(&bs[..]), m, n, k);
    let case = format!("{} M={m} N={n} K={k} bias={bias}", v.name);
    check(dev, "matmul", wdt, &case, &out, &want);
    true
}

#[test]
fn every_matmul_variant_on_edge_shapes() {
    for dev in devices() {
        let mut rng = Rng::new(11);
        let mut ran = 0;
        for v in matmul::variants() {
            // The fused in_proj step has its own test (ops_fused).
            let in_step = v.defines.get("IN_STEP").is_some_and(|d| d == "1");
            // The cooperative-matrix kernels have tests of their own.
            if !v.supported(dev.caps()) || v.entry == "gemm_coop" || v.entry == "coop_probe" || in_step {
                continue;
            }
            let shapes = if v.entry == "gemv" { &GEMV_SHAPES } else { &GEMM_SHAPES };
            for (i, &(m, n, k)) in shapes.iter().enumerate() {
                ran += run_case(dev, &v, m, n, k, i % 2 == 1, &mut rng) as usize;
            }
        }
        assert!(ran > 40, "only {ran} matmul cases ran on {}", dev.describe());
    }
}

#[test]
fn accumulating_linear_adds_to_the_output() {
    // y += x·Wᵀ + b (the residual add fused into the store), on the GEMV and GEMM paths.
    for dev in devices() {
        let mut rng = Rng::new(14);
        for &(m, n, k) in &[(1, 70, 40), (3, 33, 64), (40, 50, 60), (130, 96, 64)] {
            for wdt in [DType::F32, DType::F16] {
                let x = rng.vec(m * k, -1.0, 1.0);
                let w0 = rng.vec(n * k, -0.5, 0.5);
                let w = if wdt == DType::F16 { f16_round(&w0) } else { w0 };
                let b = rng.vec(n, -0.5, 0.5);
                let r = rng.vec(m * n, -2.0, 2.0);
                let xt = Tensor::from_slice(dev, &[m, k], &x).unwrap();
                let wt = Tensor::from_f32(dev, &[n, k], &w, wdt).unwrap();
                let bt = Tensor::from_slice(dev, &[n], &b).unwrap();
                let y = GuardedOutput::new(dev, &[m, n], DType::F32).unwrap();
                y.tensor.write(dev, &r).unwrap();
                let mut rec = Recorder::new(dev);
                matmul::linear_accumulate(&mut rec, &xt, &wt, Some(&bt), &y.tensor).unwrap();
                rec.run().unwrap();
                let want: Vec<f64> = matmul::linear_ref(&x, &w, Some(&b), m, n, k)
                    .iter()
                    .zip(&r)
                    .map(|(a, &r)| a + r as f64)
                    .collect();
                check(dev, "matmul", wdt, &format!("accumulate M={m} N={n} K={k}"), &y, &want);
            }
        }
    }
}

#[test]
fn automatic_choice_covers_gemv_and_gemm() {
    for dev in devices() {
        let mut rng = Rng::new(12);
        for &(m, n, k) in &[(1, 50, 30), (5, 64, 64), (40, 50, 60), (512, 300, 64)] {
            for wdt in [DType::F32, DType::F16] {
                let v = matmul::choose(dev.caps(), m, n, k, wdt);
                assert!(v.supported(dev.caps()), "{} chosen on an adapter that lacks it", v.name);
                assert!(run_case(dev, &v, m, n, k, true, &mut rng), "{} refused M={m} N={n} K={k}", v.name);
            }
        }
        // On adapters without SHADER_F16 (GL), f16 weights still run via packed words.
        if !dev.caps().shader_f16 {
            assert_eq!(matmul::choose(dev.caps(), 1, 8, 8, DType::F16).name, "matmul.gemv.f16");
        }
    }
}

#[test]
fn matmul_errors_are_clear() {
    let dev = &devices()[0];
    let x = Tensor::empty(dev, &[2, 8], DType::F32).unwrap();
    let w = Tensor::empty(dev, &[4, 9], DType::F32).unwrap();
    let y = Tensor::empty(dev, &[2, 4], DType::F32).unwrap();
    let mut rec = Recorder::new(dev);
    let e = matmul::linear(&mut rec, &x, &w, None, &y).unwrap_err();
    assert!(matches!(e, Error::Shape(_)) && e.to_string().contains("HF Linear"), "{e}");
    let w = Tensor::empty(dev, &[4, 8], DType::F32).unwrap();
    let bad_y = Tensor::empty(dev, &[2, 5], DType::F32).unwrap();
    assert!(matches!(matmul::linear(&mut rec, &x, &w, None, &bad_y), Err(Error::Shape(_))));
    let coop = linseq::ops::find("matmul.gemm_coop.f16").unwrap();
    if !coop.supported(dev.caps()) {
        let e = matmul::linear_using(&mut rec, &coop, &x, &w, None, &y).unwrap_err();
        assert!(matches!(e, Error::UnsupportedVariant(_)), "{e}");
    }
    assert!(rec.is_empty());
}

/// Tensor-core GEMM: runs on adapters with 16×16×16 f16→f32 cooperative matrices (the H200);
/// elsewhere the variants must be refused, never run.
#[test]
fn cooperative_matrix_gemm_matches_reference_or_is_refused() {
    for dev in devices() {
        let mut rng = Rng::new(13);
        for v in matmul::variants().into_iter().filter(|v| v.entry == "gemm_coop") {
            for &(m, n, k) in &[(64, 64, 16), (128, 192, 80), (192, 128, 528)] {
                let xs = f16_round(&rng.vec(m * k, -1.0, 1.0));
                let ws = f16_round(&rng.vec(n * k, -1.0, 1.0));
                let x = Tensor::from_f32(dev, &[m, k], &xs, DType::F16).unwrap();
                let w = Tensor::from_f32(dev, &[n, k], &ws, DType::F16).unwrap();
                let out = GuardedOutput::new(dev, &[m, n], DType::F32).unwrap();
                let mut rec = Recorder::new(dev);
                let r = matmul::linear_using(&mut rec, &v, &x, &w, None, &out.tensor);
                if !v.supported(dev.caps()) {
                    assert!(
                        matches!(r, Err(Error::UnsupportedVariant(_))),
                        "{} ran without the feature",
                        v.name
                    );
                    continue;
                }
                r.unwrap();
                rec.run().unwrap();
                let want = matmul::linear_ref(&xs, &ws, None, m, n, k);
                check(dev, "matmul_coop", DType::F16, &format!("{} M={m} N={n} K={k}", v.name), &out, &want);
            }
        }
    }
}

#[test]
fn cooperative_matrix_probes_compute_their_products_or_are_refused() {
    // Each probe's one output per workgroup is element (0, 0) of the sum of its subgroups'
    // accumulators: recomputed here from the operand block, per step.
    let (workgroups, iters) = (2, 8);
    for dev in devices() {
        let xs = f16_round(&Rng::new(15).vec(64 * 64, -1.0, 1.0));
        let x = Tensor::from_f32(dev, &[64, 64], &xs, DType::F16).unwrap();
        let y = Tensor::empty(dev, &[workgroups], DType::F32).unwrap();
        let at = |r: usize, c: usize| xs[r * 64 + c] as f64;
        for probe in matmul::CoopProbe::ALL {
            let mut rec = Recorder::new(dev);
            let r = matmul::coop_probe(&mut rec, probe, &x, &y, workgroups, iters);
            if !probe.variant().supported(dev.caps()) {
                assert!(
                    matches!(r, Err(Error::UnsupportedVariant(_))),
                    "{} ran without the feature",
                    probe.name
                );
                continue;
            }
            r.unwrap();
            rec.run().unwrap();
            // (row of A, column of B) pairs whose dot products over the step's 16 k add up.
            let pairs = |band: usize| -> Vec<(usize, usize)> {
                if probe.name.contains("wg22") {
                    let (r0, c0) = ((band % 2) * 32, (band / 2) * 32);
                    vec![(r0, c0), (r0, c0 + 16), (r0 + 16, c0), (r0 + 16, c0 + 16)]
                } else {
                    (0..4).map(|q| (band * 16, q * 16)).collect()
                }
            };
            let mut want = 0.0;
            for it in 0..iters {
                let k = if probe.name.ends_with(".regs") { 0 } else { (it % 4) * 16 };
                for band in 0..4 {
                    for (row, col) in pairs(band) {
                        for r in 0..16 {
                            // B (r, 0) is x[k + r][col] row-major; column-major it is x[k][col + r].
                            let b =
                                if probe.name.ends_with(".bcol") { at(k, col + r) } else { at(k + r, col) };
                            want += at(row, k + r) * b;
                        }
                    }
                }
            }
            let got = y.read::<f32>(dev).unwrap();
            for (w, &g) in got.iter().enumerate() {
                let err = (g as f64 - want).abs();
                assert!(err <= 1e-3 * (1.0 + want.abs()), "{} workgroup {w}: {g} against {want}", probe.name);
            }
        }
    }
}
