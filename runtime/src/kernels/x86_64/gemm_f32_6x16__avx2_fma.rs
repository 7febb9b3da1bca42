//! fp32 GEMM micro-kernel, 6 rows x 16 columns, AVX2 + FMA.
//!
//! Register tile (12 accumulators + 2 B vectors + 1 broadcast = 15 of 16 ymm):
//!
//! ```text
//!            b[k][0..8]  b[k][8..16]
//! a[0][k]  | acc0[0]   | acc1[0]  |
//!   ...    |   ...     |   ...    |
//! a[5][k]  | acc0[5]   | acc1[5]  |
//! ```
//!
//! Per k: two 8-wide loads of the packed B row, one broadcast per A row, 12 FMAs. The row
//! count is a const parameter so a partial tile (m < 6) only does the FMAs it needs (m = 1
//! is the GEMV case of Linear layers).
//!
//! The body is generic over the weight element: with f16 panels (`W = half::f16`, see
//! `gemm_f16_6x16__avx2_fma.rs`) the two 8-wide B loads become two F16C `vcvtph2ps` of 8
//! halves each (16 bytes), widened to f32 in registers; everything else is identical.

use core::arch::x86_64::*;

use crate::kernels::gemm::{Act, MicroTile, MR};
use crate::kernels::pack::{WeightElem, NR};

/// AVX2+FMA twin of [`crate::kernels::generic::gemm::gemm_f32_6x16__generic`].
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `t` must satisfy the pointer contract documented on
/// [`MicroTile`] (`a[i]` readable for `k` f32 for `i < m`, `b` readable for `16*k` f32, C rows
/// `0..m` readable/writable for `n` f32 at stride `ldc`, bias/residual readable for `n` f32).
#[allow(non_snake_case)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_f32_6x16__avx2_fma(t: &MicroTile) {
    // SAFETY: forwarded contract (AVX2+FMA; the f32 body uses no F16C instruction).
    unsafe { body::<f32>(t) }
}

/// The kernel for weight element `W` (f32, or f16 widened with F16C).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C (all three are part of `Isa::Avx2Fma`), and `t`
/// must satisfy the [`MicroTile`] contract (`b` readable for `16*k` `W`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_6x16_avx2<W: WeightElem>(t: &MicroTile<W>) {
    // SAFETY: forwarded contract.
    unsafe { body::<W>(t) }
}

/// # Safety
/// As [`gemm_6x16_avx2`]; `W = f32` needs no F16C.
#[inline(always)]
unsafe fn body<W: WeightElem>(t: &MicroTile<W>) {
    debug_assert!(t.m >= 1 && t.m <= MR && t.n >= 1 && t.n <= NR);
    // SAFETY: forwarded contract; each arm matches the row count.
    unsafe {
        match t.m {
            1 => tile::<W, 1>(t),
            2 => tile::<W, 2>(t),
            3 => tile::<W, 3>(t),
            4 => tile::<W, 4>(t),
            5 => tile::<W, 5>(t),
            _ => tile::<W, 6>(t),
        }
    }
}

