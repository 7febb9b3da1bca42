//! Int8 pooling, Add, Quantize and Dequantize on AArch64 NEON: byte-identical twins of the
//! scalar bodies in [`crate::kernels::int8::generic`] (the reference semantics), for every
//! input, not only the ones a converter writes.
//!
//! - Max pool: `smax` over the taps, 16 channels per register, blocks of 64 channels.
//! - Avg pool / global avg pool: the taps are summed in i16 lanes (`saddw`; at most 256 taps
//!   per i16 partial, so `|partial| <= 128*256` is exact) and flushed into i32 lanes
//!   (`saddw` again; the i32 sum wraps exactly as the generic `wrapping_add` does, since
//!   wrapping addition is associative). The epilogue `clamp(z_y + div_round(sra_round((sum -
//!   taps*z_x) * mult, shift), c), -128, 127)` runs on two i64 lanes: `smull` (exact, |t| <
//!   2^62), `srshl` by `-shift` (the rounding shift of the spec, exact for |t| < 2^62), then
//!   `div_round(v, c) = floor((2v + c) / 2c)` as an f64 division rounded down (`fdiv` +
//!   `frintm`): for integers with `|2v + c| < 2^53` the correctly rounded quotient never
//!   crosses an integer, so its floor is exact. Lanes outside that range (only hostile
//!   multipliers produce them) take the scalar formula. `sqxtn` x3 then clamps to
//!   [-128, 127] (saturation is monotone, so it equals the i64 clamp).
//! - Add: the contiguous and the scalar-broadcast rows run 16 elements at a time through the
//!   exact requantisation of the NEON GEMM epilogue
//!   ([`super::gemm_i8i32_6x8__neon::requant8`], with `acc = a - z_a`, `rq = b - z_b`, bias 0);
//!   other strides use the generic row.
//! - Quantize: IEEE `fdiv`, NaN -> 0 (`fcmeq` + `bsl`), `frintn` (round half to even, as
//!   `round_ties_even`), clamp to [-256, 256], `fcvtzs` (exact on integers), `+ z`, `sqxtn`
//!   twice (the clamp to [-128, 127]). Infinities clamp to ±256 as in the generic body.
//! - Dequantize: `sxtl` to i32, `- z`, `scvtf` (exact: |q - z| <= 255), one IEEE `fmul`.
//!
//! Tails shorter than a register go through zero-filled stack buffers (only the valid lanes
//! are stored). NEON is part of every AArch64 CPU, so these functions are safe; slice
//! contracts are checked once per call.

use core::arch::aarch64::*;

use super::gemm_i8i32_6x8__neon::{load_qparams, requant8, QParams8};
use crate::kernels::generic::pool::Pool2dShape;
use crate::kernels::int8::generic::{self, AddQ, GapQ};
use crate::kernels::int8::{div_round, sra_round, PoolKindI8, NR};
use crate::kernels::Isa;

/// Channels reduced per block by the pools (4 registers of 16).
const CB: usize = 64;
/// Taps summed in i16 lanes before a flush into i32 (`128 * 256` still fits an i16).
const I16_TAPS: usize = 256;
/// Bound on `|v|` and `c` for the f64 division path (`|2v + c| < 2^53`).
const F64_EXACT: i64 = 1 << 50;

/// True if the NEON int8 kernels run for `isa` (every NEON tier; NEON is baseline on AArch64).
#[inline]
pub fn enabled(isa: Isa) -> bool {
    matches!(isa, Isa::Neon | Isa::NeonDot | Isa::NeonDotFp16) && Isa::Neon.is_supported()
}

/// Loads `n` (`1..=16`) bytes; lanes `>= n` are zero.
///
/// # Safety
/// `p` readable for `n` bytes.
#[inline(always)]
unsafe fn load16(p: *const i8, n: usize) -> int8x16_t {
    // SAFETY: a full vector reads 16 bytes; a tail copies exactly n bytes (caller contract).
    unsafe {
        if n >= 16 {
            vld1q_s8(p)
        } else {
            let mut buf = [0i8; 16];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            vld1q_s8(buf.as_ptr())
        }
    }
}

