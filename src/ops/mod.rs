//! Ops: each family is one module (or folder) that owns its WGSL sources in `shaders/`, its
//! registered variants, its host-side entry points and its f64 CPU reference (`reference`
//! submodule or functions named `*_ref`). [`FAMILIES`] lists them once.
//!
//! Ops record into a [`Recorder`], which puts every dispatch of a batch of work into a single
//! compute pass of a single command encoder (one pass per dispatch costs ~18 µs on an H200,
//! against ~2 µs inside one pass).

pub mod attention;
pub mod cases;
pub mod conv1d;
pub mod copy;
pub mod delta_rule;
pub mod elementwise;
pub mod embedding;
pub mod fft;
pub mod gather;
pub mod kernel;
pub mod mamba_step;
pub mod matmul;
pub mod moe;
pub mod norm;
pub mod rg_lru;
pub mod rope;
pub mod s4;
pub mod sampling;
pub mod selective_scan;
pub mod sequences;
pub mod softmax;
pub mod ssd;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::shader::{Pipeline, Source, Uniform, Variant};
use crate::tensor::Tensor;
use std::sync::Arc;
use std::time::Instant;

/// One op family: its name, its WGSL sources and every variant it registers.
pub struct OpFamily {
    pub name: &'static str,
    pub sources: &'static [Source],
    pub variants: fn() -> Vec<Variant>,
}

/// Every op family: the one list. A new family is a folder (or module) plus one line here.
pub const FAMILIES: &[OpFamily] = &[
    OpFamily { name: "copy", sources: &[copy::SHADER], variants: copy::variants },
    OpFamily { name: "elementwise", sources: &[elementwise::SHADER], variants: elementwise::variants },
    OpFamily { name: "matmul", sources: &[matmul::SHADER, matmul::COOP_SHADER], variants: matmul::variants },
    OpFamily { name: "norm", sources: &[norm::SHADER], variants: norm::variants },
    OpFamily { name: "embedding", sources: &[embedding::SHADER], variants: embedding::variants },
    OpFamily { name: "softmax", sources: &[softmax::SHADER], variants: softmax::variants },
    OpFamily { name: "sampling", sources: &[sampling::SHADER], variants: sampling::variants },
    OpFamily {
        name: "selective_scan",
        sources: &[selective_scan::SHADER],
        variants: selective_scan::variants,
    },
    OpFamily { name: "mamba_step", sources: &[mamba_step::SHADER], variants: mamba_step::variants },
    OpFamily { name: "ssd", sources: &[ssd::SHADER], variants: ssd::variants },
    OpFamily { name: "causal_conv1d", sources: &[conv1d::SHADER], variants: conv1d::variants },
    OpFamily { name: "attention", sources: &[attention::SHADER], variants: attention::variants },
    OpFamily { name: "rope", sources: &[rope::SHADER], variants: rope::variants },
    OpFamily { name: "rg_lru", sources: &[rg_lru::SHADER], variants: rg_lru::variants },
    OpFamily { name: "delta_rule", sources: &[delta_rule::SHADER], variants: delta_rule::variants },
    OpFamily { name: "gather", sources: &[gather::SHADER], variants: gather::variants },
    OpFamily { name: "moe", sources: &[moe::SHADER], variants: moe::variants },
    OpFamily { name: "fft", sources: &[fft::SHADER], variants: fft::variants },
    OpFamily { name: "s4", sources: &[s4::SHADER, s4::fftconv::SHADER], variants: s4::variants },
];

/// Every registered variant of every family, each in its plain and arena (`.rw`) form: what
/// `linseq shaders --list/--validate` and the benchmarks iterate.
pub fn registry() -> Vec<Variant> {
    let base: Vec<Variant> = FAMILIES.iter().flat_map(|f| (f.variants)()).collect();
    let arena: Vec<Variant> = base.iter().map(Variant::arena).collect();
    base.into_iter().chain(arena).collect()
}

