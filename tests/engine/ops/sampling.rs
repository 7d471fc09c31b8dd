//! Sampling against its f64 reference, which defines the kept set and the draw exactly.

use crate::common::devices;
use linseq::ops::sampling::{self, SamplingParams};
use linseq::ops::{softmax, Recorder};
use linseq::testing::{GuardedOutput, Rng};
use linseq::{DType, Tensor};

fn draw(dev: &linseq::Device, logits: &Tensor, rows: usize, p: &SamplingParams, step: u32) -> Vec<u32> {
    let ids = GuardedOutput::new(dev, &[rows], DType::U32).unwrap();
    let mut rec = Recorder::new(dev);
    sampling::sample(&mut rec, logits, p, step, &ids.tensor).unwrap();
    rec.run().unwrap();
    ids.read_words(dev).unwrap()
}

#[test]
fn sampling_matches_reference() {
    for dev in devices() {
        let mut rng = Rng::new(21);
        for &(rows, n) in &[(1, 1), (2, 7), (3, 256), (2, 1000), (1, 50280)] {
            let xs = rng.vec(rows * n, -8.0, 8.0);
            let logits = Tensor::from_slice(dev, &[rows, n], &xs).unwrap();
            let settings = [
                SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 1 },
                SamplingParams { temperature: 0.7, top_k: 5, top_p: 1.0, seed: 2 },
                SamplingParams { temperature: 1.3, top_k: 0, top_p: 0.9, seed: 3 },
                SamplingParams { temperature: 0.9, top_k: 40, top_p: 0.5, seed: 4 },
                SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 5 },
            ];
            for p in settings {
                for step in [0u32, 1, 77] {
                    let got = draw(dev, &logits, rows, &p, step);
                    let want: Vec<u32> = xs
                        .chunks(n)
                        .enumerate()
                        .map(|(r, row)| sampling::sample_ref(row, &p, step, r as u32))
                        .collect();
                    assert_eq!(got, want, "[{}] rows={rows} n={n} {p:?} step={step}", dev.caps().backend);
                }
            }
        }
    }
}

#[test]
fn top_k_one_is_greedy_and_draws_follow_the_distribution() {
    for dev in devices() {
        let mut rng = Rng::new(22);
        let n = 6;
        let xs: Vec<f32> = vec![0.0, 1.0, 2.0, 0.5, -1.0, 1.5];
        let logits = Tensor::from_slice(dev, &[1, n], &xs).unwrap();
        let greedy = softmax::argmax_ref(&xs);
        for seed in 0..5 {
            let p = SamplingParams { temperature: 1.0, top_k: 1, top_p: 1.0, seed };
            assert_eq!(draw(dev, &logits, 1, &p, 0), vec![greedy]);
        }
        // 2000 draws at temperature 1: frequencies within 4 sigma of the softmax.
        let rows = 2000;
        let many: Vec<f32> = (0..rows).flat_map(|_| xs.iter().copied()).collect();
        let logits = Tensor::from_slice(dev, &[rows, n], &many).unwrap();
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, seed: rng.next_u64() as u32 };
        let got = draw(dev, &logits, rows, &p, 3);
        let probs = softmax::softmax_ref(&xs, 1.0);
        for (i, &pi) in probs.iter().enumerate() {
            let count = got.iter().filter(|&&g| g as usize == i).count() as f64;
            let sigma = (rows as f64 * pi * (1.0 - pi)).sqrt();
            assert!(
                (count - rows as f64 * pi).abs() < 4.0 * sigma + 1.0,
                "token {i}: {count} draws, expected {}",
                rows as f64 * pi
            );
        }
    }
}

#[test]
fn sampling_rejects_bad_settings() {
    let dev = &devices()[0];
    let logits = Tensor::empty(dev, &[1, 4], DType::F32).unwrap();
    let ids = Tensor::empty(dev, &[1], DType::U32).unwrap();
    let mut rec = Recorder::new(dev);
    for p in [
        SamplingParams { temperature: -1.0, ..Default::default() },
        SamplingParams { temperature: f32::NAN, ..Default::default() },
        SamplingParams { top_p: 0.0, ..Default::default() },
        SamplingParams { top_p: 1.5, ..Default::default() },
    ] {
        assert!(sampling::sample(&mut rec, &logits, &p, 0, &ids).is_err(), "{p:?} accepted");
    }
}
