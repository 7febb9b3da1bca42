//! x86_64 kernels (AVX2+FMA, AVX-512), runtime-dispatched through `super::Isa`.

#[allow(non_snake_case)]
pub mod gemm_f32_6x16__avx2_fma;
#[allow(non_snake_case)]
pub mod winograd_f43__avx2_fma;
