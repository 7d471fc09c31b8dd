//! Shader variant system.
//!
//! A WGSL source lives in `shaders/<family>.wgsl`. A *variant* is that source plus a key of
//! specialisations (dtype, workgroup size, tile sizes, subgroups, f16, cooperative matrices),
//! applied by a tiny preprocessor:
//! - `{{NAME}}` is replaced by the value of define `NAME`;
//! - `#if NAME` / `#else` / `#endif` keep lines when `NAME` is defined and not `0`/`false`.
//!
//! Every variant has a unique dotted name (`matmul.gemm.f16w`), so the CLI, tests and benchmarks
//! can address each one. Variants declare [`Requirements`]; [`Variant::supported`] checks them
//! against the device, and op code only ever picks supported variants.

mod cache;
mod preprocess;
pub mod validate;

pub use cache::{Pipeline, PipelineCache};
pub use preprocess::preprocess;

use crate::device::Capabilities;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A WGSL source file of one op family, embedded at compile time.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! family {
    ($name:literal) => {
        Family { name: $name, source: include_str!(concat!("../../shaders/", $name, ".wgsl")) }
    };
}

/// Every shader family shipped with linseq.
pub const FAMILIES: &[Family] = &[
    family!("copy"),
    family!("elementwise"),
    family!("matmul"),
    family!("matmul_coop"),
    family!("norm"),
    family!("embedding"),
    family!("softmax"),
    family!("sampling"),
    family!("selective_scan"),
    family!("mamba_step"),
    family!("ssd"),
    family!("causal_conv1d"),
];

/// WGSL libraries pulled into families with `#include NAME`; not variants themselves.
pub const LIBRARIES: &[Family] = &[family!("reduce")];

/// Replaces `#include NAME` lines with the library's text (one level deep).
fn expand_includes(src: &str) -> Result<String, String> {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        if let Some(name) = line.trim_start().strip_prefix("#include ") {
            let lib = LIBRARIES
                .iter()
                .find(|l| l.name == name.trim())
                .ok_or(format!("#include {}: no such library", name.trim()))?;
            out.push_str(lib.source);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// Looks up a family by name.
pub fn family(name: &str) -> Result<&'static Family> {
    FAMILIES
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| Error::UnsupportedVariant(format!("no shader family {name:?}")))
}

/// Device features a variant needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirements {
    pub f16: bool,
    pub subgroups: bool,
    /// 16×16×16 cooperative matrices with f16 inputs and f32 accumulation.
    pub coop_matrix: bool,
}

impl Requirements {
    /// True when `caps` provides everything required.
    pub fn met_by(&self, caps: &Capabilities) -> bool {
        (!self.f16 || caps.shader_f16)
            && (!self.subgroups || caps.subgroups)
            && (!self.coop_matrix || caps.coop_f16_16x16_f32())
    }

    /// Human-readable list, e.g. "f16+subgroups" or "-".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.f16 {
            parts.push("f16");
        }
        if self.subgroups {
            parts.push("subgroups");
        }
        if self.coop_matrix {
            parts.push("coop_matrix");
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join("+")
        }
    }
}

/// A define marking a variant whose loops are all bounded by its parameters: it is compiled
/// without wgpu's forced loop bounding (an iteration counter and exit test in every loop, which
/// cost the SSD kernels 40% of their time on the H200).
pub const BOUNDED_LOOPS: &str = "BOUNDED_LOOPS";

/// One registered, addressable specialisation of a shader family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    /// Unique dotted name: `<family>.<kernel>[.<specialisation>...]`.
    pub name: String,
    pub family: &'static str,
    pub entry: &'static str,
    /// Preprocessor defines; together with family and entry this is the cache key.
    pub defines: BTreeMap<&'static str, String>,
    pub requires: Requirements,
}

impl Variant {
    /// A variant of `family` with entry point `entry`. Activation inputs are bound read-only
    /// (`ACT = read`) unless [`Variant::arena`] is applied.
    pub fn new(name: impl Into<String>, family: &'static str, entry: &'static str) -> Self {
        let mut defines = BTreeMap::new();
        defines.insert("ACT", "read".to_string());
        Self { name: name.into(), family, entry, defines, requires: Requirements::default() }
    }

