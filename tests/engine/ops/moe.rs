//! The mixture-of-experts kernels (routing, the chosen experts' up and down projections with
//! the shared expert) against the f64 reference: expert counts and top-k, renormalised or
//! not, f32 and f16 weights, one token and several, and bad calls.

use crate::common::devices;
use linseq::ops::moe::{self, MoeDims, MoeRef, Routed, Scoring, Shared};
use linseq::ops::Recorder;
use linseq::testing::{compare, Rng};
use linseq::{DType, Tensor};

#[test]
fn routed_experts_and_the_shared_expert_match_the_reference() {
    for dev in devices() {
        let mut rng = Rng::new(91);
        // (dims, tokens, renormalised, shared expert: None / Some(gated), weights, scoring)
        let kimi = Scoring::Sigmoid { scale: 2.446 };
        for (m, t, norm_topk, shared, dtype, scoring) in [
            (
                MoeDims { experts: 8, k: 2, d: 64, inter: 48 },
                1,
                true,
                Some(true),
                DType::F32,
                Scoring::Softmax,
            ),
            (
                MoeDims { experts: 64, k: 8, d: 128, inter: 32 },
                37,
                true,
                Some(true),
                DType::F32,
                Scoring::Softmax,
            ),
            (MoeDims { experts: 16, k: 4, d: 36, inter: 20 }, 9, false, None, DType::F32, Scoring::Softmax),
            (
                MoeDims { experts: 8, k: 2, d: 64, inter: 48 },
                5,
                true,
                Some(true),
                DType::F16,
                Scoring::Softmax,
            ),
            (MoeDims { experts: 32, k: 4, d: 64, inter: 32 }, 11, true, Some(false), DType::F32, kimi),
            (MoeDims { experts: 16, k: 3, d: 32, inter: 16 }, 3, false, None, DType::F16, kimi),
        ] {
            let MoeDims { experts, k, d, inter } = m;
            let x = rng.vec(t * d, -1.0, 1.0);
            let router = rng.vec(experts * d, -0.5, 0.5);
            let mut gate = rng.vec(experts * inter * d, -0.2, 0.2);
            let mut upw = rng.vec(experts * inter * d, -0.2, 0.2);
            let mut down = rng.vec(experts * d * inter, -0.2, 0.2);
            if dtype == DType::F16 {
                for v in gate.iter_mut().chain(upw.iter_mut()).chain(down.iter_mut()) {
                    *v = half::f16::from_f32(*v).to_f32();
                }
            }
            let so = rng.vec(t * d, -1.0, 1.0);
            let sg = rng.vec(t, -2.0, 2.0);
            let bias = rng.vec(experts, -0.1, 0.1);
            let up = |h: &[f32], shape: &[usize], dt: DType| Tensor::from_f32(dev, shape, h, dt).unwrap();
            let xt = up(&x, &[t, d], DType::F32);
            let rt = up(&router, &[experts, d], DType::F32);
            let gt = up(&gate, &[experts, inter, d], dtype);
            let ut = up(&upw, &[experts, inter, d], dtype);
            let dnt = up(&down, &[experts, d, inter], dtype);
            let (sot, sgt) = (up(&so, &[t, d], DType::F32), up(&sg, &[t, 1], DType::F32));
            let bt = up(&bias, &[experts], DType::F32);
            let sigmoid = matches!(scoring, Scoring::Sigmoid { .. });
            let logits = Tensor::empty(dev, &[t, experts], DType::F32).unwrap();
            let route = Tensor::empty(dev, &[t, 2 * k], DType::F32).unwrap();
            let h = Tensor::empty(dev, &[t, k * inter], DType::F32).unwrap();
            let y = Tensor::empty(dev, &[t, d], DType::F32).unwrap();
            let mut rec = Recorder::new(dev);
            linseq::ops::matmul::linear(&mut rec, &xt, &rt, None, &logits).unwrap();
            moe::route(&mut rec, m, &logits, (scoring, norm_topk), sigmoid.then_some(&bt), &route).unwrap();
            moe::experts_up(&mut rec, m, &xt, Routed { weight: &gt, route: &route }, &ut, &h).unwrap();
            let sh = shared.map(|gated| Shared { out: &sot, gate: gated.then_some(&sgt) });
            moe::experts_down(&mut rec, m, &h, Routed { weight: &dnt, route: &route }, sh, false, &y)
                .unwrap();
            rec.run().unwrap();
            let want = moe::moe_ref(&MoeRef {
                m,
                x: &x,
                router: &router,
                gate: &gate,
                up: &upw,
                down: &down,
                norm_topk,
                scoring,
                bias: &bias,
                shared: shared.map(|gated| (so.as_slice(), gated.then_some(sg.as_slice()))),
            });
            let got = y.read_f32(dev).unwrap();
            let c = compare(&got, &want);
            assert!(
                c.nonfinite_mismatches == 0 && c.nmse < 1e-10 && c.max_abs < 1e-4,
                "[{}] moe {m:?} T={t}: {c:?}",
                dev.describe()
            );
            // The routing's weights sum to 1 (times the routed scale) when renormalised.
            let r = route.read_f32(dev).unwrap();
            let scale = if let Scoring::Sigmoid { scale } = scoring { scale } else { 1.0 };
            if norm_topk {
                for row in r.chunks(2 * k) {
                    let s: f32 = row[k..].iter().sum();
                    assert!((s - scale).abs() < 1e-5 * scale, "{row:?}");
                }
            }
        }
    }
}

