//! Int8 kernels on real ResNet-50 layer shapes, next to the fp32 packed GEMM on the same
//! shapes. Throughput is in multiply-accumulates (direct-convolution MACs), so criterion's
//! "elem/s" reads as MAC/s for both precisions (fp32 GFLOP/s = 2 x its MAC/s).
//!
//! `cargo bench -p resq-benches --bench kernels_i8` (filter with e.g. `-- i8conv/`).
//!
//! Groups:
//! - `i8conv/<layer>`: `i8/<isa>` (conv2d_i8, residual fused where the layer has one),
//!   `i8wino/<isa>` on the 3x3 stride-1 layers (exact int8 Winograd F(2x2,3x3),
//!   conv2d_i8_wino: same bytes, MACs still counted as direct ones) and `f32/<isa>`
//!   (conv2d_packed, same shape and fusion), 1 thread.
//! - `i8micro`: the 6x8 micro-kernel alone, K = 256, operands in L1 (compute roofline), and
//!   the measured alternative: a `vpmaddubsw` sign-trick kernel (4x16, int8 A) that lives only
//!   here, to justify the `vpmaddwd` choice.
//! - `resnet50_i8_conv_stack`: all 53 ResNet-50 convolutions + fc in int8, 1 and 2 threads.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use resq::kernels::gemm::{conv2d_packed, conv2d_packed_scratch_len, Act, ConvGeom, Epilogue};
use resq::kernels::int8::generic::MicroTileI8;
use resq::kernels::int8::pack::pack_i8_n16k4;
use resq::kernels::int8::winograd::{conv2d_i8_wino, conv2d_i8_wino_scratch_len, transform_weights_f23};
use resq::kernels::int8::{conv2d_i8, conv2d_i8_scratch_len, micro_kernel, QEpilogue};
use resq::kernels::pack::pack_n16;
use resq::Isa;

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Generic];
    if Isa::Avx2Fma.is_supported() {
        v.push(Isa::Avx2Fma);
    } else {
        eprintln!("SKIP: AVX2 not available; benchmarking the generic kernels only");
    }
    v
}

/// Square conv, padding k/2 (torchvision ResNets).
fn geom(hw: usize, in_c: usize, out_c: usize, k: usize, s: usize) -> ConvGeom {
    let pad = k / 2;
    let out = (hw + 2 * pad - k) / s + 1;
    ConvGeom {
        n: 1,
        in_h: hw,
        in_w: hw,
        in_c,
        out_h: out,
        out_w: out,
        out_c,
        kh: k,
        kw: k,
        stride_h: s,
        stride_w: s,
        pad_top: pad,
        pad_left: pad,
        dil_h: 1,
        dil_w: 1,
        groups: 1,
    }
}

fn hash(i: usize, seed: u32) -> u32 {
    (i as u32).wrapping_mul(2654435761).wrapping_add(seed.wrapping_mul(0x9e37_79b9)) >> 7
}

fn data_i8(n: usize, seed: u32) -> Vec<i8> {
    (0..n).map(|i| hash(i, seed) as i8).collect()
}

fn weights_i8(n: usize, seed: u32) -> Vec<i8> {
    (0..n).map(|i| (hash(i, seed) as i8).max(-127)).collect()
}

fn data_f32(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| (hash(i, seed) >> 1) as f32 / (1u32 << 24) as f32 - 0.5).collect()
}

/// Realistic qparams: outputs spread over the int8 range.
fn qparams(out_c: usize, k: usize) -> Vec<i32> {
    let shift = 30 + (80.0 * (k as f64).sqrt()).log2().round() as i32;
    (0..out_c).flat_map(|o| [(o as i32 - 50) * 1000, (1 << 30) + o as i32, 1 << 29, shift]).collect()
}

