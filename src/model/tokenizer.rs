//! Text ↔ token ids: `tokenizer.json` through the `tokenizers` crate when the checkpoint has
//! one, else byte-level ids (token id = byte value) for models with a vocabulary of 256.

use crate::error::{Error, Result};
use std::path::Path;

pub enum Tokenizer {
    /// Token id = byte value.
    Bytes,
    /// A Hugging Face tokenizer.json.
    Hf(Box<tokenizers::Tokenizer>),
}

impl Tokenizer {
    /// The checkpoint's tokenizer.json, or bytes when there is none and `vocab` is 256.
    pub fn for_model(dir: &Path, vocab: usize) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if path.exists() {
            return Self::from_file(&path);
        }
        if vocab == 256 {
            Ok(Tokenizer::Bytes)
        } else {
            Err(Error::Model(format!(
                "{}: no tokenizer.json, and the vocabulary ({vocab}) is not byte-level (256)",
                dir.display()
            )))
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        tokenizers::Tokenizer::from_file(path)
            .map(|t| Tokenizer::Hf(Box::new(t)))
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Tokenizer::Hf(t) => t
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Invalid(format!("tokenizer: {e}"))),
        }
    }

    /// Raw bytes of a file as ids: the bytes themselves for byte-level models, else the
    /// file's text (lossily decoded as UTF-8) through the tokenizer.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Bytes => Ok(bytes.iter().map(|&b| b as u32).collect()),
            Tokenizer::Hf(_) => self.encode(&String::from_utf8_lossy(bytes)),
        }
    }

    /// The bytes of `ids` (for byte-level ids, exactly; for a tokenizer, its UTF-8 text).
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>> {
        match self {
            Tokenizer::Bytes => Ok(ids.iter().map(|&i| i.min(255) as u8).collect()),
            Tokenizer::Hf(t) => t
                .decode(ids, false)
                .map(String::into_bytes)
                .map_err(|e| Error::Invalid(format!("tokenizer: {e}"))),
        }
    }
}

/// Turns ids into text as they are generated, one piece per id, never cutting a character:
/// bytes of an unfinished UTF-8 sequence (a byte-level model, or a BPE token that holds part
/// of a character) are held until the character is whole. For a tokenizer it decodes a short
/// window of recent ids (a prefix and the new ones), as transformers' streamer does, so the
/// cost per id does not grow with the text.
pub struct TextStream<'t> {
    tok: &'t Tokenizer,
    ids: Vec<u32>,
    /// Start of the decoded window, and of its part already shown.
    prefix: usize,
    read: usize,
    /// Byte-level: bytes not yet shown.
    bytes: Vec<u8>,
}

impl Tokenizer {
    /// A stream that decodes ids as they come.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream { tok: self, ids: Vec::new(), prefix: 0, read: 0, bytes: Vec::new() }
    }
}

impl TextStream<'_> {
    /// Takes the next id; returns the text it completes (often empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        match self.tok {
            Tokenizer::Bytes => {
                self.bytes.push(id.min(255) as u8);
                Ok(self.take_valid(false))
            }
            Tokenizer::Hf(_) => {
                self.ids.push(id);
                let shown = self.text(self.prefix, self.read)?;
                let now = self.text(self.prefix, self.ids.len())?;
                if now.len() <= shown.len() || now.ends_with('\u{FFFD}') {
                    return Ok(String::new()); // a character still incomplete
                }
                let Some(new) = now.get(shown.len()..).filter(|_| now.starts_with(&shown)) else {
                    return Ok(String::new());
                };
                let new = new.to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                Ok(new)
            }
        }
    }

    /// Whatever is left at the end (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        match self.tok {
            Tokenizer::Bytes => Ok(self.take_valid(true)),
            Tokenizer::Hf(_) => {
                let shown = self.text(self.prefix, self.read)?;
                let now = self.text(self.prefix, self.ids.len())?;
                self.prefix = self.ids.len();
                self.read = self.ids.len();
                Ok(now.get(shown.len()..).unwrap_or_default().to_string())
            }
        }
    }

    fn text(&self, lo: usize, hi: usize) -> Result<String> {
        let bytes = self.tok.decode(&self.ids[lo..hi])?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The longest valid UTF-8 prefix of the held bytes (invalid bytes become U+FFFD; an
    /// incomplete sequence at the end waits, unless `all`).
    fn take_valid(&mut self, all: bool) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.bytes) {
                Ok(s) => {
                    out.push_str(s);
                    self.bytes.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.bytes[..good]).expect("valid prefix"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.bytes.drain(..good + bad);
                        }
                        None if all => {
                            out.push('\u{FFFD}');
                            self.bytes.clear();
                            return out;
                        }
                        None => {
                            self.bytes.drain(..good);
                            return out;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_tokenizer_json() {
        let dir = std::env::temp_dir().join(format!("linseq-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // No tokenizer.json: bytes for vocab 256, an error otherwise.
        let t = Tokenizer::for_model(&dir, 256).unwrap();
        assert_eq!(t.encode("Hé").unwrap(), vec![72, 195, 169]);
        assert_eq!(t.decode(&[72, 195, 169]).unwrap(), "Hé".as_bytes());
        assert!(Tokenizer::for_model(&dir, 50_280).is_err());
        // A word-level tokenizer.json.
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"hello":0,"world":1,"[UNK]":2},"unk_token":"[UNK]"}}"#;
        std::fs::write(dir.join("tokenizer.json"), json).unwrap();
        let t = Tokenizer::for_model(&dir, 3).unwrap();
        assert_eq!(t.encode("hello world").unwrap(), vec![0, 1]);
        assert_eq!(t.encode("hello there").unwrap(), vec![0, 2]);
        assert_eq!(t.decode(&[0, 1]).unwrap(), b"hello world");
        std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
        assert!(Tokenizer::for_model(&dir, 3).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
