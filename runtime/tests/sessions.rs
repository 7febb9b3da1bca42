//! Model sharing, threading and loading paths.

mod common;
use common::*;
use resq::{Error, Model, Options};

#[test]
fn model_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Model>();
    check::<resq::ModelInfo>();
}

#[test]
fn tiny_model_matches_naive_reference() {
    let (bytes, wt) = tiny_model(7);
    let x = Rng::new(99).vec(3 * 64);
    let got = run_once(bytes, &x);
    assert_close(&got, &tiny_reference(&wt, &x), 1e-5, "tiny model");
    let sum: f32 = got.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5);
}

#[test]
fn four_threads_with_own_sessions_agree() {
    let (bytes, _) = tiny_model(3);
    let model = Model::from_bytes(bytes).unwrap();
    let inputs: Vec<Vec<f32>> = (0..4).map(|i| Rng::new(10 + i).vec(model.input_len())).collect();
    let mut serial = model.session(Options::default().threads(1)).unwrap();
    let want: Vec<Vec<f32>> = inputs.iter().map(|x| serial.run(x).unwrap().to_vec()).collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (model, inputs, want) = (&model, &inputs, &want);
            s.spawn(move || {
                let mut sess = model.session(Options::default().threads(1 + t % 2)).unwrap();
                for round in 0..20 {
                    let k = (t + round) % 4;
                    assert_eq!(sess.run(&inputs[k]).unwrap(), &want[k][..], "thread {t} round {round}");
                }
            });
        }
    });
}

#[test]
fn thread_counts_give_identical_results() {
    let (bytes, _) = tiny_model(5);
    let model = Model::from_bytes(bytes).unwrap();
    let x = Rng::new(1).vec(model.input_len());
    let one = model.session(Options::default().threads(1)).unwrap().run(&x).unwrap().to_vec();
    for t in [2, 3, 4] {
        let mut s = model.session(Options::default().threads(t)).unwrap();
        assert_eq!(s.threads(), t);
        for _ in 0..3 {
            assert_eq!(s.run(&x).unwrap(), &one[..], "{t} threads");
        }
    }
}

#[test]
fn from_bytes_accepts_unaligned_vec_and_static() {
    let (bytes, _) = tiny_model(1);
    let x = Rng::new(2).vec(3 * 64);
    let want = run_once(bytes.clone(), &x);
    // A Vec whose data starts 1 byte past an allocation: copy into an odd offset.
    let mut padded = vec![0u8; bytes.len() + 1];
    padded[1..].copy_from_slice(&bytes);
    let unaligned: Vec<u8> = padded[1..].to_vec();
    let m = Model::from_bytes(unaligned).unwrap();
    assert_eq!(m.session(Options::default().threads(1)).unwrap().run(&x).unwrap(), &want[..]);
    // An aligned Vec is used in place (allocate copies until one happens to be 64-aligned).
    let mut keep = Vec::new();
    for _ in 0..256 {
        let v = bytes.clone();
        if v.as_ptr() as usize % 64 == 0 {
            let p = v.as_ptr();
            let m = Model::from_bytes(v).unwrap();
            assert_eq!(m.bytes().as_ptr(), p, "aligned Vec was copied");
            assert_eq!(m.session(Options::default().threads(1)).unwrap().run(&x).unwrap(), &want[..]);
            break;
        }
        keep.push(v);
    }
    // A leaked static slice at an odd address.
    let leaked: &'static [u8] = &Box::leak(padded.into_boxed_slice())[1..];
    assert_ne!(leaked.as_ptr() as usize % 64, 0);
    let m = Model::from_bytes(leaked).unwrap();
    assert_eq!(m.session(Options::default().threads(1)).unwrap().run(&x).unwrap(), &want[..]);
}

#[test]
fn open_maps_a_file_and_reports_missing_paths() {
    let (bytes, _) = tiny_model(4);
    let dir = std::env::temp_dir().join(format!("resq-sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.resq");
    std::fs::write(&path, &bytes).unwrap();
    let m = Model::open(&path).unwrap();
    let info = m.info();
    assert_eq!(info.file_size, bytes.len() as u64);
    assert_eq!(info.output_shape, vec![1, 3]);
    assert_eq!(info.input_dims, [1, 3, 8, 8]);
    assert_eq!(m.input_len(), 192);
    assert_eq!(m.output_len(), 3);
    assert_eq!(info.param_bytes, ((4 * 27) + 4 + 12 + 3) * 4);
    assert!(info.arena_bytes > 0 && info.arena_bytes < 4 * (192 * 2 + 256 + 64 + 4 + 4 + 3 + 3));
    let ops = m.ops();
    assert_eq!(
        ops.iter().map(|o| o.kind).collect::<Vec<_>>(),
        ["Transpose", "Conv2d", "MaxPool2d", "GlobalAvgPool", "Copy", "Linear", "Softmax"]
    );
    assert_eq!(ops[1].macs, 8 * 8 * 4 * 27);
    assert_eq!(ops[1].input_shapes, vec![vec![1, 8, 8, 3], vec![4, 3, 3, 3], vec![4]]);
    assert_eq!(ops[5].macs, 12);

    let missing = dir.join("does-not-exist.resq");
    match Model::open(&missing) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("does-not-exist.resq"), "{e}"),
        other => panic!("expected an Io error, got {other:?}"),
    }
    // A corrupt file names its path.
    let bad = dir.join("bad.resq");
    std::fs::write(&bad, &bytes[..100]).unwrap();
    let e = Model::open(&bad).unwrap_err();
    assert!(e.to_string().contains("bad.resq"), "{e}");
    let empty = dir.join("empty.resq");
    std::fs::write(&empty, b"").unwrap();
    let e = Model::open(&empty).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wrong_input_length_and_profile_length_are_errors() {
    let (bytes, _) = tiny_model(6);
    let m = Model::from_bytes(bytes).unwrap();
    let mut s = m.session(Options::default().threads(2)).unwrap();
    match s.run(&[0.0; 5]) {
        Err(Error::Input { expected: 192, found: 5 }) => {}
        other => panic!("{other:?}"),
    }
    let x = vec![0.5; 192];
    let mut prof = vec![0.0; 3];
    assert!(s.run_profiled(&x, &mut prof).is_err());
    let mut prof = vec![-1.0; m.ops().len()];
    let y = s.run_profiled(&x, &mut prof).unwrap().to_vec();
    assert!(prof.iter().all(|&t| t >= 0.0));
    assert_eq!(y, s.run(&x).unwrap());
}

