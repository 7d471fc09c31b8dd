//! Device layer: adapter choice, feature/limit negotiation, capability reporting and error capture.
//!
//! Selection is driven by environment variables so every front end (tests, CLI, embedding apps)
//! behaves the same:
//! - `LINSEQ_BACKEND=vulkan|metal|dx12|gl|any` restricts the backend (default: any);
//! - `LINSEQ_ADAPTER=<substring>` picks the first adapter whose name contains it;
//! - otherwise a discrete GPU is preferred over integrated, virtual and CPU adapters.

mod capabilities;

pub use capabilities::{Capabilities, CoopMatrixShape};

use crate::error::{Error, Result};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counts of GPU objects created and submits made through linseq on a device. The graph
/// executor's replay contract (no new objects per decode step, one submit) is tested with it.
#[derive(Debug, Default)]
struct Counters {
    buffers: AtomicU64,
    bind_groups: AtomicU64,
    submits: AtomicU64,
}

/// A snapshot of [`Device::counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    pub buffers: u64,
    pub bind_groups: u64,
    pub submits: u64,
}

/// Hint printed whenever no adapter can be found.
pub const INSTALL_HINT: &str = "install a Vulkan driver; on Linux without a GPU, \
`apt-get install -y mesa-vulkan-drivers` provides lavapipe (software Vulkan); \
check with `linseq adapters`";

/// How to choose an adapter. [`AdapterSelection::from_env`] reads `LINSEQ_BACKEND` and
/// `LINSEQ_ADAPTER`.
#[derive(Debug, Clone, Default)]
pub struct AdapterSelection {
    /// Backends to consider.
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name.
    pub name: Option<String>,
    /// Allow wgpu's experimental features (cooperative matrices). On by default; set
    /// `LINSEQ_NO_EXPERIMENTAL=1` to turn it off.
    pub allow_experimental: bool,
}

impl AdapterSelection {
    /// Reads the selection from the environment.
    pub fn from_env() -> Result<Self> {
        let backends = match std::env::var("LINSEQ_BACKEND") {
            Ok(v) => Some(parse_backend(&v)?),
            Err(_) => None,
        };
        let name = std::env::var("LINSEQ_ADAPTER").ok().filter(|s| !s.is_empty());
        let allow_experimental = std::env::var("LINSEQ_NO_EXPERIMENTAL").map_or(true, |v| v != "1");
        Ok(Self { backends, name, allow_experimental })
    }

    /// Selection for one specific backend, keeping the other settings.
    pub fn with_backend(mut self, backend: wgpu::Backend) -> Self {
        self.backends = Some(wgpu::Backends::from(backend));
        self
    }
}

/// Parses a backend name as accepted by `LINSEQ_BACKEND`.
pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "gles" | "opengl" => wgpu::Backends::GL,
        "any" | "all" | "" => wgpu::Backends::all(),
        other => {
            return Err(Error::Invalid(format!(
                "LINSEQ_BACKEND={other}: expected vulkan, metal, dx12, gl or any"
            )))
        }
    })
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter visible for the given backends, in enumeration order.
pub fn enumerate_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance(backends).enumerate_adapters(backends))
}

fn device_type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Picks an adapter following the selection rules in the module docs.
pub fn select_adapter(sel: &AdapterSelection) -> Result<wgpu::Adapter> {
    let backends = sel.backends.unwrap_or(wgpu::Backends::all());
    let mut adapters = enumerate_adapters(backends);
    if let Some(name) = &sel.name {
        let needle = name.to_ascii_lowercase();
        adapters.retain(|a| a.get_info().name.to_ascii_lowercase().contains(&needle));
        if adapters.is_empty() {
            return Err(Error::NoAdapter(format!(
                "no adapter name contains {name:?} (LINSEQ_ADAPTER); `linseq adapters` lists them"
            )));
        }
    }
    // Stable sort: discrete first, then Vulkan/Metal/DX12 before GL at equal type.
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (device_type_rank(info.device_type), (info.backend == wgpu::Backend::Gl) as u32)
    });
    adapters.into_iter().next().ok_or_else(|| Error::NoAdapter(no_adapter_hint(backends)))
}

