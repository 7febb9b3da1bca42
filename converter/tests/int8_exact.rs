//! Issue 4 item 2 on the big model: the int8 ResNet-50 export (converted here, calibrated on a
//! few images) gives byte-identical outputs with the scalar reference kernels and the best
//! tier, at 1 to 4 threads. (ResNet-20's int8 bit-exactness, across CPUs too, is
//! `runtime/tests/int8_golden.rs`.)

mod common;
use resq::{Isa, Model, Options};
use resq_convert::{convert_file, CalibrationOptions, ConvertOptions, Precision};

#[test]
fn int8_resnet50_is_byte_identical_across_tiers_and_threads() {
    let Some(data) = common::data_dir("int8_resnet50_is_byte_identical_across_tiers_and_threads") else { return };
    if common::emulated() {
        eprintln!("SKIP int8 ResNet-50 under emulation (minutes per run); int8_golden covers ARM");
        return;
    }
    // Calibration images: the ImageNet-sized samples (weights are random, so accuracy is not the
    // point; the activations still span realistic ranges).
    let calib = std::env::temp_dir().join(format!("resq-int8-exact-{}", std::process::id()));
    std::fs::create_dir_all(&calib).unwrap();
    let samples = data.join("images/foolbox-samples");
    let mut n = 0;
    for e in std::fs::read_dir(&samples).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("imagenet_") && n < 5 {
            std::fs::copy(&p, calib.join(&name)).unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 5, "5 ImageNet samples in {}", samples.display());
    let opts = ConvertOptions {
        precision: Precision::Int8,
        calibration: CalibrationOptions { dir: Some(calib.clone()), count: 5, threads: 2, ..Default::default() },
        ..Default::default()
    };
    let bytes = convert_file(&data.join("models/imagenet-random/resnet50.onnx"), &opts).unwrap();
    std::fs::remove_dir_all(&calib).unwrap();
    let model = Model::from_bytes(bytes).unwrap();
    assert_eq!(model.info().precision, resq::Precision::Int8);
    assert!(model.info().file_size <= 27_000_000, "int8 ResNet-50 is {} bytes", model.info().file_size);
    let (_, input) = resq::npy::read_f32(&data.join("refs/resnet50/input.npy")).unwrap();
    let x = &input[..model.input_len()];
    let reference: Vec<u32> = {
        let mut s = model.session(Options::default().threads(1).max_isa(Isa::Generic)).unwrap();
        s.run(x).unwrap().iter().map(|v| v.to_bits()).collect()
    };
    let best = Isa::detect();
    for threads in 1..=4 {
        let mut s = model.session(Options::default().threads(threads).max_isa(best)).unwrap();
        let got: Vec<u32> = s.run(x).unwrap().iter().map(|v| v.to_bits()).collect();
        assert!(got == reference, "tier {:?} with {threads} threads differs from the scalar reference", s.isa());
    }
}
