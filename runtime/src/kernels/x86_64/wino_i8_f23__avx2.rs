//! Exact int8 Winograd F(2x2,3x3), AVX2: the input transform and the panel kernel (16 i16
//! GEMMs + output transform + requantising epilogue). Twins of `input_tile_generic` and
//! `wino_f23_i8_6x16__generic` in [`crate::kernels::int8::winograd`] (layouts and bounds in
//! its docs); every value is an exact integer, so the bytes are the generic twins' bytes.
//!
//! GEMM, per position `xi` and pair of input channels `cp` (both operands already i16, so no
//! widening in the loop):
//!
//! ```text
//! b0 = [o0:c0 o0:c1 | o1:c0 o1:c1 | ... | o7:c0 o7:c1]   (U, i16, outputs 0..7)   b1: 8..15
//! av = [v_c0 v_c1] x 8                                  (V of tile i, vpbroadcastd)
//! madd(av, b0) = [o0 .. o7] pair sums (i32)             12 accumulators: 6 tiles x 16 o
//! ```
//!
//! 12 accumulators + 2 weight vectors + 1 broadcast = 15 ymm; 16 madds per 2 weight loads
//! and 6 broadcasts. After each position the 12 sums go to a 6 KiB stack buffer; the output
//! transform then reads a tile's 16 positions for 8 channels at a time, forms `Aᵀ M A` with
//! `vpaddd`/`vpsubd` (wrapping), shifts right by 2 (exact, see the module docs of the driver)
//! and runs the direct kernel's epilogue (`HiShift` / `requant8`, bit-identical to
//! `requant`) on each valid pixel.

use core::arch::x86_64::*;

use super::gemm_i8i32_6x8__avx2::{load8, load_qparams, requant8, store8, HiShift, QParams8};
use crate::kernels::gemm::ConvGeom;
use crate::kernels::int8::winograd::{WinoTileI8, POS, WN, WT};

/// AVX2 twin of [`crate::kernels::int8::winograd::wino_f23_i8_6x16__generic`].
///
/// # Safety
/// The CPU must support AVX2, and `t` must satisfy the pointer contract on [`WinoTileI8`].
#[allow(non_snake_case)]
#[target_feature(enable = "avx2")]
pub unsafe fn wino_f23_i8_6x16__avx2(t: &WinoTileI8) {
    debug_assert!(t.m >= 1 && t.m <= WT && t.n >= 1 && t.n <= WN);
    // SAFETY: forwarded contract; each arm matches the tile count.
    unsafe {
        match t.m {
            1 => panel::<1>(t),
            2 => panel::<2>(t),
            3 => panel::<3>(t),
            4 => panel::<4>(t),
            5 => panel::<5>(t),
            _ => panel::<6>(t),
        }
    }
}

/// # Safety
/// As [`wino_f23_i8_6x16__avx2`] with `m == M`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn panel<const M: usize>(t: &WinoTileI8) {
    // mbuf[xi][i] = the 16 channel sums of tile i at position xi.
    let mut mbuf = [[[_mm256_setzero_si256(); 2]; M]; POS];
    for (xi, mx) in mbuf.iter_mut().enumerate() {
        let mut acc0 = [_mm256_setzero_si256(); M];
        let mut acc1 = [_mm256_setzero_si256(); M];
        // SAFETY: a[i] + xi*lda holds 2*kp i16 and the panel holds 16*kp*32 i16 (contract).
        unsafe {
            let a: [*const i16; M] = core::array::from_fn(|i| t.a[i].add(xi * t.lda));
            let mut b = t.b.add(xi * t.kp * 2 * WN);
            for cp in 0..t.kp {
                let b0 = _mm256_loadu_si256(b as *const __m256i);
                let b1 = _mm256_loadu_si256(b.add(WN) as *const __m256i);
                for i in 0..M {
                    let av = _mm256_set1_epi32(core::ptr::read_unaligned(a[i].add(2 * cp) as *const i32));
                    acc0[i] = _mm256_add_epi32(acc0[i], _mm256_madd_epi16(av, b0));
                    acc1[i] = _mm256_add_epi32(acc1[i], _mm256_madd_epi16(av, b1));
                }
                b = b.add(2 * WN);
            }
        }
        for i in 0..M {
            mx[i] = [acc0[i], acc1[i]];
        }
    }
    let n = t.n;
    for h in 0..2 {
        if h * 8 >= n {
            break;
        }
        let nh = (n - h * 8).min(8);
        // SAFETY: qp holds 4*n i32 (contract); this half's rows start at 4*8*h.
        let q = unsafe { load_qparams(t.qp.add(32 * h), nh) };
        // SAFETY: AVX2 available (contract).
        unsafe { epilogue_half::<M>(t, &mbuf, h, nh, &q) };
    }
}

