//! Whole models against ONNX Runtime: ResNet-20 (BN folded by the exporter, and with BN
//! nodes kept) and the ImageNet-shaped ResNet-50. Every row of `refs/<model>/input.npy` must
//! give logits within relative L2 error 1e-4 of `logits.npy` and the same top-1.

mod common;

use resq_convert::{convert_file, write_atomic, ConvertOptions, Packing};
use std::path::Path;

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

fn rel_l2(got: &[f32], want: &[f32]) -> f32 {
    let num: f32 = got.iter().zip(want).map(|(g, w)| (g - w) * (g - w)).sum();
    let den: f32 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Convert with `packing`, load from bytes, run reference rows with the session `opts`.
/// `rows`: how many rows to check (`None` = all). Returns the model.
fn check_with(
    data: &Path,
    onnx: &str,
    refs: &str,
    packing: Packing,
    opts: resq::Options,
    rows: Option<usize>,
) -> resq::Model {
    let copts = ConvertOptions { packing, ..Default::default() };
    let bytes = convert_file(&data.join(onnx), &copts).unwrap_or_else(|e| panic!("{onnx}: {e}"));
    let model = resq::Model::from_bytes(bytes).unwrap_or_else(|e| panic!("{onnx}: {e}"));
    let (ishape, input) = resq::npy::read_f32(&data.join(format!("refs/{refs}/input.npy"))).unwrap();
    let (lshape, logits) = resq::npy::read_f32(&data.join(format!("refs/{refs}/logits.npy"))).unwrap();
    assert_eq!(lshape[0], ishape[0]);
    let rows = rows.unwrap_or(ishape[0]).min(ishape[0]);
    let (il, ol) = (model.input_len(), model.output_len());
    assert_eq!(il * ishape[0], input.len(), "{onnx}: input length");
    assert_eq!(ol * ishape[0], logits.len(), "{onnx}: output length");
    let mut s = model.session(opts).unwrap();
    let mut worst = 0f32;
    for r in 0..rows {
        let got = s.run(&input[r * il..(r + 1) * il]).unwrap();
        let want = &logits[r * ol..(r + 1) * ol];
        let e = rel_l2(got, want);
        worst = worst.max(e);
        assert!(e <= 1e-4, "{onnx} ({packing:?}, {}) row {r}: relative L2 error {e:e}", s.isa());
        assert_eq!(argmax(got), argmax(want), "{onnx} ({packing:?}, {}) row {r}: top-1 differs", s.isa());
    }
    println!("{onnx} ({packing:?}, {}, {} threads): {rows} rows, worst relative L2 {worst:e}", s.isa(), s.threads());
    drop(s);
    model
}

/// Every reference row through the fast kernels at the best ISA tier and at the generic tier
/// (their scalar twins), and through the direct reference kernels (`rows_ref` rows).
/// Emulated (qemu-user, where the scalar kernels run 20-50x slower than natively), each of the
/// three passes checks only the first `rows_emulated` rows, with the same bar, so that this
/// file stays within CI's time budget.
fn check(data: &Path, onnx: &str, refs: &str, rows_ref: Option<usize>, rows_emulated: usize) -> resq::Model {
    let cap = |rows: Option<usize>| {
        if common::emulated() {
            Some(rows.unwrap_or(usize::MAX).min(rows_emulated))
        } else {
            rows
        }
    };
    let generic = resq::Options::default().threads(1).max_isa(resq::Isa::Generic);
    check_with(data, onnx, refs, Packing::Fast, generic, cap(None));
    check_with(data, onnx, refs, Packing::Reference, resq::Options::default().threads(2), cap(rows_ref));
    check_with(data, onnx, refs, Packing::Fast, resq::Options::default().threads(2), cap(None))
}

fn algos(m: &resq::Model) -> Vec<&'static str> {
    m.ops().iter().filter(|o| o.kind == "Conv2d" || o.kind == "Linear").map(|o| o.algo).collect()
}

fn kinds(m: &resq::Model) -> Vec<String> {
    m.ops().iter().map(|o| o.kind.to_string()).collect()
}

#[test]
fn resnet20_matches_onnxruntime() {
    let Some(data) = common::data_dir("resnet20_matches_onnxruntime") else { return };
    let m = check(&data, "models/cifar10-resnet20/resnet20.onnx", "resnet20", None, 5);
    let a = algos(&m);
    // 19 convs: the 3-channel stem and the two stride-2 3x3s on the GEMM, 16 stride-1 3x3s on Winograd.
    assert_eq!(a.iter().filter(|&&a| a == "winograd-f43").count(), 16, "3x3 stride-1 convs use Winograd: {a:?}");
    assert!(!a.contains(&"direct"), "no layer left on the direct path: {a:?}");
    let k = kinds(&m);
    assert!(!k.iter().any(|k| k == "Add"), "residual adds must be fused: {k:?}");
    assert_eq!(k.iter().filter(|k| *k == "Conv2d").count(), 19);
    let info = m.info();
    assert_eq!(info.input_dims, [1, 3, 32, 32]);
    assert_eq!(info.preprocess.preset, resq::PreprocessPreset::Cifar);
    assert_eq!(info.preprocess.mean, [0.485, 0.456, 0.406]);
    assert!(info.source.starts_with("resnet20.onnx (ONNX opset 17, producer pytorch"), "{}", info.source);
}

