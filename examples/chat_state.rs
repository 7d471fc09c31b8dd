//! The embedding API end to end: load a checkpoint, feed a prompt, decode greedily, and fork
//! the conversation by snapshotting the recurrent state (a fixed-size copy, whatever the length
//! of the history).
//!
//! ```sh
//! cargo run --release --example chat_state -- examples/shakespeare-mamba2
//! ```

use linseq::model::tokenizer::Tokenizer;
use linseq::model::{self, Model, State};
use linseq::ops::softmax::argmax_ref;
use linseq::{DType, Device};

/// Greedy continuation of `state` by `n` tokens, starting from the logits of the last token;
/// the text comes through the tokenizer's incremental decoder.
fn continue_greedy(
    m: &Model,
    tok: &Tokenizer,
    dev: &Device,
    state: &mut State,
    mut last: Vec<f32>,
    n: usize,
) -> linseq::Result<String> {
    let mut stream = tok.stream();
    let mut out = String::new();
    for _ in 0..n {
        let next = argmax_ref(&last);
        out.push_str(&stream.push(next)?);
        last = m.forward(dev, &[next], &[1], state)?;
    }
    out.push_str(&stream.finish()?);
    Ok(out)
}

fn main() -> linseq::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "examples/shakespeare-mamba2".into());
    let dev = Device::new()?;
    let m = model::load(&dev, dir.as_ref(), DType::F32)?;
    println!("{}: {} parameters, vocab {}", dir, m.parameters(), m.vocab());
    let tok = Tokenizer::for_model(dir.as_ref(), m.vocab())?;

    let mut state = m.new_state(&dev, 1)?;
    let prompt_text = "KING HENRY:\n";
    let prompt = tok.encode(prompt_text)?;
    let logits = m.forward(&dev, &prompt, &[prompt.len()], &mut state)?;
    let last = logits[(prompt.len() - 1) * m.vocab()..].to_vec();

    // Fork: the same history, two continuations.
    let snapshot = state.snapshot(&dev)?;
    let tensors: usize = snapshot.tensors.iter().map(|t| t.2.len() * 4).sum();
    println!("state snapshot: {} tensors, {} KiB", snapshot.tensors.len(), tensors >> 10);
    let mut fork = state.try_clone(&m, &dev)?;
    let a = continue_greedy(&m, &tok, &dev, &mut state, last.clone(), 120)?;
    let b = continue_greedy(&m, &tok, &dev, &mut fork, last, 120)?;
    println!("--- continuation ---\n{prompt_text}{a}");
    assert_eq!(a, b, "a forked state continues identically");

    // Restore the saved snapshot and take another path with a different nudge.
    state.restore(&dev, &snapshot)?;
    let nudge_text = "My lord, ";
    let nudge = tok.encode(nudge_text)?;
    let logits = m.forward(&dev, &nudge, &[nudge.len()], &mut state)?;
    let c =
        continue_greedy(&m, &tok, &dev, &mut state, logits[(nudge.len() - 1) * m.vocab()..].to_vec(), 120)?;
    println!("--- restored, nudged ---\n{prompt_text}{nudge_text}{c}");
    Ok(())
}
