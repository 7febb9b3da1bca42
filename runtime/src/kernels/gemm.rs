//! fp32 convolution as GEMM over PackedN16 weights, with a fused epilogue.
//!
//! `y[M = N*OH*OW pixels][O] = act(A[M][K] · B[K][O] + bias + residual)` per group, where B is
//! the PackedN16 weight (see [`super::pack`]) and A is:
//! - 1x1 convolutions without padding (any stride): rows read straight from `x` (the NHWC
//!   pixel `(n, oh*sh, ow*sw)`, `lda = in_c`), no copy;
//! - everything else: im2col of a block of output rows into the calling thread's scratch
//!   (`K = KH*KW*I_g` contiguous per row), reused across all output-channel panels. im2col was
//!   chosen over an indirection-buffer IGEMM because it keeps the micro-kernel a single
//!   contiguous K loop (the stem has I_g = 3, where IGEMM's per-tap inner loop would be only
//!   3 long). A kernel row of `kw` taps is one contiguous run of the NHWC input, copied at
//!   once (stem 7x7/2: 40 -> 76 GFLOP/s from that alone). IGEMM itself was not built; what
//!   it could save at most was measured instead, as the time of the same GEMM (M, K, N) fed
//!   from a ready-made matrix: im2col adds 12% on the stem (2.99 vs 2.67 ms) and 3-6% on
//!   ResNet-50's stride-2 3x3s (2.55 vs 2.43 ms at 128@56), ~0.7 ms of a ~75 ms network.
//!
//! Loop nest per task (<= `MB_MAX` output rows, one group, a range of 16-wide panels):
//! `for chunk of panels { for K block of KC { for 6-row tile { for panel in chunk { micro } } } }`:
//! the chunk's K block of B (<= 128 KiB) stays in L2, the 6 x KC A tile in L1 across the
//! chunk's panels (8 panels at K >= KC, 32 at K = 64), and each tile writes (and reads the
//! residual of) whole contiguous runs of the chunk's channels per pixel (the panel-outer order
//! wrote 64-byte pieces at a 1 KiB stride: 58 -> 64 GFLOP/s on the residual-fused 1x1 64->256
//! at 56x56, unchanged elsewhere).
//!
//! Threads: a task is (a range of 6-row tiles, a group, a chunk of panels). The row ranges
//! are balanced so their count is a multiple of the thread count (ResNet-50's 28x28 layers
//! would otherwise split 5:4 blocks), and panels are split too when there are few rows
//! (7x7 layers, Linear with M = 1). The tasks are split statically into one contiguous run
//! per worker, each with its own scratch region. Each output element is computed by exactly
//! one micro-kernel call sequence whose k order (K blocks of `KC`, then k within the block)
//! does not depend on the task split, so results are bit-identical for any thread count.
//! Measured: all ResNet-50 convolutions (`resnet50_conv_stack` bench) 75.6 ms at 1 thread,
//! 41.5 ms at 2 (best-of-25 per layer; the box was shared with other jobs).

use super::pack::{WeightElem, NR};
use super::Isa;
use crate::team::Parallel;

pub use super::winograd::{conv2d_winograd, conv2d_winograd_scratch_len, prefer_winograd};

/// Rows of the micro-kernel tile.
pub const MR: usize = 6;
/// K block: a `KC x 16` f32 panel slice is 16 KiB, half of Zen 3's L1d.
pub const KC: usize = 256;
/// Bytes of B (a K block of a chunk of panels) kept L2-resident while the 6-row tiles sweep it.
const NC_BYTES: usize = 128 * 1024;
/// Maximum output rows per task (multiple of `MR`).
const MB_MAX: usize = 96;

/// Activation fused into the store (the one activation type of every kernel).
pub use super::generic::act::Act;

/// What is fused into the GEMM store: `y = act(acc + bias[c] + residual[pixel][c])`.
/// `bias` has `out_c` entries; `residual` has the same NHWC shape as `y`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub act: Act,
}

/// Geometry of a 2-D convolution over NHWC activations. `out_h`/`out_w` are given (bottom and
/// right padding are implied by them); input taps outside the input read as zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub dil_h: usize,
    pub dil_w: usize,
    pub groups: usize,
}

