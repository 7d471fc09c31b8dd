//! The selective-scan family's registered variants, typed parameters and flags, and the
//! ceiling probe.

use super::{ScanArgs, ScanKernel, SHADER};
use crate::error::{Error, Result};
use crate::ops::{self, Recorder};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

crate::flags! {
    /// Bits of [`ScanParams::flags`] (shared with the fused Mamba decode step).
    pub mod scan_flags { SOFTPLUS = 1, HAS_BIAS = 2, HAS_D = 4, HAS_Z = 8, NEG_EIG = 16, INIT = 32, RESET = 64 }
}

crate::uniform! {
    /// The scan kernels' parameters: a window `[win_start, win_start + win_len)` of every
    /// sequence's tokens.
    pub struct ScanParams {
        pub dim: u32,
        pub total: u32,
        pub nstate: u32,
        pub groups: u32,
        pub nseq: u32,
        pub flags: u32,
        pub win_start: u32,
        pub win_len: u32,
    }
}

pub fn variants() -> Vec<Variant> {
    [DType::F32, DType::F16]
        .iter()
        .flat_map(|&dt| ScanKernel::ALL.iter().map(move |k| k.variant_for(dt)).chain([decode_variant(dt)]))
        .chain(CeilingProbe::ALL.map(CeilingProbe::variant))
        .collect()
}

/// Bench probes that bound the selective scan from above: its per-token arithmetic with the
/// recurrence cut (see [`ceiling_probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeilingProbe {
    /// The scan's loads, stores and transcendental ops, tokens independent.
    Full,
    /// `Full` with the decays of states 12…15 as a polynomial exp2 on the FMA pipe instead of
    /// the special-function unit.
    Poly,
    /// `Full`'s arithmetic alone: inputs made from the index, no loads, no stores.
    ComputeOnly,
}

impl CeilingProbe {
    pub const ALL: [CeilingProbe; 3] = [CeilingProbe::Full, CeilingProbe::Poly, CeilingProbe::ComputeOnly];

    pub fn variant(self) -> Variant {
        let name = match self {
            CeilingProbe::Full => "selective_scan.ceiling",
            CeilingProbe::Poly => "selective_scan.ceiling.poly",
            CeilingProbe::ComputeOnly => "selective_scan.ceiling.compute",
        };
        Variant::new(name, &SHADER, "scan_ceiling")
            .define("CEILING", 1)
            .define("POLY", (self == CeilingProbe::Poly) as u32)
            .define("COMPUTE_ONLY", (self == CeilingProbe::ComputeOnly) as u32)
            .define("F16IN", 0)
            .define("IN", "f32")
            .with_params::<ScanParams>()
            .with_flags(scan_flags::SET)
    }
}

/// Bench probe, not a scan: y = (Σₙ exp(dt·Aₙ)·dt·u·Bₙ·Cₙ + D·u)·silu(z) for every token, i.e.
/// the loads, stores and transcendental ops of the N = 16 scan (softplus, 16 decays, silu per
/// channel and token) with the recurrence cut, so tokens are independent. Its throughput
/// bounds any kernel that computes these exps (`ComputeOnly` writes nothing; `y` keeps its
/// contents). Needs f32 inputs, N = 16, softplus, bias, D and z, and D / G a multiple of 64.
pub fn ceiling_probe(rec: &mut Recorder, args: &ScanArgs, y: &Tensor, probe: CeilingProbe) -> Result<()> {
    let (dim, n) = args.dims()?;
    ops::expect("y", y, &[args.seqs.total(), dim], DType::F32)?;
    let f = args.flags;
    let z = args.z.ok_or_else(|| Error::Invalid("the ceiling probe needs z".into()))?;
    if n != 16
        || args.u.dtype() != DType::F32
        || !(dim / args.groups).is_multiple_of(64)
        || !(f.delta_softplus && f.delta_bias && f.d_skip)
        || f.neg_eigen
    {
        return Err(Error::Invalid(
            "the ceiling probe takes f32 inputs, N = 16, D / G a multiple of 64, softplus, bias and D".into(),
        ));
    }
    let tiles = args.seqs.total().div_ceil(64); // four tiles of 16 tokens per workgroup
    let max = rec.device().caps().max_compute_workgroups_per_dimension as usize;
    if tiles > max {
        return Err(Error::Limit(format!("{tiles} token tiles exceed the dispatch grid")));
    }
    let tensors = [args.u, args.delta, args.bc, z, args.chan, &args.seqs.table, y];
    let params = args.params(dim, n, (0, 0), false)?;
    rec.dispatch(&probe.variant(), &params, &tensors, [(dim / 64) as u32, tiles as u32, 1])
}

/// The decode-step kernel (`scan_decode`, beside the sequential one).
pub(super) fn decode_variant(input: DType) -> Variant {
    let mut v = ScanKernel::Sequential.variant_for(input);
    v.entry = "scan_decode";
    v.name = v.name.replace("sequential", "decode");
    v
}
