//! Int8 convolution / Linear as a GEMM over PackedN16K4 weights with the requantising
//! epilogue fused into the store.
//!
//! Per task (<= `MB_MAX` output pixels, one group, a chunk of 16-wide panels): the A block is
//! built in the thread's scratch as i16 rows of `K4*4` (the raw int8 activations widened,
//! K zero padded to a multiple of 4): the im2col of the rows (padding taps = `z_x`), or for a
//! 1x1 convolution without padding just the widened input pixels. The micro-kernel then
//! computes a 6-row x 8-channel tile over the whole K (i32 accumulators in registers; no
//! partial sums are stored) and requantises it straight into `y`.
//!
//! Loop nest (as the fp32 GEMM in `kernels::gemm`): `for chunk of panels (<= NC_BYTES of
//! weights, L2-resident) { for 6-row tile { for panel { for half (8 channels) { micro } } } }`.
//! Tasks are split statically over the pool, one scratch region per worker; every output
//! element is computed by exactly one micro-kernel call, and the i32 sums wrap (exact within
//! the spec's bounds), so the bytes do not depend on the thread count.

use super::generic::{gemm_i8i32_6x8__generic, MicroTileI8};
use super::pack::{packed_n16k4_len, KG, PANEL};
use super::{is_i8, requant_fits_lshift, valid_mult, QEpilogue, SyncPtr, MR, NR};
use crate::kernels::gemm::{balanced_ranges, range_bounds, run_tasks, ConvGeom};
use crate::kernels::Isa;
use crate::team::Parallel;

/// Bytes of weights (a chunk of panels) kept L2-resident while the row tiles sweep them.
const NC_BYTES: usize = 128 * 1024;
/// Maximum output rows per task (multiple of `MR`).
const MB_MAX: usize = 96;
/// Target bytes of one i16 A block (L2-resident next to the weight chunk).
const A_BYTES: usize = 96 * 1024;

/// An int8 micro-kernel: [`gemm_i8i32_6x8__generic`] or a SIMD twin.
pub type MicroKernelI8 = unsafe fn(&MicroTileI8);

/// The int8 6x8 micro-kernel for `isa` (the generic twin when `isa` has none or does not
/// run on this CPU).
pub fn micro_kernel(isa: Isa) -> MicroKernelI8 {
    #[cfg(target_arch = "x86_64")]
    if super::use_avx2(isa) {
        return avx2_micro;
    }
    #[cfg(target_arch = "aarch64")]
    if matches!(isa, Isa::Neon | Isa::NeonDot | Isa::NeonDotFp16) && isa.is_supported() {
        if isa >= Isa::NeonDot {
            // `isa` is supported, so the detected tier is at least NeonDot, which requires
            // `dotprod` (the kernel's contract).
            return crate::kernels::aarch64::gemm_i8i32_6x8__neon_dot::gemm_i8i32_6x8__neon_dot;
        }
        return crate::kernels::aarch64::gemm_i8i32_6x8__neon::gemm_i8i32_6x8__neon;
    }
    let _ = isa;
    gemm_i8i32_6x8__generic
}

/// # Safety
/// AVX2 available (only handed out by [`micro_kernel`] after checking) and the
/// [`MicroTileI8`] contract.
#[cfg(target_arch = "x86_64")]
unsafe fn avx2_micro(t: &MicroTileI8) {
    // SAFETY: see the function's contract.
    unsafe { crate::kernels::x86_64::gemm_i8i32_6x8__avx2::gemm_i8i32_6x8__avx2(t) }
}

/// `(rows per task, i16 elements of A per row)` for `g`.
fn blocking(g: &ConvGeom) -> (usize, usize) {
    let k = g.kh * g.kw * (g.in_c / g.groups.max(1));
    let ka = k.div_ceil(KG) * KG;
    let mb = ((A_BYTES / (2 * ka.max(1))) / MR * MR).clamp(4 * MR, MB_MAX);
    (mb, ka)
}

