//! Device layer, tensors, pipeline cache and error reporting.

use crate::common::devices;
use linseq::device::{parse_backend, AdapterSelection};
use linseq::ops::{self as shader};
use linseq::ops::{Params, Recorder};
use linseq::shader::{PipelineCache, Variant};
use linseq::{DType, Device, Error, Tensor};

#[test]
fn adapters_report_sane_capabilities() {
    for dev in devices() {
        let c = dev.caps();
        assert!(c.min_storage_buffer_offset_alignment.is_power_of_two());
        // We adopt the adapter's real limits, never less than WebGPU's defaults.
        assert!(c.max_storage_buffer_binding_size >= 128 << 20, "{c:?}");
        assert!(c.max_compute_workgroup_storage_size >= 16384);
        assert!(c.max_compute_invocations_per_workgroup >= 256);
        if c.subgroups {
            assert!(c.subgroup_min_size >= 1 && c.subgroup_min_size <= c.subgroup_max_size);
        }
        assert_eq!(c.backend, format!("{:?}", dev.adapter_info().backend));
    }
}

#[test]
fn backend_names_parse_and_bad_ones_are_errors() {
    assert_eq!(parse_backend("Vulkan").unwrap(), wgpu::Backends::VULKAN);
    assert_eq!(parse_backend("gl").unwrap(), wgpu::Backends::GL);
    assert_eq!(parse_backend("any").unwrap(), wgpu::Backends::all());
    let e = parse_backend("cuda").unwrap_err();
    assert!(e.to_string().contains("vulkan, metal, dx12, gl or any"), "{e}");
    let sel = AdapterSelection { name: Some("no-such-gpu-xyz".into()), ..Default::default() };
    let e = Device::with_selection(&sel).unwrap_err();
    assert!(matches!(e, Error::NoAdapter(_)) && e.to_string().contains("linseq adapters"), "{e}");
}

#[test]
fn tensor_round_trips_every_dtype() {
    for dev in devices() {
        let f: Vec<f32> = (0..13).map(|i| i as f32 * 0.25 - 1.0).collect();
        assert_eq!(Tensor::from_slice(dev, &[13], &f).unwrap().read::<f32>(dev).unwrap(), f);
        let h: Vec<half::f16> = f.iter().map(|&v| half::f16::from_f32(v)).collect(); // odd length
        let t = Tensor::from_slice(dev, &[13], &h).unwrap();
        assert_eq!(t.byte_len(), 26);
        assert_eq!(t.read::<half::f16>(dev).unwrap(), h);
        assert_eq!(t.read_f32(dev).unwrap(), f);
        let i: Vec<i32> = (-6..7).collect();
        assert_eq!(Tensor::from_slice(dev, &[13], &i).unwrap().read::<i32>(dev).unwrap(), i);
        let u: Vec<u32> = (0..13).map(|v| v * 1000).collect();
        assert_eq!(Tensor::from_slice(dev, &[13], &u).unwrap().read::<u32>(dev).unwrap(), u);
        assert_eq!(linseq::tensor::bf16_to_f32(&[0x3f80, 0xc000]), vec![1.0, -2.0]);
        // Mismatches are errors.
        assert!(matches!(Tensor::from_slice(dev, &[12], &f), Err(Error::Shape(_))));
        assert!(Tensor::from_slice(dev, &[13], &f).unwrap().read::<u32>(dev).is_err());
    }
}

#[test]
fn views_respect_storage_offset_alignment() {
    for dev in devices() {
        let align = dev.caps().min_storage_buffer_offset_alignment as usize / 4;
        let n = 4 * align + 10;
        let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let t = Tensor::from_slice(dev, &[n], &data).unwrap();
        let v = t.view(dev, 2 * align, &[align + 3]).unwrap();
        assert_eq!(v.read::<f32>(dev).unwrap(), data[2 * align..3 * align + 3].to_vec());
        assert!(matches!(t.view(dev, 1, &[4]), Err(Error::Invalid(_))), "unaligned view accepted");
        assert!(matches!(t.view(dev, 4 * align, &[11]), Err(Error::Shape(_))), "view past the end accepted");
        assert!(matches!(t.reshape(&[3, 3]), Err(Error::Shape(_))));
    }
}

