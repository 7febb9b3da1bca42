//! fp32 GEMM micro-kernel, 6 rows x 16 columns, AArch64 Advanced SIMD (NEON).
//!
//! Register tile (24 accumulators + 4 B vectors + 1-2 broadcasts of the 32 q registers):
//!
//! ```text
//!            b[k][0..4] b[k][4..8] b[k][8..12] b[k][12..16]
//! a[0][k]  | acc[0][0] | acc[0][1] | acc[0][2] | acc[0][3] |
//!   ...    |    ...    |    ...    |    ...    |    ...    |
//! a[5][k]  | acc[5][0] | acc[5][1] | acc[5][2] | acc[5][3] |
//! ```
//!
//! Per k: four 4-wide loads of the packed B row, one `ld1r` broadcast per A row, 24 `fmla`.
//! That is 10 loads per 24 FMAs: FMA-bound on both the Cortex-A72 (1 load, 2 FP pipes) and
//! the Cortex-A76 (2 loads, 2 FP pipes). The row count is a const parameter so a partial tile
//! (m < 6; m = 1 is the GEMV of Linear layers) only does the FMAs it needs.
//!
//! Same driver contract, loop order and epilogue order as the AVX2 kernel
//! (`x86_64/gemm_f32_6x16__avx2_fma.rs`): `acc (+ C) (+ bias) (+ residual)`, then the clamp as
//! `min(max(v, lo), hi)`. AArch64 `fmax`/`fmin` propagate NaN, so the clamp uses
//! `fmaxnm`/`fminnm`, which return the number when one operand is NaN, like `f32::max` /
//! `f32::min` in the generic twin (a NaN sum clamps to `lo`).
//!
//! The body is generic over the weight element: with f16 panels (`W = half::f16`) each B row is
//! two 8-half loads widened with `fcvtl`/`fcvtl2` (base ARMv8 FP, no FEAT_FP16 needed), so
//! the products and sums are exactly those of the f32 kernel run on the widened weights.

use core::arch::aarch64::*;

use crate::kernels::gemm::{Act, MicroTile, MR};
use crate::kernels::pack::{WeightElem, NR};

/// NEON twin of [`crate::kernels::generic::gemm::gemm_f32_6x16__generic`].
///
/// # Safety
/// `t` must satisfy the pointer contract documented on [`MicroTile`] (`a[i]` readable for `k`
/// f32 for `i < m`, `b` readable for `16*k` f32, C rows `0..m` readable/writable for `n` f32
/// at stride `ldc`, bias/residual readable for `n` f32). NEON is part of every AArch64 CPU.
#[allow(non_snake_case)]
pub unsafe fn gemm_f32_6x16__neon(t: &MicroTile) {
    // SAFETY: forwarded contract.
    unsafe { gemm_6x16_neon::<f32>(t) }
}

/// The kernel for weight element `W` (f32, or f16 widened with `fcvtl`).
///
/// # Safety
/// `t` must satisfy the [`MicroTile`] contract (`b` readable for `16*k` `W`).
pub unsafe fn gemm_6x16_neon<W: WeightElem>(t: &MicroTile<W>) {
    debug_assert!(t.m >= 1 && t.m <= MR && t.n >= 1 && t.n <= NR);
    // SAFETY: forwarded contract; each arm matches the row count.
    unsafe {
        match t.m {
            1 => tile::<W, 1>(t),
            2 => tile::<W, 2>(t),
            3 => tile::<W, 3>(t),
            4 => tile::<W, 4>(t),
            5 => tile::<W, 5>(t),
            _ => tile::<W, 6>(t),
        }
    }
}