/// Stores the first `n` (`1..=16`) lanes of `v`.
///
/// # Safety
/// `p` writable for `n` bytes.
#[inline(always)]
unsafe fn store16(p: *mut i8, n: usize, v: int8x16_t) {
    // SAFETY: a full vector writes 16 bytes; a tail copies exactly n bytes (caller contract).
    unsafe {
        if n >= 16 {
            vst1q_s8(p, v)
        } else {
            let mut buf = [0i8; 16];
            vst1q_s8(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }
}

/// Lanes of a 16-channel group at channel offset `o` inside a block of `cb` channels.
#[inline(always)]
fn lanes(cb: usize, o: usize) -> usize {
    cb.saturating_sub(o).min(16)
}

// ---------------------------------------------------------------------------------------------
// Average epilogue
// ---------------------------------------------------------------------------------------------

/// The average-pool quantisation of one output position: divisor `div >= 1`, `zsum =
/// taps * z_x` (wrapping), `mult >= 0`, `shift` in [1, 62].
#[derive(Clone, Copy)]
struct AvgQ {
    zsum: i32,
    mult: i32,
    shift: u32,
    div: i64,
    z_y: i32,
}

/// Scalar `clamp(z_y + div_round(sra_round(sum*mult, shift), div), -128, 127)` (the generic
/// `avg_out`), for lanes outside the f64 range.
#[inline(always)]
fn avg_out_scalar(sum: i32, q: &AvgQ) -> i8 {
    let v = sra_round(i64::from(sum).wrapping_mul(i64::from(q.mult)), q.shift);
    div_round(v, q.div).wrapping_add(i64::from(q.z_y)).clamp(-128, 127) as i8
}

/// `z_y + div_round(v, div)` on two i64 lanes (exact when `|v|, div <= 2^50`; see the module
/// doc), or `None` if a lane is out of that range.
#[inline(always)]
fn div_round2(v: int64x2_t, div: i64, z_y: i64) -> Option<int64x2_t> {
    // SAFETY: NEON is part of every AArch64 CPU; register-only arithmetic.
    unsafe {
        let big = vcgtq_s64(vabsq_s64(v), vdupq_n_s64(F64_EXACT));
        if vmaxvq_u32(vreinterpretq_u32_u64(big)) != 0 {
            return None;
        }
        // n = 2v + c and d = 2c are integers below 2^53 in magnitude: exact in f64.
        let n = vaddq_s64(vshlq_n_s64::<1>(v), vdupq_n_s64(div));
        let q = vrndmq_f64(vdivq_f64(vcvtq_f64_s64(n), vdupq_n_f64((2 * div) as f64)));
        Some(vaddq_s64(vcvtq_s64_f64(q), vdupq_n_s64(z_y)))
    }
}

/// The average epilogue of 16 channel sums (`s[k]` = channels `4k..4k+4`, `sum q` over the
/// taps, i32 wrapping), to 16 bytes.
#[inline(always)]
fn avg_out16(s: [int32x4_t; 4], q: &AvgQ) -> int8x16_t {
    // SAFETY: NEON is part of every AArch64 CPU; register-only arithmetic plus a store into
    // the 4-lane local `lanes`.
    unsafe {
        let neg_shift = vdupq_n_s64(-i64::from(q.shift));
        let (mult, zsum, z_y) = (vdupq_n_s32(q.mult), vdupq_n_s32(q.zsum), i64::from(q.z_y));
        // Per 4 channels: clamp(z_y + div_round(v, div)) saturated to i32 (|value| <= 2^61).
        let w: [int32x4_t; 4] = core::array::from_fn(|k| {
            let sum = vsubq_s32(s[k], zsum);
            // |sum| <= 2^31 and mult < 2^31: the products are exact and below 2^62.
            let lo = vrshlq_s64(vmull_s32(vget_low_s32(sum), vget_low_s32(mult)), neg_shift);
            let hi = vrshlq_s64(vmull_high_s32(sum, mult), neg_shift);
            let fast =
                if q.div <= F64_EXACT { div_round2(lo, q.div, z_y).zip(div_round2(hi, q.div, z_y)) } else { None };
            match fast {
                Some((lo, hi)) => vcombine_s32(vqmovn_s64(lo), vqmovn_s64(hi)),
                None => {
                    let mut lanes = [0i32; 4];
                    vst1q_s32(lanes.as_mut_ptr(), sum);
                    vld1q_s32(lanes.map(|l| i32::from(avg_out_scalar(l, q))).as_ptr())
                }
            }
        });
        // Saturating narrows: the clamp to [-128, 127] (saturation is monotone).
        let h0 = vcombine_s16(vqmovn_s32(w[0]), vqmovn_s32(w[1]));
        let h1 = vcombine_s16(vqmovn_s32(w[2]), vqmovn_s32(w[3]));
        vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1))
    }
}

