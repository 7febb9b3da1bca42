//! The ResNet family from every exporter (issue 6): small versions of ResNet-18/34/50/101/152/200,
//! ResNeXt-50/101, Wide ResNet-50-2, the pre-activation ResNet v2 (timm `resnetv2_50`), CIFAR
//! ResNets with option-A and option-B shortcuts and a Keras residual net, exported by
//! `torch.onnx.export` (TorchScript with BatchNorm folded and kept, and `dynamo=True`) and by
//! tf2onnx, plus their PyTorch / safetensors checkpoints and the MLPerf Tiny ResNet-8.
//!
//! Every fixture is in `fixtures/family/` (made by `fixtures/gen/family.py`, fixed seeds) and
//! listed in its `manifest.tsv`: model, exporter, ONNX file, input rows, reference outputs
//! (ONNX Runtime fp32 on the same file; float TFLite for the MLPerf model). Each must convert,
//! run on the fast kernels (no convolution or linear layer on the direct path) and give
//! outputs within relative L2 1e-4 of the reference with the same top-1.

mod common;

use resq_convert::{convert_bytes_with_summary, ConvertOptions, PreprocessPreset, Summary};
use std::path::{Path, PathBuf};

fn family_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/family"))
}

/// One row of `manifest.tsv`.
#[derive(Clone, Debug)]
struct Entry {
    model: String,
    exporter: String,
    onnx: PathBuf,
    input: PathBuf,
    reference: PathBuf,
}

fn manifest() -> Vec<Entry> {
    let dir = family_dir();
    let text = std::fs::read_to_string(dir.join("manifest.tsv")).expect("fixtures/family/manifest.tsv");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() >= 5, "manifest line {l:?}");
            Entry {
                model: f[0].into(),
                exporter: f[1].into(),
                onnx: dir.join(f[2]),
                input: dir.join(f[3]),
                reference: dir.join(f[4]),
            }
        })
        .collect()
}

fn entries(model: &str) -> Vec<Entry> {
    let e: Vec<Entry> = manifest().into_iter().filter(|e| e.model == model).collect();
    assert!(!e.is_empty(), "manifest.tsv lists no export of {model}");
    e
}

