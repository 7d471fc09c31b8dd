use linseq::testing::{self, budget, compare, GuardedOutput};
use linseq::{DType, Device};
use std::sync::OnceLock;

/// The values rounded to f16 and back, so an f64 reference sees exactly what f16 inputs hold.
pub fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect()
}

/// Asserts `got` is within (NMSE, max-abs) `bounds` of `want` with no non-finite mismatch,
/// printing the figures under `op` and `what`.
pub fn check_within(
    dev: &Device,
    op: &str,
    what: &str,
    got: &[f32],
    want: &[f64],
    (nmse, max_abs): (f64, f64),
) {
    let c = compare(got, want);
    eprintln!("[{}] {op} {what}: nmse {:.2e} max_abs {:.2e}", dev.caps().backend, c.nmse, c.max_abs);
    assert!(
        c.nonfinite_mismatches == 0 && c.nmse < nmse && c.max_abs < max_abs,
        "[{}] {what}: {c:?}",
        dev.describe()
    );
}

/// All adapters, opened once for the whole binary.
pub fn devices() -> &'static [Device] {
    static DEVS: OnceLock<Vec<Device>> = OnceLock::new();
    DEVS.get_or_init(|| match testing::devices() {
        Ok(d) => {
            for dev in &d {
                eprintln!("test adapter: {}", dev.describe());
            }
            d
        }
        Err(e) => panic!("{e}"),
    })
}

/// Devices of the caller's own, for tests that count a device's objects or submits: the shared
/// ones from [`devices`] are used by other tests running in parallel.
pub fn private_devices() -> Vec<Device> {
    testing::devices().unwrap_or_else(|e| panic!("{e}"))
}

/// Reads a guarded f32 output, compares it with the reference under the op's budget and
/// prints the per-case figures. Panics with the figures on failure.
pub fn check(dev: &Device, op: &str, dtype: DType, case: &str, out: &GuardedOutput, want: &[f64]) {
    let got = out.read_f32(dev).unwrap_or_else(|e| panic!("[{}] {op} {case}: {e}", dev.caps().backend));
    let c = compare(&got, want);
    let b = budget(op, dtype);
    eprintln!(
        "[{:<6}] {op:<12} {:<4} {case:<40} nmse {:.2e} max_abs {:.2e} (budget {:.0e}/{:.0e})",
        dev.caps().backend,
        dtype.name(),
        c.nmse,
        c.max_abs,
        b.nmse,
        b.max_abs
    );
    if let Err(msg) = c.check(b) {
        panic!("[{}] {op} {dtype:?} {case}: {msg}", dev.describe());
    }
}

/// Values rounded through f16, so the reference sees what an f16 tensor holds.
pub fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect()
}