/// Scratch (in f32 units, reinterpreted as i16) of one worker.
fn per_thread(g: &ConvGeom) -> usize {
    let (mb, ka) = blocking(g);
    (mb * ka).div_ceil(2)
}

/// f32 elements of scratch [`conv2d_i8`] needs for `threads` workers.
pub fn conv2d_i8_scratch_len(g: &ConvGeom, threads: usize) -> usize {
    if g.checked_sizes().is_none() {
        return 0;
    }
    per_thread(g).saturating_mul(threads.max(1))
}

/// Task split: `(row ranges, panel chunks, panels per chunk)` (never changes results).
fn tasks(g: &ConvGeom, mb: usize, threads: usize) -> (usize, usize, usize) {
    let tiles = (g.n * g.out_h * g.out_w).div_ceil(MR);
    let ranges = balanced_ranges(tiles, mb / MR, threads);
    let panels = (g.out_c / g.groups).div_ceil(PANEL);
    let want = 2 * threads;
    let chunks = if ranges * g.groups >= want { 1 } else { want.div_ceil(ranges * g.groups).min(panels) };
    let per_chunk = panels.div_ceil(chunks);
    (ranges, panels.div_ceil(per_chunk), per_chunk)
}

/// True if every qparams row and the epilogue constants are in the spec's ranges.
fn epilogue_valid(ep: &QEpilogue, out_c: usize) -> bool {
    ep.qparams.len() >= 4 * out_c
        && ep.qparams[..4 * out_c].chunks_exact(4).all(|q| valid_mult(q[1], q[3] as u32) && q[2] >= 0)
        && [ep.z_res, ep.z_y, ep.qmin, ep.qmax].into_iter().all(is_i8)
        && ep.qmin <= ep.qmax
}

