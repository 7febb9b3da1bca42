//! Int8 kernels: the arithmetic of `/work/briefs/int8-spec.md` (format 1.2), bit-identical on
//! every tier and for any thread count.
//!
//! - [`conv2d_i8`] / [`linear_i8`]: im2col (or a widening copy for 1x1 convs) of the raw
//!   int8 activations into per-thread i16 scratch, a 6x8 i8·i8→i32 micro-kernel over
//!   PackedN16K4 weights ([`pack`]), and the fused requantising epilogue ([`requant`]) in the
//!   store. i32 sums are exact (the loader bounds K), and wrapping anyway, so the summation
//!   order never matters. Micro-kernels: generic, AVX2 (`vpmaddwd`), NEON (`smlal`) and NEON
//!   `sdot`.
//! - [`winograd`]: exact int8 Winograd F(2x2,3x3) for 3x3 stride-1 layers (AVX2 sessions),
//!   the same bytes as the direct convolution by construction.
//! - Pools, Add, Quantize, Dequantize: one scalar body each in [`generic`]; the AVX2 tier runs
//!   the same bodies compiled with AVX2 enabled (integer and IEEE-exact float code, so the
//!   bytes cannot differ), plus a hand-written AVX2 Add row; on aarch64 the NEON twins in
//!   `kernels::aarch64::qops_i8__neon`, byte-exact (tests in `runtime/tests/kernels_neon_q.rs`).
//!
//! Every entry point checks its slice-length contract (validated at load) once; on a
//! violation it `debug_assert!`s and returns without writing.

mod conv;
pub mod generic;
pub mod pack;
pub mod winograd;

use super::gemm::SyncPtr;
use super::generic::par::for_each_chunk;
pub use super::generic::pool::Pool2dShape;
use super::Isa;
use crate::format::MAX_RANK;
use crate::team::Parallel;
pub use conv::{conv2d_i8, conv2d_i8_scratch_len, linear_i8, linear_i8_scratch_len, micro_kernel, MicroKernelI8};
pub use generic::MicroTileI8;

/// Rows of the int8 micro-kernel tile.
pub const MR: usize = 6;
/// Output channels of the int8 micro-kernel tile (half a PackedN16K4 panel).
pub const NR: usize = 8;

/// `(t + 2^(shift-1)) >> shift` (arithmetic): rounds half toward +infinity. `shift` in
/// [1, 62]; the addition wraps (it cannot overflow for the spec's bounds).
#[inline(always)]
pub fn sra_round(t: i64, shift: u32) -> i64 {
    debug_assert!((1..=62).contains(&shift));
    t.wrapping_add(1i64 << (shift - 1)) >> shift
}

/// `v / c` rounded half toward +infinity, `c > 0`: `(2v + c).div_euclid(2c)`.
#[inline(always)]
pub fn div_round(v: i64, c: i64) -> i64 {
    debug_assert!(c > 0);
    v.wrapping_mul(2).wrapping_add(c).div_euclid(c.wrapping_mul(2))
}

/// The requantisation of every int8 GEMM/Add output:
/// `t = s*m_acc + rq*m_res` (i64), `q = sra_round(t, shift) + z_y`, `clamp(q, qmin, qmax)`.
/// The clamp is `max(qmin)` then `min(qmax)` (as every SIMD twin does it); callers keep
/// `-128 <= qmin <= qmax <= 127`, so the final cast never truncates.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn requant(s: i32, m_acc: i32, rq: i32, m_res: i32, shift: u32, z_y: i32, qmin: i32, qmax: i32) -> i8 {
    let t = i64::from(s).wrapping_mul(i64::from(m_acc)).wrapping_add(i64::from(rq).wrapping_mul(i64::from(m_res)));
    let q = sra_round(t, shift).wrapping_add(i64::from(z_y));
    q.max(i64::from(qmin)).min(i64::from(qmax)) as i8
}

