//! Winograd F(4x4,3x3) input and output transforms, AArch64 NEON.
//!
//! Twins of `input_tile` / `output_tile` in [`crate::kernels::winograd`] (same contract, same
//! data layout; the AVX2 twins are `x86_64::winograd_f43__avx2_fma`): 4 channels per q
//! register, the tile's 36 values of a 4-channel slice in registers (the compiler spills what
//! does not fit in the 32 vector registers) between the column and the row pass, and a
//! zero-filled stack buffer for a channel tail of fewer than 4 lanes. Interior tiles are read
//! without per-tap checks. The constant multiplies are fused into `fmla`/`fmls`, so values
//! differ from the generic twin in the last bits (both stay well inside the tests'
//! tolerance); the result of an element depends only on its tile and channel, so thread
//! splits never change it. The transforms hold no weights, so the f16-weight convolution
//! (f16 GEMM panels, `W = f16`) uses the same transforms.

use core::arch::aarch64::*;

use crate::kernels::gemm::{Act, ConvGeom, Epilogue, SyncPtr};
use crate::kernels::winograd::OutTile;

/// Lanes per vector.
const L: usize = 4;

/// Loads `nl` lanes (4: a plain load; fewer: through a zeroed buffer, the rest zero).
///
/// # Safety
/// `p` readable for `nl` (`1..=4`) f32.
#[inline(always)]
unsafe fn load(p: *const f32, nl: usize) -> float32x4_t {
    // SAFETY: a full vector reads 4 f32; a tail copies exactly nl f32 (caller contract).
    unsafe {
        if nl == L {
            vld1q_f32(p)
        } else {
            let mut buf = [0.0f32; L];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), nl);
            vld1q_f32(buf.as_ptr())
        }
    }
}

/// Stores the first `nl` lanes of `v`.
///
/// # Safety
/// `p` writable for `nl` (`1..=4`) f32.
#[inline(always)]
unsafe fn store(p: *mut f32, nl: usize, v: float32x4_t) {
    // SAFETY: a full vector writes 4 f32; a tail copies exactly nl f32 (caller contract).
    unsafe {
        if nl == L {
            vst1q_f32(p, v)
        } else {
            let mut buf = [0.0f32; L];
            vst1q_f32(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, nl);
        }
    }
}

/// `Bᵀ d` for one column/row of 6 values.
#[inline(always)]
fn bt6(d: [float32x4_t; 6]) -> [float32x4_t; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    // SAFETY: NEON is part of every AArch64 CPU; register-only arithmetic.
    unsafe {
        let d42 = vsubq_f32(d4, d2);
        [
            // 4 d0 - 5 d2 + d4
            vfmaq_n_f32(vfmsq_n_f32(d4, d2, 5.0), d0, 4.0),
            // -4 (d1 + d2) + d3 + d4
            vfmsq_n_f32(vaddq_f32(d3, d4), vaddq_f32(d1, d2), 4.0),
            // 4 (d1 - d2) + d4 - d3
            vfmaq_n_f32(vsubq_f32(d4, d3), vsubq_f32(d1, d2), 4.0),
            // 2 (d3 - d1) + d4 - d2
            vfmaq_n_f32(d42, vsubq_f32(d3, d1), 2.0),
            // 2 (d1 - d3) + d4 - d2
            vfmaq_n_f32(d42, vsubq_f32(d1, d3), 2.0),
            // 4 d1 - 5 d3 + d5
            vfmaq_n_f32(vfmsq_n_f32(d5, d3, 5.0), d1, 4.0),
        ]
    }
}

/// `Aᵀ m` for 6 values.
#[inline(always)]
fn at6(m: [float32x4_t; 6]) -> [float32x4_t; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    // SAFETY: NEON is part of every AArch64 CPU; register-only arithmetic.
    unsafe {
        let (s12, d12) = (vaddq_f32(m1, m2), vsubq_f32(m1, m2));
        let (s34, d34) = (vaddq_f32(m3, m4), vsubq_f32(m3, m4));
        [
            vaddq_f32(vaddq_f32(m0, s12), s34),
            vfmaq_n_f32(d12, d34, 2.0),
            vfmaq_n_f32(s12, s34, 4.0),
            vfmaq_n_f32(vaddq_f32(d12, m5), d34, 8.0),
        ]
    }
}

