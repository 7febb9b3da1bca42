//! Int8 GEMM micro-kernel, 6 rows x 8 output channels, AArch64 NEON + dot product (`sdot`;
//! Cortex-A76 / Raspberry Pi 5, Neoverse N1), with the shared exact requantising epilogue of
//! `gemm_i8i32_6x8__neon.rs`.
//!
//! Half a PackedN16K4 group is two 16-byte rows of `[4 channels][4 k]`, exactly the B operand
//! of `sdot vD.4s, vW.16b, vA.4b[lane]` (lane d of the result += the dot product of channel d's
//! 4 weights with the 4 activations in 32-bit lane `lane` of vA):
//!
//! ```text
//! w0 = [c0k0..c0k3 | c1k0..c1k3 | c2k0..c2k3 | c3k0..c3k3]   w1 = channels 4..7
//! a_i = [kk+0: a0..a3 | kk+1: a0..a3 | kk+2 | kk+3]        (i8, row i, 4 k groups)
//! acc[i][0] += sdot(w0(kk+j), a_i.4b[j])   acc[i][1] += sdot(w1(kk+j), a_i.4b[j])
//! ```
//!
//! The driver hands A as i16 (shared with the AVX2 kernel), so each row's 16 activations of 4
//! k groups are loaded as two q registers and narrowed with `xtn`/`xtn2` (exact: they are
//! widened int8; the padding lanes past K meet zero weights whatever they hold). 12
//! accumulators + 6 A registers + 8 weight registers (4 k groups) = 26 of 32. Each `sdot`
//! computes exact i8 x i8 products summed in i32 (wrapping), so any summation order gives the
//! scalar twin's sums for every weight value, -128 included.
//!
//! `sdot` by element has no stable intrinsic, so it is one `asm!` instruction (with
//! `.arch_extension dotprod` for the assembler); everything else is intrinsics.

use core::arch::aarch64::*;

use super::gemm_i8i32_6x8__neon::requant_rows;
use crate::kernels::int8::pack::{KG, PANEL};
use crate::kernels::int8::{MicroTileI8, MR, NR};

/// Dot-product twin of [`crate::kernels::int8::generic::gemm_i8i32_6x8__generic`].
///
/// # Safety
/// The CPU must support the dot-product extension (`is_aarch64_feature_detected!("dotprod")`),
/// and `t` must satisfy the pointer contract documented on [`MicroTileI8`] (A rows readable for
/// `4*k4` i16, 32 bytes of `b` readable at every `64*kk`, `qp` readable for `4*n` i32 with
/// `shift` in [1, 62], y rows writable and residual rows readable for `n` bytes).
#[allow(non_snake_case)]
#[target_feature(enable = "dotprod")]
pub unsafe fn gemm_i8i32_6x8__neon_dot(t: &MicroTileI8) {
    debug_assert!(t.m >= 1 && t.m <= MR && t.n >= 1 && t.n <= NR);
    // SAFETY: forwarded contract; each arm matches the row count.
    unsafe {
        match t.m {
            1 => tile::<1>(t),
            2 => tile::<2>(t),
            3 => tile::<3>(t),
            4 => tile::<4>(t),
            5 => tile::<5>(t),
            _ => tile::<6>(t),
        }
    }
}

/// `acc += sdot(w, a.4b[L])`: lane d of `acc` gains `sum_j w[4d + j] * a[4L + j]` (i8 x i8,
/// summed exactly, accumulated wrapping in i32).
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline(always)]
unsafe fn sdot_lane<const L: i32>(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the caller guarantees FEAT_DotProd; register-only instruction.
    unsafe {
        core::arch::asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            l = const L,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// # Safety
/// As [`gemm_i8i32_6x8__neon_dot`] with `m == M`.
#[inline(always)]
unsafe fn tile<const M: usize>(t: &MicroTileI8) {
    let mut acc = [[vdupq_n_s32(0); 2]; M];
    let a: [*const i16; M] = core::array::from_fn(|i| t.a[i]);
    let group = PANEL * KG;
    let mut b = t.b;
    let mut kk = 0;
    // SAFETY: a[i] readable for 4*k4 i16, b for 32 bytes at each 64*kk (contract); dotprod
    // present (contract).
    unsafe {
        // Four k groups (16 k) per step.
        while kk + 4 <= t.k4 {
            let mut w = [[vdupq_n_s8(0); 2]; 4];
            for (j, wj) in w.iter_mut().enumerate() {
                *wj = [vld1q_s8(b.add(j * group)), vld1q_s8(b.add(j * group + 16))];
            }
            for i in 0..M {
                let p = a[i].add(kk * KG);
                let av = vmovn_high_s16(vmovn_s16(vld1q_s16(p)), vld1q_s16(p.add(8)));
                acc[i][0] = sdot_lane::<0>(acc[i][0], w[0][0], av);
                acc[i][1] = sdot_lane::<0>(acc[i][1], w[0][1], av);
                acc[i][0] = sdot_lane::<1>(acc[i][0], w[1][0], av);
                acc[i][1] = sdot_lane::<1>(acc[i][1], w[1][1], av);
                acc[i][0] = sdot_lane::<2>(acc[i][0], w[2][0], av);
                acc[i][1] = sdot_lane::<2>(acc[i][1], w[2][1], av);
                acc[i][0] = sdot_lane::<3>(acc[i][0], w[3][0], av);
                acc[i][1] = sdot_lane::<3>(acc[i][1], w[3][1], av);
            }
            b = b.add(4 * group);
            kk += 4;
        }
        // Remaining 1..3 k groups, one at a time (the A load stays inside the row's 4*k4 i16).
        while kk < t.k4 {
            let (w0, w1) = (vld1q_s8(b), vld1q_s8(b.add(16)));
            for i in 0..M {
                let x = vld1_s16(a[i].add(kk * KG));
                let av = vcombine_s8(vmovn_s16(vcombine_s16(x, x)), vdup_n_s8(0));
                acc[i][0] = sdot_lane::<0>(acc[i][0], w0, av);
                acc[i][1] = sdot_lane::<0>(acc[i][1], w1, av);
            }
            b = b.add(group);
            kk += 1;
        }
        requant_rows(t, &acc);
    }
}
