//! Per-operator import: constant folding of nodes whose inputs are all constants, and the
//! resolution of the others into IR ops with shapes (shape inference).

use super::tensor::{decode_tensor, Attrs, MAX_FOLD_ELEMS};
use crate::fold::{self, BinOp};
use crate::ir::{is_float_type, Act, ConvSpec, Data, Graph, Op, PoolSpec, Tensor, TensorId};
use crate::onnx::{data_type, NodeProto};

/// Reason given for pre-quantized ONNX operators.
pub const PREQUANTIZED: &str =
    "pre-quantized ONNX graphs are not imported: resq quantizes fp32 models itself (convert the fp32 model)";

/// Why a node failed.
pub(crate) enum NodeErr {
    Unsupported(String),
    Invalid(String),
}
pub(crate) type R<T> = Result<T, NodeErr>;

pub(crate) fn unsup(s: impl Into<String>) -> NodeErr {
    NodeErr::Unsupported(s.into())
}
pub(crate) fn invalid(s: impl Into<String>) -> NodeErr {
    NodeErr::Invalid(s.into())
}
impl From<String> for NodeErr {
    fn from(s: String) -> Self {
        NodeErr::Invalid(s)
    }
}

/// What resolving one node produced.
pub(crate) enum Out {
    /// Constant values for the node's outputs: (dtype, shape, data).
    Consts(Vec<(i32, Vec<usize>, Data)>),
    /// IR nodes whose last node's output(s) are the ONNX node's outputs. Intermediate tensors
    /// are given as (name suffix, shape) and referenced as `Ref::Tmp(k)`.
    Nodes { tmps: Vec<Vec<usize>>, nodes: Vec<(Op, Vec<Option<Ref>>, Ref)>, out_shape: Vec<usize> },
}

/// A tensor reference inside [`Out::Nodes`].
#[derive(Clone, Copy)]
pub(crate) enum Ref {
    T(TensorId),
    Tmp(usize),
    /// A new constant tensor (index into the `consts` list built by the resolver).
    Const(usize),
    Out,
}

/// One ONNX node being resolved.
pub(crate) struct Ctx<'a> {
    pub(crate) g: &'a Graph,
    pub(crate) opset: i64,
    pub(crate) node: &'a NodeProto,
    pub(crate) op_type: &'a str,
    pub(crate) attrs: Attrs<'a>,
    pub(crate) inputs: Vec<Option<TensorId>>,
    pub(crate) new_consts: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Ctx<'_> {
    fn input(&self, i: usize) -> Option<TensorId> {
        self.inputs.get(i).copied().flatten()
    }
    fn req(&self, i: usize) -> R<TensorId> {
        self.input(i).ok_or_else(|| invalid(format!("input {i} is missing")))
    }
    fn shape(&self, t: TensorId) -> &[usize] {
        self.g.shape(t)
    }
    fn tensor(&self, t: TensorId) -> &Tensor {
        &self.g.tensors[t]
    }
    fn value(&self, i: usize) -> Option<&Data> {
        self.input(i).and_then(|t| self.g.tensors[t].value.as_ref())
    }
    /// Optional constant integer input; an error if present but not constant.
    fn const_ints(&self, i: usize, what: &str) -> R<Option<Vec<i64>>> {
        let Some(t) = self.input(i) else { return Ok(None) };
        match &self.g.tensors[t].value {
            Some(d) => d.to_i64().map(Some).ok_or_else(|| invalid(format!("{what} must be integers"))),
            None => Err(unsup(format!(
                "{what} ('{}') is computed at run time; resq needs it constant",
                self.g.tensors[t].name
            ))),
        }
    }
    fn const_scalar(&self, i: usize, what: &str) -> R<Option<f32>> {
        let Some(t) = self.input(i) else { return Ok(None) };
        match &self.g.tensors[t].value {
            Some(d) if d.len() == 1 => Ok(Some(d.get_f64(0) as f32)),
            Some(_) => Err(invalid(format!("{what} must be a scalar"))),
            None => Err(unsup(format!("{what} must be a constant"))),
        }
    }
    fn all_const(&self) -> bool {
        self.inputs.iter().flatten().all(|&t| self.g.tensors[t].is_const())
    }
    /// The data input `i` as a run-time f32 activation (checks dtype and size).
    fn activation(&self, i: usize) -> R<TensorId> {
        let t = self.req(i)?;
        let tt = self.tensor(t);
        if tt.dtype != data_type::FLOAT {
            return Err(unsup(format!(
                "input '{}' is {}: resq activations are f32 at run time",
                tt.name,
                data_type::name(tt.dtype)
            )));
        }
        if tt.numel() == 0 {
            return Err(unsup(format!(
                "input '{}' has shape {:?}: zero-sized tensors are not supported",
                tt.name,
                self.shape(t)
            )));
        }
        Ok(t)
    }
    fn rank4(&self, t: TensorId) -> R<[usize; 4]> {
        let s = self.shape(t);
        s.try_into().map_err(|_| unsup(format!("input has shape {s:?}: only 2-D (NCHW, rank 4) is supported")))
    }
    fn add_const(&mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) -> Ref {
        self.new_consts.push((name.to_string(), shape, data));
        Ref::Const(self.new_consts.len() - 1)
    }
    fn single(op: Op, inputs: Vec<Option<Ref>>, out_shape: Vec<usize>) -> Out {
        Out::Nodes { tmps: vec![], nodes: vec![(op, inputs, Ref::Out)], out_shape }
    }
}

