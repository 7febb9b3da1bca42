//! GEMM micro-kernel over f16 weight panels, 6 rows x 16 columns, AVX2 + FMA + F16C.
//!
//! The f32 kernel's body (`gemm_f32_6x16__avx2_fma.rs`) with the B row loaded as 16 halves
//! (32 bytes) and widened by two `vcvtph2ps`: the weights stay f16 in memory (half the bytes
//! of the f32 panels) and every product and sum is f32, so the result equals the f32 kernel
//! run on the f16 values widened to f32, bit for bit.

use crate::kernels::gemm::MicroTile;

/// AVX2+FMA+F16C twin of [`crate::kernels::generic::gemm::gemm_f16_6x16__generic`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `t` must satisfy the pointer contract
/// documented on [`MicroTile`] (`b` readable for `16*k` f16).
#[allow(non_snake_case)]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_f16_6x16__avx2_fma(t: &MicroTile<half::f16>) {
    // SAFETY: forwarded contract.
    unsafe { super::gemm_f32_6x16__avx2_fma::gemm_6x16_avx2::<half::f16>(t) }
}