#[test]
fn bad_moe_calls_are_clear_errors() {
    let dev = &devices()[0];
    let m = MoeDims { experts: 8, k: 2, d: 16, inter: 8 };
    let e = |shape: &[usize]| Tensor::empty(dev, shape, DType::F32).unwrap();
    let (logits, route, x, h) = (e(&[3, 8]), e(&[3, 4]), e(&[3, 16]), e(&[3, 16]));
    let (gu, dn) = (e(&[8, 8, 16]), e(&[8, 16, 8]));
    let gu16 = Tensor::empty(dev, &[8, 8, 16], DType::F16).unwrap();
    let mut rec = Recorder::new(dev);
    for (bad, want) in [
        (MoeDims { k: 9, ..m }, "experts"),
        (MoeDims { experts: 2000, ..m }, "at most"),
        (MoeDims { inter: 0, ..m }, "intermediate"),
    ] {
        let err = moe::route(&mut rec, bad, &logits, (Scoring::Softmax, true), None, &route).unwrap_err();
        assert!(err.to_string().contains(want), "{bad:?}: {err}");
    }
    let sig = (Scoring::Sigmoid { scale: 1.0 }, true);
    let err = moe::route(&mut rec, m, &logits, sig, None, &route).unwrap_err();
    assert!(err.to_string().contains("bias"), "{err}");
    let err = moe::experts_up(&mut rec, m, &x, Routed { weight: &dn, route: &route }, &gu, &h).unwrap_err();
    assert!(err.to_string().contains("gate"), "{err}");
    let err = moe::experts_up(&mut rec, m, &x, Routed { weight: &gu, route: &route }, &dn, &h).unwrap_err();
    assert!(err.to_string().contains("up"), "{err}");
    let err = moe::experts_up(&mut rec, m, &x, Routed { weight: &gu, route: &route }, &gu16, &h).unwrap_err();
    assert!(err.to_string().contains("dtype"), "{err}");
    let err = moe::experts_down(&mut rec, m, &h, Routed { weight: &gu, route: &route }, None, false, &x)
        .unwrap_err();
    assert!(err.to_string().contains("down"), "{err}");
    assert!(rec.is_empty());
}

#[test]
fn the_moe_nodes_match_the_graph_reference() {
    use linseq::graph::nodes::{MoeDownNode, MoeRouteNode, MoeUpNode};
    use linseq::graph::{reference, Executable, Graph, PlanOptions};
    use std::collections::HashMap;
    // Routing, the experts' up and down projections and the residual add as graph nodes, both
    // scorings, with and without a gated shared expert, against the nodes' f64 references.
    let m = MoeDims { experts: 8, k: 2, d: 32, inter: 16 };
    for dev in devices() {
        let mut rng = Rng::new(93);
        for (scoring, shared) in
            [(Scoring::Softmax, Some(true)), (Scoring::Sigmoid { scale: 2.0 }, Some(false))]
        {
            let t = 6;
            let sigmoid = matches!(scoring, Scoring::Sigmoid { .. });
            let mut g = Graph::new();
            let logits = g.input("logits", &[t, m.experts], DType::F32);
            let x = g.input("x", &[t, m.d], DType::F32);
            let gate = g.input("gate", &[m.experts, m.inter, m.d], DType::F32);
            let upw = g.input("up", &[m.experts, m.inter, m.d], DType::F32);
            let down = g.input("down", &[m.experts, m.d, m.inter], DType::F32);
            let so = g.input("shared_out", &[t, m.d], DType::F32);
            let sg = g.input("shared_gate", &[t, 1], DType::F32);
            let r = g.input("residual", &[t, m.d], DType::F32);
            let mut rins = vec![logits];
            if sigmoid {
                rins.push(g.input("bias", &[m.experts], DType::F32));
            }
            let route = g.op(MoeRouteNode { dims: m, scoring, norm_topk: true }, &rins).unwrap();
            let h = g.op(MoeUpNode { dims: m }, &[x, gate, upw, route]).unwrap();
            let mut dins = vec![h, down, route, so];
            if shared == Some(true) {
                dins.push(sg);
            }
            dins.push(r);
            let y = g.op(MoeDownNode { dims: m, shared }, &dins).unwrap();
            g.output(y);
            let mut host = HashMap::new();
            for (name, n) in [
                ("logits", t * m.experts),
                ("x", t * m.d),
                ("gate", m.experts * m.inter * m.d),
                ("up", m.experts * m.inter * m.d),
                ("down", m.experts * m.d * m.inter),
                ("shared_out", t * m.d),
                ("shared_gate", t),
                ("residual", t * m.d),
                ("bias", m.experts),
            ] {
                host.insert(name.to_string(), rng.vec(n, -1.0, 1.0));
            }
            let exe = Executable::new(dev, g.clone(), &PlanOptions::for_device(dev.caps())).unwrap();
            for name in ["logits", "x", "gate", "up", "down", "shared_out", "shared_gate", "residual"] {
                exe.write_f32(name, &host[name]).unwrap();
            }
            if sigmoid {
                exe.write_f32("bias", &host["bias"]).unwrap();
            }
            exe.run().unwrap();
            let got = exe.read_output::<f32>(y).unwrap();
            let want = reference::evaluate(&g, &host).unwrap();
            let c = compare(&got, &want[y.0]);
            assert!(
                c.nonfinite_mismatches == 0 && c.nmse < 1e-10 && c.max_abs < 1e-4,
                "[{}] moe nodes {scoring:?} shared {shared:?}: {c:?}",
                dev.describe()
            );
        }
    }
}