fn t(id: TensorId) -> Option<Ref> {
    Some(Ref::T(id))
}

/// Output size of a 2-D window op along one axis with explicit pads.
pub fn window_out(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil: bool,
) -> Result<usize, String> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err("kernel, stride and dilation must be >= 1".into());
    }
    let eff = dilation * (kernel - 1) + 1;
    let span = input + pad_begin + pad_end;
    if span < eff {
        return Err(format!("the window ({eff}) is larger than the padded input ({span})"));
    }
    let num = span - eff;
    let mut out = if ceil { num.div_ceil(stride) + 1 } else { num / stride + 1 };
    // Ceil mode: a last window that would start inside the end padding is dropped.
    if ceil && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Ok(out)
}

/// Pads `(begin, end)` for `auto_pad` SAME_UPPER / SAME_LOWER along one axis.
pub fn same_pads(input: usize, kernel: usize, stride: usize, dilation: usize, upper: bool) -> (usize, usize) {
    let out = input.div_ceil(stride.max(1));
    let eff = dilation * (kernel.max(1) - 1) + 1;
    let total = ((out.max(1) - 1) * stride + eff).saturating_sub(input);
    let small = total / 2;
    if upper {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

/// Resolve kernel/strides/pads/dilations of a 2-D window op (Conv, pools).
#[allow(clippy::type_complexity)]
fn window_params(
    cx: &Ctx,
    hw: [usize; 2],
    kernel: [usize; 2],
    ceil: bool,
) -> R<([usize; 2], [usize; 4], [usize; 2], [usize; 2])> {
    let two = |name: &str, d: usize| -> R<[usize; 2]> {
        match cx.attrs.ints(name)? {
            None => Ok([d; 2]),
            Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
            Some(v) => Err(invalid(format!("{name} {v:?} must be 2 values >= 1"))),
        }
    };
    let strides = two("strides", 1)?;
    let dilations = two("dilations", 1)?;
    let auto = cx.attrs.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let pads = match auto.as_str() {
        "NOTSET" | "" => match cx.attrs.ints("pads")? {
            None => [0; 4],
            Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
            }
            Some(p) => return Err(invalid(format!("pads {p:?} must be 4 values >= 0"))),
        },
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let up = auto == "SAME_UPPER";
            let (t, b) = same_pads(hw[0], kernel[0], strides[0], dilations[0], up);
            let (l, r) = same_pads(hw[1], kernel[1], strides[1], dilations[1], up);
            [t, l, b, r]
        }
        other => return Err(invalid(format!("unknown auto_pad '{other}'"))),
    };
    const LIMIT: usize = 1 << 20;
    if strides.iter().chain(&dilations).chain(&pads).chain(&kernel).any(|&v| v > LIMIT) {
        return Err(unsup(format!("kernel/stride/pad/dilation values above {LIMIT} are not supported")));
    }
    let oh = window_out(hw[0], kernel[0], strides[0], pads[0], pads[2], dilations[0], ceil)?;
    let ow = window_out(hw[1], kernel[1], strides[1], pads[1], pads[3], dilations[1], ceil)?;
    Ok((strides, pads, dilations, [oh, ow]))
}

fn fold_size_ok(shape: &[usize]) -> bool {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_some_and(|n| n <= MAX_FOLD_ELEMS)
}

/// Folded outputs: (ONNX dtype, shape, values) per output.
type Folded = Vec<(i32, Vec<usize>, Data)>;

