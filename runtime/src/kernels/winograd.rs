//! Winograd F(4x4,3x3) fp32 convolution for 3x3, stride 1, dilation 1, groups 1.
//!
//! Each 4x4 output tile is computed from a 6x6 input tile `d` (stride 4, top-left at
//! `(4*ty - pad_top, 4*tx - pad_left)`, taps outside the input are zero):
//!
//! ```text
//! V = Bᵀ d B    (input transform, per tile and input channel)     36 positions
//! M[pos] = V[pos] · U[pos]   (36 GEMMs, tiles x C times C x O; U = G g Gᵀ from the converter)
//! Y = Aᵀ M A    (output transform, per tile and output channel), then + bias + residual, act
//! ```
//!
//! Blocking: a task takes a block of `tb` tiles (sized so its transformed input `36 x tb x C`
//! and one 64-channel slice of M stay around 64 KiB, i.e. in L1/L2), transforms them into
//! scratch (`V[36][tb][C]`), then for each 64-output-channel chunk runs the 36 GEMMs with the
//! 6x16 micro-kernel into `M[36][tb][64]` and applies the output transform with the fused
//! epilogue straight into `y`, writing only the pixels inside the output (partial tiles at the
//! right/bottom edges). Channels are processed 8 at a time (an NHWC pixel's channels are
//! contiguous). The generic transforms are one body over `[f32; 8]` lanes; the AVX2 twins
//! (`x86_64::winograd_f43__avx2_fma`) hold a tile's 8-channel slice in ymm registers, read
//! interior tiles without bounds checks and fuse the constant multiplies into FMAs (the
//! `[f32; 8]` body compiled for AVX2 spent most of its time in `memcpy`/`memset` of its
//! 1 KiB stack arrays: ResNet-20's 16@32x32 layer 71 -> 43 us, 64@56 1.61 -> 1.06 ms).
//! Smaller tile blocks (the budget was 256 KiB) then took 16@32x32 from 43 to 35 us and
//! 32@16x16 from 30 to 25 us (1 thread, best of 7 in thread CPU time).
//!
//! Threads: tile blocks (and, when there are few, 64-channel chunks) are split statically; an
//! output element's value does not depend on the split, so results are bit-identical for any
//! thread count.

use super::gemm::{micro_kernel_for, run_tasks, Act, ConvGeom, Epilogue, MicroTile, SyncPtr, MR};
use super::pack::{WeightElem, NR};
use super::Isa;
use crate::team::Parallel;

/// Output channels per output-transform chunk (panels of 16).
const OCH: usize = 4;
/// Lanes of the transform body.
const L: usize = 8;
type Lanes = [f32; L];

/// True if `g` can run as F(4x4,3x3) Winograd.
fn supported(g: &ConvGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 && g.dil_w == 1 && g.groups == 1
}

/// Whether `conv2d_winograd` should be used for `g` rather than `conv2d_packed`.
///
/// Measured on the 2-core AMD EPYC (Zen 3, ~2.45 GHz, shared with other jobs) dev box,
/// 1 thread, AVX2, bias + residual + ReLU fused; GFLOP/s counted as 2 x direct MACs / s,
/// packed vs Winograd. First round (best of 11, wall time):
/// - ResNet-50 3x3: 64@56x56 88 vs 179, 128@28 91 vs 231, 256@14 93 vs 216, 512@7 83 vs 98.
///   512@7 is the doubtful one (4 tiles per image, 36 MiB of transformed weights, 4x the
///   direct ones and more than the L3), so it was also timed with cold caches (96 MiB flushed
///   before each call): packed 3.7 ms vs Winograd 3.3 ms; 512@8: 4.5 vs 3.3 ms.
/// - ResNet-20 3x3: 16@32x32 64 vs 70, 32@16 80 vs 114, 64@8 89 vs 166.
/// - Few channels: 8->8@32 22 vs 29, 16->8@32 29 vs 41, but 3->16@32 (ResNet-20's stem) 29
///   vs 16.
///
/// Second round, with the AVX2 register transforms (best of 7 in thread CPU time, the box
/// loaded by other jobs): ResNet-20 16@32 60 vs 136, 32@16 78 vs 186, 64@8 88 vs 212;
/// 3->16@32 29 vs 27 (still packed); ResNet-50 512@7 70 vs 73 (still Winograd).
///
/// Hence: Winograd whenever it applies and both channel counts are >= 8.
pub fn prefer_winograd(g: &ConvGeom) -> bool {
    supported(g) && g.in_c >= 8 && g.out_c >= 8
}

