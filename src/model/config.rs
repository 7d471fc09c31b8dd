//! `config.json` of a Hugging Face checkpoint, with the non-standard numbers that Python's json
//! writes: bare `Infinity`, `-Infinity` and `NaN`, and transformers' `{"__float__": "Infinity"}`.

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// A parsed config with typed, error-reporting accessors.
#[derive(Debug, Clone)]
pub struct Config {
    pub json: Value,
    source: String,
}

/// Rewrites bare `Infinity` / `-Infinity` / `NaN` tokens (outside strings) into
/// `{"__float__": "..."}` objects so that a strict JSON parser accepts them.
fn quote_special_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        let mut matched = false;
        for tok in ["-Infinity", "Infinity", "NaN"] {
            if rest.starts_with(tok) {
                out.push_str(&format!("{{\"__float__\": \"{tok}\"}}"));
                rest = &rest[tok.len()..];
                matched = true;
                break;
            }
        }
        if !matched {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A JSON number, or one of the `{"__float__": "Infinity"}` forms.
pub fn as_f64(v: &Value) -> Option<f64> {
    if let Some(x) = v.as_f64() {
        return Some(x);
    }
    match v.get("__float__")?.as_str()? {
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        s => s.parse().ok(),
    }
}

impl Config {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let json: Value = serde_json::from_str(&quote_special_numbers(text))
            .map_err(|e| Error::Model(format!("{source}: not valid JSON: {e}")))?;
        if !json.is_object() {
            return Err(Error::Model(format!("{source}: expected a JSON object")));
        }
        Ok(Self { json, source: source.to_string() })
    }

    fn missing(&self, key: &str, what: &str) -> Error {
        Error::Model(format!("{}: `{key}` is missing or not {what}", self.source))
    }

    pub fn model_type(&self) -> Result<String> {
        self.json["model_type"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.missing("model_type", "a string"))
    }

    /// A non-negative integer below 2³¹ (no real model size is larger, and the bound keeps
    /// products of a few sizes from overflowing).
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.json[key].as_u64().ok_or_else(|| self.missing(key, "a non-negative integer"))?;
        if v >= 1 << 31 {
            return Err(Error::Model(format!("{}: `{key}` = {v} is implausibly large", self.source)));
        }
        Ok(v as usize)
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.json.get(key).is_none_or(Value::is_null) {
            Ok(default)
        } else {
            self.usize(key)
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        as_f64(&self.json[key]).ok_or_else(|| self.missing(key, "a number"))
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        if self.json.get(key).is_none_or(Value::is_null) {
            Ok(default)
        } else {
            self.f64(key)
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.missing(key, "a boolean")),
        }
    }

    /// A two-number list such as `time_step_limit`, or `default` when absent.
    pub fn pair_or(&self, key: &str, default: (f64, f64)) -> Result<(f64, f64)> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Array(a)) if a.len() == 2 => match (as_f64(&a[0]), as_f64(&a[1])) {
                (Some(x), Some(y)) => Ok((x, y)),
                _ => Err(self.missing(key, "a pair of numbers")),
            },
            Some(_) => Err(self.missing(key, "a pair of numbers")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_non_standard_numbers() {
        let c = Config::parse(
            r#"{"model_type": "mamba2", "time_step_limit": [0.0, {"__float__": "Infinity"}],
                "a": Infinity, "b": -Infinity, "c": NaN, "s": "NaN and Infinity stay text", "n": 3}"#,
            "test",
        )
        .unwrap();
        assert_eq!(c.pair_or("time_step_limit", (1.0, 2.0)).unwrap(), (0.0, f64::INFINITY));
        assert_eq!(c.f64("a").unwrap(), f64::INFINITY);
        assert_eq!(c.f64("b").unwrap(), f64::NEG_INFINITY);
        assert!(c.f64("c").unwrap().is_nan());
        assert_eq!(c.json["s"].as_str().unwrap(), "NaN and Infinity stay text");
        assert_eq!(c.usize("n").unwrap(), 3);
        assert_eq!(c.usize_or("absent", 7).unwrap(), 7);
        let e = c.usize("s").unwrap_err().to_string();
        assert!(e.contains("`s`") && e.contains("integer"), "{e}");
        assert!(Config::parse("[1, 2]", "x").is_err());
        assert!(Config::parse("{\"a\": ", "x").is_err());
    }
}
