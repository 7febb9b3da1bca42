//! The `resq-convert` command line: exit codes, messages, atomic output, input untouched.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The `resq-convert` binary (through the target's runner when cross-testing under qemu).
fn bin() -> Command {
    common::target_command(env!("CARGO_BIN_EXE_resq-convert"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("resq-convert-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn usage_errors_exit_2() {
    let out = bin().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["a.onnx", "-o", "b.resq", "--preprocess", "bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["a.onnx", "-o", "b.resq", "--batch", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_input_exits_1_with_a_message() {
    let dir = temp_dir("bad");
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"this is not protobuf \xff\xff\xff\xff\xff").unwrap();
    let out_path = dir.join("out.resq");
    let out = bin().arg(&garbage).arg("-o").arg(&out_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("garbage.onnx") && err.contains("not a valid ONNX"), "{err}");
    assert!(!out_path.exists());
    let out = bin().arg(dir.join("missing.onnx")).arg("-o").arg(&out_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.onnx"));
    let out = bin().arg(&garbage).arg("-o").arg(&out_path).args(["--freeze", "novalue"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=FILE"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn converts_resnet20_and_refuses_int8_without_calibration_images() {
    let Some(data) = common::data_dir("converts_resnet20_and_refuses_int8_without_calibration_images") else { return };
    let model = data.join("models/cifar10-resnet20/resnet20-bn.onnx");
    let before = std::fs::read(&model).unwrap();
    let dir = temp_dir("ok");
    let out_path = dir.join("r20.resq");

    let out = bin().arg(&model).arg("-o").arg(&out_path).args(["--precision", "int8"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // int8 needs calibration images, and the error says which flag gives them.
    assert!(String::from_utf8_lossy(&out.stderr).contains("--calibrate"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out_path.exists());

    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "a\nb\nc\n").unwrap();
    let out = bin().arg(&model).arg("-o").arg(&out_path).arg("--labels").arg(&labels).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 labels"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = bin().arg(&model).arg("-o").arg(&out_path).args(["--name", "r20"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("19 Conv2d") && stdout.contains("19 BatchNorm into convs"), "{stdout}");
    assert!(stdout.contains("cifar (guessed"), "{stdout}");
    let m = resq::Model::open(&out_path).unwrap();
    assert_eq!(m.info().name, "r20");
    assert_eq!(std::fs::read(&model).unwrap(), before, "the input must not change");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary files may remain: {names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--freeze NAME=FILE.pb` binds a second graph input (ONNX test vectors pass weights so).
#[test]
fn freeze_binds_extra_inputs() {
    let Some(data) = common::data_dir("freeze_binds_extra_inputs") else { return };
    let dir = data.join("onnx-op-tests/node/test_add_bcast");
    let tmp = temp_dir("freeze");
    let out_path = tmp.join("add.resq");
    let out = bin().arg(dir.join("model.onnx")).arg("-o").arg(&out_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--freeze"), "{}", String::from_utf8_lossy(&out.stderr));
    let spec = format!("y={}", dir.join("test_data_set_0/input_1.pb").display());
    let out = bin().arg(dir.join("model.onnx")).arg("-o").arg(&out_path).args(["--freeze", &spec]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("preprocessing none"));
    let m = resq::Model::open(&out_path).unwrap();
    let x = resq_convert::load_tensor_proto(&std::fs::read(dir.join("test_data_set_0/input_0.pb")).unwrap()).unwrap();
    let y = resq_convert::load_tensor_proto(&std::fs::read(dir.join("test_data_set_0/output_0.pb")).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    assert_eq!(s.run(&x.1).unwrap(), y.1.as_slice());
    let bad = format!("nosuch={}", dir.join("test_data_set_0/input_1.pb").display());
    let out = bin()
        .arg(dir.join("model.onnx"))
        .arg("-o")
        .arg(&out_path)
        .args(["--freeze", &spec, "--freeze", &bad])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    std::fs::remove_dir_all(&tmp).unwrap();
}
