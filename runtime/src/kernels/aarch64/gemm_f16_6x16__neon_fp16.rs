//! GEMM micro-kernel over f16 weight panels with fp16 arithmetic, 6 rows x 16 columns,
//! AArch64 NEON + FEAT_FP16 (`Isa::NeonDotFp16`: Cortex-A76 / Raspberry Pi 5, Neoverse N1).
//!
//! Same [`MicroTile`] contract and PackedN16 f16 panels as the widening kernel
//! (`gemm_f16_6x16__neon.rs`), but the multiply-adds are 8-lane half-precision
//! `fmla vD.8h, vW.8h, vA.h[lane]` (8 MACs per instruction instead of 4):
//!
//! ```text
//!            b[k][0..8]      b[k][8..16]          (one 16-half row of the panel = 2 q regs)
//! a[0][k]  | h[0][0] +=  | h[0][1] +=  |          a_i = 8 consecutive k of row i, narrowed
//!   ...    |    ...      |    ...      |                to f16 (fcvtn/fcvtn2), lane = k % 8
//! a[5][k]  | h[5][0] +=  | h[5][1] +=  |
//! ```
//!
//! 12 f16 accumulators + 6 A registers (in v0-v15, as by-element `.h` operands require) + 2 B
//! registers = 20 of the 32 q registers; the 24 f32 accumulators of the 6x16 tile live in a
//! stack tile the compiler keeps in L1 (there are not enough registers for both sets).
//!
//! ## Accuracy: short f16 blocks, f32 across blocks
//! A whole K = 4608 dot product accumulated in f16 (11-bit significand) would lose ~5 bits to
//! rounding of the running sum. So the f16 accumulators only sum `KB` = 16 consecutive k (the
//! first of each block is an `fmul`, so no zeroing), then each is widened (`fcvtl`/`fcvtl2`,
//! exact) and added to the f32 tile; the driver's K blocks (`load_c`) continue in f32 in C.
//! The activations are rounded to f16 as they are loaded (`fcvtn`, round to nearest even).
//!
//! Error bound (what `tests/kernels_neon_fp16.rs` asserts), for one output with terms
//! `t_k = fl16(a_k) * w_k`, `u = 2^-11`, `L = min(KB, k)` the block length:
//! - a block of `L` fused multiply-adds in f16 rounds `L` times, each by at most `u` of the
//!   running sum (or 2^-25 absolute in the f16 subnormal range), so it is off by at most
//!   `L * u * (1 + u)^L * sum_block |t_k| + L * 2^-25`;
//! - widening is exact and the f32 adds cost `~2^-24` of the mass each;
//! - rounding `a_k` to f16 adds at most `u * sum |a_k w_k|` (nothing when A is f16-valued).
//!
//! So `|C - C_exact| <= (KB u (1+u)^KB + u + (k/KB + 4) 2^-24) * mass + k * 2^-25` with
//! `mass = sum |a_k w_k| + |c| + |bias| + |residual|`, about 0.84 % of the mass as a worst
//! case. Random-sign sums land far below it: at K = 4608 (a ResNet-50 3x3 with 512 inputs,
//! post-ReLU activations) the measured relative RMS error is 4.9e-4 and the worst output is
//! off by 5e-5 of its mass, against 2e-7 for the widening kernel. That is roughly the size of
//! the error the f16 weights themselves bring: on ResNet-20 (where only the stem, the two
//! stride-2 convolutions and the classifier run here; Winograd layers keep widening, see
//! `gemm::packed_micro_kernel_for`) the fp16 file's output moves from rel L2 2.3e-3 (x86,
//! widened) to 3.3e-3 against fp32 on the worst fixture image (the tests allow 5e-3). A
//! block of 8 k would cost ~20 % more instructions; with every layer on fp16 arithmetic
//! (Winograd included) even `KB = 8` measured 6.1e-3.
//!
//! Range: f16 overflows above 65504. If an activation, product or block sum leaves the f16
//! range the f32 sum becomes ±inf or NaN, which the kernel checks before the epilogue: a tile
//! with any non-finite sum is recomputed by the widening kernel (exact f32 arithmetic on the
//! same f16 weights), so out-of-range activations cost time, never accuracy. Underflow (f16
//! subnormals, below 2^-14) is gradual and costs at most 2^-25 per rounding (absolute).
//!
//! Per 16-k block the 6x16 tile does 192 `fmla`/`fmul` (1536 MACs), 32 B loads, 24 A loads +
//! 24 narrowing conversions, 24 widening conversions and 24 f32 adds: 264 FP/SIMD
//! instructions where the f32 kernel needs 384 `fmla` (1.45x fewer; the A76 has two 128-bit
//! FP pipes for both), and the weight panel traffic is half that of f32 weights. No real A76 is
//! available here: speed is by design (not measured), correctness is tested under qemu.
//!
//! `fmla`/`fmul` by element on `.8h` have no stable intrinsic (they need the unstable `f16`
//! type), so each is one `asm!` instruction (`.arch_extension fp16`); everything else is
//! intrinsics, with f16 vectors carried as `uint16x8_t` bit patterns.

