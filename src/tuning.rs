//! Tuned variant choices as plain data: the cache file, its tables and where it lives. This
//! sits below the device (which loads its table at start-up) and knows nothing of the ops or
//! the benchmarks; [`crate::tune`] fills it by running them.
//!
//! - **Key.** A cache file holds one table per (adapter, driver, backend, linseq version); a
//!   device uses only the table that matches it, so a file can be shipped with an application
//!   and cover several GPUs ([`Device::install_tuning`] takes one built in).
//! - **Where.** `LINSEQ_TUNE_CACHE` names the file (`off` disables loading); otherwise
//!   `$XDG_CACHE_HOME/linseq/tune.json` or `~/.cache/linseq/tune.json`. [`Device::new`] loads
//!   it at start-up; a missing file is an empty cache, an unreadable one a logged warning.
//! - **Tuning** is explicit (`linseq tune`, [`crate::tune::tune_ops`]): it runs the op benchmarks on a
//!   representative shape per bucket and caches a bucket only if *every* candidate agreed with
//!   the reference there. Nothing tunes implicitly, so `cargo test` never pays for it.
//! - **Use.** Op choosers ([`crate::ops::selective_scan::ScanKernel::choose`],
//!   [`crate::ops::ssd::SsdKernel::choose`]) ask [`Device::tuned`] and fall back to their
//!   built-in heuristic when the bucket is missing or its variant does not run the shape.
//!
//! [`Device::new`]: crate::Device::new
//! [`Device::install_tuning`]: crate::Device::install_tuning
//! [`Device::tuned`]: crate::Device::tuned

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format version of the cache file.
pub const FORMAT: u32 = 1;

/// What a table of tuned choices is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneKey {
    pub adapter: String,
    pub driver: String,
    pub backend: String,
    pub linseq: String,
}

impl TuneKey {
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        Self {
            adapter: info.name.clone(),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            backend: format!("{:?}", info.backend),
            linseq: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The tuned choice of one (op, bucket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneEntry {
    /// The chosen kernel's name (as the op's chooser names it, e.g. `ssd.chunked64`).
    pub variant: String,
    /// The shape it was measured on.
    pub measured_on: String,
    /// Median seconds of every candidate there.
    pub candidates: BTreeMap<String, f64>,
}

/// Tuned choices for one key; entries are keyed `op/bucket`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneTable {
    pub key: TuneKey,
    pub entries: BTreeMap<String, TuneEntry>,
}

impl TuneTable {
    pub fn new(key: TuneKey) -> Self {
        Self { key, entries: BTreeMap::new() }
    }

    pub fn get(&self, op: &str, bucket: &str) -> Option<&TuneEntry> {
        self.entries.get(&format!("{op}/{bucket}"))
    }
}

/// A cache file: tables for any number of keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TuneFile {
    pub format: u32,
    pub tables: Vec<TuneTable>,
}

impl TuneFile {
    /// Parses a cache (for example one shipped inside an application with `include_str!`).
    pub fn parse(text: &str) -> Result<Self> {
        let f: TuneFile = serde_json::from_str(text)
            .map_err(|e| Error::Invalid(format!("not a linseq tuning cache: {e}")))?;
        if f.format != FORMAT {
            return Err(Error::Invalid(format!(
                "tuning cache format {} (this build reads format {FORMAT}); re-run `linseq tune`",
                f.format
            )));
        }
        Ok(f)
    }

    /// Reads a cache file; a missing file is an empty cache.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self { format: FORMAT, tables: Vec::new() })
            }
            Err(e) => Err(Error::Invalid(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the cache (through a temporary file and a rename, so readers never see half a
    /// file), creating the directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| Error::Invalid(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Errors unless `path` can be written (its directory created, a file made beside it).
    pub fn check_writable(path: &Path) -> Result<()> {
        let io = |e: std::io::Error| {
            Error::Invalid(format!("{}: cannot write the tuning cache: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let probe = path.with_extension("json.probe");
        std::fs::write(&probe, b"").map_err(io)?;
        std::fs::remove_file(&probe).map_err(io)
    }

    pub fn table(&self, key: &TuneKey) -> Option<&TuneTable> {
        self.tables.iter().find(|t| &t.key == key)
    }

    /// Merges a table's entries into the one with the same key (or adds it).
    pub fn merge(&mut self, table: TuneTable) {
        self.format = FORMAT;
        match self.tables.iter_mut().find(|t| t.key == table.key) {
            Some(t) => t.entries.extend(table.entries),
            None => self.tables.push(table),
        }
    }
}

/// The cache file's path: `LINSEQ_TUNE_CACHE`, else the user cache directory; None when
/// disabled (`LINSEQ_TUNE_CACHE=off`) or when there is no home directory.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LINSEQ_TUNE_CACHE") {
        return (p != "off" && !p.is_empty()).then(|| PathBuf::from(p));
    }
    let base =
        std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("linseq").join("tune.json"))
}

/// The table for this adapter from the default cache file (empty if there is none).
pub(crate) fn load_for(info: &wgpu::AdapterInfo) -> TuneTable {
    let key = TuneKey::of(info);
    let Some(path) = default_path() else { return TuneTable::new(key) };
    match TuneFile::load(&path) {
        Ok(f) => f.table(&key).cloned().unwrap_or_else(|| TuneTable::new(key)),
        Err(e) => {
            log::warn!("ignoring the tuning cache: {e}");
            TuneTable::new(key)
        }
    }
}