    /// The arena form of this variant: activation inputs declared `read_write`, so that a
    /// dispatch may bind several ranges of one arena buffer as inputs and outputs (wgpu rejects
    /// a buffer bound both read-only and writable, but accepts it bound writable several times).
    /// Named `<name>.rw`.
    pub fn arena(&self) -> Self {
        if self.is_arena() {
            return self.clone();
        }
        let mut v = self.clone();
        v.defines.insert("ACT", "read_write".to_string());
        v.name.push_str(".rw");
        v
    }

    /// Whether this is an arena (`.rw`) form.
    pub fn is_arena(&self) -> bool {
        self.defines.get("ACT").is_some_and(|a| a == "read_write")
    }

    /// Adds a define (builder style).
    pub fn define(mut self, key: &'static str, value: impl ToString) -> Self {
        self.defines.insert(key, value.to_string());
        self
    }

    /// Marks the variant as needing native f16 (`enable f16;` is emitted).
    pub fn needs_f16(mut self) -> Self {
        self.requires.f16 = true;
        self
    }

    /// Marks the variant as needing subgroup built-ins.
    pub fn needs_subgroups(mut self) -> Self {
        self.requires.subgroups = true;
        self
    }

    /// Sets the `SUBGROUPS` define and, when on, the subgroup requirement.
    pub fn with_subgroups(self, on: bool) -> Self {
        let v = self.define("SUBGROUPS", on as u32);
        if on {
            v.needs_subgroups()
        } else {
            v
        }
    }

    /// Marks the variant as needing cooperative matrices (implies f16).
    pub fn needs_coop_matrix(mut self) -> Self {
        self.requires.coop_matrix = true;
        self.requires.f16 = true;
        self
    }

    /// Whether the device can run this variant.
    pub fn supported(&self, caps: &Capabilities) -> bool {
        self.requires.met_by(caps)
    }

    /// The final WGSL text: enable directives, then the preprocessed family source.
    pub fn wgsl(&self) -> Result<String> {
        let fam = family(self.family)?;
        let mut out = String::new();
        if self.requires.f16 {
            out.push_str("enable f16;\n");
        }
        if self.requires.coop_matrix {
            out.push_str("enable wgpu_cooperative_matrix;\n");
        }
        // Subgroup built-ins need no directive in naga 30 (it rejects `enable subgroups;`).
        let body = expand_includes(fam.source)
            .and_then(|src| preprocess(&src, &self.defines))
            .map_err(|message| Error::Shader { variant: self.name.clone(), message })?;
        let _ = writeln!(out, "// variant {}", self.name);
        out.push_str(&body);
        Ok(out)
    }
}

/// Every registered variant, from every op family, each in its plain and arena (`.rw`) form.
pub fn registry() -> Vec<Variant> {
    let base = base_variants();
    let arena: Vec<Variant> = base.iter().map(Variant::arena).collect();
    base.into_iter().chain(arena).collect()
}

fn base_variants() -> Vec<Variant> {
    let mut all = Vec::new();
    all.extend(crate::ops::copy::variants());
    all.extend(crate::ops::elementwise::variants());
    all.extend(crate::ops::matmul::variants());
    all.extend(crate::ops::norm::variants());
    all.extend(crate::ops::embedding::variants());
    all.extend(crate::ops::softmax::variants());
    all.extend(crate::ops::sampling::variants());
    all.extend(crate::ops::selective_scan::variants());
    all.extend(crate::ops::mamba_step::variants());
    all.extend(crate::ops::ssd::variants());
    all.extend(crate::ops::conv1d::variants());
    all
}

/// Finds a registered variant by its exact name.
pub fn find(name: &str) -> Result<Variant> {
    registry().into_iter().find(|v| v.name == name).ok_or_else(|| {
        Error::UnsupportedVariant(format!("no variant named {name:?}; `linseq shaders --list` lists them"))
    })
}
