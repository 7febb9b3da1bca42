//! Operators: one module per [`OpKind`]. Each module checks an op record's parameters against
//! its tensors' shapes at load time (returning `Error::Format` naming the op and the field)
//! and builds the op's prepared form; at run time it calls the kernels with the shapes it
//! resolved. Kernels never see an unchecked size.

use crate::error::{Error, Result};
use crate::format::reader::FileView;
use crate::format::{DType, Layout, OpKind, OpRecord, TensorKind, TensorRecord, MAX_RANK, NONE, OP_PARAM_WORDS};
use crate::kernels::generic::act::Act;
use crate::kernels::Isa;
use bytemuck::Pod;
use core::mem::size_of;

pub mod activation;
pub mod add;
pub mod channel_affine;
pub mod conv;
pub mod copy;
pub mod linear;
pub mod pad;
pub mod pool;
pub mod quant;
pub mod slice;
pub mod softmax;
pub mod transpose;

/// What an op needs at run time besides its tensors.
pub struct RunCtx<'a> {
    pub pool: Option<&'a crate::team::Team>,
    pub isa: Isa,
    /// At least [`PreparedOp::scratch_len`] f32 values for the session's thread count.
    pub scratch: &'a mut [f32],
    /// Int8 convs with Winograd weights use them ([`crate::Options::int8_winograd`]).
    pub int8_winograd: bool,
}

/// The kernel-facing form of each op kind.
#[derive(Clone, Debug)]
pub enum OpImpl {
    Conv(conv::Conv),
    MaxPool(pool::Pool),
    AvgPool(pool::Pool),
    GlobalAvgPool(pool::GlobalAvgPool),
    Linear(linear::Linear),
    Add(add::Add),
    Activation(activation::Activation),
    ChannelAffine(channel_affine::ChannelAffine),
    Softmax(softmax::Softmax),
    Transpose(transpose::Transpose),
    Slice(slice::Slice),
    Pad(pad::Pad),
    Copy(copy::Copy),
    QConv(quant::QConv),
    QLinear(quant::QLinear),
    Quantize(quant::Requantize),
    Dequantize(quant::Requantize),
}

/// One validated op.
#[derive(Clone, Debug)]
pub struct PreparedOp {
    pub kind: OpKind,
    pub name: String,
    /// Tensor ids of the input slots ([`NONE`] where absent).
    pub inputs: [u32; 4],
    pub output: u32,
    pub imp: OpImpl,
    /// Multiply-accumulates per run (conv, linear, channel affine), else 0.
    pub macs: u64,
    /// Bytes of constant inputs (weights, biases, ...).
    pub param_bytes: u64,
}

impl OpImpl {
    /// Which algorithm runs the op (see [`crate::OpInfo::algo`]).
    pub fn algo_name(&self) -> &'static str {
        match self {
            OpImpl::Conv(c) => match c.imp {
                conv::ConvImpl::DirectOhwi => "direct",
                conv::ConvImpl::Packed => "gemm-n16",
                conv::ConvImpl::Winograd => "winograd-f43",
            },
            OpImpl::Linear(l) => {
                if l.packed {
                    "gemm-n16"
                } else {
                    "direct"
                }
            }
            // Winograd weights are built only where AVX2 sessions use them (by default).
            OpImpl::QConv(c) if c.wino.is_some() => "int8-wino-f23",
            OpImpl::QConv(_) | OpImpl::QLinear(_) => "int8-gemm",
            _ => "-",
        }
    }
}

impl PreparedOp {
    /// f32 scratch values the op needs at run time with `threads` threads (the session
    /// allocates the maximum over all ops once).
    pub fn scratch_len(&self, threads: usize) -> usize {
        match &self.imp {
            OpImpl::Conv(c) => c.scratch_len(threads),
            OpImpl::Linear(l) => l.scratch_len(threads),
            OpImpl::QConv(c) => c.scratch_len(threads),
            OpImpl::QLinear(l) => l.scratch_len(threads),
            _ => 0,
        }
    }

