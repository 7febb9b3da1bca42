//! The converter's intermediate representation: a list of nodes in execution order over named
//! tensors whose shapes are concrete (logical ONNX order, e.g. NCHW) after import.
//!
//! Import ([`crate::import`]) folds every constant subgraph and resolves each remaining ONNX
//! node into one of the [`Op`]s below (the operators resq runs); the passes
//! ([`crate::passes`]) rewrite the node list (BN folding, fusion); lowering
//! ([`crate::lower`]) assigns physical layouts and writes the file.

use crate::onnx::data_type;

/// Index of a tensor in [`Graph::tensors`].
pub type TensorId = usize;

/// Constant values. Integer types (INT64, INT32, BOOL, UINT8, INT8) are held as `i64`, float
/// types (FLOAT, DOUBLE, FLOAT16) as `f32`; [`Tensor::dtype`] keeps the ONNX type.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f64 (exact for f32 and for integers up to 2^53).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => v[i] as f64,
            Data::I64(v) => v[i] as f64,
        }
    }

    /// A new tensor whose element `k` is `self[idx[k]]`.
    pub fn gather(&self, idx: &[usize]) -> Data {
        match self {
            Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
            Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
        }
    }

    /// Like [`Self::gather`], with `None` entries filled by `fill` (converted to the type).
    pub fn gather_or(&self, idx: &[Option<usize>], fill: f64) -> Data {
        match self {
            Data::F32(v) => Data::F32(idx.iter().map(|i| i.map_or(fill as f32, |i| v[i])).collect()),
            Data::I64(v) => Data::I64(idx.iter().map(|i| i.map_or(fill as i64, |i| v[i])).collect()),
        }
    }

    /// The values as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64; `None` if a float value is not an integer.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self {
            Data::I64(v) => Some(v.clone()),
            Data::F32(v) => v.iter().map(|&x| if x.fract() == 0.0 { Some(x as i64) } else { None }).collect(),
        }
    }

    /// True when this is the storage class of the ONNX type `dtype`.
    pub fn matches(&self, dtype: i32) -> bool {
        matches!((self, is_float_type(dtype)), (Data::F32(_), true) | (Data::I64(_), false))
    }
}

/// FLOAT, DOUBLE, FLOAT16, BFLOAT16.
pub fn is_float_type(dtype: i32) -> bool {
    matches!(dtype, data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16)
}

/// A tensor of the graph.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    /// ONNX data type (`onnx::data_type`).
    pub dtype: i32,
    /// Logical (ONNX) shape; `None` only for outputs of nodes that could not be imported.
    pub shape: Option<Vec<usize>>,
    /// The value of a constant.
    pub value: Option<Data>,
}

impl Tensor {
    pub fn is_const(&self) -> bool {
        self.value.is_some()
    }
    pub fn numel(&self) -> usize {
        self.shape.as_ref().map_or(0, |s| s.iter().product())
    }
}

/// A fused activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    None,
    Relu,
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
}

/// Convolution parameters (2-D), pads as `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConvSpec {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub groups: usize,
}

/// Pooling parameters (2-D), pads as `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PoolSpec {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub count_include_pad: bool,
}