/// Constant-fold one node (all inputs constant). `Ok(None)`: this op is not folded.
fn try_fold(cx: &Ctx) -> R<Option<Folded>> {
    let v = |i: usize| cx.value(i).ok_or_else(|| invalid(format!("input {i} is missing")));
    let s = |i: usize| cx.input(i).map(|t| cx.shape(t).to_vec()).unwrap_or_default();
    let dt = |i: usize| cx.input(i).map_or(data_type::FLOAT, |t| cx.tensor(t).dtype);
    let one = |dtype: i32, shape: Vec<usize>, data: Data| -> R<Option<Folded>> {
        if data.len() > MAX_FOLD_ELEMS {
            return Err(unsup("folding would create a constant larger than 64M elements"));
        }
        Ok(Some(vec![(dtype, shape, data)]))
    };
    match cx.op_type {
        "Identity" | "Dropout" => one(dt(0), s(0), v(0)?.clone()),
        "Add" | "Sub" | "Mul" | "Div" => {
            let op = match cx.op_type {
                "Add" => BinOp::Add,
                "Sub" => BinOp::Sub,
                "Mul" => BinOp::Mul,
                _ => BinOp::Div,
            };
            let (shape, data) = fold::binary(op, (&s(0), v(0)?), (&s(1), v(1)?))?;
            one(dt(0), shape, data)
        }
        "Cast" => {
            let to = cx.attrs.int("to")?.ok_or_else(|| invalid("attribute 'to' is missing"))? as i32;
            let x = v(0)?;
            let data = match to {
                data_type::FLOAT | data_type::DOUBLE => Data::F32(x.to_f32()),
                data_type::FLOAT16 => Data::F32(x.to_f32().iter().map(|&f| half::f16::from_f32(f).to_f32()).collect()),
                data_type::BOOL => Data::I64((0..x.len()).map(|i| (x.get_f64(i) != 0.0) as i64).collect()),
                data_type::INT64 | data_type::INT32 | data_type::INT16 | data_type::INT8 | data_type::UINT8 => {
                    Data::I64((0..x.len()).map(|i| x.get_f64(i).trunc() as i64).collect())
                }
                other => return Err(unsup(format!("Cast to {} is not supported", data_type::name(other)))),
            };
            one(to, s(0), data)
        }
        "Gather" => {
            let axis = fold::norm_axis(cx.attrs.int_or("axis", 0)?, s(0).len())?;
            let idx = v(1)?.to_i64().ok_or_else(|| invalid("indices must be integers"))?;
            let mut out = s(0);
            out[axis] = idx.len();
            if !fold_size_ok(&out) {
                return Err(unsup("folding would create a constant larger than 64M elements"));
            }
            let (shape, data) = fold::gather(&s(0), v(0)?, axis, &s(1), &idx)?;
            one(dt(0), shape, data)
        }
        "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
            let shape = reshape_like(cx, &s(0))?;
            one(dt(0), shape, v(0)?.clone())
        }
        "Concat" => {
            let rank = s(0).len();
            let axis =
                fold::norm_axis(cx.attrs.int("axis")?.ok_or_else(|| invalid("attribute 'axis' is missing"))?, rank)?;
            let shapes: Vec<Vec<usize>> = (0..cx.inputs.len()).map(s).collect();
            let mut parts = Vec::new();
            for (i, sh) in shapes.iter().enumerate() {
                parts.push((sh.as_slice(), v(i)?));
            }
            let (shape, data) = fold::concat(&parts, axis)?;
            one(dt(0), shape, data)
        }
        "Slice" => {
            let plan = slice_params(cx, &s(0))?;
            let data = v(0)?.gather(&fold::slice_indices(&s(0), &plan));
            one(dt(0), plan.out, data)
        }
        "Pad" => {
            let (before, out, value) = pad_params(cx, &s(0))?;
            if !fold_size_ok(&out) {
                return Err(unsup("folding would create a constant larger than 64M elements"));
            }
            let idx = fold::pad_indices(&s(0), &before, &out);
            one(dt(0), out, v(0)?.gather_or(&idx, value as f64))
        }
        "Transpose" => {
            let perm = transpose_perm(cx, s(0).len())?;
            let (shape, idx) = fold::transpose_indices(&s(0), &perm);
            one(dt(0), shape, v(0)?.gather(&idx))
        }
        "Range" => {
            let (a, b, d) = (v(0)?, v(1)?, v(2)?);
            if a.len() != 1 || b.len() != 1 || d.len() != 1 {
                return Err(invalid("start, limit and delta must be scalars"));
            }
            let (st, lim, del) = (a.get_f64(0), b.get_f64(0), d.get_f64(0));
            if del == 0.0 {
                return Err(invalid("delta is 0"));
            }
            let n = ((lim - st) / del).ceil().max(0.0);
            if n > MAX_FOLD_ELEMS as f64 {
                return Err(unsup("Range is too large to fold"));
            }
            let n = n as usize;
            let data = match a {
                Data::F32(_) => Data::F32((0..n).map(|i| (st + i as f64 * del) as f32).collect()),
                Data::I64(_) => Data::I64((0..n).map(|i| (st + i as f64 * del) as i64).collect()),
            };
            one(dt(0), vec![n], data)
        }
        _ => Ok(None),
    }
}

/// Output shape of Unsqueeze / Squeeze / Reshape / Flatten.
fn reshape_like(cx: &Ctx, x: &[usize]) -> R<Vec<usize>> {
    match cx.op_type {
        "Unsqueeze" => {
            let axes = if cx.opset < 13 { cx.attrs.ints("axes")? } else { cx.const_ints(1, "axes")? };
            let axes = axes.ok_or_else(|| invalid("axes are missing"))?;
            let rank = x.len() + axes.len();
            let mut norm = Vec::new();
            for a in axes {
                norm.push(fold::norm_axis(a, rank)?);
            }
            let mut out = Vec::with_capacity(rank);
            let mut it = x.iter();
            for d in 0..rank {
                if norm.contains(&d) {
                    out.push(1);
                } else {
                    out.push(*it.next().ok_or_else(|| invalid("duplicate axes"))?);
                }
            }
            Ok(out)
        }
        "Squeeze" => {
            let axes = if cx.opset < 13 { cx.attrs.ints("axes")? } else { cx.const_ints(1, "axes")? };
            let norm: Vec<usize> = match axes {
                Some(a) => a.into_iter().map(|a| fold::norm_axis(a, x.len())).collect::<Result<_, _>>()?,
                None => (0..x.len()).filter(|&d| x[d] == 1).collect(),
            };
            if norm.iter().any(|&d| x[d] != 1) {
                return Err(invalid(format!("cannot squeeze a dim that is not 1 (shape {x:?})")));
            }
            Ok((0..x.len()).filter(|d| !norm.contains(d)).map(|d| x[d]).collect())
        }
        "Reshape" => {
            let spec = if cx.opset < 5 { cx.attrs.ints("shape")? } else { cx.const_ints(1, "the target shape")? };
            let spec = spec.ok_or_else(|| invalid("the target shape is missing"))?;
            let allowzero = cx.attrs.int_or("allowzero", 0)? != 0;
            Ok(fold::reshape_shape(x, &spec, allowzero)?)
        }
        _ => {
            // Flatten
            let axis = cx.attrs.int_or("axis", 1)?;
            let axis = if axis == x.len() as i64 { x.len() } else { fold::norm_axis(axis, x.len().max(1))? };
            Ok(vec![x[..axis].iter().product(), x[axis..].iter().product()])
        }
    }
}

