//! The driver's own statistics of compiled variants (`linseq shaders --stats`): registers,
//! spills, shared memory, whatever the driver reports through Vulkan's
//! `VK_KHR_pipeline_executable_properties`, which wgpu cannot ask for. Each variant goes to
//! SPIR-V as wgpu's Vulkan backend would write it (the same index clamps, loop bounding,
//! workgroup zeroing and division checks, from the variant's defines), then through a Vulkan
//! device of this module's own with the extension and every feature the adapter has.
//!
//! Occupancy follows from them: on NVIDIA, an SM holds 65536 registers, so a kernel of R
//! registers per invocation and W invocations per workgroup fits ⌊65536 / (R·W)⌋ workgroups
//! (rounded to the allocation granularity), before shared memory limits it further.

use super::Variant;
use crate::error::{Error, Result};
use ash::vk;
use std::ffi::CStr;

/// One statistic, as the driver names it.
#[derive(Debug, Clone)]
pub struct Stat {
    pub name: String,
    pub value: String,
    pub description: String,
}

/// The statistics of one variant's executables (a compute pipeline has one, as a rule).
#[derive(Debug, Clone)]
pub struct VariantStats {
    pub variant: String,
    pub executables: Vec<(String, Vec<Stat>)>,
}

/// A Vulkan device able to report pipeline statistics.
pub struct StatsDevice {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    exec: ash::khr::pipeline_executable_properties::Device,
    api_version: u32,
    robust2: bool,
    /// The adapter's name and driver.
    pub name: String,
}

fn vk_err(what: &str) -> impl Fn(vk::Result) -> Error + '_ {
    move |e| Error::RequestDevice(format!("{what}: {e}"))
}

fn has_extension(available: &[vk::ExtensionProperties], name: &CStr) -> bool {
    available.iter().any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name))
}

