//! Scalar twin of the fp32 GEMM micro-kernel: the test oracle for the SIMD kernels and the
//! fallback on every CPU. Same contract as `x86_64::gemm_f32_6x16__avx2_fma`. The f16-weight
//! twin ([`gemm_f16_6x16__generic`]) is the same body reading `half::f16` panels, each value
//! widened with `half::f16::to_f32` (exact) before the f32 arithmetic.

use crate::kernels::gemm::{Act, MicroTile, MR};
use crate::kernels::pack::{WeightElem, NR};

/// `C[m x n] = act(A[m x k] · B[k x 16][.., ..n] (+ C) + bias + residual)` for one tile of at
/// most 6 rows and 16 columns (see [`MicroTile`] for the fields and flags).
///
/// # Safety
/// The pointers in `t` must satisfy the contract documented on [`MicroTile`]: `a[i]` for
/// `i < m` readable for `k` f32 each, `b` readable for `16*k` f32,
/// `c` rows `0..m` readable/writable for `n` f32 at stride `ldc`, and `bias`/`residual`
/// (when non-null and `finish` is set) readable for `n` f32 (residual rows at stride `ldr`).
#[allow(non_snake_case)]
pub unsafe fn gemm_f32_6x16__generic(t: &MicroTile) {
    // SAFETY: forwarded contract.
    unsafe { gemm_6x16_generic::<f32>(t) }
}

/// [`gemm_f32_6x16__generic`] over f16 weight panels (`b` readable for `16*k` `half::f16`).
///
/// # Safety
/// As [`gemm_f32_6x16__generic`].
#[allow(non_snake_case)]
pub unsafe fn gemm_f16_6x16__generic(t: &MicroTile<half::f16>) {
    // SAFETY: forwarded contract.
    unsafe { gemm_6x16_generic::<half::f16>(t) }
}

/// The body of both twins, over the weight element type `W`.
///
/// # Safety
/// As [`gemm_f32_6x16__generic`] (`b` readable for `16*k` `W`).
pub unsafe fn gemm_6x16_generic<W: WeightElem>(t: &MicroTile<W>) {
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

/// Columns per pass: 8, so `M x 8` accumulators plus a B row fit the 16 registers of SSE2 (and
/// NEON's 32) once the compiler vectorises the lane loops.
const HALF: usize = NR / 2;

/// # Safety
/// As [`gemm_f32_6x16__generic`] with `m == M`.
#[inline(always)]
unsafe fn tile<W: WeightElem, const M: usize>(t: &MicroTile<W>) {
    let mut acc = [[0.0f32; NR]; M];
    for half in 0..2 {
        let mut part = [[0.0f32; HALF]; M];
        for kk in 0..t.k {
            // SAFETY: b holds 16*k readable W (contract).
            let bw: &[W; HALF] = unsafe { &*(t.b.add(kk * NR + half * HALF) as *const [W; HALF]) };
            let b: [f32; HALF] = core::array::from_fn(|l| bw[l].to_f32());
            for (i, row) in part.iter_mut().enumerate() {
                // SAFETY: a[i], i < m, is readable for k f32 (contract).
                let a = unsafe { *t.a[i].add(kk) };
                for (r, &bv) in row.iter_mut().zip(&b) {
                    *r += a * bv;
                }
            }
        }
        for (row, p) in acc.iter_mut().zip(&part) {
            row[half * HALF..][..HALF].copy_from_slice(p);
        }
    }
    for (i, row) in acc.iter_mut().enumerate() {
        // SAFETY: row i < m of C is readable and writable for n f32 (contract).
        let c = unsafe { core::slice::from_raw_parts_mut(t.c.add(i * t.ldc), t.n) };
        let row = &mut row[..t.n];
        if t.load_c {
            for (r, &cv) in row.iter_mut().zip(c.iter()) {
                *r += cv;
            }
        }
        if t.finish {
            if !t.bias.is_null() {
                // SAFETY: bias is readable for n f32 when non-null (contract).
                let bias = unsafe { core::slice::from_raw_parts(t.bias, t.n) };
                for (r, &bv) in row.iter_mut().zip(bias) {
                    *r += bv;
                }
            }
            if !t.residual.is_null() {
                // SAFETY: residual row i is readable for n f32 when non-null (contract).
                let res = unsafe { core::slice::from_raw_parts(t.residual.add(i * t.ldr), t.n) };
                for (r, &rv) in row.iter_mut().zip(res) {
                    *r += rv;
                }
            }
            match t.act {
                Act::None => {}
                Act::Relu => row.iter_mut().for_each(|r| *r = r.max(0.0)),
                Act::Clip(lo, hi) => row.iter_mut().for_each(|r| *r = r.max(lo).min(hi)),
            }
        }
        c.copy_from_slice(row);
    }
}
