//! Importer behaviour on small hand-built ONNX graphs: constant folding, the unsupported-ops
//! list, fusion of Clip/MatMul+Add, symbolic batch, and end-to-end numerics of the result.

use prost::Message;
use resq_convert::ir::{Act, Op};
use resq_convert::onnx::*;
use resq_convert::{convert_onnx_bytes, onnx_to_ir, ConvertError, ConvertOptions};

fn vi(name: &str, dims: &[i64], batch_sym: bool) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 && batch_sym { Value::DimParam("N".into()) } else { Value::DimValue(d) }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(data_type::FLOAT),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(data_type::INT64),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::INT), i: Some(v), ..Default::default() }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::INTS), ints: v.to_vec(), ..Default::default() }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, input: ValueInfoProto, output: &str, opset: i64) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("test".into()),
        producer_version: Some("1".into()),
        graph: Some(GraphProto {
            node: nodes,
            name: Some("g".into()),
            initializer: inits,
            input: vec![input],
            output: vec![ValueInfoProto { name: Some(output.into()), r#type: None }],
            value_info: vec![],
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Every unsupported node is listed at once, with op type, node name and reason.
#[test]
fn unsupported_nodes_are_all_listed() {
    let bytes = model(
        vec![
            node("Sin", "the_sin", &["x"], &["a"], vec![]),
            node("Mul", "the_mul", &["x", "x"], &["b"], vec![]),
            node("Relu", "fine", &["x"], &["c"], vec![]),
            node("LSTM", "the_lstm", &["c"], &["d"], vec![]),
            node("Add", "depends_on_bad", &["a", "b"], &["y"], vec![]),
        ],
        vec![],
        vi("x", &[1, 2], false),
        "y",
        17,
    );
    let err = onnx_to_ir(&bytes, &ConvertOptions::default()).unwrap_err();
    let ConvertError::Unsupported(list) = &err else { panic!("expected Unsupported, got {err}") };
    let got: Vec<(&str, &str)> = list.iter().map(|u| (u.op_type.as_str(), u.node.as_str())).collect();
    assert_eq!(got, [("Sin", "the_sin"), ("Mul", "the_mul"), ("LSTM", "the_lstm")]);
    let text = err.to_string();
    assert!(text.contains("3 unsupported") && text.contains("only Add"), "{text}");
}

/// The Shape -> Gather -> Unsqueeze -> Concat -> Reshape idiom folds to one Copy.
#[test]
fn shape_subgraphs_fold_to_constants() {
    let bytes = model(
        vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node(
                "Constant",
                "zero",
                &[],
                &["zero"],
                vec![AttributeProto {
                    name: Some("value".into()),
                    r#type: Some(attr_type::TENSOR),
                    t: Some(TensorProto {
                        dims: vec![],
                        data_type: Some(data_type::INT64),
                        int64_data: vec![0],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            ),
            node("Gather", "gather", &["s", "zero"], &["n"], vec![int_attr("axis", 0)]),
            node("Unsqueeze", "unsq", &["n", "axes"], &["n1"], vec![]),
            node("Concat", "concat", &["n1", "minus1"], &["shape"], vec![int_attr("axis", 0)]),
            node("Reshape", "reshape", &["x", "shape"], &["y"], vec![]),
        ],
        vec![i64_tensor("axes", &[0]), i64_tensor("minus1", &[-1])],
        vi("x", &[2, 3, 4, 5], true),
        "y",
        13,
    );
    let opts = ConvertOptions { batch: 2, ..Default::default() };
    let g = onnx_to_ir(&bytes, &opts).unwrap();
    assert_eq!(g.stats.folded_nodes, 5);
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].op, Op::Copy);
    assert_eq!(g.shape(g.output), [2, 60]);
    // The symbolic batch dim took opts.batch.
    assert_eq!(g.shape(g.input), [2, 3, 4, 5]);
    // And it runs: a reshape of NCHW input is a plain copy.
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &opts).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let x: Vec<f32> = (0..120).map(|i| i as f32).collect();
    assert_eq!(s.run(&x).unwrap(), x.as_slice());
}

/// Conv + Clip(0, 6) fuses; MatMul + Add(bias) becomes one Linear; numerics match a naive
/// evaluation.
#[test]
fn clip_and_matmul_bias_fuse_and_compute_correctly() {
    // x [1,2,3,3] -> conv 1x1 (2->2, w = [[1,-1],[2,0.5]]) -> Clip(0, 6) -> GAP -> Flatten
    // -> MatMul [2,3] -> Add [3].
    let w = [1.0f32, -1.0, 2.0, 0.5];
    let mm = [1.0f32, 2.0, 3.0, -1.0, 0.0, 1.0];
    let bias = [0.5f32, -0.5, 1.0];
    let bytes = model(
        vec![
            node("Conv", "conv", &["x", "w"], &["c"], vec![ints_attr("kernel_shape", &[1, 1])]),
            node("Clip", "clip", &["c", "lo", "hi"], &["r"], vec![]),
            node("GlobalAveragePool", "gap", &["r"], &["p"], vec![]),
            node("Flatten", "flat", &["p"], &["f"], vec![]),
            node("MatMul", "mm", &["f", "m"], &["l"], vec![]),
            node("Add", "bias", &["l", "b"], &["y"], vec![]),
        ],
        vec![
            f32_tensor("w", &[2, 2, 1, 1], &w),
            f32_tensor("lo", &[], &[0.0]),
            f32_tensor("hi", &[], &[6.0]),
            f32_tensor("m", &[2, 3], &mm),
            f32_tensor("b", &[3], &bias),
        ],
        vi("x", &[1, 2, 3, 3], false),
        "y",
        13,
    );
    let g = onnx_to_ir(&bytes, &ConvertOptions::default()).unwrap();
    let ops: Vec<&Op> = g.nodes.iter().map(|n| &n.op).collect();
    assert!(matches!(ops[0], Op::Conv2d { act: Act::Clip(lo, hi), .. } if *lo == 0.0 && *hi == 6.0), "{ops:?}");
    assert_eq!(ops.len(), 4, "{ops:?}");
    assert_eq!(*ops[3], Op::Linear { act: Act::None });
    assert_eq!(g.nodes[3].inputs.len(), 3);
    assert!(g.nodes[3].inputs[2].is_some(), "the Add became the Linear's bias");

    let x: Vec<f32> = (0..18).map(|i| (i as f32 - 6.0) * 0.7).collect();
    // Naive reference.
    let mut pooled = [0f32; 2];
    for (o, p) in pooled.iter_mut().enumerate() {
        for k in 0..9 {
            let v = w[o * 2] * x[k] + w[o * 2 + 1] * x[9 + k];
            *p += v.clamp(0.0, 6.0) / 9.0;
        }
    }
    let want: Vec<f32> = (0..3).map(|n| pooled[0] * mm[n] + pooled[1] * mm[3 + n] + bias[n]).collect();
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &ConvertOptions::default()).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let got = s.run(&x).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "got {got:?} want {want:?}");
    }
}

/// Slice / Pad / Add on NHWC activations get their axes translated to the physical layout.
#[test]
fn slice_pad_on_nhwc_activations_match_logical_semantics() {
    // x [1,2,4,4] -> conv identity (1x1, 2->2) -> Slice H,W ::2 -> Pad channels 1 before, 1 after
    // -> y [1,4,2,2] (a 4-D graph output: converted back to NCHW).
    let bytes = model(
        vec![
            node("Conv", "conv", &["x", "w"], &["c"], vec![]),
            node("Slice", "slice", &["c", "st", "en", "ax", "sp"], &["s"], vec![]),
            node("Pad", "pad", &["s", "pads"], &["y"], vec![]),
        ],
        vec![
            f32_tensor("w", &[2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]),
            i64_tensor("st", &[0, 1]),
            i64_tensor("en", &[i64::MAX, i64::MAX]),
            i64_tensor("ax", &[2, 3]),
            i64_tensor("sp", &[2, 2]),
            i64_tensor("pads", &[0, 1, 0, 0, 0, 1, 0, 0]),
        ],
        vi("x", &[1, 2, 4, 4], false),
        "y",
        13,
    );
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &ConvertOptions::default()).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let got = s.run(&x).unwrap().to_vec();
    let mut want = vec![0f32; 16];
    for c in 0..2 {
        for h in 0..2 {
            for w in 0..2 {
                want[((c + 1) * 2 + h) * 2 + w] = x[(c * 4 + 2 * h) * 4 + 2 * w + 1];
            }
        }
    }
    assert_eq!(got, want);
}

