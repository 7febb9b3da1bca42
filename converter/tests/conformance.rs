//! ONNX operator conformance: every folder of `onnx-op-tests/node/` is converted (inputs 1..
//! frozen from the test vectors), run by the runtime on `input_0`, and compared with
//! `output_0` (|err| <= 1e-5 + 1e-5 * |ref|). Tests listed in [`EXPECTED_UNSUPPORTED`] must
//! fail to convert with an error that names their operator.

mod common;

use resq_convert::{convert_onnx_bytes, ConvertError, ConvertOptions, FrozenTensor};
use std::path::Path;

/// Tests resq does not import, with the reason, and the op type the error must name.
const EXPECTED_UNSUPPORTED: &[(&str, &str, &str)] = &[
    ("test_cast_FLOAT16_to_FLOAT", "Cast", "fp16 tensors: activations are f32 at run time"),
    ("test_cast_FLOAT_to_FLOAT16", "Cast", "fp16 tensors: activations are f32 at run time"),
    ("test_convinteger_with_padding", "ConvInteger", "pre-quantized graphs are not imported"),
    ("test_convinteger_without_padding", "ConvInteger", "pre-quantized graphs are not imported"),
    ("test_dequantizelinear", "DequantizeLinear", "pre-quantized graphs are not imported"),
    ("test_dequantizelinear_axis", "DequantizeLinear", "pre-quantized graphs are not imported"),
    ("test_matmulinteger", "MatMulInteger", "pre-quantized graphs are not imported"),
    ("test_maxpool_2d_uint8", "MaxPool", "uint8 activations: activations are f32"),
    ("test_qlinearconv", "QLinearConv", "pre-quantized graphs are not imported"),
    ("test_qlinearmatmul_2D", "QLinearMatMul", "pre-quantized graphs are not imported"),
    ("test_qlinearmatmul_3D", "QLinearMatMul", "pre-quantized graphs are not imported"),
    ("test_quantizelinear", "QuantizeLinear", "pre-quantized graphs are not imported"),
    ("test_quantizelinear_axis", "QuantizeLinear", "pre-quantized graphs are not imported"),
    ("test_reshape_allowzero_reordered", "Reshape", "zero-sized tensors are not supported"),
];

fn run_one(dir: &Path) -> Result<f32, String> {
    let model = std::fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let set = dir.join("test_data_set_0");
    let onnx = resq_convert::graph_input_names(&model).map_err(|e| e.to_string())?;
    let mut opts = ConvertOptions::default();
    for (k, name) in onnx.iter().enumerate().skip(1) {
        let t = FrozenTensor::from_file(&set.join(format!("input_{k}.pb"))).map_err(|e| e.to_string())?;
        opts.freeze.push((name.clone(), t));
    }
    let bytes = convert_onnx_bytes(&model, "model.onnx", &opts).map_err(|e| format!("convert: {e}"))?;
    let m = resq::Model::from_bytes(bytes).map_err(|e| format!("load: {e}"))?;
    let mut s = m.session(resq::Options::default().threads(1)).map_err(|e| format!("session: {e}"))?;
    let input = resq_convert::load_tensor_proto(&std::fs::read(set.join("input_0.pb")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let want = resq_convert::load_tensor_proto(&std::fs::read(set.join("output_0.pb")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let got = s.run(&input.1).map_err(|e| format!("run: {e}"))?;
    if got.len() != want.1.len() {
        return Err(format!("output has {} values, reference {} ({:?})", got.len(), want.1.len(), want.0));
    }
    Ok(common::worst_ratio(got, &want.1))
}

#[test]
fn onnx_node_conformance() {
    let Some(data) = common::data_dir("onnx_node_conformance") else { return };
    let root = data.join("onnx-op-tests/node");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    let (mut passed, mut unsupported, mut failures) = (0, 0, Vec::new());
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if let Some((_, op, why)) = EXPECTED_UNSUPPORTED.iter().find(|(n, _, _)| *n == name) {
            let model = std::fs::read(dir.join("model.onnx")).unwrap();
            let inputs = resq_convert::graph_input_names(&model).unwrap();
            let mut opts = ConvertOptions::default();
            for (k, n) in inputs.iter().enumerate().skip(1) {
                let t = FrozenTensor::from_file(&dir.join(format!("test_data_set_0/input_{k}.pb"))).unwrap();
                opts.freeze.push((n.clone(), t));
            }
            match convert_onnx_bytes(&model, "model.onnx", &opts) {
                Err(ConvertError::Unsupported(list)) if list.iter().any(|u| u.op_type == *op) => {
                    println!("{name}: unsupported as expected ({why}): {}", list[0]);
                    unsupported += 1;
                }
                Err(e) => failures.push(format!("{name}: expected an unsupported-{op} error, got: {e}")),
                Ok(_) => failures.push(format!("{name}: expected unsupported ({why}) but it converted")),
            }
            continue;
        }
        match run_one(dir) {
            Ok(r) if r <= 1.0 => passed += 1,
            Ok(r) => failures.push(format!("{name}: error {r:.1}x the tolerance")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    println!(
        "conformance: {passed} passed, {unsupported} unsupported as expected, {} failed, of {}",
        failures.len(),
        dirs.len()
    );
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(passed > 0);
}
