//! The S4 family's GPU kernels (`shaders/s4/s4.wgsl`): kernel generation (S4D's Vandermonde
//! sum, S4's Cauchy sums with the Woodbury correction followed by an inverse FFT), the causal
//! convolution y = k ∗ u + D·u (by FFT, fused in [`super::fftconv`] or in separate passes
//! here, or summed directly for short segments) and the recurrent view r ← M·r + b·u in real
//! coordinates. The host-side preparation of their inputs from a layer's parameters is
//! [`super::layer`].

use super::super::fft::{self, Plan};
use super::super::sequences::Sequences;
use super::super::{grid, word, Params, Recorder};
use super::fftconv::{self, FusedPlan};
use crate::error::{Error, Result};
use crate::shader::Variant;
use crate::tensor::{DType, Tensor};

/// The family's WGSL (`shaders/s4/s4.wgsl`).
pub const SHADER: crate::shader::Source = crate::wgsl_source!("s4/s4");

crate::uniform! {
    /// Every S4 kernel's parameters; each entry documents what a–g hold for it.
    pub struct S4Params {
        pub a: u32, pub b: u32, pub c: u32, pub d: u32, pub e: u32, pub f: u32, pub g: u32, pub flags: u32,
        /// The first channel pair of a convolution's group.
        pub pair0: u32, pub pad0: u32, pub pad1: u32, pub pad2: u32,
    }
}

crate::flags! {
    /// Bits of [`S4Params::flags`] (the recurrence's).
    pub mod s4_flags { INIT = 1, RESET = 2, OUTPUT = 4 }
}

/// The kernels, one entry each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Vandermonde,
    Cauchy,
    Extract,
    Pack,
    Pointwise,
    Unpack,
    Direct,
    Recurrence,
    State,
    Combine,
}

impl Kernel {
    pub const ALL: [Kernel; 10] = [
        Kernel::Vandermonde,
        Kernel::Cauchy,
        Kernel::Extract,
        Kernel::Pack,
        Kernel::Pointwise,
        Kernel::Unpack,
        Kernel::Direct,
        Kernel::Recurrence,
        Kernel::State,
        Kernel::Combine,
    ];

    fn entry(self) -> (&'static str, &'static str) {
        match self {
            Kernel::Vandermonde => ("VANDERMONDE", "vandermonde"),
            Kernel::Cauchy => ("CAUCHY", "cauchy"),
            Kernel::Extract => ("EXTRACT", "extract"),
            Kernel::Pack => ("PACK", "pack"),
            Kernel::Pointwise => ("POINTWISE", "pointwise"),
            Kernel::Unpack => ("UNPACK", "unpack"),
            Kernel::Direct => ("DIRECT", "direct"),
            Kernel::Recurrence => ("RECURRENCE", "recurrence"),
            Kernel::State => ("STATE", "state_sum"),
            Kernel::Combine => ("COMBINE", "combine"),
        }
    }

    pub fn variant(self) -> Variant {
        let entry = self.entry().1;
        let mut v = Variant::new(format!("s4.{entry}"), &SHADER, entry)
            .with_params::<S4Params>()
            .one_of(Kernel::ALL.map(|k| k.entry().0), self.entry().0);
        // e^{x·l} with an exact phase: the Vandermonde kernel's and the state's.
        v = v.define("POWER", matches!(self, Kernel::Vandermonde | Kernel::State) as u32);
        v = v.define("SEGMENTS", matches!(self, Kernel::Unpack | Kernel::Direct) as u32);
        // The generators' sum forms are off unless [`generator`] turns one on, so the variant
        // registered and the one dispatched carry the same defines.
        v = v.with_subgroups(false).define("STAGED", 0);
        if matches!(self, Kernel::Recurrence | Kernel::Combine) {
            v = v.define(crate::shader::BOUNDED_LOOPS, 1).with_flags(s4_flags::SET);
        }
        v
    }
}

/// How the kernel generators sum over the N states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sum {
    /// One invocation per output, looping over the states.
    PerOutput,
    /// One subgroup per output, its lanes splitting the states (subgroupAdd).
    Subgroup,
    /// A workgroup per 64 outputs of one channel, the channel's N terms staged in workgroup
    /// memory first (N ≤ 256).
    Staged,
}