/// `(name, hw, in_c, out_c, k, stride, residual)`.
const LAYERS: &[(&str, usize, usize, usize, usize, usize, bool)] = &[
    ("r50_stem_7x7s2_3-64@224", 224, 3, 64, 7, 2, false),
    ("r50_1x1_64-64@56", 56, 64, 64, 1, 1, false),
    ("r50_1x1_64-256@56", 56, 64, 256, 1, 1, true),
    ("r50_1x1_256-64@56", 56, 256, 64, 1, 1, false),
    ("r50_3x3_64@56", 56, 64, 64, 3, 1, false),
    ("r50_3x3s2_128@56", 56, 128, 128, 3, 2, false),
    ("r50_3x3_128@28", 28, 128, 128, 3, 1, false),
    ("r50_1x1_1024-256@14", 14, 1024, 256, 1, 1, false),
    ("r50_3x3_256@14", 14, 256, 256, 3, 1, false),
    ("r50_3x3_512@7", 7, 512, 512, 3, 1, false),
    ("r50_1x1_512-2048@7", 7, 512, 2048, 1, 1, true),
    ("r50_fc_2048-1000", 1, 2048, 1000, 1, 1, false),
];

fn conv_benches(c: &mut Criterion) {
    for &(name, hw, ci, co, k, s, res) in LAYERS {
        let g = geom(hw, ci, co, k, s);
        let kk = k * k * ci;
        let mut group = c.benchmark_group(format!("i8conv/{name}"));
        group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
        group.throughput(Throughput::Elements(g.macs()));
        // int8
        let x = data_i8(g.x_len(), 1);
        let w = pack_i8_n16k4(&weights_i8(co * kk, 2), co, k, k, ci, 1);
        let qp = qparams(co, kk);
        let r8 = data_i8(g.y_len(), 3);
        let ep = QEpilogue { qparams: &qp, residual: res.then_some(&r8[..]), z_res: -3, z_y: 5, qmin: -128, qmax: 127 };
        let mut y8 = vec![0i8; g.y_len()];
        let mut scratch = vec![0.0f32; conv2d_i8_scratch_len(&g, 1)];
        for isa in isas() {
            group.bench_function(BenchmarkId::new("i8", isa), |b| {
                b.iter(|| conv2d_i8(isa, &g, &x, 7, &w, &ep, &mut y8, &mut scratch, None::<&rayon::ThreadPool>))
            });
        }
        if k == 3 && s == 1 {
            let u = transform_weights_f23(&w, co, ci).expect("winograd weights");
            let mut scratch = vec![0.0f32; conv2d_i8_wino_scratch_len(&g, 1)];
            let mut yw = vec![0i8; g.y_len()];
            for isa in isas() {
                // Same bytes as the direct kernel (checked once, outside the timing).
                let mut sd = vec![0.0f32; conv2d_i8_scratch_len(&g, 1)];
                conv2d_i8(isa, &g, &x, 7, &w, &ep, &mut y8, &mut sd, None::<&rayon::ThreadPool>);
                conv2d_i8_wino(isa, &g, &x, 7, &u, &ep, &mut yw, &mut scratch, None::<&rayon::ThreadPool>);
                assert_eq!(y8, yw, "winograd and direct bytes differ on {name} ({isa})");
                group.bench_function(BenchmarkId::new("i8wino", isa), |b| {
                    b.iter(|| {
                        conv2d_i8_wino(isa, &g, &x, 7, &u, &ep, &mut yw, &mut scratch, None::<&rayon::ThreadPool>)
                    })
                });
            }
        }
        // fp32 on the same shape
        if Isa::Avx2Fma.is_supported() {
            let isa = Isa::Avx2Fma;
            let xf = data_f32(g.x_len(), 1);
            let wf = pack_n16(&data_f32(co * kk, 2), co, k, k, ci, 1);
            let bias = data_f32(co, 4);
            let rf = data_f32(g.y_len(), 3);
            let ep = Epilogue { bias: Some(&bias), residual: res.then_some(&rf[..]), act: Act::Relu };
            let mut yf = vec![0.0f32; g.y_len()];
            let mut scratch = vec![0.0f32; conv2d_packed_scratch_len(&g, 1)];
            group.bench_function(BenchmarkId::new("f32", isa), |b| {
                b.iter(|| conv2d_packed(isa, &g, &xf, &wf, &ep, &mut yf, &mut scratch, None::<&rayon::ThreadPool>))
            });
        }
        group.finish();
    }
}

