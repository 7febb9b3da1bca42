//! PyTorch checkpoints (zip and legacy) and safetensors files: they convert to the same model as
//! the ONNX route, architectures are inferred from tensor names, and bad files are errors.

mod common;

use resq_convert::pytorch::{FileKind, StateDict};
use resq_convert::safetensors_reader::save_f32;
use resq_convert::{convert_bytes_with_summary, convert_file, load_state_dict, ConvertOptions, Summary};
use std::collections::HashMap;

fn rel_l2(got: &[f32], want: &[f32]) -> f32 {
    let num: f32 = got.iter().zip(want).map(|(g, w)| (g - w) * (g - w)).sum();
    let den: f32 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-30)).sqrt()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// Outputs of every row of `input` (rows of `model.input_len()`).
fn run_rows(model: &resq::Model, input: &[f32]) -> Vec<Vec<f32>> {
    let mut s = model.session(resq::Options::default().threads(2)).unwrap();
    input.chunks(model.input_len()).map(|row| s.run(row).unwrap().to_vec()).collect()
}

fn kinds(m: &resq::Model) -> Vec<String> {
    m.ops().iter().map(|o| o.kind.to_string()).collect()
}

fn convert(bytes: &[u8], name: &str, opts: &ConvertOptions) -> (resq::Model, Summary) {
    let (b, s) = convert_bytes_with_summary(bytes, name, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    (resq::Model::from_bytes(b).unwrap_or_else(|e| panic!("{name}: {e}")), s)
}

/// Deterministic pseudo-random numbers in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
}

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn conv_w(t: &mut Tensors, rng: &mut Rng, name: &str, o: usize, i: usize, k: usize) {
    let scale = (3.0 / (i * k * k) as f32).sqrt(); // keeps activations O(1) through the depth
    t.push((format!("{name}.weight"), vec![o, i, k, k], rng.vec(o * i * k * k, scale, 0.0)));
}

fn bn(t: &mut Tensors, rng: &mut Rng, name: &str, c: usize) {
    t.push((format!("{name}.weight"), vec![c], rng.vec(c, 0.2, 0.6)));
    t.push((format!("{name}.bias"), vec![c], rng.vec(c, 0.1, 0.0)));
    t.push((format!("{name}.running_mean"), vec![c], rng.vec(c, 0.1, 0.0)));
    t.push((format!("{name}.running_var"), vec![c], rng.vec(c, 0.3, 1.0)));
}

/// A torchvision ResNet state dict (names and shapes as `torchvision.models.resnetNN()`).
fn torchvision_state_dict(bottleneck: bool, blocks: [usize; 4], classes: usize, seed: u64) -> Tensors {
    let mut rng = Rng(seed);
    let mut t = Vec::new();
    conv_w(&mut t, &mut rng, "conv1", 64, 3, 7);
    bn(&mut t, &mut rng, "bn1", 64);
    let exp = if bottleneck { 4 } else { 1 };
    let mut inp = 64;
    for (s, &n) in blocks.iter().enumerate() {
        let w = 64 << s;
        for i in 0..n {
            let p = format!("layer{}.{i}", s + 1);
            if bottleneck {
                conv_w(&mut t, &mut rng, &format!("{p}.conv1"), w, inp, 1);
                bn(&mut t, &mut rng, &format!("{p}.bn1"), w);
                conv_w(&mut t, &mut rng, &format!("{p}.conv2"), w, w, 3);
                bn(&mut t, &mut rng, &format!("{p}.bn2"), w);
                conv_w(&mut t, &mut rng, &format!("{p}.conv3"), w * 4, w, 1);
                bn(&mut t, &mut rng, &format!("{p}.bn3"), w * 4);
            } else {
                conv_w(&mut t, &mut rng, &format!("{p}.conv1"), w, inp, 3);
                bn(&mut t, &mut rng, &format!("{p}.bn1"), w);
                conv_w(&mut t, &mut rng, &format!("{p}.conv2"), w, w, 3);
                bn(&mut t, &mut rng, &format!("{p}.bn2"), w);
            }
            if i == 0 && (s > 0 || inp != w * exp) {
                conv_w(&mut t, &mut rng, &format!("{p}.downsample.0"), w * exp, inp, 1);
                bn(&mut t, &mut rng, &format!("{p}.downsample.1"), w * exp);
            }
            inp = w * exp;
        }
    }
    t.push(("fc.weight".into(), vec![classes, inp], rng.vec(classes * inp, (1.0 / inp as f32).sqrt(), 0.0)));
    t.push(("fc.bias".into(), vec![classes], rng.vec(classes, 0.1, 0.0)));
    t
}

