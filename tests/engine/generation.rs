//! The embedding API around generation: text streamed through a tokenizer's incremental
//! decoder (no character cut in two), stop criteria per sequence, and decoders and generators
//! that are `Send`, hold their state borrowed and can be cancelled.

use crate::common::devices;
use crate::models::{config, scratch, tensors, write_checkpoint};
use linseq::model::tokenizer::Tokenizer;
use linseq::model::{self, BatchStop, CancelToken, Decoder, Generator, StopCriteria};
use linseq::testing::Rng;
use linseq::DType;

/// GPT-2's byte → printable character map (the ByteLevel alphabet).
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        out[b as usize] = char::from_u32(c).unwrap();
    }
    out
}

/// A byte-level BPE tokenizer.json: the 256 byte tokens and a few merges, so that ASCII words
/// become multi-byte tokens and every CJK or emoji character spans several tokens.
fn bpe_tokenizer(dir: &std::path::Path) -> Tokenizer {
    let chars = byte_chars();
    let mut vocab = serde_json::Map::new();
    for (i, c) in chars.iter().enumerate() {
        vocab.insert(c.to_string(), i.into());
    }
    let merges = [("T", "o"), ("k", "y"), ("To", "ky"), ("Toky", "o")];
    for (i, (a, b)) in merges.iter().enumerate() {
        vocab.insert(format!("{a}{b}"), (256 + i).into());
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab, "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()}
    });
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    Tokenizer::from_file(&path).unwrap()
}

#[test]
fn streamed_text_never_cuts_a_character() {
    let text = "Tokyo 東京 🦀!";
    let dir = scratch("bpe");
    let bpe = bpe_tokenizer(&dir);
    let ids = bpe.encode(text).unwrap();
    assert!(ids.contains(&259), "the merges make `Tokyo` one token: {ids:?}");
    // Several ids per character for the CJK and the emoji: a naive per-id decode would print
    // replacement characters.
    assert!(ids.len() > text.chars().count(), "{ids:?}");
    for tok in [&bpe, &Tokenizer::Bytes] {
        let ids = tok.encode(text).unwrap();
        let mut stream = tok.stream();
        let mut out = String::new();
        for &id in &ids {
            let piece = stream.push(id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "piece {piece:?} of {ids:?}");
            out.push_str(&piece);
        }
        out.push_str(&stream.finish().unwrap());
        assert_eq!(out, text);
    }
    // An unfinished character at the end becomes one replacement character, not garbage.
    let mut s = Tokenizer::Bytes.stream();
    assert_eq!(s.push(0xF0).unwrap(), "");
    assert_eq!(s.push(0x9F).unwrap(), "");
    assert_eq!(s.finish().unwrap(), "\u{FFFD}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_criteria_end_each_sequence_on_its_own() {
    let dir = scratch("stops");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "mamba", "eos_token_id": 0}"#).unwrap();
    assert_eq!(StopCriteria::from_checkpoint(&dir).unwrap().eos, vec![0]);
    // generation_config.json wins, and may list several ids.
    std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": [2, 7]}"#).unwrap();
    let c = StopCriteria::from_checkpoint(&dir).unwrap().with_stop_strings(["END".to_string()]);
    assert_eq!(c.eos, vec![2, 7]);
    std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": "x"}"#).unwrap();
    assert!(StopCriteria::from_checkpoint(&dir).is_err());
    let mut stop = BatchStop::new(c, 3);
    // Sequence 0 stops at an eos id; 1 at a stop string split across pieces; 2 runs on.
    assert!(stop.accept_id(0, 5));
    assert!(!stop.accept_id(0, 7));
    assert!(stop.is_done(0) && !stop.accept_id(0, 5));
    assert_eq!(stop.accept_text(1, "the E"), "the ");
    assert_eq!(stop.accept_text(1, "N"), "");
    assert_eq!(stop.accept_text(1, "Dless"), "");
    assert!(stop.is_done(1));
    assert_eq!(stop.accept_text(2, "an E"), "an ");
    assert_eq!(stop.accept_text(2, "xit"), "Exit");
    assert!(!stop.is_done(2) && !stop.all_done());
    assert_eq!(stop.accept_text(2, "E"), "");
    assert_eq!(stop.flush(2), "E");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decoders_and_generators_are_send_and_cancellable() {
    fn is_send<T: Send>() {}
    is_send::<Decoder<'static, 'static>>();
    is_send::<Generator<'static, 'static>>();
    is_send::<CancelToken>();
    let dev = &devices()[0];
    let dir = scratch("cancel");
    write_checkpoint(&dir, &config("mamba"), &tensors(&mut Rng::new(96)));
    let m = model::load(dev, &dir, DType::F32).unwrap();
    let mut s = m.new_state(dev, 1).unwrap();
    m.prefill(dev, &[1, 2, 3], &[3], &mut s).unwrap();
    let greedy = model::SamplingParams { temperature: 0.0, ..Default::default() };
    let mut g = m.generator(dev, &mut s, &greedy, 8).unwrap();
    let token = g.cancel_token();
    // Generation on another thread; a cancelled token returns no steps.
    let n =
        std::thread::scope(|scope| scope.spawn(|| g.generate(&[4], 8, 0).unwrap()[0].len()).join().unwrap());
    assert_eq!(n, 8);
    token.cancel();
    assert!(g.generate(&[4], 8, 0).unwrap()[0].is_empty());
    token.reset();
    assert_eq!(g.generate(&[4], 3, 0).unwrap()[0].len(), 3);
    drop(g);
    // The state is free again once the generator is gone.
    m.forward(dev, &[5], &[1], &mut s).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
