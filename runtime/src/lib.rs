//! resq: inference runtime for ResNet-family image classifiers on edge CPUs.

pub mod format;
pub mod kernels;

pub use kernels::Isa;
