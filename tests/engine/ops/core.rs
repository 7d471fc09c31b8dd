//! Elementwise, norm, embedding and softmax/argmax against their f64 references.

use crate::common::{check, devices, f16_round};
use linseq::ops::elementwise::{self, Binary, Unary};
use linseq::ops::gather::{self, Pick};
use linseq::ops::norm::{self, NormKind};
use linseq::ops::{embedding, softmax, Recorder};
use linseq::testing::{GuardedOutput, Rng};
use linseq::{DType, Tensor};

/// 1 element, sizes around the workgroup size (256), and a large one (> 65535 workgroups of
/// 256 would need a 2-D grid at 16.7M; 1M keeps lavapipe quick while covering multi-dim grids
/// in the copy test below).
const SIZES: [usize; 6] = [1, 7, 255, 257, 1000, 1 << 20];

#[test]
fn unary_ops() {
    for dev in devices() {
        let mut rng = Rng::new(1);
        for &n in &SIZES {
            let xs = rng.vec(n, -30.0, 30.0);
            let x = Tensor::from_slice(dev, &[n], &xs).unwrap();
            for op in Unary::ALL {
                let out = GuardedOutput::new(dev, &[n], DType::F32).unwrap();
                let mut rec = Recorder::new(dev);
                elementwise::unary(&mut rec, op, &x, 0.37, &out.tensor).unwrap();
                rec.run().unwrap();
                let want: Vec<f64> = xs.iter().map(|&v| op.reference(v as f64, 0.37f32 as f64)).collect();
                check(dev, "elementwise", DType::F32, &format!("{} n={n}", op.name()), &out, &want);
            }
        }
    }
}

#[test]
fn binary_ops_with_broadcast_and_residual() {
    for dev in devices() {
        let mut rng = Rng::new(2);
        for &(n, nb) in &[(1, 1), (255, 255), (257, 257), (1000, 10), (12 * 4096, 4096)] {
            let (xs, ys) = (rng.vec(n, -4.0, 4.0), rng.vec(nb, -4.0, 4.0));
            let x = Tensor::from_slice(dev, &[n], &xs).unwrap();
            let y = Tensor::from_slice(dev, &[nb], &ys).unwrap();
            for op in Binary::ALL {
                let out = GuardedOutput::new(dev, &[n], DType::F32).unwrap();
                let mut rec = Recorder::new(dev);
                elementwise::binary(&mut rec, op, &x, &y, &out.tensor).unwrap();
                rec.run().unwrap();
                let want: Vec<f64> = (0..n).map(|i| op.reference(xs[i] as f64, ys[i % nb] as f64)).collect();
                check(dev, "elementwise", DType::F32, &format!("{} n={n} nb={nb}", op.name()), &out, &want);
            }
            // Fused residual add, in place, into a guarded accumulator.
            let acc = GuardedOutput::new(dev, &[n], DType::F32).unwrap();
            acc.tensor.write(dev, &xs).unwrap();
            let mut rec = Recorder::new(dev);
            elementwise::residual_add(&mut rec, &acc.tensor, &y, 0.5).unwrap();
            rec.run().unwrap();
            let want: Vec<f64> = (0..n).map(|i| xs[i] as f64 + 0.5 * ys[i % nb] as f64).collect();
            check(dev, "elementwise", DType::F32, &format!("residual_add n={n} nb={nb}"), &acc, &want);
        }
    }
}