    /// Run with `ins[i]` = the bytes of input slot `i` (empty for absent ones) and `out` = the
    /// output tensor's bytes. Lengths, dtypes and alignment are what [`prepare`] and the
    /// planner checked (arena slots and payloads are 64-byte aligned).
    pub fn run(&self, ins: &[&[u8]; 4], out: &mut [u8], ctx: &mut RunCtx) {
        match &self.imp {
            OpImpl::Conv(o) => o.run_bytes(ins, fo(out), ctx),
            OpImpl::MaxPool(o) => o.run_max(ins[0], out, ctx),
            OpImpl::AvgPool(o) => o.run_avg(ins[0], out, ctx),
            OpImpl::GlobalAvgPool(o) => o.run(ins[0], out, ctx),
            OpImpl::Linear(o) => o.run_bytes(ins, fo(out), ctx),
            OpImpl::Add(o) => o.run(ins[0], ins[1], out, ctx),
            OpImpl::Activation(o) => o.run(f(ins[0]), fo(out)),
            OpImpl::ChannelAffine(o) => o.run(&[f(ins[0]), f(ins[1]), f(ins[2]), f(ins[3])], fo(out)),
            OpImpl::Softmax(o) => o.run(f(ins[0]), fo(out)),
            OpImpl::Transpose(o) if o.int8 => o.run(i8s(ins[0]), i8o(out)),
            OpImpl::Transpose(o) => o.run(f(ins[0]), fo(out)),
            OpImpl::Slice(o) if o.int8 => o.run(i8s(ins[0]), i8o(out)),
            OpImpl::Slice(o) => o.run(f(ins[0]), fo(out)),
            OpImpl::Pad(o) if o.int8 => o.run(i8s(ins[0]), i8o(out)),
            OpImpl::Pad(o) => o.run(f(ins[0]), fo(out)),
            OpImpl::Copy(_) => out.copy_from_slice(ins[0]),
            OpImpl::QConv(o) => o.run(ins, out, ctx),
            OpImpl::QLinear(o) => o.run(ins, out, ctx),
            OpImpl::Quantize(o) => o.run_quantize(ins[0], out, ctx),
            OpImpl::Dequantize(o) => o.run_dequantize(ins[0], out, ctx),
        }
    }
}

/// Bytes as f32 (arena slots and f32 payloads are 4-byte aligned and sized: checked at load).
#[inline]
fn f(b: &[u8]) -> &[f32] {
    // An absent input is an empty slice whose dangling pointer need not be 4-byte aligned.
    if b.is_empty() {
        return &[];
    }
    bytemuck::cast_slice(b)
}

#[inline]
fn fo(b: &mut [u8]) -> &mut [f32] {
    bytemuck::cast_slice_mut(b)
}

#[inline]
fn i8s(b: &[u8]) -> &[i8] {
    bytemuck::cast_slice(b)
}

#[inline]
fn i8o(b: &mut [u8]) -> &mut [i8] {
    bytemuck::cast_slice_mut(b)
}

/// A tensor as an op sees it.
#[derive(Clone, Debug)]
pub struct Desc {
    pub id: u32,
    pub rec: TensorRecord,
    pub dims: Vec<usize>,
    pub layout: Layout,
    pub dtype: DType,
    pub constant: bool,
    pub elems: usize,
}

/// Load-time checking context for one op.
pub struct Checker<'v, 'a> {
    pub v: &'v FileView<'a>,
    pub index: usize,
    pub op: &'v OpRecord,
    pub kind: OpKind,
    label: String,
    at: u64,
}

impl<'v, 'a> Checker<'v, 'a> {
    /// An `Error::Format` naming this op (offset: the op record; `field_at` is relative).
    pub fn fail<T>(&self, what: impl std::fmt::Display) -> Result<T> {
        Err(Error::format(format!("{}: {what}", self.label), Some(self.at)))
    }

    pub fn unsupported<T>(&self, what: impl std::fmt::Display) -> Result<T> {
        Err(Error::unsupported(format!("{}: {what}", self.label)))
    }

    fn desc(&self, id: u32) -> Desc {
        let rec = self.v.tensors[id as usize];
        let dims = self.v.dims(id);
        Desc {
            id,
            rec,
            elems: dims.iter().product(),
            dims,
            // The reader has validated these enums.
            layout: Layout::from_u8(rec.layout).unwrap_or(Layout::RowMajor),
            dtype: DType::from_u8(rec.dtype).unwrap_or(DType::F32),
            constant: rec.kind == TensorKind::Constant as u8,
        }
    }

    /// Input slot `slot`, or `None` if it is [`NONE`].
    pub fn input(&self, slot: usize) -> Option<Desc> {
        let id = *self.op.inputs.get(slot)?;
        (id != NONE && (id as usize) < self.v.tensors.len()).then(|| self.desc(id))
    }

    /// A required F32 input.
    pub fn input_f32(&self, slot: usize, role: &str) -> Result<Desc> {
        let Some(d) = self.input(slot) else { return self.fail(format!("input {slot} ({role}) is missing")) };
        self.need_f32(&d, role)?;
        Ok(d)
    }

