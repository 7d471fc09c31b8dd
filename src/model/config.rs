//! `config.json` of a Hugging Face checkpoint, with the non-standard numbers that Python's json
//! writes: bare `Infinity`, `-Infinity` and `NaN`, and transformers' `{"__float__": "Infinity"}`.
//!
//! An architecture reads it as a typed serde struct in transformers' own field names
//! ([`Config::typed`]), with [`Size`] and [`Float`] for the fields that need bounds or Python's
//! special floats, then resolves defaults and checks the values in its own config type.

use crate::error::{Error, Result};
use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// A size field: a non-negative integer below 2³¹ (no real model size is larger, and the
/// bound keeps products of a few sizes from overflowing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v >= 1 << 31 {
            return Err(serde::de::Error::custom(format!("{v} is implausibly large")));
        }
        Ok(Size(v as usize))
    }
}

/// A float field: a JSON number or one of Python's specials (`Infinity`, `NaN`, or
/// transformers' `{"__float__": "Infinity"}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float(pub f64);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        as_f64(&v).map(Float).ok_or_else(|| serde::de::Error::custom(format!("expected a number, got {v}")))
    }
}

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

    /// The config as the typed struct `T` (transformers' field names); an error names the
    /// file and the field.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T> {
        serde_path_to_error::deserialize(&self.json).map_err(|e| {
            let path = e.path().to_string();
            Error::Model(format!("{}: `{path}`: {}", self.source, e.into_inner()))
        })
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
        #[derive(Deserialize, Debug)]
        struct Typed {
            n: Size,
            a: Float,
            c: Float,
            absent: Option<Size>,
        }
        let t: Typed = c.typed().unwrap();
        assert_eq!((t.n, t.a, t.absent), (Size(3), Float(f64::INFINITY), None));
        assert!(t.c.0.is_nan());
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Wrong {
            s: Size,
        }
        let e = c.typed::<Wrong>().unwrap_err().to_string();
        assert!(e.contains("test: `s`"), "{e}");
        let big = Config::parse(r#"{"n": 4294967296}"#, "big").unwrap();
        let e = big.typed::<Wrong>().unwrap_err().to_string();
        assert!(e.contains("`s`") && e.contains("missing"), "{e}");
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct N {
            n: Size,
        }
        let e = big.typed::<N>().unwrap_err().to_string();
        assert!(e.contains("`n`") && e.contains("implausibly large"), "{e}");
        assert!(Config::parse("{\"a\": ", "x").is_err());
    }
}