impl Sum {
    /// The form for this device: per output unless `LINSEQ_S4_SUM` asks for `subgroup` (where
    /// the adapter has subgroups) or `staged` (no measurement has chosen between them on a GPU
    /// yet).
    pub fn choose(caps: &crate::device::Capabilities) -> Sum {
        match std::env::var("LINSEQ_S4_SUM").as_deref() {
            Ok("subgroup") if caps.subgroups => Sum::Subgroup,
            Ok("staged") => Sum::Staged,
            _ => Sum::PerOutput,
        }
    }

    /// Most states per conjugate pair the form takes.
    pub fn max_states(self) -> usize {
        match self {
            Sum::Staged => 256,
            _ => usize::MAX,
        }
    }

    /// Workgroups for `channels` × `outputs` outputs.
    fn workgroups(self, channels: usize, outputs: usize) -> usize {
        match self {
            Sum::Staged => channels * outputs.div_ceil(64),
            _ => (channels * outputs).div_ceil(64),
        }
    }
}

/// A kernel generator in the form `sum`.
pub fn generator(kernel: Kernel, sum: Sum) -> Variant {
    let v = kernel.variant().define("STAGED", (sum == Sum::Staged) as u32);
    match sum {
        Sum::PerOutput => v,
        Sum::Subgroup => {
            let mut v = v.with_subgroups(true);
            v.name = format!("{}.sg", v.name);
            v
        }
        Sum::Staged => {
            let mut v = v;
            v.name = format!("{}.staged", v.name);
            v
        }
    }
}

pub fn variants() -> Vec<Variant> {
    let mut v: Vec<Variant> = Kernel::ALL
        .iter()
        .filter(|k| !matches!(k, Kernel::Vandermonde | Kernel::Cauchy))
        .map(|k| k.variant())
        .collect();
    for k in [Kernel::Vandermonde, Kernel::Cauchy] {
        v.extend([Sum::PerOutput, Sum::Subgroup, Sum::Staged].map(|s| generator(k, s)));
    }
    v
}

/// Most real state rows (2N) the recurrence takes.
pub const MAX_ROWS: usize = 512;

/// Tokens per sequence per dispatch of the recurrence (lavapipe ends very long loops).
const TOKENS_PER_DISPATCH: usize = 8192;

fn params(v: [usize; 7], flags: u32) -> Result<Params> {
    params_at(v, flags, 0)
}

fn params_at(v: [usize; 7], flags: u32, pair0: usize) -> Result<Params> {
    let w = |x: usize| word("S4 size", x);
    Ok(Params::of(&S4Params {
        pair0: w(pair0)?,
        pad0: 0,
        pad1: 0,
        pad2: 0,
        a: w(v[0])?,
        b: w(v[1])?,
        c: w(v[2])?,
        d: w(v[3])?,
        e: w(v[4])?,
        f: w(v[5])?,
        g: w(v[6])?,
        flags,
    }))
}

/// (H, L, halves) of a kernel `[H, L]` (causal) or `[2, H, L]` (bidirectional: forward, then
/// backward).
pub fn kernel_dims(k: &Tensor) -> Result<(usize, usize, usize)> {
    match k.shape() {
        &[h, l] if h > 0 && l > 0 && k.dtype() == DType::F32 => Ok((h, l, 1)),
        &[2, h, l] if h > 0 && l > 0 && k.dtype() == DType::F32 => Ok((h, l, 2)),
        other => Err(Error::Shape(format!("S4 kernel: expected f32 [H, L] or [2, H, L], got {other:?}"))),
    }
}

/// The offset of half `half` of a kernel, checked.
fn half_offset(k: &Tensor, half: usize) -> Result<(usize, usize, usize)> {
    let (h, l, halves) = kernel_dims(k)?;
    if half >= halves {
        return Err(Error::Shape(format!("S4 kernel {:?} has no half {half}", k.shape())));
    }
    Ok((h, l, half * h * l))
}

/// Half `half` (0 forward, 1 the backward of a bidirectional kernel) of S4D's kernel `k`
/// from `terms` `[H·N, 4]` and `theta` `[H·N, 2]` u32 ([`super::layer::VandermondeTerms`]).
pub fn vandermonde(
    rec: &mut Recorder,
    terms: &Tensor,
    theta: &Tensor,
    n: usize,
    k: &Tensor,
    half: usize,
) -> Result<()> {
    let sum = Sum::choose(rec.device().caps());
    vandermonde_with(rec, terms, theta, n, k, half, sum)
}