fn slice_params(cx: &Ctx, x: &[usize]) -> R<fold::SlicePlan> {
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        (cx.attrs.ints("starts")?, cx.attrs.ints("ends")?, cx.attrs.ints("axes")?, None)
    } else {
        (cx.const_ints(1, "starts")?, cx.const_ints(2, "ends")?, cx.const_ints(3, "axes")?, cx.const_ints(4, "steps")?)
    };
    let starts = starts.ok_or_else(|| invalid("starts are missing"))?;
    let ends = ends.ok_or_else(|| invalid("ends are missing"))?;
    Ok(fold::slice_plan(x, &starts, &ends, axes.as_deref(), steps.as_deref())?)
}

/// (before, output shape, value) of a constant-mode Pad.
fn pad_params(cx: &Ctx, x: &[usize]) -> R<(Vec<i64>, Vec<usize>, f32)> {
    let mode = cx.attrs.string("mode")?.unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(unsup(format!("Pad mode '{mode}': only 'constant' is supported")));
    }
    let (pads, value, axes) = if cx.opset < 11 {
        let p = cx.attrs.ints(if cx.opset < 2 { "paddings" } else { "pads" })?;
        (p, cx.attrs.float("value")?.unwrap_or(0.0), None)
    } else {
        (cx.const_ints(1, "pads")?, cx.const_scalar(2, "constant_value")?.unwrap_or(0.0), cx.const_ints(3, "axes")?)
    };
    let pads = pads.ok_or_else(|| invalid("pads are missing"))?;
    let rank = x.len();
    let axes: Vec<usize> = match axes {
        Some(a) => a.into_iter().map(|a| fold::norm_axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(invalid(format!("pads has {} entries, expected {}", pads.len(), 2 * axes.len())));
    }
    let mut before = vec![0i64; rank];
    let mut after = vec![0i64; rank];
    for (k, &a) in axes.iter().enumerate() {
        before[a] = pads[k];
        after[a] = pads[k + axes.len()];
    }
    if before.iter().chain(&after).any(|&p| p < 0) {
        return Err(unsup("negative pads (cropping) are not supported"));
    }
    if before.iter().chain(&after).any(|&p| p > 1 << 20) {
        return Err(unsup("pads above 2^20 are not supported"));
    }
    let out: Vec<usize> = (0..rank).map(|d| x[d] + before[d] as usize + after[d] as usize).collect();
    Ok((before, out, value))
}

fn transpose_perm(cx: &Ctx, rank: usize) -> R<Vec<usize>> {
    let perm: Vec<usize> = match cx.attrs.ints("perm")? {
        None => (0..rank).rev().collect(),
        Some(p) => p.into_iter().map(|a| fold::norm_axis(a, rank)).collect::<Result<_, _>>()?,
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        return Err(invalid(format!("perm {perm:?} is not a permutation of rank {rank}")));
    }
    Ok(perm)
}

fn clip_act(lo: Option<f32>, hi: Option<f32>) -> Act {
    let lo = lo.unwrap_or(f32::MIN);
    let hi = hi.unwrap_or(f32::MAX);
    if lo == 0.0 && hi >= f32::MAX {
        Act::Relu
    } else {
        Act::Clip(lo, hi)
    }
}

