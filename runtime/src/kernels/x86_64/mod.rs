//! x86_64 kernels (AVX2+FMA, AVX-512), runtime-dispatched through `super::Isa`.

#[allow(non_snake_case)]
pub mod gemm_f16_6x16__avx2_fma;
#[allow(non_snake_case)]
pub mod gemm_f32_6x16__avx2_fma;
#[allow(non_snake_case)]
pub mod gemm_i8i32_6x8__avx2;
#[allow(non_snake_case)]
pub mod qops_i8__avx2;
#[allow(non_snake_case)]
pub mod wino_i8_f23__avx2;
#[allow(non_snake_case)]
pub mod winograd_f43__avx2_fma;
