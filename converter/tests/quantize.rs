//! int8 / fp16 rewriting of lowered programs (`resq_convert::quant::rewrite`): structure,
//! quantization parameters against hand computations, Quantize/Dequantize placement, mixed
//! precision, errors, and (when the runtime runs int8) end to end on a tiny CNN and ResNet-20.

use resq::format::{empty_meta, ActKind, DType, FileBuilder, Layout, OpKind, PreprocessPreset, NONE};
use resq_convert::ir::{Act, ConvSpec, Data, Graph, Node, Op, PoolSpec, Tensor};
use resq_convert::lower::{lower, Packing, Params, Program};
use resq_convert::quant::rewrite::{
    act_quant_from_range, fixed_point_multipliers, quantizable_layers, quantize_layer, quantize_program,
    quantize_weights, quantized_act_range, to_fp16, ActQuant, QuantPlan,
};
use std::collections::HashMap;

const FLOAT: i32 = 1; // onnx FLOAT

fn act(g: &mut Graph, name: &str, shape: &[usize]) -> usize {
    g.add_tensor(Tensor { name: name.into(), dtype: FLOAT, shape: Some(shape.to_vec()), value: None })
}

fn cst(g: &mut Graph, name: &str, shape: &[usize], v: Vec<f32>) -> usize {
    assert_eq!(v.len(), shape.iter().product::<usize>());
    g.add_tensor(Tensor { name: name.into(), dtype: FLOAT, shape: Some(shape.to_vec()), value: Some(Data::F32(v)) })
}

fn node(g: &mut Graph, name: &str, op: Op, inputs: &[Option<usize>], out: usize) {
    g.nodes.push(Node { name: name.into(), op, inputs: inputs.to_vec(), outputs: vec![out] });
}

fn conv1x1() -> Op {
    let spec = ConvSpec { kernel: [1, 1], strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 };
    Op::Conv2d { spec, act: Act::Relu }
}

/// x [1,4,4,4] -> n1 conv 1x1 4->2 relu -> c1 -> n2 conv 1x1 2->2 (+c1, relu) -> c2;
/// n3 ChannelAffine(c1) -> s; n4 Add(c2, s) relu -> a; n5 MaxPool 2x2/2 -> m;
/// n6 GlobalAvgPool -> gp; n7 Copy -> f [1,2]; n8 Linear 2->3 -> logits; n9 Softmax -> probs.
/// Weights chosen so every scale is a power of two (hand-computable qparams).
fn small_graph() -> Graph {
    let mut g = Graph::default();
    let x = act(&mut g, "x", &[1, 4, 4, 4]);
    g.input = x;
    // Row 0: max 127/64 -> s_w = 1/64; q = [32, -16.5 -> -16, 2.5 -> 2, 127]. Row 1: zeros.
    let w1 = cst(&mut g, "w1", &[2, 4, 1, 1], vec![0.5, -0.2578125, 0.0390625, 1.984375, 0.0, 0.0, 0.0, 0.0]);
    let b1 = cst(&mut g, "b1", &[2], vec![0.3, -0.7]);
    let c1 = act(&mut g, "c1", &[1, 2, 4, 4]);
    node(&mut g, "n1", conv1x1(), &[Some(x), Some(w1), Some(b1)], c1);
    // Row 0: s_w = 1/64, q = [127, 32]; row 1: max 127/128 -> s_w = 1/128, q = [-127, 32].
    let w2 = cst(&mut g, "w2", &[2, 2, 1, 1], vec![1.984375, 0.5, -0.9921875, 0.25]);
    let c2 = act(&mut g, "c2", &[1, 2, 4, 4]);
    node(&mut g, "n2", conv1x1(), &[Some(c1), Some(w2), None, Some(c1)], c2);
    let sc = cst(&mut g, "sc", &[2], vec![2.0, -1.0]);
    let sh = cst(&mut g, "sh", &[2], vec![0.5, 0.25]);
    let s = act(&mut g, "s", &[1, 2, 4, 4]);
    node(&mut g, "n3", Op::ChannelAffine { act: Act::None }, &[Some(c1), Some(sc), Some(sh)], s);
    let a = act(&mut g, "a", &[1, 2, 4, 4]);
    node(&mut g, "n4", Op::Add { act: Act::Relu }, &[Some(c2), Some(s)], a);
    let m = act(&mut g, "m", &[1, 2, 2, 2]);
    let pool = PoolSpec { kernel: [2, 2], strides: [2, 2], pads: [0; 4], dilations: [1, 1], count_include_pad: false };
    node(&mut g, "n5", Op::MaxPool(pool), &[Some(a)], m);
    let gp = act(&mut g, "gp", &[1, 2, 1, 1]);
    node(&mut g, "n6", Op::GlobalAvgPool, &[Some(m)], gp);
    let f = act(&mut g, "f", &[1, 2]);
    node(&mut g, "n7", Op::Copy, &[Some(gp)], f);
    let w3 = cst(&mut g, "w3", &[3, 2], vec![1.0, -0.5, 0.25, 0.75, -1.5, 0.125]);
    let b3 = cst(&mut g, "b3", &[3], vec![0.1, 0.0, -0.2]);
    let logits = act(&mut g, "logits", &[1, 3]);
    node(&mut g, "n8", Op::Linear { act: Act::None }, &[Some(f), Some(w3), Some(b3)], logits);
    let probs = act(&mut g, "probs", &[1, 3]);
    node(&mut g, "n9", Op::Softmax { axis: 1, legacy: false }, &[Some(logits)], probs);
    g.output = probs;
    g
}

fn aq(scale: f32, zero_point: i32) -> ActQuant {
    ActQuant { scale, zero_point }
}

