//! Winograd F(4x4,3x3) input and output transforms, AVX2 + FMA.
//!
//! Twins of `input_tile` / `output_tile` in [`crate::kernels::winograd`] (same contract, same
//! data layout): 8 channels per ymm register, the tile's values in registers and a 36-vector
//! stack buffer between the column and the row pass, masked loads/stores for a channel tail
//! of fewer than 8. The constant multiplies are fused into FMAs, so values differ from the
//! generic twin in the last bits (both stay well inside the tests' tolerance); the result of
//! an element does not depend on anything but its tile and channel, so thread splits never
//! change it.

use core::arch::x86_64::*;

use crate::kernels::gemm::{Act, ConvGeom, Epilogue, SyncPtr};
use crate::kernels::winograd::OutTile;

/// Lane mask of the first `n` (`1..=8`) lanes.
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Loads `nl` lanes (8: a plain load, fewer: masked, the rest zero).
///
/// # Safety
/// `p` readable for `nl` f32; AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(p: *const f32, nl: usize, m: __m256i) -> __m256 {
    // SAFETY: the masked load touches only the first nl lanes (caller contract).
    unsafe {
        if nl == 8 {
            _mm256_loadu_ps(p)
        } else {
            _mm256_maskload_ps(p, m)
        }
    }
}

/// Stores the first `nl` lanes of `v`.
///
/// # Safety
/// `p` writable for `nl` f32; AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(p: *mut f32, nl: usize, m: __m256i, v: __m256) {
    // SAFETY: the masked store touches only the first nl lanes (caller contract).
    unsafe {
        if nl == 8 {
            _mm256_storeu_ps(p, v)
        } else {
            _mm256_maskstore_ps(p, m, v)
        }
    }
}

/// `Bᵀ d` for one column/row of 6 values.
///
/// # Safety
/// AVX2+FMA available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn bt6(d: [__m256; 6]) -> [__m256; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    let (c4, c5, c2) = (_mm256_set1_ps(4.0), _mm256_set1_ps(5.0), _mm256_set1_ps(2.0));
    let d42 = _mm256_sub_ps(d4, d2);
    [
        _mm256_fmadd_ps(c4, d0, _mm256_fnmadd_ps(c5, d2, d4)),
        _mm256_fnmadd_ps(c4, _mm256_add_ps(d1, d2), _mm256_add_ps(d3, d4)),
        _mm256_fmadd_ps(c4, _mm256_sub_ps(d1, d2), _mm256_sub_ps(d4, d3)),
        _mm256_fmadd_ps(c2, _mm256_sub_ps(d3, d1), d42),
        _mm256_fmadd_ps(c2, _mm256_sub_ps(d1, d3), d42),
        _mm256_fmadd_ps(c4, d1, _mm256_fnmadd_ps(c5, d3, d5)),
    ]
}

/// `Aᵀ m` for 6 values.
///
/// # Safety
/// AVX2+FMA available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn at6(m: [__m256; 6]) -> [__m256; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (s12, d12) = (_mm256_add_ps(m1, m2), _mm256_sub_ps(m1, m2));
    let (s34, d34) = (_mm256_add_ps(m3, m4), _mm256_sub_ps(m3, m4));
    [
        _mm256_add_ps(_mm256_add_ps(m0, s12), s34),
        _mm256_fmadd_ps(_mm256_set1_ps(2.0), d34, d12),
        _mm256_fmadd_ps(_mm256_set1_ps(4.0), s34, s12),
        _mm256_fmadd_ps(_mm256_set1_ps(8.0), d34, _mm256_add_ps(d12, m5)),
    ]
}

/// Loads the 6 taps of column `s` of an interior tile (8 full lanes).
///
/// # Safety
/// AVX2 available; `xc + roff[r] + coff` readable for 8 f32 for every `r`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_col_full(xc: *const f32, roff: &[usize; 6], coff: usize) -> [__m256; 6] {
    // SAFETY: caller contract.
    unsafe {
        [
            _mm256_loadu_ps(xc.add(roff[0] + coff)),
            _mm256_loadu_ps(xc.add(roff[1] + coff)),
            _mm256_loadu_ps(xc.add(roff[2] + coff)),
            _mm256_loadu_ps(xc.add(roff[3] + coff)),
            _mm256_loadu_ps(xc.add(roff[4] + coff)),
            _mm256_loadu_ps(xc.add(roff[5] + coff)),
        ]
    }
}