/// [`vandermonde`] in the form `sum`.
#[allow(clippy::too_many_arguments)]
pub fn vandermonde_with(
    rec: &mut Recorder,
    terms: &Tensor,
    theta: &Tensor,
    n: usize,
    k: &Tensor,
    half: usize,
    sum: Sum,
) -> Result<()> {
    let (h, l, offset) = half_offset(k, half)?;
    super::super::expect("vandermonde terms", terms, &[h * n, 4], DType::F32)?;
    super::super::expect("vandermonde theta", theta, &[h * n, 2], DType::U32)?;
    check_states(n, sum)?;
    let p = params([h, n, l, 0, 0, offset, 0], 0)?;
    let v = generator(Kernel::Vandermonde, sum);
    rec.dispatch(&v, &p, &[terms, theta, k], grid(rec.device(), sum.workgroups(h, l))?)
}

fn check_states(n: usize, sum: Sum) -> Result<()> {
    if n > sum.max_states() {
        return Err(Error::Limit(format!(
            "the {sum:?} kernel generator takes at most {} states per conjugate pair, not {n}",
            sum.max_states()
        )));
    }
    Ok(())
}

/// The length of the inverse FFT that S4's kernel of length `l` takes: a power of two ≥ l.
pub fn cauchy_length(l: usize) -> usize {
    l.max(2).next_power_of_two()
}

/// Scratch the DPLR kernel of `h` channels and length `l` needs: the spectrum, f32 pairs.
pub fn cauchy_scratch(h: usize, l: usize) -> Vec<usize> {
    vec![h * cauchy_length(l) * 2]
}

/// Half `half` of S4's kernel `k` from `terms` `[H·N, 5, 2]` ([`super::layer::Prepared::cauchy_terms`],
/// built for length [`cauchy_length`]`(L)`): Cauchy sums at the roots of unity, an inverse FFT
/// in `spec` ([`cauchy_scratch`]), and the first L real parts.
pub fn cauchy(
    rec: &mut Recorder,
    terms: &Tensor,
    n: usize,
    spec: &Tensor,
    k: &Tensor,
    half: usize,
) -> Result<()> {
    let sum = Sum::choose(rec.device().caps());
    cauchy_with(rec, terms, n, spec, k, half, sum)
}

/// [`cauchy`] in the form `sum`.
pub fn cauchy_with(
    rec: &mut Recorder,
    terms: &Tensor,
    n: usize,
    spec: &Tensor,
    k: &Tensor,
    half: usize,
    sum: Sum,
) -> Result<()> {
    let (h, l, offset) = half_offset(k, half)?;
    let lk = cauchy_length(l);
    super::super::expect("cauchy terms", terms, &[h * n, 5, 2], DType::F32)?;
    super::super::expect("cauchy spectrum", spec, &cauchy_scratch(h, l), DType::F32)?;
    let plan = Plan::new(rec.device(), lk)?;
    let p = params([h, n, lk, plan.n1, plan.n2, 0, 0], 0)?;
    let dev = rec.device();
    check_states(n, sum)?;
    let v = generator(Kernel::Cauchy, sum);
    rec.dispatch(&v, &p, &[terms, spec], grid(dev, sum.workgroups(h, lk / 2 + 1))?)?;
    fft::fft(rec, spec, h, &plan, true)?;
    let p = params([h, l, lk, 0, 0, offset, 0], 0)?;
    rec.dispatch(&Kernel::Extract.variant(), &p, &[spec, k], grid(rec.device(), (h * l).div_ceil(64))?)
}

/// How the convolution is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvMethod {
    /// FFT when the longest segment passes [`DIRECT_MAX`], else direct.
    Auto,
    /// The fused FFT convolution ([`super::fftconv`]) where [`super::fftconv::FusedPlan`] has a
    /// plan (its whole form up to half a workgroup's transform, its four-step form past a whole
    /// one), else the separate passes.
    Fft,
    /// The separate passes: pack, forward FFT, product, inverse FFT, unpack.
    FftPasses,
    Direct,
}

/// The longest segment [`ConvMethod::Auto`] sums directly.
pub const DIRECT_MAX: usize = 64;