#[test]
fn resnet20_bn_folds_batchnorm() {
    let Some(data) = common::data_dir("resnet20_bn_folds_batchnorm") else { return };
    let m = check(&data, "models/cifar10-resnet20/resnet20-bn.onnx", "resnet20-bn", None, 5);
    let k = kinds(&m);
    assert!(!k.iter().any(|k| k == "ChannelAffine"), "every BN must fold into its conv: {k:?}");
    assert!(!k.iter().any(|k| k == "Add"), "residual adds must be fused: {k:?}");
}

#[test]
fn resnet50_matches_onnxruntime() {
    let Some(data) = common::data_dir("resnet50_matches_onnxruntime") else { return };
    let m = check(&data, "models/imagenet-random/resnet50.onnx", "resnet50", Some(4), 1);
    let a = algos(&m);
    // 16 bottleneck 3x3s, 3 of them stride 2 (v1.5): 13 on Winograd.
    assert_eq!(a.iter().filter(|&&a| a == "winograd-f43").count(), 13, "the 3x3 stride-1 convs use Winograd: {a:?}");
    assert!(!a.contains(&"direct"), "no layer left on the direct path: {a:?}");
    let k = kinds(&m);
    assert!(!k.iter().any(|k| k == "Add"), "residual adds must be fused: {k:?}");
    assert!(!k.iter().any(|k| k == "Activation"), "every Relu must be fused: {k:?}");
    let info = m.info();
    assert_eq!(info.preprocess.preset, resq::PreprocessPreset::Imagenet);
    assert_eq!(info.preprocess.resize_shorter, 256);
}

/// convert -> write atomically -> mmap (`Model::open`) gives the same outputs as `from_bytes`.
#[test]
fn cycle_write_open_equals_from_bytes() {
    let Some(data) = common::data_dir("cycle_write_open_equals_from_bytes") else { return };
    let opts = ConvertOptions {
        labels: Some(
            ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
                .map(String::from)
                .to_vec(),
        ),
        ..Default::default()
    };
    let bytes = convert_file(&data.join("models/cifar10-resnet20/resnet20-bn.onnx"), &opts).unwrap();
    let dir = std::env::temp_dir().join(format!("resq-convert-cycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resnet20.resq");
    write_atomic(&path, &bytes).unwrap();
    let mapped = resq::Model::open(&path).unwrap();
    let owned = resq::Model::from_bytes(bytes).unwrap();
    assert_eq!(mapped.info().labels.len(), 10);
    assert_eq!(mapped.info().labels[3], "cat");
    let (_, input) = resq::npy::read_f32(&data.join("refs/resnet20-bn/input.npy")).unwrap();
    let il = owned.input_len();
    let mut a = mapped.session(resq::Options::default().threads(1)).unwrap();
    let mut b = owned.session(resq::Options::default().threads(1)).unwrap();
    for r in 0..3 {
        let x = &input[r * il..(r + 1) * il];
        assert_eq!(a.run(x).unwrap(), b.run(x).unwrap());
    }
    drop((a, b));
    drop(mapped);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A symbolic batch dim becomes `ConvertOptions::batch`: ResNet-20 with its input made
/// `[N, 3, 32, 32]`, converted with batch 4, runs 4 reference rows at once.
#[test]
fn symbolic_batch_runs_several_rows() {
    use prost::Message;
    use resq_convert::onnx::{tensor_shape_proto::dimension::Value, type_proto, ModelProto};
    let Some(data) = common::data_dir("symbolic_batch_runs_several_rows") else { return };
    let bytes = std::fs::read(data.join("models/cifar10-resnet20/resnet20.onnx")).unwrap();
    let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let Some(type_proto::Value::TensorType(t)) = g.input[0].r#type.as_mut().unwrap().value.as_mut() else { panic!() };
    t.shape.as_mut().unwrap().dim[0].value = Some(Value::DimParam("N".into()));
    let dynamic = m.encode_to_vec();
    let opts = ConvertOptions { batch: 4, ..Default::default() };
    let model =
        resq::Model::from_bytes(resq_convert::convert_onnx_bytes(&dynamic, "r20.onnx", &opts).unwrap()).unwrap();
    assert_eq!(model.info().input_dims, [4, 3, 32, 32]);
    assert_eq!(model.info().output_shape, [4, 10]);
    let (_, input) = resq::npy::read_f32(&data.join("refs/resnet20/input.npy")).unwrap();
    let (_, logits) = resq::npy::read_f32(&data.join("refs/resnet20/logits.npy")).unwrap();
    let mut s = model.session(resq::Options::default().threads(2)).unwrap();
    let got = s.run(&input[..4 * 3 * 32 * 32]).unwrap();
    for r in 0..4 {
        let e = rel_l2(&got[r * 10..(r + 1) * 10], &logits[r * 10..(r + 1) * 10]);
        assert!(e <= 1e-4, "row {r}: relative L2 error {e:e}");
    }
}
