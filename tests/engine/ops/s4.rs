//! The S4 family and its FFT against f64 references: the FFT against a direct DFT from 2 to
//! 2^20 points (one and two passes), forward and inverse.

use crate::common::{check_within, devices};
use linseq::ops::fft::{self, Plan};
use linseq::ops::s4::complex::C64;
use linseq::ops::Recorder;
use linseq::testing::{GuardedOutput, Rng};
use linseq::{DType, Device};

/// Transforms `rows` random rows of `n` points on the GPU; checks some bins of each row (all
/// of them for short rows) against a direct DFT, relative to the row's largest bin.
fn check_fft(dev: &Device, n: usize, rows: usize, inverse: bool) {
    let plan = Plan::new(dev, n).unwrap();
    let mut rng = Rng::new(n as u64 * 31 + rows as u64 + inverse as u64);
    let x: Vec<C64> = (0..rows * n)
        .map(|_| C64::new(rng.uniform(-1.0, 1.0) as f64, rng.uniform(-1.0, 1.0) as f64))
        .collect();
    // The inverse reads slot order: lay the input out as the forward transform leaves bins.
    let mut host = vec![0f32; 2 * rows * n];
    for r in 0..rows {
        for k in 0..n {
            let at = r * n + if inverse { plan.slot(k) } else { k };
            host[2 * at] = x[r * n + k].re as f32;
            host[2 * at + 1] = x[r * n + k].im as f32;
        }
    }
    let out = GuardedOutput::new(dev, &[rows * n * 2], DType::F32).unwrap();
    out.tensor.write(dev, &host).unwrap();
    let mut rec = Recorder::new(dev);
    fft::fft(&mut rec, &out.tensor, rows, &plan, inverse).unwrap();
    rec.run().unwrap();
    let got = out.read_f32(dev).unwrap();
    let bins: Vec<usize> = if n <= 512 {
        (0..n).collect()
    } else {
        (0..48).map(|_| (rng.next_u64() % n as u64) as usize).collect()
    };
    let (mut g, mut w) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let want = fft::dft_ref(&x[r * n..(r + 1) * n], &bins, inverse);
        let scale = (n as f64).sqrt();
        for (&k, v) in bins.iter().zip(want) {
            let at = r * n + if inverse { k } else { plan.slot(k) };
            g.extend([got[2 * at] / scale as f32, got[2 * at + 1] / scale as f32]);
            w.extend([v.re / scale, v.im / scale]);
        }
    }
    let what = format!("fft n {n} rows {rows} inverse {inverse} (n1 {})", plan.n1);
    check_within(dev, "fft", &what, &g, &w, (1e-10, 2e-5 * (n as f64).log2().max(1.0)));
}

#[test]
fn fft_matches_a_direct_dft_from_2_to_2_pow_20_points() {
    for dev in devices() {
        for (n, rows) in [(2, 3), (4, 1), (8, 5), (16, 2), (64, 7), (256, 3), (512, 2), (4096, 3), (8192, 2)]
        {
            check_fft(dev, n, rows, false);
            check_fft(dev, n, rows, true);
        }
        for n in [1 << 14, 1 << 17, 1 << 20] {
            check_fft(dev, n, 1, false);
            check_fft(dev, n, 1, true);
        }
    }
}
