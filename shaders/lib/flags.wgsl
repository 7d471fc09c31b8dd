// Flag bits of a kernel's uniform `p.flags` (the constants themselves come from Rust).
fn flag(f: u32) -> bool { return (p.flags & f) != 0u; }
