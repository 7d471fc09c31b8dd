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

type Key = (&'static str, &'static str, BTreeMap<&'static str, String>, Requirements);

/// Compiles each variant once per device. Two variants with equal keys share one pipeline.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<Key, Arc<Pipeline>>>,
}

impl PipelineCache {
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
        let key: Key = (variant.family, variant.entry, variant.defines.clone(), variant.requires);
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
        let module = if trusted_shaders() {
            // SAFETY: opt-in (LINSEQ_TRUSTED_SHADERS=1) for measurements. Every linseq kernel
            // guards its own indices (the op tests check guard regions around outputs) and
            // every loop is bounded by its parameters.
            unsafe { dev.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        } else {
            dev.create_shader_module(desc)
        };
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&variant.name),
            layout: None,
            module: &module,
            entry_point: Some(variant.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader { variant: variant.name.clone(), message: e.to_string() });
        }
        device.check()?;
        let p = Arc::new(Pipeline { name: variant.name.clone(), pipeline, layout });
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(key, p.clone());
        Ok(p)
    }
}

/// Whether `LINSEQ_TRUSTED_SHADERS=1` asks to compile without wgpu's injected bounds checks and
/// loop bounding (an experiment switch for benchmarks; off by default).
pub fn trusted_shaders() -> bool {
    std::env::var("LINSEQ_TRUSTED_SHADERS").is_ok_and(|v| v == "1")
}