/// Finds a registered variant by its exact name.
pub fn find(name: &str) -> Result<Variant> {
    registry().into_iter().find(|v| v.name == name).ok_or_else(|| {
        Error::UnsupportedVariant(format!("no variant named {name:?}; `linseq shaders --list` lists them"))
    })
}

/// A size as a 32-bit kernel parameter, or [`Error::Limit`] naming it when it does not fit.
pub fn word(name: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("{name} = {v} does not fit a 32-bit kernel parameter")))
}

/// Uniform parameters of a dispatch: the bytes of a kernel's typed [`Uniform`] struct, with
/// the name of its layout so the recorder can check it matches the variant's.
#[derive(Debug, Clone, Default)]
pub struct Params {
    bytes: Vec<u8>,
    layout: Option<&'static str>,
}

impl Params {
    /// The parameters of `value`.
    pub fn of<P: Uniform>(value: &P) -> Self {
        Self { bytes: bytemuck::bytes_of(value).to_vec(), layout: Some(P::LAYOUT.name) }
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = self.bytes.clone();
        b.resize(b.len().div_ceil(16).max(1) * 16, 0); // uniform structs round to 16 bytes
        b
    }
}

struct Recorded {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// The uniform parameter buffer, kept so a replayed recording can update it in place.
    params: Option<crate::device::Buffer>,
}

/// GPU timing of a submitted batch.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Seconds between the pass's begin and end timestamps, or wall time when the adapter has
    /// no timestamp queries.
    pub seconds: f64,
    /// True when `seconds` came from GPU timestamps.
    pub gpu_timestamps: bool,
}

/// Collects dispatches; [`Recorder::finish`] turns them into a replayable [`Recording`].
pub struct Recorder<'d> {
    dev: &'d Device,
    items: Vec<Recorded>,
    arena: bool,
}

impl<'d> Recorder<'d> {
    pub fn new(dev: &'d Device) -> Self {
        Self { dev, items: Vec::new(), arena: false }
    }

    /// A recorder whose dispatches use the arena (`.rw`) form of every variant, for tensors
    /// that share one buffer (the graph executor's arenas).
    pub fn for_arena(dev: &'d Device) -> Self {
        Self { dev, items: Vec::new(), arena: true }
    }

    pub fn device(&self) -> &'d Device {
        self.dev
    }

    /// Number of dispatches recorded so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Records one dispatch. Binding 0 is the uniform `params` (when non-empty); tensors follow
    /// at bindings 1, 2, ... in the order given, matching the WGSL declaration order.
    pub fn dispatch(
        &mut self,
        variant: &Variant,
        params: &Params,
        tensors: &[&Tensor],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let max = self.dev.caps().max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::Limit(format!(
                "{}: dispatch {workgroups:?} exceeds {max} per dimension",
                variant.name
            )));
        }
        let given = params.layout;
        if variant.params.map(|l| l.name) != given {
            return Err(Error::Invalid(format!(
                "{}: the kernel takes {} but was given {}",
                variant.name,
                variant.params.map_or("no parameters", |l| l.name),
                given.unwrap_or("none")
            )));
        }
        let arena_form;
        let variant = if self.arena {
            arena_form = variant.arena();
            &arena_form
        } else {
            variant
        };
        let pipeline = variant.pipeline(self.dev)?;
        let mut uniform = None;
        let mut entries = Vec::with_capacity(tensors.len() + 1);
        let mut next = 0;
        if params.layout.is_some() {
            let bytes = params.bytes();
            let buf = self.dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: bytes.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.dev.write_buffer(&buf, 0, &bytes);
            uniform = Some(buf);
            next = 1;
        }
        if let Some(buf) = &uniform {
            entries.push(wgpu::BindGroupEntry { binding: 0, resource: buf.as_entire_binding() });
        }
        for (i, t) in tensors.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: next + i as u32, resource: t.binding() });
        }
        let bind_group = self.dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&variant.name),
            layout: &pipeline.layout,
            entries: &entries,
        });
        self.dev.check()?;
        if workgroups.contains(&0) {
            return Ok(()); // nothing to do; bindings were still validated
        }
        self.items.push(Recorded { pipeline, bind_group, workgroups, params: uniform });
        Ok(())
    }

    /// Ends recording. The [`Recording`] can be submitted any number of times without
    /// creating GPU objects (beyond the command buffer each submit needs).
    pub fn finish(self) -> Recording<'d> {
        Recording { dev: self.dev, items: self.items }
    }

    /// Submits everything recorded once, without waiting.
    pub fn submit(self) -> Result<()> {
        self.finish().submit()
    }

    /// Submits everything recorded once and waits for completion.
    pub fn run(self) -> Result<()> {
        self.finish().run()
    }
}

