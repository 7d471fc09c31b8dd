//! S4 benchmarks (`linseq bench s4`): kernel generation against N and L, the FFT convolution
//! against the copy roofline, the direct/FFT crossover, and the convolution-mode layer (kernel
//! generation + FFT convolution + D, what the module's FFTConv computes) from 1K to
//! `max_len`. PyTorch on the same shapes is `tools/peer_s4.py`.

use super::{copy_roofline, measure, row, BenchConfig, BenchRow, Variants, Work};
use crate::device::Device;
use crate::error::Result;
use crate::ops::s4::kernels::{self as s4k, ConvMethod, Sum};
use crate::ops::s4::layer::{Mode, Prepared};
use crate::ops::s4::{cases, Discretization};
use crate::ops::{Recorder, Recording};
use crate::tensor::{DType, Tensor};
use crate::testing::{compare, Rng};

/// The device inputs of one layer's kernel generation.
struct KernelInputs {
    terms: Tensor,
    theta: Option<Tensor>,
    spec: Option<Tensor>,
}

fn kernel_inputs(dev: &Device, prep: &Prepared, l: usize) -> Result<KernelInputs> {
    let (h, n) = (prep.ssm.h, prep.ssm.n);
    Ok(match prep.ssm.mode {
        Mode::Diag(_) => {
            let t = prep.vandermonde_terms()?;
            KernelInputs {
                terms: Tensor::from_slice(dev, &[h * n, 4], &t.terms)?,
                theta: Some(Tensor::from_slice(dev, &[h * n, 2], &t.theta)?),
                spec: None,
            }
        }
        Mode::Dplr => KernelInputs {
            terms: Tensor::from_slice(dev, &[h * n, 5, 2], &prep.cauchy_terms(s4k::cauchy_length(l))?)?,
            theta: None,
            spec: Some(Tensor::empty(dev, &s4k::cauchy_scratch(h, l), DType::F32)?),
        },
    })
}

fn record_kernel(rec: &mut Recorder, inp: &KernelInputs, n: usize, k: &Tensor, sum: Sum) -> Result<()> {
    match (&inp.theta, &inp.spec) {
        (Some(theta), _) => s4k::vandermonde_with(rec, &inp.terms, theta, n, k, 0, sum),
        (None, Some(spec)) => s4k::cauchy_with(rec, &inp.terms, n, spec, k, 0, sum),
        _ => unreachable!("kernel inputs hold terms for one generator"),
    }
}

fn layer(rng: &mut Rng, dplr: bool, h: usize, n: usize) -> Result<Prepared> {
    if dplr { cases::s4_layer(rng, h, n)? } else { cases::s4d_layer(rng, h, n, Discretization::Zoh)? }
        .prepare()
}

fn name(dplr: bool, sum: Sum) -> String {
    let base = if dplr { "s4.cauchy" } else { "s4.vandermonde" };
    match sum {
        Sum::PerOutput => base.to_string(),
        Sum::Subgroup => format!("{base}.sg"),
        Sum::Staged => format!("{base}.staged"),
    }
}

/// The fused FFT, the separate-pass FFT and the direct convolution of one sequence of `l`
/// tokens over `h` channels (the direct one up to 4096 tokens), each checked on its first 64
/// tokens against f64.
pub fn conv_case(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    rng: &mut Rng,
    h: usize,
    l: usize,
    roof: f64,
) -> Result<Vec<BenchRow>> {
    let uh = rng.vec(l * h, -1.0, 1.0);
    let u = Tensor::from_slice(dev, &[l, h], &uh)?;
    let kv: Vec<f32> =
        (0..h * l).map(|i| rng.uniform(-1.0, 1.0) * (-((i % l) as f32) / 200.0).exp()).collect();
    let k = Tensor::from_slice(dev, &[h, l], &kv)?;
    let dh = rng.vec(h, -1.0, 1.0);
    let d = Tensor::from_slice(dev, &[h], &dh)?;
    let segs = [0, l];
    // f64 on the first 64 tokens (the sums reach back only to the segment's start).
    let m = l.min(64);
    let k64: Vec<f64> = (0..h).flat_map(|c| kv[c * l..c * l + m].iter().map(|&v| v as f64)).collect();
    let d64: Vec<f64> = dh.iter().map(|&v| v as f64).collect();
    let want = crate::ops::s4::layer::conv_ref(&uh[..m * h], &[0, m], &k64, m, &d64);
    let mut rows = Vec::new();
    let methods = [
        (ConvMethod::Fft, "s4.conv.fft"),
        (ConvMethod::FftPasses, "s4.conv.fft.passes"),
        (ConvMethod::Direct, "s4.conv.direct"),
    ];
    for (method, v) in methods {
        if !variants.matches(v) || (method == ConvMethod::Direct && l > 4096) {
            continue;
        }
        let y = Tensor::empty(dev, &[l, h], DType::F32)?;
        let scratch: Vec<Tensor> = s4k::conv_scratch(&segs, h, method)
            .into_iter()
            .map(|n| Tensor::empty(dev, &[n], DType::F32))
            .collect::<Result<_>>()?;
        let mut rec = Recorder::new(dev);
        s4k::conv(&mut rec, &u, &segs, &k, &d, method, scratch.first(), &y)?;
        let rec = rec.finish();
        rec.run()?;
        let got = y.read::<f32>(dev)?;
        let ok = compare(&got[..m * h], &want).nmse < 1e-8;
        let stats = measure(&rec, 1, cfg)?;
        let bytes = ((2 * l * h + h * l + h) * 4) as f64;
        let flops = if method == ConvMethod::Direct { (l * (l + 1) * h) as f64 } else { 0.0 };
        rows.push(row(
            "s4-conv",
            v,
            format!("B=1 H={h} L={l}"),
            stats,
            Work { bytes, flops },
            roof,
            Some(ok),
        ));
    }
    Ok(rows)
}

