//! ONNX -> IR: decodes the protobuf, binds frozen inputs, then walks the nodes in order,
//! evaluating every node whose inputs are all constants (constant folding) and resolving the
//! others into IR ops with concrete shapes (shape inference). Every node that cannot be
//! imported is collected; the walk goes on so that one error lists them all.

mod ops;
mod tensor;

pub use ops::{same_pads, window_out, PREQUANTIZED};
pub use tensor::decode_tensor;

use crate::error::{ConvertError, UnsupportedNode};
use crate::ir::{is_float_type, Data, Graph, Node, Op, Tensor, TensorId};
use crate::onnx::{data_type, type_proto, ModelProto};
use crate::{ConvertOptions, FrozenTensor};
use ops::{resolve_node, unsup, Ctx, NodeErr, Out, Ref};
use std::collections::HashMap;
use tensor::Attrs;

/// A run-time tensor shape the format and the runtime can hold.
fn shape_ok(shape: &[usize]) -> bool {
    shape.len() <= resq::format::MAX_RANK
        && shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_some_and(|n| n <= 1 << 31)
}

/// Shape of a graph input from its ValueInfo.
fn input_shape(name: &str, vi: &crate::onnx::ValueInfoProto, batch: usize) -> Result<(i32, Vec<usize>), ConvertError> {
    use crate::onnx::tensor_shape_proto::dimension::Value as Dim;
    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(ConvertError::InvalidModel(format!("graph input '{name}' is not a tensor")));
    };
    let dtype = tt.elem_type.unwrap_or(0);
    let Some(shape) = &tt.shape else {
        return Err(ConvertError::InvalidModel(format!("graph input '{name}' has no shape")));
    };
    let mut dims = Vec::new();
    for (i, d) in shape.dim.iter().enumerate() {
        match &d.value {
            Some(Dim::DimValue(v)) if *v >= 0 => dims.push(*v as usize),
            Some(Dim::DimValue(v)) => {
                return Err(ConvertError::InvalidModel(format!("graph input '{name}' has dim {v} at axis {i}")))
            }
            _ if i == 0 => dims.push(batch),
            other => {
                let what = match other {
                    Some(Dim::DimParam(p)) => format!("symbolic dim '{p}'"),
                    _ => "an unknown dim".into(),
                };
                return Err(ConvertError::InvalidModel(format!(
                    "graph input '{name}' has {what} at axis {i}: only the batch dim (axis 0) may be symbolic"
                )));
            }
        }
    }
    if !shape_ok(&dims) || dims.iter().any(|&d| d > u32::MAX as usize) {
        return Err(ConvertError::InvalidModel(format!("graph input '{name}' has an unsupported shape {dims:?}")));
    }
    Ok((dtype, dims))
}

fn frozen_value(name: &str, dtype: i32, declared: &[usize], f: &FrozenTensor) -> Result<Tensor, ConvertError> {
    let err = |msg: String| ConvertError::Freeze { name: name.into(), msg };
    if f.dims.iter().product::<usize>() != f.data.len() {
        return Err(err(format!("dims {:?} do not match {} values", f.dims, f.data.len())));
    }
    if !declared.is_empty() && declared != f.dims.as_slice() {
        // A symbolic batch dim was replaced by the batch size: accept any first dim then.
        if declared.len() != f.dims.len() || declared[1..] != f.dims[1..] {
            return Err(err(format!("the graph declares shape {declared:?}, the file has {:?}", f.dims)));
        }
    }
    let value =
        if is_float_type(dtype) {
            Data::F32(f.data.clone())
        } else {
            match &f.ints {
                Some(v) => Data::I64(v.clone()),
                None => Data::I64(
                    f.data
                        .iter()
                        .map(|&x| {
                            if x.fract() == 0.0 {
                                Ok(x as i64)
                            } else {
                                Err(err(format!("value {x} is not an integer")))
                            }
                        })
                        .collect::<Result<_, _>>()?,
                ),
            }
        };
    Ok(Tensor { name: name.into(), dtype, shape: Some(f.dims.clone()), value: Some(value) })
}