impl ConvGeom {
    /// Elements of the NHWC input.
    pub fn x_len(&self) -> usize {
        self.n * self.in_h * self.in_w * self.in_c
    }
    /// Elements of the NHWC output.
    pub fn y_len(&self) -> usize {
        self.n * self.out_h * self.out_w * self.out_c
    }
    /// Elements of the OHWI weight.
    pub fn w_len(&self) -> usize {
        self.out_c * self.kh * self.kw * (self.in_c / self.groups.max(1))
    }
    /// Multiply-accumulates of the convolution (for benches and `OpInfo`).
    pub fn macs(&self) -> u64 {
        let i_g = self.in_c / self.groups.max(1);
        (self.n * self.out_h * self.out_w * self.out_c) as u64 * (self.kh * self.kw * i_g) as u64
    }

    /// Element counts `(x, y)` of the input and output, `None` if the geometry is degenerate
    /// (a zero dim, stride, dilation or group count, channels not divisible by `groups`) or a
    /// size overflows.
    pub(crate) fn checked_sizes(&self) -> Option<(usize, usize)> {
        let g = self;
        let dims = [g.n, g.in_h, g.in_w, g.in_c, g.out_h, g.out_w, g.out_c, g.kh, g.kw];
        let steps = [g.stride_h, g.stride_w, g.dil_h, g.dil_w, g.groups];
        if dims.iter().chain(&steps).any(|&d| d == 0) || g.in_c % g.groups != 0 || g.out_c % g.groups != 0 {
            return None;
        }
        let x = g.n.checked_mul(g.in_h)?.checked_mul(g.in_w)?.checked_mul(g.in_c)?;
        let y = g.n.checked_mul(g.out_h)?.checked_mul(g.out_w)?.checked_mul(g.out_c)?;
        // Every tap coordinate must be representable (oh*sh + r*dh fits comfortably).
        (g.out_h.checked_mul(g.stride_h)?).checked_add(g.kh.checked_mul(g.dil_h)?)?;
        (g.out_w.checked_mul(g.stride_w)?).checked_add(g.kw.checked_mul(g.dil_w)?)?;
        Some((x, y))
    }

    /// True if A can be read straight from `x`: a 1x1 kernel with no padding whose taps all
    /// lie inside the input.
    fn direct_1x1(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && (self.out_h - 1) * self.stride_h < self.in_h
            && (self.out_w - 1) * self.stride_w < self.in_w
    }
}

/// The slice-length contract shared by the conv entry points (each `(slice, needed length)`;
/// a needed weight length of 0 means the geometry has no valid packing). Checked once per
/// call so nothing below reads or writes out of bounds even if the caller is wrong.
pub(crate) fn slices_fit<W>(
    g: &ConvGeom,
    x: (&[f32], usize),
    w: (&[W], usize),
    ep: &Epilogue,
    y: (&[f32], usize),
    scratch: (&[f32], usize),
) -> bool {
    x.0.len() >= x.1
        && y.0.len() >= y.1
        && w.1 != 0
        && w.0.len() >= w.1
        && ep.bias.is_none_or(|b| b.len() >= g.out_c)
        && ep.residual.is_none_or(|r| r.len() >= y.1)
        && scratch.0.len() >= scratch.1
}

/// One micro-kernel call: `C = act(A · B (+ C) + bias + residual)` on an `m x n` tile
/// (`m <= 6`, `n <= 16`).
///
/// Pointer contract (what the kernels may touch):
/// - `a[i]` for `i < m`: readable for `k` f32 (row i of A, contiguous in k). Entries `>= m`
///   are never read (callers set them to `a[0]` so no dangling pointer is ever formed).
/// - `b`: readable for `16*k` weight elements `W` (`k` rows of 16 packed output channels;
///   lanes `>= n` are zero padding and are read but not stored). `W` is `f32` or `half::f16`
///   (widened to f32 as it is loaded; see [`WeightElem`]).
/// - `c`: rows `0..m` at stride `ldc`, readable (when `load_c`) and writable for `n` f32.
/// - `bias` (null = none): readable for `n` f32. `residual` (null = none): rows `0..m` at
///   stride `ldr`, readable for `n` f32. Both only used when `finish` is set.
/// - `load_c`: add the current C (continuing a K-blocked sum); `finish`: apply bias, residual
///   and `act` (last K block).
#[derive(Clone, Copy, Debug)]
pub struct MicroTile<W = f32> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: [*const f32; MR],
    pub b: *const W,
    pub c: *mut f32,
    pub ldc: usize,
    pub bias: *const f32,
    pub residual: *const f32,
    pub ldr: usize,
    pub act: Act,
    pub load_c: bool,
    pub finish: bool,
}

