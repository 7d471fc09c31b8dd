//! Shader variant system.
//!
//! A WGSL source lives in `shaders/<family>.wgsl` (or a folder of the family's name) and is
//! owned by its op family in `ops`, which also registers the variants; this layer knows no op. A *variant* is that source plus a key of
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
#[cfg(not(any(target_os = "macos", target_os = "ios", target_arch = "wasm32")))]
pub mod stats;
pub mod uniform;
pub mod validate;

pub use cache::{Pipeline, PipelineCache};
pub use preprocess::preprocess;
pub use uniform::{FlagSet, Uniform, UniformLayout};

use crate::device::Capabilities;
use crate::error::{Error, Result};

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One WGSL file: an op family's shader, or a library pulled in with `#include NAME`. Op
/// families own their sources (declared with [`wgsl_source!`]); this layer only expands and
/// compiles them. Compared and hashed by name: names are unique.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub name: &'static str,
    pub text: &'static str,
    /// Family-private libraries that `#include` may name besides the shared [`LIBRARIES`].
    pub parts: &'static [Source],
}

impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Source {}
impl std::hash::Hash for Source {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}
impl PartialOrd for Source {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Source {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(other.name)
    }
}

/// Declares a [`Source`] from `shaders/<path>.wgsl`, embedded at compile time:
/// `wgsl_source!("ssd/ssd")` or `wgsl_source!("ssd/ssd", parts: [SSD_COMMON])`.
#[macro_export]
macro_rules! wgsl_source {
    ($path:literal) => {
        $crate::wgsl_source!($path, parts: [])
    };
    ($path:literal, parts: [$($part:expr),*]) => {
        $crate::shader::Source {
            name: $path,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $path, ".wgsl")),
            parts: &[$($part),*],
        }
    };
}

/// Shared WGSL libraries, available to every family's `#include NAME`; not variants themselves.
pub const LIBRARIES: &[Source] = &[
    wgsl_source!("lib/reduce"),
    wgsl_source!("lib/flags"),
    wgsl_source!("lib/f16_pack"),
    wgsl_source!("lib/packed_seqs"),
    wgsl_source!("lib/activations"),
    wgsl_source!("lib/finite"),
    wgsl_source!("lib/fft_stages"),
    wgsl_source!("lib/decode_step"),
];

/// Replaces `#include NAME` lines with the library's text, recursively (a library may include
/// another; a cycle is an error).
fn expand_includes(src: &Source) -> Result<String, String> {
    fn expand(text: &str, parts: &[Source], depth: usize, out: &mut String) -> Result<(), String> {
        if depth > 8 {
            return Err("#include nested more than 8 deep (a cycle?)".into());
        }
        for line in text.lines() {
            if let Some(name) = line.trim_start().strip_prefix("#include ") {
                let name = name.trim();
                let lib = parts
                    .iter()
                    .chain(LIBRARIES)
                    .find(|l| l.name == name || l.name.rsplit('/').next() == Some(name))
                    .ok_or(format!("#include {name}: no such library"))?;
                expand(lib.text, parts, depth + 1, out)?;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(())
    }
    let mut out = String::with_capacity(src.text.len());
    expand(src.text, src.parts, 0, &mut out)?;
    Ok(out)
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

/// A define marking a variant whose every array index is bounded by construction (by the
/// invocation index, constants, and sizes and chunk lengths the host checked, with storage
/// rows clamped in the kernel): it is compiled without wgpu's injected index clamps. Those
/// clamp every dynamic index into workgroup and private arrays (`min(i, len − 1)`), which also
/// keeps the driver from folding constant offsets into the loads; they cost the tensor-core
/// delta rule a quarter of its time on the H200. Storage accesses keep the driver's own
/// robustness where it has it (Vulkan's robustBufferAccess2), which wgpu relies on there
/// either way; where it has none, they are as safe as the kernel's own clamps.
pub const UNCHECKED_INDICES: &str = "UNCHECKED_INDICES";

/// A define marking a variant that writes every workgroup variable before it reads it (no
/// accumulator or flag that counts on starting at zero): it is compiled without wgpu's zeroing
/// of workgroup memory at the start of each workgroup (a pass over all of it and a barrier).
/// `LINSEQ_ZERO_WORKGROUP=1` zeroes it anyway.
pub const WRITES_BEFORE_READS: &str = "WRITES_BEFORE_READS";

/// One registered, addressable specialisation of a shader family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    /// Unique dotted name: `<family>.<kernel>[.<specialisation>...]`.
    pub name: String,
    /// The WGSL file, owned by the op family.
    pub source: &'static Source,
    pub entry: &'static str,
    /// Preprocessor defines; together with family and entry this is the cache key.
    pub defines: BTreeMap<&'static str, String>,
    pub requires: Requirements,
    /// The Rust struct of its uniform block, checked against the WGSL's by
    /// [`uniform::check_layout`] and against each dispatch's parameters by the recorder.
    pub params: Option<UniformLayout>,
    /// Named flag bits, emitted into the WGSL as constants.
    pub flags: Vec<FlagSet>,
}

impl Variant {
    /// A variant of `family` with entry point `entry`. Activation inputs are bound read-only
    /// (`ACT = read`) unless [`Variant::arena`] is applied.
    pub fn new(name: impl Into<String>, source: &'static Source, entry: &'static str) -> Self {
        let mut defines = BTreeMap::new();
        defines.insert("ACT", "read".to_string());
        Self {
            name: name.into(),
            source,
            entry,
            defines,
            requires: Requirements::default(),
            params: None,
            flags: Vec::new(),
        }
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

    /// Declares the uniform block's Rust type.
    /// Defines each of `names` as 1 when it is `chosen`, else 0: the `#if` switches of a source
    /// that holds several entry points, one of them compiled per variant.
    pub fn one_of(mut self, names: impl IntoIterator<Item = &'static str>, chosen: &'static str) -> Self {
        for name in names {
            self = self.define(name, (name == chosen) as u32);
        }
        self
    }

    pub fn with_params<P: Uniform>(mut self) -> Self {
        self.params = Some(P::LAYOUT);
        self
    }

    /// Hands the WGSL a set of named flag constants.
    pub fn with_flags(mut self, flags: FlagSet) -> Self {
        self.flags.push(flags);
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

    /// The compiled pipeline of this variant on `dev` (compiled on first use, then cached).
    pub fn pipeline(&self, dev: &crate::Device) -> Result<std::sync::Arc<Pipeline>> {
        PipelineCache::of(dev).get(dev, self)
    }

    /// The final WGSL text: enable directives, then the preprocessed family source.
    pub fn wgsl(&self) -> Result<String> {
        let mut out = String::new();
        if self.requires.f16 {
            out.push_str("enable f16;\n");
        }
        if self.requires.coop_matrix {
            out.push_str("enable wgpu_cooperative_matrix;\n");
        }
        // Subgroup built-ins need no directive in naga 30 (it rejects `enable subgroups;`).
        let body = expand_includes(self.source)
            .and_then(|src| preprocess(&src, &self.defines))
            .map_err(|message| Error::Shader { variant: self.name.clone(), message })?;
        let _ = writeln!(out, "// variant {}", self.name);
        for flags in &self.flags {
            out.push_str(&flags.wgsl());
        }
        out.push_str(&body);
        Ok(out)
    }
}