#[test]
fn resnet20_matches_onnx_runtime_at_1_and_2_threads() {
    let Some(data) = shared_data("resnet20_matches_onnx_runtime") else { return };
    let model = Model::from_bytes(convert_shared(&data, "models/cifar10-resnet20/resnet20.onnx")).unwrap();
    let (shape, x) = resq::npy::read_f32(&data.join("refs/resnet20/input.npy")).unwrap();
    let (_, want) = resq::npy::read_f32(&data.join("refs/resnet20/logits.npy")).unwrap();
    assert_eq!(model.input_len(), shape[1..].iter().product::<usize>());
    let (il, ol) = (model.input_len(), model.output_len());
    let mut s1 = model.session(Options::default().threads(1)).unwrap();
    let mut s2 = model.session(Options::default().threads(2)).unwrap();
    for r in 0..shape[0] {
        let xr = &x[r * il..(r + 1) * il];
        let y = s1.run(xr).unwrap().to_vec();
        assert_eq!(s2.run(xr).unwrap(), &y[..], "row {r}: 2 threads differ from 1");
        let w = &want[r * ol..(r + 1) * ol];
        let num: f64 = y.iter().zip(w).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let den: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum();
        assert!((num / den).sqrt() < 1e-5, "row {r}: rel L2 {}", (num / den).sqrt());
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|p| p.0);
        assert_eq!(argmax(&y), argmax(w), "row {r}");
    }
}

#[test]
fn keep_intermediates_exposes_every_activation_and_changes_nothing() {
    let (bytes, _) = tiny_model(5);
    let model = Model::from_bytes(bytes).unwrap();
    let x = Rng::new(7).vec(model.input_len());
    let mut plain = model.session(Options::default().threads(1)).unwrap();
    let want = plain.run(&x).unwrap().to_vec();
    let mut kept = model.session(Options::default().threads(1).keep_intermediates(true)).unwrap();
    assert_eq!(kept.run(&x).unwrap(), &want[..]);
    let activations: Vec<_> = model.tensors().into_iter().filter(|t| !t.constant).collect();
    assert!(activations.len() >= 3, "tiny model has input, intermediates and output");
    for t in &activations {
        let d = kept.tensor(t.id).unwrap_or_else(|| panic!("activation {} not readable", t.name));
        assert_eq!(d.name, t.name);
        assert_eq!(d.bytes.len(), t.dims.iter().product::<usize>() * 4);
        assert!(d.to_f32().iter().all(|v| v.is_finite()));
    }
    // Intermediates (and the input) are not exposed by a plain session (their memory is
    // reused), the output is, and constants never are.
    let readable = activations.iter().filter(|t| plain.tensor(t.id).is_some()).count();
    assert_eq!(readable, 1);
    let out_id = activations.iter().find(|t| kept.tensor(t.id).unwrap().to_f32() == want).map(|t| t.id);
    assert_eq!(plain.tensor(out_id.expect("output tensor found")).unwrap().to_f32(), want);
    let input = activations.iter().find(|t| kept.tensor(t.id).unwrap().to_f32() == x);
    assert!(input.is_some(), "the graph input is readable with its values");
    let c = model.tensors().into_iter().find(|t| t.constant).unwrap();
    assert!(kept.tensor(c.id).is_none());
    assert!(kept.tensor(u32::MAX).is_none());
    assert!(model.layer_report().is_empty());
}

/// Under qemu in CI the suite runs as a Pi 4 (Cortex-A72: NEON, no dot product) and a Pi 5
/// (Cortex-A76: dot product): sessions must pick (and report) the int8 `sdot` kernels on the
/// second and not on the first.
#[test]
fn arm_sessions_pick_the_dot_product_kernels_only_where_the_cpu_has_them() {
    let Ok(cpu) = std::env::var("QEMU_CPU") else {
        eprintln!("SKIP: not running under qemu (QEMU_CPU unset)");
        return;
    };
    if !cfg!(target_arch = "aarch64") {
        eprintln!("SKIP: QEMU_CPU={cpu} on a non-aarch64 target");
        return;
    }
    let (bytes, _) = tiny_model(1);
    let model = Model::from_bytes(bytes).unwrap();
    let isa = model.session(Options::default().threads(1)).unwrap().isa();
    match cpu.as_str() {
        "cortex-a72" => assert_eq!(isa, resq::Isa::Neon, "Cortex-A72 has no dot product"),
        // The A76 has FEAT_FP16 too: its tier is NeonDotFp16 (sdot int8 kernels, fp16
        // arithmetic for f16 weights, the f32 NEON kernel for f32 weights).
        "cortex-a76" => assert_eq!(isa, resq::Isa::NeonDotFp16, "Cortex-A76 has the dot product and fp16"),
        other => eprintln!("QEMU_CPU={other}: session tier {isa:?}"),
    }
}
