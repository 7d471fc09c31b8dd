//! Benchmarks of the scan ops: the selective scan (Mamba) and SSD (Mamba-2), prefill variants
//! and decode steps. Each prefill row is checked against the f64 reference.

use super::{copy_roofline, measure, row, BenchConfig, BenchRow, Variants, Work};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::selective_scan::{self as ss, ScanArgs, ScanFlags, ScanKernel, ScanRef, Sequences};
use crate::ops::ssd::cases::{SsdCase, SsdInputs, MAMBA2_DIMS};
use crate::ops::ssd::{self as sd, SsdArgs, SsdDims, SsdFlags, SsdKernel};
use crate::ops::Recorder;
use crate::tensor::{DType, Tensor};
use crate::testing::{compare, Rng};

use crate::ops::selective_scan::cases::{ScanCase, SCAN_N};

/// Every selective-scan kernel on each case, after the copy roofline.
pub fn selective_scan(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    cases: &[ScanCase],
) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    for case in cases {
        rows.extend(selective_scan_case(dev, cfg, variants, *case, roof, None)?);
    }
    Ok(rows)
}

/// The kernels of one case. Channel rows repeat one random row per tensor (timing does not
/// depend on the values; the agreement check recomputes two channels in f64). A case whose
/// `[T, D]` tensors exceed the binding limit is reported and skipped (no rows). With
/// `skip_slower_than`, kernels are skipped for which `skip(kernel)` says so (the scaling
/// report drops kernels that got too slow at a shorter length).
pub fn selective_scan_case(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    case: ScanCase,
    roof: f64,
    skip: Option<&dyn Fn(&str) -> bool>,
) -> Result<Vec<BenchRow>> {
    let ScanCase { batch, dim, len } = case;
    let n = SCAN_N;
    let label = case.label();
    let t = batch * len;
    let max_bind = dev.caps().max_storage_buffer_binding_size.min(dev.caps().max_buffer_size);
    if (dim * t * 4) as u64 > max_bind {
        eprintln!(
            "selective-scan {label}: [T, D] tensors need {} MiB, over this device's {} MiB binding limit; skipped",
            (dim * t * 4) >> 20,
            max_bind >> 20
        );
        return Ok(Vec::new());
    }
    let flags = ScanFlags {
        delta_softplus: true,
        delta_bias: true,
        d_skip: true,
        neg_eigen: false,
        init_state: false,
    };
    let mut rng = Rng::new(11);
    let row_u = rng.vec(t, -1.0, 1.0);
    let row_dt = rng.vec(t, -3.0, 1.0);
    let row_z = rng.vec(t, -2.0, 2.0);
    let bc_host = rng.vec(2 * n * t, -1.0, 1.0);
    let tile = |row: &[f32]| -> Result<Tensor> {
        // Token-major: every channel of token t holds row[t].
        let v: Vec<f32> = row.iter().flat_map(|&x| std::iter::repeat_n(x, dim)).collect();
        Tensor::from_slice(dev, &[t, dim], &v)
    };
    let u = tile(&row_u)?;
    let delta = tile(&row_dt)?;
    let z = tile(&row_z)?;
    let bc = Tensor::from_slice(dev, &[t, 2, 1, n], &bc_host)?;
    let a: Vec<f32> = rng.vec(dim * n, -2.0, -0.1);
    let dsk = rng.vec(dim, -1.0, 1.0);
    let bias = rng.vec(dim, -1.0, 0.5);
    let chan_host = ss::pack_channel_params(&a, Some(&dsk), Some(&bias), dim, n);
    let chan = Tensor::from_slice(dev, &[dim, n + 2], &chan_host)?;
    let seqs = Sequences::new(dev, &vec![len; batch], None)?;
    let state = Tensor::empty(dev, &[batch, dim, n], DType::F32)?;
    let y = Tensor::empty(dev, &[t, dim], DType::F32)?;
    let args = ScanArgs {
        u: &u,
        delta: &delta,
        bc: &bc,
        z: Some(&z),
        chan: &chan,
        seqs: &seqs,
        state: &state,
        groups: 1,
        flags,
    };
    // Bytes: each input and output once. FLOPs per state update: dt·A, exp, dt·u·B, the state
    // FMA (2) and the C FMA (2).
    let bytes = (4 * dim * t * 4 + 2 * n * t * 4 + batch * dim * n * 4 + chan_host.len() * 4) as f64;
    let flops = (7 * dim * t * n) as f64;
    let mut rows = Vec::new();
    for kernel in ScanKernel::ALL {
        let v = kernel.variant();
        if !kernel.runs(dev.caps(), case.shape())
            || !variants.matches(&v.name)
            || skip.is_some_and(|f| f(&v.name))
        {
            continue;
        }
        let mut rec = Recorder::new(dev);
        ss::selective_scan(&mut rec, kernel, &args, &y)?;
        let stats = measure(&rec.finish(), 1, cfg)?;
        let got = y.read::<f32>(dev)?;
        let mut ok = true;
        for d in [0, dim - 1] {
            let (want, _) = ss::selective_scan_ref(&ScanRef {
                u: &row_u,
                delta: &row_dt,
                bc: &bc_host,
                z: Some(&row_z),
                chan: &chan_host[d * (n + 2)..(d + 1) * (n + 2)],
                cu: seqs.cu_seqlens(),
                resets: None,
                state: &vec![0.0; batch * n],
                dim: 1,
                n,
                groups: 1,
                flags,
            });
            let col: Vec<f32> = (0..t).map(|i| got[i * dim + d]).collect();
            let c = compare(&col, &want);
            ok &= c.nonfinite_mismatches == 0 && c.nmse <= 1e-7;
        }
        rows.push(row("scan", &v.name, label.clone(), stats, Work { bytes, flops }, roof, Some(ok)));
    }
    // The ceiling probes: the same loads, stores and exps with the recurrence cut (no
    // agreement to check: they compute something else on purpose).
    for probe in ss::CeilingProbe::ALL {
        let name = probe.variant().name;
        if !variants.matches(&name) || skip.is_some() || !dim.is_multiple_of(64) {
            continue;
        }
        let mut rec = Recorder::new(dev);
        ss::ceiling_probe(&mut rec, &args, &y, probe)?;
        let stats = measure(&rec.finish(), 1, cfg)?;
        // The compute-only probe moves no bytes; its %copy is that of the scan's bytes in its time.
        rows.push(row("scan-probe", &name, label.clone(), stats, Work { bytes, flops }, roof, None));
    }
    Ok(rows)
}

