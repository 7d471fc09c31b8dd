//! Offline portability check: parse and validate each variant with naga, then translate it to
//! SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL). Needs no GPU, so CI can prove that
//! what ships compiles for backends it cannot run.

use super::{Requirements, Variant};
use naga::back;
use naga::valid::{
    Capabilities as ValCaps, ModuleInfo, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator,
};
use serde::Serialize;

/// A translation target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Target {
    SpirV,
    Msl,
    Hlsl,
    Glsl,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::SpirV, Target::Msl, Target::Hlsl, Target::Glsl];

    pub fn name(self) -> &'static str {
        match self {
            Target::SpirV => "spirv",
            Target::Msl => "msl",
            Target::Hlsl => "hlsl",
            Target::Glsl => "glsl",
        }
    }

    /// Whether naga 30's writer for this target can express the variant's features at all.
    /// A variant is not expected to reach a target that returns `Some(reason)`.
    pub fn unsupported_reason(self, req: Requirements) -> Option<&'static str> {
        match self {
            Target::Hlsl if req.coop_matrix => Some("naga's HLSL writer has no cooperative matrices"),
            Target::Glsl if req.coop_matrix => Some("naga's GLSL writer has no cooperative matrices"),
            Target::Glsl if req.f16 => {
                Some("naga's GLSL writer has no f16 (and wgpu's GL backend no SHADER_F16)")
            }
            _ => None,
        }
    }
}

fn validator_caps(req: Requirements) -> ValCaps {
    // f16 <-> f32 packing built-ins (unpack2x16float) exist on every backend wgpu targets.
    let mut caps = ValCaps::SHADER_FLOAT16_IN_FLOAT32;
    if req.f16 {
        caps |= ValCaps::SHADER_FLOAT16;
    }
    if req.subgroups {
        caps |= ValCaps::SUBGROUP | ValCaps::SUBGROUP_BARRIER;
    }
    if req.coop_matrix {
        caps |= ValCaps::COOPERATIVE_MATRIX;
    }
    caps
}

/// Parses and validates WGSL allowing exactly the capabilities `req` declares.
pub fn parse_and_validate(wgsl: &str, req: Requirements) -> Result<(naga::Module, ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    let mut v = Validator::new(ValidationFlags::all(), validator_caps(req));
    if req.subgroups {
        v.subgroup_stages(ShaderStages::COMPUTE);
        v.subgroup_operations(SubgroupOperationSet::all());
    }
    let info = v.validate(&module).map_err(|e| e.emit_to_string(wgsl))?;
    Ok((module, info))
}

/// Translates a validated module's compute entry point to `target`.
pub fn translate(
    module: &naga::Module,
    info: &ModuleInfo,
    entry: &str,
    target: Target,
) -> Result<(), String> {
    let stage = naga::ShaderStage::Compute;
    match target {
        Target::SpirV => {
            let opts = back::spv::Options { lang_version: (1, 3), ..Default::default() };
            let po = back::spv::PipelineOptions { shader_stage: stage, entry_point: entry.into() };
            back::spv::write_vec(module, info, &opts, Some(&po)).map(|_| ()).map_err(|e| e.to_string())
        }
        Target::Msl => {
            let opts = back::msl::Options {
                lang_version: (3, 0),
                fake_missing_bindings: true,
                ..Default::default()
            };
            let po =
                back::msl::PipelineOptions { entry_point: Some((stage, entry.into())), ..Default::default() };
            back::msl::write_string(module, info, &opts, &po).map(|_| ()).map_err(|e| e.to_string())
        }
        Target::Hlsl => {
            let opts = back::hlsl::Options {
                shader_model: back::hlsl::ShaderModel::V6_2,
                fake_missing_bindings: true,
                ..Default::default()
            };
            let po = back::hlsl::PipelineOptions { entry_point: Some((stage, entry.into())) };
            let mut out = String::new();
            let mut w = back::hlsl::Writer::new(&mut out, &opts, &po);
            w.write(module, info, None).map(|_| ()).map_err(|e| e.to_string())
        }
        Target::Glsl => {
            let opts =
                back::glsl::Options { version: back::glsl::Version::new_gles(310), ..Default::default() };
            let po = back::glsl::PipelineOptions {
                shader_stage: stage,
                entry_point: entry.into(),
                multiview: None,
            };
            let mut out = String::new();
            let mut w = back::glsl::Writer::new(&mut out, module, info, &opts, &po, Default::default())
                .map_err(|e| e.to_string())?;
            w.write().map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

/// Outcome for one (variant, target) pair.
#[derive(Debug, Clone, Serialize)]
pub enum Outcome {
    Ok,
    /// The target cannot express a feature the variant needs; not a failure.
    NotApplicable(String),
    Failed(String),
}

/// The portability report of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub variant: String,
    pub requires: String,
    /// Parse/validate error, if any (then no target is tried).
    pub validation: Option<String>,
    pub targets: Vec<(Target, Outcome)>,
}

impl VariantReport {
    /// True when validation passed and no applicable target failed.
    pub fn ok(&self) -> bool {
        self.validation.is_none() && self.targets.iter().all(|(_, o)| !matches!(o, Outcome::Failed(_)))
    }
}

/// Validates one variant and translates it to every target.
pub fn check_variant(v: &Variant) -> VariantReport {
    let mut report = VariantReport {
        variant: v.name.clone(),
        requires: v.requires.describe(),
        validation: None,
        targets: Vec::new(),
    };
    let parsed = v.wgsl().map_err(|e| e.to_string()).and_then(|w| parse_and_validate(&w, v.requires));
    let (module, info) = match parsed {
        Ok(x) => x,
        Err(e) => {
            report.validation = Some(e);
            return report;
        }
    };
    for t in Target::ALL {
        // naga's writers can panic on constructs they do not handle; report that as a failure
        // (wrap calls in `quietly` to keep the panic message out of the output).
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| translate(&module, &info, v.entry, t)))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(format!("naga panicked: {msg}"))
                });
        let outcome = match (result, t.unsupported_reason(v.requires)) {
            (Ok(()), _) => Outcome::Ok,
            (Err(_), Some(reason)) => Outcome::NotApplicable(reason.into()),
            (Err(e), None) => Outcome::Failed(e),
        };
        report.targets.push((t, outcome));
    }
    report
}

/// Checks every variant given (the ops layer's registry, `ops::registry()`).
pub fn check_all(variants: &[Variant]) -> Vec<VariantReport> {
    variants.iter().map(check_variant).collect()
}

/// Runs `f` with the panic hook silenced, so a naga panic caught by [`check_variant`] does not
/// print a backtrace into the report.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(hook);
    out
}
