//! Scalar twins of the int8 kernels: the reference semantics (the spec's formulas written
//! out) and the fallback on every CPU. The AVX2 tier compiles the `#[inline(always)]` bodies
//! here with AVX2 enabled, or replaces them with intrinsics that must give the same bytes.

use super::pack::{KG, PANEL};
use super::{div_round, requant, sra_round, PoolKindI8, MR, NR};
use crate::kernels::generic::pool::Pool2dShape;

/// One int8 micro-kernel call: `y[m x n] = requant(A[m x K] · W[K x n] + bias, residual)`
/// for `m <= 6` rows and `n <= 8` output channels, over the whole K (no partial sums).
///
/// Pointer contract:
/// - `a[i]` for `i < m`: readable for `4*k4` i16 (row i of A: the int8 activations widened to
///   i16, K padded to a multiple of 4; the padding lanes may hold any value because the
///   matching weights are 0). Entries `>= m` are never read (callers repeat `a[0]`).
/// - `b`: for each `kk < k4`, 32 readable bytes at `b + 64*kk`: half a PackedN16K4 group,
///   `b[64*kk + 4*l + j]` = weight of channel `l` at `k = 4*kk + j`. Lanes `l >= n` are read
///   (zero padding or the other channels) but never stored.
/// - `qp`: `4*n` readable i32 (`bias, m_acc, m_res, shift` per channel), `m_acc, m_res >= 0`,
///   `shift` in [1, 62].
/// - `y`: rows `0..m` at stride `ldy` writable for `n` bytes.
/// - `residual` (null = none): rows `0..m` at stride `ldr` readable for `n` bytes.
/// - `z_res`, `z_y`, `qmin <= qmax` in [-128, 127].
/// - `lshift_ok`: may be true only if [`super::requant_fits_lshift`]`(qp rows, 4*k4)` holds
///   (a numeric precondition of the SIMD epilogues' fast path, not a memory one; `false` is
///   always correct).
#[derive(Clone, Copy, Debug)]
pub struct MicroTileI8 {
    pub m: usize,
    pub n: usize,
    pub k4: usize,
    pub a: [*const i16; MR],
    pub b: *const i8,
    pub qp: *const i32,
    pub y: *mut i8,
    pub ldy: usize,
    pub residual: *const i8,
    pub ldr: usize,
    pub z_res: i32,
    pub z_y: i32,
    pub qmin: i32,
    pub qmax: i32,
    pub lshift_ok: bool,
}

/// Scalar twin of `x86_64::gemm_i8i32_6x8__avx2`: i32 wrapping sums, then [`requant`].
///
/// # Safety
/// `t` must satisfy the pointer contract on [`MicroTileI8`].
#[allow(non_snake_case)]
pub unsafe fn gemm_i8i32_6x8__generic(t: &MicroTileI8) {
    debug_assert!(t.m >= 1 && t.m <= MR && t.n >= 1 && t.n <= NR);
    let mut acc = [[0i32; NR]; MR];
    for (i, row) in acc.iter_mut().enumerate().take(t.m) {
        for kk in 0..t.k4 {
            // SAFETY: a[i] (i < m) holds 4*k4 i16; b holds 32 bytes at 64*kk (contract).
            let (av, bv) = unsafe {
                (&*(t.a[i].add(kk * KG) as *const [i16; KG]), &*(t.b.add(kk * PANEL * KG) as *const [i8; NR * KG]))
            };
            for (l, r) in row.iter_mut().enumerate() {
                let dot = (0..KG).fold(0i32, |s, j| s.wrapping_add(i32::from(av[j]) * i32::from(bv[l * KG + j])));
                *r = r.wrapping_add(dot);
            }
        }
    }
    // SAFETY: qp holds 4*n i32 (contract).
    let qp = unsafe { core::slice::from_raw_parts(t.qp, 4 * t.n) };
    for (i, row) in acc.iter().enumerate().take(t.m) {
        // SAFETY: row i < m of y is writable for n bytes (contract).
        let y = unsafe { core::slice::from_raw_parts_mut(t.y.add(i * t.ldy), t.n) };
        let res = if t.residual.is_null() {
            None
        } else {
            // SAFETY: row i of the residual is readable for n bytes when non-null (contract).
            Some(unsafe { core::slice::from_raw_parts(t.residual.add(i * t.ldr), t.n) })
        };
        for (l, v) in y.iter_mut().enumerate() {
            let q = &qp[4 * l..4 * l + 4];
            let rq = res.map_or(0, |r| i32::from(r[l]) - t.z_res);
            *v = requant(row[l].wrapping_add(q[0]), q[1], rq, q[2], q[3] as u32, t.z_y, t.qmin, t.qmax);
        }
    }
}