/// Output transform and epilogue of channels `8*h .. 8*h + nh` for every tile.
///
/// # Safety
/// AVX2 available; `t` satisfies the [`WinoTileI8`] contract with `m == M`; `q` holds the
/// qparams of those channels.
#[inline]
#[allow(clippy::needless_range_loop)] // `i` indexes the middle dimension of `mbuf` and the tile arrays
#[target_feature(enable = "avx2")]
unsafe fn epilogue_half<const M: usize>(
    t: &WinoTileI8,
    mbuf: &[[[__m256i; 2]; M]; POS],
    h: usize,
    nh: usize,
    q: &QParams8,
) {
    let z_y = _mm256_set1_epi64x(i64::from(t.z_y));
    let qmin = _mm256_set1_epi64x(i64::from(t.qmin));
    let qmax = _mm256_set1_epi64x(i64::from(t.qmax));
    let z_res = _mm256_set1_epi32(t.z_res);
    // Every shift >= 32 (the usual case): the high-dword requantisation (see `HiShift`).
    let fast = _mm256_movemask_epi8(_mm256_cmpgt_epi32(_mm256_set1_epi32(32), q.shift)) == 0;
    // Some shift < 32: the same path after a left shift the caller proved safe.
    let up = t.lshift_ok;
    // SAFETY: AVX2 available (contract).
    let hi = unsafe { HiShift::new(q, t.z_y, t.qmin, t.qmax) };
    let has_res = !t.res.is_null();
    for i in 0..M {
        let m: [__m256i; POS] = core::array::from_fn(|xi| mbuf[xi][i][h]);
        // Columns: t0[s] = m0s + m1s + m2s, t1[s] = m1s - m2s - m3s; then rows likewise.
        let col = |s: usize| {
            let (m0, m1, m2, m3) = (m[s], m[4 + s], m[8 + s], m[12 + s]);
            let m12 = _mm256_add_epi32(m1, m2);
            (_mm256_add_epi32(m0, m12), _mm256_sub_epi32(_mm256_sub_epi32(m1, m2), m3))
        };
        let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
        let row = |a: __m256i, b: __m256i, c: __m256i, d: __m256i| {
            (_mm256_add_epi32(_mm256_add_epi32(a, b), c), _mm256_sub_epi32(_mm256_sub_epi32(b, c), d))
        };
        let (y00, y01) = row(c0.0, c1.0, c2.0, c3.0);
        let (y10, y11) = row(c0.1, c1.1, c2.1, c3.1);
        let ys = [y00, y01, y10, y11];
        for dy in 0..usize::from(t.rows[i]) {
            for dx in 0..usize::from(t.cols[i]) {
                let off = t.off[i] + dy * t.ldy + dx * t.ldp + 8 * h;
                // Exact: the wrapped value is 4*acc.
                let s = _mm256_add_epi32(_mm256_srai_epi32::<2>(ys[dy * 2 + dx]), q.bias);
                // SAFETY: pixel (dy, dx) of tile i is writable (and the residual readable) for
                // channels 8h..8h+nh (contract: n channels from the tile's offset).
                unsafe {
                    let v = if has_res {
                        let rq = _mm256_sub_epi32(_mm256_cvtepi8_epi32(load8(t.res.add(off), nh)), z_res);
                        if fast {
                            hi.apply::<true, false>(s, rq)
                        } else if up {
                            hi.apply::<true, true>(s, rq)
                        } else {
                            requant8(s, q.m_acc, rq, q.m_res, q.shift, z_y, qmin, qmax)
                        }
                    } else {
                        let rq = _mm256_setzero_si256();
                        if fast {
                            hi.apply::<false, false>(s, rq)
                        } else if up {
                            hi.apply::<false, true>(s, rq)
                        } else {
                            requant8(s, q.m_acc, rq, q.m_res, q.shift, z_y, qmin, qmax)
                        }
                    };
                    store8(t.y.add(off), nh, v);
                }
            }
        }
    }
}