/// What the int8 conv/linear store fuses: per output channel `o`,
/// `y = requant(acc + bias[o], m_acc[o], residual - z_res, m_res[o], shift[o], z_y, qmin, qmax)`.
#[derive(Clone, Copy, Debug)]
pub struct QEpilogue<'a> {
    /// `[O*4]`: `bias, m_acc, m_res, shift` per output channel.
    pub qparams: &'a [i32],
    /// Same NHWC shape as `y`; `None` means `rq = 0`.
    pub residual: Option<&'a [i8]>,
    pub z_res: i32,
    pub z_y: i32,
    pub qmin: i32,
    pub qmax: i32,
}

/// True if `v` is a valid int8 zero point / clamp bound.
#[inline]
fn is_i8(v: i32) -> bool {
    (-128..=127).contains(&v)
}

/// True if `(m, shift)` is a multiplier pair the spec allows (`m >= 0`, `shift` in [1, 62]).
#[inline]
fn valid_mult(m: i32, shift: u32) -> bool {
    m >= 0 && (1..=62).contains(&shift)
}

/// True if, for every channel row (`bias, m_acc, m_res, shift`) of `qparams` and *any* int8
/// data, weights and residual over a reduction of length `k`, the rounded requantisation sum
/// `T = t + 2^(shift-1)` (`t = s*m_acc + rq*m_res`, [`requant`]) satisfies
/// `|T| < 2^(30 + shift)` whenever `shift < 32`.
///
/// Then `T << (32 - shift)` cannot overflow an i64 and its high dword is exactly
/// `T >> shift` with `|T >> shift| < 2^30`: the SIMD epilogues' i32 "high dword" path (one
/// shift and 8-lane i32 arithmetic) is exact for those channels too, not only for
/// `shift >= 32`. Bounds used: `|s| <= min(k*128*128 + |bias|, 2^31)` (the i32 sum of `k`
/// products of int8 values, any order, plus the bias), `|rq| <= 255`.
pub fn requant_fits_lshift(qparams: &[i32], k: usize) -> bool {
    let k = k as u128;
    qparams.chunks_exact(4).all(|q| {
        let (bias, m_acc, m_res, shift) = (q[0], q[1], q[2], q[3]);
        if !(1..=62).contains(&shift) || m_acc < 0 || m_res < 0 {
            return false;
        }
        if shift >= 32 {
            return true;
        }
        let s_max = (k * 128 * 128 + u128::from(bias.unsigned_abs())).min(1 << 31);
        let t_max = s_max * m_acc as u128 + 255 * m_res as u128 + (1u128 << (shift - 1));
        t_max < 1u128 << (30 + shift)
    })
}

/// True if the AVX2 kernels may run for `isa` on this CPU.
#[inline]
fn use_avx2(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        matches!(isa, Isa::Avx2Fma | Isa::Avx512) && Isa::Avx2Fma.is_supported()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

/// How a pooling row is reduced.
#[derive(Clone, Copy, Debug)]
pub enum PoolKindI8 {
    /// Max of the taps inside the input.
    Max,
    /// `y = clamp(z_y + div_round(sra_round(sum(q - z_x) * mult, shift), c), -128, 127)`.
    Avg { include_pad: bool, z_x: i32, mult: i32, shift: u32, z_y: i32 },
}

fn pool_i8<P: Parallel + ?Sized>(
    isa: Isa,
    s: &Pool2dShape,
    kind: PoolKindI8,
    x: &[i8],
    y: &mut [i8],
    pool: Option<&P>,
) {
    let ok = s.kh > 0 && s.kw > 0 && s.stride_h > 0 && s.stride_w > 0 && x.len() >= s.x_len() && y.len() >= s.y_len();
    if !ok {
        debug_assert!(false, "int8 pool: slice lengths do not match {s:?}");
        return;
    }
    let avx2 = use_avx2(isa);
    #[cfg(target_arch = "aarch64")]
    let neon = super::aarch64::qops_i8__neon::enabled(isa);
    let row = s.out_w * s.c;
    for_each_chunk(pool, &mut y[..s.y_len()], row, |r, yrow| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 is present (use_avx2); the row body only indexes checked slices.
            unsafe { super::x86_64::qops_i8__avx2::pool_row_i8__avx2(s, kind, x, r, yrow) };
            return;
        }
        #[cfg(target_arch = "aarch64")]
        if neon {
            super::aarch64::qops_i8__neon::pool_row_i8__neon(s, kind, x, r, yrow);
            return;
        }
        let _ = avx2;
        generic::pool_row_i8(s, kind, x, r, yrow);
    });
}