/// `y (NHWC i8) = requant(conv(x - padding z_x, w) + bias, residual)` with `w` in
/// PackedN16K4 (any groups, stride, dilation, padding; padding taps read `z_x`).
///
/// Contract (validated at model load; checked here once, and on violation the function
/// `debug_assert!`s and returns without touching `y`): `x.len() >= n*in_h*in_w*in_c`,
/// `y.len() >= n*out_h*out_w*out_c`, `w.len() >= packed_n16k4_len(out_c, kh, kw,
/// in_c/groups, groups)`, `ep.qparams.len() >= 4*out_c` with `m_acc, m_res >= 0` and `shift`
/// in [1, 62], `residual.len() >= y`'s length, zero points and `qmin <= qmax` in [-128, 127],
/// `z_x` in [-128, 127], and `scratch.len() >= conv2d_i8_scratch_len(g, 1)` (pass
/// `conv2d_i8_scratch_len(g, pool threads)` to use every thread of `pool`). Weights may be
/// any i8 (the AVX2 kernel widens them to i16; -128 is exact too).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8<P: Parallel + ?Sized>(
    isa: Isa,
    g: &ConvGeom,
    x: &[i8],
    z_x: i32,
    w: &[i8],
    ep: &QEpilogue,
    y: &mut [i8],
    scratch: &mut [f32],
    pool: Option<&P>,
) {
    let Some((x_len, y_len)) = g.checked_sizes() else {
        debug_assert!(false, "conv2d_i8: degenerate geometry {g:?}");
        return;
    };
    let i_g = g.in_c / g.groups;
    let o_g = g.out_c / g.groups;
    let w_len = packed_n16k4_len(g.out_c, g.kh, g.kw, i_g, g.groups);
    let per = per_thread(g);
    let fits = x.len() >= x_len
        && y.len() >= y_len
        && w_len.is_some_and(|l| w.len() >= l)
        && ep.residual.is_none_or(|r| r.len() >= y_len)
        && scratch.len() >= per
        && is_i8(z_x)
        && epilogue_valid(ep, g.out_c);
    if !fits {
        debug_assert!(false, "conv2d_i8: slice lengths or quantisation parameters do not match {g:?}");
        return;
    }
    let (mb, ka) = blocking(g);
    let k4 = ka / KG;
    let kernel = micro_kernel(isa);
    // One O(out_c) scan per call: lets the SIMD epilogues take their 8-lane i32 path for
    // channels with shift < 32 too (usually the residual layers, whose m_res is near 1).
    let lshift_ok = requant_fits_lshift(&ep.qparams[..4 * g.out_c], ka);
    let threads = pool.map_or(1, |p| p.threads());
    let (ranges, chunks, per_chunk) = tasks(g, mb, threads);
    let panels = o_g.div_ceil(PANEL);
    let panel_bytes = k4 * PANEL * KG;
    let m_total = g.n * g.out_h * g.out_w;
    let yp = SyncPtr(y.as_mut_ptr());
    let task = |t: usize, s: &mut [f32]| {
        let chunk = t % chunks;
        let grp = (t / chunks) % g.groups;
        let (tile0, tile1) = range_bounds(t / chunks / g.groups, ranges, m_total.div_ceil(MR));
        let m0 = tile0 * MR;
        let rows = (tile1 * MR).min(m_total) - m0;
        debug_assert!(rows >= 1 && rows <= mb);
        let a: &mut [i16] = bytemuck::cast_slice_mut(&mut s[..per]);
        let a = &mut a[..rows * ka];
        pack_a(g, x, z_x, grp, m0, ka, a);
        let p_end = ((chunk + 1) * per_chunk).min(panels);
        let nc = (NC_BYTES / panel_bytes).max(1);
        let mut pc = chunk * per_chunk;
        while pc < p_end {
            let pc_end = (pc + nc).min(p_end);
            let mut r = 0;
            while r < rows {
                let m = MR.min(rows - r);
                let pix = m0 + r;
                let ap: [*const i16; MR] = core::array::from_fn(|i| a[(r + if i < m { i } else { 0 }) * ka..].as_ptr());
                for p in pc..pc_end {
                    let panel = &w[(grp * panels + p) * panel_bytes..][..panel_bytes];
                    for half in 0..PANEL / NR {
                        let c_in = p * PANEL + half * NR;
                        if c_in >= o_g {
                            break;
                        }
                        let n = NR.min(o_g - c_in);
                        let col = grp * o_g + c_in;
                        let tile = MicroTileI8 {
                            m,
                            n,
                            k4,
                            a: ap,
                            b: panel[half * NR * KG..].as_ptr(),
                            qp: ep.qparams[4 * col..].as_ptr(),
                            // SAFETY: pixels pix..pix+m < m_total and channels col..col+n <=
                            // out_c lie inside y (y.len() >= y_len checked above).
                            y: unsafe { yp.ptr().add(pix * g.out_c + col) },
                            ldy: g.out_c,
                            residual: ep.residual.map_or(core::ptr::null(), |res| res[pix * g.out_c + col..].as_ptr()),
                            ldr: g.out_c,
                            z_res: ep.z_res,
                            z_y: ep.z_y,
                            qmin: ep.qmin,
                            qmax: ep.qmax,
                            lshift_ok,
                        };
                        // SAFETY: the tile satisfies the MicroTileI8 contract: A rows hold ka =
                        // 4*k4 i16, the panel holds k4 64-byte groups (half*32 + 32 <= 64), qp
                        // holds 4*n i32 (col + n <= out_c, length checked), y/residual rows as
                        // above; this task is the only writer of these y elements.
                        unsafe { kernel(&tile) };
                    }
                }
                r += m;
            }
            pc = pc_end;
        }
    };
    run_tasks(ranges * g.groups * chunks, scratch, per, pool, task);
}