/// Recorded dispatches with their pipelines, bind groups and parameter buffers, ready to be
/// encoded into one compute pass and submitted, as often as needed.
pub struct Recording<'d> {
    dev: &'d Device,
    items: Vec<Recorded>,
}

impl<'d> Recording<'d> {
    /// Number of dispatches.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Rewrites the uniform parameters of dispatch `index` (same layout as recorded).
    pub fn set_params(&self, index: usize, params: &Params) -> Result<()> {
        let item = self.items.get(index).ok_or_else(|| Error::Invalid(format!("no dispatch {index}")))?;
        let buf = item
            .params
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("dispatch {index} has no parameters")))?;
        let bytes = params.bytes();
        if bytes.len() as u64 != buf.size() || params.layout.is_none() {
            return Err(Error::Invalid(format!(
                "dispatch {index}: {} parameter bytes, recorded {}",
                bytes.len(),
                buf.size()
            )));
        }
        self.dev.write_buffer(buf, 0, &bytes);
        Ok(())
    }

    /// Encodes the pass. `timestamps` writes the pass's begin and end (queries 0 and 1);
    /// `per_dispatch` writes query i + 1 after dispatch i (query 0 before the first).
    fn encode(
        &self,
        timestamps: Option<&wgpu::QuerySet>,
        per_dispatch: Option<&wgpu::QuerySet>,
    ) -> wgpu::CommandEncoder {
        let mut enc = self.dev.command_encoder();
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("linseq"),
                timestamp_writes: timestamps.map(|q| wgpu::ComputePassTimestampWrites {
                    query_set: q,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            let mut current: Option<&Arc<Pipeline>> = None;
            if let Some(q) = per_dispatch {
                pass.write_timestamp(q, 0);
            }
            for (i, it) in self.items.iter().enumerate() {
                // Consecutive dispatches of one kernel (a decode step's layers) skip the rebind.
                if current.is_none_or(|c| !Arc::ptr_eq(c, &it.pipeline)) {
                    pass.set_pipeline(&it.pipeline.pipeline);
                    current = Some(&it.pipeline);
                }
                pass.set_bind_group(0, &it.bind_group, &[]);
                let [x, y, z] = it.workgroups;
                pass.dispatch_workgroups(x, y, z);
                if let Some(q) = per_dispatch {
                    pass.write_timestamp(q, i as u32 + 1);
                }
            }
        }
        enc
    }

    /// Submits once, without waiting.
    pub fn submit(&self) -> Result<()> {
        self.submit_then(|_| {})
    }

    /// Submits once, with `after` appending commands (copies, say) behind the pass in the same
    /// command buffer; does not wait.
    pub fn submit_then(&self, after: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<()> {
        let mut enc = self.encode(None, None);
        after(&mut enc);
        self.dev.submit([enc.finish()])?;
        Ok(())
    }

    /// Submits once and waits for completion.
    pub fn run(&self) -> Result<()> {
        self.submit()?;
        self.dev.wait()
    }

    /// Submits, waits and reports how long the pass took on the GPU (timestamps) or, without
    /// timestamp support, the wall time of submit + wait.
    /// The variant name of each recorded dispatch, in order (labels for [`Recording::run_profiled`]).
    pub fn dispatch_names(&self) -> Vec<&str> {
        self.items.iter().map(|i| i.pipeline.name.as_str()).collect()
    }

    pub fn run_timed(&self) -> Result<Timing> {
        let dev = self.dev;
        if !dev.caps().timestamps {
            let enc = self.encode(None, None);
            let t0 = Instant::now();
            dev.submit([enc.finish()])?;
            dev.wait()?;
            return Ok(Timing { seconds: t0.elapsed().as_secs_f64(), gpu_timestamps: false });
        }
        let t = self.run_with_timestamps(false)?;
        Ok(Timing { seconds: t[1] - t[0], gpu_timestamps: true })
    }

    /// Submits once with a timestamp after every dispatch, waits, and returns each dispatch's
    /// share of the pass in seconds (the time between the timestamps before and after it,
    /// barriers included). Needs timestamp queries inside passes; a profile, not a benchmark:
    /// the timestamps themselves serialise the work a little.
    pub fn run_profiled(&self) -> Result<Vec<f64>> {
        let dev = self.dev;
        if !dev.caps().timestamps_inside_passes {
            return Err(Error::UnsupportedVariant(
                "per-dispatch profiling needs TIMESTAMP_QUERY_INSIDE_PASSES, which this adapter lacks".into(),
            ));
        }
        let count = self.items.len() as u32 + 1;
        if count > wgpu::QUERY_SET_MAX_QUERIES {
            return Err(Error::Limit(format!(
                "{} dispatches exceed the {} timestamp queries of one query set",
                self.items.len(),
                wgpu::QUERY_SET_MAX_QUERIES
            )));
        }
        let t = self.run_with_timestamps(true)?;
        Ok(t.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect())
    }

    /// Submits once with timestamps at the pass's begin and end, or (`per_dispatch`) before
    /// the first dispatch and after every one; waits and returns them in seconds.
    fn run_with_timestamps(&self, per_dispatch: bool) -> Result<Vec<f64>> {
        let dev = self.dev;
        let count = if per_dispatch { self.items.len() as u32 + 1 } else { 2 };
        let qs = dev.gl(|| {
            dev.raw().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            })
        });
        // (Not counted among the graph's buffers.)
        let resolve = dev.raw_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: 8 * count as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE
                | wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = if per_dispatch { self.encode(None, Some(&qs)) } else { self.encode(Some(&qs), None) };
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        dev.submit([enc.finish()])?;
        dev.wait()?;
        // (Deleting a GL query set takes the GL context.)
        dev.gl(|| drop(qs));
        read_timestamps(dev, resolve, count as usize)
    }
}