/// Int8 max pooling over NHWC (x and y share scale and zero point). Contract: lengths as
/// [`Pool2dShape`] says; every window has at least one tap inside the input (validated at
/// load; a window without one yields -128).
pub fn maxpool_i8<P: Parallel + ?Sized>(isa: Isa, s: &Pool2dShape, x: &[i8], y: &mut [i8], pool: Option<&P>) {
    pool_i8(isa, s, PoolKindI8::Max, x, y, pool)
}

/// Int8 average pooling over NHWC: `sum = sum over taps inside the input of (q - z_x)`, the
/// divisor `c` counts taps inside the input (or inside the padded input with
/// `count_include_pad`), `y = clamp(z_y + div_round(sra_round(sum*mult, shift), c), -128, 127)`.
/// Contract: `mult >= 0`, `shift` in [1, 62], zero points in [-128, 127].
#[allow(clippy::too_many_arguments)]
pub fn avgpool_i8<P: Parallel + ?Sized>(
    isa: Isa,
    s: &Pool2dShape,
    count_include_pad: bool,
    x: &[i8],
    z_x: i32,
    mult: i32,
    shift: u32,
    z_y: i32,
    y: &mut [i8],
    pool: Option<&P>,
) {
    if !(valid_mult(mult, shift) && is_i8(z_x) && is_i8(z_y)) {
        debug_assert!(false, "avgpool_i8: invalid quantisation mult {mult} shift {shift} z_x {z_x} z_y {z_y}");
        return;
    }
    let kind = PoolKindI8::Avg { include_pad: count_include_pad, z_x, mult, shift, z_y };
    pool_i8(isa, s, kind, x, y, pool)
}