/// `Bᵀ` on 4 vectors of 16 i16 lanes: `[d0 - d2, d1 + d2, d2 - d1, d1 - d3]` (no overflow:
/// inputs within ±256, outputs within ±512).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bt4(d0: __m256i, d1: __m256i, d2: __m256i, d3: __m256i) -> [__m256i; 4] {
    [_mm256_sub_epi16(d0, d2), _mm256_add_epi16(d1, d2), _mm256_sub_epi16(d2, d1), _mm256_sub_epi16(d1, d3)]
}

/// Input transform of the 4x4 tile `(b, ty, tx)` of `x` (taps outside the input read `z_x`)
/// into row `j` of `V[16][tb][cs]` (`v`), 16 channels per ymm; channels `in_c..cs` are 0.
///
/// # Safety
/// AVX2 available; `x` readable for `g.x_len()` bytes; `v` writable for `16*tb*cs` i16;
/// `j < tb`, `b < g.n`, `cs` = `g.in_c` rounded up to a multiple of 16.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // `i` indexes the inner dimension of `cols` (transposed read)
#[target_feature(enable = "avx2")]
pub unsafe fn input_tile(
    g: &ConvGeom,
    x: *const i8,
    z_x: i32,
    b: usize,
    ty: usize,
    tx: usize,
    v: *mut i16,
    j: usize,
    tb: usize,
    cs: usize,
) {
    let c = g.in_c;
    debug_assert!(cs == c.div_ceil(16) * 16 && j < tb && b < g.n);
    // Tap q = r*4 + s: the pixel's first channel, or null for a padding tap.
    let src: [*const i8; POS] = core::array::from_fn(|q| {
        let ih = (2 * ty + q / 4).wrapping_sub(g.pad_top);
        let iw = (2 * tx + q % 4).wrapping_sub(g.pad_left);
        if ih < g.in_h && iw < g.in_w {
            // SAFETY: the pixel lies inside x (b < n, ih < in_h, iw < in_w).
            unsafe { x.add(((b * g.in_h + ih) * g.in_w + iw) * c) }
        } else {
            core::ptr::null()
        }
    });
    let zv = _mm256_set1_epi16(z_x as i16);
    let mut c0 = 0;
    while c0 < c {
        let nl = (c - c0).min(16);
        let lanes = _mm256_cmpgt_epi16(
            _mm256_set1_epi16(nl as i16),
            _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        );
        let d: [__m256i; POS] = core::array::from_fn(|q| {
            if src[q].is_null() {
                return zv;
            }
            // SAFETY: the pixel's channels c0..c0+nl are inside x; a partial block goes
            // through a stack buffer.
            unsafe {
                if nl == 16 {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(src[q].add(c0) as *const __m128i))
                } else {
                    let mut buf = [0i8; 16];
                    core::ptr::copy_nonoverlapping(src[q].add(c0), buf.as_mut_ptr(), nl);
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(buf.as_ptr() as *const __m128i))
                }
            }
        });
        // SAFETY: AVX2 available (contract).
        let cols: [[__m256i; 4]; 4] = core::array::from_fn(|s| unsafe { bt4(d[s], d[4 + s], d[8 + s], d[12 + s]) });
        for i in 0..4 {
            // SAFETY: AVX2 available (contract).
            let row = unsafe { bt4(cols[0][i], cols[1][i], cols[2][i], cols[3][i]) };
            for (jj, &val) in row.iter().enumerate() {
                let val = if nl == 16 { val } else { _mm256_and_si256(val, lanes) };
                // SAFETY: ((i*4 + jj)*tb + j)*cs + c0 + 16 <= 16*tb*cs (c0 + 16 <= cs, j < tb).
                unsafe { _mm256_storeu_si256(v.add(((i * 4 + jj) * tb + j) * cs + c0) as *mut __m256i, val) };
            }
        }
        c0 += 16;
    }
}
