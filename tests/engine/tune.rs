//! The tuning cache: file round trip and keys, the selection rule, and op choosers that use
//! the tuned choice and fall back when it does not apply. (`linseq tune` itself runs as a
//! smoke run in CI, not here: tuning must not slow the tests.)

use linseq::bench::{BenchRow, Stats};
use linseq::ops::attention::{AttnDims, PrefillKernel, PrefillProblem};
use linseq::ops::delta_rule::{self as dr, DeltaDims, DeltaKernel, DeltaProblem};
use linseq::ops::kernel::Kernel;
use linseq::ops::selective_scan::{ScanKernel, ScanShape};
use linseq::ops::ssd::{SsdDims, SsdKernel};
use linseq::tune::{self, TuneEntry, TuneFile, TuneKey, TuneTable};
use linseq::{DType, Device};
use std::collections::BTreeMap;

fn entry(variant: &str) -> TuneEntry {
    TuneEntry {
        variant: variant.into(),
        measured_on: "test".into(),
        candidates: BTreeMap::from([(variant.into(), 1e-3)]),
    }
}

fn key(adapter: &str) -> TuneKey {
    TuneKey {
        adapter: adapter.into(),
        driver: "d 1".into(),
        backend: "Vulkan".into(),
        linseq: "0.1.0".into(),
    }
}

