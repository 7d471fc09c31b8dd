//! Attention (prefill, decode, ring cache) and RoPE against their f64 references: window edges,
//! GQA group sizes, head dims, lengths around the tiles, ragged batches, a cached prefix,
//! decode after prefill across several ring wrap-arounds, and NaN containment.

use crate::common::devices;
use linseq::ops::attention::{self as attn, AttnArgs, AttnDims, PrefillKernel};
use linseq::ops::sequences::Sequences;
use linseq::ops::{rope, Recorder};
use linseq::testing::{compare, GuardedOutput, Rng};
use linseq::{DType, Device, Tensor};

/// A batch of sequences on the device: the cache (a ring, or blocks added as positions reach
/// them) and positions, and each sequence's whole K/V history on the host (the oracle's input).
struct Session {
    dims: AttnDims,
    window: Option<usize>,
    cap: usize,
    softcap: Option<f32>,
    prefill: PrefillKernel,
    kv: Vec<Tensor>,
    blocks: bool,
    pos: Tensor,
    /// Per sequence: K and V of every position so far, `[positions, Hkv, D]` each.
    hist: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Session {
    fn new(dev: &Device, s: usize, dims: AttnDims, window: Option<usize>, cap: usize) -> Self {
        let kv = Tensor::empty(dev, &[s, cap, 2, dims.kv_heads, dims.head_dim], DType::F32).unwrap();
        let pos = Tensor::from_slice(dev, &[s], &vec![0u32; s]).unwrap();
        Self {
            dims,
            window,
            cap,
            softcap: None,
            prefill: PrefillKernel::Plain,
            kv: vec![kv],
            blocks: false,
            pos,
            hist: vec![(Vec::new(), Vec::new()); s],
        }
    }

    /// A growing cache of blocks of `block` positions, none allocated yet.
    fn growing(dev: &Device, s: usize, dims: AttnDims, window: Option<usize>, block: usize) -> Self {
        Self { kv: Vec::new(), blocks: true, ..Self::new(dev, s, dims, window, block) }
    }

    /// Feeds `lens[s]` new tokens per sequence (rows `qkv`); returns (GPU output, reference).
    fn feed(&mut self, dev: &Device, lens: &[usize], qkv: &[f32], step: bool) -> (Vec<f32>, Vec<f64>) {
        let d = self.dims;
        if self.blocks {
            // Blocks for the positions this call reaches, the ones there left where they are.
            let per = d.kv_heads * d.head_dim;
            let need = self.hist.iter().zip(lens).map(|(h, l)| h.0.len() / per + l).max().unwrap();
            while self.kv.len() * self.cap < need {
                let shape = [lens.len(), self.cap, 2, d.kv_heads, d.head_dim];
                self.kv.push(Tensor::empty(dev, &shape, DType::F32).unwrap());
            }
        }
        let blocks: Vec<&Tensor> = self.kv.iter().collect();
        let (row, hd) = (d.row(), d.heads * d.head_dim);
        let seqs = Sequences::new(dev, lens, None).unwrap();
        let t = seqs.total();
        let qkv_t = Tensor::from_slice(dev, &[t, row], qkv).unwrap();
        let out = GuardedOutput::new(dev, &[t, hd], DType::F32).unwrap();
        let a = AttnArgs {
            qkv: &qkv_t,
            kv: if self.blocks { attn::KvCache::Blocks(&blocks) } else { attn::KvCache::Ring(blocks[0]) },
            pos: &self.pos,
            seqs: &seqs,
            dims: d,
            window: self.window,
            cap: self.cap,
            scale: 1.0 / (d.head_dim as f32).sqrt(),
            softcap: self.softcap,
            prefill: self.prefill,
        };
        let mut rec = Recorder::new(dev);
        if step {
            let part = Tensor::empty(dev, &attn::partial_shape(d, lens.len(), a.span()), DType::F32).unwrap();
            attn::attention_decode(&mut rec, &a, &part, &out.tensor).unwrap();
        } else {
            attn::attention_prefill(&mut rec, &a, &out.tensor).unwrap();
        }
        attn::kv_append(&mut rec, &a).unwrap();
        attn::advance_positions(&mut rec, &seqs, &self.pos).unwrap();
        rec.run().unwrap();
        // The oracle: each sequence's queries over its whole history.
        let mut want = Vec::new();
        let mut t0 = 0;
        for (s, &l) in lens.iter().enumerate() {
            let (k, v) = &mut self.hist[s];
            let p0 = k.len() / (d.kv_heads * d.head_dim);
            let mut q = Vec::new();
            for r in &qkv[t0 * row..(t0 + l) * row].chunks(row).collect::<Vec<_>>() {
                q.extend_from_slice(&r[..hd]);
                k.extend_from_slice(&r[hd..hd + d.kv_heads * d.head_dim]);
                v.extend_from_slice(&r[hd + d.kv_heads * d.head_dim..]);
            }
            let scale = 1.0 / (d.head_dim as f64).sqrt();
            let cap = self.softcap.map(f64::from);
            want.extend(attn::attention_ref(&q, k, v, p0, d, self.window, scale, cap));
            t0 += l;
        }
        (out.read_f32(dev).unwrap(), want)
    }
}

impl Session {
    /// Feeds random tokens and checks the output against the reference: within
    /// `prefill_bounds` for a prefill, to f32 rounding for a decode step (its kernel is f32).
    fn feed_checked(
        &mut self,
        dev: &Device,
        rng: &mut Rng,
        lens: &[usize],
        step: bool,
        prefill_bounds: (f64, f64),
        what: &str,
    ) {
        let qkv = rng.vec(lens.iter().sum::<usize>() * self.dims.row(), -1.0, 1.0);
        let (got, want) = self.feed(dev, lens, &qkv, step);
        check_within(dev, what, &got, &want, if step { (1e-10, 1e-4) } else { prefill_bounds });
    }
}

/// Compares within (NMSE, max-abs) bounds.
fn check_within(dev: &Device, what: &str, got: &[f32], want: &[f64], bounds: (f64, f64)) {
    crate::common::check_within(dev, "attention", what, got, want, bounds)
}

/// The prefill kernels that run head dim `d` here, each with its bounds: f32 kernels to f32
/// rounding, the tensor-core forms (f16 Q, K, V and P) to f16's.
fn prefill_forms(dev: &Device, d: usize) -> Vec<(PrefillKernel, (f64, f64))> {
    PrefillKernel::ALL
        .into_iter()
        .filter(|k| k.runs(dev.caps(), d))
        .map(|k| (k, if k.uses_f16() { (1e-5, 2e-2) } else { (1e-10, 1e-4) }))
        .collect()
}

fn dims(heads: usize, kv_heads: usize, head_dim: usize) -> AttnDims {
    AttnDims { heads, kv_heads, head_dim }
}

#[test]
fn prefill_matches_the_reference_over_windows_groups_dims_and_lengths() {
    let cases: &[(&[usize], AttnDims, Option<usize>)] = &[
        (&[1], dims(4, 1, 64), None),
        (&[63, 64, 65], dims(4, 4, 64), None),
        (&[100], dims(8, 1, 64), Some(1)), // W = 1: each query sees itself
        (&[64], dims(4, 1, 64), Some(64)), // W = L
        (&[63, 65], dims(4, 1, 64), Some(64)), // L = W ± 1
        (&[40], dims(4, 1, 64), Some(100)), // W > L
        (&[1000], dims(8, 2, 64), Some(64)), // group 4
        (&[200, 17], dims(8, 1, 128), Some(96)), // group 8, D = 128
        (&[3], dims(1, 1, 256), None),     // D = 256
        (&[9], dims(1, 1, 256), None),     // D = 256
        (&[130], dims(2, 2, 256), None),   // D = 256
        (&[4103], dims(2, 1, 64), Some(48)), // long, windowed
    ];
    for dev in devices() {
        let mut rng = Rng::new(61);
        // Every prefill kernel that runs here: the plain form, the subgroup form (4
        // invocations per query) and the tensor-core forms.
        for &(lens, d, window) in cases {
            for (k, bounds) in prefill_forms(dev, d.head_dim) {
                let cap = window.unwrap_or(lens.iter().copied().max().unwrap());
                let mut s = Session::new(dev, lens.len(), d, window, cap);
                s.prefill = k;
                let t: usize = lens.iter().sum();
                let qkv = rng.vec(t * d.row(), -1.0, 1.0);
                let (got, want) = s.feed(dev, lens, &qkv, false);
                check_within(dev, &format!("{} {lens:?} {d:?} W={window:?}", k.name()), &got, &want, bounds);
            }
        }
    }
}

#[test]
fn soft_capped_scores_match_the_reference() {
    for dev in devices() {
        let mut rng = Rng::new(62);
        let d = dims(4, 2, 64);
        for (k, bounds) in prefill_forms(dev, d.head_dim) {
            let mut s = Session::new(dev, 1, d, Some(32), 32);
            s.softcap = Some(2.0);
            s.prefill = k;
            // Large scores, so that the cap matters.
            let qkv: Vec<f32> = rng.vec(70 * d.row(), -4.0, 4.0);
            let (got, want) = s.feed(dev, &[70], &qkv, false);
            check_within(dev, &format!("{} soft cap 2", k.name()), &got, &want, bounds);
        }
    }
}

#[test]
fn scores_that_jump_late_in_the_sequence_match_the_reference() {
    // Queries all near one direction u, keys small except two late ones along u whose scores
    // pass every earlier one by about 11, then
    // the first by about 16: the one-sweep forms must rescale what they have
    // accumulated (and P stays large for rows whose reference max lags their true one).
    for dev in devices() {
        let mut rng = Rng::new(63);
        let d = dims(2, 1, 64);
        let (l, hd) = (300, d.heads * d.head_dim);
        let u: Vec<f32> = rng.vec(d.head_dim, -1.0, 1.0);
        let mut qkv = rng.vec(l * d.row(), -0.2, 0.2);
        for t in 0..l {
            let row = &mut qkv[t * d.row()..(t + 1) * d.row()];
            for h in 0..d.heads {
                for (x, &ux) in row[h * d.head_dim..(h + 1) * d.head_dim].iter_mut().zip(&u) {
                    *x += 2.0 * ux;
                }
            }
            let boost = match t {
                150 => 2.0,
                260 => 5.0,
                _ => 0.0,
            };
            for (x, &ux) in row[hd..hd + d.head_dim].iter_mut().zip(&u) {
                *x += boost * ux;
            }
        }
        for (k, bounds) in prefill_forms(dev, d.head_dim) {
            let mut s = Session::new(dev, 1, d, None, l);
            s.prefill = k;
            let (got, want) = s.feed(dev, &[l], &qkv, false);
            check_within(dev, &format!("{} late jumps", k.name()), &got, &want, bounds);
        }
    }
}

#[test]
fn a_cached_prefix_then_decode_wraps_the_ring_several_times() {
    // Two sequences of different lengths: a prefill longer than the ring, a second prefill
    // continuing from the cache, then decode steps across several wrap-arounds of a ring of
    // 16 positions; every output against attention over the whole history.
    for dev in devices() {
        let mut rng = Rng::new(63);
        for (d, window) in [(dims(4, 1, 64), Some(16)), (dims(8, 2, 128), Some(16)), (dims(4, 4, 64), None)] {
            // The prefills take the fastest form that runs here (the decode has one).
            let (prefill, bounds) = *prefill_forms(dev, d.head_dim).last().unwrap();
            let cap = window.unwrap_or(200);
            let mut s = Session::new(dev, 2, d, window, cap);
            s.prefill = prefill;
            let mut feed = |s: &mut Session, lens: &[usize], step: bool, what: &str| {
                let what = format!("{what} {} {d:?} W={window:?}", prefill.name());
                s.feed_checked(dev, &mut rng, lens, step, bounds, &what);
            };
            feed(&mut s, &[37, 5], false, "prefill");
            feed(&mut s, &[9, 30], false, "cached prefix + prefill");
            for k in 0..50 {
                feed(&mut s, &[1, 1], true, &format!("decode step {k}"));
            }
            let pos = s.pos.read::<u32>(dev).unwrap();
            assert_eq!(pos, vec![37 + 9 + 50, 5 + 30 + 50], "positions advance by each call's tokens");
        }
    }
}

#[test]
fn decode_shares_each_kv_head_across_its_query_heads() {
    // A decode workgroup takes up to 8 query heads of one KV head: groups of 2 and 8, and 10
    // and 12 (two workgroups per KV head, the second partly filled), at each head dim, after a
    // prefix long enough for several splits.
    for dev in devices() {
        let mut rng = Rng::new(67);
        for (d, window) in [
            (dims(6, 3, 128), None),
            (dims(16, 2, 64), Some(150)),
            (dims(10, 1, 256), None),
            (dims(12, 1, 64), Some(100)),
        ] {
            let cap = window.unwrap_or(400);
            let mut s = Session::new(dev, 2, d, window, cap);
            let mut feed = |s: &mut Session, lens: &[usize], step: bool, what: &str| {
                let what = format!("{what} {d:?} W={window:?}");
                s.feed_checked(dev, &mut rng, lens, step, (1e-10, 1e-4), &what);
            };
            feed(&mut s, &[230, 3], false, "prefill");
            for k in 0..3 {
                feed(&mut s, &[1, 1], true, &format!("decode step {k}"));
            }
        }
    }
}

#[test]
fn a_growing_cache_adds_blocks_without_moving_the_ones_it_has() {
    // Blocks of 64 positions: a prefill inside the first, a second one across into the third
    // (a cached prefix over two blocks), decode steps across the next boundary, with a window
    // that spans blocks and without one; every output against attention over the whole history.
    for dev in devices() {
        let mut rng = Rng::new(66);
        for (d, window) in [(dims(4, 1, 64), None), (dims(8, 2, 128), Some(80))] {
            let (prefill, bounds) = *prefill_forms(dev, d.head_dim).last().unwrap();
            let mut s = Session::growing(dev, 2, d, window, 64);
            s.prefill = prefill;
            let mut feed = |s: &mut Session, lens: &[usize], step: bool, what: &str| {
                s.feed_checked(
                    dev,
                    &mut rng,
                    lens,
                    step,
                    bounds,
                    &format!("blocks: {what} {d:?} W={window:?}"),
                );
            };
            feed(&mut s, &[40, 7], false, "prefill");
            let first = s.kv[0].buffer() as *const _;
            feed(&mut s, &[100, 3], false, "cached prefix + prefill");
            assert_eq!(s.kv.len(), 3, "140 positions take three blocks of 64");
            assert!(std::ptr::eq(first, s.kv[0].buffer()), "the first block stays where it was");
            for k in 0..60 {
                feed(&mut s, &[1, 1], true, &format!("decode step {k}"));
            }
            assert_eq!(s.kv.len(), 4);
            assert_eq!(s.pos.read::<u32>(dev).unwrap(), vec![200, 70]);
        }
    }
}

#[test]
fn nan_in_one_sequence_stays_in_that_sequence() {
    for dev in devices() {
        let d = dims(4, 1, 64);
        let mut rng = Rng::new(64);
        for (k, _) in prefill_forms(dev, d.head_dim) {
            let mut s = Session::new(dev, 2, d, Some(8), 8);
            s.prefill = k;
            let mut qkv = rng.vec(40 * d.row(), -1.0, 1.0);
            qkv[3 * d.row() + 5] = f32::NAN; // a query element of sequence 0
            qkv[4 * d.row() + d.heads * 64 + 1] = f32::INFINITY; // a key of sequence 0
            let (got, _) = s.feed(dev, &[20, 20], &qkv, false);
            let hd = d.heads * d.head_dim;
            assert!(got[20 * hd..].iter().all(|v| v.is_finite()), "{}: sequence 1 is untouched", k.name());
            assert!(
                got[..20 * hd].iter().any(|v| !v.is_finite()),
                "{}: sequence 0 reports its NaN",
                k.name()
            );
            // Decode steps keep the poison in sequence 0's ring only.
            let step = rng.vec(2 * d.row(), -1.0, 1.0);
            let (got, _) = s.feed(dev, &[1, 1], &step, true);
            assert!(got[hd..].iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn bad_attention_calls_are_clear_errors() {
    let dev = &devices()[0];
    let d = dims(4, 1, 64);
    let seqs = Sequences::new(dev, &[3], None).unwrap();
    let qkv = Tensor::empty(dev, &[3, d.row()], DType::F32).unwrap();
    let kv = Tensor::empty(dev, &[1, 8, 2, 1, 64], DType::F32).unwrap();
    let pos = Tensor::from_slice(dev, &[1], &[0u32]).unwrap();
    let out = Tensor::empty(dev, &[3, 256], DType::F32).unwrap();
    let a = AttnArgs {
        qkv: &qkv,
        kv: attn::KvCache::Ring(&kv),
        pos: &pos,
        seqs: &seqs,
        dims: d,
        window: Some(8),
        cap: 8,
        scale: 0.125,
        softcap: None,
        prefill: PrefillKernel::Plain,
    };
    let other = Tensor::empty(dev, &[1, 16, 2, 1, 64], DType::F32).unwrap();
    let (five, mixed, none) = ([&kv; 5], [&kv, &other], []);
    let mut rec = Recorder::new(dev);
    for (bad, what) in [
        (AttnArgs { kv: attn::KvCache::Blocks(&five), ..a }, "more blocks than the kernels bind"),
        (AttnArgs { kv: attn::KvCache::Blocks(&mixed), ..a }, "blocks of two sizes"),
        (AttnArgs { kv: attn::KvCache::Blocks(&none), ..a }, "no blocks"),
        (AttnArgs { dims: dims(6, 4, 64), ..a }, "heads not a multiple of kv heads"),
        (AttnArgs { dims: dims(4, 1, 96), ..a }, "head dim without kernels"),
        (AttnArgs { window: Some(9), ..a }, "window larger than the ring"),
        (AttnArgs { window: Some(0), ..a }, "empty window"),
        (AttnArgs { cap: 16, ..a }, "cache of another shape"),
        (AttnArgs { softcap: Some(f32::NAN), ..a }, "NaN soft cap"),
    ] {
        let e = attn::attention_prefill(&mut rec, &bad, &out).expect_err(what);
        assert!(!e.to_string().is_empty(), "{what}");
    }
    // Kernels this device cannot run are refused, not run.
    for k in PrefillKernel::ALL.into_iter().filter(|k| !k.runs(dev.caps(), 64)) {
        let e = attn::attention_prefill(&mut rec, &AttnArgs { prefill: k, ..a }, &out).expect_err(&k.name());
        assert!(e.to_string().contains(&k.name()), "{e}");
    }
    // The 128-query tensor-core tile does not fit 48 KiB at D = 256 anywhere.
    assert!(!PrefillKernel::Flash(128).runs(dev.caps(), 256));
    assert!(!PrefillKernel::FlashSplit(128).runs(dev.caps(), 256));
    // A decode call with more than one token per sequence.
    let part = Tensor::empty(dev, &attn::partial_shape(d, 1, 8), DType::F32).unwrap();
    assert!(attn::attention_decode(&mut rec, &a, &part, &out).is_err());
    assert!(rec.is_empty());
}

#[test]
fn rope_rotates_q_and_k_at_each_sequence_position() {
    for dev in devices() {
        let mut rng = Rng::new(65);
        for (d, rot, theta) in
            [(dims(4, 1, 64), 64, 10000.0), (dims(4, 1, 64), 32, 10000.0), (dims(2, 2, 128), 32, 1e6)]
        {
            let lens = [5usize, 9];
            let seqs = Sequences::new(dev, &lens, None).unwrap();
            let pos_host = [70000usize, 3];
            let pos = Tensor::from_slice(dev, &[2], &[70000u32, 3]).unwrap();
            let x = rng.vec(14 * d.row(), -1.0, 1.0);
            let qkv = Tensor::from_slice(dev, &[14, d.row()], &x).unwrap();
            let freqs = rope::inv_freq(rot, theta);
            let f = Tensor::from_slice(dev, &[rot / 2], &freqs).unwrap();
            let mut rec = Recorder::new(dev);
            rope::rope(&mut rec, &qkv, d, rope::Rotary { rot, inv_freq: &f, seqs: &seqs, pos: &pos })
                .unwrap();
            rec.run().unwrap();
            let got = qkv.read_f32(dev).unwrap();
            let want = rope::rope_ref(&x, d, rot, &freqs, seqs.cu_seqlens(), &pos_host);
            let c = compare(&got, &want);
            // Position 70 000: the f32 angle is the same on both sides; what differs is cos/sin.
            assert!(c.nmse < 1e-11 && c.max_abs < 2e-5, "[{}] rope {d:?} rot {rot}: {c:?}", dev.describe());
        }
    }
}

#[test]
fn q_and_k_norms_per_head_and_over_all_heads_match_the_reference() {
    // Alone, and fused with RoPE (full and partial) in one pass.
    for dev in devices() {
        let mut rng = Rng::new(67);
        for (d, whole, rot) in [
            (dims(4, 1, 64), false, None),
            (dims(4, 1, 64), true, Some(64)),
            (dims(8, 2, 256), false, Some(64)),
            (dims(2, 2, 128), true, None),
            (dims(2, 2, 128), false, Some(32)),
        ] {
            let lens = [3usize, 4];
            let t = 7;
            let x = rng.vec(t * d.row(), -2.0, 2.0);
            let w = rng.vec((d.heads + d.kv_heads) * d.head_dim, 0.5, 1.5);
            let qkv = Tensor::from_slice(dev, &[t, d.row()], &x).unwrap();
            let wt = Tensor::from_slice(dev, &[w.len()], &w).unwrap();
            let seqs = Sequences::new(dev, &lens, None).unwrap();
            let pos = Tensor::from_slice(dev, &[2], &[1000u32, 0]).unwrap();
            let freqs = rope::inv_freq(rot.unwrap_or(2), 1e6);
            let f = Tensor::from_slice(dev, &[freqs.len()], &freqs).unwrap();
            let rotary = rot.map(|rot| rope::Rotary { rot, inv_freq: &f, seqs: &seqs, pos: &pos });
            let mut rec = Recorder::new(dev);
            rope::head_norm(&mut rec, &qkv, d, rope::QkNorm { w: &wt, eps: 1e-6, whole }, rotary).unwrap();
            rec.run().unwrap();
            let got = qkv.read_f32(dev).unwrap();
            let mut want = rope::head_norm_ref(&x, d, &w, 1e-6, whole);
            if let Some(rot) = rot {
                let normed: Vec<f32> = want.iter().map(|&v| v as f32).collect();
                want = rope::rope_ref(&normed, d, rot, &freqs, seqs.cu_seqlens(), &[1000, 0]);
            }
            let c = compare(&got, &want);
            assert!(
                c.nmse < 1e-12 && c.max_abs < 1e-5,
                "[{}] head norm {d:?} whole {whole} rot {rot:?}: {c:?}",
                dev.describe()
            );
            // v is untouched.
            let v0 = (d.heads + d.kv_heads) * d.head_dim;
            assert!((0..t)
                .all(|r| got[r * d.row() + v0..(r + 1) * d.row()] == x[r * d.row() + v0..(r + 1) * d.row()]));
        }
        let bad = Tensor::empty(dev, &[3], DType::F32).unwrap();
        let qkv = Tensor::empty(dev, &[2, dims(4, 1, 64).row()], DType::F32).unwrap();
        let norm = rope::QkNorm { w: &bad, eps: 1e-6, whole: false };
        let e = rope::head_norm(&mut Recorder::new(dev), &qkv, dims(4, 1, 64), norm, None).unwrap_err();
        assert!(e.to_string().contains("q/k norm weight"), "{e}");
    }
}

#[test]
fn decode_splits_cover_the_keys_and_fill_the_gpu() {
    for (span, rows) in
        [(1, 1), (63, 1), (4096, 32), (32768, 32), (262144, 8), (4096, 64 * 32), (100, 1 << 20)]
    {
        let (n, len) = attn::splits(span, rows);
        assert!(n * len >= span && (n - 1) * len < span.max(1), "{span} keys: {n} splits of {len}");
        assert!(len.is_multiple_of(attn::MIN_SPLIT_LEN) && n <= attn::MAX_SPLITS, "{span}: {n} × {len}");
    }
    // One sequence's 4096-key ring over 32 heads: 64-key splits (the fastest on the H200);
    // a batch that fills the GPU by itself is not split further.
    assert_eq!(attn::splits(4096, 32), (64, 64));
    assert_eq!(attn::splits(4096, 64 * 32), (2, 2048));
}
