//! Exact int8 Winograd F(2x2,3x3) for 3x3, stride 1, dilation 1, groups 1 convolutions (any
//! padding): the same output bytes as [`super::conv2d_i8`], with 2.25x fewer multiplies.
//!
//! Each 2x2 output tile comes from a 4x4 tile `d` of the raw int8 input (top-left at
//! `(2*ty - pad_top, 2*tx - pad_left)`, taps outside the input read `z_x`, exactly as the
//! direct convolution's padding does, whose effect the bias already folds in):
//!
//! ```text
//! U = G' g G'ᵀ, G' = 2G = [[2,0,0],[1,1,1],[1,-1,1],[0,0,2]]     (load time, per (c, o))
//! V = Bᵀ d B,   Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]  (per tile and c)
//! M[xi] = Σ_c V[xi][c] · U[xi][c][o]       16 i16 x i16 -> i32 GEMMs (tiles x C times C x O)
//! Y' = Aᵀ M A,  Aᵀ = [[1,1,1,0],[0,1,-1,-1]]                       (per tile and o)
//! acc = Y' >> 2,  y = requant(acc + bias, residual)                 (the direct conv's epilogue)
//! ```
//!
//! Exactness (the bounds; all integer, nothing rounds):
//! - `|U| <= 3*3*128 = 1152` (rows of `|G'|` sum to at most 3; 1143 for the [-127, 127]
//!   weights the loader admits) and `|V| <= 4*128 = 512` (two ±1 per row of `Bᵀ`, applied
//!   twice, `|d| <= 128`): both are i16, and a `vpmaddwd` pair sum `<= 2*512*1152` never
//!   saturates.
//! - `Y' = 4 * acc` where `acc` is the direct convolution's exact i32 sum (the F(2,3) identity
//!   `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` with `G' = 2G` on both sides). Every sum is computed in
//!   wrapping i32, i.e. modulo 2^32, which is a ring homomorphism: the result is `4*acc mod
//!   2^32` whatever the intermediate `M` values did. `|acc| <= 9*C*128*128`, so with
//!   `C <= MAX_IN_C = 3640`, `|4*acc| <= 2,146,959,360 < 2^31` and the wrapped i32 *is*
//!   `4*acc`; the arithmetic `>> 2` then gives `acc` exactly. Layers with more input channels
//!   are not [`supported`] (they run the direct convolution).
//!
//! Data layouts:
//! - transformed weights `U` (i16, [`transform_weights_f23`]): `[P = ceil(O/16)][16 xi][kp =
//!   ceil(C/2)][16 o][2 c]`, zero padded (o >= O, c >= C): element `(xi, c, o)` at
//!   `((o/16*16 + xi)*kp + c/2)*32 + (o%16)*2 + c%2`. One panel's 16 positions are
//!   contiguous, so a run of panels is one contiguous, L2-sized stream.
//! - transformed input `V` (per-thread scratch, i16): `[16 xi][tb][cs]`, `cs = ceil(C/16)*16`,
//!   channels `C..cs` zero.
//!
//! Blocking (per task): a block of `tb` tiles (a multiple of 6, `16*tb*cs*2 <= V_BYTES`) is
//! transformed into scratch once; then for each chunk of panels (`<= U_BYTES` of `U`,
//! L2-resident) and each group of 6 tiles of the block, one kernel call per panel runs the 16
//! GEMMs of 6 tiles x 16 output channels over all C (i32 accumulators in registers, 16 x
//! 6 x 16 sums kept on the stack) and applies the output transform and the requantising
//! epilogue straight into `y`, writing only the pixels inside the output (partial tiles at
//! odd edges). Tasks (tile blocks, and panel ranges when there are few blocks) are split
//! statically; every output byte is computed by one kernel call from the same sums whatever
//! the split, so the bytes never depend on the thread count.

use super::pack::{packed_n16k4_len, KG, PANEL};
use super::{is_i8, requant, requant_fits_lshift, use_avx2, valid_mult, QEpilogue, SyncPtr};
use crate::kernels::gemm::{balanced_ranges, range_bounds, run_tasks, ConvGeom};
use crate::kernels::Isa;
use crate::team::Parallel;