/// The micro-kernels alone, K = 256, operands in L1.
fn micro_bench(c: &mut Criterion) {
    let k4 = 64;
    let a: Vec<i16> = data_i8(6 * 4 * k4, 4).into_iter().map(i16::from).collect();
    let b = weights_i8(64 * k4, 5);
    let qp = qparams(8, 4 * k4);
    let mut y = vec![0i8; 6 * 8];
    let mut group = c.benchmark_group("i8micro");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements((6 * 8 * 4 * k4) as u64));
    for isa in isas() {
        let kernel = micro_kernel(isa);
        group.bench_function(BenchmarkId::new("gemm_i8i32_6x8_k256", isa), |bn| {
            bn.iter(|| {
                let t = MicroTileI8 {
                    m: 6,
                    n: 8,
                    k4,
                    a: core::array::from_fn(|i| a[i * 4 * k4..].as_ptr()),
                    b: b.as_ptr(),
                    qp: qp.as_ptr(),
                    y: y.as_mut_ptr(),
                    ldy: 8,
                    residual: core::ptr::null(),
                    ldr: 0,
                    z_res: 0,
                    z_y: 0,
                    qmin: -128,
                    qmax: 127,
                    lshift_ok: false,
                };
                // SAFETY: a rows hold 4*k4 i16, b 64*k4 bytes, qp 32 i32, y 6 rows of 8.
                unsafe { kernel(&t) };
            })
        });
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2Fma.is_supported() {
        let a8 = data_i8(4 * 4 * k4, 4);
        let mut out = [0i32; 4 * 16];
        group.throughput(Throughput::Elements((4 * 16 * 4 * k4) as u64));
        group.bench_function("maddubs_sign_4x16_k256/avx2", |bn| {
            // SAFETY: AVX2 present; a8 holds 4 rows of 4*k4 bytes, b 64*k4 bytes.
            bn.iter(|| unsafe { maddubs::gemm_4x16(&a8, 4 * k4, &b, k4, &mut out) })
        });
        // Sanity: the alternative computes the same sums as a plain loop (run once here: a
        // criterion filter may skip the timed closure).
        // SAFETY: as above.
        unsafe { maddubs::gemm_4x16(&a8, 4 * k4, &b, k4, &mut out) };
        let mut want = [0i32; 64];
        for (r, row) in want.chunks_exact_mut(16).enumerate() {
            for (l, v) in row.iter_mut().enumerate() {
                *v = (0..4 * k4).map(|kk| a8[r * 4 * k4 + kk] as i32 * b[(kk / 4) * 64 + l * 4 + kk % 4] as i32).sum();
            }
        }
        assert_eq!(out, want, "maddubs alternative computes wrong sums");
    }
    group.finish();
}

/// The `vpmaddubsw` alternative of the A/B comparison (not used by the runtime): int8 A
/// rows, `|a|` as u8 times `sign(w, a)`; pair sums <= 2*128*127 = 32512 never saturate
/// because weights are never -128. 4 rows x 16 channels, 8 accumulators + 2 weight vectors.
#[cfg(target_arch = "x86_64")]
mod maddubs {
    use core::arch::x86_64::*;

