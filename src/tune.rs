//! Autotuning: for each op and shape bucket, the fastest variant that agrees with the f64
//! reference on this adapter, persisted with [`crate::tuning`]. This module runs benchmarks,
//! so it sits above [`crate::bench`]; the device only reads the data module.

pub use crate::tuning::*;

use crate::bench::{self, BenchConfig, BenchRow, DeltaCase, ScanCase, SsdCase, Variants};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::attention::{cases::AttnCase, PrefillKernel, PrefillProblem};
use crate::ops::delta_rule::{DeltaKernel, DeltaProblem};
use crate::ops::kernel::Kernel;
use crate::ops::selective_scan::ScanKernel;
use crate::ops::ssd::SsdKernel;

/// Picks the fastest candidate of one bucket's rows, provided every candidate agreed with the
/// reference (a variant that is fast but wrong on this adapter must not be cached, and a
/// disagreement means something is broken here: the bucket is refused).
pub fn select(rows: &[BenchRow]) -> Result<TuneEntry> {
    let cands: Vec<&BenchRow> = rows.iter().filter(|r| r.agrees.is_some()).collect();
    if cands.is_empty() {
        return Err(Error::Invalid("no candidate ran".into()));
    }
    let bad: Vec<&str> =
        cands.iter().filter(|r| r.agrees == Some(false)).map(|r| r.variant.as_str()).collect();
    if !bad.is_empty() {
        return Err(Error::Invalid(format!(
            "{} disagree(s) with the reference on {}: not cached",
            bad.join(", "),
            cands[0].shape
        )));
    }
    let best = cands.iter().min_by(|a, b| a.stats.median.total_cmp(&b.stats.median)).expect("non-empty");
    Ok(TuneEntry {
        variant: best.variant.clone(),
        measured_on: best.shape.clone(),
        candidates: cands.iter().map(|r| (r.variant.clone(), r.stats.median)).collect(),
    })
}

/// One bucket to tune: the op, its bucket name and the case measured for it.
enum Job {
    Scan(ScanCase),
    Ssd(SsdCase),
    Attention(AttnCase),
    Delta(DeltaCase),
    /// The S4 convolution at one length: FFT or direct.
    S4Conv(usize),
}

fn jobs(ops: &[&str], quick: bool) -> Result<Vec<Job>> {
    let mut out = Vec::new();
    for &op in ops {
        match op {
            "selective-scan" | "scan" => {
                out.extend(ScanCase::tune_grid(quick).into_iter().map(Job::Scan));
            }
            "ssd" => {
                out.extend(SsdCase::tune_grid(quick).into_iter().map(Job::Ssd));
            }
            "attention" => {
                out.extend(AttnCase::tune_grid(quick).into_iter().map(Job::Attention));
            }
            "delta-rule" => {
                out.extend(DeltaCase::tune_grid(quick).into_iter().map(Job::Delta));
            }
            "s4" => {
                let lens: &[usize] =
                    if quick { &[32, 256] } else { &[16, 32, 64, 128, 256, 512, 1024, 2048] };
                out.extend(lens.iter().map(|&l| Job::S4Conv(l)));
            }
            other => {
                return Err(Error::Invalid(format!(
                    "cannot tune {other:?}; tunable ops: selective-scan, ssd, attention, delta-rule, s4"
                )))
            }
        }
    }
    Ok(out)
}