#[test]
fn tune_file_round_trip_and_keys() {
    let dir = std::env::temp_dir().join(format!("linseq-tune-{}", std::process::id()));
    let path = dir.join("sub").join("tune.json");
    assert_eq!(TuneFile::load(&path).unwrap().tables.len(), 0, "a missing file is an empty cache");
    let mut file = TuneFile::default();
    let mut a = TuneTable::new(key("gpu a"));
    a.entries.insert("selective_scan/N=16 SD=2^14".into(), entry("selective_scan.paired"));
    file.merge(a.clone());
    let mut a2 = TuneTable::new(key("gpu a"));
    a2.entries.insert("ssd/P=64 N=128 T<8K".into(), entry("ssd.chunked64"));
    file.merge(a2);
    file.merge(TuneTable::new(key("gpu b")));
    file.save(&path).unwrap();
    let back = TuneFile::load(&path).unwrap();
    assert_eq!(back, file);
    let t = back.table(&key("gpu a")).unwrap();
    assert_eq!(t.entries.len(), 2, "merging a table of the same key adds its entries");
    assert_eq!(t.get("selective_scan", "N=16 SD=2^14").unwrap().variant, "selective_scan.paired");
    // Another driver or linseq version is another key.
    let other = TuneKey { linseq: "9.9.9".into(), ..key("gpu a") };
    assert!(back.table(&other).is_none());

    // Broken files fail with the path and the reason.
    std::fs::write(&path, "{ not json").unwrap();
    let err = TuneFile::load(&path).unwrap_err().to_string();
    assert!(err.contains("tune.json") && err.contains("not a linseq tuning cache"), "{err}");
    std::fs::write(&path, r#"{"format": 99, "tables": []}"#).unwrap();
    let err = TuneFile::load(&path).unwrap_err().to_string();
    assert!(err.contains("format 99"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn bench_row(variant: &str, median: f64, agrees: bool) -> BenchRow {
    BenchRow {
        case: "scan".into(),
        variant: variant.into(),
        shape: "B=8 d=2048 L=4096 N=16".into(),
        stats: Stats { median, min: median, max: median, clock: "gpu-timestamps" },
        bytes: 0.0,
        flops: 0.0,
        gb_per_s: 0.0,
        tflop_per_s: 0.0,
        pct_of_copy: 0.0,
        agrees: Some(agrees),
        tokens_per_s: None,
    }
}

#[test]
fn selection_takes_the_fastest_only_when_all_agree() {
    let rows = vec![bench_row("a", 3e-3, true), bench_row("b", 1e-3, true), bench_row("c", 2e-3, true)];
    let e = tune::select(&rows).unwrap();
    assert_eq!(e.variant, "b");
    assert_eq!(e.candidates.len(), 3);
    let mut bad = rows.clone();
    bad[2].agrees = Some(false);
    let err = tune::select(&bad).unwrap_err().to_string();
    assert!(err.contains("c disagree"), "{err}");
    assert!(tune::select(&[]).is_err());
}

#[test]
fn choosers_use_the_tuned_choice_and_fall_back() {
    // A device of its own: the shared test devices keep their (empty) tuning.
    let dev = Device::new().unwrap_or_else(|e| panic!("{e}"));
    let caps = dev.caps().clone();
    let shape = ScanShape::new(128, 16, 1);
    let bucket = ScanKernel::bucket(shape, 8);
    let mut table = TuneTable::new(TuneKey::of(dev.adapter_info()));
    table.entries.insert(format!("selective_scan/{bucket}"), entry("selective_scan.chunked"));
    let dims = SsdDims { heads: 4, head_dim: 16, groups: 1, n: 16 };
    table.entries.insert(format!("ssd/{}", SsdKernel::bucket(dims, 1000)), entry("ssd.chunked128"));
    // The S4 convolution's crossover: the tuned method for its length bucket.
    table.entries.insert("s4.conv/L32".into(), entry("fft"));
    table.entries.insert("s4.conv/L2048".into(), entry("fft.passes"));
    // A shipped file with tables for this adapter and another: the matching one is used.
    let file =
        TuneFile { format: tune::FORMAT, tables: vec![TuneTable::new(key("elsewhere")), table.clone()] };
    assert!(dev.install_tuning(&file));
    assert_eq!(ScanKernel::choose(&dev, shape, 8), ScanKernel::Chunked);
    use linseq::ops::s4::kernels::{choose_conv, ConvMethod};
    assert_eq!(choose_conv(&dev, 30), ConvMethod::Fft, "the tuned bucket L32");
    assert_eq!(choose_conv(&dev, 2000), ConvMethod::FftPasses, "the tuned bucket L2048");
    assert_eq!(choose_conv(&dev, 10), ConvMethod::Direct, "an untuned short bucket: the heuristic");
    assert_eq!(choose_conv(&dev, 5000), ConvMethod::Fft, "an untuned long bucket: the heuristic");
    assert_eq!(
        SsdKernel::choose(&dev, dims, 1000, DType::F32, SsdKernel::Chunked(64)),
        SsdKernel::Chunked(128)
    );
    // Other buckets keep the defaults.
    assert_eq!(
        SsdKernel::choose(&dev, dims, 100_000, DType::F32, SsdKernel::Chunked(64)),
        SsdKernel::Chunked(64)
    );
    // A cached tensor-core choice is skipped for f32 activations (it takes only f16), so a
    // Mamba-2 prefill falls back instead of failing.
    let mut t3 = TuneTable::new(TuneKey::of(dev.adapter_info()));
    t3.entries.insert(format!("ssd/{}", SsdKernel::bucket(dims, 1000)), entry("ssd.coop64.fused"));
    dev.set_tuning(t3);
    assert_eq!(
        SsdKernel::choose(&dev, dims, 1000, DType::F32, SsdKernel::Chunked(32)),
        SsdKernel::Chunked(32)
    );
    dev.install_tuning(&file);
    let other = ScanShape::new(128, 64, 1);
    assert_eq!(ScanKernel::choose(&dev, other, 8), ScanKernel::best(&caps, other, 8));
    // A tuned kernel that cannot run the shape (paired needs D / G a multiple of 64) or an
    // unknown name falls back to the heuristic.
    let odd = ScanShape::new(96, 16, 1);
    let mut t2 = TuneTable::new(TuneKey::of(dev.adapter_info()));
    t2.entries
        .insert(format!("selective_scan/{}", ScanKernel::bucket(odd, 8)), entry("selective_scan.paired"));
    dev.set_tuning(t2.clone());
    assert_eq!(ScanKernel::choose(&dev, odd, 8), ScanKernel::best(&caps, odd, 8));
    t2.entries.values_mut().for_each(|e| e.variant = "no.such.kernel".into());
    dev.set_tuning(t2);
    assert_eq!(ScanKernel::choose(&dev, odd, 8), ScanKernel::best(&caps, odd, 8));
    // The attention prefill: a tuned subgroup choice is taken where subgroups run; a tuned
    // tensor-core choice never reaches f32 weights (f16_ok false), nor an adapter without it.
    let ad = AttnDims { heads: 8, kv_heads: 2, head_dim: 64 };
    let problem = |f16_ok| PrefillProblem { dims: ad, tokens: 300, f16_ok };
    let mut t4 = TuneTable::new(TuneKey::of(dev.adapter_info()));
    let bucket = format!("attention.prefill/{}", PrefillKernel::bucket(&problem(true)));
    t4.entries.insert(bucket.clone(), entry("attention.prefill.sg"));
    dev.set_tuning(t4.clone());
    let sg =
        if PrefillKernel::Subgroup.runs(&caps, 64) { PrefillKernel::Subgroup } else { PrefillKernel::Plain };
    assert_eq!(PrefillKernel::choose(&dev, ad, 300, false), sg);
    t4.entries.insert(bucket, entry("attention.prefill.flash128"));
    dev.set_tuning(t4);
    assert_eq!(PrefillKernel::choose(&dev, ad, 300, false), PrefillKernel::Plain);
    let coop = PrefillKernel::Flash(128).runs(&caps, 64);
    assert_eq!(
        PrefillKernel::choose(&dev, ad, 300, true),
        if coop { PrefillKernel::Flash(128) } else { PrefillKernel::Plain }
    );
    // The delta rule: the heuristic takes the recurrent kernel for a step, the tensor-core
    // form for an f16 prefill with per-head gates where it runs, else the SIMT chunked form on
    // a software adapter and the recurrent one on hardware; a tuned choice is taken where it
    // supports the call, and a tuned tensor-core choice never reaches f32 weights.
    let dd = DeltaDims { key_heads: 2, value_heads: 4, dk: 64, dv: 64 };
    let prefill = |f16_ok| DeltaProblem::of(&[0, 300, 600], false, dd, f16_ok);
    dev.set_tuning(TuneTable::new(TuneKey::of(dev.adapter_info())));
    assert_eq!(dr::choose(&dev, &DeltaProblem::of(&[0, 1, 2], false, dd, true)), DeltaKernel::Recurrent);
    let simt = if caps.software { DeltaKernel::Chunked } else { DeltaKernel::Recurrent };
    assert_eq!(dr::choose(&dev, &DeltaProblem::of(&[0, 300], true, dd, true)), simt);
    assert_eq!(dr::choose(&dev, &prefill(false)), simt);
    let tc = DeltaKernel::ChunkedCoop.runs(&caps, dd);
    assert_eq!(dr::choose(&dev, &prefill(true)), if tc { DeltaKernel::ChunkedCoop } else { simt });
    let mut t5 = TuneTable::new(TuneKey::of(dev.adapter_info()));
    let other = if simt == DeltaKernel::Chunked { DeltaKernel::Recurrent } else { DeltaKernel::Chunked };
    t5.entries.insert(format!("delta_rule/{}", DeltaKernel::bucket(&prefill(false))), entry(&other.name()));
    t5.entries.insert(
        format!("delta_rule/{}", DeltaKernel::bucket(&prefill(true))),
        entry("delta_rule.chunked.coop"),
    );
    dev.set_tuning(t5);
    assert_eq!(dr::choose(&dev, &prefill(false)), other);
    assert_eq!(dr::choose(&dev, &prefill(true)), if tc { DeltaKernel::ChunkedCoop } else { simt });
    assert!(!dev
        .install_tuning(&TuneFile { format: tune::FORMAT, tables: vec![TuneTable::new(key("elsewhere"))] }));
}