/// Tiles per kernel call.
pub const WT: usize = 6;
/// Output channels per kernel call (one panel).
pub const WN: usize = PANEL;
/// Positions of the 4x4 transformed tile.
pub const POS: usize = 16;
/// Largest input channel count with `|4 * acc| < 2^31` for any int8 data and weights (module
/// docs): `4 * 9 * 3640 * 128 * 128 = 2,146,959,360`.
pub const MAX_IN_C: usize = 3640;
/// Target bytes of one transformed input block (L2-resident next to the weight chunk).
const V_BYTES: usize = 96 * 1024;
/// Target bytes of transformed weights swept by one tile block before moving on.
const U_BYTES: usize = 256 * 1024;
/// Largest tile block.
const TB_MAX: usize = 16 * WT;

/// True if `g` can run as int8 F(2x2,3x3): 3x3, stride 1, dilation 1, groups 1, at most
/// [`MAX_IN_C`] input channels, and a non-degenerate geometry.
pub fn supported(g: &ConvGeom) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride_h == 1
        && g.stride_w == 1
        && g.dil_h == 1
        && g.dil_w == 1
        && g.groups == 1
        && g.in_c <= MAX_IN_C
        && g.checked_sizes().is_some()
}

/// True if the Winograd kernels run for `isa` on this CPU (AVX2 only: on other tiers the
/// direct kernels are as fast or faster per byte of weights, and no heap is spent).
pub fn available(isa: Isa) -> bool {
    use_avx2(isa)
}

/// i16 elements of the transformed weights of an `out_c x in_c` 3x3 convolution, `None` on
/// overflow or a zero channel count.
pub fn transformed_len(out_c: usize, in_c: usize) -> Option<usize> {
    if out_c == 0 || in_c == 0 {
        return None;
    }
    out_c.div_ceil(WN).checked_mul(POS)?.checked_mul(in_c.div_ceil(2))?.checked_mul(2 * WN)
}

/// `U = G' g G'ᵀ` of every (input, output) channel pair, from the PackedN16K4 weights of a 3x3
/// groups-1 convolution (`w`: logical `[out_c, 3, 3, in_c]`), in the layout of the module docs.
/// `None` if `w` is shorter than the packed size, a size overflows, or memory runs out.
pub fn transform_weights_f23(w: &[i8], out_c: usize, in_c: usize) -> Option<Vec<i16>> {
    let len = transformed_len(out_c, in_c)?;
    if w.len() < packed_n16k4_len(out_c, 3, 3, in_c, 1)? {
        return None;
    }
    let mut u = Vec::new();
    u.try_reserve_exact(len).ok()?;
    u.resize(len, 0i16);
    let k4 = (9 * in_c).div_ceil(KG);
    let kp = in_c.div_ceil(2);
    for o in 0..out_c {
        let (p, ol) = (o / PANEL, o % PANEL);
        for c in 0..in_c {
            // g[r][s] = weight (o, k = (r*3 + s)*in_c + c) in PackedN16K4.
            let g: [[i32; 3]; 3] = core::array::from_fn(|r| {
                core::array::from_fn(|s| {
                    let k = (r * 3 + s) * in_c + c;
                    i32::from(w[(p * k4 + k / KG) * PANEL * KG + ol * KG + k % KG])
                })
            });
            // t = G' g (4x3), then U = t G'ᵀ (4x4): the same row combination on columns.
            let gp = |a: [i32; 3]| [2 * a[0], a[0] + a[1] + a[2], a[0] - a[1] + a[2], 2 * a[2]];
            let t: [[i32; 3]; 4] = {
                let cols =
                    [gp([g[0][0], g[1][0], g[2][0]]), gp([g[0][1], g[1][1], g[2][1]]), gp([g[0][2], g[1][2], g[2][2]])];
                core::array::from_fn(|i| [cols[0][i], cols[1][i], cols[2][i]])
            };
            for (i, row) in t.iter().enumerate() {
                for (j, val) in gp(*row).into_iter().enumerate() {
                    let xi = i * 4 + j;
                    // |val| <= 9 * 128: exact in i16.
                    u[((p * POS + xi) * kp + c / 2) * 2 * WN + ol * 2 + c % 2] = val as i16;
                }
            }
        }
    }
    Some(u)
}