/// Loads the 6 taps of column `s`, zero where `valid[r][s]` is false, `nl` lanes.
///
/// # Safety
/// AVX2 available; `xc + roff[r] + coff` readable for `nl` f32 wherever `valid[r][s]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_col_masked(
    xc: *const f32,
    roff: &[usize; 6],
    coff: usize,
    valid: &[[bool; 6]; 6],
    s: usize,
    nl: usize,
    m: __m256i,
) -> [__m256; 6] {
    let mut d = [_mm256_setzero_ps(); 6];
    for (r, dr) in d.iter_mut().enumerate() {
        if valid[r][s] {
            // SAFETY: caller contract.
            *dr = unsafe { load(xc.add(roff[r] + coff), nl, m) };
        }
    }
    d
}

/// Input transform of tile `(b, ty, tx)` into column `j` of `V[36][tb][C]` (`v`).
///
/// # Safety
/// AVX2+FMA available; `x` readable for `g.x_len()` f32, `v` writable for `36*tb*in_c` f32,
/// `j < tb`, and the tile inside the output (`4*ty < out_h`, `4*tx < out_w`, `b < n`).
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // `r` indexes the inner dimension of `t` (transposed read)
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn input_tile(
    g: &ConvGeom,
    x: *const f32,
    b: usize,
    ty: usize,
    tx: usize,
    v: *mut f32,
    j: usize,
    tb: usize,
) {
    let c = g.in_c;
    // Element offsets of the tile's taps (row part + column part), and which are inside.
    let mut roff = [0usize; 6];
    let mut coff = [0usize; 6];
    let mut valid = [[false; 6]; 6];
    let mut interior = true;
    for r in 0..6 {
        let ih = (ty * 4 + r).wrapping_sub(g.pad_top);
        roff[r] = (b * g.in_h + ih.min(g.in_h - 1)) * g.in_w * c;
        for s in 0..6 {
            let iw = (tx * 4 + s).wrapping_sub(g.pad_left);
            coff[s] = iw.min(g.in_w - 1) * c;
            valid[r][s] = ih < g.in_h && iw < g.in_w;
            interior &= valid[r][s];
        }
    }
    let pos_stride = tb * c;
    let mut c0 = 0;
    while c0 < c {
        let nl = (c - c0).min(8);
        let m = mask(nl);
        let xc = x.wrapping_add(c0);
        // Column pass: t[s] = Bᵀ d[.][s].
        let t: [[__m256; 6]; 6] = if interior && nl == 8 {
            // SAFETY: every tap of an interior tile is a pixel of the input.
            let col = |s: usize| unsafe { bt6(load_col_full(xc, &roff, coff[s])) };
            [col(0), col(1), col(2), col(3), col(4), col(5)]
        } else {
            // SAFETY: only taps inside the input are read, channels c0..c0+nl < in_c.
            let col = |s: usize| unsafe { bt6(load_col_masked(xc, &roff, coff[s], &valid, s, nl, m)) };
            [col(0), col(1), col(2), col(3), col(4), col(5)]
        };
        // Row pass: V[6r+s] = (Bᵀ t[.][r])[s] (t is column-major: t[s][r]).
        let vc = v.wrapping_add(j * c + c0);
        for r in 0..6 {
            let o = bt6([t[0][r], t[1][r], t[2][r], t[3][r], t[4][r], t[5][r]]);
            for (s, val) in o.into_iter().enumerate() {
                // SAFETY: position r*6+s < 36, column j < tb, channels c0..c0+nl < in_c.
                unsafe { store(vc.add((r * 6 + s) * pos_stride), nl, m, val) };
            }
        }
        c0 += nl;
    }
}