/// `y[b, ch] = clamp(z_y + div_round(sra_round(sum_p (x[b, p, ch] - z_x) * mult, shift), hw), -128, 127)`;
/// `x` is `[n, hw, c]`, `y` is `[n, c]`. Contract as [`avgpool_i8`], `hw >= 1`.
#[allow(clippy::too_many_arguments)]
pub fn global_avgpool_i8(
    isa: Isa,
    n: usize,
    hw: usize,
    c: usize,
    x: &[i8],
    z_x: i32,
    mult: i32,
    shift: u32,
    z_y: i32,
    y: &mut [i8],
) {
    let sizes = n.checked_mul(hw).and_then(|v| v.checked_mul(c)).zip(n.checked_mul(c));
    let fits = sizes.is_some_and(|(xl, yl)| x.len() >= xl && y.len() >= yl);
    if !(fits && hw > 0 && valid_mult(mult, shift) && is_i8(z_x) && is_i8(z_y)) {
        debug_assert!(false, "global_avgpool_i8: bad arguments n {n} hw {hw} c {c} mult {mult} shift {shift}");
        return;
    }
    let q = generic::GapQ { z_x, mult, shift, z_y };
    #[cfg(target_arch = "x86_64")]
    if use_avx2(isa) {
        // SAFETY: AVX2 is present; lengths checked above.
        unsafe { super::x86_64::qops_i8__avx2::global_avgpool_i8__avx2(n, hw, c, x, &q, y) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if super::aarch64::qops_i8__neon::enabled(isa) {
        super::aarch64::qops_i8__neon::global_avgpool_i8__neon(n, hw, c, x, &q, y);
        return;
    }
    let _ = isa;
    generic::global_avgpool_i8(n, hw, c, x, &q, y)
}

/// Int8 broadcast add: for the physical index `i` of `y` (row-major over `y_dims`),
/// `y[i] = clamp(sra_round((a[off_a(i)] - z_a)*m_a + (b[off_b(i)] - z_b)*m_b, shift) + z_y, qmin, qmax)`
/// with `off_x(i) = sum_d i_d * x_strides[d]` (stride 0 on broadcast dims), as
/// [`super::generic::eltwise::add_f32`].
///
/// Contract (validated at load): `y_dims.len() <= 6`, strides of the same length, every
/// offset reached inside `a` / `b`, `y.len() >= prod(y_dims)`; `m_a, m_b >= 0`, `shift` in
/// [1, 62], zero points and `qmin <= qmax` in [-128, 127].
#[allow(clippy::too_many_arguments)]
pub fn add_i8(
    isa: Isa,
    y_dims: &[usize],
    a: &[i8],
    a_strides: &[usize],
    z_a: i32,
    m_a: i32,
    b: &[i8],
    b_strides: &[usize],
    z_b: i32,
    m_b: i32,
    shift: u32,
    z_y: i32,
    qmin: i32,
    qmax: i32,
    y: &mut [i8],
) {
    let r = y_dims.len();
    let shapes_ok = r <= MAX_RANK && a_strides.len() == r && b_strides.len() == r;
    let q = generic::AddQ { z_a, m_a, z_b, m_b, shift, z_y, qmin, qmax };
    let params_ok =
        valid_mult(m_a, shift) && m_b >= 0 && [z_a, z_b, z_y, qmin, qmax].into_iter().all(is_i8) && qmin <= qmax;
    // Largest offsets read must lie inside a and b; y must hold every element.
    let reach = |s: &[usize]| -> Option<usize> {
        y_dims.iter().zip(s).try_fold(0usize, |acc, (&d, &st)| acc.checked_add(d.checked_sub(1)?.checked_mul(st)?))
    };
    let total = y_dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let empty = total == Some(0);
    let fits = empty
        || (shapes_ok
            && reach(a_strides).is_some_and(|m| m < a.len())
            && reach(b_strides).is_some_and(|m| m < b.len())
            && total.is_some_and(|t| t <= y.len()));
    if !(shapes_ok && params_ok && fits) {
        debug_assert!(false, "add_i8: bad arguments dims {y_dims:?} strides {a_strides:?} {b_strides:?}");
        return;
    }
    if empty {
        return;
    }
    let mut d = [1usize; MAX_RANK];
    let mut sa = [0usize; MAX_RANK];
    let mut sb = [0usize; MAX_RANK];
    d[MAX_RANK - r..].copy_from_slice(y_dims);
    sa[MAX_RANK - r..].copy_from_slice(a_strides);
    sb[MAX_RANK - r..].copy_from_slice(b_strides);
    let avx2 = use_avx2(isa);
    #[cfg(target_arch = "aarch64")]
    let neon = super::aarch64::qops_i8__neon::enabled(isa);
    let inner = d[5];
    let mut k = 0usize;
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                for i3 in 0..d[3] {
                    for i4 in 0..d[4] {
                        let oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3] + i4 * sa[4];
                        let ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3] + i4 * sb[4];
                        let (ar, br) = (&a[oa..], &b[ob..]);
                        let yr = &mut y[k..k + inner];
                        #[cfg(target_arch = "x86_64")]
                        if avx2 {
                            // SAFETY: AVX2 is present; the row reaches (inner-1)*stride inside
                            // ar/br (checked above) and yr has inner elements.
                            unsafe { super::x86_64::qops_i8__avx2::add_row_i8__avx2(ar, sa[5], br, sb[5], &q, yr) };
                            k += inner;
                            continue;
                        }
                        #[cfg(target_arch = "aarch64")]
                        if neon {
                            super::aarch64::qops_i8__neon::add_row_i8__neon(ar, sa[5], br, sb[5], &q, yr);
                            k += inner;
                            continue;
                        }
                        let _ = avx2;
                        generic::add_row_i8(ar, sa[5], br, sb[5], &q, yr);
                        k += inner;
                    }
                }
            }
        }
    }
}