/// Tunes `ops` on this device: for each bucket, every candidate on a representative shape,
/// then [`select`]. Returns the table of the buckets that passed and a message per refused
/// bucket; `progress` is told each bucket as it starts.
pub fn tune_ops(
    dev: &Device,
    ops: &[&str],
    quick: bool,
    progress: &dyn Fn(usize, usize, &str),
) -> Result<(TuneTable, Vec<String>)> {
    let cfg = if quick { BenchConfig::quick() } else { BenchConfig::full() };
    let jobs = jobs(ops, quick)?;
    let mut table = TuneTable::new(TuneKey::of(dev.adapter_info()));
    let mut refused = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        // Each job's buckets: one, or (the delta rule) an f32 and an f16 bucket from one run.
        let buckets: Vec<(&str, String, Vec<BenchRow>)> = match job {
            Job::Scan(case) => {
                let bucket = ScanKernel::bucket(case.shape(), case.batch);
                progress(i, jobs.len(), &format!("selective_scan/{bucket}"));
                // The sequential kernel is the oracle, never the fastest: left out.
                let cands = Variants::parse("chunked,lanes,tiled,solo,paired");
                let rows = bench::scan::selective_scan_case(dev, cfg, &cands, *case, 0.0, None)?;
                vec![("selective_scan", bucket, rows)]
            }
            Job::Ssd(case) => {
                let bucket = SsdKernel::bucket(case.dims, case.tokens());
                progress(i, jobs.len(), &format!("ssd/{bucket}"));
                let rows =
                    bench::ssd(dev, cfg, &Variants::parse("chunked"), std::slice::from_ref(case), false)?;
                // The runtimes feed the scan f32 activations: f16-input rows are not candidates.
                let f32_rows = rows.into_iter().filter(|r| r.case == "ssd" && !r.variant.ends_with(".f16"));
                vec![("ssd", bucket, f32_rows.collect())]
            }
            Job::Attention(case) => {
                let problem = PrefillProblem { dims: case.dims, tokens: case.tokens(), f16_ok: true };
                let bucket = PrefillKernel::bucket(&problem);
                progress(i, jobs.len(), &format!("attention.prefill/{bucket}"));
                let rows = bench::attention::prefill(dev, cfg, &Variants::all(), std::slice::from_ref(case))?;
                // Rows name the head dim (attention.prefill.d128.flash128); the table stores the
                // kernel's name (attention.prefill.flash128).
                let dim = format!(".d{}", case.dims.head_dim);
                let rows = rows
                    .into_iter()
                    .filter(|r| r.case == "attention")
                    .map(|r| BenchRow { variant: r.variant.replacen(&dim, "", 1), ..r })
                    .collect();
                vec![(PrefillKernel::OP, bucket, rows)]
            }
            Job::Delta(case) => {
                // f32 models choose among the f32 kernels, f16 models also the tensor-core form.
                let rows = delta_rows(dev, cfg, case, &|what| progress(i, jobs.len(), what))?;
                [false, true]
                    .into_iter()
                    .map(|f16_ok| {
                        let cu: Vec<usize> = (0..=case.batch).map(|b| b * case.len).collect();
                        let p = DeltaProblem::of(&cu, false, case.dims, f16_ok);
                        let cands = rows
                            .iter()
                            .filter(|r| f16_ok || r.variant != DeltaKernel::ChunkedCoop.name())
                            .cloned()
                            .collect();
                        (DeltaKernel::OP, <DeltaKernel as Kernel>::bucket(&p), cands)
                    })
                    .collect()
            }
            Job::S4Conv(l) => {
                use crate::ops::kernel::Kernel as _;
                use crate::ops::s4::kernels::ConvMethod;
                let bucket = ConvMethod::bucket(l);
                progress(i, jobs.len(), &format!("{}/{bucket}", ConvMethod::OP));
                let h = if quick { 16 } else { 256 };
                let mut rng = crate::testing::Rng::new(*l as u64);
                let rows = bench::s4::conv_case(dev, cfg, &Variants::all(), &mut rng, h, *l, 0.0)?;
                // Rows name the method as the chooser does (`fft`, `direct`).
                let rows = rows
                    .into_iter()
                    .map(|r| BenchRow { variant: r.variant.trim_start_matches("s4.conv.").to_string(), ..r })
                    .collect();
                vec![(ConvMethod::OP, bucket, rows)]
            }
        };
        for (op, bucket, rows) in buckets {
            match select(&rows) {
                Ok(entry) => {
                    table.entries.insert(format!("{op}/{bucket}"), entry);
                }
                Err(e) => refused.push(format!("{op}/{bucket}: {e}")),
            }
        }
    }
    progress(jobs.len(), jobs.len(), "done");
    Ok((table, refused))
}

/// The delta rule's prefill kernels on `case`, as rows named by kernel
/// (`delta_rule.chunked.coop`, without the bench's head-dim suffix).
fn delta_rows(
    dev: &Device,
    cfg: BenchConfig,
    case: &DeltaCase,
    progress: &dyn Fn(&str),
) -> Result<Vec<BenchRow>> {
    progress(&format!("delta_rule/{}", case.describe()));
    let rows = bench::delta_rule::delta_rule(dev, cfg, &Variants::all(), std::slice::from_ref(case), false)?;
    let dim = format!(".dk{}", case.dims.dk);
    Ok(rows
        .into_iter()
        .filter(|r| r.case == "delta-rule")
        .map(|r| BenchRow { variant: r.variant.replacen(&dim, "", 1), ..r })
        .collect())
}