/// One kernel call: 6 (or fewer) tiles x 16 (or fewer) output channels, the 16 GEMMs over all
/// input channels, the output transform and the requantising epilogue.
///
/// Pointer contract:
/// - `a[i]` for `i < m`: for every `xi < 16`, `2*kp` readable i16 at `a[i] + xi*lda` (row of
///   tile `i` of `V[xi]`). Entries `>= m` are never read.
/// - `b`: `16*kp*32` readable i16 (one panel of `U`: position `xi` at `b + xi*kp*32`, pair
///   `cp` at `+ cp*32`, `[16 o][2 c]`). Lanes of channels `>= n` are read but never stored.
/// - `qp`: `4*n` readable i32, `m_acc, m_res >= 0`, `shift` in [1, 62].
/// - `y`: for tile `i < m`, the bytes `y + off[i] + dy*ldy + dx*ldp + [0, n)` are writable for
///   `dy < rows[i]`, `dx < cols[i]` (`rows`, `cols` in 1..=2); `res` (null = no residual)
///   readable at the same offsets.
/// - `z_res`, `z_y`, `qmin <= qmax` in [-128, 127].
/// - `lshift_ok`: as on [`super::MicroTileI8`], for the reduction length `9*C` of the direct
///   convolution (whose accumulator the output transform reproduces).
#[derive(Clone, Copy, Debug)]
pub struct WinoTileI8 {
    pub m: usize,
    pub kp: usize,
    pub a: [*const i16; WT],
    pub lda: usize,
    pub b: *const i16,
    pub n: usize,
    pub qp: *const i32,
    pub y: *mut i8,
    pub res: *const i8,
    pub off: [usize; WT],
    pub rows: [u8; WT],
    pub cols: [u8; WT],
    pub ldy: usize,
    pub ldp: usize,
    pub z_res: i32,
    pub z_y: i32,
    pub qmin: i32,
    pub qmax: i32,
    pub lshift_ok: bool,
}

/// A panel kernel: [`wino_f23_i8_6x16__generic`] or a SIMD twin.
pub type WinoKernelI8 = unsafe fn(&WinoTileI8);

/// `Aᵀ m A` of one output channel's 16 sums (`m[r*4 + s]`), in wrapping i32:
/// `[y00, y01, y10, y11]`.
#[inline(always)]
pub fn output_transform(m: &[i32; POS]) -> [i32; 4] {
    let col = |s: usize| {
        let (m0, m1, m2, m3) = (m[s], m[4 + s], m[8 + s], m[12 + s]);
        (m0.wrapping_add(m1).wrapping_add(m2), m1.wrapping_sub(m2).wrapping_sub(m3))
    };
    let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
    let row = |t0: i32, t1: i32, t2: i32, t3: i32| {
        (t0.wrapping_add(t1).wrapping_add(t2), t1.wrapping_sub(t2).wrapping_sub(t3))
    };
    let (y00, y01) = row(c0.0, c1.0, c2.0, c3.0);
    let (y10, y11) = row(c0.1, c1.1, c2.1, c3.1);
    [y00, y01, y10, y11]
}

/// Scalar twin of `x86_64::wino_i8_f23__avx2::wino_f23_i8_6x16__avx2`: wrapping i32 sums,
/// [`output_transform`], `>> 2`, then [`requant`] as the direct convolution's epilogue.
///
/// # Safety
/// `t` must satisfy the pointer contract on [`WinoTileI8`].
#[allow(non_snake_case)]
#[allow(clippy::needless_range_loop)] // `i` indexes the middle dimension of `acc` (transposed read)
pub unsafe fn wino_f23_i8_6x16__generic(t: &WinoTileI8) {
    debug_assert!(t.m >= 1 && t.m <= WT && t.n >= 1 && t.n <= WN);
    let mut acc = [[[0i32; WN]; WT]; POS];
    for (xi, accx) in acc.iter_mut().enumerate() {
        // SAFETY: the panel holds 16*kp*32 i16 (contract).
        let b = unsafe { core::slice::from_raw_parts(t.b.add(xi * t.kp * 2 * WN), t.kp * 2 * WN) };
        for (i, row) in accx.iter_mut().enumerate().take(t.m) {
            // SAFETY: a[i] + xi*lda holds 2*kp i16 (contract).
            let a = unsafe { core::slice::from_raw_parts(t.a[i].add(xi * t.lda), 2 * t.kp) };
            for (ap, bp) in a.chunks_exact(2).zip(b.chunks_exact(2 * WN)) {
                let (a0, a1) = (i32::from(ap[0]), i32::from(ap[1]));
                for (o, r) in row.iter_mut().enumerate() {
                    // |a| <= 512, |b| <= 1152: the pair sum fits i32 (wrapping anyway).
                    let pair =
                        a0.wrapping_mul(i32::from(bp[2 * o])).wrapping_add(a1.wrapping_mul(i32::from(bp[2 * o + 1])));
                    *r = r.wrapping_add(pair);
                }
            }
        }
    }
    // SAFETY: qp holds 4*n i32 (contract).
    let qp = unsafe { core::slice::from_raw_parts(t.qp, 4 * t.n) };
    for i in 0..t.m {
        for (o, q) in qp.chunks_exact(4).enumerate() {
            let m: [i32; POS] = core::array::from_fn(|xi| acc[xi][i][o]);
            let ys = output_transform(&m);
            for dy in 0..usize::from(t.rows[i]) {
                for dx in 0..usize::from(t.cols[i]) {
                    let off = t.off[i] + dy * t.ldy + dx * t.ldp + o;
                    let rq = if t.res.is_null() {
                        0
                    } else {
                        // SAFETY: the residual is readable at the output offsets (contract).
                        i32::from(unsafe { *t.res.add(off) }) - t.z_res
                    };
                    // Exact: the wrapped value is 4*acc (module docs).
                    let s = (ys[dy * 2 + dx] >> 2).wrapping_add(q[0]);
                    let v = requant(s, q[1], rq, q[2], q[3] as u32, t.z_y, t.qmin, t.qmax);
                    // SAFETY: the output pixel (dy, dx) of tile i is writable (contract).
                    unsafe { *t.y.add(off) = v };
                }
            }
        }
    }
}