/// Segments of `seqs`: its sequences, cut again at each reset token (as cu_seqlens).
pub fn segments(cu: &[usize], resets: Option<&[bool]>) -> Vec<usize> {
    let mut out = vec![0];
    for w in cu.windows(2) {
        for t in w[0] + 1..w[1] {
            if resets.is_some_and(|r| r[t]) {
                out.push(t);
            }
        }
        out.push(w[1]);
    }
    out.dedup();
    out
}

/// The longest segment of a cu_seqlens-like table.
pub fn longest(cu: &[usize]) -> usize {
    cu.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

/// The FFT length of a convolution whose longest segment is `l`.
pub fn conv_length(l: usize) -> usize {
    (2 * l.max(1)).next_power_of_two()
}

impl crate::ops::kernel::Kernel for ConvMethod {
    const OP: &'static str = "s4.conv";
    /// The longest segment.
    type Problem = usize;
    /// The tuner times all three, and the H100 preferred the separate passes at some lengths.
    fn all() -> Vec<Self> {
        vec![ConvMethod::Fft, ConvMethod::FftPasses, ConvMethod::Direct]
    }
    fn name(&self) -> String {
        match self {
            ConvMethod::Fft => "fft",
            ConvMethod::FftPasses => "fft.passes",
            ConvMethod::Direct => "direct",
            ConvMethod::Auto => "auto",
        }
        .into()
    }
    fn supports(&self, _caps: &crate::device::Capabilities, _l: &usize) -> bool {
        *self != ConvMethod::Auto
    }
    fn bucket(l: &usize) -> String {
        format!("L{}", l.max(&1).next_power_of_two())
    }
    fn heuristic(_caps: &crate::device::Capabilities, l: &usize) -> Self {
        conv_method(ConvMethod::Auto, *l)
    }
}

/// The convolution for a longest segment of `l` on `dev`: the tuned choice of its length
/// bucket (`linseq tune --ops s4` measures the crossover), else direct up to [`DIRECT_MAX`].
pub fn choose_conv(dev: &crate::device::Device, l: usize) -> ConvMethod {
    crate::ops::kernel::choose(dev, &l)
}

/// The method `method` resolves to for a longest segment of `l`.
pub fn conv_method(method: ConvMethod, l: usize) -> ConvMethod {
    match method {
        ConvMethod::Auto if l <= DIRECT_MAX => ConvMethod::Direct,
        ConvMethod::Auto => ConvMethod::Fft,
        m => m,
    }
}

/// The most bytes of FFT rows one group of a convolution takes: larger convolutions run in
/// groups of channel pairs, so the scratch stays within every adapter's binding limit.
pub const CONV_GROUP_BYTES: usize = 256 << 20;

/// Channel pairs per group of the FFT convolution of `pairs` pairs over `segs` whose rows
/// take at most `bytes` (at least one pair).
pub fn conv_group(segs: &[usize], pairs: usize, bytes: usize) -> usize {
    let l = longest(segs);
    let per_pair = fftconv::row_scratch(segs.len().saturating_sub(1), 1, conv_length(l)) * 4;
    (bytes / per_pair.max(1)).clamp(1, pairs.max(1))
}

/// Scratch (f32 elements) the convolution of `h` channels over segments `segs` needs.
pub fn conv_scratch(segs: &[usize], h: usize, method: ConvMethod) -> Vec<usize> {
    let l = longest(segs);
    match conv_method(method, l) {
        ConvMethod::Fft if conv_length(l) <= fftconv::WHOLE_MAX => Vec::new(),
        ConvMethod::Fft | ConvMethod::FftPasses => {
            let group = conv_group(segs, h.div_ceil(2), CONV_GROUP_BYTES);
            vec![fftconv::row_scratch(segs.len().saturating_sub(1), group, conv_length(l))]
        }
        _ => Vec::new(),
    }
}

/// y `[T, H]` = k ∗ u + D·u within each segment of `segs` (cu_seqlens-like, host side), with
/// `k` `[H, L]` (L ≥ the longest segment), or `[2, H, L]` for a bidirectional kernel (the
/// backward half adds Σ_m k_b[m]·u[t + 1 + m], as the module's two-sided kernel does), and
/// `dskip` `[H]`; `data` is the FFT form's scratch ([`conv_scratch`]).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    rec: &mut Recorder,
    u: &Tensor,
    segs: &[usize],
    k: &Tensor,
    dskip: &Tensor,
    method: ConvMethod,
    data: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    conv_in_groups(rec, u, segs, k, dskip, method, data, y, CONV_GROUP_BYTES)
}