/// Loads the 6 taps of one column of an interior tile (4 full lanes).
///
/// # Safety
/// `xc + roff[r] + coff` readable for 4 f32 for every `r`.
#[inline(always)]
unsafe fn load_col_full(xc: *const f32, roff: &[usize; 6], coff: usize) -> [float32x4_t; 6] {
    // SAFETY: caller contract.
    unsafe {
        [
            vld1q_f32(xc.add(roff[0] + coff)),
            vld1q_f32(xc.add(roff[1] + coff)),
            vld1q_f32(xc.add(roff[2] + coff)),
            vld1q_f32(xc.add(roff[3] + coff)),
            vld1q_f32(xc.add(roff[4] + coff)),
            vld1q_f32(xc.add(roff[5] + coff)),
        ]
    }
}

/// Loads the 6 taps of column `s`, zero where `valid[r][s]` is false, `nl` lanes.
///
/// # Safety
/// `xc + roff[r] + coff` readable for `nl` f32 wherever `valid[r][s]`.
#[inline(always)]
unsafe fn load_col_masked(
    xc: *const f32,
    roff: &[usize; 6],
    coff: usize,
    valid: &[[bool; 6]; 6],
    s: usize,
    nl: usize,
) -> [float32x4_t; 6] {
    // SAFETY: NEON is part of every AArch64 CPU.
    let mut d = [unsafe { vdupq_n_f32(0.0) }; 6];
    for (r, dr) in d.iter_mut().enumerate() {
        if valid[r][s] {
            // SAFETY: caller contract.
            *dr = unsafe { load(xc.add(roff[r] + coff), nl) };
        }
    }
    d
}

/// Input transform of tile `(b, ty, tx)` into column `j` of `V[36][tb][C]` (`v`).
///
/// # Safety
/// `x` readable for `g.x_len()` f32, `v` writable for `36*tb*in_c` f32, `j < tb`, and the
/// tile inside the output (`4*ty < out_h`, `4*tx < out_w`, `b < n`), `in_h, in_w >= 1`.
/// NEON is part of every AArch64 CPU.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // `r` indexes the inner dimension of `t` (transposed read)
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
        let nl = (c - c0).min(L);
        let xc = x.wrapping_add(c0);
        // Column pass: t[s] = Bᵀ d[.][s].
        // (An array literal: `core::array::from_fn` or a zero-filled array cost a memcpy /
        // memset of the 576 bytes per block.)
        let t: [[float32x4_t; 6]; 6] = if interior && nl == L {
            // SAFETY: every tap of an interior tile is a pixel of the input, channels
            // c0..c0+4 <= in_c.
            let col = |s: usize| bt6(unsafe { load_col_full(xc, &roff, coff[s]) });
            [col(0), col(1), col(2), col(3), col(4), col(5)]
        } else {
            // SAFETY: only taps inside the input are read, channels c0..c0+nl <= in_c.
            let col = |s: usize| bt6(unsafe { load_col_masked(xc, &roff, coff[s], &valid, s, nl) });
            [col(0), col(1), col(2), col(3), col(4), col(5)]
        };
        // Row pass: V[6r+s] = (Bᵀ t[.][r])[s] (t is column-major: t[s][r]).
        let vc = v.wrapping_add(j * c + c0);
        for r in 0..6 {
            let o = bt6([t[0][r], t[1][r], t[2][r], t[3][r], t[4][r], t[5][r]]);
            for (s, val) in o.into_iter().enumerate() {
                // SAFETY: position r*6+s < 36, column j < tb, channels c0..c0+nl <= in_c.
                unsafe { store(vc.add((r * 6 + s) * pos_stride), nl, val) };
            }
        }
        c0 += nl;
    }
}