impl StatsDevice {
    /// The first Vulkan adapter (discrete GPUs first) whose name contains `filter` and whose
    /// driver has the extension.
    pub fn new(filter: Option<&str>) -> Result<Self> {
        // SAFETY: loading the system's Vulkan loader; every call below follows the Vulkan
        // spec's valid usage for the handles created here, which live as long as `self`.
        unsafe {
            let entry = ash::Entry::load().map_err(|e| {
                Error::RequestDevice(format!("no Vulkan loader ({e}): --stats needs a Vulkan driver"))
            })?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
            let instance = entry
                .create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None)
                .map_err(vk_err("vkCreateInstance"))?;
            let mut phys =
                instance.enumerate_physical_devices().map_err(vk_err("vkEnumeratePhysicalDevices"))?;
            phys.sort_by_key(|&p| {
                instance.get_physical_device_properties(p).device_type != vk::PhysicalDeviceType::DISCRETE_GPU
            });
            let mut seen = Vec::new();
            for p in phys {
                let props = instance.get_physical_device_properties(p);
                let name = props
                    .device_name_as_c_str()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let exts = instance.enumerate_device_extension_properties(p).unwrap_or_default();
                if filter.is_some_and(|f| !name.to_lowercase().contains(&f.to_lowercase())) {
                    continue;
                }
                if !has_extension(&exts, ash::khr::pipeline_executable_properties::NAME) {
                    seen.push(format!("{name} (no VK_KHR_pipeline_executable_properties)"));
                    continue;
                }
                let device = Self::open(&instance, p, &props, &exts)?;
                let exec = ash::khr::pipeline_executable_properties::Device::new(&instance, &device);
                let driver = props.driver_version;
                return Ok(Self {
                    _entry: entry,
                    robust2: has_extension(&exts, ash::ext::robustness2::NAME),
                    api_version: props.api_version,
                    name: format!(
                        "{name} (Vulkan {}.{}, driver {driver:#x})",
                        vk::api_version_major(props.api_version),
                        vk::api_version_minor(props.api_version)
                    ),
                    instance,
                    device,
                    exec,
                });
            }
            instance.destroy_instance(None);
            Err(Error::RequestDevice(format!(
                "no Vulkan adapter{} reports pipeline statistics; seen: {}",
                filter.map(|f| format!(" matching `{f}`")).unwrap_or_default(),
                if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
            )))
        }
    }

    /// A device with the statistics extension and every feature the adapter has (as wgpu asks
    /// for most of them), so any variant's capabilities are there.
    unsafe fn open(
        instance: &ash::Instance,
        p: vk::PhysicalDevice,
        props: &vk::PhysicalDeviceProperties,
        exts: &[vk::ExtensionProperties],
    ) -> Result<ash::Device> {
        let mut names = vec![ash::khr::pipeline_executable_properties::NAME.as_ptr()];
        let coop = has_extension(exts, ash::khr::cooperative_matrix::NAME);
        let robust2 = has_extension(exts, ash::ext::robustness2::NAME);
        if coop {
            names.push(ash::khr::cooperative_matrix::NAME.as_ptr());
        }
        if robust2 {
            names.push(ash::ext::robustness2::NAME.as_ptr());
        }
        let v13 = props.api_version >= vk::API_VERSION_1_3;
        let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
        let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
        let mut fcoop = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default();
        let mut frob = vk::PhysicalDeviceRobustness2FeaturesEXT::default();
        let mut fexec = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default();
        let mut all = vk::PhysicalDeviceFeatures2::default()
            .push_next(&mut f11)
            .push_next(&mut f12)
            .push_next(&mut fexec);
        if v13 {
            all = all.push_next(&mut f13);
        }
        if coop {
            all = all.push_next(&mut fcoop);
        }
        if robust2 {
            all = all.push_next(&mut frob);
        }
        instance.get_physical_device_features2(p, &mut all);
        let queue = instance
            .get_physical_device_queue_family_properties(p)
            .iter()
            .position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
            .ok_or_else(|| Error::RequestDevice("no compute queue".into()))? as u32;
        let prio = [1.0];
        let queues = [vk::DeviceQueueCreateInfo::default().queue_family_index(queue).queue_priorities(&prio)];
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&names)
            .push_next(&mut all);
        instance.create_device(p, &info, None).map_err(vk_err("vkCreateDevice"))
    }

    /// SPIR-V of `v` as wgpu's Vulkan backend writes it for this device.
    fn spirv(&self, v: &Variant) -> Result<(Vec<u32>, Vec<vk::DescriptorSetLayoutBinding<'static>>)> {
        use naga::back::spv;
        use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
        let wgsl = v.wgsl()?;
        let (module, info) = super::validate::parse_and_validate(&wgsl, v.requires)
            .map_err(|message| Error::Shader { variant: v.name.clone(), message })?;
        let has = |d: &str| v.defines.contains_key(d);
        let unchecked = has(super::UNCHECKED_INDICES);
        let opts = spv::Options {
            lang_version: if self.api_version >= vk::API_VERSION_1_3 { (1, 6) } else { (1, 5) },
            flags: spv::WriterFlags::empty(),
            bounds_check_policies: BoundsCheckPolicies {
                index: if unchecked { BoundsCheckPolicy::Unchecked } else { BoundsCheckPolicy::Restrict },
                buffer: if unchecked || self.robust2 {
                    BoundsCheckPolicy::Unchecked
                } else {
                    BoundsCheckPolicy::Restrict
                },
                image_load: BoundsCheckPolicy::Unchecked,
                binding_array: BoundsCheckPolicy::Unchecked,
            },
            zero_initialize_workgroup_memory: if has(super::WRITES_BEFORE_READS) {
                spv::ZeroInitializeWorkgroupMemoryMode::None
            } else {
                spv::ZeroInitializeWorkgroupMemoryMode::Native
            },
            force_loop_bounding: !has(super::BOUNDED_LOOPS),
            ..Default::default()
        };
        let po =
            spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: v.entry.into() };
        let words = spv::write_vec(&module, &info, &opts, Some(&po))
            .map_err(|e| Error::Shader { variant: v.name.clone(), message: e.to_string() })?;
        let mut bindings = Vec::new();
        for (_, g) in module.global_variables.iter() {
            let (Some(rb), ty) = (
                &g.binding,
                match g.space {
                    naga::AddressSpace::Uniform => Some(vk::DescriptorType::UNIFORM_BUFFER),
                    naga::AddressSpace::Storage { .. } => Some(vk::DescriptorType::STORAGE_BUFFER),
                    _ => None,
                },
            ) else {
                continue;
            };
            if let Some(ty) = ty {
                if rb.group != 0 {
                    return Err(Error::Shader {
                        variant: v.name.clone(),
                        message: "bindings beyond group 0".into(),
                    });
                }
                bindings.push(
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(rb.binding)
                        .descriptor_type(ty)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE),
                );
            }
        }
        Ok((words, bindings))
    }

    /// Compiles `v` and returns what the driver says of it.
    pub fn stats(&self, v: &Variant) -> Result<VariantStats> {
        let (words, bindings) = self.spirv(v)?;
        let d = &self.device;
        let fail = |what: &'static str| {
            move |e: vk::Result| Error::Shader { variant: v.name.clone(), message: format!("{what}: {e}") }
        };
        // SAFETY: handles created here are destroyed before returning; the SPIR-V is naga's
        // validated output.
        unsafe {
            let module = d
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None)
                .map_err(fail("vkCreateShaderModule"))?;
            let set = d
                .create_descriptor_set_layout(
                    &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                    None,
                )
                .map_err(fail("vkCreateDescriptorSetLayout"))?;
            let sets = [set];
            let layout = d
                .create_pipeline_layout(&vk::PipelineLayoutCreateInfo::default().set_layouts(&sets), None)
                .map_err(fail("vkCreatePipelineLayout"))?;
            let name = std::ffi::CString::new(v.entry).expect("entry names have no NUL");
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(&name);
            let info = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(layout)
                .flags(vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR)];
            let made = d.create_compute_pipelines(vk::PipelineCache::null(), &info, None);
            let out = match made {
                Ok(p) => {
                    let r = self.read(p[0], v);
                    d.destroy_pipeline(p[0], None);
                    r
                }
                Err((_, e)) => Err(fail("vkCreateComputePipelines")(e)),
            };
            d.destroy_pipeline_layout(layout, None);
            d.destroy_descriptor_set_layout(set, None);
            d.destroy_shader_module(module, None);
            out
        }
    }

    unsafe fn read(&self, pipeline: vk::Pipeline, v: &Variant) -> Result<VariantStats> {
        let fail = |e: vk::Result| Error::Shader {
            variant: v.name.clone(),
            message: format!("pipeline statistics: {e}"),
        };
        let execs = self
            .exec
            .get_pipeline_executable_properties(&vk::PipelineInfoKHR::default().pipeline(pipeline))
            .map_err(fail)?;
        let mut out = Vec::new();
        for (i, e) in execs.iter().enumerate() {
            let info = vk::PipelineExecutableInfoKHR::default().pipeline(pipeline).executable_index(i as u32);
            let stats = self.exec.get_pipeline_executable_statistics(&info).map_err(fail)?;
            let stats = stats
                .iter()
                .map(|s| Stat {
                    name: s.name_as_c_str().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    description: s
                        .description_as_c_str()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    value: match s.format {
                        vk::PipelineExecutableStatisticFormatKHR::BOOL32 => (s.value.b32 != 0).to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64.to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64.to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::FLOAT64 => format!("{:.3}", s.value.f64),
                        _ => "?".into(),
                    },
                })
                .collect();
            let name = e.name_as_c_str().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push((name, stats));
        }
        Ok(VariantStats { variant: v.name.clone(), executables: out })
    }
}

impl Drop for StatsDevice {
    fn drop(&mut self) {
        // SAFETY: every object made on the device was destroyed by `stats`.
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}
