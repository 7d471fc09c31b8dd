//! A family's kernel choice. Each family that has several kernels for one op (the scan's
//! `sequential`, `chunked`, `tiled`, …) describes them through [`Kernel`]; [`choose`] is the
//! one chooser: the device's tuned choice for the problem's bucket when it has one and can run
//! it here, else the family's heuristic. A cached choice that this device or this problem
//! cannot take (a tensor-core kernel on f32 activations, a name from another build) is skipped,
//! never run.

use crate::device::{Capabilities, Device};

/// The kernels of one op, as its chooser sees them.
pub trait Kernel: Copy + PartialEq + std::fmt::Debug + Sized + 'static {
    /// The op's key in the tuning table (`ssd`, `selective_scan`).
    const OP: &'static str;
    /// What a choice depends on: shapes, dtypes, batch.
    type Problem;
    /// Every kernel of the op.
    fn all() -> Vec<Self>;
    /// The kernel's name (as the tuning table stores it).
    fn name(&self) -> String;
    /// Whether it runs this problem on a device with these capabilities.
    fn supports(&self, caps: &Capabilities, problem: &Self::Problem) -> bool;
    /// The tuning bucket a problem falls in.
    fn bucket(problem: &Self::Problem) -> String;
    /// The built-in choice; must be a kernel that [`Kernel::supports`] the problem.
    fn heuristic(caps: &Capabilities, problem: &Self::Problem) -> Self;

    /// Looks a kernel up by name.
    fn from_name(name: &str) -> Option<Self> {
        Self::all().into_iter().find(|k| k.name() == name)
    }
}

/// The kernel to run: the tuned choice for the problem's bucket if the device has one that
/// supports the problem, else the heuristic.
pub fn choose<K: Kernel>(dev: &Device, problem: &K::Problem) -> K {
    dev.tuned(K::OP, &K::bucket(problem))
        .and_then(|name| K::from_name(&name))
        .filter(|k| k.supports(dev.caps(), problem))
        .unwrap_or_else(|| K::heuristic(dev.caps(), problem))
}
