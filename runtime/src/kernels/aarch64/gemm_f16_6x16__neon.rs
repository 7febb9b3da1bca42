//! GEMM micro-kernel over f16 weight panels, 6 rows x 16 columns, AArch64 NEON.
//!
//! The f32 kernel's body (`gemm_f32_6x16__neon.rs`) with each B row loaded as 16 halves (32
//! bytes) and widened by `fcvtl`/`fcvtl2` (base ARMv8, no FEAT_FP16 arithmetic needed): the
//! weights stay f16 in memory and every product and sum is f32, so the result equals the f32
//! kernel run on the f16 values widened to f32, bit for bit.

use crate::kernels::gemm::MicroTile;

/// NEON twin of [`crate::kernels::generic::gemm::gemm_f16_6x16__generic`].
///
/// # Safety
/// `t` must satisfy the pointer contract documented on [`MicroTile`] (`b` readable for `16*k`
/// f16). NEON is part of every AArch64 CPU.
#[allow(non_snake_case)]
pub unsafe fn gemm_f16_6x16__neon(t: &MicroTile<half::f16>) {
    // SAFETY: forwarded contract.
    unsafe { super::gemm_f32_6x16__neon::gemm_6x16_neon::<half::f16>(t) }
}