/// Plan for [`small_graph`] (no entry for `f`: the Copy output falls back to `gp`'s).
fn small_plan() -> QuantPlan {
    let mut act = HashMap::new();
    for (n, q) in [
        ("x:nhwc", aq(0.125, 3)),
        ("c1", aq(0.0625, -128)),
        ("c2", aq(0.25, -10)),
        ("s", aq(0.03125, 5)),
        ("a", aq(0.5, -128)),
        ("m", aq(0.5, -128)),
        ("gp", aq(0.25, -100)),
        ("logits", aq(0.0078125, 0)),
    ] {
        act.insert(n.to_string(), q);
    }
    QuantPlan { act, ..Default::default() }
}

fn tensor<'p>(p: &'p Program, name: &str) -> &'p resq_convert::lower::LTensor {
    p.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor '{name}'"))
}

fn i32s(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn op_list(p: &Program) -> Vec<(OpKind, String)> {
    p.ops.iter().map(|o| (o.kind, o.name.clone())).collect()
}

/// Bytes of a `.resq` file holding `prog` (meta: raw input, given precision).
fn file_bytes(mut prog: Program, precision: u32) -> Vec<u8> {
    let mut b = FileBuilder::new();
    let ids = prog.emit(&mut b);
    let mut meta = empty_meta();
    meta.name = b.string("test");
    meta.input_tensor = ids[prog.input as usize];
    meta.output_tensor = ids[prog.output as usize];
    meta.input_dims = prog.input_dims.map(|d| d as u32);
    meta.preprocess = PreprocessPreset::None as u32;
    meta.scale = 1.0;
    meta.std = [1.0; 3];
    meta.precision = precision;
    b.set_meta(meta);
    b.finish().expect("file builds")
}

#[test]
fn int8_program_structure_and_placement() {
    let fp32 = lower(&small_graph(), Packing::Reference).unwrap();
    assert_eq!(quantizable_layers(&fp32), ["n1", "n2", "n8"]);
    let q = quantize_program(fp32, &small_plan()).unwrap();
    let ops = op_list(&q);
    let want = [
        (OpKind::Transpose, "to_nhwc:x"),
        (OpKind::Quantize, "quantize:x:nhwc"),
        (OpKind::Conv2d, "n1"),
        (OpKind::Conv2d, "n2"),
        (OpKind::Dequantize, "dequantize:c1"),
        (OpKind::ChannelAffine, "n3"),
        (OpKind::Quantize, "quantize:s"),
        (OpKind::Add, "n4"),
        (OpKind::MaxPool2d, "n5"),
        (OpKind::GlobalAvgPool, "n6"),
        (OpKind::Copy, "n7"),
        (OpKind::Linear, "n8"),
        (OpKind::Dequantize, "dequantize:logits"),
        (OpKind::Softmax, "n9"),
    ];
    assert_eq!(ops, want.map(|(k, n)| (k, n.to_string())));

    // Every op's inputs are produced earlier (or constants / the input); dtypes per op kind.
    let mut ready: Vec<bool> = q.tensors.iter().map(|t| t.bytes.is_some()).collect();
    ready[q.input as usize] = true;
    for op in &q.ops {
        for &i in op.inputs.iter().filter(|&&i| i != NONE) {
            assert!(ready[i as usize], "op {} reads '{}' before it exists", op.name, q.tensors[i as usize].name);
        }
        for &o in &op.outputs {
            ready[o as usize] = true;
        }
        let dt = |i: u32| q.tensors[i as usize].dtype;
        let (x, y) = (op.inputs[0], op.outputs[0]);
        match op.kind {
            OpKind::Quantize => assert_eq!((dt(x), dt(y)), (DType::F32, DType::I8)),
            OpKind::Dequantize => assert_eq!((dt(x), dt(y)), (DType::I8, DType::F32)),
            OpKind::Transpose | OpKind::ChannelAffine | OpKind::Softmax => {
                assert_eq!((dt(x), dt(y)), (DType::F32, DType::F32), "{}", op.name)
            }
            _ => assert_eq!((dt(x), dt(y)), (DType::I8, DType::I8), "{}", op.name),
        }
        if matches!(op.kind, OpKind::Quantize | OpKind::Dequantize) {
            let (a, b) = (&q.tensors[x as usize], &q.tensors[y as usize]);
            assert_eq!((a.layout, &a.dims), (b.layout, &b.dims));
        }
    }
    // Names: activations keep theirs, inserted ones get .q / .dq; the output is F32 RowMajor.
    for (name, dtype, scale, zp) in [
        ("x:nhwc", DType::F32, 0.0, 0),
        ("x:nhwc.q", DType::I8, 0.125, 3),
        ("c1", DType::I8, 0.0625, -128),
        ("c1.dq", DType::F32, 0.0, 0),
        ("c2", DType::I8, 0.25, -10),
        ("s", DType::F32, 0.0, 0),
        ("s.q", DType::I8, 0.03125, 5),
        ("a", DType::I8, 0.5, -128),
        ("m", DType::I8, 0.5, -128), // MaxPool: the input's parameters
        ("gp", DType::I8, 0.25, -100),
        ("f", DType::I8, 0.25, -100), // Copy: the input's parameters
        ("logits", DType::I8, 0.0078125, 0),
        ("logits.dq", DType::F32, 0.0, 0),
        ("probs", DType::F32, 0.0, 0),
    ] {
        let t = tensor(&q, name);
        assert_eq!((t.dtype, t.scale, t.zero_point), (dtype, scale, zp), "{name}");
        assert!(t.bytes.is_none());
    }
    assert_eq!(q.tensors.iter().filter(|t| t.name.ends_with(".q")).count(), 2, "each tensor quantized once");
    let out = &q.tensors[q.output as usize];
    assert_eq!((out.name.as_str(), out.dtype, out.layout), ("probs", DType::F32, Layout::RowMajor));
    assert_eq!(q.tensors[q.input as usize].name, "x");
    // The fp32 weights are gone: only int8 weights, I32 qparams and the float op's constants.
    for t in q.tensors.iter().filter(|t| t.bytes.is_some()) {
        match t.name.as_str() {
            "w1" | "w2" | "w3" => assert_eq!((t.dtype, t.layout), (DType::I8, Layout::PackedN16K4), "{}", t.name),
            "w1.qparams" | "w2.qparams" | "w3.qparams" => {
                assert_eq!((t.dtype, t.layout, t.dims[1]), (DType::I32, Layout::RowMajor, 4))
            }
            "sc" | "sh" => assert_eq!(t.dtype, DType::F32),
            other => panic!("unexpected constant '{other}'"),
        }
    }
}

#[test]
fn conv_qparams_match_hand_computation() {
    let q = quantize_program(lower(&small_graph(), Packing::Reference).unwrap(), &small_plan()).unwrap();
    let n1 = q.ops.iter().find(|o| o.name == "n1").unwrap();
    let Params::Conv(p) = n1.params else { panic!() };
    assert_eq!((p.algo, p.act, p.act_min, p.act_max, p.qmin, p.qmax), (3, 0, 0.0, 0.0, -128, 127));
    assert_eq!(n1.inputs.len(), 4);
    assert_eq!(n1.inputs[3], NONE);
    // s_x = 1/8, z_x = 3, s_y = 1/16.
    // Row 0: s_w = 1/64, q = [32, -16, 2, 127], sum 145; s_acc = 2^-9:
    //   bias = round(0.3 * 512 = 153.6) - 3 * 145 = -281; M = 2^-9 / 2^-4 = 2^-5 -> 2^30 >> 35.
    // Row 1: zero weights, s_w = 1, s_acc = 1/8: bias = round(-5.6) = -6; M = 2 -> 2^30 >> 29.
    let qp = i32s(q.tensors[n1.inputs[2] as usize].bytes.as_ref().unwrap());
    assert_eq!(qp, [-281, 1 << 30, 0, 35, -6, 1 << 30, 0, 29]);
    let w = &q.tensors[n1.inputs[1] as usize];
    assert_eq!(w.dims, [2, 1, 1, 4]);
    let wb: Vec<i8> = w.bytes.as_ref().unwrap().iter().map(|&b| b as i8).collect();
    assert_eq!(wb.len(), 64); // one panel of 16 channels x one group of 4 k
    assert_eq!(&wb[..8], &[32, -16, 2, 127, 0, 0, 0, 0]);
    assert!(wb[8..].iter().all(|&v| v == 0));

    // n2: x = c1 (1/16, -128), y = c2 (1/4, -10), residual c1, ReLU -> qmin = z_y.
    // Row 0: s_w = 1/64, q = [127, 32]: bias = 128 * 159 = 20352; M_acc = 2^-10/2^-2 = 2^-8,
    //   M_res = 1/4 -> shift 32: m_acc = 2^24, m_res = 2^30.
    // Row 1: s_w = 1/128, q = [-127, 32]: bias = 128 * -95 = -12160; M_acc = 2^-9 -> 2^23.
    let n2 = q.ops.iter().find(|o| o.name == "n2").unwrap();
    let Params::Conv(p) = n2.params else { panic!() };
    assert_eq!((p.algo, p.qmin, p.qmax), (3, -10, 127));
    assert_eq!(q.tensors[n2.inputs[0] as usize].name, "c1");
    assert_eq!(n2.inputs[3], n2.inputs[0], "the residual is c1's int8 tensor");
    let qp = i32s(q.tensors[n2.inputs[2] as usize].bytes.as_ref().unwrap());
    assert_eq!(qp, [20352, 1 << 24, 1 << 30, 32, -12160, 1 << 23, 1 << 30, 32]);

    // Add n4: a = c2 (1/4), b = s.q (1/32), y = a (1/2, -128), ReLU: M = 1/2, 1/16 -> shift 31.
    let n4 = q.ops.iter().find(|o| o.name == "n4").unwrap();
    let Params::Add(p) = n4.params else { panic!() };
    assert_eq!((p.m_a, p.m_b, p.shift, p.qmin, p.qmax, p.act), (1 << 30, 1 << 27, 31, -128, 127, 0));
    assert_eq!(q.tensors[n4.inputs[1] as usize].name, "s.q");
    // GlobalAvgPool: s_x/s_y = 0.5/0.25 = 2 -> 2^30 >> 29.
    let n6 = q.ops.iter().find(|o| o.name == "n6").unwrap();
    let Params::GlobalPool(p) = n6.params else { panic!("{:?}", n6.params) };
    assert_eq!((p.mult, p.shift), (1 << 30, 29));

    // Linear n8: x = f (1/4, -100), y = logits (1/128, 0), weights [3, 2]:
    //   rows [1, -0.5] s_w 1/127; [0.25, 0.75] s_w 0.75/127; [-1.5, 0.125] s_w 1.5/127.
    let n8 = q.ops.iter().find(|o| o.name == "n8").unwrap();
    let Params::Act(p) = n8.params else { panic!() };
    assert_eq!((p.act, p.qmin, p.qmax), (0, -128, 127));
    assert_eq!(n8.inputs.len(), 3);
    let qp = i32s(q.tensors[n8.inputs[2] as usize].bytes.as_ref().unwrap());
    let w3 = [[1.0f32, -0.5], [0.25, 0.75], [-1.5, 0.125]];
    let b3 = [0.1f64, 0.0, -0.2];
    for r in 0..3 {
        let s_w = w3[r][0].abs().max(w3[r][1].abs()) / 127.0;
        let qw: Vec<i64> = w3[r].iter().map(|&v| (v / s_w).round_ties_even() as i64).collect();
        let s_acc = 0.25 * f64::from(s_w);
        let bias = (b3[r] / s_acc).round_ties_even() as i64 + 100 * (qw[0] + qw[1]);
        let shift = qp[r * 4 + 3];
        let m = (s_acc / 0.0078125 * 2f64.powi(shift)).round() as i64;
        assert_eq!(qp[r * 4] as i64, bias, "row {r}");
        assert_eq!(qp[r * 4 + 1] as i64, m, "row {r}");
        assert!((1 << 30..1 << 31).contains(&m), "row {r}: m = {m} not the largest shift");
        assert_eq!(qp[r * 4 + 2], 0);
    }
    let w = &q.tensors[n8.inputs[1] as usize];
    assert_eq!((w.layout, w.dims.clone()), (Layout::PackedN16K4, vec![3, 2]));
    let wb: Vec<i8> = w.bytes.as_ref().unwrap().iter().map(|&b| b as i8).collect();
    let mut want = vec![0i8; 64];
    for r in 0..3 {
        let s_w = w3[r][0].abs().max(w3[r][1].abs()) / 127.0;
        for k in 0..2 {
            want[r * 4 + k] = (w3[r][k] / s_w).round_ties_even() as i8;
        }
    }
    assert_eq!(wb, want);
    assert_eq!(&wb[4..12], &[42, 127, 0, 0, -127, 11, 0, 0]);
}

#[test]
fn keep_float_layers_stay_float_on_fast_layouts() {
    let fp32 = lower(&small_graph(), Packing::Reference).unwrap();
    let mut plan = small_plan();
    plan.keep_float.insert("n2".into());
    plan.keep_float_f16 = true;
    let q = quantize_program(fp32.clone(), &plan).unwrap();
    let names: Vec<String> = op_list(&q).into_iter().map(|(k, n)| format!("{}:{n}", k.name())).collect();
    assert_eq!(
        names,
        [
            "Transpose:to_nhwc:x",
            "Quantize:quantize:x:nhwc",
            "Conv2d:n1",
            "Dequantize:dequantize:c1",
            "Conv2d:n2",
            "ChannelAffine:n3",
            "Add:n4", // both operands f32: f32
            "MaxPool2d:n5",
            "GlobalAvgPool:n6",
            "Copy:n7",
            "Quantize:quantize:f", // plan has no "f": gp's parameters through the Copy
            "Linear:n8",
            "Dequantize:dequantize:logits",
            "Softmax:n9",
        ]
    );
    let n2 = q.ops.iter().find(|o| o.name == "n2").unwrap();
    let Params::Conv(p) = n2.params else { panic!() };
    assert_eq!((p.algo, p.act, p.qmin, p.qmax), (1, ActKind::Relu as u32, 0, 0));
    let w = &q.tensors[n2.inputs[1] as usize];
    assert_eq!((w.dtype, w.layout, w.dims.clone()), (DType::F16, Layout::PackedN16, vec![2, 1, 1, 2]));
    // PackedN16, one panel: k-major rows of 16 channels; f16 of the f32 weights.
    let h: Vec<f32> = w
        .bytes
        .as_ref()
        .unwrap()
        .chunks_exact(2)
        .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
        .collect();
    assert_eq!(h.len(), 2 * 16);
    assert_eq!((h[0], h[1], h[16], h[17]), (1.984375, -0.9921875, 0.5, 0.25));
    let names_in: Vec<&str> =
        n2.inputs.iter().map(|&i| if i == NONE { "-" } else { q.tensors[i as usize].name.as_str() }).collect();
    assert_eq!(names_in, ["c1.dq", "w2", "-", "c1.dq"]);
    assert_eq!(tensor(&q, "c2").dtype, DType::F32);
    assert_eq!(tensor(&q, "f.q").scale, 0.25);

    // keep_float_f16 = false: f32 weights.
    plan.keep_float_f16 = false;
    let q = quantize_program(fp32.clone(), &plan).unwrap();
    assert_eq!(tensor(&q, "w2").dtype, DType::F32);

    // Everything float: no int8 op, no Quantize.
    plan.keep_float = ["n1", "n2", "n8"].map(String::from).into_iter().collect();
    let q = quantize_program(fp32, &plan).unwrap();
    assert!(q.tensors.iter().all(|t| t.dtype != DType::I8));
    assert!(q.ops.iter().all(|o| !matches!(o.kind, OpKind::Quantize | OpKind::Dequantize)));
}

#[test]
fn errors_name_what_is_wrong() {
    let fp32 = lower(&small_graph(), Packing::Reference).unwrap();
    let mut plan = small_plan();
    plan.act.remove("c2");
    let e = quantize_program(fp32.clone(), &plan).unwrap_err().to_string();
    assert!(e.contains("'c2'"), "{e}");

    let mut plan = small_plan();
    plan.keep_float.insert("nope".into());
    let e = quantize_program(fp32.clone(), &plan).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("n1, n2, n8"), "{e}");

    // s_x s_w / s_y >= 2^30: no shift in [1, 62] fits.
    let mut plan = small_plan();
    plan.act.insert("c1".into(), aq(1e-12, 0));
    let e = quantize_program(fp32.clone(), &plan).unwrap_err().to_string();
    assert!(e.contains("'n1'") && e.contains("too large"), "{e}");

    let fast = lower(&small_graph(), Packing::Fast).unwrap();
    let e = quantize_program(fast, &small_plan()).unwrap_err().to_string();
    assert!(e.contains("Packing::Reference"), "{e}");
}