/// `(tiles_h, tiles_w, tile block, f32 per thread)` for `g`.
fn blocking(g: &ConvGeom) -> (usize, usize, usize, usize) {
    let th = g.out_h.div_ceil(4);
    let tw = g.out_w.div_ceil(4);
    let och = g.out_c.div_ceil(NR).min(OCH) * NR;
    // ~64 KiB for V and one M chunk (at least one 6-tile row of the micro-kernel).
    let tb = ((16 * 1024) / (36 * (g.in_c + och)) / MR * MR).clamp(MR, 8 * MR);
    let tb = tb.min(g.n * th * tw);
    (th, tw, tb, 36 * tb * (g.in_c + och))
}

/// f32 elements of scratch [`conv2d_winograd`] needs for `threads` workers (0 if `g` is not a
/// 3x3 stride-1 dilation-1 single-group convolution).
pub fn conv2d_winograd_scratch_len(g: &ConvGeom, threads: usize) -> usize {
    if !supported(g) || g.checked_sizes().is_none() {
        return 0;
    }
    blocking(g).3.saturating_mul(threads.max(1))
}

/// `y (NHWC) = act(conv3x3(x, w) + bias + residual)` with `w` in WinogradF43N16 (from
/// [`super::pack::pack_winograd_f43`]; f32 or f16 elements `W`, f16 widened in registers); `g` must be 3x3, stride 1, dilation 1, groups 1 (any
/// padding; output size given by `out_h`/`out_w`).
///
/// Contract (validated at model load; checked here once, and on violation the function
/// `debug_assert!`s and returns without touching `y`): `x.len() >= n*in_h*in_w*in_c`,
/// `y.len() >= n*out_h*out_w*out_c`, `w.len() >= winograd_f43_len(out_c, in_c)`,
/// `bias.len() >= out_c`, `residual.len() >=` y's element count,
/// `scratch.len() >= conv2d_winograd_scratch_len(g, 1)` (pass the pool's thread count to use
/// every thread).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_winograd<W: WeightElem, P: Parallel + ?Sized>(
    isa: Isa,
    g: &ConvGeom,
    x: &[f32],
    w: &[W],
    ep: &Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    pool: Option<&P>,
) {
    let sizes = if supported(g) { g.checked_sizes() } else { None };
    let Some((x_len, y_len)) = sizes else {
        debug_assert!(false, "conv2d_winograd: unsupported geometry {g:?}");
        return;
    };
    let (th, tw, tb, per) = blocking(g);
    let w_len = super::pack::winograd_f43_len(g.out_c, g.in_c);
    if !super::gemm::slices_fit(g, (x, x_len), (w, w_len), ep, (y, y_len), (scratch, per)) {
        debug_assert!(false, "conv2d_winograd: slice lengths do not match {g:?}");
        return;
    }
    let simd = cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx2Fma | Isa::Avx512) && Isa::Avx2Fma.is_supported();
    let neon = cfg!(target_arch = "aarch64")
        && matches!(isa, Isa::Neon | Isa::NeonDot | Isa::NeonDotFp16)
        && Isa::Neon.is_supported();
    let kernel = micro_kernel_for::<W>(isa);
    let tiles = g.n * th * tw;
    let threads = pool.map_or(1, |p| p.threads());
    // Tile blocks are whole groups of 6 tiles (one micro-kernel row tile), balanced over the
    // threads; `tb` stays the upper bound the scratch was sized for.
    let groups6 = tiles.div_ceil(MR);
    let blocks = super::gemm::balanced_ranges(groups6, tb.div_ceil(MR), threads);
    let panels = g.out_c.div_ceil(NR);
    let och = panels.min(OCH);
    let n_chunks = panels.div_ceil(och);
    let splits = if blocks >= 2 * threads { 1 } else { (2 * threads).div_ceil(blocks).min(n_chunks) };
    let chunks_per_split = n_chunks.div_ceil(splits);
    let splits = n_chunks.div_ceil(chunks_per_split);
    let yp = SyncPtr(y.as_mut_ptr());
    let c = g.in_c;
    let task = |t: usize, s: &mut [f32]| {
        let (blk, split) = (t / splits, t % splits);
        let (grp0, grp1) = super::gemm::range_bounds(blk, blocks, groups6);
        let t0 = grp0 * MR;
        let nt = (grp1 * MR).min(tiles) - t0;
        if nt == 0 || nt > tb {
            // Unreachable (`blocks` ranges hold at most `tb` tiles); the M-buffer pointer
            // arithmetic below relies on it, so it is checked, not assumed.
            debug_assert!(false, "winograd tile range of {nt} tiles exceeds the block of {tb}");
            return;
        }
        let (v, mbuf) = s[..per].split_at_mut(36 * tb * c);
        for j in 0..nt {
            let tile = t0 + j;
            let (b, rem) = (tile / (th * tw), tile % (th * tw));
            let (ty, tx) = (rem / tw, rem % tw);
            if simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2+FMA are available (checked when `simd` was set).
                unsafe {
                    input_tile_avx2(g, x, b, ty, tx, v, j, tb)
                };
            } else if neon {
                #[cfg(target_arch = "aarch64")]
                input_tile_neon(g, x, b, ty, tx, v, j, tb);
            } else {
                input_tile(g, x, b, ty, tx, v, j, tb);
            }
        }
        let ch_end = ((split + 1) * chunks_per_split).min(n_chunks);
        for chunk in split * chunks_per_split..ch_end {
            let p0 = chunk * och;
            let p1 = (p0 + och).min(panels);
            let ocw = och * NR;
            for pos in 0..36 {
                for p in p0..p1 {
                    let bpan = &w[(pos * panels + p) * c * NR..][..c * NR];
                    let mut r = 0;
                    while r < nt {
                        let m = MR.min(nt - r);
                        let a: [*const f32; MR] =
                            core::array::from_fn(|i| v[(pos * tb + r + if i < m { i } else { 0 }) * c..].as_ptr());
                        let cbuf = &mut mbuf[(pos * tb + r) * ocw + (p - p0) * NR..];
                        debug_assert!(cbuf.len() >= (m - 1) * ocw + NR);
                        let tile = MicroTile {
                            m,
                            n: NR,
                            k: c,
                            a,
                            b: bpan.as_ptr(),
                            c: cbuf.as_mut_ptr(),
                            ldc: ocw,
                            bias: core::ptr::null(),
                            residual: core::ptr::null(),
                            ldr: 0,
                            act: Act::None,
                            load_c: false,
                            finish: true,
                        };
                        // SAFETY: rows r..r+m of V[pos] hold c floats each; the panel holds 16*c;
                        // M rows r..r+m at stride ocw have 16 floats from column (p-p0)*16
                        // (mbuf is 36*tb*ocw long and (p-p0)*16+16 <= ocw).
                        unsafe { kernel(&tile) };
                        r += m;
                    }
                }
            }
            let (c0, c1) = (p0 * NR, (p1 * NR).min(g.out_c));
            for j in 0..nt {
                let tile = t0 + j;
                let (b, rem) = (tile / (th * tw), tile % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                let o = OutTile { b, ty, tx, j, tb, ocw, c0, c1 };
                if simd {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2+FMA available; `yp` is valid for y_len elements and this task
                    // is the only writer of this tile's pixels in channels c0..c1.
                    unsafe {
                        output_tile_avx2(g, &o, mbuf, ep, yp)
                    };
                } else if neon {
                    #[cfg(target_arch = "aarch64")]
                    // SAFETY: `yp` is valid for y_len elements and this task is the only writer
                    // of this tile's pixels in channels c0..c1.
                    unsafe {
                        output_tile_neon(g, &o, mbuf, ep, yp)
                    };
                } else {
                    // SAFETY: as above, without the CPU requirement.
                    unsafe { output_tile(g, &o, mbuf, ep, yp) };
                }
            }
        }
    };
    run_tasks(blocks * splits, scratch, per, pool, task);
}

