//! aarch64 NEON kernels (Cortex-A72: NEON; Cortex-A76: NEON + dot product + fp16),
//! runtime-dispatched through `super::Isa`. Each has a scalar twin in `generic/` (fp32) or
//! `int8/generic.rs` with the same contract, and is tested against it in
//! `tests/kernels_neon.rs` under qemu-user (cortex-a72 and cortex-a76).
//!
//! - `gemm_f32_6x16__neon` / `gemm_f16_6x16__neon`: the fp32 GEMM micro-kernel (`Isa::Neon`
//!   and up; f16 panels widened with `fcvtl`).
//! - `gemm_f16_6x16__neon_fp16`: f16-weight GEMM with fp16 arithmetic (`fmla .8h` by element)
//!   in 16-k f16 blocks summed in f32 (`Isa::NeonDotFp16`; needs
//!   `is_aarch64_feature_detected!("fp16")`; tested in `tests/kernels_neon_fp16.rs`).
//! - `gemm_i8i32_6x8__neon`: int8 GEMM with `smlal` by element (`Isa::Neon`, the A72).
//! - `gemm_i8i32_6x8__neon_dot`: int8 GEMM with `sdot` (`Isa::NeonDot` and up; needs
//!   `is_aarch64_feature_detected!("dotprod")`).
//! - `qops_i8__neon`: int8 max / average / global average pooling, Add, Quantize and
//!   Dequantize (`Isa::Neon` and up), byte-identical to `int8/generic.rs`; tested in
//!   `tests/kernels_neon_q.rs`.
//! - `winograd_f43__neon`: the Winograd F(4x4,3x3) input and output transforms (`Isa::Neon`
//!   and up; f32 and f16-weight convolutions alike); tested in `tests/kernels_neon_q.rs`.

#[allow(non_snake_case)]
pub mod gemm_f16_6x16__neon;
#[allow(non_snake_case)]
pub mod gemm_f16_6x16__neon_fp16;
#[allow(non_snake_case)]
pub mod gemm_f32_6x16__neon;
#[allow(non_snake_case)]
pub mod gemm_i8i32_6x8__neon;
#[allow(non_snake_case)]
pub mod gemm_i8i32_6x8__neon_dot;
#[allow(non_snake_case)]
pub mod qops_i8__neon;
#[allow(non_snake_case)]
pub mod winograd_f43__neon;
