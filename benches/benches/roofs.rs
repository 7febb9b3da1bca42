//! Instruction throughput roofs of this CPU, the numbers every speed claim is judged against:
//! `vfmadd231ps` (f32 FMA, 8 MACs), `vpmaddwd` + `vpaddd` (exact int8 widened to i16, 16 MACs:
//! what resq's int8 kernels use) and `vpmaddubsw` + `vpmaddwd` + `vpaddd` (u8 x s8 with an
//! i16 intermediate that saturates, 32 MACs: what ONNX Runtime's U8S8 AVX2 kernels use).
//! Each loop keeps 12 independent accumulator chains in registers, so it measures throughput,
//! not latency. Criterion's throughput is in MACs; divide by the clock for MACs per cycle.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

/// Loop iterations per measured call (12 chains each).
const ITERS: u64 = 100_000;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::ITERS;
    use core::arch::x86_64::*;

    macro_rules! chains {
        ($init:expr, |$c:ident| $step:expr) => {{
            let mut c = [$init; 12];
            for _ in 0..ITERS {
                // Unrolled by the compiler: 12 independent dependency chains.
                for $c in c.iter_mut() {
                    *$c = $step;
                }
            }
            c
        }};
    }

    /// # Safety
    /// AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma(a: __m256, b: __m256) -> [__m256; 12] {
        chains!(_mm256_setzero_ps(), |c| _mm256_fmadd_ps(a, b, *c))
    }

    /// `c += madd(c, a)`: each chain feeds its own product, so nothing can be hoisted.
    ///
    /// # Safety
    /// AVX2 available.
    #[target_feature(enable = "avx2")]
    pub unsafe fn madd_i16(a: __m256i) -> [__m256i; 12] {
        chains!(_mm256_set1_epi16(3), |c| _mm256_add_epi32(*c, _mm256_madd_epi16(*c, a)))
    }

    /// `c += madd(maddubs(c, a), ones)`.
    ///
    /// # Safety
    /// AVX2 available.
    #[target_feature(enable = "avx2")]
    pub unsafe fn maddubs_u8(a: __m256i) -> [__m256i; 12] {
        let one = _mm256_set1_epi16(1);
        chains!(_mm256_set1_epi8(3), |c| _mm256_add_epi32(*c, _mm256_madd_epi16(_mm256_maddubs_epi16(*c, a), one)))
    }
}

fn roofs(c: &mut Criterion) {
    let mut group = c.benchmark_group("roof");
    group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        use core::arch::x86_64::*;
        use std::hint::black_box;
        group.throughput(Throughput::Elements(12 * ITERS * 8));
        group.bench_function("vfmadd231ps_f32", |b| {
            // SAFETY: AVX2 and FMA detected above.
            b.iter(|| unsafe { black_box(x86::fma(_mm256_set1_ps(black_box(1.0)), _mm256_set1_ps(0.5))) })
        });
        group.throughput(Throughput::Elements(12 * ITERS * 16));
        group.bench_function("vpmaddwd_i16_exact", |b| {
            // SAFETY: AVX2 detected above.
            b.iter(|| unsafe { black_box(x86::madd_i16(_mm256_set1_epi16(black_box(1)))) })
        });
        group.throughput(Throughput::Elements(12 * ITERS * 32));
        group.bench_function("vpmaddubsw_u8s8_saturating", |b| {
            // SAFETY: AVX2 detected above.
            b.iter(|| unsafe { black_box(x86::maddubs_u8(_mm256_set1_epi8(black_box(1)))) })
        });
    }
    group.finish();
}

criterion_group!(benches, roofs);
criterion_main!(benches);