    /// The (single) output, any dtype.
    pub fn output(&self) -> Option<Desc> {
        let id = self.op.outputs[0];
        (id != NONE && (id as usize) < self.v.tensors.len()).then(|| self.desc(id))
    }

    /// The (single) output, F32.
    pub fn output_f32(&self) -> Result<Desc> {
        let id = self.op.outputs[0];
        if id == NONE || id as usize >= self.v.tensors.len() {
            return self.fail("output is missing");
        }
        let d = self.desc(id);
        self.need_f32(&d, "output")?;
        Ok(d)
    }

    /// A required data input of a data-movement op: F32 or I8.
    pub fn input_movable(&self, slot: usize, role: &str) -> Result<Desc> {
        let Some(d) = self.input(slot) else { return self.fail(format!("input {slot} ({role}) is missing")) };
        if !matches!(d.dtype, DType::F32 | DType::I8) {
            return self.unsupported(format!(
                "{role} {} is {:?}; F32 or I8 expected",
                self.v.tensor_label(d.id),
                d.dtype
            ));
        }
        Ok(d)
    }

    /// The output, which must have `x`'s dtype and quantization (data-movement ops).
    pub fn output_like(&self, x: &Desc) -> Result<Desc> {
        let id = self.op.outputs[0];
        if id == NONE || id as usize >= self.v.tensors.len() {
            return self.fail("output is missing");
        }
        let d = self.desc(id);
        if d.dtype != x.dtype
            || d.rec.quant_scale.to_bits() != x.rec.quant_scale.to_bits()
            || d.rec.quant_zero_point != x.rec.quant_zero_point
        {
            return self.fail(format!(
                "output {} ({:?}, scale {}, zero point {}) differs from input {} ({:?}, scale {}, zero point {}) in type or quantization",
                self.v.tensor_label(d.id),
                d.dtype,
                d.rec.quant_scale,
                d.rec.quant_zero_point,
                self.v.tensor_label(x.id),
                x.dtype,
                x.rec.quant_scale,
                x.rec.quant_zero_point
            ));
        }
        Ok(d)
    }

    pub fn need_f32(&self, d: &Desc, role: &str) -> Result<()> {
        if d.dtype != DType::F32 {
            return self.unsupported(format!(
                "{role} {} is {:?}; this build runs F32 tensors only",
                self.v.tensor_label(d.id),
                d.dtype
            ));
        }
        Ok(())
    }

    pub fn need_layout(&self, d: &Desc, role: &str, ok: &[Layout]) -> Result<()> {
        if !ok.contains(&d.layout) {
            return self.fail(format!(
                "{role} {} has layout {:?}, expected {ok:?}",
                self.v.tensor_label(d.id),
                d.layout
            ));
        }
        Ok(())
    }

    /// Every `(value, field name)` must be at least 1 (kernel sizes, strides, dilations, groups).
    pub fn need_positive(&self, fields: &[(u32, &str)]) -> Result<()> {
        match fields.iter().find(|(v, _)| *v == 0) {
            Some((_, name)) => self.fail(format!("{name} is 0 (must be >= 1)")),
            None => Ok(()),
        }
    }

    pub fn need_rank(&self, d: &Desc, role: &str, rank: usize) -> Result<()> {
        if d.dims.len() != rank {
            return self.fail(format!(
                "{role} {} has rank {} (dims {:?}), expected {rank}",
                self.v.tensor_label(d.id),
                d.dims.len(),
                d.dims
            ));
        }
        Ok(())
    }

    pub fn need_dims(&self, d: &Desc, role: &str, dims: &[usize]) -> Result<()> {
        if d.dims != dims {
            return self.fail(format!("{role} {} has dims {:?}, expected {dims:?}", self.v.tensor_label(d.id), d.dims));
        }
        Ok(())
    }

    pub fn need_constant(&self, d: &Desc, role: &str) -> Result<()> {
        if !d.constant {
            return self.fail(format!("{role} {} must be a constant", self.v.tensor_label(d.id)));
        }
        Ok(())
    }

    /// The op's params as `P`; the words past `P` must be zero.
    pub fn params<P: Pod>(&self) -> Result<P> {
        let bytes: &[u8] = bytemuck::cast_slice(&self.op.params);
        let n = size_of::<P>();
        if bytes[n..].iter().any(|&b| b != 0) {
            return self.fail(format!("param words past the {} bytes of its params are not zero", n));
        }
        Ok(bytemuck::pod_read_unaligned(&bytes[..n]))
    }