/// A CIFAR ResNet-(6n+2) state dict (akamaster names).
fn cifar_state_dict(n: usize, seed: u64) -> Tensors {
    let mut rng = Rng(seed);
    let mut t = Vec::new();
    conv_w(&mut t, &mut rng, "conv1", 16, 3, 3);
    bn(&mut t, &mut rng, "bn1", 16);
    let mut inp = 16;
    for s in 0..3 {
        let w = 16 << s;
        for i in 0..n {
            let p = format!("layer{}.{i}", s + 1);
            conv_w(&mut t, &mut rng, &format!("{p}.conv1"), w, inp, 3);
            bn(&mut t, &mut rng, &format!("{p}.bn1"), w);
            conv_w(&mut t, &mut rng, &format!("{p}.conv2"), w, w, 3);
            bn(&mut t, &mut rng, &format!("{p}.bn2"), w);
            inp = w;
        }
    }
    t.push(("linear.weight".into(), vec![10, 64], rng.vec(640, 0.125, 0.0)));
    t.push(("linear.bias".into(), vec![10], rng.vec(10, 0.1, 0.0)));
    t
}

// ---- An independent NCHW reference forward pass (naive loops, BatchNorm unfused) ----

struct Act {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f32>,
}

fn ref_conv(x: &Act, w: &[f32], o: usize, k: usize, stride: usize, pad: usize) -> Act {
    let (oh, ow) = ((x.h + 2 * pad - k) / stride + 1, (x.w + 2 * pad - k) / stride + 1);
    let mut v = vec![0f32; o * oh * ow];
    for oc in 0..o {
        for ic in 0..x.c {
            for ky in 0..k {
                for kx in 0..k {
                    let wv = w[((oc * x.c + ic) * k + ky) * k + kx];
                    for y in 0..oh {
                        let iy = (y * stride + ky) as isize - pad as isize;
                        if iy < 0 || iy >= x.h as isize {
                            continue;
                        }
                        for xx in 0..ow {
                            let ix = (xx * stride + kx) as isize - pad as isize;
                            if ix < 0 || ix >= x.w as isize {
                                continue;
                            }
                            v[(oc * oh + y) * ow + xx] += wv * x.v[(ic * x.h + iy as usize) * x.w + ix as usize];
                        }
                    }
                }
            }
        }
    }
    Act { c: o, h: oh, w: ow, v }
}

fn ref_bn(x: &mut Act, p: &HashMap<String, Vec<f32>>, name: &str, relu: bool) {
    let g = |s: &str| &p[&format!("{name}.{s}")];
    let (s, b, m, var) = (g("weight"), g("bias"), g("running_mean"), g("running_var"));
    let hw = x.h * x.w;
    for c in 0..x.c {
        let k = s[c] / (var[c] + 1e-5).sqrt();
        for e in &mut x.v[c * hw..(c + 1) * hw] {
            *e = (*e - m[c]) * k + b[c];
            if relu {
                *e = e.max(0.0);
            }
        }
    }
}

fn ref_conv_bn(x: &Act, p: &HashMap<String, Vec<f32>>, conv: &str, bn: &str, stride: usize, relu: bool) -> Act {
    let w = &p[&format!("{conv}.weight")];
    let o = p[&format!("{bn}.weight")].len();
    let k = ((w.len() / (o * x.c)) as f64).sqrt() as usize;
    let mut y = ref_conv(x, w, o, k, stride, k / 2);
    ref_bn(&mut y, p, bn, relu);
    y
}

