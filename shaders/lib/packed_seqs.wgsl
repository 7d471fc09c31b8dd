// Packed variable-length sequences: `seqs` holds cu_seqlens [S + 1], then (RESET) one u32 flag
// per token; the kernel's uniform `p` has `nseq`, and `flag` (lib/flags) is in scope.

// Whether token t starts from a zero state (RESET set and t flagged).
fn is_reset(t: u32) -> bool { return flag(RESET) && seqs[p.nseq + 1u + t] != 0u; }

// Sequence holding token t (binary search over cu_seqlens).
fn seq_of(t: u32) -> u32 {
    var lo = 0u;
    var hi = p.nseq;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (seqs[mid] <= t) { lo = mid; } else { hi = mid; }
    }
    return lo;
}
