//! IR -> `.resq`: assigns physical layouts (rank-4 activations NHWC where the ops need it),
//! inserts the layout conversions, translates logical (ONNX) axes into physical ones, packs
//! the weights and emits the records through [`FileBuilder`].

use crate::error::ConvertError;
use crate::fold;
use crate::ir::{Act, ConvSpec, Data, Graph, Op, TensorId};
use resq::format::{
    ActKind, ActParams, AddParams, ConvParams, DType, FileBuilder, GlobalPoolParams, Layout, OpKind, PadParams,
    PoolParams, SliceParams, SoftmaxParams, TransposeParams, MAX_RANK, NONE,
};
use resq::kernels::gemm::{prefer_winograd, ConvGeom};
use resq::kernels::pack::{pack_n16, pack_winograd_f43};
use std::collections::HashMap;

/// A tensor of the lowered program (physical dims of its layout).
#[derive(Clone, Debug)]
pub struct LTensor {
    pub name: String,
    pub layout: Layout,
    pub dims: Vec<usize>,
    /// Payload of a constant: little-endian elements of `dtype`, exactly as the kernels read them.
    pub bytes: Option<Vec<u8>>,
    /// Element type (F32 unless quantization or fp16 conversion changed it).
    pub dtype: DType,
    /// Int8 activations: the scale `s` of `r = s * (q - z)`; 0 for every other tensor.
    pub scale: f32,
    /// Int8 activations: the zero point `z`; 0 for every other tensor.
    pub zero_point: i32,
}

impl LTensor {
    /// An F32 tensor (no quantization parameters).
    pub fn f32(name: String, layout: Layout, dims: Vec<usize>, bytes: Option<Vec<u8>>) -> Self {
        LTensor { name, layout, dims, bytes, dtype: DType::F32, scale: 0.0, zero_point: 0 }
    }
}

/// Op parameters.
#[derive(Clone, Debug)]
pub enum Params {
    Conv(ConvParams),
    Pool(PoolParams),
    Act(ActParams),
    Add(AddParams),
    Softmax(SoftmaxParams),
    GlobalPool(GlobalPoolParams),
    Transpose(TransposeParams),
    Slice(SliceParams),
    Pad(PadParams),
    None,
}

/// One lowered op; tensor ids index [`Program::tensors`] (`NONE` for absent inputs).
#[derive(Clone, Debug)]
pub struct LOp {
    pub kind: OpKind,
    pub name: String,
    pub inputs: Vec<u32>,
    pub outputs: Vec<u32>,
    pub params: Params,
}

/// The lowered model, ready to be written.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub tensors: Vec<LTensor>,
    pub ops: Vec<LOp>,
    pub input: u32,
    pub output: u32,
    /// Logical NCHW dims of the input tensor.
    pub input_dims: [usize; 4],
}

impl Program {
    /// Bytes of constant payloads.
    pub fn param_bytes(&self) -> usize {
        self.tensors.iter().filter_map(|t| t.bytes.as_ref()).map(|b| b.len()).sum()
    }

    /// Model parameters: the logical element count of every constant (packed layouts carry
    /// padding and Winograd weights 4x the values, so bytes / 4 would overstate it).
    pub fn param_count(&self) -> usize {
        self.tensors.iter().filter(|t| t.bytes.is_some()).map(|t| t.dims.iter().product::<usize>()).sum()
    }