#[inline(always)]
fn add(a: Lanes, b: Lanes) -> Lanes {
    core::array::from_fn(|i| a[i] + b[i])
}
#[inline(always)]
fn sub(a: Lanes, b: Lanes) -> Lanes {
    core::array::from_fn(|i| a[i] - b[i])
}
#[inline(always)]
fn mul(a: Lanes, k: f32) -> Lanes {
    core::array::from_fn(|i| a[i] * k)
}

/// `dst[..src.len()] = src` (`src.len() <= 8`), with a fixed-size fast path so full lanes
/// compile to one vector load instead of a `memcpy` call.
#[inline(always)]
fn load_lanes(dst: &mut Lanes, src: &[f32]) {
    match <&Lanes>::try_from(src) {
        Ok(full) => *dst = *full,
        Err(_) => dst[..src.len()].copy_from_slice(src),
    }
}

/// `dst = src[..dst.len()]` (`dst.len() <= 8`), fast path for full lanes.
#[inline(always)]
fn store_lanes(dst: &mut [f32], src: &Lanes) {
    let n = dst.len();
    if let Ok(full) = <&mut Lanes>::try_from(&mut *dst) {
        *full = *src;
    } else {
        dst.copy_from_slice(&src[..n]);
    }
}

/// One column/row of `Bᵀ d B`: `t = Bᵀ d` for 6 values.
#[inline(always)]
fn bt6(d: [Lanes; 6]) -> [Lanes; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    [
        add(sub(mul(d0, 4.0), mul(d2, 5.0)), d4),
        add(mul(add(d1, d2), -4.0), add(d3, d4)),
        add(mul(sub(d1, d2), 4.0), sub(d4, d3)),
        add(mul(sub(d3, d1), 2.0), sub(d4, d2)),
        add(mul(sub(d1, d3), 2.0), sub(d4, d2)),
        add(sub(mul(d1, 4.0), mul(d3, 5.0)), d5),
    ]
}