fn rel_l2(got: &[f32], want: &[f32]) -> f32 {
    let num: f64 = got.iter().zip(want).map(|(g, w)| ((g - w) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt() as f32
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

fn convert(path: &Path, opts: &ConvertOptions) -> (resq::Model, Summary) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let (b, s) = convert_bytes_with_summary(&bytes, &name, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    (resq::Model::from_bytes(b).unwrap_or_else(|e| panic!("{name}: {e}")), s)
}

/// Runs every row of `input` through `model` and checks it against `reference`; returns the
/// worst relative L2 error.
fn check_rows(what: &str, model: &resq::Model, input: &Path, reference: &Path) -> f32 {
    let (ishape, x) = resq::npy::read_f32(input).unwrap();
    let (rshape, want) = resq::npy::read_f32(reference).unwrap();
    assert_eq!(rshape[0], ishape[0], "{what}: reference rows");
    // Emulated (qemu-user, 20-50x slower), one row per model keeps this file within budget.
    let rows = if common::emulated() { 1 } else { ishape[0] };
    let (il, ol) = (model.input_len(), model.output_len());
    assert_eq!(il * ishape[0], x.len(), "{what}: input length (model takes {:?})", model.info().input_dims);
    assert_eq!(ol * ishape[0], want.len(), "{what}: output length (model gives {:?})", model.info().output_shape);
    let mut s = model.session(resq::Options::default().threads(2)).unwrap();
    let mut worst = 0f32;
    for r in 0..rows {
        let got = s.run(&x[r * il..(r + 1) * il]).unwrap();
        let w = &want[r * ol..(r + 1) * ol];
        let e = rel_l2(got, w);
        worst = worst.max(e);
        assert!(e <= 1e-4, "{what} ({}) row {r}: relative L2 error {e:e}", s.isa());
        assert_eq!(argmax(got), argmax(w), "{what} row {r}: top-1 differs");
    }
    worst
}

/// Kinds and algorithms of the ops.
fn kinds(m: &resq::Model) -> Vec<&'static str> {
    m.ops().iter().map(|o| o.kind).collect()
}

/// No convolution or linear layer runs on the direct (reference) kernels.
fn assert_fast(what: &str, m: &resq::Model) {
    let slow: Vec<String> = m
        .ops()
        .iter()
        .filter(|o| o.algo == "direct")
        .map(|o| format!("{} {} {:?}", o.kind, o.name, o.input_shapes))
        .collect();
    assert!(slow.is_empty(), "{what}: ops on the direct path: {slow:?}");
}

/// Converts and checks every export of `model`; `extra` runs further checks on each model.
fn check_model(model: &str, extra: impl Fn(&Entry, &resq::Model, &Summary)) {
    for e in entries(model) {
        if common::emulated() && e.exporter == "ts" {
            continue; // emulated: "ts-bn" is the same graph with the BatchNorms still to fold
        }
        let what = format!("{model}.{}", e.exporter);
        let (m, s) = convert(&e.onnx, &ConvertOptions::default());
        assert_fast(&what, &m);
        let k = kinds(&m);
        assert!(!k.contains(&"BatchNorm"), "{what}: {k:?}");
        let worst = check_rows(&what, &m, &e.input, &e.reference);
        println!(
            "{what}: {} ops ({} conv), bn folded {} / affine {}, residual fused {}, worst relative L2 {worst:e}",
            k.len(),
            k.iter().filter(|&&k| k == "Conv2d").count(),
            s.stats.bn_folded,
            s.stats.bn_affine,
            s.stats.residual_fused
        );
        extra(&e, &m, &s);
    }
}

/// The torchvision-style checks: every residual add fused into a convolution, every ReLU
/// fused, every BatchNorm folded, `convs` convolutions.
fn v1_checks(convs: usize) -> impl Fn(&Entry, &resq::Model, &Summary) {
    move |e, m, s| {
        let k = kinds(m);
        let what = format!("{}.{}", e.model, e.exporter);
        assert_eq!(k.iter().filter(|&&k| k == "Conv2d").count(), convs, "{what}: {k:?}");
        assert!(!k.contains(&"Add"), "{what}: residual adds must be fused: {k:?}");
        assert!(!k.contains(&"Activation"), "{what}: every ReLU must be fused: {k:?}");
        assert!(!k.contains(&"ChannelAffine"), "{what}: every BN must fold: {k:?}");
        if e.exporter == "ts-bn" {
            assert_eq!(s.stats.bn_folded, convs, "{what}: the exporter kept one BN per conv");
        }
        assert_eq!(*k.last().unwrap(), "Linear", "{what}: {k:?}");
    }
}

/// Convolutions of a torchvision-style net: stem + per block (2 or 3) + one downsample per
/// stage whose first block changes the shape.
fn tv_convs(blocks: &[usize], bottleneck: bool) -> usize {
    let per = if bottleneck { 3 } else { 2 };
    let downsamples = if bottleneck { 4 } else { 3 };
    1 + blocks.iter().sum::<usize>() * per + downsamples
}

#[test]
fn resnet18() {
    check_model("resnet18", v1_checks(tv_convs(&[2, 2, 2, 2], false)));
}

#[test]
fn resnet34() {
    check_model("resnet34", v1_checks(tv_convs(&[3, 4, 6, 3], false)));
}

#[test]
fn resnet50() {
    check_model("resnet50", v1_checks(tv_convs(&[3, 4, 6, 3], true)));
}

#[test]
fn resnet101() {
    check_model("resnet101", v1_checks(tv_convs(&[3, 4, 23, 3], true)));
}

#[test]
fn resnet152() {
    check_model("resnet152", v1_checks(tv_convs(&[3, 8, 36, 3], true)));
}

#[test]
fn resnet200() {
    check_model("resnet200", v1_checks(tv_convs(&[3, 24, 36, 3], true)));
}

/// `groups` grouped 3x3 convolutions per bottleneck (input channels = groups x the weights').
fn grouped_convs(m: &resq::Model, groups: usize) -> usize {
    m.ops()
        .iter()
        .filter(|o| {
            o.kind == "Conv2d" && o.input_shapes[1][1] == 3 && o.input_shapes[1][3] * groups == o.input_shapes[0][3]
        })
        .count()
}

#[test]
fn resnext50_grouped() {
    check_model("resnext50", |e, m, s| {
        v1_checks(tv_convs(&[3, 4, 6, 3], true))(e, m, s);
        assert_eq!(grouped_convs(m, 4), 16, "{}: 16 grouped 3x3 convs (4 groups)", e.exporter);
    });
}

#[test]
fn resnext101_grouped() {
    check_model("resnext101", |e, m, s| {
        v1_checks(tv_convs(&[3, 4, 23, 3], true))(e, m, s);
        assert_eq!(grouped_convs(m, 2), 33, "{}: 33 grouped 3x3 convs (2 groups)", e.exporter);
    });
}

#[test]
fn wide_resnet50_2() {
    check_model("wide_resnet50_2", v1_checks(tv_convs(&[3, 4, 6, 3], true)));
}

/// Pre-activation: BN -> ReLU before each conv. Inside a block the BN follows a conv and
/// folds into it with the ReLU; the block's first BN reads the residual sum, which the
/// shortcut also reads, so it stays a per-channel affine with the ReLU fused.
#[test]
fn resnetv2_50_preactivation() {
    check_model("resnetv2_50", |e, m, s| {
        let k = kinds(m);
        let what = format!("resnetv2_50.{}", e.exporter);
        assert!(!k.contains(&"Add"), "{what}: residual adds must be fused: {k:?}");
        assert!(!k.contains(&"Activation"), "{what}: every ReLU must be fused: {k:?}");
        // 16 blocks' norm1 + the final norm.
        assert_eq!(k.iter().filter(|&&k| k == "ChannelAffine").count(), 17, "{what}: {k:?}");
        if e.exporter == "ts-bn" {
            assert_eq!((s.stats.bn_folded, s.stats.bn_affine), (32, 17), "{what}");
        }
    });
}

#[test]
fn cifar_resnet20_option_a() {
    check_model("cifar_resnet20_a", |e, m, _| {
        let k = kinds(m);
        assert_eq!(k.iter().filter(|&&k| k == "Conv2d").count(), 19, "{}: {k:?}", e.exporter);
        assert!(!k.contains(&"Add"), "{}: {k:?}", e.exporter);
    });
}

#[test]
fn cifar_resnet20_option_b() {
    check_model("cifar_resnet20_b", |e, m, _| {
        let k = kinds(m);
        assert_eq!(k.iter().filter(|&&k| k == "Conv2d").count(), 21, "{}: {k:?}", e.exporter);
        assert!(!k.contains(&"Add"), "{}: {k:?}", e.exporter);
        assert!(!k.contains(&"ChannelAffine"), "{}: {k:?}", e.exporter);
    });
}

/// Keras through tf2onnx: NHWC graphs with Transposes, asymmetric 'same' padding, dense layer,
/// Softmax. With `--inputs-as-nchw`, with the NHWC graph input, and unoptimized (a Transpose
/// pair around every conv, BN and pool): all three give the same NCHW model.
#[test]
fn keras_small_tf2onnx() {
    check_model("keras_small", |e, m, s| {
        let k = kinds(m);
        let what = format!("keras_small.{}", e.exporter);
        assert_eq!(m.info().input_dims, [1, 3, 32, 32], "{what}: the model takes NCHW");
        assert_eq!(k.iter().filter(|&&k| k == "Conv2d").count(), 8, "{what}: {k:?}");
        assert!(!k.contains(&"Add"), "{what}: residual adds must be fused: {k:?}");
        assert!(!k.contains(&"ChannelAffine"), "{what}: every BN must fold: {k:?}");
        // The converter's own input transpose and the one before Flatten (Keras flattens
        // NHWC): every other graph transpose cancels.
        assert_eq!(k.iter().filter(|&&k| k == "Transpose").count(), 2, "{what}: {k:?}");
        assert_eq!(*k.last().unwrap(), "Softmax", "{what}: {k:?}");
        assert_eq!(s.preprocess, Some(PreprocessPreset::Cifar), "{what}");
    });
}

/// The checkpoints of the same models (state dicts with torchvision / timm / CIFAR names),
/// architecture inferred, give the ONNX Runtime outputs of the exported graph.
fn check_checkpoint(file: &str, arch_name: &str, hw: usize) {
    let model = file.split('.').next().unwrap();
    let reference = family_dir().join(format!("{model}.ts.ref.npy"));
    let opts = ConvertOptions { input_size: Some([hw, hw]), ..Default::default() };
    let (m, s) = convert(&family_dir().join(file), &opts);
    assert!(s.source.contains(&format!("arch {arch_name}")), "{file}: {}", s.source);
    assert_fast(file, &m);
    let worst = check_rows(file, &m, &family_dir().join(format!("{model}.input.npy")), &reference);
    println!("{file}: {} ({} ops), worst relative L2 {worst:e}", s.source, m.ops().len());
    // The same name given explicitly is accepted.
    let opts = ConvertOptions { arch: Some(arch_name.into()), input_size: Some([hw, hw]), ..Default::default() };
    convert(&family_dir().join(file), &opts);
}

#[test]
fn checkpoints_torchvision_names() {
    check_checkpoint("resnet18.pth", "resnet18", 64);
    check_checkpoint("resnet200.pth", "resnet200", 64);
    check_checkpoint("resnext50.pth", "resnext50", 64);
    check_checkpoint("resnext101.pth", "resnext101", 64);
    check_checkpoint("wide_resnet50_2.pth", "wide_resnet50", 64);
}

#[test]
fn checkpoints_timm_resnetv2() {
    check_checkpoint("resnetv2_50.safetensors", "resnetv2_50", 64);
}

#[test]
fn checkpoints_cifar_option_b() {
    check_checkpoint("cifar_resnet20_b.pth", "resnet20", 32);
}

/// MLPerf Tiny ResNet-8 (Keras .h5 -> tf2onnx, committed as `mlperf_resnet8.onnx`): matches
/// the float TFLite model on CIFAR-10 images, and carries the raw 0..255 preset, so that
/// `prepare_rgb8` of the image gives exactly the model's input.
#[test]
fn mlperf_tiny_resnet8_matches_tflite() {
    let e = entries("mlperf_resnet8").remove(0);
    let (m, s) = convert(&e.onnx, &ConvertOptions { preprocess: Some(PreprocessPreset::Raw255), ..Default::default() });
    assert_fast("mlperf_resnet8", &m);
    let worst = check_rows("mlperf_resnet8", &m, &e.input, &e.reference);
    println!("mlperf_resnet8: {:?}, worst relative L2 vs TFLite {worst:e}", s.ops);
    let info = m.info();
    assert_eq!(info.input_dims, [1, 3, 32, 32]);
    assert_eq!(info.preprocess.preset, PreprocessPreset::Raw255);
    let k = kinds(&m);
    assert!(!k.contains(&"ChannelAffine") && !k.contains(&"Add"), "{k:?}");
    // The input rows are raw pixels: preprocessing the same pixels reproduces them.
    let (ishape, x) = resq::npy::read_f32(&e.input).unwrap();
    let (h, w) = (ishape[2], ishape[3]);
    let mut rgb = vec![0u8; h * w * 3];
    for y in 0..h {
        for xx in 0..w {
            for c in 0..3 {
                let v = x[(c * h + y) * w + xx];
                assert_eq!(v, v.round(), "raw 0..255 input");
                rgb[(y * w + xx) * 3 + c] = v as u8;
            }
        }
    }
    let mut out = vec![0f32; 3 * h * w];
    resq::preprocess::prepare_rgb8(&rgb, w, h, &info.preprocess, &mut out).unwrap();
    assert_eq!(out, x[..3 * h * w], "prepare_rgb8 with the model's preset gives the TFLite input");
}

/// What `resq classify` does with the MLPerf model's metadata: decode each of the 20 lossless
/// CIFAR-10 test images of the shared data, preprocess with the model's preset (raw 0..255),
/// run. The trained model (85% quality target) must get most of them right.
#[test]
fn mlperf_tiny_resnet8_classifies_cifar_images() {
    let Some(data) = common::data_dir("mlperf_tiny_resnet8_classifies_cifar_images") else { return };
    let e = entries("mlperf_resnet8").remove(0);
    let opts = ConvertOptions { preprocess: Some(PreprocessPreset::Raw255), ..Default::default() };
    let (m, _) = convert(&e.onnx, &opts);
    let info = m.info();
    let mut s = m.session(resq::Options::default().threads(2)).unwrap();
    let dir = data.join("images/foolbox-samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cifar10_") && n.ends_with(".png"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 20, "{files:?}");
    let mut correct = 0;
    let mut x = vec![0f32; m.input_len()];
    for f in &files {
        let label: usize = f.trim_end_matches(".png").rsplit('_').next().unwrap().parse().unwrap();
        let img = image::open(dir.join(f)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        resq::preprocess::prepare_rgb8(img.as_raw(), w as usize, h as usize, &info.preprocess, &mut x).unwrap();
        let probs = s.run(&x).unwrap();
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{f}: the model ends in a softmax");
        correct += usize::from(argmax(probs) == label);
    }
    println!("mlperf_resnet8: {correct}/20 CIFAR-10 images correct");
    assert!(correct >= 16, "only {correct}/20 correct: preprocessing or conversion is wrong");
}

/// Every manifest entry is covered by a test above and every file it names exists and is
/// at most 2 MB (the fixture size limit).
#[test]
fn manifest_is_complete_and_small() {
    let covered = [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet200",
        "resnext50",
        "resnext101",
        "wide_resnet50_2",
        "resnetv2_50",
        "cifar_resnet20_a",
        "cifar_resnet20_b",
        "keras_small",
        "mlperf_resnet8",
    ];
    let m = manifest();
    for c in covered {
        assert!(m.iter().any(|e| e.model == c), "{c} missing from the manifest");
    }
    for e in &m {
        assert!(covered.contains(&e.model.as_str()), "{} is not tested", e.model);
        for p in [&e.onnx, &e.input, &e.reference] {
            let len = std::fs::metadata(p).unwrap_or_else(|err| panic!("{}: {err}", p.display())).len();
            assert!(len <= 2 << 20, "{} is {len} bytes", p.display());
        }
    }
    for model in ["resnet18", "resnet50", "resnext50", "resnetv2_50"] {
        let ex: Vec<&str> = m.iter().filter(|e| e.model == model).map(|e| e.exporter.as_str()).collect();
        assert_eq!(ex, ["dynamo", "ts", "ts-bn"], "{model}");
    }
    let ex: Vec<&str> = m.iter().filter(|e| e.model == "keras_small").map(|e| e.exporter.as_str()).collect();
    assert_eq!(ex, ["tf2onnx", "tf2onnx-nhwc", "tf2onnx-raw"]);
}