/// A micro-kernel: [`super::generic::gemm::gemm_f32_6x16__generic`] or a SIMD twin (with
/// `W = half::f16`: [`super::generic::gemm::gemm_f16_6x16__generic`] or its twins).
pub type MicroKernel<W = f32> = unsafe fn(&MicroTile<W>);

/// The fp32 6x16 micro-kernel for `isa`, falling back to the generic twin when `isa` has no
/// such kernel or does not run on this CPU.
pub fn micro_kernel(isa: Isa) -> MicroKernel {
    micro_kernel_for::<f32>(isa)
}

/// The 6x16 micro-kernel reading `W` weight panels (f32 or f16) for `isa`, falling back to the
/// generic twin when `isa` has no such kernel or does not run on this CPU.
pub fn micro_kernel_for<W: WeightElem>(isa: Isa) -> MicroKernel<W> {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2Fma | Isa::Avx512) && Isa::Avx2Fma.is_supported() {
        // SAFETY (of later calls): AVX2, FMA and F16C are present (`Isa::Avx2Fma` requires all
        // three; checked just above).
        return avx2_micro::<W>;
    }
    #[cfg(target_arch = "aarch64")]
    if matches!(isa, Isa::Neon | Isa::NeonDot | Isa::NeonDotFp16) && isa.is_supported() {
        // NEON (and fcvtl for f16 panels) is part of every AArch64 CPU.
        return super::aarch64::gemm_f32_6x16__neon::gemm_6x16_neon::<W>;
    }
    let _ = isa;
    super::generic::gemm::gemm_6x16_generic::<W>
}

/// The micro-kernel of [`conv2d_packed`] (im2col / direct 1x1 convolutions and PackedN16
/// Linear layers): [`micro_kernel_for`], except that f16 panels at `Isa::NeonDotFp16` get the
/// fp16-arithmetic kernel (`aarch64/gemm_f16_6x16__neon_fp16.rs`: f16 products summed in
/// 16-k f16 blocks, the blocks in f32; within the error bound documented there, not
/// bit-identical to the widening kernels). The Winograd path keeps [`micro_kernel_for`]
/// (widening): its output transform amplifies the extra f16 rounding of the transformed
/// activations about 3x, which cost ResNet-20 its fp16 accuracy budget (rel L2 6.1e-3 against
/// the 5e-3 the x86 tests allow; 2.3e-3 with f16 weights alone).
pub fn packed_micro_kernel_for<W: WeightElem>(isa: Isa) -> MicroKernel<W> {
    #[cfg(target_arch = "aarch64")]
    if W::IS_F16 && isa == Isa::NeonDotFp16 && isa.is_supported() {
        // SAFETY (of later calls): NeonDotFp16 is only supported when FEAT_FP16 is detected
        // (`Isa::best_supported`); f32 panels never get here.
        return super::aarch64::gemm_f16_6x16__neon_fp16::gemm_6x16_neon_fp16::<W>;
    }
    micro_kernel_for::<W>(isa)
}

/// # Safety
/// AVX2+FMA+F16C available (only handed out by [`micro_kernel_for`] after checking) and the
/// [`MicroTile`] contract.
#[cfg(target_arch = "x86_64")]
unsafe fn avx2_micro<W: WeightElem>(t: &MicroTile<W>) {
    // SAFETY: see the function's contract.
    unsafe { super::x86_64::gemm_f32_6x16__avx2_fma::gemm_6x16_avx2::<W>(t) }
}

/// A raw output pointer shared by the workers; each writes a disjoint set of elements.
/// Used for f32 and int8 outputs alike.
pub(crate) struct SyncPtr<T>(pub *mut T);

impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    #[inline(always)]
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }
}
// SAFETY: the workers write disjoint elements (each output element belongs to one task), and
// the pointee outlives the parallel section (it is borrowed mutably by the caller); `T` is a
// plain number type (f32, i8).
unsafe impl<T> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SyncPtr<T> {}