/// Resolve a node that runs at run time into IR nodes.
fn resolve(cx: &mut Ctx) -> R<Out> {
    let op = cx.op_type;
    match op {
        "QLinearConv"
        | "QLinearMatMul"
        | "ConvInteger"
        | "MatMulInteger"
        | "QuantizeLinear"
        | "DequantizeLinear"
        | "DynamicQuantizeLinear"
        | "QLinearAdd" => return Err(unsup(PREQUANTIZED)),
        _ => {}
    }
    match op {
        "Identity" | "Dropout" => {
            if op == "Dropout" && cx.node.output.get(1).is_some_and(|o| !o.is_empty()) {
                return Err(unsup("the Dropout mask output is not supported (inference only)"));
            }
            let x = cx.activation(0)?;
            Ok(Ctx::single(Op::Copy, vec![t(x)], cx.shape(x).to_vec()))
        }
        "Cast" => {
            let x = cx.req(0)?;
            let to = cx.attrs.int("to")?.unwrap_or(0) as i32;
            if to != data_type::FLOAT {
                return Err(unsup(format!(
                    "Cast of an activation to {}: tensors are f32 at run time",
                    data_type::name(to)
                )));
            }
            let x = cx.activation(0).map_err(|_| {
                unsup(format!(
                    "Cast of a {} activation: tensors are f32 at run time",
                    data_type::name(cx.tensor(x).dtype)
                ))
            })?;
            Ok(Ctx::single(Op::Copy, vec![t(x)], cx.shape(x).to_vec()))
        }
        "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
            let x = cx.activation(0)?;
            let shape = reshape_like(cx, cx.shape(x))?;
            if shape.contains(&0) {
                return Err(unsup(format!("output shape {shape:?}: zero-sized tensors are not supported")));
            }
            Ok(Ctx::single(Op::Copy, vec![t(x)], shape))
        }
        "Relu" => {
            let x = cx.activation(0)?;
            Ok(Ctx::single(Op::Activation(Act::Relu), vec![t(x)], cx.shape(x).to_vec()))
        }
        "Clip" => {
            let x = cx.activation(0)?;
            let (lo, hi) = if cx.opset < 11 {
                (cx.attrs.float("min")?, cx.attrs.float("max")?)
            } else {
                (cx.const_scalar(1, "min")?, cx.const_scalar(2, "max")?)
            };
            Ok(Ctx::single(Op::Activation(clip_act(lo, hi)), vec![t(x)], cx.shape(x).to_vec()))
        }
        "Add" => {
            let (a, b) = (cx.req(0)?, cx.req(1)?);
            let out = fold::broadcast_shape(cx.shape(a), cx.shape(b))
                .ok_or_else(|| invalid(format!("shapes {:?} and {:?} do not broadcast", cx.shape(a), cx.shape(b))))?;
            for i in 0..2 {
                let x = cx.input(i).unwrap_or(a);
                if cx.tensor(x).is_const() {
                    if !is_float_type(cx.tensor(x).dtype) {
                        return Err(unsup("adding an integer constant to an activation"));
                    }
                } else {
                    cx.activation(i)?;
                    if cx.shape(x).len() != out.len() {
                        return Err(unsup(format!(
                            "broadcasting activation '{}' of rank {} to rank {}",
                            cx.tensor(x).name,
                            cx.shape(x).len(),
                            out.len()
                        )));
                    }
                }
            }
            Ok(Ctx::single(Op::Add { act: Act::None }, vec![t(a), t(b)], out))
        }
        "Sub" | "Mul" | "Div" => Err(unsup(format!("{op} on activations is not supported (only Add)"))),
        "Conv" => resolve_conv(cx),
        "BatchNormalization" => {
            let x = cx.activation(0)?;
            if cx.attrs.int_or("training_mode", 0)? != 0 || cx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(unsup("training-mode BatchNormalization (running statistics outputs)"));
            }
            let c = *cx.shape(x).get(1).ok_or_else(|| invalid("input has rank < 2"))?;
            if !matches!(cx.shape(x).len(), 2 | 4) {
                return Err(unsup(format!("input of shape {:?}: only rank 2 or 4 is supported", cx.shape(x))));
            }
            for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
                match cx.value(i) {
                    Some(d) if d.len() == c && matches!(d, Data::F32(_)) => {}
                    Some(_) => return Err(invalid(format!("{what} must be {c} floats"))),
                    None => return Err(unsup(format!("{what} must be a constant"))),
                }
            }
            let epsilon = cx.attrs.float("epsilon")?.unwrap_or(1e-5);
            let ins = (0..5).map(|i| cx.input(i).map(Ref::T)).collect();
            Ok(Ctx::single(Op::BatchNorm { epsilon }, ins, cx.shape(x).to_vec()))
        }
        "MaxPool" | "AveragePool" => {
            let x = cx.activation(0)?;
            let [n, c, h, w] = cx.rank4(x)?;
            if cx.node.output.get(1).is_some_and(|o| !o.is_empty()) {
                return Err(unsup("the MaxPool Indices output is not supported"));
            }
            let k = cx.attrs.ints("kernel_shape")?.ok_or_else(|| invalid("kernel_shape is missing"))?;
            if k.len() != 2 || k.iter().any(|&v| v < 1) {
                return Err(invalid(format!("kernel_shape {k:?} must be 2 values >= 1")));
            }
            let kernel = [k[0] as usize, k[1] as usize];
            let ceil = cx.attrs.int_or("ceil_mode", 0)? != 0;
            let (strides, pads, dilations, [oh, ow]) = window_params(cx, [h, w], kernel, ceil)?;
            if pads[0] >= kernel[0] * dilations[0] || pads[1] >= kernel[1] * dilations[1] {
                return Err(invalid(format!("pads {pads:?} are not smaller than the window")));
            }
            let spec = PoolSpec {
                kernel,
                strides,
                pads,
                dilations,
                count_include_pad: cx.attrs.int_or("count_include_pad", 0)? != 0,
            };
            let op = if op == "MaxPool" { Op::MaxPool(spec) } else { Op::AvgPool(spec) };
            Ok(Ctx::single(op, vec![t(x)], vec![n, c, oh, ow]))
        }
        "GlobalAveragePool" => {
            let x = cx.activation(0)?;
            let [n, c, _, _] = cx.rank4(x)?;
            Ok(Ctx::single(Op::GlobalAvgPool, vec![t(x)], vec![n, c, 1, 1]))
        }
        "ReduceMean" => {
            let x = cx.activation(0)?;
            let [n, c, _, _] = cx.rank4(x)?;
            let axes = if cx.opset < 18 { cx.attrs.ints("axes")? } else { cx.const_ints(1, "axes")? };
            let keep = cx.attrs.int_or("keepdims", 1)? != 0;
            let mut axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => a.into_iter().map(|a| fold::norm_axis(a, 4)).collect::<Result<_, _>>()?,
                _ => return Err(unsup("ReduceMean over all axes: only the spatial axes [2, 3] are supported")),
            };
            axes.sort_unstable();
            if axes != [2, 3] {
                return Err(unsup(format!("ReduceMean over axes {axes:?}: only [2, 3] (H, W) is supported")));
            }
            if keep {
                Ok(Ctx::single(Op::GlobalAvgPool, vec![t(x)], vec![n, c, 1, 1]))
            } else {
                Ok(Out::Nodes {
                    tmps: vec![vec![n, c, 1, 1]],
                    nodes: vec![
                        (Op::GlobalAvgPool, vec![t(x)], Ref::Tmp(0)),
                        (Op::Copy, vec![Some(Ref::Tmp(0))], Ref::Out),
                    ],
                    out_shape: vec![n, c],
                })
            }
        }
        "Gemm" => resolve_gemm(cx),
        "MatMul" => resolve_matmul(cx),
        "Softmax" => {
            let x = cx.activation(0)?;
            let rank = cx.shape(x).len();
            let axis = cx.attrs.int_or("axis", if cx.opset < 13 { 1 } else { -1 })?;
            let axis = fold::norm_axis(axis, rank)?;
            Ok(Ctx::single(Op::Softmax { axis, legacy: cx.opset < 13 }, vec![t(x)], cx.shape(x).to_vec()))
        }
        "Transpose" => {
            let x = cx.activation(0)?;
            let perm = transpose_perm(cx, cx.shape(x).len())?;
            let shape = perm.iter().map(|&p| cx.shape(x)[p]).collect();
            Ok(Ctx::single(Op::Transpose { perm }, vec![t(x)], shape))
        }
        "Slice" => {
            let x = cx.activation(0)?;
            let plan = slice_params(cx, cx.shape(x))?;
            if plan.out.contains(&0) {
                return Err(unsup(format!("the slice is empty (output {:?})", plan.out)));
            }
            Ok(Ctx::single(Op::Slice { starts: plan.starts, steps: plan.steps }, vec![t(x)], plan.out))
        }
        "Pad" => {
            let x = cx.activation(0)?;
            let (before, out, value) = pad_params(cx, cx.shape(x))?;
            let before = before.into_iter().map(|b| b as usize).collect();
            Ok(Ctx::single(Op::Pad { before, value }, vec![t(x)], out))
        }
        "Concat" | "Gather" | "Shape" | "ConstantOfShape" | "Range" => {
            Err(unsup(format!("{op} on run-time tensors is not supported (only on constants)")))
        }
        _ => Err(unsup("operator not supported by resq")),
    }
}

