//! Pipeline and bind-group-layout cache keyed by (family, entry, defines, requirements).

use super::{Requirements, Variant};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A compiled compute pipeline and its (auto-derived) bind group layout.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

type Key = (&'static str, &'static str, BTreeMap<&'static str, String>, Requirements, Vec<super::FlagSet>);

/// Compiles each variant once per device. Two variants with equal keys share one pipeline.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<Key, Arc<Pipeline>>>,
}

impl PipelineCache {
    /// The cache of `device` (one per device, kept in [`crate::Device::local`]).
    pub fn of(device: &crate::Device) -> std::sync::Arc<Self> {
        device.local::<Self>()
    }

    /// Number of pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nothing has been compiled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the cached pipeline for `variant`, compiling it on first use. Shader and
    /// pipeline errors are captured with an error scope and returned, never panicked on.
    pub fn get(&self, device: &crate::Device, variant: &Variant) -> Result<Arc<Pipeline>> {
        if !variant.supported(device.caps()) {
            return Err(Error::UnsupportedVariant(format!(
                "{} needs {} which {} lacks",
                variant.name,
                variant.requires.describe(),
                device.caps().adapter
            )));
        }
        let key: Key = (
            variant.source.name,
            variant.entry,
            variant.defines.clone(),
            variant.requires,
            variant.flags.clone(),
        );
        if let Some(p) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let wgsl = variant.wgsl()?;
        // Validate with naga first: its messages are clearer than the device's.
        super::validate::parse_and_validate(&wgsl, variant.requires)
            .map_err(|message| Error::Shader { variant: variant.name.clone(), message })?;
        let dev = &device.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&variant.name),
            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
        };
        let mut checks = runtime_checks();
        if variant.defines.contains_key(super::BOUNDED_LOOPS) {
            checks.force_loop_bounding = false;
        }
        if variant.defines.contains_key(super::UNCHECKED_INDICES) {
            checks.bounds_checks = false;
        }
        let zero_workgroup = !variant.defines.contains_key(super::WRITES_BEFORE_READS)
            || std::env::var("LINSEQ_ZERO_WORKGROUP").is_ok_and(|v| v == "1");
        // SAFETY: wgpu's bounds checks stay on unless LINSEQ_TRUSTED_SHADERS or
        // LINSEQ_SHADER_CHECKS turn them off by hand, or the variant is marked
        // UNCHECKED_INDICES (every index bounded by construction; see its doc). Forced loop
        // bounding is off only for variants marked BOUNDED_LOOPS, whose loops all run to
        // bounds taken from their parameters (sizes the host checked), so none can run
        // forever. Workgroup memory starts unzeroed only for variants marked
        // WRITES_BEFORE_READS, which read none of it before writing it.
        let (pipeline, layout) = device.gl(|| {
            let module = unsafe { dev.create_shader_module_trusted(desc, checks) };
            let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&variant.name),
                layout: None,
                module: &module,
                entry_point: Some(variant.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    zero_initialize_workgroup_memory: zero_workgroup,
                    ..Default::default()
                },
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            (pipeline, layout)
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader { variant: variant.name.clone(), message: e.to_string() });
        }
        device.check()?;
        let p = Arc::new(Pipeline { name: variant.name.clone(), pipeline, layout });
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(key, p.clone());
        Ok(p)
    }
}

/// Whether `LINSEQ_TRUSTED_SHADERS=1` asks to compile without any of wgpu's injected runtime
/// checks, bounds checks included (an experiment switch for benchmarks; off by default).
pub fn trusted_shaders() -> bool {
    std::env::var("LINSEQ_TRUSTED_SHADERS").is_ok_and(|v| v == "1")
}

/// The runtime checks wgpu injects into linseq's shaders. `LINSEQ_SHADER_CHECKS` lists checks
/// to turn off, comma-separated: `loops` (forced loop bounding), `div` (integer division
/// guards), `bounds` (injected bounds checks); `none` turns off none.
pub fn runtime_checks() -> wgpu::ShaderRuntimeChecks {
    if trusted_shaders() {
        return wgpu::ShaderRuntimeChecks::unchecked();
    }
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    for off in std::env::var("LINSEQ_SHADER_CHECKS").unwrap_or_default().split(',') {
        match off.trim() {
            "loops" => checks.force_loop_bounding = false,
            "div" => checks.int_div_checks = false,
            "bounds" => checks.bounds_checks = false,
            _ => {}
        }
    }
    checks
}