#[test]
fn weight_quantization_is_exact() {
    // s_w = 2/127 is not a power of two: check against the f32 formula directly.
    let w = [2.0f32, -2.0, 1.0, 0.0157, -0.0, 3e-3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let (q, s) = quantize_weights(&w, 2).unwrap();
    assert_eq!(s, [2.0 / 127.0, 1.0]);
    for (i, &v) in w[..6].iter().enumerate() {
        assert_eq!(q[i], (v / s[0]).round_ties_even() as i8);
    }
    assert_eq!(&q[..2], &[127, -127]);
    assert!(q[6..].iter().all(|&v| v == 0));
    // Ties to even, never -128.
    let w = [127.0f32 / 64.0, 0.5 / 64.0, 1.5 / 64.0, 2.5 / 64.0, -2.5 / 64.0, -127.0 / 64.0];
    let (q, s) = quantize_weights(&w, 1).unwrap();
    assert_eq!(s, [1.0 / 64.0]);
    assert_eq!(q, [127, 0, 2, 2, -2, -127]);
    assert!(quantize_weights(&[f32::NAN, 1.0], 1).is_none());
    assert!(quantize_weights(&[1.0, 1.0, 1.0], 2).is_none());
}

#[test]
fn multiplier_and_shift_edge_cases() {
    // The largest shift keeping m <= 2^31 - 1, common to the pair.
    assert_eq!(fixed_point_multipliers(&[1.0, 0.0]).unwrap(), (vec![1 << 30, 0], 30));
    assert_eq!(fixed_point_multipliers(&[0.75, 1.5]).unwrap(), (vec![3 << 28, 3 << 29], 30));
    // Just below 1: m rounds up to 2^31 at shift 31, so shift 30.
    let (m, s) = fixed_point_multipliers(&[1.0 - 1e-12]).unwrap();
    assert_eq!((m, s), (vec![1 << 30], 30));
    // Very small: capped at 62.
    let (m, s) = fixed_point_multipliers(&[2f64.powi(-40)]).unwrap();
    assert_eq!((m, s), (vec![1 << 22], 62));
    // Largest representable multiplier, then refused.
    assert_eq!(fixed_point_multipliers(&[2f64.powi(30) - 0.5]).unwrap(), (vec![i32::MAX], 1));
    assert!(fixed_point_multipliers(&[2f64.powi(30)]).is_none());
    assert!(fixed_point_multipliers(&[f64::INFINITY]).is_none());

    // Residual multiplier dominates the shift.
    let l = quantize_layer("L", &[1.0, -1.0], None, 1, aq(0.5, 0), aq(0.5, 0), Some(aq(8.0, 0))).unwrap();
    // M_acc = 0.5 * (1/127) / 0.5 = 1/127, M_res = 16 -> shift 26 (16 * 2^27 = 2^31 > 2^31 - 1).
    assert_eq!(l.qparams[3], 26);
    assert_eq!(l.qparams[2], 1 << 30);
    assert_eq!(l.qparams[1], (f64::from(1.0f32 / 127.0) * 2f64.powi(26)).round() as i32);
    let e = quantize_layer("big", &[1.0], None, 1, aq(1.0, 0), aq(1e-12, 0), None).unwrap_err().to_string();
    assert!(e.contains("'big'") && e.contains("keep this layer in float"), "{e}");
}

#[test]
fn near_zero_channel_with_bias_gets_a_wider_weight_scale() {
    // Row 0: weights 1e-9, bias 5: at s_w = 1e-9/127 the bias would be ~6e11 at acc scale.
    let k = 9;
    let mut w = vec![1e-9f32; k];
    w.extend(vec![0.5f32; k]);
    let l = quantize_layer("dead", &w, Some(&[5.0, 0.5]), 2, aq(0.01, -20), aq(0.05, 0), None).unwrap();
    let limit = i32::MAX as i64 - 255 * 127 * k as i64;
    let bias0 = l.qparams[0] as i64;
    assert!(bias0.abs() <= limit, "{bias0}");
    // Real bias still represented: bias * s_x * s_w == 5 within a relative 1e-6.
    let real =
        (bias0 + (-20) * l.weights[..k].iter().map(|&v| v as i64).sum::<i64>()) as f64 * 0.01 * f64::from(l.w_scale[0]);
    assert!((real - 5.0).abs() < 5e-6, "{real}");
    // The normal row is untouched: s_w = 0.5 / 127.
    assert_eq!(l.w_scale[1], 0.5 / 127.0);
    assert!(l.weights[k..].iter().all(|&v| v == 127));
}

#[test]
fn activation_clamps_in_the_quantized_domain() {
    let y = aq(0.1, -20);
    assert_eq!(quantized_act_range(ActKind::None as u32, 0.0, 0.0, y), Some((-128, 127)));
    assert_eq!(quantized_act_range(ActKind::Relu as u32, 0.0, f32::MAX, y), Some((-20, 127)));
    // Clip(0, 6): 0 -> z_y; 6 / 0.1 = 60 -> 40. Clip(-100, 100) saturates.
    assert_eq!(quantized_act_range(ActKind::Clip as u32, 0.0, 6.0, y), Some((-20, 40)));
    assert_eq!(quantized_act_range(ActKind::Clip as u32, -100.0, 100.0, y), Some((-128, 127)));
    assert_eq!(quantized_act_range(ActKind::Clip as u32, f32::NEG_INFINITY, f32::INFINITY, y), Some((-128, 127)));
    assert_eq!(quantized_act_range(9, 0.0, 0.0, y), None);
}

#[test]
fn range_helper() {
    let q = act_quant_from_range(-1.0, 3.0);
    assert_eq!(q, aq((4.0f64 / 255.0) as f32, -64));
    // Real 0 is exact: -z*s... dequantizing z gives 0; lo and hi are within half a step.
    assert!(((-128 - q.zero_point) as f32 * q.scale + 1.0).abs() <= q.scale / 2.0);
    assert!(((127 - q.zero_point) as f32 * q.scale - 3.0).abs() <= q.scale / 2.0);
    assert_eq!(act_quant_from_range(0.5, 2.0), act_quant_from_range(0.0, 2.0));
    assert_eq!(act_quant_from_range(0.0, 0.0).scale, 1.0);
}

#[test]
fn fp16_program_converts_conv_and_linear_weights_only() {
    let fp32 = lower(&small_graph(), Packing::Fast).unwrap();
    let h = to_fp16(fp32.clone());
    assert_eq!(op_list(&h), op_list(&fp32));
    for (a, b) in fp32.tensors.iter().zip(&h.tensors) {
        assert_eq!((&a.name, a.layout, &a.dims), (&b.name, b.layout, &b.dims));
        let is_weight = ["w1", "w2", "w3"].contains(&a.name.as_str());
        if is_weight {
            assert_eq!(b.dtype, DType::F16, "{}", a.name);
            let f: Vec<f32> =
                a.bytes.as_ref().unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            let g: Vec<u16> =
                b.bytes.as_ref().unwrap().chunks_exact(2).map(|c| u16::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(f.len(), g.len());
            for (x, y) in f.iter().zip(&g) {
                assert_eq!(half::f16::from_f32(*x).to_bits(), *y);
            }
        } else {
            assert_eq!((b.dtype, &b.bytes), (DType::F32, &a.bytes), "{}", a.name);
        }
    }
    // The emitted records carry the dtype.
    let mut b = FileBuilder::new();
    let ids = h.clone().emit(&mut b);
    for (t, id) in h.tensors.iter().zip(ids) {
        let rec = b.tensor(id).unwrap();
        assert_eq!(rec.dtype, t.dtype as u8, "{}", t.name);
        assert_eq!((rec.quant_scale, rec.quant_zero_point), (0.0, 0));
    }
}

#[test]
fn emitted_records_carry_dtype_and_quantization() {
    let q = quantize_program(lower(&small_graph(), Packing::Reference).unwrap(), &small_plan()).unwrap();
    let mut b = FileBuilder::new();
    let ids = q.clone().emit(&mut b);
    for (t, &id) in q.tensors.iter().zip(&ids) {
        let rec = b.tensor(id).unwrap();
        assert_eq!(
            (rec.dtype, rec.layout, rec.quant_scale, rec.quant_zero_point),
            (t.dtype as u8, t.layout as u8, t.scale, t.zero_point),
            "{}",
            t.name
        );
        if let Some(bytes) = &t.bytes {
            assert_eq!(rec.data_size, bytes.len() as u64, "{}", t.name);
        }
    }
    assert_eq!(b.op_count(), q.ops.len());
    let bytes = file_bytes(q, 2);
    assert_eq!(bytes.len() % 64, 0);
}

fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures"))
}

/// Min/max of every activation of `fp32` over `inputs` -> a plan (`act_quant_from_range`).
fn minmax_plan(fp32: &resq::Model, inputs: &[Vec<f32>]) -> QuantPlan {
    let infos = fp32.tensors();
    let mut s = fp32.session(resq::Options::default().threads(1).keep_intermediates(true)).unwrap();
    let mut ranges: HashMap<String, (f32, f32)> = HashMap::new();
    for x in inputs {
        s.run(x).unwrap();
        for info in infos.iter().filter(|i| !i.constant) {
            let Some(t) = s.tensor(info.id) else { continue };
            let (lo, hi) =
                t.to_f32().iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let e = ranges.entry(info.name.clone()).or_insert((lo, hi));
            *e = (e.0.min(lo), e.1.max(hi));
        }
    }
    let act = ranges.into_iter().map(|(n, (lo, hi))| (n, act_quant_from_range(lo, hi))).collect();
    QuantPlan { act, ..Default::default() }
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|&b| f64::from(b).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// Outputs of the model in `bytes` on every input (the file must load and run).
fn run_all(test: &str, bytes: Vec<u8>, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let model = resq::Model::from_bytes(bytes).unwrap_or_else(|e| panic!("{test}: the file does not load: {e}"));
    let mut s = model.session(resq::Options::default().threads(1)).unwrap();
    inputs.iter().map(|x| s.run(x).unwrap_or_else(|e| panic!("{test}: run failed: {e}")).to_vec()).collect()
}

#[test]
fn tiny_cnn_int8_and_fp16_end_to_end() {
    let dir = fixtures().join("tiny");
    let onnx = std::fs::read(dir.join("tiny_cnn.onnx")).unwrap();
    let (_, x) = resq::npy::read_f32(&dir.join("input.npy")).unwrap();
    let opts = resq_convert::ConvertOptions::default();
    let g = resq_convert::onnx_to_ir(&onnx, &opts).unwrap();
    let fp32 =
        resq::Model::from_bytes(resq_convert::convert_onnx_bytes(&onnx, "tiny_cnn.onnx", &opts).unwrap()).unwrap();
    let n = fp32.input_len();
    assert_eq!(x.len() % n, 0);
    // The fixture's rows plus shifted / scaled variants for calibration.
    let mut inputs: Vec<Vec<f32>> = x.chunks_exact(n).map(|c| c.to_vec()).collect();
    let base = inputs.clone();
    for (i, row) in base.iter().enumerate() {
        inputs.push(row.iter().enumerate().map(|(j, v)| v * (0.8 + 0.05 * ((i + j) % 5) as f32)).collect());
    }
    let want = run_all("tiny fp32", resq_convert::convert_onnx_bytes(&onnx, "t.onnx", &opts).unwrap(), &inputs);
    let plan = minmax_plan(&fp32, &inputs);
    let prog = quantize_program(lower(&g, Packing::Reference).unwrap(), &plan).unwrap();
    assert!(prog.tensors.iter().any(|t| t.dtype == DType::I8));
    let got = run_all("tiny int8", file_bytes(prog, 2), &inputs);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let e = rel_l2(g, w);
        eprintln!("tiny int8 input {i}: rel L2 {e:.4}");
        assert!(e < 0.1, "input {i}: int8 rel L2 {e}");
    }
    let h = to_fp16(lower(&g, Packing::Fast).unwrap());
    let got = run_all("tiny fp16", file_bytes(h, 1), &inputs);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let e = rel_l2(g, w);
        assert!(e < 5e-3, "input {i}: fp16 rel L2 {e}");
    }
}