/// ReduceMean over H, W (keepdims 0) becomes GlobalAvgPool (+ Copy); opset-11 Softmax
/// normalises over every dim from `axis` on.
#[test]
fn reduce_mean_and_legacy_softmax() {
    let bytes = model(
        vec![
            node("ReduceMean", "rm", &["x"], &["m"], vec![ints_attr("axes", &[-2, -1]), int_attr("keepdims", 0)]),
            node("Reshape", "rs", &["m", "shape"], &["r"], vec![]),
            node("Softmax", "sm", &["r"], &["y"], vec![int_attr("axis", 1)]),
        ],
        vec![i64_tensor("shape", &[1, 2, 2])],
        vi("x", &[1, 4, 2, 3], false),
        "y",
        11,
    );
    let g = onnx_to_ir(&bytes, &ConvertOptions::default()).unwrap();
    let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(kinds, ["GlobalAvgPool", "Copy", "Softmax"], "the two reshaping copies merge");
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &ConvertOptions::default()).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.3).collect();
    let means: Vec<f32> = (0..4).map(|c| x[c * 6..c * 6 + 6].iter().sum::<f32>() / 6.0).collect();
    let mx = means.iter().cloned().fold(f32::MIN, f32::max);
    let den: f32 = means.iter().map(|v| (v - mx).exp()).sum();
    let want: Vec<f32> = means.iter().map(|v| (v - mx).exp() / den).collect();
    let got = s.run(&x).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6, "got {got:?} want {want:?}");
    }
}