/// [`conv`] with the FFT rows of each group of channel pairs within `group_bytes` (`data`, when
/// given, sized for that group).
#[allow(clippy::too_many_arguments)]
pub fn conv_in_groups(
    rec: &mut Recorder,
    u: &Tensor,
    segs: &[usize],
    k: &Tensor,
    dskip: &Tensor,
    method: ConvMethod,
    data: Option<&Tensor>,
    y: &Tensor,
    group_bytes: usize,
) -> Result<()> {
    let (t, h) = match u.shape() {
        &[t, h] if u.dtype() == DType::F32 => (t, h),
        other => return Err(Error::Shape(format!("S4 conv: u must be f32 [T, H], got {other:?}"))),
    };
    let (kh, lk, halves) = kernel_dims(k)?;
    if kh != h {
        return Err(Error::Shape(format!("S4 conv: u has {h} channels but the kernel {kh}")));
    }
    let bidi = halves - 1;
    let longest = self::longest(segs);
    if segs.last() != Some(&t) || lk < longest {
        return Err(Error::Shape(format!(
            "S4 conv: segments {segs:?} do not cover {t} tokens with a kernel of {lk}"
        )));
    }
    super::super::expect("S4 D", dskip, &[h], DType::F32)?;
    super::super::expect("S4 y", y, &[t, h], DType::F32)?;
    if t == 0 {
        return Ok(());
    }
    let nseg = segs.len() - 1;
    let table: Vec<u32> = segs.iter().map(|&s| word("tokens", s)).collect::<Result<_>>()?;
    let segt = Tensor::from_slice(rec.device(), &[table.len()], &table)?;
    let method = conv_method(method, longest);
    if method == ConvMethod::Direct {
        let p = params([nseg, lk, h, 0, t, 0, bidi], 0)?;
        let g = grid(rec.device(), (t * h).div_ceil(64))?;
        return rec.dispatch(&Kernel::Direct.variant(), &p, &[u, &segt, dskip, k, y], g);
    }
    let n = conv_length(longest);
    let pairs = h.div_ceil(2);
    let fused = match method {
        ConvMethod::Fft => FusedPlan::new(n, Plan::local(rec.device())),
        _ => None,
    };
    // The whole form keeps no rows, so it takes every pair at once.
    let group = if fused.is_some_and(|f| f.whole()) { pairs } else { conv_group(segs, pairs, group_bytes) };
    let rows = match fused {
        Some(f) => f.scratch(nseg, group),
        None => fftconv::row_scratch(nseg, group, n),
    };
    let owned;
    let data = match data {
        Some(d) => Some(d),
        None if rows == 0 => None,
        None => {
            owned = Tensor::empty(rec.device(), &[rows], DType::F32)?;
            Some(&owned)
        }
    };
    if let Some(plan) = fused {
        for pair0 in (0..pairs).step_by(group) {
            let g = fftconv::Group {
                u,
                segt: &segt,
                segs: nseg,
                k,
                dskip,
                y,
                h,
                lk,
                lags: lk.min(longest),
                bidirectional: bidi == 1,
                pair0,
                pairs: group.min(pairs - pair0),
            };
            fftconv::record(rec, &g, &plan, data)?;
        }
        return Ok(());
    }
    let data = data.ok_or_else(|| Error::Shape("S4 conv: the separate passes need scratch".into()))?;
    super::super::expect("S4 conv scratch", data, &[rows], DType::F32)?;
    let plan = Plan::new(rec.device(), n)?;
    for pair0 in (0..pairs).step_by(group) {
        let g = group.min(pairs - pair0);
        let dev = rec.device();
        let p = params_at([nseg, g, h, n, lk, longest, bidi], 0, pair0)?;
        // Tiles of 64 positions × 8 pairs.
        let wg = grid(dev, (nseg + 1) * g.div_ceil(8) * n.div_ceil(64))?;
        rec.dispatch(&Kernel::Pack.variant(), &p, &[u, &segt, k, data], wg)?;
        fft::fft(rec, data, (nseg + 1) * g, &plan, false)?;
        let p = params([nseg, g, n, plan.n1, plan.n2, 0, 0], 0)?;
        let wg = grid(rec.device(), (nseg * g * n).div_ceil(64))?;
        rec.dispatch(&Kernel::Pointwise.variant(), &p, &[data], wg)?;
        fft::fft(rec, data, nseg * g, &plan, true)?;
        let p = params_at([nseg, g, h, n, t, 0, 0], 0, pair0)?;
        let wg = grid(rec.device(), g.div_ceil(8) * t.div_ceil(64))?;
        rec.dispatch(&Kernel::Unpack.variant(), &p, &[u, &segt, dskip, data, y], wg)?;
    }
    Ok(())
}

