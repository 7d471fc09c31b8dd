//! Host-side costs: shader preprocessing and naga validation, pipeline-cache hits, recording
//! dispatches (uniform upload + bind group per dispatch) into a Recorder, and graph planning.
//! GPU time is measured by `linseq bench`, not here.

use criterion::{criterion_group, criterion_main, Criterion};
use linseq::ops as shader;
use linseq::ops::{elementwise, Recorder};
use linseq::shader::validate;
use linseq::{DType, Device, Tensor};
use std::hint::black_box;

fn shader_costs(c: &mut Criterion) {
    let v = shader::find("matmul.gemm.t128.f32").expect("variant");
    c.bench_function("shader/preprocess gemm.t128", |b| b.iter(|| black_box(v.wgsl().unwrap())));
    let wgsl = v.wgsl().unwrap();
    c.bench_function("shader/naga parse+validate gemm.t128", |b| {
        b.iter(|| black_box(validate::parse_and_validate(&wgsl, v.requires).unwrap()))
    });
}

fn recording_costs(c: &mut Criterion) {
    let dev = Device::new().unwrap_or_else(|e| panic!("{e}"));
    let v = shader::find("elementwise.exp").unwrap();
    v.pipeline(&dev).unwrap();
    c.bench_function("pipeline cache hit", |b| b.iter(|| black_box(v.pipeline(&dev).unwrap())));
    let a = Tensor::empty(&dev, &[4096], DType::F32).unwrap();
    let o = Tensor::empty(&dev, &[4096], DType::F32).unwrap();
    c.bench_function("record 64 dispatches (params + bind group each)", |b| {
        b.iter(|| {
            let mut rec = Recorder::new(&dev);
            for _ in 0..64 {
                elementwise::unary(&mut rec, elementwise::Unary::Exp, &a, 1.0, &o).unwrap();
            }
            black_box(rec.len())
        })
    });
}

fn graph_costs(c: &mut Criterion) {
    use linseq::graph::synthetic::{mamba_stack, SyntheticConfig};
    use linseq::graph::{plan, PlanOptions};
    let (g, _) = mamba_stack(&SyntheticConfig::mamba(24, 768, 4096, 4)).unwrap();
    c.bench_function("plan 24-layer synthetic Mamba stack (217 nodes)", |b| {
        b.iter(|| black_box(plan(&g, &PlanOptions::offline()).unwrap().report))
    });
}

/// Per decode step: the CPU cost of encoding and submitting a recorded graph (its bind groups
/// and parameter buffers were made once, at record time), and that one-time cost itself.
fn decode_step_costs(c: &mut Criterion) {
    use linseq::graph::synthetic::{mamba_stack, MixerKind, SyntheticConfig};
    use linseq::graph::{Executable, PlanOptions};
    let dev = Device::new().unwrap_or_else(|e| panic!("{e}"));
    // Small: on lavapipe the GPU side of each step runs on the same CPU, so keep it short.
    let cfg = SyntheticConfig { mixer: MixerKind::GateOnly, ..SyntheticConfig::mamba(24, 64, 1, 1) };
    let (mut g, hidden) = mamba_stack(&cfg).unwrap();
    g.output(hidden);
    let opts = PlanOptions::for_device(dev.caps());
    let mut c = c.benchmark_group("decode");
    c.sample_size(10);
    c.bench_function("graph: plan + allocate + record bind groups (24 layers)", |b| {
        b.iter(|| black_box(Executable::new(&dev, g.clone(), &opts).unwrap().dispatches()))
    });
    let exe = Executable::new(&dev, g.clone(), &opts).unwrap();
    let name = format!("step: encode + submit a recorded graph ({} dispatches)", exe.dispatches());
    c.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let t0 = std::time::Instant::now();
                exe.submit().unwrap();
                total += t0.elapsed();
                dev.wait().unwrap(); // GPU time is not the CPU's cost
            }
            total
        })
    });
}

criterion_group!(benches, shader_costs, recording_costs, graph_costs, decode_step_costs);
criterion_main!(benches);