/// Taps of one window along an axis with coordinate in `[lo, hi)`.
#[inline(always)]
fn count_taps(start: isize, k: usize, d: usize, lo: isize, hi: isize) -> usize {
    (0..k).filter(|&t| (lo..hi).contains(&(start + (t * d) as isize))).count()
}

/// Channels reduced at once by the average pools (an i32 accumulator block on the stack).
const CB: usize = 64;

/// Pooling output row `r` (`n*out_h + oh`) of `s` into `yrow` (`out_w * c` bytes).
/// Contract: `x.len() >= s.x_len()`; avg parameters valid (see [`super::avgpool_i8`]).
#[inline(always)]
pub fn pool_row_i8(s: &Pool2dShape, kind: PoolKindI8, x: &[i8], r: usize, yrow: &mut [i8]) {
    let c = s.c;
    let (n, oh) = (r / s.out_h, r % s.out_h);
    let ih0 = (oh * s.stride_h) as isize - s.pad_top as isize;
    let taps_h = || {
        (0..s.kh)
            .map(move |kh| ih0 + (kh * s.dil_h) as isize)
            .filter(|&ih| ih >= 0 && ih < s.in_h as isize)
            .map(|ih| ih as usize)
    };
    for ow in 0..s.out_w {
        let yp = &mut yrow[ow * c..(ow + 1) * c];
        let iw0 = (ow * s.stride_w) as isize - s.pad_left as isize;
        let taps_w = || {
            (0..s.kw)
                .map(move |kw| iw0 + (kw * s.dil_w) as isize)
                .filter(|&iw| iw >= 0 && iw < s.in_w as isize)
                .map(|iw| iw as usize)
        };
        let px = |ih: usize, iw: usize| ((n * s.in_h + ih) * s.in_w + iw) * c;
        match kind {
            PoolKindI8::Max => {
                yp.fill(i8::MIN);
                for ih in taps_h() {
                    for iw in taps_w() {
                        let xs = &x[px(ih, iw)..][..c];
                        yp.iter_mut().zip(xs).for_each(|(m, &v)| *m = (*m).max(v));
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
                let div = count.max(1) as i64;
                let mut c0 = 0;
                while c0 < c {
                    let cb = CB.min(c - c0);
                    let mut acc = [0i32; CB];
                    let mut taps = 0i32;
                    for ih in taps_h() {
                        for iw in taps_w() {
                            let xs = &x[px(ih, iw) + c0..][..cb];
                            acc.iter_mut().zip(xs).for_each(|(a, &v)| *a = a.wrapping_add(i32::from(v)));
                            taps = taps.wrapping_add(1);
                        }
                    }
                    // sum (q - z_x) = sum q - taps*z_x.
                    let zsum = taps.wrapping_mul(z_x);
                    for (v, &a) in yp[c0..c0 + cb].iter_mut().zip(&acc) {
                        *v = avg_out(a.wrapping_sub(zsum), mult, shift, div, z_y);
                    }
                    c0 += cb;
                }
            }
        }
    }
}

/// `clamp(z_y + div_round(sra_round(sum*mult, shift), div), -128, 127)`.
#[inline(always)]
fn avg_out(sum: i32, mult: i32, shift: u32, div: i64, z_y: i32) -> i8 {
    let v = sra_round(i64::from(sum).wrapping_mul(i64::from(mult)), shift);
    div_round(v, div).wrapping_add(i64::from(z_y)).clamp(-128, 127) as i8
}

/// Quantisation of the global average pool.
#[derive(Clone, Copy, Debug)]
pub struct GapQ {
    pub z_x: i32,
    pub mult: i32,
    pub shift: u32,
    pub z_y: i32,
}

/// Global average pool (see [`super::global_avgpool_i8`]). Contract: `x.len() >= n*hw*c`,
/// `y.len() >= n*c`, `hw >= 1`.
#[inline(always)]
pub fn global_avgpool_i8(n: usize, hw: usize, c: usize, x: &[i8], q: &GapQ, y: &mut [i8]) {
    let zsum = (hw as i32).wrapping_mul(q.z_x);
    for b in 0..n {
        let mut c0 = 0;
        while c0 < c {
            let cb = CB.min(c - c0);
            let mut acc = [0i32; CB];
            for p in 0..hw {
                let xs = &x[(b * hw + p) * c + c0..][..cb];
                acc.iter_mut().zip(xs).for_each(|(a, &v)| *a = a.wrapping_add(i32::from(v)));
            }
            for (v, &a) in y[b * c + c0..][..cb].iter_mut().zip(&acc) {
                *v = avg_out(a.wrapping_sub(zsum), q.mult, q.shift, hw as i64, q.z_y);
            }
            c0 += cb;
        }
    }
}

/// Quantisation of an int8 Add: `requant(a - z_a, m_a, b - z_b, m_b, shift, z_y, qmin, qmax)`.
#[derive(Clone, Copy, Debug)]
pub struct AddQ {
    pub z_a: i32,
    pub m_a: i32,
    pub z_b: i32,
    pub m_b: i32,
    pub shift: u32,
    pub z_y: i32,
    pub qmin: i32,
    pub qmax: i32,
}

/// One innermost row of the int8 Add: `y[j] = add(a[j*sa], b[j*sb])` for `j < y.len()`.
/// Contract: `a` / `b` reach index `(y.len()-1)*stride`.
#[inline(always)]
pub fn add_row_i8(a: &[i8], sa: usize, b: &[i8], sb: usize, q: &AddQ, y: &mut [i8]) {
    let f = |p: i8, r: i8| {
        requant(i32::from(p) - q.z_a, q.m_a, i32::from(r) - q.z_b, q.m_b, q.shift, q.z_y, q.qmin, q.qmax)
    };
    match (sa, sb) {
        (1, 1) => y.iter_mut().zip(a).zip(b).for_each(|((v, &p), &r)| *v = f(p, r)),
        (1, 0) => y.iter_mut().zip(a).for_each(|(v, &p)| *v = f(p, b[0])),
        (0, 1) => y.iter_mut().zip(b).for_each(|(v, &r)| *v = f(a[0], r)),
        _ => y.iter_mut().enumerate().for_each(|(j, v)| *v = f(a[j * sa], b[j * sb])),
    }
}

/// Quantize (see [`super::quantize_f32_i8`]); `y.len() == x.len()`.
#[inline(always)]
pub fn quantize_f32_i8(x: &[f32], scale: f32, z: i32, y: &mut [i8]) {
    for (v, &f) in y.iter_mut().zip(x) {
        let q = f / scale;
        let q = if q.is_nan() { 0.0 } else { q };
        let r = q.round_ties_even().clamp(-256.0, 256.0) as i32;
        *v = (r + z).clamp(-128, 127) as i8;
    }
}

/// Dequantize (see [`super::dequantize_i8_f32`]); `y.len() == x.len()`.
#[inline(always)]
pub fn dequantize_i8_f32(x: &[i8], scale: f32, z: i32, y: &mut [f32]) {
    for (v, &q) in y.iter_mut().zip(x) {
        *v = (i32::from(q) - z) as f32 * scale;
    }
}