/// The selective-scan decode step: one token for each of 64 sequences (2 on --quick), d ∈
/// {1536, 2048, 5120}.
pub fn selective_scan_step(dev: &Device, cfg: BenchConfig, variants: &Variants) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let n = SCAN_N;
    let (s, dims) = if cfg.quick { (2, vec![64]) } else { (64, vec![1536, 2048, 5120]) };
    if !variants.matches("selective_scan.step") {
        return Ok(rows);
    }
    let flags = ScanFlags {
        delta_softplus: true,
        delta_bias: true,
        d_skip: true,
        neg_eigen: false,
        init_state: false,
    };
    for dim in dims {
        let shape = format!("S={s} d={dim} N={n}");
        let mk = |shape: &[usize]| Tensor::from_slice(dev, shape, &vec![0.5f32; shape.iter().product()]);
        let (u, delta, z, y) = (mk(&[s, dim])?, mk(&[s, dim])?, mk(&[s, dim])?, mk(&[s, dim])?);
        let bc = mk(&[s, 2, 1, n])?;
        let chan = Tensor::from_slice(
            dev,
            &[dim, n + 2],
            &ss::pack_channel_params(&vec![-1.0; dim * n], None, None, dim, n),
        )?;
        let state = mk(&[s, dim, n])?;
        let seqs = Sequences::decode(dev, s, None)?;
        let args = ScanArgs {
            u: &u,
            delta: &delta,
            bc: &bc,
            z: Some(&z),
            chan: &chan,
            seqs: &seqs,
            state: &state,
            groups: 1,
            flags,
        };
        let inner = if cfg.quick { 2 } else { 100 };
        let mut rec = Recorder::new(dev);
        for _ in 0..inner {
            ss::selective_scan_step(&mut rec, &args, &y)?;
        }
        let stats = measure(&rec.finish(), inner, cfg)?;
        let bytes = (4 * dim * s * 4 + 2 * n * s * 4 + 2 * s * dim * n * 4) as f64;
        let flops = (7 * dim * s * n) as f64;
        rows.push(row("scan-step", "selective_scan.step", shape, stats, Work { bytes, flops }, roof, None));
    }
    Ok(rows)
}