/// Runs `f(task, scratch)` for `task in 0..ntasks`, statically split into contiguous runs,
/// one per worker; each worker gets its own `per`-element region of `scratch`. Uses at most
/// `pool`'s thread count and as many workers as `scratch` has regions for. No allocation
/// (with the session's [`crate::team::Team`]).
pub(crate) fn run_tasks<F, P>(ntasks: usize, scratch: &mut [f32], per: usize, pool: Option<&P>, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
    P: Parallel + ?Sized,
{
    let threads = pool.map_or(1, |p| p.threads()).max(1);
    let regions = scratch.len().checked_div(per).unwrap_or(threads);
    let workers = threads.min(regions).min(ntasks).max(1);
    let run = |w: usize, s: &mut [f32]| {
        for t in w * ntasks / workers..(w + 1) * ntasks / workers {
            f(t, s);
        }
    };
    match pool {
        Some(pool) if workers > 1 => {
            let base = SyncPtr(scratch.as_mut_ptr());
            pool.run(workers, &|w| {
                let s: &mut [f32] = if per == 0 {
                    &mut []
                } else {
                    // SAFETY: w < workers <= regions, so [w*per, (w+1)*per) lies inside
                    // `scratch` (borrowed mutably for the whole call), and each worker index
                    // runs once, so the regions handed out are disjoint.
                    unsafe { core::slice::from_raw_parts_mut(base.ptr().add(w * per), per) }
                };
                run(w, s)
            });
        }
        _ => {
            let end = per.min(scratch.len());
            run(0, &mut scratch[..end]);
        }
    }
}

/// Output rows per task and im2col scratch per thread (f32) for `g`.
fn packed_blocking(g: &ConvGeom) -> (usize, usize) {
    if g.direct_1x1() {
        return (MB_MAX, 0);
    }
    let k = g.kh * g.kw * (g.in_c / g.groups.max(1));
    // Keep the im2col block around 128 KiB (L2-resident), but at least 4 micro tiles so each
    // K block of B fetched from L3 feeds 24 rows (ResNet-50's 512@14 stride-2 3x3, K = 4608,
    // 49 rows: 6-row blocks streamed its 9.4 MB of weights 9 times; 24-row ones 3 times,
    // 3.1 -> 2.9 ms best-of-7 in CPU time).
    let mb = ((32 * 1024 / k.max(1)) / MR * MR).clamp(4 * MR, MB_MAX);
    (mb, mb * k)
}

/// f32 elements of scratch [`conv2d_packed`] needs for `threads` workers (0 for 1x1
/// convolutions without padding).
pub fn conv2d_packed_scratch_len(g: &ConvGeom, threads: usize) -> usize {
    if g.checked_sizes().is_none() {
        return 0;
    }
    packed_blocking(g).1.saturating_mul(threads.max(1))
}

/// Splits `units` work units (6-row tiles, Winograd tile groups) into contiguous ranges of at
/// most `max_per_range` units, with the number of ranges rounded up to a multiple of
/// `threads` so the static split gives every worker the same number of units (within one per
/// range). Returns the range count; range `r` is `range_bounds(r, ranges, units)`.
pub(crate) fn balanced_ranges(units: usize, max_per_range: usize, threads: usize) -> usize {
    let ranges = units.div_ceil(max_per_range.max(1));
    ranges.div_ceil(threads.max(1)).saturating_mul(threads.max(1)).min(units).max(1)
}

/// Units `[start, end)` of range `r` of `ranges` over `units` (never empty when
/// `ranges <= units`).
#[inline]
pub(crate) fn range_bounds(r: usize, ranges: usize, units: usize) -> (usize, usize) {
    (r * units / ranges, (r + 1) * units / ranges)
}

/// Task split of the packed convolution: `(row ranges, panel chunks, panels per chunk)`.
/// A row range holds at most `mb` rows (whole 6-row tiles). The split never changes results.
fn packed_tasks(g: &ConvGeom, mb: usize, threads: usize) -> (usize, usize, usize) {
    let tiles = (g.n * g.out_h * g.out_w).div_ceil(MR);
    let ranges = balanced_ranges(tiles, mb / MR, threads);
    let panels = (g.out_c / g.groups).div_ceil(NR);
    // Few row ranges (small images, Linear layers): also split the panels so every worker
    // has work.
    let want = 2 * threads;
    let chunks = if ranges * g.groups >= want { 1 } else { want.div_ceil(ranges * g.groups).min(panels) };
    let per_chunk = panels.div_ceil(chunks);
    (ranges, panels.div_ceil(per_chunk), per_chunk)
}

/// `y (NHWC) = act(conv(x, w) + bias + residual)` with `w` in PackedN16 (`groups` any), its
/// elements f32 or f16 (`W`; f16 panels are widened in registers, results as the f32 kernel
/// run on the same, f16-valued, weights — except at `Isa::NeonDotFp16`, which computes in
/// fp16 within a stated bound: see [`packed_micro_kernel_for`]).
///
/// Contract (validated at model load; checked here once, and on violation the function
/// `debug_assert!`s and returns without touching `y`): `x.len() >= n*in_h*in_w*in_c`,
/// `y.len() >= n*out_h*out_w*out_c`, `w.len() >= packed_n16_len(out_c, kh, kw, in_c/groups,
/// groups)`, `bias.len() >= out_c`, `residual.len() >= y`'s element count, and
/// `scratch.len() >= conv2d_packed_scratch_len(g, 1)` (pass
/// `conv2d_packed_scratch_len(g, pool threads)` to use every thread of `pool`).
/// `pool`: the session's [`crate::team::Team`] (any [`Parallel`]), `None` = this thread only.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed<W: WeightElem, P: Parallel + ?Sized>(
    isa: Isa,
    g: &ConvGeom,
    x: &[f32],
    w: &[W],
    ep: &Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    pool: Option<&P>,
) {
    let Some((x_len, y_len)) = g.checked_sizes() else {
        debug_assert!(false, "conv2d_packed: degenerate geometry {g:?}");
        return;
    };
    let i_g = g.in_c / g.groups;
    let o_g = g.out_c / g.groups;
    let k = g.kh * g.kw * i_g;
    let w_len = super::pack::packed_n16_len(g.out_c, g.kh, g.kw, i_g, g.groups);
    let (mb, per) = packed_blocking(g);
    if !slices_fit(g, (x, x_len), (w, w_len), ep, (y, y_len), (scratch, per)) {
        debug_assert!(false, "conv2d_packed: slice lengths do not match {g:?}");
        return;
    }
    let kernel = packed_micro_kernel_for::<W>(isa);
    let threads = pool.map_or(1, |p| p.threads());
    let (blocks, chunks, per_chunk) = packed_tasks(g, mb, threads);
    let panels = o_g.div_ceil(NR);
    let m_total = g.n * g.out_h * g.out_w;
    let direct = g.direct_1x1();
    let yp = SyncPtr(y.as_mut_ptr());
    let task = |t: usize, s: &mut [f32]| {
        let chunk = t % chunks;
        let grp = (t / chunks) % g.groups;
        let (tile0, tile1) = range_bounds(t / chunks / g.groups, blocks, m_total.div_ceil(MR));
        let m0 = tile0 * MR;
        let rows = (tile1 * MR).min(m_total) - m0;
        debug_assert!(rows >= 1 && rows <= mb);
        // A row start offsets: into x (direct) or into the im2col block in `s`.
        let mut a_off = [0usize; MB_MAX];
        let a_base: *const f32 = if direct {
            for (r, off) in a_off.iter_mut().enumerate().take(rows) {
                let m = m0 + r;
                let (b, rem) = (m / (g.out_h * g.out_w), m % (g.out_h * g.out_w));
                let (oh, ow) = (rem / g.out_w, rem % g.out_w);
                *off = ((b * g.in_h + oh * g.stride_h) * g.in_w + ow * g.stride_w) * g.in_c + grp * i_g;
            }
            x.as_ptr()
        } else {
            im2col(g, x, grp, m0, rows, &mut s[..rows * k]);
            for (r, off) in a_off.iter_mut().enumerate().take(rows) {
                *off = r * k;
            }
            s.as_ptr()
        };
        let p_end = ((chunk + 1) * per_chunk).min(panels);
        let nc = (NC_BYTES / (k.min(KC) * NR * 4)).max(1);
        let mut pc = chunk * per_chunk;
        while pc < p_end {
            let pc_end = (pc + nc).min(p_end);
            let mut k0 = 0;
            while k0 < k {
                let kc = KC.min(k - k0);
                let mut r = 0;
                while r < rows {
                    let m = MR.min(rows - r);
                    let pix = m0 + r;
                    // SAFETY: offsets were computed from validated geometry: every A row has k
                    // readable floats from its offset (x row inside x, or im2col row in s), so
                    // a[i] + k0 has kc readable floats.
                    let a: [*const f32; MR] =
                        core::array::from_fn(|i| unsafe { a_base.add(a_off[r + if i < m { i } else { 0 }] + k0) });
                    for p in pc..pc_end {
                        let n = NR.min(o_g - p * NR);
                        let col = grp * o_g + p * NR;
                        let panel = &w[(grp * panels + p) * k * NR..][..k * NR];
                        let tile = MicroTile {
                            m,
                            n,
                            k: kc,
                            a,
                            b: panel[k0 * NR..].as_ptr(),
                            // SAFETY: pixel rows pix..pix+m < m_total and columns col..col+n <=
                            // out_c lie inside y (y.len() >= y_len checked above).
                            c: unsafe { yp.ptr().add(pix * g.out_c + col) },
                            ldc: g.out_c,
                            bias: ep.bias.map_or(core::ptr::null(), |b| b[col..].as_ptr()),
                            residual: ep.residual.map_or(core::ptr::null(), |res| res[pix * g.out_c + col..].as_ptr()),
                            ldr: g.out_c,
                            act: ep.act,
                            load_c: k0 > 0,
                            finish: k0 + kc == k,
                        };
                        // SAFETY: the tile satisfies the MicroTile contract (see the comments on
                        // the pointers above); this task is the only writer of these y elements.
                        unsafe { kernel(&tile) };
                    }
                    r += m;
                }
                k0 += kc;
            }
            pc = pc_end;
        }
    };
    run_tasks(blocks * g.groups * chunks, scratch, per, pool, task);
}