    /// A fused activation from `(act, min, max)`.
    pub fn act(&self, act: u32, lo: f32, hi: f32) -> Result<Act> {
        match act {
            0 => Ok(Act::None),
            1 => Ok(Act::Relu),
            2 if lo <= hi => Ok(Act::Clip(lo, hi)),
            2 => self.fail(format!("Clip activation with min {lo} > max {hi} (or NaN)")),
            _ => self.fail(format!("unknown activation kind {act} (0 = none, 1 = relu, 2 = clip)")),
        }
    }

    /// Total payload bytes of the constant inputs.
    pub fn param_bytes(&self) -> u64 {
        (0..4).filter_map(|s| self.input(s)).filter(|d| d.constant).map(|d| d.rec.data_size).sum()
    }

    /// `PreparedOp` with this op's identity filled in.
    pub fn prepared(&self, imp: OpImpl, macs: u64) -> PreparedOp {
        PreparedOp {
            kind: self.kind,
            name: self.v.str(self.op.name).to_owned(),
            inputs: self.op.inputs,
            output: self.op.outputs[0],
            imp,
            macs,
            param_bytes: self.param_bytes(),
        }
    }
}

/// Check op `index` of a file the reader accepted and build its prepared form.
pub fn prepare(v: &FileView, index: usize) -> Result<PreparedOp> {
    let op = &v.ops[index];
    let Some(kind) = OpKind::from_u16(op.kind) else {
        return Err(Error::format(format!("op {index}: unknown kind {}", op.kind), Some(v.op_offset(index))));
    };
    let c = Checker { v, index, op, kind, label: v.op_label(index), at: v.op_offset(index) };
    debug_assert_eq!(OP_PARAM_WORDS * 4, size_of::<[u32; OP_PARAM_WORDS]>());
    check_int8_only_params(&c)?;
    let int8 = c.input(0).is_some_and(|d| d.dtype == DType::I8);
    match kind {
        OpKind::Conv2d if int8 => quant::prepare_conv(&c),
        OpKind::Linear if int8 => quant::prepare_linear(&c),
        OpKind::Conv2d => conv::prepare(&c),
        OpKind::MaxPool2d | OpKind::AvgPool2d => pool::prepare(&c),
        OpKind::GlobalAvgPool => pool::prepare_global(&c),
        OpKind::Linear => linear::prepare(&c),
        OpKind::Add => add::prepare(&c),
        OpKind::Activation => activation::prepare(&c),
        OpKind::ChannelAffine => channel_affine::prepare(&c),
        OpKind::Softmax => softmax::prepare(&c),
        OpKind::Transpose => transpose::prepare(&c),
        OpKind::Slice => slice::prepare(&c),
        OpKind::Pad => pad::prepare(&c),
        OpKind::Copy => copy::prepare(&c),
        OpKind::Quantize => quant::prepare_requantize(&c, true),
        OpKind::Dequantize => quant::prepare_requantize(&c, false),
    }
}

/// The param words that only int8 ops use (format 1.2) must be zero when the op's data input
/// is not int8, so that a float op can never carry silently ignored quantization fields.
fn check_int8_only_params(c: &Checker) -> Result<()> {
    let int8 = c.input(0).is_some_and(|d| d.dtype == DType::I8);
    if int8 {
        return Ok(());
    }
    let words: &[(usize, &str)] = match c.kind {
        OpKind::Conv2d => &[(15, "qmin"), (16, "qmax")],
        OpKind::MaxPool2d | OpKind::AvgPool2d => &[(11, "mult"), (12, "shift")],
        OpKind::GlobalAvgPool => &[(0, "mult"), (1, "shift")],
        OpKind::Linear | OpKind::Activation | OpKind::ChannelAffine => &[(3, "qmin"), (4, "qmax")],
        OpKind::Add => &[(16, "m_a"), (17, "m_b"), (18, "shift"), (19, "qmin"), (20, "qmax")],
        _ => &[],
    };
    match words.iter().find(|(w, _)| c.op.params[*w] != 0) {
        Some((_, name)) => c.fail(format!("int8-only param {name} is set on an op whose input is not int8")),
        None => Ok(()),
    }
}

/// `rank` field of Transpose/Slice/Pad/Add params: must equal the tensors' rank and be <= 6.
pub(crate) fn check_rank_param(c: &Checker, rank: u32, want: usize) -> Result<usize> {
    if rank as usize != want || want > MAX_RANK {
        return c.fail(format!("params rank is {rank}, but the tensors have rank {want}"));
    }
    Ok(want)
}