/// Every SSD kernel on each case, after the copy roofline; with `stages`, chunk 64's four
/// dispatches are also timed alone. Agreement: the first sequence against the f64 recurrence
/// (relative RMSE ≤ 1e-3).
pub fn ssd(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    cases: &[SsdCase],
    stages: bool,
) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let mut rng = Rng::new(21);
    for case in cases {
        let (batch, l, d, flags) = (case.batch(), case.len(), case.dims, case.flags);
        let shape = case.label();
        let t = case.tokens();
        let host = SsdInputs::random(&mut rng, case);
        let (xbc_host, dt_host, heads_host) = (&host.xbc, &host.dt, &host.heads);
        let xbc = Tensor::from_slice(dev, &[t, d.width()], xbc_host)?;
        let dt = Tensor::from_slice(dev, &[t, d.heads], dt_host)?;
        // f16 inputs for the chunk-64 kernels (the tensor-core kernel takes only these).
        let xbc16 = Tensor::from_f32(dev, &[t, d.width()], xbc_host, DType::F16)?;
        let dt16 = Tensor::from_f32(dev, &[t, d.heads], dt_host, DType::F16)?;
        let heads = Tensor::from_slice(dev, &[d.heads, 4], heads_host)?;
        let seqs = Sequences::new(dev, &case.lens, case.resets.as_deref())?;
        let state = Tensor::empty(dev, &[batch, d.heads, d.head_dim, d.n], DType::F32)?;
        let y = Tensor::empty(dev, &[t, d.heads * d.head_dim], DType::F32)?;
        let args = SsdArgs { xbc: &xbc, dt: &dt, heads: &heads, seqs: &seqs, state: &state, dims: d, flags };
        let args16 = SsdArgs { xbc: &xbc16, dt: &dt16, ..args };
        let hp = d.heads * d.head_dim;
        let state_bytes = batch * hp * d.n * 4;
        let bytes = ((t * d.width() + t * d.heads + t * hp) * 4 + state_bytes) as f64;
        let bytes16 = ((t * d.width() + t * d.heads) * 2 + t * hp * 4 + state_bytes) as f64;
        // The first sequence's f64 reference, once per shape.
        let want = host.reference(case, &[0, l]).0;
        // (kernel, f16 inputs): every kernel with f32 inputs, chunk 64 and the tensor-core
        // kernel with f16 inputs where they run.
        let mut runs: Vec<(SsdKernel, bool)> = SsdKernel::ALL.iter().map(|&k| (k, false)).collect();
        runs.extend([(SsdKernel::Chunked(64), true), (SsdKernel::Coop64Fused, true)]);
        runs.retain(|&(k, f16)| k.runs(dev.caps(), if f16 { DType::F16 } else { DType::F32 }));
        for (kernel, f16) in runs {
            let name = if f16 { format!("{}.f16", kernel.name()) } else { kernel.name() };
            if !variants.matches(&name) {
                continue;
            }
            let mut rec = Recorder::new(dev);
            match sd::ssd(&mut rec, kernel, if f16 { &args16 } else { &args }, &y) {
                Err(Error::Limit(why)) => {
                    eprintln!("{name} {shape}: skipped, {why}");
                    continue;
                }
                r => r?,
            }
            let stats = measure(&rec.finish(), 1, cfg)?;
            let got = y.read::<f32>(dev)?;
            let c = compare(&got[..l * hp], &want);
            // Relative RMSE against the f32-input reference: 1e-3, 5e-3 with f16 inputs.
            let ok = c.nonfinite_mismatches == 0 && c.nmse.sqrt() <= if f16 { 5e-3 } else { 1e-3 };
            // FLOPs per token and head (multiply-add = 2): the state update and readout
            // (4·P·N), plus the chunked form's intra-chunk C·Bᵀ and its product with X.
            let per_token = match kernel.chunk() {
                None => 4 * d.head_dim * d.n,
                Some(cs) => 4 * d.head_dim * d.n + cs * (d.n + d.head_dim),
            };
            let flops = (t * d.heads * per_token) as f64;
            let work = Work { bytes: if f16 { bytes16 } else { bytes }, flops };
            rows.push(row("ssd", &name, shape.clone(), stats, work, roof, Some(ok)));
            if stages && kernel.chunk() == Some(64) {
                for stage in sd::Stage::ALL {
                    let mut rec = Recorder::new(dev);
                    sd::record_stages(&mut rec, if f16 { &args16 } else { &args }, &y, kernel, &[stage])?;
                    if rec.is_empty() {
                        continue; // a stage the kernel folds into another
                    }
                    let stats = measure(&rec.finish(), 1, cfg)?;
                    rows.push(row(
                        "ssd-stage",
                        &format!("{name}/{}", stage.name()),
                        shape.clone(),
                        stats,
                        Work { bytes: 0.0, flops: 0.0 },
                        roof,
                        None,
                    ));
                }
            }
        }
    }
    Ok(rows)
}