/// torchvision ResNet (v1.5) forward pass.
fn ref_torchvision(p: &HashMap<String, Vec<f32>>, bottleneck: bool, blocks: [usize; 4], x: Act) -> Vec<f32> {
    let y = ref_conv_bn(&x, p, "conv1", "bn1", 2, true);
    // max pool 3x3 stride 2 pad 1
    let (oh, ow) = ((y.h + 2 - 3) / 2 + 1, (y.w + 2 - 3) / 2 + 1);
    let mut v = vec![f32::NEG_INFINITY; y.c * oh * ow];
    for c in 0..y.c {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize - 1);
                        if iy >= 0 && ix >= 0 && (iy as usize) < y.h && (ix as usize) < y.w {
                            let e = &mut v[(c * oh + oy) * ow + ox];
                            *e = e.max(y.v[(c * y.h + iy as usize) * y.w + ix as usize]);
                        }
                    }
                }
            }
        }
    }
    let mut x = Act { c: y.c, h: oh, w: ow, v };
    for (s, &n) in blocks.iter().enumerate() {
        for i in 0..n {
            let pre = format!("layer{}.{i}", s + 1);
            let stride = if s > 0 && i == 0 { 2 } else { 1 };
            let main = if bottleneck {
                let a = ref_conv_bn(&x, p, &format!("{pre}.conv1"), &format!("{pre}.bn1"), 1, true);
                let a = ref_conv_bn(&a, p, &format!("{pre}.conv2"), &format!("{pre}.bn2"), stride, true);
                ref_conv_bn(&a, p, &format!("{pre}.conv3"), &format!("{pre}.bn3"), 1, false)
            } else {
                let a = ref_conv_bn(&x, p, &format!("{pre}.conv1"), &format!("{pre}.bn1"), stride, true);
                ref_conv_bn(&a, p, &format!("{pre}.conv2"), &format!("{pre}.bn2"), 1, false)
            };
            let short = if p.contains_key(&format!("{pre}.downsample.0.weight")) {
                ref_conv_bn(&x, p, &format!("{pre}.downsample.0"), &format!("{pre}.downsample.1"), stride, false)
            } else {
                x
            };
            let v = main.v.iter().zip(&short.v).map(|(a, b)| (a + b).max(0.0)).collect();
            x = Act { v, ..main };
        }
    }
    let hw = (x.h * x.w) as f32;
    let pooled: Vec<f32> = (0..x.c).map(|c| x.v[c * x.h * x.w..(c + 1) * x.h * x.w].iter().sum::<f32>() / hw).collect();
    let (w, b) = (&p["fc.weight"], &p["fc.bias"]);
    (0..b.len()).map(|o| b[o] + (0..x.c).map(|k| w[o * x.c + k] * pooled[k]).sum::<f32>()).collect()
}

fn as_map(t: &Tensors) -> HashMap<String, Vec<f32>> {
    t.iter().map(|(n, _, v)| (n.clone(), v.clone())).collect()
}

fn sd_tensors(sd: &StateDict) -> Tensors {
    sd.tensors
        .iter()
        .filter(|(_, t)| t.dtype.is_float())
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.to_f32().unwrap()))
        .collect()
}

// ---- Tests ----

