//! The only code that knows CPUs. Every SIMD kernel has a scalar twin in `generic/` with the
//! same contract; `isa` decides once per process which tier runs.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod generic;
pub mod isa;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use isa::Isa;
pub mod gemm;
pub mod int8;
pub mod pack;
pub mod winograd;