/// The SSD decode step on Mamba-2-130M's layer shape at batch 1 and 64.
pub fn ssd_step(dev: &Device, cfg: BenchConfig, variants: &Variants) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    if !variants.matches("ssd.step") {
        return Ok(rows);
    }
    let d = if cfg.quick { SsdDims { heads: 4, head_dim: 16, groups: 1, n: 16 } } else { MAMBA2_DIMS };
    let flags = SsdFlags::default();
    for s in [1usize, 64] {
        let shape = format!("S={s} H={} P={} N={}", d.heads, d.head_dim, d.n);
        let mk = |shape: &[usize]| Tensor::from_slice(dev, shape, &vec![0.25f32; shape.iter().product()]);
        let (xbc, dt, y) = (mk(&[s, d.width()])?, mk(&[s, d.heads])?, mk(&[s, d.heads * d.head_dim])?);
        let heads =
            Tensor::from_slice(dev, &[d.heads, 4], &sd::pack_head_params(&vec![-1.0; d.heads], None, None))?;
        let state = mk(&[s, d.heads, d.head_dim, d.n])?;
        let seqs = Sequences::decode(dev, s, None)?;
        let args = SsdArgs { xbc: &xbc, dt: &dt, heads: &heads, seqs: &seqs, state: &state, dims: d, flags };
        let inner = if cfg.quick { 2 } else { 100 };
        let mut rec = Recorder::new(dev);
        for _ in 0..inner {
            sd::ssd_step(&mut rec, &args, &y)?;
        }
        let stats = measure(&rec.finish(), inner, cfg)?;
        let bytes = ((s * (d.width() + d.heads + d.heads * d.head_dim) + 2 * s * d.heads * d.head_dim * d.n)
            * 4) as f64;
        let flops = (s * d.heads * 4 * d.head_dim * d.n) as f64;
        rows.push(row("ssd-step", "ssd.step", shape, stats, Work { bytes, flops }, roof, None));
    }
    Ok(rows)
}

/// The scaling report's runs: every matching selective-scan kernel at batch `batch`, `dim`
/// channels, L = 1K, 2K, … up to `max_len` (or the binding limit). A kernel whose median
/// passed `budget_s` at one length is not run at longer ones.
pub fn selective_scan_scaling(
    dev: &Device,
    cfg: BenchConfig,
    variants: &Variants,
    batch: usize,
    dim: usize,
    max_len: usize,
    budget_s: f64,
) -> Result<Vec<BenchRow>> {
    let copy = copy_roofline(dev, cfg)?;
    let roof = copy.gb_per_s;
    let mut rows = vec![copy];
    let mut too_slow: Vec<String> = Vec::new();
    let max_bind = dev.caps().max_storage_buffer_binding_size.min(dev.caps().max_buffer_size);
    let mut len = 1024;
    while len <= max_len {
        if (dim * batch * len * 4) as u64 > max_bind {
            eprintln!(
                "scaling: L = {len} and beyond exceed the {} MiB binding limit at d = {dim}",
                max_bind >> 20
            );
            break;
        }
        let case = ScanCase { batch, dim, len };
        let slow = too_slow.clone();
        let skip = move |name: &str| slow.iter().any(|s| s == name);
        let got = selective_scan_case(dev, cfg, variants, case, roof, Some(&skip))?;
        if got.is_empty() {
            break; // every kernel is over its time budget
        }
        for r in &got {
            if r.stats.median > budget_s {
                eprintln!(
                    "{} took {:.3} s at L = {len}: not run at longer lengths",
                    r.variant, r.stats.median
                );
                too_slow.push(r.variant.clone());
            }
        }
        rows.extend(got);
        len *= 2;
    }
    Ok(rows)
}
