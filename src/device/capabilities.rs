//! What an opened device can do, in the terms the shader-variant system asks about.

use serde::Serialize;

/// A cooperative-matrix tile shape with its input and accumulator types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CoopMatrixShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// Input (A/B) scalar type: "f16", "f32", ...
    pub ab: &'static str,
    /// Accumulator (C/R) scalar type.
    pub cr: &'static str,
}

/// Capabilities of an open device. Shader variants declare requirements against these, and
/// a variant whose requirements are not met is never chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    pub adapter: String,
    pub backend: String,
    /// A CPU implementation (lavapipe, llvmpipe, SwiftShader, WARP): heuristics that count on
    /// many parallel workgroups do not pay there.
    pub software: bool,
    /// `enable f16;` and f16 storage are available.
    pub shader_f16: bool,
    /// Subgroup built-ins are available.
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Timestamps at pass boundaries.
    pub timestamps: bool,
    /// Timestamps written inside a compute pass.
    pub timestamps_inside_passes: bool,
    /// Supported cooperative-matrix tiles (empty when the feature is off).
    pub coop_matrix: Vec<CoopMatrixShape>,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub min_storage_buffer_offset_alignment: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
}

fn scalar_name(t: wgpu::CooperativeScalarType) -> &'static str {
    match t {
        wgpu::CooperativeScalarType::F32 => "f32",
        wgpu::CooperativeScalarType::F16 => "f16",
        wgpu::CooperativeScalarType::I32 => "i32",
        wgpu::CooperativeScalarType::U32 => "u32",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

impl Capabilities {
    pub(crate) fn new(
        info: &wgpu::AdapterInfo,
        features: wgpu::Features,
        limits: wgpu::Limits,
        coop: &[wgpu::CooperativeMatrixProperties],
    ) -> Self {
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        Self {
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend),
            software: info.device_type == wgpu::DeviceType::Cpu,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups,
            subgroup_min_size: if subgroups { info.subgroup_min_size } else { 0 },
            subgroup_max_size: if subgroups { info.subgroup_max_size } else { 0 },
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            coop_matrix: coop
                .iter()
                .map(|p| CoopMatrixShape {
                    m: p.m_size,
                    n: p.n_size,
                    k: p.k_size,
                    ab: scalar_name(p.ab_type),
                    cr: scalar_name(p.cr_type),
                })
                .collect(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
        }
    }

    /// True when 16×16×16 tiles with f16 inputs and f32 accumulation are offered.
    pub fn coop_f16_16x16_f32(&self) -> bool {
        self.coop_matrix.iter().any(|s| s.m == 16 && s.n == 16 && s.k == 16 && s.ab == "f16" && s.cr == "f32")
    }
}