/// Widens 8 halves (IEEE binary16, as raw bits) to two f32 vectors (`fcvtl`, `fcvtl2`).
#[inline(always)]
pub(crate) fn widen_f16(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    let lo: float32x4_t;
    let hi: float32x4_t;
    // SAFETY: register-only conversion instructions of base ARMv8 FP/SIMD (every AArch64 CPU);
    // no memory access, no flags.
    unsafe {
        core::arch::asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    (lo, hi)
}

/// Row `k` of a 16-wide packed panel as four f32 vectors.
///
/// # Safety
/// `b` readable for 16 `W`.
#[inline(always)]
unsafe fn load_b<W: WeightElem>(b: *const W) -> [float32x4_t; 4] {
    // SAFETY: 16 elements readable (contract); NEON loads have no alignment requirement.
    unsafe {
        if W::IS_F16 {
            let p = b as *const u16;
            let (b0, b1) = widen_f16(vld1q_u16(p));
            let (b2, b3) = widen_f16(vld1q_u16(p.add(8)));
            [b0, b1, b2, b3]
        } else {
            let p = b as *const f32;
            [vld1q_f32(p), vld1q_f32(p.add(4)), vld1q_f32(p.add(8)), vld1q_f32(p.add(12))]
        }
    }
}

/// Loads `n <= 16` floats into four vectors, zero-filling lanes `>= n` without touching memory
/// past `n`.
///
/// # Safety
/// `p` readable for `n` f32.
#[inline(always)]
pub(crate) unsafe fn load16(p: *const f32, n: usize) -> [float32x4_t; 4] {
    // SAFETY: full tiles read 16 floats, partial ones copy n floats to a stack buffer first.
    unsafe {
        if n == NR {
            [vld1q_f32(p), vld1q_f32(p.add(4)), vld1q_f32(p.add(8)), vld1q_f32(p.add(12))]
        } else {
            let mut buf = [0.0f32; NR];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            let q = buf.as_ptr();
            [vld1q_f32(q), vld1q_f32(q.add(4)), vld1q_f32(q.add(8)), vld1q_f32(q.add(12))]
        }
    }
}

/// Stores the first `n <= 16` lanes of `v` to `p`.
///
/// # Safety
/// `p` writable for `n` f32.
#[inline(always)]
pub(crate) unsafe fn store16(p: *mut f32, n: usize, v: [float32x4_t; 4]) {
    // SAFETY: full tiles write 16 floats, partial ones go through a stack buffer.
    unsafe {
        if n == NR {
            for (j, &x) in v.iter().enumerate() {
                vst1q_f32(p.add(4 * j), x);
            }
        } else {
            let mut buf = [0.0f32; NR];
            for (j, &x) in v.iter().enumerate() {
                vst1q_f32(buf.as_mut_ptr().add(4 * j), x);
            }
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }
}

/// # Safety
/// As [`gemm_6x16_neon`] with `m == M`.
#[inline(always)]
unsafe fn tile<W: WeightElem, const M: usize>(t: &MicroTile<W>) {
    let mut acc = [[vdupq_n_f32(0.0); 4]; M];
    let a: [*const f32; M] = core::array::from_fn(|i| t.a[i]);
    let mut b = t.b;
    // SAFETY: a[i] readable for k f32, b for 16*k W (contract).
    unsafe {
        for kk in 0..t.k {
            let bv = load_b(b);
            for i in 0..M {
                let ai = vld1q_dup_f32(a[i].add(kk));
                for j in 0..4 {
                    acc[i][j] = vfmaq_f32(acc[i][j], bv[j], ai);
                }
            }
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded contract (C, bias and residual rows of the tile).
    unsafe { store_tile(t, &acc) };
}

/// The f32 tile epilogue shared by the NEON kernels: `C (+)= acc`, then on the last K block
/// bias, residual and the activation clamp, stored for `t.n` columns of `acc.len()` rows.
///
/// # Safety
/// The C / bias / residual pointer contract of [`MicroTile`] for `acc.len() <= MR` rows.
#[inline(always)]
pub(crate) unsafe fn store_tile<W: WeightElem>(t: &MicroTile<W>, acc: &[[float32x4_t; 4]]) {
    let n = t.n;
    let bias = if t.finish && !t.bias.is_null() {
        // SAFETY: bias readable for n f32 (contract).
        Some(unsafe { load16(t.bias, n) })
    } else {
        None
    };
    let (lo, hi) = match t.act {
        Act::None => (f32::NEG_INFINITY, f32::INFINITY),
        Act::Relu => (0.0, f32::INFINITY),
        Act::Clip(lo, hi) => (lo, hi),
    };
    let (lo, hi) = (vdupq_n_f32(lo), vdupq_n_f32(hi));
    let clamp = !matches!(t.act, Act::None);
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row i < m of C (and of residual) is valid for n f32 (contract).
        unsafe {
            let c = t.c.add(i * t.ldc);
            let mut v = *row;
            if t.load_c {
                let cv = load16(c, n);
                for j in 0..4 {
                    v[j] = vaddq_f32(v[j], cv[j]);
                }
            }
            if t.finish {
                if let Some(bias) = bias {
                    for j in 0..4 {
                        v[j] = vaddq_f32(v[j], bias[j]);
                    }
                }
                if !t.residual.is_null() {
                    let r = load16(t.residual.add(i * t.ldr), n);
                    for j in 0..4 {
                        v[j] = vaddq_f32(v[j], r[j]);
                    }
                }
                if clamp {
                    // fmaxnm/fminnm return the number when one operand is NaN, as f32::max /
                    // f32::min do in the generic twin (so a NaN sum clamps to lo).
                    for x in v.iter_mut() {
                        *x = vminnmq_f32(vmaxnmq_f32(*x, lo), hi);
                    }
                }
            }
            store16(c, n, v);
        }
    }
}