fn resolve_conv(cx: &mut Ctx) -> R<Out> {
    let x = cx.activation(0)?;
    let [n, c, h, w] = cx.rank4(x)?;
    let wt = cx.req(1)?;
    let wshape = cx.shape(wt).to_vec();
    if !cx.tensor(wt).is_const() {
        return Err(unsup("the weights are computed at run time; resq needs them constant"));
    }
    if wshape.len() != 4 {
        return Err(invalid(format!("weights of shape {wshape:?}: expected [O, I/groups, KH, KW]")));
    }
    let groups = cx.attrs.int_or("group", 1)?;
    if groups < 1 || c % groups as usize != 0 || wshape[0] % groups as usize != 0 {
        return Err(invalid(format!("group {groups} does not divide {c} input / {} output channels", wshape[0])));
    }
    let groups = groups as usize;
    if wshape[1] * groups != c {
        return Err(invalid(format!("weights {wshape:?} with group {groups} do not fit {c} input channels")));
    }
    if let Some(k) = cx.attrs.ints("kernel_shape")? {
        if k.len() != 2 || k[0] as usize != wshape[2] || k[1] as usize != wshape[3] {
            return Err(invalid(format!("kernel_shape {k:?} does not match weights {wshape:?}")));
        }
    }
    if let Some(b) = cx.input(2) {
        match &cx.tensor(b).value {
            Some(Data::F32(v)) if v.len() == wshape[0] => {}
            Some(_) => return Err(invalid(format!("bias must be {} floats", wshape[0]))),
            None => return Err(unsup("the bias is computed at run time; resq needs it constant")),
        }
    }
    let kernel = [wshape[2], wshape[3]];
    let (strides, pads, dilations, [oh, ow]) = window_params(cx, [h, w], kernel, false)?;
    let spec = ConvSpec { kernel, strides, pads, dilations, groups };
    Ok(Ctx::single(
        Op::Conv2d { spec, act: Act::None },
        vec![t(x), t(wt), cx.input(2).map(Ref::T)],
        vec![n, wshape[0], oh, ow],
    ))
}