/// What to do when `backends` offer no adapter: the install hint fits a request that Vulkan
/// could serve; a backend this platform does not have is named as such.
fn no_adapter_hint(backends: wgpu::Backends) -> String {
    let native = if cfg!(any(target_os = "macos", target_os = "ios")) {
        wgpu::Backends::METAL | wgpu::Backends::VULKAN | wgpu::Backends::GL
    } else if cfg!(windows) {
        wgpu::Backends::DX12 | wgpu::Backends::VULKAN | wgpu::Backends::GL
    } else {
        wgpu::Backends::VULKAN | wgpu::Backends::GL
    };
    if !backends.intersects(native) {
        return format!(
            "backends {backends:?} do not exist on this platform (it has {native:?}); set LINSEQ_BACKEND to one of them or to `any`"
        );
    }
    if backends.contains(wgpu::Backends::VULKAN) {
        format!("backends {backends:?}: {INSTALL_HINT}")
    } else {
        format!("backends {backends:?}: no adapter; `linseq adapters` lists what this machine has")
    }
}

/// Features linseq asks for when the adapter offers them.
fn wanted_features(allow_experimental: bool) -> wgpu::Features {
    let mut f = wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    if allow_experimental {
        f |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    }
    f
}

/// Errors reported asynchronously by wgpu, drained by [`Device::check`].
#[derive(Default)]
struct ErrorSink {
    first: Option<Error>,
    lost: Option<String>,
}

