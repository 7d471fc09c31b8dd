//! When generation stops, and how its text reaches the user: end-of-sequence ids from the
//! checkpoint (`generation_config.json`, else `config.json`), user stop strings, each
//! sequence of a batch stopping on its own, and text streamed without cutting a character.

use super::config::Config;
use crate::error::{Error, Result};
use std::path::Path;

/// What ends a sequence: any of `eos` generated, or any of `stop_strings` in its text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StopCriteria {
    pub eos: Vec<u32>,
    pub stop_strings: Vec<String>,
}

impl StopCriteria {
    /// The checkpoint's `eos_token_id` (a number or a list), from `generation_config.json`
    /// when it has one, else from `config.json`; none when neither names one.
    pub fn from_checkpoint(dir: &Path) -> Result<Self> {
        for file in ["generation_config.json", "config.json"] {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
            let cfg = Config::parse(&text, &path.display().to_string())?;
            let eos = match cfg.json.get("eos_token_id") {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().map(|v| v.as_u64()).collect::<Option<Vec<_>>>()
                }
                Some(v) => v.as_u64().map(|id| vec![id]),
            };
            let eos = eos.ok_or_else(|| {
                Error::Model(format!("{}: eos_token_id must be a token id or a list of them", path.display()))
            })?;
            return Ok(Self { eos: eos.into_iter().map(|id| id as u32).collect(), stop_strings: Vec::new() });
        }
        Ok(Self::default())
    }

    pub fn with_stop_strings(mut self, stops: impl IntoIterator<Item = String>) -> Self {
        self.stop_strings.extend(stops.into_iter().filter(|s| !s.is_empty()));
        self
    }
}

/// Tracks every sequence of a batch against the stop criteria. Feed each sequence's new ids
/// (and, for stop strings, its new text); a stopped sequence takes nothing more, while the
/// others go on.
#[derive(Debug, Clone)]
pub struct BatchStop {
    criteria: StopCriteria,
    done: Vec<bool>,
    /// Per sequence, text held back because it could be the start of a stop string.
    held: Vec<String>,
}

impl BatchStop {
    pub fn new(criteria: StopCriteria, sequences: usize) -> Self {
        Self { criteria, done: vec![false; sequences], held: vec![String::new(); sequences] }
    }

    pub fn is_done(&self, seq: usize) -> bool {
        self.done[seq]
    }

    pub fn all_done(&self) -> bool {
        self.done.iter().all(|&d| d)
    }

    /// Takes sequence `seq`'s next id; false (and the sequence is done) when it is an
    /// end-of-sequence id or the sequence had already stopped. The id is then not part of the
    /// output.
    pub fn accept_id(&mut self, seq: usize, id: u32) -> bool {
        if self.done[seq] {
            return false;
        }
        if self.criteria.eos.contains(&id) {
            self.done[seq] = true;
            return false;
        }
        true
    }

    /// Takes sequence `seq`'s new text; returns what may be shown now. Text that could be the
    /// start of a stop string is held back until it is known not to be; a completed stop
    /// string ends the sequence, and neither it nor anything after it is returned.
    pub fn accept_text(&mut self, seq: usize, piece: &str) -> String {
        if self.done[seq] && self.held[seq].is_empty() {
            return String::new();
        }
        let mut text = std::mem::take(&mut self.held[seq]);
        text.push_str(piece);
        if let Some(at) = self.criteria.stop_strings.iter().filter_map(|s| text.find(s.as_str())).min() {
            self.done[seq] = true;
            text.truncate(at);
            return text;
        }
        if self.done[seq] {
            return text; // stopped by an eos id: flush what was held
        }
        // Hold back the longest tail that begins some stop string.
        let keep = self
            .criteria
            .stop_strings
            .iter()
            .flat_map(|s| (1..s.len()).filter(move |&k| s.is_char_boundary(k)).map(move |k| &s[..k]))
            .filter(|prefix| text.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = text.len() - keep;
        self.held[seq] = text[cut..].to_string();
        text.truncate(cut);
        text
    }

    /// What is still held back for `seq` (at the end of generation: it was no stop string).
    pub fn flush(&mut self, seq: usize) -> String {
        std::mem::take(&mut self.held[seq])
    }
}