/// Reads `count` resolved 64-bit timestamps and converts them to seconds.
fn read_timestamps(dev: &Device, resolve: crate::device::Buffer, count: usize) -> Result<Vec<f64>> {
    let t = Tensor::wrap_buffer(resolve, &[2 * count], crate::DType::U32);
    let w: Vec<u32> = t.read(dev)?;
    let period = dev.queue.get_timestamp_period() as f64 * 1e-9;
    let first = w[0] as u64 | (w[1] as u64) << 32;
    Ok(w.chunks(2)
        .map(|p| (p[0] as u64 | (p[1] as u64) << 32).wrapping_sub(first) as i64 as f64 * period)
        .collect())
}

/// Splits `groups` workgroups into an x×y grid within the per-dimension limit. Shaders recover
/// the flat index as `wid.x + wid.y * nwg.x` and must ignore indices past the end.
pub fn grid(dev: &Device, groups: usize) -> Result<[u32; 3]> {
    let max = dev.caps().max_compute_workgroups_per_dimension as usize;
    if groups <= max {
        return Ok([groups as u32, 1, 1]);
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::Limit(format!("{groups} workgroups exceed a {max}×{max} grid")));
    }
    Ok([groups.div_ceil(y) as u32, y as u32, 1])
}

/// Checks that `t` has exactly `shape` and `dtype`, naming the argument in the error.
pub fn expect(name: &str, t: &Tensor, shape: &[usize], dtype: crate::DType) -> Result<()> {
    if t.shape() != shape || t.dtype() != dtype {
        return Err(Error::Shape(format!(
            "{name}: expected {shape:?} {dtype:?}, got {:?} {:?}",
            t.shape(),
            t.dtype()
        )));
    }
    Ok(())
}