#[test]
fn f16_activations_through_unary_binary_and_casts() {
    // f16 activations are packed two per word, one invocation per word: odd lengths end in a
    // pad half, and the guards catch a write past it.
    for dev in devices() {
        let mut rng = Rng::new(3);
        for &(n, nb) in &[(1, 1), (7, 7), (257, 257), (1000, 10), (4097, 1)] {
            let xs = f16_round(&rng.vec(n, -4.0, 4.0));
            let ys = f16_round(&rng.vec(nb, -4.0, 4.0));
            let x = Tensor::from_f32(dev, &[n], &xs, DType::F16).unwrap();
            let round = |v: Vec<f64>| elementwise::cast_ref(&v, DType::F16);
            for op in Unary::ALL {
                let out = GuardedOutput::new(dev, &[n], DType::F16).unwrap();
                let mut rec = Recorder::new(dev);
                elementwise::unary(&mut rec, op, &x, 0.37, &out.tensor).unwrap();
                rec.run().unwrap();
                let want = round(xs.iter().map(|&v| op.reference(v as f64, 0.37f32 as f64)).collect());
                check(dev, "elementwise", DType::F16, &format!("{}.f16 n={n}", op.name()), &out, &want);
            }
            for b_dtype in [DType::F16, DType::F32] {
                let y = Tensor::from_f32(dev, &[nb], &ys, b_dtype).unwrap();
                for op in Binary::ALL {
                    let out = GuardedOutput::new(dev, &[n], DType::F16).unwrap();
                    let mut rec = Recorder::new(dev);
                    elementwise::binary(&mut rec, op, &x, &y, &out.tensor).unwrap();
                    rec.run().unwrap();
                    let want = round((0..n).map(|i| op.reference(xs[i] as f64, ys[i % nb] as f64)).collect());
                    let case = format!("{}.f16 b {b_dtype:?} n={n} nb={nb}", op.name());
                    check(dev, "elementwise", DType::F16, &case, &out, &want);
                }
            }
            // f32 → f16 rounds to nearest; f16 → f32 is exact.
            let wide = rng.vec(n, -60000.0, 60000.0); // f16 is finite to 65504; WGSL leaves overflow undefined
            let wide_t = Tensor::from_slice(dev, &[n], &wide).unwrap();
            let half = GuardedOutput::new(dev, &[n], DType::F16).unwrap();
            let back = GuardedOutput::new(dev, &[n], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            elementwise::cast(&mut rec, &wide_t, &half.tensor).unwrap();
            elementwise::cast(&mut rec, &half.tensor, &back.tensor).unwrap();
            rec.run().unwrap();
            let want = elementwise::cast_ref(&wide.iter().map(|&v| v as f64).collect::<Vec<_>>(), DType::F16);
            check(dev, "elementwise", DType::F16, &format!("cast.f16 n={n}"), &half, &want);
            check(dev, "elementwise", DType::F16, &format!("cast.f32 n={n}"), &back, &want);
        }
        // Outputs must have the input's dtype; a cast must change it.
        let a = Tensor::empty(dev, &[8], DType::F32).unwrap();
        let h = Tensor::empty(dev, &[8], DType::F16).unwrap();
        let mut rec = Recorder::new(dev);
        assert!(matches!(
            elementwise::unary(&mut rec, Unary::Exp, &h, 1.0, &a),
            Err(linseq::Error::Shape(_))
        ));
        assert!(matches!(elementwise::cast(&mut rec, &a, &a), Err(linseq::Error::Shape(_))));
        assert!(rec.is_empty());
    }
}

#[test]
fn elementwise_rejects_bad_shapes() {
    let dev = &devices()[0];
    let a = Tensor::empty(dev, &[10], DType::F32).unwrap();
    let b = Tensor::empty(dev, &[3], DType::F32).unwrap();
    let ids = Tensor::empty(dev, &[10], DType::U32).unwrap();
    let mut rec = Recorder::new(dev);
    assert!(matches!(elementwise::binary(&mut rec, Binary::Add, &a, &b, &a), Err(linseq::Error::Shape(_))));
    assert!(matches!(elementwise::unary(&mut rec, Unary::Exp, &ids, 1.0, &a), Err(linseq::Error::Shape(_))));
    assert!(matches!(elementwise::unary(&mut rec, Unary::Exp, &a, 1.0, &b), Err(linseq::Error::Shape(_))));
    assert!(rec.is_empty());
}

#[test]
fn norms() {
    for dev in devices() {
        let mut rng = Rng::new(3);
        let kinds = [
            ("rms", NormKind::Rms { groups: 1 }),
            ("layer", NormKind::Layer),
            ("group4", NormKind::Group { groups: 4 }),
            ("group_rms2", NormKind::Rms { groups: 2 }),
        ];
        for &(rows, c) in &[(1, 4), (3, 8), (5, 256), (2, 1000), (4, 4096), (33, 768)] {
            let xs: Vec<f32> = rng.vec(rows * c, -3.0, 5.0);
            let ws = rng.vec(c, 0.5, 1.5);
            let bs = rng.vec(c, -1.0, 1.0);
            let x = Tensor::from_slice(dev, &[rows, c], &xs).unwrap();
            let w = Tensor::from_slice(dev, &[c], &ws).unwrap();
            let b = Tensor::from_slice(dev, &[c], &bs).unwrap();
            for (name, kind) in kinds {
                for with_bias in [false, true] {
                    if with_bias && matches!(kind, NormKind::Rms { .. }) {
                        continue; // RMSNorm has no bias term
                    }
                    let out = GuardedOutput::new(dev, &[rows, c], DType::F32).unwrap();
                    let mut rec = Recorder::new(dev);
                    let bias = with_bias.then_some(&b);
                    norm::norm(&mut rec, kind, &x, &w, bias, 1e-5, &out.tensor).unwrap();
                    rec.run().unwrap();
                    let want = norm::norm_ref(kind, &xs, c, &ws, with_bias.then_some(&bs[..]), 1e-5);
                    check(
                        dev,
                        "norm",
                        DType::F32,
                        &format!("{name} rows={rows} C={c} bias={with_bias}"),
                        &out,
                        &want,
                    );
                }
            }
        }
        // Group count must divide C.
        let x = Tensor::empty(dev, &[2, 10], DType::F32).unwrap();
        let w = Tensor::empty(dev, &[10], DType::F32).unwrap();
        let mut rec = Recorder::new(dev);
        assert!(norm::group_norm(&mut rec, &x, 3, &w, None, 1e-5, &x).is_err());
    }
}

#[test]
fn embedding_gather() {
    for dev in devices() {
        let mut rng = Rng::new(4);
        for &(vocab, dim, tokens) in &[(1, 1, 1), (50, 7, 9), (256, 64, 300), (1000, 130, 17)] {
            let table = rng.vec(vocab * dim, -1.0, 1.0);
            let ids: Vec<u32> = (0..tokens).map(|_| (rng.next_u64() % vocab as u64) as u32).collect();
            let id_t = Tensor::from_slice(dev, &[tokens], &ids).unwrap();
            for dt in [DType::F32, DType::F16] {
                let tv = if dt == DType::F16 { f16_round(&table) } else { table.clone() };
                let t = Tensor::from_f32(dev, &[vocab, dim], &tv, dt).unwrap();
                let out = GuardedOutput::new(dev, &[tokens, dim], DType::F32).unwrap();
                let mut rec = Recorder::new(dev);
                embedding::embedding(&mut rec, &id_t, &t, &out.tensor).unwrap();
                rec.run().unwrap();
                let want = embedding::embedding_ref(&ids, &tv, dim);
                check(dev, "embedding", dt, &format!("V={vocab} D={dim} T={tokens}"), &out, &want);
            }
        }
    }
    assert!(embedding::check_ids(&[0, 5, 3], 5).is_err());
    assert!(embedding::check_ids(&[0, 4, 3], 5).is_ok());
}

#[test]
fn columns_gathered_from_several_sources() {
    // Every column from one of three sources of different widths, or zero, over 1 and 300
    // rows; out-of-range picks and mismatched rows are clear errors.
    for dev in devices() {
        let mut rng = Rng::new(5);
        for t in [1usize, 300] {
            let widths = [7usize, 64, 3];
            let host: Vec<Vec<f32>> = widths.iter().map(|w| rng.vec(t * w, -1.0, 1.0)).collect();
            let srcs: Vec<Tensor> =
                host.iter().zip(widths).map(|(h, w)| Tensor::from_slice(dev, &[t, w], h).unwrap()).collect();
            let picks: Vec<Pick> = (0..100)
                .map(|c| match c % 4 {
                    3 => Pick::Zero,
                    s => Pick::From { src: s, col: (c * 7) % widths[s] },
                })
                .collect();
            let table =
                Tensor::from_slice(dev, &[picks.len()], &gather::table(&picks, &widths).unwrap()).unwrap();
            let out = GuardedOutput::new(dev, &[t, picks.len()], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            gather::gather_columns(&mut rec, &[&srcs[0], &srcs[1], &srcs[2]], &table, &out.tensor).unwrap();
            rec.run().unwrap();
            let h64: Vec<Vec<f64>> = host.iter().map(|h| h.iter().map(|&v| v as f64).collect()).collect();
            let refs: Vec<&[f64]> = h64.iter().map(|v| v.as_slice()).collect();
            let want = gather::gather_columns_ref(&refs, &widths, &picks, t);
            check(dev, "gather", DType::F32, &format!("T={t}"), &out, &want);
        }
        assert!(gather::table(&[Pick::From { src: 1, col: 5 }], &[8, 5]).is_err());
        assert!(gather::table(&[Pick::From { src: 3, col: 0 }], &[8, 5, 1, 1]).is_err());
        let a = Tensor::empty(dev, &[4, 8], DType::F32).unwrap();
        let b = Tensor::empty(dev, &[5, 8], DType::F32).unwrap();
        let table = Tensor::from_slice(dev, &[2], &[1u32 << 24, 2 << 24]).unwrap();
        let out = Tensor::empty(dev, &[4, 2], DType::F32).unwrap();
        let e = gather::gather_columns(&mut Recorder::new(dev), &[&a, &b], &table, &out).unwrap_err();
        assert!(e.to_string().contains("source 1"), "{e}");
    }
}

#[test]
fn softmax_and_argmax() {
    for dev in devices() {
        let mut rng = Rng::new(5);
        for &(rows, n) in &[(1, 1), (3, 7), (2, 255), (4, 1000), (2, 50280)] {
            let mut xs = rng.vec(rows * n, -20.0, 20.0);
            if n > 10 {
                // A tie for the maximum: argmax must return the lower index.
                xs[3] = 25.0;
                xs[9] = 25.0;
            }
            let x = Tensor::from_slice(dev, &[rows, n], &xs).unwrap();
            let out = GuardedOutput::new(dev, &[rows, n], DType::F32).unwrap();
            let ids = GuardedOutput::new(dev, &[rows], DType::U32).unwrap();
            let mut rec = Recorder::new(dev);
            softmax::softmax(&mut rec, &x, 0.7, &out.tensor).unwrap();
            softmax::argmax(&mut rec, &x, &ids.tensor).unwrap();
            rec.run().unwrap();
            let want: Vec<f64> = xs.chunks(n).flat_map(|r| softmax::softmax_ref(r, 0.7f32 as f64)).collect();
            check(dev, "softmax", DType::F32, &format!("rows={rows} n={n}"), &out, &want);
            let got = ids.read_words(dev).unwrap();
            let want_ids: Vec<u32> = xs.chunks(n).map(softmax::argmax_ref).collect();
            assert_eq!(got, want_ids, "[{}] argmax rows={rows} n={n}", dev.caps().backend);
        }
    }
}

#[test]
fn two_dimensional_grid_and_copy() {
    // 256·65536 + 5 elements need 65537 workgroups of 256: more than the 65535 allowed in one
    // dimension, so the grid helper folds them into x × y and the shader unfolds them.
    for dev in devices() {
        let n = 256 * 65536 + 5;
        let data: Vec<f32> = (0..n).map(|i| (i % 9973) as f32).collect();
        let x = Tensor::from_slice(dev, &[n], &data).unwrap();
        let out = GuardedOutput::new(dev, &[n], DType::F32).unwrap();
        let mut rec = Recorder::new(dev);
        elementwise::unary(&mut rec, Unary::Scale, &x, 2.0, &out.tensor).unwrap();
        rec.run().unwrap();
        let want: Vec<f64> = data.iter().map(|&v| 2.0 * v as f64).collect();
        check(dev, "elementwise", DType::F32, &format!("scale 2-D grid n={n}"), &out, &want);

        let m = 4 * 1001;
        let src = Tensor::from_slice(dev, &[m], &data[..m]).unwrap();
        let out = GuardedOutput::new(dev, &[m], DType::F32).unwrap();
        let mut rec = Recorder::new(dev);
        linseq::ops::copy::copy(&mut rec, &src, &out.tensor).unwrap();
        rec.run().unwrap();
        let want: Vec<f64> = data[..m].iter().map(|&v| v as f64).collect();
        check(dev, "copy", DType::F32, &format!("n={m}"), &out, &want);
    }
}
