//! fp32 kernels on real ResNet layer shapes, 1 thread, generic vs AVX2 (when present), and
//! the same kernels reading f16 weights (`*-f16`, AVX2+F16C only).
//! Throughput is in FLOP (2 x direct-convolution MACs), so criterion's "elem/s" reads as
//! FLOP/s; Winograd is counted with the direct MACs too, so the numbers compare directly.
//!
//! `cargo bench -p resq-benches --bench kernels` (filter with e.g. `-- winograd`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use resq::kernels::gemm::{
    conv2d_packed, conv2d_packed_scratch_len, conv2d_winograd, conv2d_winograd_scratch_len, micro_kernel,
    prefer_winograd, Act, ConvGeom, Epilogue, MicroTile,
};
use resq::kernels::pack::{f16, pack_n16, pack_winograd_f43};
use resq::team::{Parallel, Team};
use resq::Isa;

fn to_f16(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Generic];
    if Isa::Avx2Fma.is_supported() {
        v.push(Isa::Avx2Fma);
    } else {
        eprintln!("SKIP: AVX2+FMA not available; benchmarking the generic kernels only");
    }
    v
}

/// Square conv: `(name, hw, in_c, out_c, k, stride)`, padding k/2 (torchvision ResNets).
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

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5)
        .collect()
}

const PACKED: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("r50_stem_7x7s2_3-64@224", 224, 3, 64, 7, 2),
    ("r50_1x1_64-64@56", 56, 64, 64, 1, 1),
    ("r50_1x1_64-256@56", 56, 64, 256, 1, 1),
    ("r50_1x1_256-64@56", 56, 256, 64, 1, 1),
    ("r50_1x1s2_256-512@56", 56, 256, 512, 1, 2),
    ("r50_1x1_1024-256@14", 14, 1024, 256, 1, 1),
    ("r50_3x3s2_128@56", 56, 128, 128, 3, 2),
    ("r50_3x3_64@56", 56, 64, 64, 3, 1),
    ("r50_3x3_128@28", 28, 128, 128, 3, 1),
    ("r50_3x3_256@14", 14, 256, 256, 3, 1),
    ("r50_3x3_512@7", 7, 512, 512, 3, 1),
    ("r20_3x3_16@32", 32, 16, 16, 3, 1),
    ("r20_3x3_32@16", 16, 32, 32, 3, 1),
    ("r20_3x3_64@8", 8, 64, 64, 3, 1),
    ("r50_fc_2048-1000", 1, 2048, 1000, 1, 1),
];

fn conv_benches(c: &mut Criterion) {
    let ep_bias = data(4096, 7);
    for &(name, hw, ci, co, k, s) in PACKED {
        let g = geom(hw, ci, co, k, s);
        let x = data(g.n * g.in_h * g.in_w * g.in_c, 1);
        let w = data(co * k * k * ci, 2);
        let res = data(g.n * g.out_h * g.out_w * g.out_c, 3);
        let mut y = vec![0.0f32; res.len()];
        let ep = Epilogue { bias: Some(&ep_bias[..co]), residual: Some(&res), act: Act::Relu };
        let mut group = c.benchmark_group(format!("conv/{name}"));
        group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
        group.throughput(Throughput::Elements(2 * g.macs()));
        let wp = pack_n16(&w, co, k, k, ci, 1);
        let mut scratch = vec![0.0f32; conv2d_packed_scratch_len(&g, 1)];
        for isa in isas() {
            group.bench_function(BenchmarkId::new("packed", isa), |b| {
                b.iter(|| conv2d_packed(isa, &g, &x, &wp, &ep, &mut y, &mut scratch, None::<&Team>))
            });
        }
        if let Some(isa) = isas().into_iter().find(|&i| i != Isa::Generic) {
            let wh = to_f16(&wp);
            group.bench_function(BenchmarkId::new("packed-f16", isa), |b| {
                b.iter(|| conv2d_packed(isa, &g, &x, &wh, &ep, &mut y, &mut scratch, None::<&Team>))
            });
        }
        if k == 3 && s == 1 {
            let ww = pack_winograd_f43(&w, co, ci);
            let mut scratch = vec![0.0f32; conv2d_winograd_scratch_len(&g, 1)];
            for isa in isas() {
                group.bench_function(BenchmarkId::new("winograd", isa), |b| {
                    b.iter(|| conv2d_winograd(isa, &g, &x, &ww, &ep, &mut y, &mut scratch, None::<&Team>))
                });
            }
            if let Some(isa) = isas().into_iter().find(|&i| i != Isa::Generic) {
                let wh = to_f16(&ww);
                group.bench_function(BenchmarkId::new("winograd-f16", isa), |b| {
                    b.iter(|| conv2d_winograd(isa, &g, &x, &wh, &ep, &mut y, &mut scratch, None::<&Team>))
                });
            }
        }
        group.finish();
    }
}