/// Per sequence of `cu`, the tokens its final state depends on: from its start, or its last
/// reset, to its end.
pub fn state_ranges(cu: &[usize], resets: Option<&[bool]>) -> Vec<(usize, usize)> {
    cu.windows(2)
        .map(|w| {
            let start = (w[0] + 1..w[1]).rev().find(|&t| resets.is_some_and(|r| r[t])).unwrap_or(w[0]);
            (start, w[1])
        })
        .collect()
}

/// S4D's state `[S, H, 2N]` (real coordinates) at the end of each sequence of `seqs`, from a
/// zero state, summed in parallel over the tokens: x = Σ_t Ā^{end − 1 − t}·B̄·u_t, with `terms`
/// `[H·N, 4]` (Re B̄, Im B̄, Re log Ā, 0) and `theta` the turn counts
/// ([`super::layer::Prepared::state_terms`]).
pub fn state_sum(
    rec: &mut Recorder,
    u: &Tensor,
    terms: &Tensor,
    theta: &Tensor,
    seqs: &Sequences,
    state: &Tensor,
) -> Result<()> {
    let (t, s) = (seqs.total(), seqs.count());
    let (h, r) = match state.shape() {
        &[ss, h, r] if ss == s && r >= 2 && r.is_multiple_of(2) => (h, r),
        other => return Err(Error::Shape(format!("S4 state: expected [{s}, H, 2N], got {other:?}"))),
    };
    let n = r / 2;
    super::super::expect("S4 u", u, &[t, h], DType::F32)?;
    super::super::expect("S4 state terms", terms, &[h * n, 4], DType::F32)?;
    super::super::expect("S4 state turns", theta, &[h * n, 2], DType::U32)?;
    let ranges = state_ranges(seqs.cu_seqlens(), seqs.resets());
    let table: Vec<u32> =
        ranges.iter().flat_map(|&(a, b)| [word("tokens", a), word("tokens", b)]).collect::<Result<_>>()?;
    let ranges_t = Tensor::from_slice(rec.device(), &[table.len()], &table)?;
    let longest = ranges.iter().map(|&(a, b)| b - a).max().unwrap_or(0);
    let g = grid(rec.device(), (s * h * n).div_ceil(64))?;
    for lo in (0..longest.max(1)).step_by(TOKENS_PER_DISPATCH) {
        let p = params([s, h, n, lo, lo + TOKENS_PER_DISPATCH, (lo == 0) as usize, 0], 0)?;
        rec.dispatch(&Kernel::State.variant(), &p, &[u, terms, theta, &ranges_t, state], g)?;
    }
    Ok(())
}

/// Tokens per chunk of [`state_chunked`].
pub const STATE_CHUNK: usize = 256;

/// The chunks of [`state_chunked`], as cu_seqlens over all T tokens: per sequence, the tokens
/// before its last reset in chunks of [`STATE_CHUNK`] (walked, but their states unread), then
/// the tokens from its start or last reset in chunks of [`STATE_CHUNK`], the partial one first;
/// and per sequence (first chunk of the second kind, their count).
pub fn state_chunks(cu: &[usize], resets: Option<&[bool]>) -> (Vec<usize>, Vec<(usize, usize)>) {
    let mut out = vec![0];
    let mut table = vec![];
    for (w, (start, end)) in cu.windows(2).zip(state_ranges(cu, resets)) {
        let mut t = w[0];
        while t < start {
            t = (t + STATE_CHUNK).min(start);
            out.push(t);
        }
        let len = end - start;
        let count = len.div_ceil(STATE_CHUNK);
        table.push((out.len() - 1, count));
        if len % STATE_CHUNK != 0 {
            t += len % STATE_CHUNK;
            out.push(t);
        }
        while t < end {
            t += STATE_CHUNK;
            out.push(t);
        }
    }
    (out, table)
}