#[test]
fn legacy_and_zip_checkpoints_match_the_onnx_route() {
    let Some(data) = common::data_dir("legacy_and_zip_checkpoints_match_the_onnx_route") else { return };
    let dir = data.join("models/cifar10-resnet20");
    let (_, input) = resq::npy::read_f32(&data.join("refs/resnet20/input.npy")).unwrap();
    let (_, logits) = resq::npy::read_f32(&data.join("refs/resnet20/logits.npy")).unwrap();
    let opts = ConvertOptions::default();
    let onnx = resq::Model::from_bytes(convert_file(&dir.join("resnet20.onnx"), &opts).unwrap()).unwrap();
    let want = run_rows(&onnx, &input);
    for file in ["resnet20-12fca82f.th", "resnet20.pth"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let (m, s) = convert(&bytes, file, &opts);
        assert!(s.source.contains("arch resnet20"), "{file}: {}", s.source);
        assert_eq!(s.preprocess, Some(resq::format::PreprocessPreset::Cifar));
        assert!(!s.preprocess_guessed);
        assert_eq!(kinds(&m), kinds(&onnx), "{file}: same op sequence as the ONNX route");
        assert_eq!(m.info().input_dims, [1, 3, 32, 32]);
        let got = run_rows(&m, &input);
        let mut worst = 0f32;
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            let e = rel_l2(g, w);
            worst = worst.max(e);
            assert!(e <= 1e-5, "{file} row {r}: relative L2 {e:e} against the ONNX-converted model");
            let ort = &logits[r * 10..(r + 1) * 10];
            assert!(rel_l2(g, ort) <= 1e-4, "{file} row {r}: relative L2 {:e} against ONNX Runtime", rel_l2(g, ort));
            assert_eq!(argmax(g), argmax(ort), "{file} row {r}: top-1");
        }
        println!("{file}: {} rows, worst relative L2 against the ONNX route {worst:e}", got.len());
    }
    // Both formats hold the same weights.
    let a = load_state_dict(&std::fs::read(dir.join("resnet20.pth")).unwrap(), FileKind::Torch, "a").unwrap();
    let b = load_state_dict(&std::fs::read(dir.join("resnet20-12fca82f.th")).unwrap(), FileKind::Torch, "b").unwrap();
    assert_eq!(b.stripped_prefix, "module.");
    // The legacy file predates BatchNorm's num_batches_tracked counters; all else is equal.
    let counters = a.names().filter(|n| n.ends_with("num_batches_tracked")).count();
    assert_eq!((a.tensors.len(), counters), (b.tensors.len() + 19, 19));
    for (n, t) in &b.tensors {
        assert_eq!(Some(t), a.get(n), "tensor {n}");
    }
    assert_eq!(a.get("conv1.weight").unwrap().shape, [16, 3, 3, 3]);
}

#[test]
fn safetensors_of_the_checkpoint_converts_to_the_same_outputs() {
    let Some(data) = common::data_dir("safetensors_of_the_checkpoint_converts_to_the_same_outputs") else { return };
    let pth = std::fs::read(data.join("models/cifar10-resnet20/resnet20.pth")).unwrap();
    let (_, input) = resq::npy::read_f32(&data.join("refs/resnet20/input.npy")).unwrap();
    let opts = ConvertOptions::default();
    let (m, _) = convert(&pth, "resnet20.pth", &opts);
    let want = run_rows(&m, &input[..3 * 3072]);
    let sd = load_state_dict(&pth, FileKind::Torch, "resnet20.pth").unwrap();
    // CIFAR names, and the same with DataParallel's prefix.
    let plain = sd_tensors(&sd);
    let prefixed: Tensors = plain.iter().map(|(n, s, v)| (format!("module.{n}"), s.clone(), v.clone())).collect();
    for (label, t) in [("plain", plain), ("module.-prefixed", prefixed)] {
        let st = save_f32(&t).unwrap();
        let (m2, s) = convert(&st, "resnet20.safetensors", &opts);
        assert!(s.source.contains("safetensors") && s.source.contains("resnet20"), "{}", s.source);
        let got = run_rows(&m2, &input[..3 * 3072]);
        assert_eq!(got, want, "{label}: the same weights give the same outputs");
    }
}