/// Loads column `s` of a tile's 6x6 M values (`p` = the tile's first position, positions
/// `pstride` apart).
///
/// # Safety
/// AVX2 available; `p + (6r + s) * pstride` readable for 8 f32 for `r < 6`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_m_col(p: *const f32, pstride: usize, s: usize) -> [__m256; 6] {
    // SAFETY: caller contract.
    unsafe {
        [
            _mm256_loadu_ps(p.add(s * pstride)),
            _mm256_loadu_ps(p.add((6 + s) * pstride)),
            _mm256_loadu_ps(p.add((12 + s) * pstride)),
            _mm256_loadu_ps(p.add((18 + s) * pstride)),
            _mm256_loadu_ps(p.add((24 + s) * pstride)),
            _mm256_loadu_ps(p.add((30 + s) * pstride)),
        ]
    }
}

/// Output transform of one tile from `M[36][tb][ocw]` (`mbuf`) with the fused epilogue,
/// written to the pixels of the tile inside the output, channels `o.c0..o.c1`.
///
/// # Safety
/// AVX2+FMA available; `mbuf` readable for `36*tb*ocw` f32 with `o.c1 - o.c0 <= ocw` rounded
/// up to 8; `y` writable for `g.y_len()` f32 and no other thread accesses this tile's pixels in
/// channels `c0..c1` concurrently; bias/residual as in [`Epilogue`] (`out_c` / `y_len`).
#[allow(clippy::needless_range_loop)] // `r` indexes the inner dimension of `u` (transposed read)
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn output_tile(g: &ConvGeom, o: &OutTile, mbuf: *const f32, ep: &Epilogue, y: SyncPtr<f32>) {
    let (lo, hi) = match ep.act {
        Act::None => (f32::NEG_INFINITY, f32::INFINITY),
        Act::Relu => (0.0, f32::INFINITY),
        Act::Clip(lo, hi) => (lo, hi),
    };
    let clamp = !matches!(ep.act, Act::None);
    let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let nr = 4.min(g.out_h - o.ty * 4);
    let ns = 4.min(g.out_w - o.tx * 4);
    let mut c = o.c0;
    while c < o.c1 {
        let nl = (o.c1 - c).min(8);
        let m = mask(nl);
        let mc = c - o.c0;
        // Column pass: u[s] = Aᵀ M[.][s].
        // SAFETY: position < 36, column j < tb, mc + 8 <= ocw (ocw is a multiple of 16).
        let col = |s: usize| unsafe { at6(load_m_col(mbuf.add(o.j * o.ocw + mc), o.tb * o.ocw, s)) };
        let u: [[__m256; 4]; 6] = [col(0), col(1), col(2), col(3), col(4), col(5)];
        let bias = match ep.bias {
            // SAFETY: channels c..c+nl < out_c <= bias.len() (contract).
            Some(bs) => unsafe { load(bs.as_ptr().add(c), nl, m) },
            None => _mm256_setzero_ps(),
        };
        for r in 0..nr {
            let oh = o.ty * 4 + r;
            let row = at6([u[0][r], u[1][r], u[2][r], u[3][r], u[4][r], u[5][r]]);
            for (s, val) in row.into_iter().enumerate().take(ns) {
                let ow = o.tx * 4 + s;
                let off = ((o.b * g.out_h + oh) * g.out_w + ow) * g.out_c + c;
                let mut out = _mm256_add_ps(val, bias);
                if let Some(res) = ep.residual {
                    // SAFETY: off + nl <= y_len <= residual.len() (contract).
                    out = _mm256_add_ps(out, unsafe { load(res.as_ptr().add(off), nl, m) });
                }
                if clamp {
                    out = _mm256_min_ps(_mm256_max_ps(out, lo), hi);
                }
                // SAFETY: pixel (oh, ow) inside the output, channels < out_c; this task is
                // the only writer (caller contract).
                unsafe { store(y.ptr().add(off), nl, m, out) };
            }
        }
        c += nl;
    }
}