/// The operators resq runs (after import).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Inputs `[x, w, bias?, residual?]`; `w` constant OIHW (logical ONNX order), `bias` `[O]`.
    /// `y = act(conv(x, w) + bias + residual)`.
    Conv2d { spec: ConvSpec, act: Act },
    /// Inputs `[x]`.
    MaxPool(PoolSpec),
    /// Inputs `[x]`.
    AvgPool(PoolSpec),
    /// Inputs `[x]` rank 4; output `[N, C, 1, 1]`.
    GlobalAvgPool,
    /// Inference BatchNormalization: inputs `[x, scale, bias, mean, var]`, all but `x` constant.
    BatchNorm { epsilon: f32 },
    /// Inputs `[x, scale, shift]`, `scale`/`shift` constant `[C]` over axis 1.
    ChannelAffine { act: Act },
    /// Inputs `[x [M,K], w [N,K] constant, bias? [N]]`.
    Linear { act: Act },
    /// Inputs `[a, b]` (numpy broadcast); activation operands have the output's rank.
    Add { act: Act },
    /// Inputs `[x]`.
    Activation(Act),
    /// Inputs `[x]`: softmax over `axis`; `legacy` (opset < 13): over all dims from `axis` on.
    Softmax { axis: usize, legacy: bool },
    /// Inputs `[x]`: `y.shape[d] = x.shape[perm[d]]`.
    Transpose { perm: Vec<usize> },
    /// Inputs `[x]`: `y[i] = x[start + i*step]` per dim; the output shape gives the extent.
    Slice { starts: Vec<i64>, steps: Vec<i64> },
    /// Inputs `[x]`: `x` placed at `before` inside `y` (constant `value` elsewhere).
    Pad { before: Vec<usize>, value: f32 },
    /// Inputs `[x]`: same elements in row-major order, new shape (Reshape, Flatten, ...).
    Copy,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "Conv2d",
            Op::MaxPool(_) => "MaxPool2d",
            Op::AvgPool(_) => "AvgPool2d",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::ChannelAffine { .. } => "ChannelAffine",
            Op::Linear { .. } => "Linear",
            Op::Add { .. } => "Add",
            Op::Activation(_) => "Activation",
            Op::Softmax { .. } => "Softmax",
            Op::Transpose { .. } => "Transpose",
            Op::Slice { .. } => "Slice",
            Op::Pad { .. } => "Pad",
            Op::Copy => "Copy",
        }
    }

    /// The fused activation slot of ops that have one.
    pub fn act_mut(&mut self) -> Option<&mut Act> {
        match self {
            Op::Conv2d { act, .. } | Op::ChannelAffine { act } | Op::Linear { act } | Op::Add { act } => Some(act),
            _ => None,
        }
    }
}

/// A node: an op over tensors. `inputs` entries are `None` for absent optional inputs.
#[derive(Clone, Debug)]
pub struct Node {
    /// Source node name(s), joined with `+` when nodes were fused.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Option<TensorId>>,
    pub outputs: Vec<TensorId>,
}

impl Node {
    pub fn input(&self, i: usize) -> Option<TensorId> {
        self.inputs.get(i).copied().flatten()
    }
}

/// Counters the passes keep for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// ONNX nodes evaluated at convert time.
    pub folded_nodes: usize,
    /// BatchNormalization nodes folded into convolutions.
    pub bn_folded: usize,
    /// BatchNormalization nodes turned into ChannelAffine ops.
    pub bn_affine: usize,
    /// Residual adds fused into convolution epilogues.
    pub residual_fused: usize,
    /// Relu/Clip fused into a producer's epilogue.
    pub act_fused: usize,
    /// Bias adds fused into Linear ops.
    pub bias_fused: usize,
    /// Nodes removed: identity copies, copy chains and slice chains merged.
    pub removed: usize,
}

/// The graph. Nodes are in execution order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub tensors: Vec<Tensor>,
    pub nodes: Vec<Node>,
    /// The run-time graph input (NCHW for images).
    pub input: TensorId,
    pub output: TensorId,
    pub opset: i64,
    pub producer: String,
    pub stats: Stats,
}

impl Graph {
    pub fn add_tensor(&mut self, t: Tensor) -> TensorId {
        self.tensors.push(t);
        self.tensors.len() - 1
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        self.tensors[t].shape.as_deref().unwrap_or(&[])
    }

    /// Number of uses of every tensor (node inputs and the graph output).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.tensors.len()];
        for node in &self.nodes {
            for t in node.inputs.iter().flatten() {
                n[*t] += 1;
            }
        }
        n[self.output] += 1;
        n
    }

    /// Index of the node producing each tensor, if any.
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.tensors.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &t in &node.outputs {
                p[t] = Some(i);
            }
        }
        p
    }

    /// Replace every use of tensor `from` by `to` in node inputs (not the graph output).
    pub fn replace_uses(&mut self, from: TensorId, to: TensorId) {
        for node in &mut self.nodes {
            for t in node.inputs.iter_mut().flatten() {
                if *t == from {
                    *t = to;
                }
            }
        }
    }

    /// Drop nodes whose outputs nobody uses, repeatedly.
    pub fn remove_dead_nodes(&mut self) {
        loop {
            let uses = self.use_counts();
            let before = self.nodes.len();
            self.nodes.retain(|n| n.outputs.iter().any(|&t| uses[t] > 0));
            if self.nodes.len() == before {
                break;
            }
        }
    }
}
