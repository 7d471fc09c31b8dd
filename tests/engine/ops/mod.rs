//! One file per op family (or group of small ones), mirroring `src/ops/`.

mod attention;
mod core;
mod delta_rule;
mod fused;
mod matmul;
mod moe;
mod s4;
mod sampling;
mod selective_scan;
mod ssd;
