//! The engine's error type. Every fallible public call returns [`Result`].

use std::fmt;

/// Errors surfaced by linseq. GPU-side failures (validation, out-of-memory, device loss) are
/// captured from wgpu's callbacks and returned here instead of aborting the process.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// No adapter matched the selection; the message says what to install or change.
    NoAdapter(String),
    /// `request_device` failed.
    RequestDevice(String),
    /// The device was lost (driver reset, removal, or explicit destroy).
    DeviceLost(String),
    /// wgpu reported a validation error.
    Validation(String),
    /// The device ran out of memory.
    OutOfMemory(String),
    /// A shader failed to preprocess, parse or validate.
    Shader { variant: String, message: String },
    /// No registered variant matched a request, or the adapter lacks its features.
    UnsupportedVariant(String),
    /// A tensor shape, dtype or size was not acceptable for an op.
    Shape(String),
    /// A size exceeded a device limit (binding size, buffer size, dispatch size).
    Limit(String),
    /// Reading results back from the GPU failed.
    Readback(String),
    /// An invalid argument that is not about shapes.
    Invalid(String),
    /// A computation produced NaN or Inf where a result must be finite (logits before sampling).
    NonFinite(String),
    /// A model checkpoint or config could not be read or does not match its architecture
    /// (missing or mis-shaped tensors, truncated files, unknown `model_type`).
    Model(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::RequestDevice(m) => write!(f, "could not open the device: {m}"),
            Error::DeviceLost(m) => write!(f, "the GPU device was lost: {m}"),
            Error::Validation(m) => write!(f, "GPU validation error: {m}"),
            Error::OutOfMemory(m) => write!(f, "GPU out of memory: {m}"),
            Error::Shader { variant, message } => write!(f, "shader `{variant}`: {message}"),
            Error::UnsupportedVariant(m) => write!(f, "unsupported shader variant: {m}"),
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Limit(m) => write!(f, "device limit exceeded: {m}"),
            Error::Readback(m) => write!(f, "readback failed: {m}"),
            Error::Invalid(m) => write!(f, "invalid argument: {m}"),
            Error::Model(m) => write!(f, "model: {m}"),
            Error::NonFinite(m) => write!(f, "non-finite result: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns `Err(Error::Shape)` with a formatted message when the condition fails.
#[macro_export]
macro_rules! ensure_shape {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::Error::Shape(format!($($arg)*)));
        }
    };
}