/// Two consecutive slices (torch's `x[:, :, ::2, ::2]`) merge into one.
#[test]
fn consecutive_slices_merge() {
    let bytes = model(
        vec![
            node("Slice", "s1", &["x", "z", "big", "a2", "two"], &["h"], vec![]),
            node("Slice", "s2", &["h", "one", "big", "a3", "two"], &["y"], vec![]),
        ],
        vec![
            i64_tensor("z", &[0]),
            i64_tensor("one", &[1]),
            i64_tensor("big", &[i64::MAX]),
            i64_tensor("a2", &[2]),
            i64_tensor("a3", &[3]),
            i64_tensor("two", &[2]),
        ],
        vi("x", &[1, 1, 4, 4], false),
        "y",
        13,
    );
    let g = onnx_to_ir(&bytes, &ConvertOptions::default()).unwrap();
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].op, Op::Slice { starts: vec![0, 0, 0, 1], steps: vec![1, 1, 2, 2] });
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &ConvertOptions::default()).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
    assert_eq!(s.run(&x).unwrap(), [1.0, 3.0, 9.0, 11.0]);
}

/// Truncated and bit-flipped models give `Ok` or `Err`, never a panic.
#[test]
fn mutated_models_never_panic() {
    let good = model(
        vec![
            node("Conv", "conv", &["x", "w"], &["c"], vec![ints_attr("pads", &[1, 1, 1, 1])]),
            node("Relu", "relu", &["c"], &["r"], vec![]),
            node("Shape", "shape", &["r"], &["s"], vec![]),
            node("Slice", "sl", &["s", "z", "one"], &["n"], vec![]),
            node("Concat", "cat", &["n", "minus1"], &["shape"], vec![int_attr("axis", 0)]),
            node("Reshape", "rs", &["r", "shape"], &["f"], vec![]),
            node("Gemm", "fc", &["f", "b", "bias"], &["y"], vec![int_attr("transB", 1)]),
        ],
        vec![
            f32_tensor("w", &[2, 1, 3, 3], &[0.5; 18]),
            i64_tensor("z", &[0]),
            i64_tensor("one", &[1]),
            i64_tensor("minus1", &[-1]),
            f32_tensor("b", &[3, 32], &[0.25; 96]),
            f32_tensor("bias", &[3], &[1.0, 2.0, 3.0]),
        ],
        vi("x", &[1, 1, 4, 4], false),
        "y",
        13,
    );
    let opts = ConvertOptions::default();
    let bytes = convert_onnx_bytes(&good, "t.onnx", &opts).unwrap();
    let m = resq::Model::from_bytes(bytes).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    // conv of ones with 0.5 weights, padded: corner 4 taps, edge 6, centre 9 -> *0.5.
    let out = s.run(&[1.0; 16]).unwrap().to_vec();
    let per_ch = [2.0, 3.0, 3.0, 2.0, 3.0, 4.5, 4.5, 3.0, 3.0, 4.5, 4.5, 3.0, 2.0, 3.0, 3.0, 2.0];
    let total: f32 = per_ch.iter().sum::<f32>() * 2.0 * 0.25;
    assert_eq!(out, [total + 1.0, total + 2.0, total + 3.0]);

    let mut state = 0x9e37_79b9u32;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut outcomes = [0usize; 2];
    for len in 0..good.len() {
        let r = std::panic::catch_unwind(|| convert_onnx_bytes(&good[..len], "t.onnx", &opts).is_ok());
        assert!(r.is_ok(), "truncation to {len} bytes panicked");
        outcomes[r.unwrap() as usize] += 1;
    }
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + rnd() % 4 {
            let i = rnd() as usize % b.len();
            b[i] ^= 1 << (rnd() % 8);
        }
        let r = std::panic::catch_unwind(|| convert_onnx_bytes(&b, "t.onnx", &opts).is_ok());
        assert!(r.is_ok(), "bit flips panicked: {b:?}");
        outcomes[r.unwrap() as usize] += 1;
    }
    println!("mutated models: {} converted, {} rejected", outcomes[1], outcomes[0]);
    assert!(outcomes[0] > 0);
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::FLOAT), f: Some(v), ..Default::default() }
}