#[test]
fn torchvision_resnet18_and_resnet50_are_inferred_and_match_a_reference() {
    for (name, bottleneck, blocks, convs) in
        [("resnet18", false, [2, 2, 2, 2], 20), ("resnet50", true, [3, 4, 6, 3], 53)]
    {
        let t = torchvision_state_dict(bottleneck, blocks, 1000, 7);
        let st = save_f32(&t).unwrap();
        // The default input is ImageNet's 224x224.
        let (m, s) = convert(&st, &format!("{name}.safetensors"), &ConvertOptions::default());
        assert!(s.source.contains(&format!("arch {name}")), "{}", s.source);
        assert_eq!(m.info().input_dims, [1, 3, 224, 224]);
        assert_eq!(s.preprocess, Some(resq::format::PreprocessPreset::Imagenet));
        let k = kinds(&m);
        assert_eq!(k.iter().filter(|k| *k == "Conv2d").count(), convs, "{name}: {k:?}");
        assert_eq!(k.iter().filter(|k| *k == "MaxPool2d").count(), 1, "{name}: {k:?}");
        assert_eq!(m.output_len(), 1000);
        let mut rng = Rng(99);
        let x = rng.vec(3 * 224 * 224, 1.0, 0.0);
        let out = run_rows(&m, &x).remove(0);
        assert!(out.iter().all(|v| v.is_finite()), "{name}: outputs are finite");
        // A smaller input (--input-size) against an independent naive forward pass.
        let opts = ConvertOptions { input_size: Some([64, 48]), ..Default::default() };
        let (m, _) = convert(&st, &format!("{name}.safetensors"), &opts);
        assert_eq!(m.info().input_dims, [1, 3, 64, 48]);
        let x = rng.vec(3 * 64 * 48, 1.0, 0.0);
        let got = run_rows(&m, &x).remove(0);
        let want = ref_torchvision(&as_map(&t), bottleneck, blocks, Act { c: 3, h: 64, w: 48, v: x });
        let e = rel_l2(&got, &want);
        assert!(e <= 1e-4, "{name}: relative L2 {e:e} against the naive reference");
        println!("{name}: relative L2 {e:e} against the naive reference");
    }
}

#[test]
fn cifar_depths_are_inferred_and_arch_must_match() {
    let st = save_f32(&cifar_state_dict(5, 3)).unwrap();
    let (m, s) = convert(&st, "r32.safetensors", &ConvertOptions::default());
    assert!(s.source.contains("arch resnet32"), "{}", s.source);
    assert_eq!(kinds(&m).iter().filter(|k| *k == "Conv2d").count(), 31);
    let explicit = ConvertOptions { arch: Some("resnet32".into()), ..Default::default() };
    convert(&st, "r32.safetensors", &explicit);
    let wrong = ConvertOptions { arch: Some("resnet56".into()), ..Default::default() };
    let e = convert_bytes_with_summary(&st, "r32.safetensors", &wrong).unwrap_err().to_string();
    assert!(e.contains("resnet56") && e.contains("resnet32"), "{e}");
    let unknown = ConvertOptions { arch: Some("vgg16".into()), ..Default::default() };
    let e = convert_bytes_with_summary(&st, "r32.safetensors", &unknown).unwrap_err().to_string();
    assert!(e.contains("vgg16") && e.contains("resnet110") && e.contains("resnet152"), "{e}");
}