#[test]
fn sizes_beyond_device_limits_are_errors() {
    for dev in devices() {
        let max = dev.caps().max_storage_buffer_binding_size.min(dev.caps().max_buffer_size);
        let n = (max / 4 + 1) as usize;
        let e = Tensor::empty(dev, &[n], DType::F32).unwrap_err();
        assert!(matches!(e, Error::Limit(_)) && e.to_string().contains("max storage binding"), "{e}");
        let e = Tensor::empty(dev, &[usize::MAX, 4], DType::F32).unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
        let v = shader::find("copy.vec4").unwrap();
        let t = Tensor::empty(dev, &[4], DType::F32).unwrap();
        let mut rec = Recorder::new(dev);
        let too_many = dev.caps().max_compute_workgroups_per_dimension + 1;
        let e = rec
            .dispatch(&v, &Params::of(&linseq::ops::copy::CopyParams { n4: 1 }), &[&t, &t], [too_many, 1, 1])
            .unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
    }
}

#[test]
fn pipelines_are_cached_by_key() {
    for dev in devices() {
        let v = shader::find("elementwise.exp").unwrap();
        v.pipeline(dev).unwrap();
        let before = PipelineCache::of(dev).len();
        v.pipeline(dev).unwrap();
        // Same key under another name shares the pipeline.
        let mut renamed = v.clone();
        renamed.name = "elementwise.exp.alias".into();
        renamed.pipeline(dev).unwrap();
        assert_eq!(PipelineCache::of(dev).len(), before);
    }
}

#[test]
fn shader_and_requirement_errors_are_results() {
    for dev in devices() {
        let missing_define = Variant::new("test.missing", &linseq::ops::copy::SHADER, "copy_vec4");
        let e = missing_define.pipeline(dev).unwrap_err();
        assert!(matches!(e, Error::Shader { .. }) && e.to_string().contains("WG"), "{e}");
        let bad_entry =
            Variant::new("test.bad_entry", &linseq::ops::copy::SHADER, "no_such_entry").define("WG", 64);
        assert!(matches!(bad_entry.pipeline(dev), Err(Error::Shader { .. })));
        let coop = shader::find("matmul.gemm_coop.f16").unwrap();
        if !dev.caps().coop_f16_16x16_f32() {
            assert!(matches!(coop.pipeline(dev), Err(Error::UnsupportedVariant(_))));
        }
        dev.check().unwrap();
    }
}

/// A fresh device per adapter, so the errors provoked here do not reach other tests.
fn fresh_devices() -> Vec<Device> {
    linseq::testing::devices().unwrap()
}

#[test]
fn validation_errors_come_back_as_errors() {
    for dev in fresh_devices() {
        let v = shader::find("copy.vec4").unwrap();
        let t = Tensor::empty(&dev, &[4], DType::F32).unwrap();
        // One binding short: wgpu rejects the bind group; we must get an Err, not a panic.
        let mut rec = Recorder::new(&dev);
        let e = rec
            .dispatch(&v, &Params::of(&linseq::ops::copy::CopyParams { n4: 1 }), &[&t], [1, 1, 1])
            .unwrap_err();
        assert!(matches!(e, Error::Validation(_)), "{e}");
        // The device stays usable afterwards.
        let mut rec = Recorder::new(&dev);
        let u = Tensor::empty(&dev, &[4], DType::F32).unwrap();
        linseq::ops::copy::copy(&mut rec, &t, &u).unwrap();
        rec.run().unwrap();
    }
}

#[test]
fn device_loss_is_an_error_not_a_hang() {
    for dev in fresh_devices() {
        let t = Tensor::from_slice(&dev, &[4], &[1.0f32; 4]).unwrap();
        dev.destroy();
        let e = t.read::<f32>(&dev).unwrap_err();
        assert!(matches!(e, Error::DeviceLost(_)), "{e}");
        assert!(matches!(dev.check(), Err(Error::DeviceLost(_))));
    }
}