/// Gemm: `Y = alpha * A' * B' + beta * C` -> [Transpose] + Linear (+ Add of a matrix C).
fn resolve_gemm(cx: &mut Ctx) -> R<Out> {
    let a = cx.activation(0)?;
    let b = cx.req(1)?;
    let alpha = cx.attrs.float("alpha")?.unwrap_or(1.0);
    let beta = cx.attrs.float("beta")?.unwrap_or(1.0);
    let ta = cx.attrs.int_or("transA", 0)? != 0;
    let tb = cx.attrs.int_or("transB", 0)? != 0;
    let ash = cx.shape(a).to_vec();
    let bsh = cx.shape(b).to_vec();
    if ash.len() != 2 || bsh.len() != 2 {
        return Err(invalid(format!("A {ash:?} and B {bsh:?} must be matrices")));
    }
    let Some(Data::F32(bv)) = cx.tensor(b).value.clone() else {
        return Err(unsup("B is computed at run time; resq needs constant weights"));
    };
    let (m, k) = if ta { (ash[1], ash[0]) } else { (ash[0], ash[1]) };
    let (kb, nn) = if tb { (bsh[1], bsh[0]) } else { (bsh[0], bsh[1]) };
    if k != kb {
        return Err(invalid(format!("inner dims differ: A' is [{m}, {k}], B' is [{kb}, {nn}]")));
    }
    // Weight [N, K] = alpha * B'ᵀ.
    let mut wv = vec![0f32; nn * k];
    for ni in 0..nn {
        for ki in 0..k {
            let src = if tb { bv[ni * k + ki] } else { bv[ki * nn + ni] };
            wv[ni * k + ki] = alpha * src;
        }
    }
    let name = cx.node.name.clone().unwrap_or_default();
    let wref = cx.add_const(&format!("{name}.weight"), vec![nn, k], wv);
    let mut tmps = Vec::new();
    let mut nodes = Vec::new();
    let xin = if ta {
        tmps.push(vec![m, k]);
        nodes.push((Op::Transpose { perm: vec![1, 0] }, vec![t(a)], Ref::Tmp(0)));
        Ref::Tmp(0)
    } else {
        Ref::T(a)
    };
    // C: a vector over N becomes the bias; a full matrix is added after the Linear.
    let mut bias = None;
    let mut matrix = None;
    if let Some(cid) = cx.input(2) {
        let cs = cx.shape(cid).to_vec();
        let Some(cv) = cx.tensor(cid).value.as_ref().map(|d| d.to_f32()) else {
            return Err(unsup("C is computed at run time; resq needs a constant C"));
        };
        if fold::broadcast_shape(&cs, &[m, nn]).as_deref() != Some(&[m, nn][..]) {
            return Err(invalid(format!("C of shape {cs:?} does not broadcast to [{m}, {nn}]")));
        }
        let row_vector = cs.len() < 2 || cs[0] == 1;
        if row_vector {
            let idx = if cs.len() == 2 {
                fold::broadcast_indices(&cs, &[1, nn])
            } else {
                fold::broadcast_indices(&cs, &[nn])
            };
            let bv: Vec<f32> = idx.iter().map(|&i| beta * cv[i]).collect();
            bias = Some(cx.add_const(&format!("{name}.bias"), vec![nn], bv));
        } else {
            let idx = fold::broadcast_indices(&cs, &[m, nn]);
            let mv = idx.iter().map(|&i| beta * cv[i]).collect();
            matrix = Some(cx.add_const(&format!("{name}.C"), vec![m, nn], mv));
        }
    }
    let lin_in = vec![Some(xin), Some(wref), bias];
    if let Some(cm) = matrix {
        tmps.push(vec![m, nn]);
        let tmp = tmps.len() - 1;
        nodes.push((Op::Linear { act: Act::None }, lin_in, Ref::Tmp(tmp)));
        nodes.push((Op::Add { act: Act::None }, vec![Some(Ref::Tmp(tmp)), Some(cm)], Ref::Out));
        return Ok(Out::Nodes { tmps, nodes, out_shape: vec![m, nn] });
    }
    nodes.push((Op::Linear { act: Act::None }, lin_in, Ref::Out));
    Ok(Out::Nodes { tmps, nodes, out_shape: vec![m, nn] })
}

/// MatMul with a constant 2-D right operand -> Linear (with reshapes around it for rank > 2).
fn resolve_matmul(cx: &mut Ctx) -> R<Out> {
    let a = cx.activation(0)?;
    let b = cx.req(1)?;
    let ash = cx.shape(a).to_vec();
    let bsh = cx.shape(b).to_vec();
    let Some(Data::F32(bv)) = cx.tensor(b).value.clone() else {
        return Err(unsup("the right operand is computed at run time; resq needs constant weights"));
    };
    if bsh.len() != 2 || ash.len() < 2 {
        return Err(unsup(format!("MatMul of {ash:?} by {bsh:?}: only [.., M, K] x [K, N] is supported")));
    }
    let (k, nn) = (bsh[0], bsh[1]);
    if ash[ash.len() - 1] != k {
        return Err(invalid(format!("inner dims differ: {ash:?} x {bsh:?}")));
    }
    let mut wv = vec![0f32; nn * k];
    for ki in 0..k {
        for ni in 0..nn {
            wv[ni * k + ki] = bv[ki * nn + ni];
        }
    }
    let name = cx.node.name.clone().unwrap_or_default();
    let wref = cx.add_const(&format!("{name}.weight"), vec![nn, k], wv);
    let mut out_shape = ash.clone();
    *out_shape.last_mut().unwrap_or(&mut 0) = nn;
    if ash.len() == 2 {
        return Ok(Ctx::single(Op::Linear { act: Act::None }, vec![t(a), Some(wref), None], out_shape));
    }
    let m: usize = ash[..ash.len() - 1].iter().product();
    Ok(Out::Nodes {
        tmps: vec![vec![m, k], vec![m, nn]],
        nodes: vec![
            (Op::Copy, vec![t(a)], Ref::Tmp(0)),
            (Op::Linear { act: Act::None }, vec![Some(Ref::Tmp(0)), Some(wref), None], Ref::Tmp(1)),
            (Op::Copy, vec![Some(Ref::Tmp(1))], Ref::Out),
        ],
        out_shape,
    })
}