/// Writes the A rows of output pixels `m0..m0 + dst.len()/ka` for group `grp` into `dst`:
/// the im2col (`k = (kh*KW + kw)*I_g + ci`, padding taps = `z_x`) widened to i16, each row
/// zero padded from K to `ka`.
fn pack_a(g: &ConvGeom, x: &[i8], z_x: i32, grp: usize, m0: usize, ka: usize, dst: &mut [i16]) {
    let i_g = g.in_c / g.groups;
    let k = g.kh * g.kw * i_g;
    let span = g.kw * i_g;
    let zx = z_x as i16;
    let widen = |d: &mut [i16], s: &[i8]| d.iter_mut().zip(s).for_each(|(d, &v)| *d = i16::from(v));
    let contiguous = g.kh == 1
        && g.kw == 1
        && g.groups == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h == g.in_h
        && g.out_w == g.in_w
        && ka == k;
    if contiguous {
        // 1x1, stride 1, no padding, K a multiple of 4: the A block is the input pixels
        // m0.. as they lie in x (no per-row index arithmetic).
        widen(dst, &x[m0 * k..m0 * k + dst.len()]);
        return;
    }
    for (r, row) in dst.chunks_exact_mut(ka).enumerate() {
        let m = m0 + r;
        let (b, rem) = (m / (g.out_h * g.out_w), m % (g.out_h * g.out_w));
        let (oh, ow) = (rem / g.out_w, rem % g.out_w);
        let (body, tail) = row.split_at_mut(k);
        tail.fill(0);
        for (ki, kseg) in body.chunks_exact_mut(span).enumerate() {
            let ih = (oh * g.stride_h + ki * g.dil_h).wrapping_sub(g.pad_top);
            if ih >= g.in_h {
                kseg.fill(zx);
                continue;
            }
            let iw0 = (ow * g.stride_w).wrapping_sub(g.pad_left);
            let pix0 = (b * g.in_h + ih) * g.in_w;
            if g.dil_w == 1 && g.groups == 1 && iw0 < g.in_w && iw0 + g.kw <= g.in_w {
                // The whole kernel row is one contiguous run of kw pixels x in_c channels.
                let src = (pix0 + iw0) * g.in_c;
                widen(kseg, &x[src..src + span]);
                continue;
            }
            for (kj, seg) in kseg.chunks_exact_mut(i_g).enumerate() {
                let iw = (ow * g.stride_w + kj * g.dil_w).wrapping_sub(g.pad_left);
                if iw < g.in_w {
                    let src = (pix0 + iw) * g.in_c + grp * i_g;
                    widen(seg, &x[src..src + i_g]);
                } else {
                    seg.fill(zx);
                }
            }
        }
    }
}

/// The 1x1 convolution `[m, 1, 1, k] -> [m, 1, 1, n]` a Linear layer is.
fn linear_geom(m: usize, k: usize, n: usize) -> ConvGeom {
    ConvGeom {
        n: m,
        in_h: 1,
        in_w: 1,
        in_c: k,
        out_h: 1,
        out_w: 1,
        out_c: n,
        kh: 1,
        kw: 1,
        stride_h: 1,
        stride_w: 1,
        pad_top: 0,
        pad_left: 0,
        dil_h: 1,
        dil_w: 1,
        groups: 1,
    }
}

/// f32 elements of scratch [`linear_i8`] needs for `threads` workers.
pub fn linear_i8_scratch_len(m: usize, k: usize, n: usize, threads: usize) -> usize {
    conv2d_i8_scratch_len(&linear_geom(m, k, n), threads)
}

/// Int8 Linear: `y[m][n] = requant(sum_k x[m][k]*w[n][k] + bias[n])` (no residual), `x`
/// `[m, k]`, `w` PackedN16K4 `[n, k]`, `y` `[m, n]`; contract as [`conv2d_i8`] for the 1x1
/// convolution `[m, 1, 1, k] -> [m, 1, 1, n]` (the input zero point is folded into the bias,
/// so none is needed here). A residual in `ep` is ignored.
#[allow(clippy::too_many_arguments)]
pub fn linear_i8<P: Parallel + ?Sized>(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    x: &[i8],
    w: &[i8],
    ep: &QEpilogue,
    y: &mut [i8],
    scratch: &mut [f32],
    pool: Option<&P>,
) {
    let ep = QEpilogue { residual: None, ..*ep };
    conv2d_i8(isa, &linear_geom(m, k, n), x, 0, w, &ep, y, scratch, pool)
}