/// The state `[S, H, R]` at the end of each sequence of `seqs` from a zero state, for a long
/// prefill: the chunks' states walked in parallel by the recurrence, then combined in order
/// with `pw` = M^[`STATE_CHUNK`] `[H, R, R]` ([`super::layer::Prepared::chunk_power`]).
#[allow(clippy::too_many_arguments)]
pub fn state_chunked(
    rec: &mut Recorder,
    u: &Tensor,
    mat: &Tensor,
    bvec: &Tensor,
    pw: &Tensor,
    seqs: &Sequences,
    state: &Tensor,
) -> Result<()> {
    let (h, r) = match state.shape() {
        &[_, h, r] => (h, r),
        other => return Err(Error::Shape(format!("S4 state: expected [S, H, R], got {other:?}"))),
    };
    super::super::expect("S4 chunk power", pw, &[h, r, r], DType::F32)?;
    let (cu, table) = state_chunks(seqs.cu_seqlens(), seqs.resets());
    let nchunks = cu.len() - 1;
    if nchunks == 0 {
        return Ok(());
    }
    let dev = rec.device();
    let lens: Vec<usize> = cu.windows(2).map(|w| w[1] - w[0]).collect();
    let chunk_seqs = Sequences::new(dev, &lens, None)?;
    let cstate = Tensor::empty(dev, &[nchunks, h, r], DType::F32)?;
    recurrence(rec, u, mat, bvec, &chunk_seqs, &cstate, false, None)?;
    let tab: Vec<u32> =
        table.iter().flat_map(|&(a, b)| [word("chunks", a), word("chunks", b)]).collect::<Result<_>>()?;
    let tab = Tensor::from_slice(rec.device(), &[tab.len()], &tab)?;
    let s = seqs.count();
    let p = params([s, h, r, 0, 0, 0, 0], 0)?;
    let g = grid(rec.device(), s * h)?;
    rec.dispatch(&Kernel::Combine.variant(), &p, &[&cstate, pw, &tab, state], g)
}

/// The recurrent view over `seqs`: u `[T, H]`, `mat` `[H, R + 1, R]` and `bvec` `[H, R + 1]`
/// ([`super::layer::Recurrence`]), `state` `[S, H, R]` (continued when `init`, left at each
/// sequence's last token), and y `[T, H]` written when given.
#[allow(clippy::too_many_arguments)]
pub fn recurrence(
    rec: &mut Recorder,
    u: &Tensor,
    mat: &Tensor,
    bvec: &Tensor,
    seqs: &Sequences,
    state: &Tensor,
    init: bool,
    y: Option<&Tensor>,
) -> Result<()> {
    let (t, s) = (seqs.total(), seqs.count());
    let (h, r) = match state.shape() {
        &[ss, h, r] if ss == s && (2..=MAX_ROWS).contains(&r) => (h, r),
        other => {
            return Err(Error::Shape(format!(
                "S4 state: expected [{s}, H, R] with 2 ≤ R ≤ {MAX_ROWS}, got {other:?}"
            )))
        }
    };
    super::super::expect("S4 u", u, &[t, h], DType::F32)?;
    super::super::expect("S4 recurrence matrix", mat, &[h, r + 1, r], DType::F32)?;
    super::super::expect("S4 recurrence input", bvec, &[h, r + 1], DType::F32)?;
    let mut flags = if init { s4_flags::INIT } else { 0 };
    if seqs.resets().is_some() {
        flags |= s4_flags::RESET;
    }
    if let Some(y) = y {
        super::super::expect("S4 y", y, &[t, h], DType::F32)?;
        flags |= s4_flags::OUTPUT;
    }
    let out = y.unwrap_or(state); // bound but not written without OUTPUT
    let longest = self::longest(seqs.cu_seqlens());
    let g = grid(rec.device(), s * h)?;
    for lo in (0..longest.max(1)).step_by(TOKENS_PER_DISPATCH) {
        let p = params([s, h, r, lo, lo + TOKENS_PER_DISPATCH, 0, 0], flags)?;
        rec.dispatch(&Kernel::Recurrence.variant(), &p, &[u, mat, bvec, seqs.table(), state, out], g)?;
    }
    Ok(())
}
