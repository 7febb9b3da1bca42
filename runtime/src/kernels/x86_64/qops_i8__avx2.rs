//! Int8 pooling, Add, Quantize and Dequantize on AVX2.
//!
//! The pools and Quantize/Dequantize compile the scalar bodies of
//! [`crate::kernels::int8::generic`] with AVX2 enabled (integer code and single IEEE
//! operations, which the compiler may vectorise but not change: the bytes are those of the
//! generic twin). The contiguous Add row is hand-written on the requantisation of the GEMM
//! epilogue ([`super::gemm_i8i32_6x8__avx2::requant8`]).

use core::arch::x86_64::*;

use super::gemm_i8i32_6x8__avx2::{load8, requant8, store8};
use crate::kernels::generic::pool::Pool2dShape;
use crate::kernels::int8::generic::{self, AddQ, GapQ};
use crate::kernels::int8::PoolKindI8;

/// [`generic::pool_row_i8`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2. (All memory access is through checked slices.)
#[allow(non_snake_case)]
#[target_feature(enable = "avx2")]
pub unsafe fn pool_row_i8__avx2(s: &Pool2dShape, kind: PoolKindI8, x: &[i8], r: usize, yrow: &mut [i8]) {
    generic::pool_row_i8(s, kind, x, r, yrow)
}

/// [`generic::global_avgpool_i8`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2. (All memory access is through checked slices.)
#[allow(non_snake_case)]
#[target_feature(enable = "avx2")]
pub unsafe fn global_avgpool_i8__avx2(n: usize, hw: usize, c: usize, x: &[i8], q: &GapQ, y: &mut [i8]) {
    generic::global_avgpool_i8(n, hw, c, x, q, y)
}

/// [`generic::quantize_f32_i8`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2. (All memory access is through checked slices.)
#[allow(non_snake_case)]
#[target_feature(enable = "avx2")]
pub unsafe fn quantize_f32_i8__avx2(x: &[f32], scale: f32, z: i32, y: &mut [i8]) {
    generic::quantize_f32_i8(x, scale, z, y)
}

/// [`generic::dequantize_i8_f32`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2. (All memory access is through checked slices.)
#[allow(non_snake_case)]
#[target_feature(enable = "avx2")]
pub unsafe fn dequantize_i8_f32__avx2(x: &[i8], scale: f32, z: i32, y: &mut [f32]) {
    generic::dequantize_i8_f32(x, scale, z, y)
}

/// One innermost Add row (see [`generic::add_row_i8`]): 8 lanes at a time with
/// [`requant8`] when both operands are contiguous, the generic body otherwise.
///
/// # Safety
/// The CPU must support AVX2; `a` / `b` reach index `(y.len()-1)*stride` (as the generic
/// body requires; checked by indexing there, and asserted here for the contiguous case).
#[allow(non_snake_case)]
#[target_feature(enable = "avx2")]
pub unsafe fn add_row_i8__avx2(a: &[i8], sa: usize, b: &[i8], sb: usize, q: &AddQ, y: &mut [i8]) {
    if sa != 1 || sb != 1 {
        return generic::add_row_i8(a, sa, b, sb, q, y);
    }
    let n = y.len();
    let (a, b) = (&a[..n], &b[..n]);
    let (z_a, z_b) = (_mm256_set1_epi32(q.z_a), _mm256_set1_epi32(q.z_b));
    let (m_a, m_b) = (_mm256_set1_epi32(q.m_a), _mm256_set1_epi32(q.m_b));
    let shift = _mm256_set1_epi32(q.shift as i32);
    let z_y = _mm256_set1_epi64x(i64::from(q.z_y));
    let (qmin, qmax) = (_mm256_set1_epi64x(i64::from(q.qmin)), _mm256_set1_epi64x(i64::from(q.qmax)));
    let mut j = 0;
    while j < n {
        let w = 8.min(n - j);
        // SAFETY: a, b, y hold n elements and j + w <= n.
        unsafe {
            let av = _mm256_sub_epi32(_mm256_cvtepi8_epi32(load8(a.as_ptr().add(j), w)), z_a);
            let bv = _mm256_sub_epi32(_mm256_cvtepi8_epi32(load8(b.as_ptr().add(j), w)), z_b);
            let v = requant8(av, m_a, bv, m_b, shift, z_y, qmin, qmax);
            store8(y.as_mut_ptr().add(j), w, v);
        }
        j += w;
    }
}