/// Loads column `s` of a tile's 6x6 M values (`p` = the tile's first position, positions
/// `pstride` apart).
///
/// # Safety
/// `p + (6r + s) * pstride` readable for 4 f32 for `r < 6`.
#[inline(always)]
unsafe fn load_m_col(p: *const f32, pstride: usize, s: usize) -> [float32x4_t; 6] {
    // SAFETY: caller contract.
    unsafe {
        [
            vld1q_f32(p.add(s * pstride)),
            vld1q_f32(p.add((6 + s) * pstride)),
            vld1q_f32(p.add((12 + s) * pstride)),
            vld1q_f32(p.add((18 + s) * pstride)),
            vld1q_f32(p.add((24 + s) * pstride)),
            vld1q_f32(p.add((30 + s) * pstride)),
        ]
    }
}

/// Output transform of one tile from `M[36][tb][ocw]` (`mbuf`) with the fused epilogue,
/// written to the pixels of the tile inside the output, channels `o.c0..o.c1`.
///
/// # Safety
/// `mbuf` readable for `36*tb*ocw` f32 with `j < tb`, `ocw` a multiple of 4 and
/// `o.c1 - o.c0 <= ocw`; `y` writable for `g.y_len()` f32 and no other thread accesses this
/// tile's pixels in channels `c0..c1` concurrently; the tile inside the output; bias/residual
/// as in [`Epilogue`] (at least `out_c` / `y_len` elements). NEON is part of every AArch64 CPU.
#[allow(clippy::needless_range_loop)] // `r` indexes the inner dimension of `u` (transposed read)
pub(crate) unsafe fn output_tile(g: &ConvGeom, o: &OutTile, mbuf: *const f32, ep: &Epilogue, y: SyncPtr<f32>) {
    let (lo, hi) = match ep.act {
        Act::None => (f32::NEG_INFINITY, f32::INFINITY),
        Act::Relu => (0.0, f32::INFINITY),
        Act::Clip(lo, hi) => (lo, hi),
    };
    let clamp = !matches!(ep.act, Act::None);
    // SAFETY: NEON is part of every AArch64 CPU.
    let (lo, hi, zero) = unsafe { (vdupq_n_f32(lo), vdupq_n_f32(hi), vdupq_n_f32(0.0)) };
    let nr = 4.min(g.out_h - o.ty * 4);
    let ns = 4.min(g.out_w - o.tx * 4);
    let mut c = o.c0;
    while c < o.c1 {
        let nl = (o.c1 - c).min(L);
        let mc = c - o.c0;
        // Column pass: u[s] = Aᵀ M[.][s].
        // SAFETY: position < 36, column j < tb, mc + 4 <= ocw (ocw is a multiple of 4 and
        // mc < c1 - c0 <= ocw).
        let col = |s: usize| at6(unsafe { load_m_col(mbuf.add(o.j * o.ocw + mc), o.tb * o.ocw, s) });
        let u: [[float32x4_t; 4]; 6] = [col(0), col(1), col(2), col(3), col(4), col(5)];
        let bias = match ep.bias {
            // SAFETY: channels c..c+nl < out_c <= bias.len() (contract).
            Some(bs) => unsafe { load(bs.as_ptr().add(c), nl) },
            None => zero,
        };
        for r in 0..nr {
            let oh = o.ty * 4 + r;
            let row = at6([u[0][r], u[1][r], u[2][r], u[3][r], u[4][r], u[5][r]]);
            for (s, val) in row.into_iter().enumerate().take(ns) {
                let ow = o.tx * 4 + s;
                let off = ((o.b * g.out_h + oh) * g.out_w + ow) * g.out_c + c;
                // SAFETY: NEON; off + nl <= y_len <= residual.len() (contract); pixel (oh, ow)
                // inside the output, channels < out_c, and this task is the only writer.
                unsafe {
                    let mut out = vaddq_f32(val, bias);
                    if let Some(res) = ep.residual {
                        out = vaddq_f32(out, load(res.as_ptr().add(off), nl));
                    }
                    if clamp {
                        // maxnm/minnm: a NaN sum clamps to `lo` like the generic `max(lo).min(hi)`.
                        out = vminnmq_f32(vmaxnmq_f32(out, lo), hi);
                    }
                    store(y.ptr().add(off), nl, out);
                }
            }
        }
        c += nl;
    }
}
