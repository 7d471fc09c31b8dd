//! linseq's test binary (one binary keeps link time down on 2-core CI machines).
//!
//! Every GPU test runs on every adapter the machine offers (in CI: lavapipe Vulkan and llvmpipe
//! GL). With no adapter, tests fail and say how to install lavapipe.

mod bad_input;
mod common;
mod device;
mod generation;
mod graph;
mod layers;
mod models;
mod ops;
mod portability;
mod tune;