static GL_GATE: Mutex<()> = Mutex::new(());
thread_local! {
    static GL_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` alone among this process's calls into wgpu's GL backend (re-entrant on one
/// thread). That backend locks its EGL context for each call and panics ("Could not lock
/// adapter context") after waiting 6 s for it, which one shader compile on Mesa's llvmpipe
/// can take; waiting here first has no such limit.
pub fn gl_alone<T>(f: impl FnOnce() -> T) -> T {
    if GL_HELD.with(|h| h.get()) {
        return f();
    }
    let _alone = GL_GATE.lock().unwrap_or_else(|p| p.into_inner());
    struct Held;
    impl Drop for Held {
        fn drop(&mut self) {
            GL_HELD.with(|h| h.set(false));
        }
    }
    GL_HELD.with(|h| h.set(true));
    let _held = Held;
    f()
}

/// `f` through [`gl_alone`] when `gl`, else directly.
fn gated<T>(gl: bool, f: impl FnOnce() -> T) -> T {
    if gl {
        gl_alone(f)
    } else {
        f()
    }
}

/// A wgpu buffer that a [`Device`] made. Dropping the last handle deletes a GL buffer at once,
/// under the EGL context lock, on whichever thread drops it, so on GL the drop takes
/// [`gl_alone`] too.
pub struct Buffer {
    raw: std::mem::ManuallyDrop<wgpu::Buffer>,
    gl: bool,
}

impl std::ops::Deref for Buffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.raw
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let raw = unsafe { std::mem::ManuallyDrop::take(&mut self.raw) };
        gated(self.gl, || drop(raw));
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

/// An open GPU device with its queue, capabilities and tuning table.
///
/// wgpu's default uncaptured-error handler panics; linseq installs its own that records the
/// first error, and every submit/readback path calls [`Device::check`] so the error comes back
/// as a `Result` at the call that caused it (or the next one).
pub struct Device {
    // (ManuallyDrop: on GL, dropped under the GL gate; see the Drop impl.)
    pub(crate) device: std::mem::ManuallyDrop<wgpu::Device>,
    pub(crate) queue: std::mem::ManuallyDrop<wgpu::Queue>,
    info: wgpu::AdapterInfo,
    caps: Capabilities,
    sink: Arc<Mutex<ErrorSink>>,
    /// Per-device state owned by the layers above (the shader layer's pipeline cache), keyed by
    /// type, so this layer needs to know none of them ([`Device::local`]).
    locals: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    counters: Counters,
    /// Tuned variant choices for this adapter (see [`crate::tuning`]).
    tuning: std::sync::RwLock<crate::tuning::TuneTable>,
}

impl Drop for Device {
    /// The pipelines (in `locals`), the queue and the device go under the GL gate on GL: their
    /// deletion takes the EGL context.
    fn drop(&mut self) {
        let gl = self.is_gl();
        let locals = std::mem::take(self.locals.get_mut().unwrap_or_else(|p| p.into_inner()));
        // SAFETY: taken once, here; the fields are never used after.
        let (queue, device) = unsafe {
            (std::mem::ManuallyDrop::take(&mut self.queue), std::mem::ManuallyDrop::take(&mut self.device))
        };
        gated(gl, move || drop((locals, queue, device)));
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("adapter", &self.info.name).finish_non_exhaustive()
    }
}

impl Device {
    /// Opens the adapter chosen by the environment (see module docs).
    pub fn new() -> Result<Self> {
        Self::with_selection(&AdapterSelection::from_env()?)
    }

    /// Opens the adapter chosen by `sel`.
    pub fn with_selection(sel: &AdapterSelection) -> Result<Self> {
        Self::from_adapter(select_adapter(sel)?, sel.allow_experimental)
    }

    /// Opens a device on a given adapter, requesting every useful feature it has and its real
    /// limits (wgpu's defaults would cap storage bindings at 128 MiB).
    pub fn from_adapter(adapter: wgpu::Adapter, allow_experimental: bool) -> Result<Self> {
        let info = adapter.get_info();
        let features = adapter.features() & wanted_features(allow_experimental);
        let limits = adapter.limits();
        let coop = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            adapter.cooperative_matrix_properties()
        } else {
            Vec::new()
        };
        let experimental_features = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: the cooperative-matrix feature is experimental in wgpu 30. linseq only uses
            // it in shaders validated by naga, and callers can opt out with
            // LINSEQ_NO_EXPERIMENTAL=1.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let desc = wgpu::DeviceDescriptor {
            label: Some("linseq"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::RequestDevice(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        {
            let sink = sink.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let err = match &e {
                    wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory(e.to_string()),
                    _ => Error::Validation(e.to_string()),
                };
                log::error!("{err}");
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.first.get_or_insert(err);
            }));
        }
        {
            let sink = sink.clone();
            device.set_device_lost_callback(move |reason, msg| {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.lost = Some(format!("{reason:?}: {msg}"));
            });
        }
        let caps = Capabilities::new(&info, device.features(), device.limits(), &coop);
        let tuning = std::sync::RwLock::new(crate::tuning::load_for(&info));
        Ok(Self {
            device: std::mem::ManuallyDrop::new(device),
            queue: std::mem::ManuallyDrop::new(queue),
            info,
            caps,
            sink,
            locals: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            tuning,
        })
    }

    /// The tuned variant for `op` and `bucket`, if this adapter's tuning table has one.
    pub fn tuned(&self, op: &str, bucket: &str) -> Option<String> {
        let t = self.tuning.read().unwrap_or_else(|p| p.into_inner());
        t.get(op, bucket).map(|e| e.variant.clone())
    }

    /// This device's tuning table (loaded at start-up from the cache file, see [`crate::tuning`]).
    pub fn tuning(&self) -> crate::tuning::TuneTable {
        self.tuning.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the tuning table (for example with a fresh `tune::tune_ops` result).
    pub fn set_tuning(&self, table: crate::tuning::TuneTable) {
        *self.tuning.write().unwrap_or_else(|p| p.into_inner()) = table;
    }

    /// Uses the table of a cache shipped with an application, if it has one for this adapter,
    /// driver and linseq version; returns whether it had.
    pub fn install_tuning(&self, file: &crate::tuning::TuneFile) -> bool {
        let key = crate::tuning::TuneKey::of(&self.info);
        match file.table(&key) {
            Some(t) => {
                self.set_tuning(t.clone());
                true
            }
            None => false,
        }
    }

    /// The adapter this device runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// What the device can do: features, limits and derived choices.
    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    /// The raw wgpu device, for callers that record their own work.
    pub fn raw(&self) -> &wgpu::Device {
        &self.device
    }

    /// The raw wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Returns the first error wgpu reported since the last check, or device loss.
    pub fn check(&self) -> Result<()> {
        let mut s = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lost) = &s.lost {
            return Err(Error::DeviceLost(lost.clone()));
        }
        match s.first.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `f`, which calls into wgpu for this device, alone among this process's calls into
    /// wgpu's GL backend (see [`gl_alone`]); on other backends, directly.
    pub fn gl<T>(&self, f: impl FnOnce() -> T) -> T {
        gated(self.is_gl(), f)
    }

    fn is_gl(&self) -> bool {
        self.info.backend == wgpu::Backend::Gl
    }

    /// Creates a buffer (counted in [`Device::counters`]).
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> Buffer {
        self.counters.buffers.fetch_add(1, Ordering::Relaxed);
        self.raw_buffer(desc)
    }

    /// Creates a buffer that [`Device::counters`] leaves out (the profiler's own).
    pub fn raw_buffer(&self, desc: &wgpu::BufferDescriptor) -> Buffer {
        Buffer {
            raw: std::mem::ManuallyDrop::new(self.gl(|| self.device.create_buffer(desc))),
            gl: self.is_gl(),
        }
    }

    /// Creates a bind group (counted in [`Device::counters`]).
    pub fn create_bind_group(&self, desc: &wgpu::BindGroupDescriptor) -> wgpu::BindGroup {
        self.counters.bind_groups.fetch_add(1, Ordering::Relaxed);
        self.gl(|| self.device.create_bind_group(desc))
    }

    /// Writes `bytes` into `buf` at `offset` (queued before the next submit).
    pub fn write_buffer(&self, buf: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        self.gl(|| self.queue.write_buffer(buf, offset, bytes))
    }

    /// A command encoder.
    pub fn command_encoder(&self) -> wgpu::CommandEncoder {
        self.gl(|| self.device.create_command_encoder(&Default::default()))
    }

    /// Buffers and bind groups created and submits made through linseq so far.
    pub fn counters(&self) -> CounterSnapshot {
        CounterSnapshot {
            buffers: self.counters.buffers.load(Ordering::Relaxed),
            bind_groups: self.counters.bind_groups.load(Ordering::Relaxed),
            submits: self.counters.submits.load(Ordering::Relaxed),
        }
    }

    /// Submits command buffers, then reports any error recorded while building them.
    pub fn submit(
        &self,
        cmds: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> Result<wgpu::SubmissionIndex> {
        self.check()?;
        self.counters.submits.fetch_add(1, Ordering::Relaxed);
        let idx = self.gl(|| self.queue.submit(cmds));
        self.check()?;
        Ok(idx)
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.gl(|| self.device.poll(wgpu::PollType::wait_indefinitely()))
            .map_err(|e| Error::DeviceLost(format!("poll failed: {e}")))?;
        self.check()
    }

    /// Destroys the device; later calls return [`Error::DeviceLost`]. Used to test loss handling.
    pub fn destroy(&self) {
        self.gl(|| self.device.destroy());
        let mut s = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        s.lost.get_or_insert_with(|| "destroyed by the application".into());
    }

    /// This device's instance of `T`, made with `T::default()` on first use: where a layer
    /// above keeps per-device state (the shader layer's pipeline cache is one).
    pub fn local<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut map = self.locals.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry(TypeId::of::<T>()).or_insert_with(|| Arc::new(T::default()));
        slot.clone().downcast::<T>().expect("a local's slot holds its own type")
    }

    /// A one-line description: name, backend, type, driver.
    pub fn describe(&self) -> String {
        describe_info(&self.info)
    }
}

/// One-line description of an adapter.
pub fn describe_info(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    )
}

#[cfg(test)]
mod tests {
    use super::gl_alone;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The GL gate nests on one thread (a buffer dropped inside a gated call takes it again)
    /// and lets one thread in at a time.
    #[test]
    fn the_gl_gate_nests_and_admits_one_thread_at_a_time() {
        assert_eq!(gl_alone(|| gl_alone(|| 7)), 7);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (inside, most) = (inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        gl_alone(|| {
                            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a gated thread panicked");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // The flag is per thread and cleared on the way out, so a later call still waits its
        // turn rather than running as if nested.
        assert!(!super::GL_HELD.with(|h| h.get()));
    }
}