/// The 6x16 micro-kernel alone, k = 256, operands in L1 (the compute roofline).
fn micro_bench(c: &mut Criterion) {
    let k = 256;
    let a = data(6 * k, 4);
    let b = data(16 * k, 5);
    let mut cbuf = vec![0.0f32; 6 * 16];
    let mut group = c.benchmark_group("micro/gemm_f32_6x16");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(2 * 6 * 16 * k as u64));
    for isa in isas() {
        let kernel = micro_kernel(isa);
        group.bench_function(BenchmarkId::new("k256", isa), |bn| {
            bn.iter(|| {
                let t = MicroTile {
                    m: 6,
                    n: 16,
                    k,
                    a: core::array::from_fn(|i| a[i * k..].as_ptr()),
                    b: b.as_ptr(),
                    c: cbuf.as_mut_ptr(),
                    ldc: 16,
                    bias: core::ptr::null(),
                    residual: core::ptr::null(),
                    ldr: 0,
                    act: Act::None,
                    load_c: false,
                    finish: true,
                };
                // SAFETY: a rows have k floats, b 16*k, c 6 rows of 16.
                unsafe { kernel(&t) };
            })
        });
    }
    group.finish();
}

/// Every convolution of torchvision's ResNet-50 (v1.5: stride on the 3x3) plus the fc layer as
/// a 1x1 GEMM, `(hw, in_c, out_c, k, stride, residual)`, in execution order.
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
                v.push((hw, in_c, planes * 4, 1, s, false)); // downsample
            }
            v.push((out_hw, planes, planes * 4, 1, 1, true));
            in_c = planes * 4;
            hw = out_hw;
        }
    }
    v.push((1, 2048, 1000, 1, 1, false));
    v
}

/// The whole ResNet-50 convolution stack (conv layers only: no pooling), each layer with the
/// algorithm `prefer_winograd` picks, at 1 and 2 threads: the kernel share of a whole-model run.
/// Variants, interleaved in one process: f32 weights on the session's static team (`team`)
/// and on a rayon pool (`rayon`, what sessions used before), and f16 weights on the team.
fn resnet50_stack(c: &mut Criterion) {
    struct Layer {
        g: ConvGeom,
        x: Vec<f32>,
        w: Vec<f32>,
        wh: Vec<f16>,
        bias: Vec<f32>,
        res: Option<Vec<f32>>,
        y: Vec<f32>,
        winograd: bool,
    }
    let mut layers: Vec<Layer> = resnet50_layers()
        .into_iter()
        .enumerate()
        .map(|(i, (hw, ci, co, k, s, res))| {
            let g = geom(hw, ci, co, k, s);
            let w = data(co * k * k * ci, i as u32);
            let winograd = prefer_winograd(&g);
            let w = if winograd { pack_winograd_f43(&w, co, ci) } else { pack_n16(&w, co, k, k, ci, 1) };
            let y_len = g.n * g.out_h * g.out_w * g.out_c;
            Layer {
                g,
                x: data(g.n * g.in_h * g.in_w * g.in_c, 1),
                wh: to_f16(&w),
                w,
                bias: data(co, 2),
                res: res.then(|| data(y_len, 3)),
                y: vec![0.0; y_len],
                winograd,
            }
        })
        .collect();
    let flops: u64 = layers.iter().map(|l| 2 * l.g.macs()).sum();
    let mut group = c.benchmark_group("resnet50_conv_stack");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(flops));
    let Some(isa) = isas().pop() else { return };
    fn run_stack<P: Parallel + ?Sized>(
        isa: Isa,
        layers: &mut [Layer],
        scratch: &mut [f32],
        pool: Option<&P>,
        half: bool,
    ) {
        for l in layers.iter_mut() {
            let ep = Epilogue { bias: Some(&l.bias), residual: l.res.as_deref(), act: Act::Relu };
            match (l.winograd, half) {
                (true, false) => conv2d_winograd(isa, &l.g, &l.x, &l.w, &ep, &mut l.y, scratch, pool),
                (true, true) => conv2d_winograd(isa, &l.g, &l.x, &l.wh, &ep, &mut l.y, scratch, pool),
                (false, false) => conv2d_packed(isa, &l.g, &l.x, &l.w, &ep, &mut l.y, scratch, pool),
                (false, true) => conv2d_packed(isa, &l.g, &l.x, &l.wh, &ep, &mut l.y, scratch, pool),
            }
        }
    }
    for threads in [1usize, 2] {
        let Ok(team) = Team::new(threads) else { return };
        let Ok(rayon) = rayon::ThreadPoolBuilder::new().num_threads(threads).build() else { return };
        let scratch_len = layers
            .iter()
            .map(|l| {
                if l.winograd {
                    conv2d_winograd_scratch_len(&l.g, threads)
                } else {
                    conv2d_packed_scratch_len(&l.g, threads)
                }
            })
            .max()
            .unwrap_or(0);
        let mut scratch = vec![0.0f32; scratch_len];
        let team = (threads > 1).then_some(&team);
        let rayon = (threads > 1).then_some(&rayon);
        group.bench_function(BenchmarkId::new(format!("{isa}/f32/team"), format!("{threads}t")), |b| {
            b.iter(|| run_stack(isa, &mut layers, &mut scratch, team, false))
        });
        if threads > 1 {
            group.bench_function(BenchmarkId::new(format!("{isa}/f32/rayon"), format!("{threads}t")), |b| {
                b.iter(|| run_stack(isa, &mut layers, &mut scratch, rayon, false))
            });
        }
        group.bench_function(BenchmarkId::new(format!("{isa}/f16/team"), format!("{threads}t")), |b| {
            b.iter(|| run_stack(isa, &mut layers, &mut scratch, team, true))
        });
    }
    group.finish();
}

criterion_group!(benches, micro_bench, conv_benches, resnet50_stack);
criterion_main!(benches);