/// Opset 9 attribute forms: Slice starts/ends/axes, Pad pads/value, Clip min/max.
#[test]
fn old_opset_attribute_forms() {
    let bytes = model(
        vec![
            node(
                "Slice",
                "sl",
                &["x"],
                &["s"],
                vec![ints_attr("starts", &[1]), ints_attr("ends", &[3]), ints_attr("axes", &[2])],
            ),
            node(
                "Pad",
                "pad",
                &["s"],
                &["p"],
                vec![ints_attr("pads", &[0, 0, 1, 0, 0, 0, 0, 1]), float_attr("value", 9.0)],
            ),
            node("Clip", "clip", &["p"], &["y"], vec![float_attr("min", -1.0), float_attr("max", 5.0)]),
        ],
        vec![],
        vi("x", &[1, 1, 4, 2], false),
        "y",
        9,
    );
    let g = onnx_to_ir(&bytes, &ConvertOptions::default()).unwrap();
    assert_eq!(g.shape(g.output), [1, 1, 3, 3]);
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &ConvertOptions::default()).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let x = [-3.0, 0.0, 1.0, 2.0, 3.0, 7.0, 4.0, -2.0];
    // rows 1..3 = [1,2],[3,7]; pad one row on top and one column on the right with 9; clip.
    assert_eq!(s.run(&x).unwrap(), [5.0, 5.0, 5.0, 1.0, 2.0, 5.0, 3.0, 5.0, 5.0]);
}

/// MatMul of a rank-3 activation by a constant matrix: reshape, Linear, reshape back.
#[test]
fn matmul_rank3() {
    let w = [1.0f32, 0.0, 2.0, 1.0, -1.0, 0.5];
    let bytes = model(
        vec![node("MatMul", "mm", &["x", "w"], &["y"], vec![])],
        vec![f32_tensor("w", &[3, 2], &w)],
        vi("x", &[2, 2, 3], false),
        "y",
        13,
    );
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &ConvertOptions::default()).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let want: Vec<f32> = (0..4)
        .flat_map(|r| (0..2).map(move |n| (0..3).map(|k| (r * 3 + k) as f32 * w[k * 2 + n]).sum::<f32>()))
        .collect();
    assert_eq!(s.run(&x).unwrap(), want.as_slice());
    assert_eq!(m.output_len(), 8);
}

/// An Add of a per-channel constant and a Transpose, both on an NHWC activation.
#[test]
fn add_broadcast_and_transpose_on_nhwc() {
    let bytes = model(
        vec![
            node("Conv", "conv", &["x", "w"], &["c"], vec![]),
            node("Add", "add", &["cb", "c"], &["a"], vec![]),
            node("Transpose", "tr", &["a"], &["y"], vec![ints_attr("perm", &[0, 2, 3, 1])]),
        ],
        vec![f32_tensor("w", &[2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]), f32_tensor("cb", &[2, 1, 1], &[100.0, 200.0])],
        vi("x", &[1, 2, 2, 3], false),
        "y",
        13,
    );
    let g = onnx_to_ir(&bytes, &ConvertOptions::default()).unwrap();
    assert_eq!(g.nodes.len(), 3, "a constant operand is not a residual");
    let m = resq::Model::from_bytes(convert_onnx_bytes(&bytes, "t.onnx", &ConvertOptions::default()).unwrap()).unwrap();
    let mut s = m.session(resq::Options::default().threads(1)).unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let mut want = vec![0f32; 12];
    for c in 0..2 {
        for h in 0..2 {
            for w in 0..3 {
                want[(h * 3 + w) * 2 + c] = x[(c * 2 + h) * 3 + w] + 100.0 * (c + 1) as f32;
            }
        }
    }
    assert_eq!(s.run(&x).unwrap(), want.as_slice());
}