/// `Bᵀ` applied to 4 values: `[d0 - d2, d1 + d2, d2 - d1, d1 - d3]`.
#[inline(always)]
pub fn bt4(d: [i16; 4]) -> [i16; 4] {
    [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
}

/// Input transform (scalar twin of `x86_64::wino_i8_f23__avx2::input_tile`): the 4x4 tile
/// `(b, ty, tx)` of `x` (taps outside the input read `z_x`) transformed into row `j` of
/// `V[16][tb][cs]` (`v`), channels `0..C`; channels `C..cs` are set to 0.
///
/// Contract (checked by the driver): `x.len() >= g.x_len()`, `v.len() >= 16*tb*cs`, `j < tb`,
/// `cs >= g.in_c`, `b < g.n`, `z_x` in [-128, 127]. Panics (bounds checks) otherwise.
#[allow(clippy::too_many_arguments)]
pub fn input_tile_generic(
    g: &ConvGeom,
    x: &[i8],
    z_x: i32,
    b: usize,
    ty: usize,
    tx: usize,
    v: &mut [i16],
    j: usize,
    tb: usize,
    cs: usize,
) {
    let c = g.in_c;
    let src: [Option<usize>; POS] = core::array::from_fn(|q| {
        let ih = (2 * ty + q / 4).wrapping_sub(g.pad_top);
        let iw = (2 * tx + q % 4).wrapping_sub(g.pad_left);
        (ih < g.in_h && iw < g.in_w).then(|| ((b * g.in_h + ih) * g.in_w + iw) * c)
    });
    for ch in 0..cs {
        let d: [i16; POS] = if ch < c {
            core::array::from_fn(|q| src[q].map_or(z_x as i16, |o| i16::from(x[o + ch])))
        } else {
            [0; POS]
        };
        // Columns (over r), then rows (over s). |t| <= 256, |V| <= 512.
        let cols: [[i16; 4]; 4] = core::array::from_fn(|s| bt4([d[s], d[4 + s], d[8 + s], d[12 + s]]));
        for i in 0..4 {
            let row = bt4([cols[0][i], cols[1][i], cols[2][i], cols[3][i]]);
            for (jj, &val) in row.iter().enumerate() {
                v[((i * 4 + jj) * tb + j) * cs + ch] = val;
            }
        }
    }
}

/// `(tile block, channel stride cs, f32 scratch per thread)` for `g`.
fn blocking(g: &ConvGeom) -> (usize, usize, usize) {
    let cs = g.in_c.div_ceil(16) * 16;
    let tb = (V_BYTES / (POS * cs * 2) / WT * WT).clamp(WT, TB_MAX);
    // i16 elements POS*tb*cs = f32 elements POS*tb*cs/2 (a multiple of 16: 64-byte regions).
    (tb, cs, POS * tb * cs / 2)
}

/// f32 elements of scratch [`conv2d_i8_wino`] needs for `threads` workers (0 if `g` is not
/// [`supported`]).
pub fn conv2d_i8_wino_scratch_len(g: &ConvGeom, threads: usize) -> usize {
    if !supported(g) {
        return 0;
    }
    blocking(g).2.saturating_mul(threads.max(1))
}

/// True if every qparams row and the epilogue constants are in the spec's ranges.
fn epilogue_valid(ep: &QEpilogue, out_c: usize) -> bool {
    ep.qparams.len() >= 4 * out_c
        && ep.qparams[..4 * out_c].chunks_exact(4).all(|q| valid_mult(q[1], q[3] as u32) && q[2] >= 0)
        && [ep.z_res, ep.z_y, ep.qmin, ep.qmax].into_iter().all(is_i8)
        && ep.qmin <= ep.qmax
}

/// The panel kernel and input transform for `isa`.
#[cfg(target_arch = "x86_64")]
fn kernels(isa: Isa) -> (WinoKernelI8, bool) {
    if use_avx2(isa) {
        return (avx2_panel, true);
    }
    (wino_f23_i8_6x16__generic, false)
}

#[cfg(not(target_arch = "x86_64"))]
fn kernels(isa: Isa) -> (WinoKernelI8, bool) {
    let _ = isa;
    (wino_f23_i8_6x16__generic, false)
}

/// # Safety
/// AVX2 available (only handed out by [`kernels`] after checking) and the [`WinoTileI8`]
/// contract.
#[cfg(target_arch = "x86_64")]
unsafe fn avx2_panel(t: &WinoTileI8) {
    // SAFETY: see the function's contract.
    unsafe { crate::kernels::x86_64::wino_i8_f23__avx2::wino_f23_i8_6x16__avx2(t) }
}

/// `y (NHWC i8) = requant(conv3x3(x - padding z_x, w) + bias, residual)`, computed as exact
/// Winograd F(2x2,3x3) from the transformed weights `u` ([`transform_weights_f23`]): the same
/// bytes as [`super::conv2d_i8`] on the PackedN16K4 weights `u` was made from.
///
/// Contract (validated at model load; checked here once, and on violation the function
/// `debug_assert!`s and returns without touching `y`): `g` is [`supported`];
/// `x.len() >= n*in_h*in_w*in_c`, `y.len() >= n*out_h*out_w*out_c`,
/// `u.len() >= transformed_len(out_c, in_c)`, `ep` as for [`super::conv2d_i8`], `z_x` in
/// [-128, 127], `scratch.len() >= conv2d_i8_wino_scratch_len(g, 1)` (pass the pool's thread
/// count to use every thread).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8_wino<P: Parallel + ?Sized>(
    isa: Isa,
    g: &ConvGeom,
    x: &[i8],
    z_x: i32,
    u: &[i16],
    ep: &QEpilogue,
    y: &mut [i8],
    scratch: &mut [f32],
    pool: Option<&P>,
) {
    let sizes = if supported(g) { g.checked_sizes() } else { None };
    let Some((x_len, y_len)) = sizes else {
        debug_assert!(false, "conv2d_i8_wino: unsupported geometry {g:?}");
        return;
    };
    let (tb, cs, per) = blocking(g);
    let fits = x.len() >= x_len
        && y.len() >= y_len
        && transformed_len(g.out_c, g.in_c).is_some_and(|l| u.len() >= l)
        && ep.residual.is_none_or(|r| r.len() >= y_len)
        && scratch.len() >= per
        && is_i8(z_x)
        && epilogue_valid(ep, g.out_c);
    if !fits {
        debug_assert!(false, "conv2d_i8_wino: slice lengths or quantisation parameters do not match {g:?}");
        return;
    }
    let (kernel, simd) = kernels(isa);
    let lshift_ok = requant_fits_lshift(&ep.qparams[..4 * g.out_c], 9 * g.in_c);
    let (th, tw) = (g.out_h.div_ceil(2), g.out_w.div_ceil(2));
    let tiles = g.n * th * tw;
    let kp = g.in_c.div_ceil(2);
    let panel_len = POS * kp * 2 * WN;
    let panels = g.out_c.div_ceil(WN);
    let pchunk = (U_BYTES / (2 * panel_len)).clamp(1, panels);
    let threads = pool.map_or(1, |p| p.threads()).max(1);
    // Tile blocks are whole groups of 6 tiles, balanced over the threads; with few blocks the
    // panels are split too, so every thread gets work.
    let groups6 = tiles.div_ceil(WT);
    let blocks = balanced_ranges(groups6, tb / WT, threads);
    let splits = if blocks >= 2 * threads { 1 } else { (2 * threads).div_ceil(blocks).min(panels) };
    let per_split = panels.div_ceil(splits);
    let splits = panels.div_ceil(per_split);
    let yp = SyncPtr(y.as_mut_ptr());
    let (ldp, ldy) = (g.out_c, g.out_w * g.out_c);
    let task = |t: usize, s: &mut [f32]| {
        let (blk, split) = (t / splits, t % splits);
        let (grp0, grp1) = range_bounds(blk, blocks, groups6);
        let t0 = grp0 * WT;
        let nt = (grp1 * WT).min(tiles) - t0;
        if nt == 0 || nt > tb {
            // Unreachable (`blocks` ranges hold at most `tb` tiles); the V-block indexing
            // below relies on it, so it is checked, not assumed.
            debug_assert!(false, "int8 winograd tile range of {nt} tiles exceeds the block of {tb}");
            return;
        }
        let v: &mut [i16] = bytemuck::cast_slice_mut(&mut s[..per]);
        let coords = |tile: usize| {
            let (b, rem) = (tile / (th * tw), tile % (th * tw));
            (b, rem / tw, rem % tw)
        };
        for j in 0..nt {
            let (b, ty, tx) = coords(t0 + j);
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX2 is available (`simd` comes from `use_avx2`); x holds x_len
                // bytes, v holds 16*tb*cs i16, j < tb, b < n, cs = in_c rounded up to 16
                // (all checked above or by construction).
                unsafe {
                    crate::kernels::x86_64::wino_i8_f23__avx2::input_tile(
                        g,
                        x.as_ptr(),
                        z_x,
                        b,
                        ty,
                        tx,
                        v.as_mut_ptr(),
                        j,
                        tb,
                        cs,
                    )
                };
                continue;
            }
            let _ = simd;
            input_tile_generic(g, x, z_x, b, ty, tx, v, j, tb, cs);
        }
        let p_end = ((split + 1) * per_split).min(panels);
        let mut pc = split * per_split;
        while pc < p_end {
            let pc_end = (pc + pchunk).min(p_end);
            let mut r = 0;
            while r < nt {
                let m = WT.min(nt - r);
                let mut off = [0usize; WT];
                let mut rows = [1u8; WT];
                let mut cols = [1u8; WT];
                for i in 0..m {
                    let (b, ty, tx) = coords(t0 + r + i);
                    off[i] = ((b * g.out_h + 2 * ty) * g.out_w + 2 * tx) * g.out_c;
                    rows[i] = if 2 * ty + 1 < g.out_h { 2 } else { 1 };
                    cols[i] = if 2 * tx + 1 < g.out_w { 2 } else { 1 };
                }
                let a: [*const i16; WT] = core::array::from_fn(|i| v[(r + if i < m { i } else { 0 }) * cs..].as_ptr());
                for p in pc..pc_end {
                    let col = p * WN;
                    let n = WN.min(g.out_c - col);
                    let tile = WinoTileI8 {
                        m,
                        kp,
                        a,
                        lda: tb * cs,
                        b: u[p * panel_len..][..panel_len].as_ptr(),
                        n,
                        qp: ep.qparams[4 * col..][..4 * n].as_ptr(),
                        // SAFETY: col < out_c, inside y (y.len() >= y_len checked above).
                        y: unsafe { yp.ptr().add(col) },
                        res: ep.residual.map_or(core::ptr::null(), |res| res[col..].as_ptr()),
                        off,
                        rows,
                        cols,
                        ldy,
                        ldp,
                        z_res: ep.z_res,
                        z_y: ep.z_y,
                        qmin: ep.qmin,
                        qmax: ep.qmax,
                        lshift_ok,
                    };
                    // SAFETY: the tile satisfies the WinoTileI8 contract: V rows r..r+m of
                    // every position hold cs >= 2*kp i16 (a[i] + 15*lda + 2*kp <= 16*tb*cs);
                    // the panel holds panel_len i16; qp holds 4*n i32 (sliced above); the
                    // output pixels of tile i are inside y / the residual (rows/cols count
                    // only pixels < out_h/out_w) at channels col..col+n <= out_c; this task
                    // is the only writer of these bytes.
                    unsafe { kernel(&tile) };
                }
                r += m;
            }
            pc = pc_end;
        }
    };
    run_tasks(blocks * splits, scratch, per, pool, task);
}