/// Quantize: `v = x / scale` (one IEEE division), NaN -> 0, `clamp(round_ties_even(v), -256,
/// 256)`, `y = clamp(that + z, -128, 127)`. Contract: `y.len() >= x.len()`, `z` in [-128, 127].
pub fn quantize_f32_i8(isa: Isa, x: &[f32], scale: f32, z: i32, y: &mut [i8]) {
    if y.len() < x.len() || !is_i8(z) {
        debug_assert!(false, "quantize_f32_i8: y shorter than x or zero point {z} out of range");
        return;
    }
    let y = &mut y[..x.len()];
    #[cfg(target_arch = "x86_64")]
    if use_avx2(isa) {
        // SAFETY: AVX2 is present; equal lengths.
        unsafe { super::x86_64::qops_i8__avx2::quantize_f32_i8__avx2(x, scale, z, y) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if super::aarch64::qops_i8__neon::enabled(isa) {
        super::aarch64::qops_i8__neon::quantize_f32_i8__neon(x, scale, z, y);
        return;
    }
    let _ = isa;
    generic::quantize_f32_i8(x, scale, z, y)
}

/// Dequantize: `y = ((q - z) as f32) * scale` (one IEEE multiply). Contract:
/// `y.len() >= x.len()`, `z` in [-128, 127].
pub fn dequantize_i8_f32(isa: Isa, x: &[i8], scale: f32, z: i32, y: &mut [f32]) {
    if y.len() < x.len() || !is_i8(z) {
        debug_assert!(false, "dequantize_i8_f32: y shorter than x or zero point {z} out of range");
        return;
    }
    let y = &mut y[..x.len()];
    #[cfg(target_arch = "x86_64")]
    if use_avx2(isa) {
        // SAFETY: AVX2 is present; equal lengths.
        unsafe { super::x86_64::qops_i8__avx2::dequantize_i8_f32__avx2(x, scale, z, y) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if super::aarch64::qops_i8__neon::enabled(isa) {
        super::aarch64::qops_i8__neon::dequantize_i8_f32__neon(x, scale, z, y);
        return;
    }
    let _ = isa;
    generic::dequantize_i8_f32(x, scale, z, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_helpers_round_half_up() {
        assert_eq!(sra_round(3, 1), 2); // 1.5 -> 2
        assert_eq!(sra_round(-3, 1), -1); // -1.5 -> -1
        assert_eq!(sra_round(-5, 2), -1); // -1.25 -> -1
        assert_eq!(sra_round(-6, 2), -1); // -1.5 -> -1
        assert_eq!(sra_round(-7, 2), -2); // -1.75 -> -2
        assert_eq!(sra_round((1 << 62) - 1, 62), 1);
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(-5, 2), -2);
        assert_eq!(div_round(-7, 3), -2); // -2.33
        assert_eq!(div_round(7, 3), 2);
        assert_eq!(div_round(0, 9), 0);
        assert_eq!(requant(100, 1 << 30, 0, 0, 31, 3, -128, 127), 53);
        assert_eq!(requant(i32::MIN, i32::MAX, -255, i32::MAX, 62, 0, -128, 127), -1);
        assert_eq!(requant(1000, 1 << 30, 0, 0, 30, 0, -5, 7), 7);
        assert_eq!(requant(-1000, 1 << 30, 10, 1 << 30, 30, 0, -5, 7), -5);
    }
}