/// Import a decoded model into a graph with concrete shapes and folded constants.
pub fn import(model: &ModelProto, opts: &ConvertOptions) -> Result<Graph, ConvertError> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| ConvertError::InvalidModel("no opset is imported for the default ONNX domain".into()))?;
    let graph = model.graph.as_ref().ok_or_else(|| ConvertError::InvalidModel("the model has no graph".into()))?;
    let mut g = Graph {
        opset,
        producer: format!(
            "{} {}",
            model.producer_name.as_deref().unwrap_or("unknown"),
            model.producer_version.as_deref().unwrap_or("")
        )
        .trim()
        .to_string(),
        ..Graph::default()
    };
    let mut names: HashMap<String, TensorId> = HashMap::new();
    for init in &graph.initializer {
        let name = init.name.clone().unwrap_or_default();
        let (dtype, dims, data) =
            decode_tensor(init).map_err(|msg| ConvertError::Tensor { name: name.clone(), msg })?;
        let id = g.add_tensor(Tensor { name: name.clone(), dtype, shape: Some(dims), value: Some(data) });
        names.insert(name, id);
    }
    let mut runtime_inputs = Vec::new();
    let mut frozen_used = vec![false; opts.freeze.len()];
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if names.contains_key(&name) {
            continue; // IR < 4 lists initializers as inputs too.
        }
        let (dtype, dims) = input_shape(&name, vi, opts.batch)?;
        let id = if let Some(k) = opts.freeze.iter().position(|(n, _)| *n == name) {
            frozen_used[k] = true;
            g.add_tensor(frozen_value(&name, dtype, &dims, &opts.freeze[k].1)?)
        } else {
            runtime_inputs.push(name.clone());
            g.add_tensor(Tensor { name: name.clone(), dtype, shape: Some(dims), value: None })
        };
        names.insert(name, id);
    }
    if let Some(k) = frozen_used.iter().position(|u| !u) {
        return Err(ConvertError::Freeze {
            name: opts.freeze[k].0.clone(),
            msg: "the graph has no such input (initializers cannot be frozen)".into(),
        });
    }
    match runtime_inputs.len() {
        1 => g.input = names[&runtime_inputs[0]],
        0 => return Err(ConvertError::InvalidModel("the graph has no run-time input left".into())),
        _ => {
            return Err(ConvertError::InvalidModel(format!(
            "the graph has {} inputs ({}); resq models take one: bind the others to constants with --freeze NAME=FILE",
            runtime_inputs.len(),
            runtime_inputs.join(", ")
        )))
        }
    }

    let mut unsupported = Vec::new();
    for (idx, node) in graph.node.iter().enumerate() {
        let op_type = node.op_type.as_deref().unwrap_or("");
        let node_name = match node.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("{op_type}_{idx}"),
        };
        let mut inputs = Vec::with_capacity(node.input.len());
        for i in &node.input {
            if i.is_empty() {
                inputs.push(None);
            } else {
                let id = names.get(i).copied().ok_or_else(|| {
                    ConvertError::InvalidModel(format!(
                        "input '{i}' of {op_type} node '{node_name}' is not produced by an earlier node, an initializer \
                         or a graph input (is the graph topologically sorted?)"
                    ))
                })?;
                inputs.push(Some(id));
            }
        }
        let poisoned = inputs.iter().flatten().any(|&t| g.tensors[t].shape.is_none());
        let result = if poisoned {
            None
        } else if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            Some(Err(unsup(format!("operator domain '{}' is not supported", node.domain.as_deref().unwrap_or("")))))
        } else {
            let mut cx = Ctx {
                g: &g,
                opset,
                node,
                op_type,
                attrs: Attrs(&node.attribute),
                inputs: inputs.clone(),
                new_consts: Vec::new(),
            };
            let r = resolve_node(&mut cx);
            let consts = std::mem::take(&mut cx.new_consts);
            Some(r.map(|o| (o, consts)))
        };
        let outputs: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        match result {
            Some(Ok((Out::Consts(values), _))) => {
                g.stats.folded_nodes += 1;
                for (name, (dtype, shape, data)) in outputs.iter().zip(values) {
                    let id =
                        g.add_tensor(Tensor { name: (*name).clone(), dtype, shape: Some(shape), value: Some(data) });
                    names.insert((*name).clone(), id);
                }
            }
            Some(Ok((Out::Nodes { out_shape, .. }, _))) if !shape_ok(&out_shape) => {
                unsupported.push(UnsupportedNode {
                    op_type: op_type.into(),
                    node: node_name.clone(),
                    reason: format!("output shape {out_shape:?}: rank above 6 or more than 2^31 elements"),
                });
                for o in outputs {
                    let id =
                        g.add_tensor(Tensor { name: o.clone(), dtype: data_type::FLOAT, shape: None, value: None });
                    names.insert(o.clone(), id);
                }
            }
            Some(Ok((Out::Nodes { tmps, nodes, out_shape }, consts))) => {
                let Some(out_name) = outputs.first() else { continue };
                let const_ids: Vec<TensorId> = consts
                    .into_iter()
                    .map(|(n, s, d)| {
                        g.add_tensor(Tensor {
                            name: n,
                            dtype: data_type::FLOAT,
                            shape: Some(s),
                            value: Some(Data::F32(d)),
                        })
                    })
                    .collect();
                let tmp_ids: Vec<TensorId> = tmps
                    .into_iter()
                    .enumerate()
                    .map(|(k, s)| {
                        g.add_tensor(Tensor {
                            name: format!("{out_name}:{k}"),
                            dtype: data_type::FLOAT,
                            shape: Some(s),
                            value: None,
                        })
                    })
                    .collect();
                let out_id = g.add_tensor(Tensor {
                    name: (*out_name).clone(),
                    dtype: data_type::FLOAT,
                    shape: Some(out_shape),
                    value: None,
                });
                names.insert((*out_name).clone(), out_id);
                let count = nodes.len();
                let resolve_ref = |r: Ref| match r {
                    Ref::T(id) => id,
                    Ref::Tmp(k) => tmp_ids[k],
                    Ref::Const(k) => const_ids[k],
                    Ref::Out => out_id,
                };
                for (j, (op, ins, out)) in nodes.into_iter().enumerate() {
                    let inputs: Vec<Option<TensorId>> = ins.into_iter().map(|r| r.map(resolve_ref)).collect();
                    let name = if count > 1 { format!("{node_name}#{j}") } else { node_name.clone() };
                    g.nodes.push(Node { name, op, inputs, outputs: vec![resolve_ref(out)] });
                }
                for extra in outputs.iter().skip(1) {
                    // Optional extra outputs that were checked to be unused upstream.
                    let id = g.add_tensor(Tensor {
                        name: (*extra).clone(),
                        dtype: data_type::FLOAT,
                        shape: None,
                        value: None,
                    });
                    names.insert((*extra).clone(), id);
                }
            }
            Some(Err(NodeErr::Invalid(msg))) => return Err(ConvertError::node(op_type, &node_name, msg)),
            other => {
                if let Some(Err(NodeErr::Unsupported(reason))) = other {
                    unsupported.push(UnsupportedNode { op_type: op_type.into(), node: node_name.clone(), reason });
                }
                for o in outputs {
                    let id =
                        g.add_tensor(Tensor { name: o.clone(), dtype: data_type::FLOAT, shape: None, value: None });
                    names.insert(o.clone(), id);
                }
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(ConvertError::Unsupported(unsupported));
    }
    let outs: Vec<String> = graph.output.iter().map(|o| o.name.clone().unwrap_or_default()).collect();
    if outs.len() != 1 {
        return Err(ConvertError::InvalidModel(format!(
            "the graph has {} outputs ({}); resq models have exactly one",
            outs.len(),
            outs.join(", ")
        )));
    }
    let out = *names
        .get(&outs[0])
        .ok_or_else(|| ConvertError::InvalidModel(format!("graph output '{}' is never produced", outs[0])))?;
    if g.tensors[out].is_const() {
        return Err(ConvertError::InvalidModel(format!(
            "graph output '{}' does not depend on the input (it folds to a constant)",
            outs[0]
        )));
    }
    if g.tensors[out].shape.is_none() {
        return Err(ConvertError::InvalidModel(format!("graph output '{}' has no shape", outs[0])));
    }
    if out == g.input {
        // The output is the input itself: copy it so the output is produced by an op.
        let shape = g.tensors[out].shape.clone();
        let id = g.add_tensor(Tensor { name: format!("{}:out", outs[0]), dtype: data_type::FLOAT, shape, value: None });
        g.nodes.push(Node { name: "output".into(), op: Op::Copy, inputs: vec![Some(out)], outputs: vec![id] });
        g.output = id;
    } else {
        g.output = out;
    }
    if g.tensors[g.input].dtype != data_type::FLOAT {
        return Err(ConvertError::InvalidModel(format!(
            "graph input '{}' is {}: resq takes f32 input",
            g.tensors[g.input].name,
            data_type::name(g.tensors[g.input].dtype)
        )));
    }
    Ok(g)
}
