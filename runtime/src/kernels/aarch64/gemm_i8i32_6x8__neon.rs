//! Int8 GEMM micro-kernel, 6 rows x 8 output channels, AArch64 NEON without the dot-product
//! extension (Cortex-A72 / Raspberry Pi 4), with the exact requantising epilogue shared by the
//! dot-product kernel (`gemm_i8i32_6x8__neon_dot.rs`).
//!
//! A rows arrive as the int8 activations widened to i16 (the driver's packing, shared with
//! the AVX2 kernel). Per 4-k group the kernel de-interleaves half a PackedN16K4 group (32
//! bytes: 8 channels x 4 k) with one `ld4` into four 8-channel vectors, one per k, widens them
//! to i16 (`sxtl`), loads each row's 4 activations into a d register and accumulates with
//! `smlal`/`smlal2` by element (i16 x i16 -> i32 per channel lane):
//!
//! ```text
//! ld4:  w_j = [c0kj c1kj .. c7kj]  (j = 0..3)          a_i = [a_i,k0 .. a_i,k3]  (i16)
//! acc[i][0] += sxtl(w_j)[0..4] * a_i[j]   (smlal  .4s, .4h, .h[j])
//! acc[i][1] += sxtl(w_j)[4..8] * a_i[j]   (smlal2 .4s, .8h, .h[j])
//! ```
//!
//! 12 accumulators + 4 weight vectors + 6 A registers = 22 of the 32 vector registers; each
//! accumulator lane is one output channel, so no reduction is needed at the end. Every
//! product (|x*w| <= 2^15) and every i32 sum is exact for any i8 weight, -128 included, so
//! the result equals the scalar twin for every input a file can hold. (The `smull`/`smlal`
//! i8 x i8 -> i16 pair trick would double the multiplies per instruction on the A72, but it is
//! exact only when weights avoid -128, which the loader does not check, and needs the A
//! operand narrowed back to i8.)
//!
//! Epilogue ([`requant_store8`]): per 4 channels `smull`/`smull2` (s * m_acc, i64) and
//! `smlal`/`smlal2` (rq * m_res), `srshl` by `-shift` (the rounding right shift
//! `(t + 2^(shift-1)) >> shift` of the spec, exact: |t| < 2^62 + 2^39 so the rounding constant
//! never overflows), `+ z_y` in i64, `sqxtn` to i32 (saturation is monotone, so clamping the
//! saturated value to `[qmin, qmax]` inside i32 equals clamping the i64), `smax`/`smin`, and
//! two `xtn` down to bytes.

use core::arch::aarch64::*;

use crate::kernels::int8::pack::{KG, PANEL};
use crate::kernels::int8::{MicroTileI8, MR, NR};