#[test]
fn missing_extra_and_misshapen_tensors_are_named() {
    let mut t = cifar_state_dict(3, 5);
    t.retain(|(n, _, _)| n != "layer2.1.bn1.running_var");
    t.push(("extra.weight".into(), vec![4], vec![0.0; 4]));
    let k = t.iter().position(|(n, _, _)| n == "layer3.0.conv1.weight").unwrap();
    t[k] = ("layer3.0.conv1.weight".into(), vec![64, 31, 3, 3], vec![0.0; 64 * 31 * 9]);
    let e = convert_bytes_with_summary(&save_f32(&t).unwrap(), "bad.safetensors", &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    for needle in ["layer2.1.bn1.running_var", "extra.weight", "layer3.0.conv1.weight", "[64, 31, 3, 3]"] {
        assert!(e.contains(needle), "the error names {needle}: {e}");
    }
    // Without a recognisable layout, the error lists what was found.
    let t = vec![("encoder.weight".to_string(), vec![2, 2], vec![0.0; 4])];
    let e = convert_bytes_with_summary(&save_f32(&t).unwrap(), "x.safetensors", &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot infer") && e.contains("encoder") && e.contains("--arch"), "{e}");
    // torchvision names too.
    let mut t = torchvision_state_dict(false, [2, 2, 2, 2], 10, 1);
    t.retain(|(n, _, _)| n != "fc.bias");
    let st = save_f32(&t).unwrap();
    let e = convert_bytes_with_summary(&st, "x.safetensors", &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("missing tensor 'fc.bias'"), "{e}");
}

/// Every prefix of `bytes` (sampled) and some corruptions must give an error, never a panic.
fn assert_rejects_damage(bytes: &[u8], name: &str) {
    let opts = ConvertOptions::default();
    let n = bytes.len();
    let mut cuts: Vec<usize> = (0..64.min(n)).collect();
    cuts.extend((1..40).map(|k| n * k / 40));
    cuts.extend([n - 1, n - 8, n - 100]);
    for cut in cuts {
        let r = convert_bytes_with_summary(&bytes[..cut], name, &opts);
        assert!(r.is_err(), "{name} truncated to {cut} of {n} bytes converted");
    }
    let mut state = 0x9e37_79b9u32;
    for k in 0..30 {
        let mut b = bytes.to_vec();
        let at = (k * 7919) % n.min(20_000);
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        b[at] ^= (state as u8) | 1;
        // Flipped bytes inside weights still convert; anything else must be a clean error.
        let _ = convert_bytes_with_summary(&b, name, &opts);
    }
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let st = save_f32(&cifar_state_dict(3, 11)).unwrap();
    convert(&st, "ok.safetensors", &ConvertOptions::default());
    assert_rejects_damage(&st, "x.safetensors");
    for name in ["x.pth", "x.th", "x.safetensors", "x.tar", "x.pt"] {
        for bytes in [&b""[..], b"garbage garbage garbage", b"PK\x03\x04 not really a zip", &[0x80, 0x02, 0x8a, 0x0a]] {
            let e = convert_bytes_with_summary(bytes, name, &ConvertOptions::default()).unwrap_err();
            assert!(e.to_string().contains(name), "the error names the file: {e}");
        }
    }
    let Some(data) = common::data_dir("truncated_and_garbage_files_are_errors") else { return };
    for file in ["resnet20.pth", "resnet20-12fca82f.th"] {
        let bytes = std::fs::read(data.join("models/cifar10-resnet20").join(file)).unwrap();
        assert_rejects_damage(&bytes, file);
    }
    let e = convert_bytes_with_summary(&[0u8; 600], "x.pth", &ConvertOptions::default()).unwrap_err();
    assert!(e.to_string().contains("not a PyTorch checkpoint"), "{e}");
}

#[test]
fn cli_converts_a_checkpoint_with_arch_and_input_size() {
    let dir = std::env::temp_dir().join(format!("resq-pytorch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("r20.safetensors");
    std::fs::write(&src, save_f32(&cifar_state_dict(3, 2)).unwrap()).unwrap();
    let out = dir.join("r20.resq");
    let bin = env!("CARGO_BIN_EXE_resq-convert");
    let r = common::target_command(bin)
        .args([src.as_os_str(), "-o".as_ref(), out.as_os_str(), "--arch".as_ref(), "resnet20".as_ref()])
        .args(["--input-size", "40x48"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.contains("arch resnet20") && text.contains("[1, 3, 40, 48]"), "{text}");
    let m = resq::Model::open(&out).unwrap();
    assert_eq!(m.info().input_dims, [1, 3, 40, 48]);
    let r = common::target_command(bin)
        .args([src.as_os_str(), "-o".as_ref(), out.as_os_str(), "--input-size".as_ref(), "big".as_ref()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--input-size"));
    std::fs::remove_dir_all(&dir).unwrap();
}