pub(crate) fn resolve_node(cx: &mut Ctx) -> R<Out> {
    match cx.op_type {
        "Constant" => {
            let a = &cx.attrs;
            let v = if let Some(tp) = a.tensor("value")? {
                decode_tensor(tp)?
            } else if let Some(f) = a.float("value_float")? {
                (data_type::FLOAT, vec![], Data::F32(vec![f]))
            } else if let Some(f) = a.floats("value_floats")? {
                (data_type::FLOAT, vec![f.len()], Data::F32(f))
            } else if let Some(i) = a.int("value_int")? {
                (data_type::INT64, vec![], Data::I64(vec![i]))
            } else if let Some(i) = a.ints("value_ints")? {
                (data_type::INT64, vec![i.len()], Data::I64(i))
            } else {
                return Err(unsup("Constant without a tensor, float or int value (sparse/string values)"));
            };
            return Ok(Out::Consts(vec![v]));
        }
        "Shape" => {
            let x = cx.req(0)?;
            let rank = cx.shape(x).len() as i64;
            let clampi = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clampi(cx.attrs.int_or("start", 0)?);
            let end = clampi(cx.attrs.int_or("end", rank)?);
            let dims: Vec<i64> = cx.shape(x)[start..end.max(start)].iter().map(|&d| d as i64).collect();
            return Ok(Out::Consts(vec![(data_type::INT64, vec![dims.len()], Data::I64(dims))]));
        }
        "ConstantOfShape" => {
            let shape = cx.const_ints(0, "the shape")?.ok_or_else(|| invalid("input 0 is missing"))?;
            let shape: Vec<usize> = shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| invalid(format!("negative dim {d}"))))
                .collect::<R<_>>()?;
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
            if n > MAX_FOLD_ELEMS {
                return Err(unsup("ConstantOfShape is too large to fold"));
            }
            let (dtype, data) = match cx.attrs.tensor("value")? {
                Some(tp) => {
                    let (dtype, _, d) = decode_tensor(tp)?;
                    if d.len() != 1 {
                        return Err(invalid("value must hold one element"));
                    }
                    (dtype, d)
                }
                None => (data_type::FLOAT, Data::F32(vec![0.0])),
            };
            return Ok(Out::Consts(vec![(dtype, shape, data.gather(&vec![0; n]))]));
        }
        _ => {}
    }
    if cx.all_const() && !cx.inputs.is_empty() {
        if let Some(v) = try_fold(cx)? {
            return Ok(Out::Consts(v));
        }
        if !matches!(cx.op_type, "Conv" | "Gemm" | "MatMul") {
            // A run-time op over constants only: nothing would feed it at run time.
            return Err(unsup("folding this operator over constants is not supported"));
        }
    }
    resolve(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_output_dims() {
        // 32 -> k3 s1 p1 -> 32; k3 s2 p1 -> 16; torchvision maxpool 112 -> 56.
        assert_eq!(window_out(32, 3, 1, 1, 1, 1, false).unwrap(), 32);
        assert_eq!(window_out(32, 3, 2, 1, 1, 1, false).unwrap(), 16);
        assert_eq!(window_out(112, 3, 2, 1, 1, 1, false).unwrap(), 56);
        // ONNX averagepool_2d_ceil: 4x4, k3, s2, ceil -> 2 (floor would be 1).
        assert_eq!(window_out(4, 3, 2, 0, 0, 1, true).unwrap(), 2);
        assert_eq!(window_out(4, 3, 2, 0, 0, 1, false).unwrap(), 1);
        // Ceil mode never starts a window inside the end padding: 5, k2, s2, pad 1/1.
        // (ceil((5+2-2)/2)+1 = 4, but window 4 would start at 6 = 5 + pad_begin: dropped.)
        assert_eq!(window_out(5, 2, 2, 1, 1, 1, true).unwrap(), 3);
        assert_eq!(window_out(6, 2, 2, 0, 1, 1, true).unwrap(), 3);
        // Dilation 2, k2 on 4: effective window 3 -> 2.
        assert_eq!(window_out(4, 2, 1, 0, 0, 2, false).unwrap(), 2);
        assert!(window_out(2, 5, 1, 0, 0, 1, false).is_err());
        assert!(window_out(4, 3, 0, 0, 0, 1, false).is_err());
    }

    #[test]
    fn auto_pad_same() {
        // conv_with_autopad_same: 5x5, k3, s2 -> out 3, total pad 2.
        assert_eq!(same_pads(5, 3, 2, 1, false), (1, 1));
        // 32, k2, s1: total 1; SAME_UPPER puts the extra at the end, SAME_LOWER at the start.
        assert_eq!(same_pads(32, 2, 1, 1, true), (0, 1));
        assert_eq!(same_pads(32, 2, 1, 1, false), (1, 0));
        // 5, k3, s2 (precomputed_same_upper): total 2.
        assert_eq!(same_pads(5, 3, 2, 1, true), (1, 1));
        // 224, k7, s2: out 112, total (111*2+7-224)=5 -> (2,3).
        assert_eq!(same_pads(224, 7, 2, 1, true), (2, 3));
    }
}