use core::arch::aarch64::*;

use super::gemm_f32_6x16__neon::{store_tile, widen_f16};
use crate::kernels::gemm::{MicroTile, MR};
use crate::kernels::pack::{WeightElem, NR};

/// Consecutive k summed in f16 before the block sum is widened and added in f32 (a multiple of
/// 8, the k per A register).
pub const KB: usize = 16;

/// fp16-arithmetic kernel for f16 weight panels; twin of
/// [`crate::kernels::generic::gemm::gemm_f16_6x16__generic`] within the error bound of the
/// module documentation (not bit-identical: products and block sums are rounded to f16).
///
/// # Safety
/// The CPU must support FEAT_FP16 (`is_aarch64_feature_detected!("fp16")`), and `t` must
/// satisfy the pointer contract documented on [`MicroTile`] (`b` readable for `16*k` f16).
#[allow(non_snake_case)]
#[target_feature(enable = "fp16")]
pub unsafe fn gemm_f16_6x16__neon_fp16(t: &MicroTile<half::f16>) {
    // SAFETY: forwarded contract (FEAT_FP16 present).
    unsafe { gemm_6x16_neon_fp16::<half::f16>(t) }
}

/// The kernel over a weight element `W` (for the driver's generic dispatch): f16 panels take
/// the fp16-arithmetic path, f32 panels (never handed out for this tier) the f32 NEON kernel.
///
/// # Safety
/// As [`gemm_f16_6x16__neon_fp16`] (`b` readable for `16*k` `W`).
#[target_feature(enable = "fp16")]
pub unsafe fn gemm_6x16_neon_fp16<W: WeightElem>(t: &MicroTile<W>) {
    debug_assert!(t.m >= 1 && t.m <= MR && t.n >= 1 && t.n <= NR);
    if !W::IS_F16 {
        // SAFETY: forwarded contract.
        return unsafe { super::gemm_f32_6x16__neon::gemm_6x16_neon::<W>(t) };
    }
    // SAFETY: forwarded contract (W is half::f16, so `b` holds 16*k halves); each arm matches
    // the row count.
    let finite = unsafe {
        match t.m {
            1 => tile::<W, 1>(t),
            2 => tile::<W, 2>(t),
            3 => tile::<W, 3>(t),
            4 => tile::<W, 4>(t),
            5 => tile::<W, 5>(t),
            _ => tile::<W, 6>(t),
        }
    };
    if !finite {
        // Some sum left the f16 range (or the input holds inf/NaN): C is untouched, redo the
        // tile with f32 arithmetic on the widened weights.
        // SAFETY: forwarded contract.
        unsafe { super::gemm_f32_6x16__neon::gemm_6x16_neon::<W>(t) }
    }
}