/// `dst.copy_from_slice(src)` for the short channel runs of grouped convolutions: a runtime
/// length makes `copy_from_slice` a `memcpy` call, which for the 4-float runs of a ResNeXt
/// stage-1 conv (32 groups of 4 channels) costs more than the copy itself; the common group
/// widths get fixed-size copies the compiler inlines.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        // Both have length N (matched below), so the conversions succeed.
        if let (Ok(d), Ok(s)) = (<&mut [f32; N]>::try_from(dst), <&[f32; N]>::try_from(src)) {
            *d = *s;
        }
    }
    match dst.len() {
        4 => fixed::<4>(dst, src),
        8 => fixed::<8>(dst, src),
        16 => fixed::<16>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Writes the im2col rows of output pixels `m0..m0+rows` for group `grp` into `dst`
/// (`rows x K`, `K = kh*kw*i_g`, tap-major like PackedN16's k index); taps outside the input
/// are zero.
fn im2col(g: &ConvGeom, x: &[f32], grp: usize, m0: usize, rows: usize, dst: &mut [f32]) {
    let i_g = g.in_c / g.groups;
    let k = g.kh * g.kw * i_g;
    for (r, row) in dst.chunks_exact_mut(k).enumerate().take(rows) {
        let m = m0 + r;
        let (b, rem) = (m / (g.out_h * g.out_w), m % (g.out_h * g.out_w));
        let (oh, ow) = (rem / g.out_w, rem % g.out_w);
        let span = g.kw * i_g;
        for (ki, kseg) in row.chunks_exact_mut(span).enumerate() {
            let ih = (oh * g.stride_h + ki * g.dil_h).wrapping_sub(g.pad_top);
            if ih >= g.in_h {
                kseg.fill(0.0);
                continue;
            }
            let iw0 = (ow * g.stride_w).wrapping_sub(g.pad_left);
            let pix0 = (b * g.in_h + ih) * g.in_w;
            if g.dil_w == 1 && g.groups == 1 && iw0 < g.in_w && iw0 + g.kw <= g.in_w {
                // The whole kernel row is one contiguous run of kw pixels x in_c channels.
                let src = (pix0 + iw0) * g.in_c;
                kseg.copy_from_slice(&x[src..src + span]);
                continue;
            }
            for (kj, seg) in kseg.chunks_exact_mut(i_g).enumerate() {
                let iw = (ow * g.stride_w + kj * g.dil_w).wrapping_sub(g.pad_left);
                if iw < g.in_w {
                    let src = (pix0 + iw) * g.in_c + grp * i_g;
                    copy_short(seg, &x[src..src + i_g]);
                } else {
                    seg.fill(0.0);
                }
            }
        }
    }
}