/// `o = Aᵀ m` for 6 values.
#[inline(always)]
fn at6(m: [Lanes; 6]) -> [Lanes; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (s12, d12, s34, d34) = (add(m1, m2), sub(m1, m2), add(m3, m4), sub(m3, m4));
    [add(add(m0, s12), s34), add(d12, mul(d34, 2.0)), add(s12, mul(s34, 4.0)), add(add(d12, mul(d34, 8.0)), m5)]
}

/// Input transform of tile `(b, ty, tx)` into column `j` of `V[36][tb][C]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_tile_body(g: &ConvGeom, x: &[f32], b: usize, ty: usize, tx: usize, v: &mut [f32], j: usize, tb: usize) {
    let c = g.in_c;
    let mut c0 = 0;
    while c0 < c {
        let nl = L.min(c - c0);
        let mut d = [[0.0f32; L]; 36];
        for r in 0..6 {
            let ih = (ty * 4 + r).wrapping_sub(g.pad_top);
            if ih >= g.in_h {
                continue;
            }
            for s in 0..6 {
                let iw = (tx * 4 + s).wrapping_sub(g.pad_left);
                if iw < g.in_w {
                    let off = ((b * g.in_h + ih) * g.in_w + iw) * c + c0;
                    load_lanes(&mut d[r * 6 + s], &x[off..off + nl]);
                }
            }
        }
        // Columns, then rows.
        let mut t = [[0.0f32; L]; 36];
        for s in 0..6 {
            let col = bt6(core::array::from_fn(|r| d[r * 6 + s]));
            for r in 0..6 {
                t[r * 6 + s] = col[r];
            }
        }
        for r in 0..6 {
            let row = bt6(core::array::from_fn(|s| t[r * 6 + s]));
            for (s, val) in row.iter().enumerate() {
                let off = ((r * 6 + s) * tb + j) * c + c0;
                store_lanes(&mut v[off..off + nl], val);
            }
        }
        c0 += nl;
    }
}