/// `acc + b * a.h[L]` (or `b * a.h[L]` when `FIRST`), 8 half-precision lanes, one rounding.
///
/// # Safety
/// The CPU must support FEAT_FP16.
#[inline(always)]
unsafe fn fmla_lane<const L: i32, const FIRST: bool>(acc: uint16x8_t, b: uint16x8_t, a: uint16x8_t) -> uint16x8_t {
    let mut acc = acc;
    // SAFETY: the caller guarantees FEAT_FP16; register-only instructions (the by-element
    // operand is in v0-v15 as the .h form requires).
    unsafe {
        if FIRST {
            core::arch::asm!(
                ".arch_extension fp16",
                "fmul {acc:v}.8h, {b:v}.8h, {a:v}.h[{l}]",
                acc = lateout(vreg) acc,
                b = in(vreg) b,
                a = in(vreg_low16) a,
                l = const L,
                options(pure, nomem, nostack, preserves_flags),
            );
        } else {
            core::arch::asm!(
                ".arch_extension fp16",
                "fmla {acc:v}.8h, {b:v}.8h, {a:v}.h[{l}]",
                acc = inout(vreg) acc,
                b = in(vreg) b,
                a = in(vreg_low16) a,
                l = const L,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
    }
    acc
}

/// Eight f32 (two vectors) narrowed to eight halves, round to nearest even (`fcvtn`,
/// `fcvtn2`; base ARMv8 FP, overflow gives ±inf).
#[inline(always)]
fn narrow_f16(lo: float32x4_t, hi: float32x4_t) -> uint16x8_t {
    let h: uint16x8_t;
    // SAFETY: register-only conversion instructions of base ARMv8 FP/SIMD; `h` is a plain
    // `out` (never shares a register with `lo`/`hi`, which fcvtn2 still reads after fcvtn
    // wrote `h`).
    unsafe {
        core::arch::asm!(
            "fcvtn {h:v}.4h, {lo:v}.4s",
            "fcvtn2 {h:v}.8h, {hi:v}.4s",
            lo = in(vreg) lo,
            hi = in(vreg) hi,
            h = out(vreg_low16) h,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    h
}

/// `r <= 8` consecutive f32 of each A row from `k0` as f16 (lanes `>= r` zero).
///
/// # Safety
/// `a[i]` readable for `k0 + r` f32.
#[inline(always)]
unsafe fn load_a<const M: usize>(a: &[*const f32; M], k0: usize, r: usize) -> [uint16x8_t; M] {
    // SAFETY: full groups read 8 floats at k0, partial ones copy r floats to a stack buffer.
    core::array::from_fn(|i| unsafe {
        let p = a[i].add(k0);
        if r == 8 {
            narrow_f16(vld1q_f32(p), vld1q_f32(p.add(4)))
        } else {
            let mut buf = [0.0f32; 8];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), r);
            narrow_f16(vld1q_f32(buf.as_ptr()), vld1q_f32(buf.as_ptr().add(4)))
        }
    })
}

/// Panel row `L` of the group at `bp` into every row's two accumulators.
///
/// # Safety
/// FEAT_FP16; `bp` readable for `16 * (L + 1)` halves.
#[inline(always)]
unsafe fn lane<const M: usize, const L: i32, const FIRST: bool>(
    acc: &mut [[uint16x8_t; 2]; M],
    ah: &[uint16x8_t; M],
    bp: *const u16,
) {
    // SAFETY: row L of the group is readable (contract); FEAT_FP16 (contract).
    unsafe {
        let b0 = vld1q_u16(bp.add(L as usize * NR));
        let b1 = vld1q_u16(bp.add(L as usize * NR + 8));
        for i in 0..M {
            acc[i][0] = fmla_lane::<L, FIRST>(acc[i][0], b0, ah[i]);
            acc[i][1] = fmla_lane::<L, FIRST>(acc[i][1], b1, ah[i]);
        }
    }
}

/// `r` (1..=8) k of one A group (lane l = k) times panel rows `0..r` at `bp`. `FIRST`: the
/// group opens an f16 block (its first product initialises the accumulators).
///
/// # Safety
/// FEAT_FP16; `bp` readable for `16 * r` halves.
#[inline(always)]
unsafe fn group<const M: usize, const FIRST: bool>(
    acc: &mut [[uint16x8_t; 2]; M],
    ah: &[uint16x8_t; M],
    bp: *const u16,
    r: usize,
) {
    // SAFETY: lane l < r reads panel row l (contract).
    unsafe {
        lane::<M, 0, FIRST>(acc, ah, bp);
        if r > 1 {
            lane::<M, 1, false>(acc, ah, bp);
        }
        if r > 2 {
            lane::<M, 2, false>(acc, ah, bp);
        }
        if r > 3 {
            lane::<M, 3, false>(acc, ah, bp);
        }
        if r > 4 {
            lane::<M, 4, false>(acc, ah, bp);
        }
        if r > 5 {
            lane::<M, 5, false>(acc, ah, bp);
        }
        if r > 6 {
            lane::<M, 6, false>(acc, ah, bp);
        }
        if r > 7 {
            lane::<M, 7, false>(acc, ah, bp);
        }
    }
}

/// Computes the tile; returns false (C untouched) if any sum is not finite.
///
/// # Safety
/// As [`gemm_6x16_neon_fp16`] with `m == M` and `W = half::f16`.
#[inline(always)]
unsafe fn tile<W: WeightElem, const M: usize>(t: &MicroTile<W>) -> bool {
    let mut acc32 = [[vdupq_n_f32(0.0); 4]; M];
    let a: [*const f32; M] = core::array::from_fn(|i| t.a[i]);
    let b = t.b as *const u16;
    let k = t.k;
    let mut k0 = 0;
    // SAFETY: a[i] readable for k f32, b for 16*k halves (contract); every group below stays
    // inside k; FEAT_FP16 (contract).
    unsafe {
        while k0 < k {
            let kb = KB.min(k - k0);
            let mut acc16 = [[vdupq_n_u16(0); 2]; M];
            let mut kk = 0;
            while kk < kb {
                let r = 8.min(kb - kk);
                let ah = load_a(&a, k0 + kk, r);
                let bp = b.add((k0 + kk) * NR);
                if kk == 0 {
                    group::<M, true>(&mut acc16, &ah, bp, r);
                } else {
                    group::<M, false>(&mut acc16, &ah, bp, r);
                }
                kk += 8;
            }
            for (s, h) in acc32.iter_mut().zip(&acc16) {
                for j in 0..2 {
                    let (lo, hi) = widen_f16(h[j]);
                    s[2 * j] = vaddq_f32(s[2 * j], lo);
                    s[2 * j + 1] = vaddq_f32(s[2 * j + 1], hi);
                }
            }
            k0 += kb;
        }
    }
    // Any ±inf/NaN? (|x| propagates NaN through fmax; fmaxv too.)
    let mut big = vdupq_n_f32(0.0);
    for row in &acc32 {
        for &v in row {
            big = vmaxq_f32(big, vabsq_f32(v));
        }
    }
    if !vmaxvq_f32(big).is_finite() {
        return false;
    }
    // SAFETY: forwarded contract (C, bias and residual rows of the tile).
    unsafe { store_tile(t, &acc32) };
    true
}