/// ResNet-20 (CIFAR-10): int8 with a min/max plan over the 7 fixture images, run on them.
#[test]
fn resnet20_int8_matches_fp32() {
    let onnx = std::fs::read(fixtures().join("resnet20/resnet20.onnx")).unwrap();
    let opts = resq_convert::ConvertOptions::default();
    let fp32_bytes = resq_convert::convert_onnx_bytes(&onnx, "resnet20.onnx", &opts).unwrap();
    let fp32 = resq::Model::from_bytes(fp32_bytes.clone()).unwrap();
    let pre = fp32.info().preprocess;
    let mut images: Vec<_> = std::fs::read_dir(fixtures().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    images.sort();
    assert_eq!(images.len(), 7);
    let inputs: Vec<Vec<f32>> = images
        .iter()
        .map(|p| {
            let img = image::open(p).unwrap().to_rgb8();
            let mut x = vec![0.0f32; fp32.input_len()];
            resq::preprocess::prepare_rgb8(img.as_raw(), img.width() as usize, img.height() as usize, &pre, &mut x)
                .unwrap();
            x
        })
        .collect();
    let want = run_all("resnet20 fp32", fp32_bytes, &inputs);
    let g = resq_convert::onnx_to_ir(&onnx, &opts).unwrap();
    let reference = lower(&g, Packing::Reference).unwrap();
    let plan = minmax_plan(&fp32, &inputs);
    let layers = quantizable_layers(&reference);
    assert_eq!(layers.len(), 20);
    let prog = quantize_program(reference.clone(), &plan).unwrap();
    let convs = prog.ops.iter().filter(|o| o.kind == OpKind::Conv2d).collect::<Vec<_>>();
    assert!(convs.iter().all(|o| matches!(o.params, Params::Conv(p) if p.algo == 3)));
    // One Quantize (the input) and one Dequantize (the logits): the rest stays int8.
    // The option-A shortcuts (Slice + Pad) stay int8; the pad byte is the zero point.
    let pads: Vec<_> = prog.ops.iter().filter(|o| o.kind == OpKind::Pad).collect();
    assert_eq!(pads.len(), 2);
    for op in pads {
        let Params::Pad(p) = op.params else { panic!() };
        let x = &prog.tensors[op.inputs[0] as usize];
        assert_eq!((x.dtype, p.value), (DType::I8, x.zero_point as f32), "{}", op.name);
    }
    let count = |k: OpKind| prog.ops.iter().filter(|o| o.kind == k).count();
    assert_eq!((count(OpKind::Quantize), count(OpKind::Dequantize)), (1, 1), "{:?}", op_list(&prog));
    let check = |what: &str, got: Vec<Vec<f32>>, max_err: f64| {
        let mut same = 0;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let e = rel_l2(g, w);
            eprintln!("{what} {}: rel L2 {e:.4}, top-1 {} vs {}", images[i].display(), argmax(g), argmax(w));
            assert!(e < max_err, "{what} image {i}: rel L2 {e}");
            same += usize::from(argmax(g) == argmax(w));
        }
        assert!(same >= 6, "{what}: top-1 agrees on {same} of 7");
    };
    check("int8", run_all("resnet20 int8", file_bytes(prog, 2), &inputs), 0.1);
    // Mixed: the first and last layers in f16.
    let mut mixed = plan.clone();
    mixed.keep_float = [layers[0].clone(), layers[19].clone()].into_iter().collect();
    mixed.keep_float_f16 = true;
    let prog = quantize_program(reference, &mixed).unwrap();
    assert_eq!(prog.tensors.iter().filter(|t| t.dtype == DType::F16).count(), 2);
    check("mixed", run_all("resnet20 mixed", file_bytes(prog, 3), &inputs), 0.1);
    let h = to_fp16(lower(&g, Packing::Fast).unwrap());
    check("fp16", run_all("resnet20 fp16", file_bytes(h, 1), &inputs), 5e-3);
}