/// Every part, in order; `max_len` bounds the layer's scaling run.
pub fn s4(dev: &Device, cfg: BenchConfig, variants: &Variants, max_len: usize) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let mut rng = Rng::new(18);
    // 1. Kernel generation against N (d_state) and L. S4's host side raises Ā to the length
    // in f64 (R³ per squaring), so its N = 256 case takes 16 channels.
    let gens: &[(bool, usize, usize)] = if cfg.quick {
        &[(false, 64, 16), (true, 64, 16)]
    } else {
        &[(false, 64, 256), (false, 256, 256), (true, 64, 256), (true, 256, 16)]
    };
    let lens: &[usize] = if cfg.quick { &[256] } else { &[1024, 16384, 65536] };
    let sums: &[Sum] = if dev.caps().subgroups {
        &[Sum::PerOutput, Sum::Subgroup, Sum::Staged]
    } else {
        &[Sum::PerOutput, Sum::Staged]
    };
    for (&(dplr, d_state, h), &sum) in gens.iter().flat_map(|g| sums.iter().map(move |s| (g, s))) {
        if !variants.matches(&name(dplr, sum)) {
            continue;
        }
        let prep = layer(&mut rng, dplr, h, d_state / 2)?;
        let want = prep.kernel_ref(64);
        for &l in lens {
            let inp = kernel_inputs(dev, &prep, l)?;
            let k = Tensor::empty(dev, &[h, l], DType::F32)?;
            let mut rec = Recorder::new(dev);
            record_kernel(&mut rec, &inp, d_state / 2, &k, sum)?;
            let rec = rec.finish();
            rec.run()?;
            let got = k.read::<f32>(dev)?;
            let first: Vec<f32> = (0..h).flat_map(|c| got[c * l..c * l + 64.min(l)].to_vec()).collect();
            let want: Vec<f64> = (0..h).flat_map(|c| want[c * 64..c * 64 + 64.min(l)].to_vec()).collect();
            let ok = compare(&first, &want).nmse < 1e-8;
            let stats = measure(&rec, 1, cfg)?;
            // Per (channel, l, state): a complex exp and multiply-add (Vandermonde), or four
            // Cauchy terms and their conjugates at half the bins (Cauchy).
            let flops = (h * l * d_state / 2) as f64 * if dplr { 40.0 } else { 12.0 };
            let shape = format!("H={h} N={d_state} L={l}");
            let work = Work { bytes: (h * l * 4) as f64, flops };
            rows.push(row("s4-kernel", &name(dplr, sum), shape, stats, work, roof, Some(ok)));
        }
    }
    // 2. The convolution, by FFT and directly, against L (the crossover), then the FFT form
    // at H = 1024, L = 64K against the copy roofline.
    let h = if cfg.quick { 64 } else { 1024 };
    let conv_lens: &[usize] =
        if cfg.quick { &[16, 64, 256] } else { &[16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384, 65536] };
    for &l in conv_lens {
        rows.extend(conv_case(dev, cfg, variants, &mut rng, h, l, roof)?);
    }
    // 3. The convolution-mode layer (kernel generation + FFT convolution + D) from 1K to
    // max_len: S4D and S4 with d_state 64 over 128 channels.
    let h = if cfg.quick { 16 } else { 128 };
    for dplr in [false, true] {
        let v = if dplr { "s4.layer.dplr" } else { "s4.layer.diag" };
        if !variants.matches(v) {
            continue;
        }
        let prep = layer(&mut rng, dplr, h, 32)?;
        let mut l = 1024;
        while l <= max_len {
            let inp = kernel_inputs(dev, &prep, l)?;
            let k = Tensor::empty(dev, &[h, l], DType::F32)?;
            let u = Tensor::from_slice(dev, &[l, h], &rng.vec(l * h, -1.0, 1.0))?;
            let d = Tensor::from_slice(dev, &[h], &rng.vec(h, -1.0, 1.0))?;
            let y = Tensor::empty(dev, &[l, h], DType::F32)?;
            let segs = [0, l];
            let data = Tensor::empty(dev, &s4k::conv_scratch(&segs, h, ConvMethod::Fft), DType::F32)?;
            let mut rec = Recorder::new(dev);
            record_kernel(&mut rec, &inp, 32, &k, Sum::choose(dev.caps()))?;
            s4k::conv(&mut rec, &u, &segs, &k, &d, ConvMethod::Fft, Some(&data), &y)?;
            let rec: Recording = rec.finish();
            let stats = measure(&rec, 1, cfg)?;
            let work = Work { bytes: ((2 * l * h) * 4) as f64, flops: 0.0 };
            rows.push(row("s4-layer", v, format!("B=1 H={h} N=64 L={l}"), stats, work, roof, None));
            l *= 2;
        }
    }
    Ok(rows)
}