    /// # Safety
    /// AVX2 available; `a` holds 4 rows of `lda >= 4*k4` bytes, `b` holds `64*k4` bytes of
    /// PackedN16K4 weights in [-127, 127].
    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm_4x16(a: &[i8], lda: usize, b: &[i8], k4: usize, out: &mut [i32; 64]) {
        assert!(a.len() >= 3 * lda + 4 * k4 && b.len() >= 64 * k4);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 2]; 4];
        // SAFETY: bounds asserted above.
        unsafe {
            for kk in 0..k4 {
                let w0 = _mm256_loadu_si256(b.as_ptr().add(kk * 64) as *const __m256i);
                let w1 = _mm256_loadu_si256(b.as_ptr().add(kk * 64 + 32) as *const __m256i);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av =
                        _mm256_set1_epi32(core::ptr::read_unaligned(a.as_ptr().add(r * lda + kk * 4) as *const i32));
                    let abs = _mm256_abs_epi8(av);
                    let p0 = _mm256_maddubs_epi16(abs, _mm256_sign_epi8(w0, av));
                    let p1 = _mm256_maddubs_epi16(abs, _mm256_sign_epi8(w1, av));
                    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
                    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm256_storeu_si256(out.as_mut_ptr().add(r * 16) as *mut __m256i, acc[0]);
                _mm256_storeu_si256(out.as_mut_ptr().add(r * 16 + 8) as *mut __m256i, acc[1]);
            }
        }
    }
}

/// Every convolution of torchvision's ResNet-50 (v1.5) plus the fc layer, `(hw, in_c, out_c,
/// k, stride, residual)`, in execution order.
fn resnet50_layers() -> Vec<(usize, usize, usize, usize, usize, bool)> {
    let mut v = vec![(224, 3, 64, 7, 2, false)];
    let mut in_c = 64;
    let mut hw = 56;
    for (planes, blocks, stride) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)] {
        for b in 0..blocks {
            let s = if b == 0 { stride } else { 1 };
            v.push((hw, in_c, planes, 1, 1, false));
            v.push((hw, planes, planes, 3, s, false));
            let out_hw = (hw - 1) / s + 1;
            if b == 0 {
                v.push((hw, in_c, planes * 4, 1, s, false));
            }
            v.push((out_hw, planes, planes * 4, 1, 1, true));
            in_c = planes * 4;
            hw = out_hw;
        }
    }
    v.push((1, 2048, 1000, 1, 1, false));
    v
}

fn resnet50_stack(c: &mut Criterion) {
    struct Layer {
        g: ConvGeom,
        x: Vec<i8>,
        w: Vec<i8>,
        qp: Vec<i32>,
        res: Option<Vec<i8>>,
        y: Vec<i8>,
    }
    let mut layers: Vec<Layer> = resnet50_layers()
        .into_iter()
        .enumerate()
        .map(|(i, (hw, ci, co, k, s, res))| {
            let g = geom(hw, ci, co, k, s);
            Layer {
                g,
                x: data_i8(g.x_len(), 1),
                w: pack_i8_n16k4(&weights_i8(co * k * k * ci, i as u32), co, k, k, ci, 1),
                qp: qparams(co, k * k * ci),
                res: res.then(|| data_i8(g.y_len(), 3)),
                y: vec![0; g.y_len()],
            }
        })
        .collect();
    let macs: u64 = layers.iter().map(|l| l.g.macs()).sum();
    let mut group = c.benchmark_group("resnet50_i8_conv_stack");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(macs));
    let isa = *isas().last().expect("generic is always there");
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        let scratch_len = layers.iter().map(|l| conv2d_i8_scratch_len(&l.g, threads)).max().unwrap_or(0);
        let mut scratch = vec![0.0f32; scratch_len];
        group.bench_function(BenchmarkId::new(format!("{isa}"), format!("{threads}t")), |b| {
            b.iter(|| {
                for l in layers.iter_mut() {
                    let ep = QEpilogue {
                        qparams: &l.qp,
                        residual: l.res.as_deref(),
                        z_res: 1,
                        z_y: -2,
                        qmin: -2,
                        qmax: 127,
                    };
                    let pool = (threads > 1).then_some(&pool);
                    conv2d_i8(isa, &l.g, &l.x, 3, &l.w, &ep, &mut l.y, &mut scratch, pool);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, conv_benches, micro_bench, resnet50_stack);
criterion_main!(benches);