/// Deterministic values in [-1, 1).
fn lcg(seed: u32, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// Strided grouped 3x3 conv with Clip, MaxPool and AvgPool with padding, a broadcasting Add,
/// a 1x1 conv with residual, a float ChannelAffine in the middle, GlobalAvgPool, Linear.
fn mixed_ops_graph() -> Graph {
    let mut g = Graph::default();
    let x = act(&mut g, "x", &[2, 4, 9, 9]);
    g.input = x;
    let w1 = cst(&mut g, "w1", &[8, 2, 3, 3], lcg(1, 144));
    let b1 = cst(&mut g, "b1", &[8], lcg(2, 8));
    let c1 = act(&mut g, "c1", &[2, 8, 5, 5]);
    let spec = ConvSpec { kernel: [3, 3], strides: [2, 2], pads: [1; 4], dilations: [1, 1], groups: 2 };
    node(&mut g, "conv1", Op::Conv2d { spec, act: Act::Clip(0.0, 1.5) }, &[Some(x), Some(w1), Some(b1)], c1);
    let p3 = |stride, count_include_pad| PoolSpec {
        kernel: [3, 3],
        strides: [stride, stride],
        pads: [1; 4],
        dilations: [1, 1],
        count_include_pad,
    };
    let m = act(&mut g, "m", &[2, 8, 5, 5]);
    node(&mut g, "maxpool", Op::MaxPool(p3(1, false)), &[Some(c1)], m);
    let ap = act(&mut g, "ap", &[2, 8, 3, 3]);
    node(&mut g, "avgpool", Op::AvgPool(p3(2, false)), &[Some(m)], ap);
    let ap2 = act(&mut g, "ap2", &[2, 8, 3, 3]);
    node(&mut g, "avgpool_pad", Op::AvgPool(p3(2, true)), &[Some(c1)], ap2);
    let gp = act(&mut g, "gp", &[2, 8, 1, 1]);
    node(&mut g, "gap", Op::GlobalAvgPool, &[Some(m)], gp);
    let ad = act(&mut g, "ad", &[2, 8, 3, 3]);
    node(&mut g, "add_bcast", Op::Add { act: Act::None }, &[Some(ap), Some(gp)], ad);
    let ad2 = act(&mut g, "ad2", &[2, 8, 3, 3]);
    node(&mut g, "add", Op::Add { act: Act::Relu }, &[Some(ad), Some(ap2)], ad2);
    let w2 = cst(&mut g, "w2", &[8, 8, 1, 1], lcg(3, 64));
    let c2 = act(&mut g, "c2", &[2, 8, 3, 3]);
    node(&mut g, "conv2", conv1x1(), &[Some(ad2), Some(w2), None, Some(ad)], c2);
    let sc = cst(&mut g, "sc", &[8], lcg(4, 8));
    let sh = cst(&mut g, "sh", &[8], lcg(5, 8));
    let ca = act(&mut g, "ca", &[2, 8, 3, 3]);
    node(&mut g, "affine", Op::ChannelAffine { act: Act::None }, &[Some(c2), Some(sc), Some(sh)], ca);
    let g2 = act(&mut g, "g2", &[2, 8, 1, 1]);
    node(&mut g, "gap2", Op::GlobalAvgPool, &[Some(ca)], g2);
    let f = act(&mut g, "f", &[2, 8]);
    node(&mut g, "flatten", Op::Copy, &[Some(g2)], f);
    let w3 = cst(&mut g, "w3", &[4, 8], lcg(6, 32));
    let b3 = cst(&mut g, "b3", &[4], lcg(7, 4));
    let y = act(&mut g, "y", &[2, 4]);
    node(&mut g, "fc", Op::Linear { act: Act::None }, &[Some(f), Some(w3), Some(b3)], y);
    g.output = y;
    g
}

#[test]
fn mixed_ops_int8_end_to_end() {
    let g = mixed_ops_graph();
    let fp32_bytes = file_bytes(lower(&g, Packing::Fast).unwrap(), 0);
    let fp32 = resq::Model::from_bytes(fp32_bytes.clone()).unwrap();
    let inputs: Vec<Vec<f32>> = (0..4).map(|i| lcg(100 + i, fp32.input_len())).collect();
    let want = run_all("mixed fp32", fp32_bytes, &inputs);
    let plan = minmax_plan(&fp32, &inputs);
    let reference = lower(&g, Packing::Reference).unwrap();
    let prog = quantize_program(reference.clone(), &plan).unwrap();
    let kinds: Vec<String> = op_list(&prog).into_iter().map(|(k, n)| format!("{}:{n}", k.name())).collect();
    assert_eq!(
        kinds,
        [
            "Transpose:to_nhwc:x",
            "Quantize:quantize:x:nhwc",
            "Conv2d:conv1",
            "MaxPool2d:maxpool",
            "AvgPool2d:avgpool",
            "AvgPool2d:avgpool_pad",
            "GlobalAvgPool:gap",
            "Add:add_bcast",
            "Add:add",
            "Conv2d:conv2",
            "Dequantize:dequantize:c2",
            "ChannelAffine:affine",
            "GlobalAvgPool:gap2",
            "Copy:flatten",
            "Quantize:quantize:f",
            "Linear:fc",
            "Dequantize:dequantize:y",
        ]
    );
    let Params::Conv(p) = prog.ops[2].params else { panic!() };
    let qc1 = plan.act["c1"];
    assert_eq!((p.qmin, p.qmax), quantized_act_range(ActKind::Clip as u32, 0.0, 1.5, qc1).unwrap());
    let got = run_all("mixed int8", file_bytes(prog, 2), &inputs);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let e = rel_l2(g, w);
        eprintln!("mixed ops int8 input {i}: rel L2 {e:.4}");
        assert!(e < 0.1, "input {i}: rel L2 {e}");
    }
    // Mixed precision: conv2 float (f32 weights); its residual and input come dequantized.
    let mut keep = plan.clone();
    keep.keep_float.insert("conv2".into());
    let prog = quantize_program(reference, &keep).unwrap();
    let got = run_all("mixed keep-float", file_bytes(prog, 3), &inputs);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let e = rel_l2(g, w);
        assert!(e < 0.1, "keep-float input {i}: rel L2 {e}");
    }
}