/// Sums `taps` rows of `CB` (or fewer, `cb`) channels into i32 lanes: `acc[g][k]` holds
/// channels `16g + 4k .. +4`. `tap(t)` is the pointer to channel 0 of the block at tap `t`.
///
/// # Safety
/// Every `tap(t)` (t < taps) is readable for `cb <= CB` bytes.
#[inline(always)]
unsafe fn sum_taps(taps: usize, cb: usize, tap: impl Fn(usize) -> *const i8) -> [[int32x4_t; 4]; CB / 16] {
    // SAFETY: NEON; each load reads at most the cb - 16g valid bytes of group g (lanes()).
    unsafe {
        let mut acc = [[vdupq_n_s32(0); 4]; CB / 16];
        let groups = cb.div_ceil(16);
        let mut t0 = 0;
        while t0 < taps {
            let t1 = taps.min(t0 + I16_TAPS);
            let mut part = [[vdupq_n_s16(0); 2]; CB / 16];
            for t in t0..t1 {
                let p = tap(t);
                for (g, pg) in part.iter_mut().enumerate().take(groups) {
                    let v = load16(p.add(16 * g), lanes(cb, 16 * g));
                    pg[0] = vaddw_s8(pg[0], vget_low_s8(v));
                    pg[1] = vaddw_high_s8(pg[1], v);
                }
            }
            for (a, pg) in acc.iter_mut().zip(&part).take(groups) {
                a[0] = vaddw_s16(a[0], vget_low_s16(pg[0]));
                a[1] = vaddw_high_s16(a[1], pg[0]);
                a[2] = vaddw_s16(a[2], vget_low_s16(pg[1]));
                a[3] = vaddw_high_s16(a[3], pg[1]);
            }
            t0 = t1;
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

/// Taps of one window along an axis with coordinate in `[lo, hi)` (as the generic body).
#[inline(always)]
fn count_taps(start: isize, k: usize, d: usize, lo: isize, hi: isize) -> usize {
    (0..k).filter(|&t| (lo..hi).contains(&(start + (t * d) as isize))).count()
}

/// `(first, count)`: the taps `t` of a window (coordinate `start + t*d`, `t < k`) inside
/// `[0, len)` are `first..first + count` (contiguous: the coordinate is monotone in `t`).
#[inline(always)]
fn inside_taps(start: isize, k: usize, d: usize, len: usize) -> (usize, usize) {
    let inside = |t: usize| (0..len as isize).contains(&(start + (t * d) as isize));
    match (0..k).position(inside) {
        Some(first) => (first, (first..k).take_while(|&t| inside(t)).count()),
        None => (0, 0),
    }
}

/// Tap offsets cached per output pixel (larger windows compute them per tap).
const TAP_TABLE: usize = 64;

/// NEON twin of [`generic::pool_row_i8`]: pooling output row `r` (`n*out_h + oh`) of `s` into
/// `yrow` (`out_w * c` bytes). Contract as the generic body (checked: on a violation it
/// `debug_assert!`s and returns without writing).
#[allow(non_snake_case)]
pub fn pool_row_i8__neon(s: &Pool2dShape, kind: PoolKindI8, x: &[i8], r: usize, yrow: &mut [i8]) {
    let c = s.c;
    let ok = x.len() >= s.x_len() && yrow.len() >= s.out_w * c && r < s.n * s.out_h;
    if !ok {
        debug_assert!(false, "pool_row_i8__neon: bad arguments {s:?} row {r}");
        return;
    }
    if c == 0 {
        return;
    }
    let (n, oh) = (r / s.out_h, r % s.out_h);
    let ih0 = (oh * s.stride_h) as isize - s.pad_top as isize;
    let (fh, nh) = inside_taps(ih0, s.kh, s.dil_h, s.in_h);
    let xp = x.as_ptr();
    for ow in 0..s.out_w {
        let iw0 = (ow * s.stride_w) as isize - s.pad_left as isize;
        let (fw, nw) = inside_taps(iw0, s.kw, s.dil_w, s.in_w);
        let yp = &mut yrow[ow * c..(ow + 1) * c];
        // Tap t (row-major over the inside rows and columns, the generic loop order; the
        // pooled values do not depend on it: max, wrapping sums) is at pixel (ih, iw).
        let taps = nh * nw;
        let px = |t: usize| -> usize {
            let ih = (ih0 + ((fh + t / nw) * s.dil_h) as isize) as usize;
            let iw = (iw0 + ((fw + t % nw) * s.dil_w) as isize) as usize;
            ((n * s.in_h + ih) * s.in_w + iw) * c
        };
        let mut table = [0usize; TAP_TABLE];
        let cached = taps <= TAP_TABLE;
        if cached {
            table.iter_mut().take(taps).enumerate().for_each(|(t, o)| *o = px(t));
        }
        let off = |t: usize| if cached { table[t] } else { px(t) };
        let mut c0 = 0;
        while c0 < c {
            let cb = CB.min(c - c0);
            let groups = cb.div_ceil(16);
            match kind {
                PoolKindI8::Max => {
                    // SAFETY: NEON; every tap is a pixel of the input (rows and columns inside
                    // [0, in_h) x [0, in_w), image n < s.n) and c0 + cb <= c, so each load
                    // reads bytes of x (x.len() >= x_len checked); the stores write channels
                    // < c of yp.
                    unsafe {
                        let mut acc = [vdupq_n_s8(i8::MIN); CB / 16];
                        for t in 0..taps {
                            let p = xp.add(off(t) + c0);
                            for (g, a) in acc.iter_mut().enumerate().take(groups) {
                                *a = vmaxq_s8(*a, load16(p.add(16 * g), lanes(cb, 16 * g)));
                            }
                        }
                        for (g, a) in acc.iter().enumerate().take(groups) {
                            store16(yp.as_mut_ptr().add(c0 + 16 * g), lanes(cb, 16 * g), *a);
                        }
                    }
                }
                PoolKindI8::Avg { include_pad, z_x, mult, shift, z_y } => {
                    let (lo_h, hi_h, lo_w, hi_w) = if include_pad {
                        (
                            -(s.pad_top as isize),
                            (s.in_h + s.pad_bottom) as isize,
                            -(s.pad_left as isize),
                            (s.in_w + s.pad_right) as isize,
                        )
                    } else {
                        (0, s.in_h as isize, 0, s.in_w as isize)
                    };
                    let count = count_taps(ih0, s.kh, s.dil_h, lo_h, hi_h) * count_taps(iw0, s.kw, s.dil_w, lo_w, hi_w);
                    // The generic body counts the taps with a wrapping i32 increment.
                    let q = AvgQ { zsum: (taps as i32).wrapping_mul(z_x), mult, shift, div: count.max(1) as i64, z_y };
                    // SAFETY: as for Max: every tap pointer is readable for cb bytes.
                    let acc = unsafe { sum_taps(taps, cb, |t| xp.add(off(t) + c0)) };
                    for (g, a) in acc.iter().enumerate().take(groups) {
                        let v = avg_out16(*a, &q);
                        // SAFETY: channels c0 + 16g .. + lanes < c of yp.
                        unsafe { store16(yp.as_mut_ptr().add(c0 + 16 * g), lanes(cb, 16 * g), v) };
                    }
                }
            }
            c0 += cb;
        }
    }
}

/// NEON twin of [`generic::global_avgpool_i8`]: `x` is `[n, hw, c]`, `y` is `[n, c]`.
/// Contract as the generic body (checked: on a violation it `debug_assert!`s and returns).
#[allow(non_snake_case)]
pub fn global_avgpool_i8__neon(n: usize, hw: usize, c: usize, x: &[i8], q: &GapQ, y: &mut [i8]) {
    let sizes = n.checked_mul(hw).and_then(|v| v.checked_mul(c)).zip(n.checked_mul(c));
    let ok = sizes.is_some_and(|(xl, yl)| x.len() >= xl && y.len() >= yl) && hw > 0;
    if !ok {
        debug_assert!(false, "global_avgpool_i8__neon: bad arguments n {n} hw {hw} c {c}");
        return;
    }
    let aq = AvgQ { zsum: (hw as i32).wrapping_mul(q.z_x), mult: q.mult, shift: q.shift, div: hw as i64, z_y: q.z_y };
    let xp = x.as_ptr();
    for b in 0..n {
        let mut c0 = 0;
        while c0 < c {
            let cb = CB.min(c - c0);
            // SAFETY: pixel p < hw of image b < n, channels c0..c0+cb <= c: inside x.
            let acc = unsafe { sum_taps(hw, cb, |p| xp.add((b * hw + p) * c + c0)) };
            for (g, a) in acc.iter().enumerate().take(cb.div_ceil(16)) {
                let v = avg_out16(*a, &aq);
                // SAFETY: channels c0 + 16g .. + lanes < c of row b of y (y.len() >= n*c).
                unsafe { store16(y.as_mut_ptr().add(b * c + c0 + 16 * g), lanes(cb, 16 * g), v) };
            }
            c0 += cb;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Add
// ---------------------------------------------------------------------------------------------

/// Sign-extends 16 bytes to four i32x4 and subtracts `z`.
#[inline(always)]
fn widen_sub(v: int8x16_t, z: int32x4_t) -> [int32x4_t; 4] {
    // SAFETY: NEON is part of every AArch64 CPU; register-only arithmetic.
    unsafe {
        let (lo, hi) = (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v));
        [
            vsubq_s32(vmovl_s16(vget_low_s16(lo)), z),
            vsubq_s32(vmovl_high_s16(lo), z),
            vsubq_s32(vmovl_s16(vget_low_s16(hi)), z),
            vsubq_s32(vmovl_high_s16(hi), z),
        ]
    }
}

/// NEON twin of [`generic::add_row_i8`]: `y[j] = add(a[j*sa], b[j*sb])` for `j < y.len()`.
/// Contiguous rows (`sa = sb = 1`) and rows with one operand broadcast (stride 0) run 16 lanes
/// at a time; other strides use the generic row. Contract: `a` / `b` reach index
/// `(y.len()-1)*stride`; `m_a, m_b >= 0`, `shift` in [1, 62], `qmin <= qmax` in [-128, 127]
/// (checked by slicing: a violation panics, as in the generic body).
#[allow(non_snake_case)]
pub fn add_row_i8__neon(a: &[i8], sa: usize, b: &[i8], sb: usize, q: &AddQ, y: &mut [i8]) {
    let len = y.len();
    if len == 0 {
        return;
    }
    if !matches!((sa, sb), (1, 1) | (1, 0) | (0, 1)) {
        return generic::add_row_i8(a, sa, b, sb, q, y);
    }
    // Reached extents: len elements for a stride-1 operand, one for a broadcast one.
    let (a, b) = (&a[..if sa == 1 { len } else { 1 }], &b[..if sb == 1 { len } else { 1 }]);
    let mut qp = [0i32; 4 * NR];
    for row in qp.chunks_exact_mut(4) {
        row.copy_from_slice(&[0, q.m_a, q.m_b, q.shift as i32]);
    }
    // SAFETY: qp holds 4*NR i32.
    let qv: QParams8 = unsafe { load_qparams(qp.as_ptr(), NR) };
    // SAFETY: NEON is part of every AArch64 CPU; loads/stores stay inside the slices: a
    // stride-1 operand and y hold len elements and j + w <= len; a broadcast operand is read
    // at index 0 only.
    unsafe {
        let (z_a, z_b) = (vdupq_n_s32(q.z_a), vdupq_n_s32(q.z_b));
        let z_y = vdupq_n_s64(i64::from(q.z_y));
        let (qmin, qmax) = (vdupq_n_s32(q.qmin), vdupq_n_s32(q.qmax));
        let a_bc = vdupq_n_s8(a[0]);
        let b_bc = vdupq_n_s8(b[0]);
        let mut j = 0;
        while j < len {
            let w = 16.min(len - j);
            let av = if sa == 1 { load16(a.as_ptr().add(j), w) } else { a_bc };
            let bv = if sb == 1 { load16(b.as_ptr().add(j), w) } else { b_bc };
            let (av, bv) = (widen_sub(av, z_a), widen_sub(bv, z_b));
            let lo = requant8([av[0], av[1]], Some([bv[0], bv[1]]), &qv, z_y, qmin, qmax);
            let hi = requant8([av[2], av[3]], Some([bv[2], bv[3]]), &qv, z_y, qmin, qmax);
            store16(y.as_mut_ptr().add(j), w, vcombine_s8(lo, hi));
            j += w;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantize / Dequantize
// ---------------------------------------------------------------------------------------------

/// NEON twin of [`generic::quantize_f32_i8`] (`y.len() >= x.len()`; only `x.len()` bytes are
/// written). Panics (by slicing) if `y` is shorter than `x`.
#[allow(non_snake_case)]
pub fn quantize_f32_i8__neon(x: &[f32], scale: f32, z: i32, y: &mut [i8]) {
    let len = x.len();
    let y = &mut y[..len];
    // SAFETY: NEON is part of every AArch64 CPU; each step reads w <= len - j floats of x and
    // writes w bytes of y at j (tails through zeroed stack buffers).
    unsafe {
        let sv = vdupq_n_f32(scale);
        let (lo, hi) = (vdupq_n_f32(-256.0), vdupq_n_f32(256.0));
        let zero = vdupq_n_f32(0.0);
        let zv = vdupq_n_s32(z);
        let q4 = |v: float32x4_t| -> int32x4_t {
            let v = vdivq_f32(v, sv);
            // NaN -> 0 (a NaN never equals itself).
            let v = vbslq_f32(vceqq_f32(v, v), v, zero);
            let r = vminq_f32(vmaxq_f32(vrndnq_f32(v), lo), hi);
            vaddq_s32(vcvtq_s32_f32(r), zv)
        };
        let mut j = 0;
        while j < len {
            let w = 16.min(len - j);
            let mut buf = [0.0f32; 16];
            let src = if w == 16 {
                x.as_ptr().add(j)
            } else {
                buf[..w].copy_from_slice(&x[j..]);
                buf.as_ptr()
            };
            let r: [int32x4_t; 4] = core::array::from_fn(|k| q4(vld1q_f32(src.add(4 * k))));
            // r + z is in [-384, 383]: the first narrow is exact, the second clamps.
            let h0 = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1]));
            let h1 = vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3]));
            store16(y.as_mut_ptr().add(j), w, vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
            j += w;
        }
    }
}

/// NEON twin of [`generic::dequantize_i8_f32`] (`y.len() >= x.len()`; only `x.len()` floats
/// are written). Panics (by slicing) if `y` is shorter than `x`.
#[allow(non_snake_case)]
pub fn dequantize_i8_f32__neon(x: &[i8], scale: f32, z: i32, y: &mut [f32]) {
    let len = x.len();
    let y = &mut y[..len];
    // SAFETY: NEON is part of every AArch64 CPU; each step reads w <= len - j bytes of x and
    // writes w floats of y at j (tails through stack buffers).
    unsafe {
        let sv = vdupq_n_f32(scale);
        let zv = vdupq_n_s32(z);
        let mut j = 0;
        while j < len {
            let w = 16.min(len - j);
            let q = widen_sub(load16(x.as_ptr().add(j), w), zv);
            // |q - z| <= 255: the conversion is exact; one IEEE multiply per element.
            let f: [float32x4_t; 4] = core::array::from_fn(|k| vmulq_f32(vcvtq_f32_s32(q[k]), sv));
            if w == 16 {
                for (k, fk) in f.iter().enumerate() {
                    vst1q_f32(y.as_mut_ptr().add(j + 4 * k), *fk);
                }
            } else {
                let mut buf = [0.0f32; 16];
                for (k, fk) in f.iter().enumerate() {
                    vst1q_f32(buf.as_mut_ptr().add(4 * k), *fk);
                }
                y[j..].copy_from_slice(&buf[..w]);
            }
            j += w;
        }
    }
}