/// Row `k` of a 16-wide packed panel as two f32 vectors.
///
/// # Safety
/// `b` readable for 16 `W`; AVX (and F16C when `W` is f16) available.
#[inline(always)]
unsafe fn load_b<W: WeightElem>(b: *const W) -> (__m256, __m256) {
    // SAFETY: 16 elements readable (contract); unaligned loads.
    unsafe {
        if W::IS_F16 {
            let p = b as *const __m128i;
            (_mm256_cvtph_ps(_mm_loadu_si128(p)), _mm256_cvtph_ps(_mm_loadu_si128(p.add(1))))
        } else {
            let p = b as *const f32;
            (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
        }
    }
}

/// Lane masks selecting lanes `< n` of the low and high halves of a 16-lane row.
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn lane_masks(n: usize) -> (__m256i, __m256i) {
    let nv = _mm256_set1_epi32(n as i32);
    (
        _mm256_cmpgt_epi32(nv, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
        _mm256_cmpgt_epi32(nv, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)),
    )
}

/// Loads `n <= 16` floats into two vectors, zero-filling lanes `>= n` without touching memory
/// past `n`.
///
/// # Safety
/// `p` readable for `n` f32; AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load16(p: *const f32, n: usize) -> (__m256, __m256) {
    // SAFETY: full tiles read 16 floats. Partial ones use masked loads, which do not access
    // masked-off lanes (no fault, no read); the high half is only addressed when n > 8, so
    // `p.add(8)` stays inside the n readable floats' allocation.
    unsafe {
        if n == NR {
            (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
        } else {
            let (ml, mh) = lane_masks(n);
            let hi = if n > 8 { _mm256_maskload_ps(p.add(8), mh) } else { _mm256_setzero_ps() };
            (_mm256_maskload_ps(p, ml), hi)
        }
    }
}

/// Stores the first `n <= 16` lanes of `(lo, hi)` to `p`.
///
/// # Safety
/// `p` writable for `n` f32; AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store16(p: *mut f32, n: usize, lo: __m256, hi: __m256) {
    // SAFETY: full tiles write 16 floats. Partial ones use masked stores, which write only
    // lanes < n (masked-off lanes are not accessed); the high half only when n > 8.
    // (Before: a stack buffer and a `memcpy` of runtime length per row, which dominated the
    // 4-column tiles of grouped convolutions.)
    unsafe {
        if n == NR {
            _mm256_storeu_ps(p, lo);
            _mm256_storeu_ps(p.add(8), hi);
        } else {
            let (ml, mh) = lane_masks(n);
            _mm256_maskstore_ps(p, ml, lo);
            if n > 8 {
                _mm256_maskstore_ps(p.add(8), mh, hi);
            }
        }
    }
}

/// # Safety
/// As [`gemm_6x16_avx2`] with `m == M`.
#[inline(always)]
unsafe fn tile<W: WeightElem, const M: usize>(t: &MicroTile<W>) {
    let mut acc0 = [_mm256_setzero_ps(); M];
    let mut acc1 = [_mm256_setzero_ps(); M];
    let a: [*const f32; M] = core::array::from_fn(|i| t.a[i]);
    let mut b = t.b;
    // SAFETY: a[i] readable for k f32, b for 16*k W (contract).
    unsafe {
        for kk in 0..t.k {
            let (b0, b1) = load_b(b);
            for i in 0..M {
                let ai = _mm256_broadcast_ss(&*a[i].add(kk));
                acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
                acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
            }
            b = b.add(NR);
        }
    }
    let n = t.n;
    let (bias0, bias1) = if t.finish && !t.bias.is_null() {
        // SAFETY: bias readable for n f32 (contract).
        unsafe { load16(t.bias, n) }
    } else {
        (_mm256_setzero_ps(), _mm256_setzero_ps())
    };
    let (lo, hi) = match t.act {
        Act::None => (_mm256_set1_ps(f32::NEG_INFINITY), _mm256_set1_ps(f32::INFINITY)),
        Act::Relu => (_mm256_setzero_ps(), _mm256_set1_ps(f32::INFINITY)),
        Act::Clip(lo, hi) => (_mm256_set1_ps(lo), _mm256_set1_ps(hi)),
    };
    let clamp = !matches!(t.act, Act::None);
    for i in 0..M {
        // SAFETY: row i < m of C (and of residual) is valid for n f32 (contract).
        unsafe {
            let c = t.c.add(i * t.ldc);
            let (mut v0, mut v1) = (acc0[i], acc1[i]);
            if t.load_c {
                let (c0, c1) = load16(c, n);
                v0 = _mm256_add_ps(v0, c0);
                v1 = _mm256_add_ps(v1, c1);
            }
            if t.finish {
                if !t.bias.is_null() {
                    v0 = _mm256_add_ps(v0, bias0);
                    v1 = _mm256_add_ps(v1, bias1);
                }
                if !t.residual.is_null() {
                    let (r0, r1) = load16(t.residual.add(i * t.ldr), n);
                    v0 = _mm256_add_ps(v0, r0);
                    v1 = _mm256_add_ps(v1, r1);
                }
                if clamp {
                    // max(v, lo) returns lo for a NaN v, like f32::max in the generic twin.
                    v0 = _mm256_min_ps(_mm256_max_ps(v0, lo), hi);
                    v1 = _mm256_min_ps(_mm256_max_ps(v1, lo), hi);
                }
            }
            store16(c, n, v0, v1);
        }
    }
}