#[allow(clippy::too_many_arguments)]
fn input_tile(g: &ConvGeom, x: &[f32], b: usize, ty: usize, tx: usize, v: &mut [f32], j: usize, tb: usize) {
    input_tile_body(g, x, b, ty, tx, v, j, tb)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn input_tile_avx2(g: &ConvGeom, x: &[f32], b: usize, ty: usize, tx: usize, v: &mut [f32], j: usize, tb: usize) {
    let (x_len, v_len) = (g.x_len(), 36 * tb * g.in_c);
    if x.len() < x_len || v.len() < v_len || j >= tb || ty * 4 >= g.out_h || tx * 4 >= g.out_w || b >= g.n {
        debug_assert!(false, "winograd input_tile_avx2: bad arguments");
        return;
    }
    // SAFETY: lengths and indices checked just above; AVX2+FMA by the caller's contract.
    unsafe { super::x86_64::winograd_f43__avx2_fma::input_tile(g, x.as_ptr(), b, ty, tx, v.as_mut_ptr(), j, tb) }
}

/// Where an output tile goes: image `b`, tile `(ty, tx)`, column `j` of the M buffer
/// (`M[36][tb][ocw]`), output channels `c0..c1` (M column 0 is channel `c0`).
pub(crate) struct OutTile {
    pub(crate) b: usize,
    pub(crate) ty: usize,
    pub(crate) tx: usize,
    pub(crate) j: usize,
    pub(crate) tb: usize,
    pub(crate) ocw: usize,
    pub(crate) c0: usize,
    pub(crate) c1: usize,
}

/// Output transform of one tile with the fused epilogue, written to the valid pixels of `y`.
///
/// # Safety
/// `y` points to `n*out_h*out_w*out_c` writable f32 and no other thread accesses this tile's
/// pixels in channels `c0..c1` concurrently.
#[inline(always)]
unsafe fn output_tile_body(g: &ConvGeom, o: &OutTile, mbuf: &[f32], ep: &Epilogue, y: SyncPtr<f32>) {
    let mut c = o.c0;
    while c < o.c1 {
        let nl = L.min(o.c1 - c);
        let mc = c - o.c0;
        let m: [Lanes; 36] = core::array::from_fn(|pos| {
            let off = (pos * o.tb + o.j) * o.ocw + mc;
            mbuf[off..off + L].try_into().unwrap_or([0.0; L])
        });
        let mut t = [[[0.0f32; L]; 6]; 4];
        for s in 0..6 {
            let col = at6(core::array::from_fn(|r| m[r * 6 + s]));
            for r in 0..4 {
                t[r][s] = col[r];
            }
        }
        let mut bias = [0.0f32; L];
        if let Some(bs) = ep.bias {
            load_lanes(&mut bias, &bs[c..c + nl]);
        }
        let (lo, hi) = match ep.act {
            Act::None => (f32::NEG_INFINITY, f32::INFINITY),
            Act::Relu => (0.0, f32::INFINITY),
            Act::Clip(lo, hi) => (lo, hi),
        };
        for (r, trow) in t.iter().enumerate() {
            let oh = o.ty * 4 + r;
            if oh >= g.out_h {
                break;
            }
            let row = at6(*trow);
            for (s, val) in row.iter().enumerate() {
                let ow = o.tx * 4 + s;
                if ow >= g.out_w {
                    break;
                }
                let off = ((o.b * g.out_h + oh) * g.out_w + ow) * g.out_c + c;
                let mut out = add(*val, bias);
                if let Some(res) = ep.residual {
                    let mut rv = [0.0f32; L];
                    load_lanes(&mut rv, &res[off..off + nl]);
                    out = add(out, rv);
                }
                if !matches!(ep.act, Act::None) {
                    out = core::array::from_fn(|i| out[i].max(lo).min(hi));
                }
                // SAFETY: off + nl <= y_len (pixel inside the output, channels < out_c); this
                // task is the only writer (caller contract).
                let dst = unsafe { core::slice::from_raw_parts_mut(y.ptr().add(off), nl) };
                store_lanes(dst, &out);
            }
        }
        c += nl;
    }
}

/// # Safety
/// As [`output_tile_body`].
unsafe fn output_tile(g: &ConvGeom, o: &OutTile, mbuf: &[f32], ep: &Epilogue, y: SyncPtr<f32>) {
    // SAFETY: forwarded contract.
    unsafe { output_tile_body(g, o, mbuf, ep, y) }
}

/// # Safety
/// As [`output_tile_body`], and the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
unsafe fn output_tile_avx2(g: &ConvGeom, o: &OutTile, mbuf: &[f32], ep: &Epilogue, y: SyncPtr<f32>) {
    if mbuf.len() < 36 * o.tb * o.ocw || o.j >= o.tb || o.c1 - o.c0 > o.ocw || o.ocw % 8 != 0 {
        debug_assert!(false, "winograd output_tile_avx2: bad M buffer");
        return;
    }
    // SAFETY: forwarded contract (M buffer extent checked above).
    unsafe { super::x86_64::winograd_f43__avx2_fma::output_tile(g, o, mbuf.as_ptr(), ep, y) }
}

/// [`input_tile`] on NEON (checks the arguments, then runs the pointer-based twin).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
fn input_tile_neon(g: &ConvGeom, x: &[f32], b: usize, ty: usize, tx: usize, v: &mut [f32], j: usize, tb: usize) {
    let (x_len, v_len) = (g.x_len(), 36 * tb * g.in_c);
    let inside = ty * 4 < g.out_h && tx * 4 < g.out_w && b < g.n && g.in_h > 0 && g.in_w > 0;
    if x.len() < x_len || v.len() < v_len || j >= tb || !inside {
        debug_assert!(false, "winograd input_tile_neon: bad arguments");
        return;
    }
    // SAFETY: lengths and indices checked just above; NEON is part of every AArch64 CPU.
    unsafe { super::aarch64::winograd_f43__neon::input_tile(g, x.as_ptr(), b, ty, tx, v.as_mut_ptr(), j, tb) }
}

/// # Safety
/// As [`output_tile_body`] (NEON is part of every AArch64 CPU).
#[cfg(target_arch = "aarch64")]
unsafe fn output_tile_neon(g: &ConvGeom, o: &OutTile, mbuf: &[f32], ep: &Epilogue, y: SyncPtr<f32>) {
    let inside = o.ty * 4 < g.out_h && o.tx * 4 < g.out_w && o.b < g.n;
    if mbuf.len() < 36 * o.tb * o.ocw || o.j >= o.tb || o.c1 - o.c0 > o.ocw || o.ocw % 4 != 0 || !inside {
        debug_assert!(false, "winograd output_tile_neon: bad M buffer or tile");
        return;
    }
    // SAFETY: forwarded contract (M buffer extent and tile position checked above).
    unsafe { super::aarch64::winograd_f43__neon::output_tile(g, o, mbuf.as_ptr(), ep, y) }
}