    /// Emit the records into a builder (metadata is set by the caller); the payloads move
    /// into the builder. Each tensor record gets the tensor's dtype and quantization
    /// parameters (`quant_scale` / `quant_zero_point`).
    pub fn emit(&mut self, b: &mut FileBuilder) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.tensors.len());
        for t in &mut self.tensors {
            let id = match t.bytes.take() {
                Some(bytes) => b.constant(&t.name, t.dtype, t.layout, &t.dims, bytes),
                None => b.activation(&t.name, t.dtype, t.layout, &t.dims),
            };
            if let Some(rec) = b.tensor_mut(id) {
                rec.quant_scale = t.scale;
                rec.quant_zero_point = t.zero_point;
            }
            ids.push(id);
        }
        let map =
            |v: &[u32]| -> Vec<u32> { v.iter().map(|&i| if i == NONE { NONE } else { ids[i as usize] }).collect() };
        for op in &self.ops {
            let (ins, outs) = (map(&op.inputs), map(&op.outputs));
            match &op.params {
                Params::Conv(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::Pool(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::Act(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::Add(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::Softmax(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::GlobalPool(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::Transpose(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::Slice(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::Pad(p) => b.op(op.kind, &op.name, &ins, &outs, p),
                Params::None => b.op(op.kind, &op.name, &ins, &outs, &[0u32; 0]),
            };
        }
        ids
    }
}

/// Packed convolution weights and the algorithm that reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvWeights {
    /// [`ConvParams::algo`].
    pub algo: u32,
    pub layout: Layout,
    /// Physical dims as the tensor record declares them.
    pub dims: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// How weights are laid out in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Packing {
    /// The layouts the fast kernels read (PackedN16, Winograd), chosen per layer. They run on
    /// every CPU: the generic tier has scalar twins of those kernels.
    #[default]
    Fast,
    /// Plain OHWI conv / `[N, K]` linear weights, run by the direct scalar reference kernels
    /// (for checking the fast path against an independent one).
    Reference,
}

/// The one place that chooses a convolution's algorithm and weight layout.
///
/// `w` is OIHW f32 (`[o, i_g, kh, kw]`), `input` and `output` the NCHW shapes (from shape
/// inference). With
/// [`Packing::Fast`]: Winograd F(4x4,3x3) (algo 2) where `resq::kernels::gemm::prefer_winograd`
/// says it is faster (its doc gives the measurements), else the packed GEMM (algo 1,
/// PackedN16). With [`Packing::Reference`]: algo 0, OHWI.
pub fn choose_conv_algo(
    spec: &ConvSpec,
    input: [usize; 4],
    output: [usize; 4],
    w: &[f32],
    wshape: [usize; 4],
    packing: Packing,
) -> ConvWeights {
    let [o, ig, kh, kw] = wshape;
    // src = O-I-kh-kw -> dst = O-kh-kw-I
    let mut ohwi = Vec::with_capacity(w.len());
    for oo in 0..o {
        for y in 0..kh {
            for x in 0..kw {
                for i in 0..ig {
                    ohwi.push(w[((oo * ig + i) * kh + y) * kw + x]);
                }
            }
        }
    }
    if packing == Packing::Reference {
        return ConvWeights { algo: 0, layout: Layout::Ohwi, dims: vec![o, kh, kw, ig], bytes: f32_bytes(&ohwi) };
    }
    let geom = ConvGeom {
        n: input[0],
        in_h: input[2],
        in_w: input[3],
        in_c: input[1],
        out_h: output[2],
        out_w: output[3],
        out_c: o,
        kh,
        kw,
        stride_h: spec.strides[0],
        stride_w: spec.strides[1],
        pad_top: spec.pads[0],
        pad_left: spec.pads[1],
        dil_h: spec.dilations[0],
        dil_w: spec.dilations[1],
        groups: spec.groups,
    };
    if prefer_winograd(&geom) {
        let packed = pack_winograd_f43(&ohwi, o, ig);
        return ConvWeights {
            algo: 2,
            layout: Layout::WinogradF43N16,
            dims: vec![o, kh, kw, ig],
            bytes: f32_bytes(&packed),
        };
    }
    let packed = pack_n16(&ohwi, o, kh, kw, ig, spec.groups);
    ConvWeights { algo: 1, layout: Layout::PackedN16, dims: vec![o, kh, kw, ig], bytes: f32_bytes(&packed) }
}

/// `perm[d]` = logical dim stored at physical position `d`.
fn layout_perm(layout: Layout, rank: usize) -> Vec<usize> {
    match layout {
        Layout::Nhwc if rank == 4 => vec![0, 2, 3, 1],
        _ => (0..rank).collect(),
    }
}

fn physical(layout: Layout, logical: &[usize]) -> Vec<usize> {
    layout_perm(layout, logical.len()).iter().map(|&p| logical[p]).collect()
}

fn act_fields(act: Act) -> (u32, f32, f32) {
    match act {
        Act::None => (ActKind::None as u32, 0.0, 0.0),
        Act::Relu => (ActKind::Relu as u32, 0.0, f32::MAX),
        Act::Clip(lo, hi) => (ActKind::Clip as u32, lo, hi),
    }
}

/// Little-endian bytes of f32 values (the payload format of F32 constants).
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct Lower<'g> {
    g: &'g Graph,
    p: Program,
    /// Physical versions of IR tensors: (tensor, layout) -> program id.
    versions: HashMap<(TensorId, u8), u32>,
    /// The layout each IR activation was produced in.
    primary: HashMap<TensorId, Layout>,
    packing: Packing,
}

impl<'g> Lower<'g> {
    fn push_tensor(&mut self, name: String, layout: Layout, dims: Vec<usize>, bytes: Option<Vec<u8>>) -> u32 {
        self.p.tensors.push(LTensor::f32(name, layout, dims, bytes));
        (self.p.tensors.len() - 1) as u32
    }

    fn push_op(&mut self, kind: OpKind, name: &str, inputs: Vec<u32>, outputs: Vec<u32>, params: Params) {
        self.p.ops.push(LOp { kind, name: name.to_string(), inputs, outputs, params });
    }

    fn const_f32(&self, t: TensorId) -> Vec<f32> {
        match &self.g.tensors[t].value {
            Some(Data::F32(v)) => v.clone(),
            Some(d) => d.to_f32(),
            None => Vec::new(),
        }
    }

    /// A constant in `layout` (rank-4 values are transposed into NHWC when asked).
    fn constant(&mut self, t: TensorId, layout: Layout) -> u32 {
        let shape = self.g.shape(t).to_vec();
        let layout = if shape.len() == 4 { layout } else { Layout::RowMajor };
        if let Some(&id) = self.versions.get(&(t, layout as u8)) {
            return id;
        }
        let v = self.const_f32(t);
        let perm = layout_perm(layout, shape.len());
        let (dims, idx) = fold::transpose_indices(&shape, &perm);
        let data: Vec<f32> = idx.iter().map(|&i| v[i]).collect();
        let id = self.push_tensor(self.g.tensors[t].name.clone(), layout, dims, Some(f32_bytes(&data)));
        self.versions.insert((t, layout as u8), id);
        id
    }

    /// Tensor `t` in `want` layout (None: whatever it was produced in), converting if needed.
    fn get(&mut self, t: TensorId, want: Option<Layout>) -> u32 {
        if self.g.tensors[t].is_const() {
            return self.constant(t, want.unwrap_or(Layout::RowMajor));
        }
        let have = self.primary.get(&t).copied().unwrap_or(Layout::RowMajor);
        let shape = self.g.shape(t).to_vec();
        let want = match want {
            Some(w) if shape.len() == 4 => w,
            _ => have,
        };
        if let Some(&id) = self.versions.get(&(t, want as u8)) {
            return id;
        }
        let src = self.versions[&(t, have as u8)];
        // NCHW <-> NHWC.
        let perm: Vec<u32> = if want == Layout::Nhwc { vec![0, 2, 3, 1] } else { vec![0, 3, 1, 2] };
        let suffix = if want == Layout::Nhwc { "nhwc" } else { "nchw" };
        let name = format!("{}:{suffix}", self.g.tensors[t].name);
        let id = self.push_tensor(name.clone(), want, physical(want, &shape), None);
        let mut tp = TransposeParams { rank: 4, ..Default::default() };
        tp.perm[..4].copy_from_slice(&perm);
        self.push_op(
            OpKind::Transpose,
            &format!("to_{suffix}:{}", self.g.tensors[t].name),
            vec![src],
            vec![id],
            Params::Transpose(tp),
        );
        self.versions.insert((t, want as u8), id);
        id
    }

    /// Declare the output of an IR node in `layout`.
    fn output(&mut self, t: TensorId, layout: Layout) -> u32 {
        let shape = self.g.shape(t).to_vec();
        let layout = if shape.len() == 4 { layout } else { Layout::RowMajor };
        let id = self.push_tensor(self.g.tensors[t].name.clone(), layout, physical(layout, &shape), None);
        self.versions.insert((t, layout as u8), id);
        self.primary.insert(t, layout);
        id
    }

    fn layout_of(&self, t: TensorId) -> Layout {
        if self.g.tensors[t].is_const() {
            Layout::RowMajor
        } else {
            self.primary.get(&t).copied().unwrap_or(Layout::RowMajor)
        }
    }

    fn node(&mut self, i: usize) -> Result<(), ConvertError> {
        let g = self.g;
        let n = &g.nodes[i];
        let x = n.inputs.first().copied().flatten().unwrap_or(0);
        let y = n.outputs[0];
        let name = n.name.as_str();
        let xs = g.shape(x).to_vec();
        let bad = |msg: String| ConvertError::node(n.op.name(), name, msg);
        match &n.op {
            Op::Conv2d { spec, act } => {
                let xi = self.get(x, Some(Layout::Nhwc));
                let wt = n.input(1).ok_or_else(|| bad("no weights".into()))?;
                let ws = g.shape(wt);
                let wshape = [ws[0], ws[1], ws[2], ws[3]];
                let input = [xs[0], xs[1], xs[2], xs[3]];
                let ys = g.shape(y);
                let output = [ys[0], ys[1], ys[2], ys[3]];
                let cw = choose_conv_algo(spec, input, output, &self.const_f32(wt), wshape, self.packing);
                let wname = g.tensors[wt].name.clone();
                let wi = self.push_tensor(wname, cw.layout, cw.dims, Some(cw.bytes));
                let bi = match n.input(2) {
                    Some(b) => self.constant(b, Layout::RowMajor),
                    None => NONE,
                };
                let ri = match n.input(3) {
                    Some(r) => self.get(r, Some(Layout::Nhwc)),
                    None => NONE,
                };
                let yi = self.output(y, Layout::Nhwc);
                let (a, lo, hi) = act_fields(*act);
                let p = ConvParams {
                    kernel_h: spec.kernel[0] as u32,
                    kernel_w: spec.kernel[1] as u32,
                    stride_h: spec.strides[0] as u32,
                    stride_w: spec.strides[1] as u32,
                    pad_top: spec.pads[0] as u32,
                    pad_left: spec.pads[1] as u32,
                    pad_bottom: spec.pads[2] as u32,
                    pad_right: spec.pads[3] as u32,
                    dilation_h: spec.dilations[0] as u32,
                    dilation_w: spec.dilations[1] as u32,
                    groups: spec.groups as u32,
                    act: a,
                    act_min: lo,
                    act_max: hi,
                    algo: cw.algo,
                    ..Default::default()
                };
                self.push_op(OpKind::Conv2d, name, vec![xi, wi, bi, ri], vec![yi], Params::Conv(p));
            }
            Op::MaxPool(s) | Op::AvgPool(s) => {
                let xi = self.get(x, Some(Layout::Nhwc));
                let yi = self.output(y, Layout::Nhwc);
                let p = PoolParams {
                    kernel_h: s.kernel[0] as u32,
                    kernel_w: s.kernel[1] as u32,
                    stride_h: s.strides[0] as u32,
                    stride_w: s.strides[1] as u32,
                    pad_top: s.pads[0] as u32,
                    pad_left: s.pads[1] as u32,
                    pad_bottom: s.pads[2] as u32,
                    pad_right: s.pads[3] as u32,
                    dilation_h: s.dilations[0] as u32,
                    dilation_w: s.dilations[1] as u32,
                    count_include_pad: s.count_include_pad as u32,
                    ..Default::default()
                };
                let kind = if matches!(n.op, Op::MaxPool(_)) { OpKind::MaxPool2d } else { OpKind::AvgPool2d };
                self.push_op(kind, name, vec![xi], vec![yi], Params::Pool(p));
            }
            Op::GlobalAvgPool => {
                let xi = self.get(x, Some(Layout::Nhwc));
                let yi = self.output(y, Layout::Nhwc);
                let p = Params::GlobalPool(GlobalPoolParams::default());
                self.push_op(OpKind::GlobalAvgPool, name, vec![xi], vec![yi], p);
            }
            Op::ChannelAffine { act } => {
                if !matches!(xs.len(), 2 | 4) {
                    return Err(bad(format!("input rank {} (only 2 or 4)", xs.len())));
                }
                let xi = self.get(x, Some(Layout::Nhwc));
                let si = self.constant(n.input(1).unwrap_or(0), Layout::RowMajor);
                let hi_ = self.constant(n.input(2).unwrap_or(0), Layout::RowMajor);
                let yi = self.output(y, Layout::Nhwc);
                let (a, lo, hi) = act_fields(*act);
                let p = ActParams { act: a, act_min: lo, act_max: hi, ..Default::default() };
                self.push_op(OpKind::ChannelAffine, name, vec![xi, si, hi_], vec![yi], Params::Act(p));
            }
            Op::BatchNorm { .. } => return Err(bad("BatchNorm left after the passes".into())),
            Op::Linear { act } => {
                let xi = self.get(x, Some(Layout::RowMajor));
                let wt = n.input(1).unwrap_or(0);
                let wi = match self.packing {
                    Packing::Reference => self.constant(wt, Layout::RowMajor),
                    Packing::Fast => {
                        // [N, K] is the 1x1, one-group case of PackedN16.
                        let ws = g.shape(wt).to_vec();
                        let packed = pack_n16(&self.const_f32(wt), ws[0], 1, 1, ws[1], 1);
                        let wname = g.tensors[wt].name.clone();
                        self.push_tensor(wname, Layout::PackedN16, ws, Some(f32_bytes(&packed)))
                    }
                };
                let bi = match n.input(2) {
                    Some(b) => self.constant(b, Layout::RowMajor),
                    None => NONE,
                };
                let yi = self.output(y, Layout::RowMajor);
                let (a, lo, hi) = act_fields(*act);
                let p = ActParams { act: a, act_min: lo, act_max: hi, ..Default::default() };
                self.push_op(OpKind::Linear, name, vec![xi, wi, bi], vec![yi], Params::Act(p));
            }
            Op::Add { act } => {
                let (a, b) = (n.input(0).unwrap_or(0), n.input(1).unwrap_or(0));
                let ys = g.shape(y).to_vec();
                let r = ys.len();
                if r > MAX_RANK {
                    return Err(bad(format!("rank {r} > {MAX_RANK}")));
                }
                let layout = if r == 4 && [a, b].iter().any(|&t| self.layout_of(t) == Layout::Nhwc) {
                    Layout::Nhwc
                } else {
                    Layout::RowMajor
                };
                let mut ids = [0u32; 2];
                let mut strides = [[0u32; MAX_RANK]; 2];
                for (k, &t) in [a, b].iter().enumerate() {
                    // Operand in y's rank (constants get leading 1s) and y's layout.
                    let mut ls = vec![1usize; r - g.shape(t).len()];
                    ls.extend_from_slice(g.shape(t));
                    ids[k] = if g.tensors[t].is_const() {
                        let key = (t, 100 + layout as u8);
                        match self.versions.get(&key) {
                            Some(&id) => id,
                            None => {
                                let v = self.const_f32(t);
                                let perm = layout_perm(layout, r);
                                let (dims, idx) = fold::transpose_indices(&ls, &perm);
                                let data: Vec<f32> = idx.iter().map(|&i| v[i]).collect();
                                let id =
                                    self.push_tensor(g.tensors[t].name.clone(), layout, dims, Some(f32_bytes(&data)));
                                self.versions.insert(key, id);
                                id
                            }
                        }
                    } else {
                        self.get(t, Some(layout))
                    };
                    let phys = physical(layout, &ls);
                    let st = fold::strides(&phys);
                    let yphys = physical(layout, &ys);
                    for d in 0..r {
                        strides[k][d] = if phys[d] == 1 && yphys[d] != 1 { 0 } else { st[d] as u32 };
                    }
                }
                let yi = self.output(y, layout);
                let (ak, lo, hi) = act_fields(*act);
                let p = AddParams {
                    act: ak,
                    act_min: lo,
                    act_max: hi,
                    rank: r as u32,
                    a_strides: strides[0],
                    b_strides: strides[1],
                    ..Default::default()
                };
                self.push_op(OpKind::Add, name, ids.to_vec(), vec![yi], Params::Add(p));
            }
            Op::Activation(act) => {
                let xi = self.get(x, None);
                let yi = self.output(y, self.layout_of(x));
                let (a, lo, hi) = act_fields(*act);
                self.push_op(
                    OpKind::Activation,
                    name,
                    vec![xi],
                    vec![yi],
                    Params::Act(ActParams { act: a, act_min: lo, act_max: hi, ..Default::default() }),
                );
            }
            Op::Softmax { axis, legacy } => {
                let xi = self.get(x, Some(Layout::RowMajor));
                let yi = self.output(y, Layout::RowMajor);
                let outer: usize = xs[..*axis].iter().product();
                let (len, inner) = if *legacy {
                    (xs[*axis..].iter().product(), 1)
                } else {
                    (xs[*axis], xs[*axis + 1..].iter().product())
                };
                let p = SoftmaxParams { outer: outer as u32, axis_len: len as u32, inner: inner as u32 };
                self.push_op(OpKind::Softmax, name, vec![xi], vec![yi], Params::Softmax(p));
            }
            Op::Transpose { perm } => {
                let have = self.layout_of(x);
                let xi = self.get(x, None);
                let yi = self.output(y, Layout::RowMajor);
                let px = layout_perm(have, xs.len());
                let mut inv = vec![0; px.len()];
                for (d, &l) in px.iter().enumerate() {
                    inv[l] = d;
                }
                let mut p = TransposeParams { rank: xs.len() as u32, ..Default::default() };
                for (k, &l) in perm.iter().enumerate() {
                    p.perm[k] = inv[l] as u32;
                }
                self.push_op(OpKind::Transpose, name, vec![xi], vec![yi], Params::Transpose(p));
            }
            Op::Slice { starts, steps } => {
                let layout = self.layout_of(x);
                let xi = self.get(x, None);
                let yi = self.output(y, layout);
                let perm = layout_perm(layout, xs.len());
                let mut p = SliceParams { rank: xs.len() as u32, ..Default::default() };
                for (d, &l) in perm.iter().enumerate() {
                    p.start[d] = i32::try_from(starts[l]).map_err(|_| bad("slice start out of range".into()))?;
                    p.step[d] = i32::try_from(steps[l]).map_err(|_| bad("slice step out of range".into()))?;
                }
                self.push_op(OpKind::Slice, name, vec![xi], vec![yi], Params::Slice(p));
            }
            Op::Pad { before, value } => {
                let layout = self.layout_of(x);
                let xi = self.get(x, None);
                let yi = self.output(y, layout);
                let perm = layout_perm(layout, xs.len());
                let mut p = PadParams { rank: xs.len() as u32, value: *value, ..Default::default() };
                for (d, &l) in perm.iter().enumerate() {
                    p.before[d] = before[l] as u32;
                }
                self.push_op(OpKind::Pad, name, vec![xi], vec![yi], Params::Pad(p));
            }
            Op::Copy => {
                // NHWC bytes are already in NCHW order when H*W == 1 or C == 1.
                let have = self.layout_of(x);
                let identical = xs.len() == 4 && (xs[2] * xs[3] == 1 || xs[1] == 1);
                let xi = if have == Layout::Nhwc && identical {
                    self.get(x, None)
                } else {
                    self.get(x, Some(Layout::RowMajor))
                };
                let yi = self.output(y, Layout::RowMajor);
                self.push_op(OpKind::Copy, name, vec![xi], vec![yi], Params::None);
            }
        }
        Ok(())
    }
}

/// A graph input shape as the 4 NCHW dims of the file's input tensor: leading 1s for lower
/// ranks, leading dims merged for higher ones.
pub fn input_dims4(shape: &[usize]) -> [usize; 4] {
    let mut d4 = [1usize; 4];
    let r = shape.len();
    if r <= 4 {
        d4[4 - r..].copy_from_slice(shape);
    } else {
        d4[0] = shape[..r - 3].iter().product();
        d4[1..].copy_from_slice(&shape[r - 3..]);
    }
    d4
}

/// Lower a graph (after the passes) to a program.
pub fn lower(g: &Graph, packing: Packing) -> Result<Program, ConvertError> {
    let mut l = Lower { g, p: Program::default(), versions: HashMap::new(), primary: HashMap::new(), packing };
    let input_shape = g.shape(g.input).to_vec();
    if input_shape.len() > MAX_RANK {
        return Err(ConvertError::InvalidModel(format!("input rank {} > {MAX_RANK}", input_shape.len())));
    }
    // The file's input tensor is rank 4 (NCHW); other ranks get leading 1s (or leading dims
    // merged) and a Copy to the graph's real input shape.
    let d4 = input_dims4(&input_shape);
    let name = g.tensors[g.input].name.clone();
    let input = if input_shape.len() == 4 {
        l.push_tensor(name, Layout::RowMajor, input_shape, None)
    } else {
        let raw = l.push_tensor(format!("{name}:4d"), Layout::RowMajor, d4.to_vec(), None);
        let real = l.push_tensor(name.clone(), Layout::RowMajor, input_shape, None);
        l.push_op(OpKind::Copy, &format!("reshape_input:{name}"), vec![raw], vec![real], Params::None);
        l.p.input = raw;
        real
    };
    l.versions.insert((g.input, Layout::RowMajor as u8), input);
    l.primary.insert(g.input, Layout::RowMajor);
    if l.p.ops.is_empty() {
        l.p.input = input;
    }
    l.p.input_dims = d4;
    for i in 0..g.nodes.len() {
        l.node(i)?;
    }
    let out = l.get(g.output, Some(Layout::RowMajor));
    if l.p.tensors[out as usize].layout != Layout::RowMajor {
        return Err(ConvertError::InvalidModel("the graph output is not row-major".into()));
    }
    // The graph output keeps its ONNX name; an internal NHWC version gets the suffix.
    let out_name = g.tensors[g.output].name.clone();
    if l.p.tensors[out as usize].name != out_name {
        for t in &mut l.p.tensors {
            if t.name == out_name && t.bytes.is_none() {
                t.name = format!("{out_name}:nhwc");
            }
        }
        l.p.tensors[out as usize].name = out_name;
    }
    l.p.output = out;
    Ok(l.p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_weights_are_ohwi() {
        // O=2, I=3, KH=1, KW=2: w[o][i][0][x] = 100*o + 10*i + x.
        let mut w = Vec::new();
        for o in 0..2 {
            for i in 0..3 {
                for x in 0..2 {
                    w.push((100 * o + 10 * i + x) as f32);
                }
            }
        }
        let spec = ConvSpec { kernel: [1, 2], strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 };
        let cw = choose_conv_algo(&spec, [1, 3, 4, 4], [1, 2, 4, 3], &w, [2, 3, 1, 2], Packing::Reference);
        assert_eq!((cw.algo, cw.layout, cw.dims.clone()), (0, Layout::Ohwi, vec![2, 1, 2, 3]));
        let got: Vec<f32> = cw.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(got, [0., 10., 20., 1., 11., 21., 100., 110., 120., 101., 111., 121.]);
    }

    #[test]
    fn layouts() {
        assert_eq!(physical(Layout::Nhwc, &[1, 3, 5, 7]), vec![1, 5, 7, 3]);
        assert_eq!(physical(Layout::RowMajor, &[1, 3, 5, 7]), vec![1, 3, 5, 7]);
        assert_eq!(physical(Layout::Nhwc, &[2, 3]), vec![2, 3]);
    }
}
