//! Whole-model latency, batch 1: ResNet-20 (CIFAR, shipped in fixtures/) and the ImageNet-shaped
//! ResNet-50 export from `../shared/data` (skipped with a note when absent), at 1 and 2 threads.
//! The models are converted at bench start with the resq-convert library, fp32 and fp16
//! (f16 weights, f32 activations); the two precisions are benched side by side in one process.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn convert(path: &Path, precision: resq_convert::Precision) -> Option<resq::Model> {
    if !path.exists() {
        eprintln!("models bench: {} is absent, skipped", path.display());
        return None;
    }
    let opts = resq_convert::ConvertOptions { precision, ..Default::default() };
    let bytes =
        resq_convert::convert_file(path, &opts).unwrap_or_else(|e| panic!("converting {}: {e}", path.display()));
    Some(resq::Model::from_bytes(bytes).unwrap_or_else(|e| panic!("loading {}: {e}", path.display())))
}

fn bench_models(c: &mut Criterion) {
    let models = [
        ("resnet20", root().join("fixtures/resnet20/resnet20.onnx")),
        ("resnet50", root().join("../shared/data/models/imagenet-random/resnet50.onnx")),
    ];
    let mut group = c.benchmark_group("model");
    group.sample_size(10);
    for (name, path) in models {
        let Some(model) = convert(&path, resq_convert::Precision::Fp32) else { continue };
        let Some(model16) = convert(&path, resq_convert::Precision::Fp16) else { continue };
        // Fixed-seed pseudo-random input (xorshift), like `resq bench`.
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let input: Vec<f32> = (0..model.input_len())
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        for threads in [1usize, 2] {
            for (prec, m) in [("fp32", &model), ("fp16", &model16)] {
                let mut session = m.session(resq::Options::default().threads(threads)).expect("session");
                let id = format!("{name}/{prec}/{}/t{threads}", session.isa());
                group.bench_function(id, |b| b.iter(|| session.run(&input).map(|o| o[0]).expect("run")));
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_models);
criterion_main!(benches);