/// NEON (no dot product) twin of [`crate::kernels::int8::generic::gemm_i8i32_6x8__generic`].
///
/// # Safety
/// `t` must satisfy the pointer contract documented on [`MicroTileI8`] (A rows readable for
/// `4*k4` i16, 32 bytes of `b` readable at every `64*kk`, `qp` readable for `4*n` i32 with
/// `shift` in [1, 62], y rows writable and residual rows readable for `n` bytes). Weights may
/// be any i8. NEON is part of every AArch64 CPU.
#[allow(non_snake_case)]
pub unsafe fn gemm_i8i32_6x8__neon(t: &MicroTileI8) {
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

/// # Safety
/// As [`gemm_i8i32_6x8__neon`] with `m == M`.
#[inline(always)]
unsafe fn tile<const M: usize>(t: &MicroTileI8) {
    let mut acc = [[vdupq_n_s32(0); 2]; M];
    let a: [*const i16; M] = core::array::from_fn(|i| t.a[i]);
    let mut b = t.b;
    // SAFETY: a[i] readable for 4*k4 i16, b for 32 bytes at each 64*kk (contract).
    unsafe {
        for kk in 0..t.k4 {
            let w = vld4_s8(b);
            let w = [vmovl_s8(w.0), vmovl_s8(w.1), vmovl_s8(w.2), vmovl_s8(w.3)];
            for i in 0..M {
                let av = vld1_s16(a[i].add(kk * KG));
                acc[i][0] = vmlal_lane_s16::<0>(acc[i][0], vget_low_s16(w[0]), av);
                acc[i][1] = vmlal_high_lane_s16::<0>(acc[i][1], w[0], av);
                acc[i][0] = vmlal_lane_s16::<1>(acc[i][0], vget_low_s16(w[1]), av);
                acc[i][1] = vmlal_high_lane_s16::<1>(acc[i][1], w[1], av);
                acc[i][0] = vmlal_lane_s16::<2>(acc[i][0], vget_low_s16(w[2]), av);
                acc[i][1] = vmlal_high_lane_s16::<2>(acc[i][1], w[2], av);
                acc[i][0] = vmlal_lane_s16::<3>(acc[i][0], vget_low_s16(w[3]), av);
                acc[i][1] = vmlal_high_lane_s16::<3>(acc[i][1], w[3], av);
            }
            b = b.add(PANEL * KG);
        }
        requant_rows(t, &acc);
    }
}

/// The four qparams columns of 8 channels (`[0]` = channels 0..4, `[1]` = 4..8), with the
/// shift already negated and widened to i64 lanes for `srshl`.
pub(crate) struct QParams8 {
    bias: [int32x4_t; 2],
    m_acc: [int32x4_t; 2],
    m_res: [int32x4_t; 2],
    /// `-shift` per channel as i64: `[channels 0,1] [2,3] [4,5] [6,7]`.
    neg_shift: [int64x2_t; 4],
}

/// Loads `n <= 8` qparams rows (`bias, m_acc, m_res, shift`), de-interleaved by `ld4`; lanes
/// `>= n` are zero (computed but never stored).
///
/// # Safety
/// `qp` readable for `4*n` i32.
#[inline(always)]
pub(crate) unsafe fn load_qparams(qp: *const i32, n: usize) -> QParams8 {
    let mut buf = [0i32; 4 * NR];
    let src = if n == NR {
        qp
    } else {
        // SAFETY: qp readable for 4*n i32 (contract); buf holds 32.
        unsafe { core::ptr::copy_nonoverlapping(qp, buf.as_mut_ptr(), 4 * n) };
        buf.as_ptr()
    };
    // SAFETY: src readable for 32 i32 (a full tile or the stack buffer).
    let (q0, q1) = unsafe { (vld4q_s32(src), vld4q_s32(src.add(16))) };
    let neg = |s: int32x4_t| [vnegq_s64(vmovl_s32(vget_low_s32(s))), vnegq_s64(vmovl_high_s32(s))];
    let (n0, n1) = (neg(q0.3), neg(q1.3));
    QParams8 { bias: [q0.0, q1.0], m_acc: [q0.1, q1.1], m_res: [q0.2, q1.2], neg_shift: [n0[0], n0[1], n1[0], n1[1]] }
}

/// Loads `n <= 8` bytes into an 8-lane vector (lanes `>= n` zero).
///
/// # Safety
/// `p` readable for `n` bytes.
#[inline(always)]
unsafe fn load8(p: *const i8, n: usize) -> int8x8_t {
    // SAFETY: a full row reads 8 bytes, a partial one goes through a stack buffer.
    unsafe {
        if n == NR {
            vld1_s8(p)
        } else {
            let mut buf = [0i8; NR];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            vld1_s8(buf.as_ptr())
        }
    }
}

/// Stores the first `n <= 8` lanes of `v`.
///
/// # Safety
/// `p` writable for `n` bytes.
#[inline(always)]
unsafe fn store8(p: *mut i8, n: usize, v: int8x8_t) {
    // SAFETY: a full row writes 8 bytes, a partial one goes through a stack buffer.
    unsafe {
        if n == NR {
            vst1_s8(p, v);
        } else {
            let mut buf = [0i8; NR];
            vst1_s8(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }
}

/// `sra_round(t, shift) + z_y` on two i64 lanes, saturated to i32.
///
/// # Safety
/// NEON available (every AArch64 CPU); register-only arithmetic.
#[inline(always)]
unsafe fn round_narrow(t: int64x2_t, neg_shift: int64x2_t, z_y: int64x2_t) -> int32x2_t {
    // SAFETY: NEON is available (contract).
    unsafe { vqmovn_s64(vaddq_s64(vrshlq_s64(t, neg_shift), z_y)) }
}

/// [`crate::kernels::int8::requant`] of one row of 8 channels: `acc` holds the i32 sums of
/// channels 0..4 and 4..8, `rq` the `residual - z_res` values (or `None`). Returns the bytes.
///
/// # Safety
/// NEON available (every AArch64 CPU); register-only arithmetic.
#[inline(always)]
pub(crate) unsafe fn requant8(
    acc: [int32x4_t; 2],
    rq: Option<[int32x4_t; 2]>,
    q: &QParams8,
    z_y: int64x2_t,
    qmin: int32x4_t,
    qmax: int32x4_t,
) -> int8x8_t {
    // SAFETY: NEON is available (contract).
    unsafe {
        let mut out = [vdupq_n_s32(0); 2];
        for (h, o) in out.iter_mut().enumerate() {
            // s = acc + bias (i32, wrapping as the spec says).
            let s = vaddq_s32(acc[h], q.bias[h]);
            let mut lo = vmull_s32(vget_low_s32(s), vget_low_s32(q.m_acc[h]));
            let mut hi = vmull_high_s32(s, q.m_acc[h]);
            if let Some(rq) = rq {
                lo = vmlal_s32(lo, vget_low_s32(rq[h]), vget_low_s32(q.m_res[h]));
                hi = vmlal_high_s32(hi, rq[h], q.m_res[h]);
            }
            let v =
                vcombine_s32(round_narrow(lo, q.neg_shift[2 * h], z_y), round_narrow(hi, q.neg_shift[2 * h + 1], z_y));
            *o = vminq_s32(vmaxq_s32(v, qmin), qmax);
        }
        // Values are in [qmin, qmax] within [-128, 127]: the truncating narrows are exact.
        vmovn_s16(vcombine_s16(vmovn_s32(out[0]), vmovn_s32(out[1])))
    }
}

/// Requantises rows `0..M` of accumulators (`acc[i][h]`: row i, channels `4h..4h+4`) and
/// stores them to `t.y` (the epilogue of both NEON int8 kernels).
///
/// # Safety
/// `t` satisfies the [`MicroTileI8`] contract and `M == t.m`.
#[inline(always)]
pub(crate) unsafe fn requant_rows<const M: usize>(t: &MicroTileI8, acc: &[[int32x4_t; 2]; M]) {
    let n = t.n;
    // SAFETY: qp readable for 4*n i32 (contract).
    let q = unsafe { load_qparams(t.qp, n) };
    let z_y = vdupq_n_s64(i64::from(t.z_y));
    let qmin = vdupq_n_s32(t.qmin);
    let qmax = vdupq_n_s32(t.qmax);
    let z_res = vdupq_n_s32(t.z_res);
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row i < m of y (and of the residual when non-null) is valid for n bytes.
        unsafe {
            let rq = if t.residual.is_null() {
                None
            } else {
                let r = vmovl_s8(load8(t.residual.add(i * t.ldr), n));
                Some([vsubq_s32(vmovl_s16(vget_low_s16(r)), z_res), vsubq_s32(vmovl_high_s16(r), z_res)])
            };
            store8(t.y.add(i * t.ldy), n, requant8(*row, rq, &q, z_y, qmin, qmax));
        }
    }
}
