//! The on-disk records of a `.resq` file (format version 1.2), byte for byte.
//!
//! Every record is `#[repr(C)]`, little-endian, `bytemuck::Pod` and has no implicit padding,
//! so a record is read straight from the mapped file with `bytemuck::try_from_bytes` /
//! `try_cast_slice` after its byte range has been validated. `docs/FORMAT.md` documents the
//! same layout in prose; a change here is a format change (bump the version there and here).
//!
//! File layout (all offsets absolute, from the first byte of the file):
//!
//! ```text
//! [Header 64 B][section table: section_count x SectionEntry 32 B][pad to 64]
//! [section][pad to 64][section][pad to 64]...
//! ```
//!
//! Every section starts at a multiple of [`ALIGN`]; inside the DATA section every constant
//! tensor's payload starts at a multiple of [`ALIGN`] too, so weights are used in place from
//! the map. The file size is a multiple of [`ALIGN`].

use bytemuck::{Pod, Zeroable};

/// `"RESQ"`, a NUL, CR LF and ^Z: catches text-mode transfers and truncating tools.
pub const MAGIC: [u8; 8] = *b"RESQ\0\r\n\x1a";
/// A reader accepts files of its own major version and any minor version up to its own.
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 2;
/// Alignment of every section and every constant payload, in bytes.
pub const ALIGN: u64 = 64;
/// Maximum tensor rank.
pub const MAX_RANK: usize = 6;
/// "No tensor" in an op's input/output list and in tensor-id fields.
pub const NONE: u32 = u32::MAX;

/// The file header, at offset 0. 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    pub version_major: u16,
    pub version_minor: u16,
    /// `size_of::<Header>()` = 64.
    pub header_size: u32,
    /// Feature flags; no flag is defined in 1.0, so it must be 0.
    pub flags: u64,
    /// Total file size in bytes; must equal the length of the file.
    pub file_size: u64,
    /// Offset of the section table; must be `header_size`.
    pub section_table_offset: u64,
    /// Number of [`SectionEntry`] records in the table.
    pub section_count: u32,
    /// `size_of::<SectionEntry>()` = 32.
    pub section_entry_size: u32,
    /// [`super::checksum`] of the whole file with this field read as 0.
    pub checksum: u64,
    /// Must be zero.
    pub reserved: [u8; 8],
}

/// One entry of the section table. 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SectionEntry {
    /// A [`SectionKind`] value; each kind appears at most once.
    pub kind: u32,
    /// Size of one record for table sections (META, TENSORS, OPS, LAYER_REPORT);
    /// 1 for byte blobs (STRINGS, DATA).
    pub record_size: u32,
    /// Absolute offset, a multiple of [`ALIGN`].
    pub offset: u64,
    /// Size in bytes = `count * record_size`.
    pub size: u64,
    /// Number of records (bytes for blobs).
    pub count: u64,
}

/// Section kinds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// Exactly one [`MetaRecord`].
    Meta = 1,
    /// UTF-8 string blob referenced by [`StrRef`]s.
    Strings = 2,
    /// [`TensorRecord`] table; a tensor's id is its index here.
    Tensors = 3,
    /// [`OpRecord`] table, in execution order.
    Ops = 4,
    /// Constant payloads, each at a multiple of [`ALIGN`].
    Data = 5,
    /// Per-layer quantization report (reserved for int8; optional).
    LayerReport = 6,
}

impl SectionKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Meta,
            2 => Self::Strings,
            3 => Self::Tensors,
            4 => Self::Ops,
            5 => Self::Data,
            6 => Self::LayerReport,
            _ => return None,
        })
    }
}

/// A string in the STRINGS section: `len` bytes of UTF-8 at `offset` (relative to the
/// section start). `len == 0` is the empty string (offset then ignored, must be 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct StrRef {
    pub offset: u32,
    pub len: u32,
}

/// Element types.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32 = 1,
    F16 = 2,
    I8 = 3,
    U8 = 4,
    I32 = 5,
}

impl DType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::F32,
            2 => Self::F16,
            3 => Self::I8,
            4 => Self::U8,
            5 => Self::I32,
            _ => return None,
        })
    }
    pub fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F16 => 2,
            Self::I8 | Self::U8 => 1,
        }
    }
}

/// How a tensor's elements are laid out in memory. `dims` in a [`TensorRecord`] are always
/// the *physical* dims, outermost first, of the layout named here.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Plain row-major over `dims` (the ONNX logical order). Linear weights are `[N, K]`.
    RowMajor = 0,
    /// A rank-4 activation whose logical (ONNX) shape is NCHW, stored as `dims = [N, H, W, C]`.
    Nhwc = 1,
    /// Convolution weights `dims = [O, KH, KW, I/groups]`, row-major.
    Ohwi = 2,
    /// GEMM weights packed in panels of 16 output channels: `dims = [O, KH, KW, I/groups]`
    /// (logical), bytes `[groups][ceil(O_g/16)][KH*KW*I_g][16]`, zero padded. Linear weights
    /// `dims = [N, K]` (since 1.1): the 1x1, one-group case.
    PackedN16 = 3,
    /// 3x3 stride-1 conv weights in the Winograd F(4x4,3x3) domain (`G·g·Gᵀ`, 6x6 per filter),
    /// `dims = [O, 3, 3, I]` (logical; groups must be 1), bytes `[36][ceil(O/16)][I][16]`, zero
    /// padded: for each of the 36 transform positions a PackedN16 GEMM operand (issue 3).
    WinogradF43N16 = 4,
    /// Int8 GEMM weights (since 1.2): `dims = [O, KH, KW, I/groups]` (logical; Linear `[N, K]`),
    /// bytes `[groups][ceil(O_g/16)][ceil(K/4)][16][4]`, `K = KH*KW*I_g` in (kh, kw, i) order,
    /// zero padded: element (o, k) of group g at `((g*P + o/16)*K4 + k/4)*64 + (o%16)*4 + k%4`.
    PackedN16K4 = 5,
}

impl Layout {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::RowMajor,
            1 => Self::Nhwc,
            2 => Self::Ohwi,
            3 => Self::PackedN16,
            4 => Self::WinogradF43N16,
            5 => Self::PackedN16K4,
            _ => return None,
        })
    }
}

/// Tensor kinds.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// Produced by an op (or the graph input) at run time; lives in the session arena.
    Activation = 0,
    /// Constant with a payload in the DATA section.
    Constant = 1,
}

/// One tensor. 72 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct TensorRecord {
    pub name: StrRef,
    /// [`TensorKind`].
    pub kind: u8,
    /// [`DType`].
    pub dtype: u8,
    /// [`Layout`].
    pub layout: u8,
    /// Number of used entries of `dims`, 0..=[`MAX_RANK`].
    pub rank: u8,
    /// No flag is defined in 1.0: must be 0.
    pub flags: u32,
    /// Physical dims; entries at and past `rank` must be 0. Every used dim is >= 1.
    pub dims: [u32; MAX_RANK],
    /// Constants: absolute offset of the payload, a multiple of [`ALIGN`], inside DATA.
    /// Activations: 0.
    pub data_offset: u64,
    /// Constants: payload size in bytes, exactly what `dtype`, `layout` and `dims` imply.
    /// Activations: 0.
    pub data_size: u64,
    /// Quantized tensors: scale; otherwise 0.
    pub quant_scale: f32,
    /// Quantized tensors: zero point; otherwise 0.
    pub quant_zero_point: i32,
    /// Per-channel quantization: id of an F32 tensor of scales; otherwise [`NONE`].
    pub quant_channel_scales: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// Operator kinds. Each op's inputs, outputs and params are documented on its params struct
/// and in `docs/FORMAT.md`.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Conv2d = 1,
    MaxPool2d = 2,
    AvgPool2d = 3,
    GlobalAvgPool = 4,
    Linear = 5,
    Add = 6,
    Activation = 7,
    ChannelAffine = 8,
    Softmax = 9,
    Transpose = 10,
    Slice = 11,
    Pad = 12,
    Copy = 13,
    /// F32 -> I8 (since 1.2).
    Quantize = 14,
    /// I8 -> F32 (since 1.2).
    Dequantize = 15,
}

impl OpKind {
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Conv2d,
            2 => Self::MaxPool2d,
            3 => Self::AvgPool2d,
            4 => Self::GlobalAvgPool,
            5 => Self::Linear,
            6 => Self::Add,
            7 => Self::Activation,
            8 => Self::ChannelAffine,
            9 => Self::Softmax,
            10 => Self::Transpose,
            11 => Self::Slice,
            12 => Self::Pad,
            13 => Self::Copy,
            14 => Self::Quantize,
            15 => Self::Dequantize,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Conv2d => "Conv2d",
            Self::MaxPool2d => "MaxPool2d",
            Self::AvgPool2d => "AvgPool2d",
            Self::GlobalAvgPool => "GlobalAvgPool",
            Self::Linear => "Linear",
            Self::Add => "Add",
            Self::Activation => "Activation",
            Self::ChannelAffine => "ChannelAffine",
            Self::Softmax => "Softmax",
            Self::Transpose => "Transpose",
            Self::Slice => "Slice",
            Self::Pad => "Pad",
            Self::Copy => "Copy",
            Self::Quantize => "Quantize",
            Self::Dequantize => "Dequantize",
        }
    }
}

/// Number of `u32` words of op parameters.
pub const OP_PARAM_WORDS: usize = 24;

/// One op. 136 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct OpRecord {
    /// [`OpKind`].
    pub kind: u16,
    /// No flag is defined in 1.0: must be 0.
    pub flags: u16,
    pub n_inputs: u8,
    pub n_outputs: u8,
    /// Must be zero.
    pub reserved: u16,
    /// Name of the source node(s), for messages and `resq inspect`.
    pub name: StrRef,
    /// Tensor ids; entries at and past `n_inputs` are [`NONE`]; an optional input inside
    /// `n_inputs` may be [`NONE`] where the op says so.
    pub inputs: [u32; 4],
    /// Tensor ids; entries at and past `n_outputs` are [`NONE`].
    pub outputs: [u32; 2],
    /// Op parameters: one of the `*Params` structs below, zero-extended to 24 words.
    pub params: [u32; OP_PARAM_WORDS],
}

/// Fused activation, as `act` in the params structs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActKind {
    None = 0,
    Relu = 1,
    /// `min(max(x, act_min), act_max)`.
    Clip = 2,
}

/// Conv2d: inputs `[x, weight, bias | NONE, residual | NONE]`, outputs `[y]`.
/// `x`, `y`, `residual`: F32 Nhwc activations; `y = act(conv(x, w) + bias + residual)`.
/// `weight`: constant F32, layout Ohwi `[O, KH, KW, I/groups]` or PackedN16.
/// `bias`: constant F32 RowMajor `[O]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ConvParams {
    pub kernel_h: u32,
    pub kernel_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub pad_bottom: u32,
    pub pad_right: u32,
    pub dilation_h: u32,
    pub dilation_w: u32,
    pub groups: u32,
    /// [`ActKind`].
    pub act: u32,
    pub act_min: f32,
    pub act_max: f32,
    /// Algorithm chosen at convert time, and the weight layout it requires:
    /// 0 = direct (Ohwi), 1 = packed GEMM / implicit GEMM (PackedN16),
    /// 2 = Winograd F(4x4,3x3) (WinogradF43N16; 3x3, stride 1, dilation 1, groups 1),
    /// 3 = int8 packed GEMM (PackedN16K4; `x` I8, since 1.2).
    pub algo: u32,
    /// Int8 only (since 1.2): the fused activation as a clamp in the output's quantized
    /// domain, `-128 <= qmin <= qmax <= 127`. Must be 0 for F32 convs.
    pub qmin: i32,
    pub qmax: i32,
}

/// MaxPool2d / AvgPool2d: inputs `[x]`, outputs `[y]`, both F32 Nhwc. Output H/W are the
/// output tensor's dims (ceil mode is resolved by the converter into those dims).
/// AvgPool: the divisor is the number of window taps inside the unpadded input, or, with
/// `count_include_pad`, inside the padded input (`H + pad_top + pad_bottom` etc.).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PoolParams {
    pub kernel_h: u32,
    pub kernel_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub pad_bottom: u32,
    pub pad_right: u32,
    pub dilation_h: u32,
    pub dilation_w: u32,
    pub count_include_pad: u32,
    /// Int8 AvgPool2d only (since 1.2): `s_x / s_y ≈ mult * 2^-shift`; 0 otherwise.
    pub mult: i32,
    pub shift: u32,
}

/// GlobalAvgPool params (since 1.2; all zero for F32): int8 `s_x / s_y ≈ mult * 2^-shift`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GlobalPoolParams {
    pub mult: i32,
    pub shift: u32,
}

/// GlobalAvgPool: inputs `[x]` F32 Nhwc `[N,H,W,C]`, outputs `[y]` F32 Nhwc `[N,1,1,C]`.
/// Params [`GlobalPoolParams`] (zero for F32).
///
/// Linear: inputs `[x, weight, bias | NONE]`, outputs `[y]`. `x` F32 RowMajor `[M, K]`,
/// `weight` constant F32 `[N, K]` RowMajor or PackedN16, `bias` constant F32 `[N]`, `y` `[M, N]`;
/// `y = act(x · weightᵀ + bias)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ActParams {
    /// [`ActKind`].
    pub act: u32,
    pub act_min: f32,
    pub act_max: f32,
    /// Int8 Linear only (since 1.2): the activation clamp in the quantized domain; 0 otherwise.
    pub qmin: i32,
    pub qmax: i32,
}

/// Add: inputs `[a, b]`, outputs `[y]`, all F32 of the same layout (RowMajor or Nhwc).
/// `y[i] = act(a[off_a(i)] + b[off_b(i)])` where for the physical index `i` of `y`,
/// `off_x(i) = sum_d i_d * x_strides[d]` (stride 0 on broadcast dims). `rank` = y's rank.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct AddParams {
    pub act: u32,
    pub act_min: f32,
    pub act_max: f32,
    pub rank: u32,
    pub a_strides: [u32; MAX_RANK],
    pub b_strides: [u32; MAX_RANK],
    /// Int8 only (since 1.2; 0 for F32): `t = (a - z_a)*m_a + (b - z_b)*m_b`,
    /// `y = clamp(sra_round(t, shift) + z_y, qmin, qmax)`.
    pub m_a: i32,
    pub m_b: i32,
    pub shift: u32,
    pub qmin: i32,
    pub qmax: i32,
}

/// Activation: inputs `[x]`, outputs `[y]`, same shape and layout: params [`ActParams`].
///
/// ChannelAffine: inputs `[x, scale, shift]`, outputs `[y]`; `scale`/`shift` constant F32
/// `[C]` where C is the last physical dim of `x`: `y = act(x * scale[c] + shift[c])`;
/// params [`ActParams`].
///
/// Softmax: inputs `[x]`, outputs `[y]`, RowMajor; `x` viewed as `[outer, axis_len, inner]`,
/// softmax along the middle axis.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SoftmaxParams {
    pub outer: u32,
    pub axis_len: u32,
    pub inner: u32,
}

/// Transpose: inputs `[x]`, outputs `[y]`; over physical dims, `y.dims[d] = x.dims[perm[d]]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TransposeParams {
    pub rank: u32,
    pub perm: [u32; MAX_RANK],
}

/// Slice: inputs `[x]`, outputs `[y]`; over physical dims,
/// `y[i_0..] = x[start_0 + i_0*step_0, ...]`; `y`'s dims give the extent. Steps may be
/// negative; every index read must lie inside `x` (checked at load).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SliceParams {
    pub rank: u32,
    pub start: [i32; MAX_RANK],
    pub step: [i32; MAX_RANK],
}

/// Pad (constant mode): inputs `[x]`, outputs `[y]`; over physical dims, `x` is placed at
/// offset `before[d]` inside `y`, everything else is `value`. `y.dims[d] >= x.dims[d] + before[d]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct PadParams {
    pub rank: u32,
    pub before: [u32; MAX_RANK],
    pub value: f32,
}

/// Copy (Reshape, Flatten, Identity): inputs `[x]`, outputs `[y]`, same dtype and element
/// count, both RowMajor (or byte-identical layouts); bytes copied as they are. No params.
///
/// Quantize (since 1.2): inputs `[x]` F32, outputs `[y]` I8, same layout and dims, no params:
/// `y = clamp(round_ties_even(x / s_y) + z_y, -128, 127)` (NaN -> `z_y`).
///
/// Dequantize (since 1.2): inputs `[x]` I8, outputs `[y]` F32, no params:
/// `y = (x - z_x) as f32 * s_x`.
///
/// One row of the LAYER_REPORT section (since 1.2). 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct LayerReportRecord {
    /// Layer (op) name, or "output".
    pub name: StrRef,
    /// Op index, or [`NONE`] for the model output row.
    pub op: u32,
    /// 0 = fp32, 1 = fp16, 2 = int8.
    pub precision: u32,
    /// Signal-to-quantization-noise ratio of the layer's output against fp32, in dB.
    pub sqnr_db: f32,
    /// Relative L2 error of the layer's output against fp32.
    pub rel_l2: f32,
    /// Output row: top-1 agreement with fp32 on the held-out images (0..1); NaN for layers.
    pub agreement: f32,
    /// Must be zero.
    pub reserved: u32,
}

/// Preprocessing presets (for display; the fields of [`MetaRecord`] are what is applied).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreprocessPreset {
    /// Input is fed as given; `resq classify` refuses images.
    None = 0,
    /// Short side to 256 (scaled with the input size: `resize_shorter`), centre crop, /255, mean/std.
    Imagenet = 1,
    /// Resize to the input size, /255, mean/std.
    Cifar = 2,
    /// Resize to the input size, raw 0..255 values.
    Raw255 = 3,
}

/// Model metadata: exactly one record in the META section. 160 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct MetaRecord {
    /// Model name.
    pub name: StrRef,
    /// Source file name and format, e.g. "resnet50.onnx (ONNX opset 17, pytorch 2.5)".
    pub source: StrRef,
    /// Converter name and version.
    pub producer: StrRef,
    /// Class labels, one per line (`\n`-separated, no trailing newline); empty if none.
    pub labels: StrRef,
    /// Id of the graph input tensor: F32 RowMajor, logical shape `input_dims`.
    pub input_tensor: u32,
    /// Id of the graph output tensor: F32 RowMajor.
    pub output_tensor: u32,
    /// Logical input shape, NCHW (`input_layout` 0) or NHWC (1).
    pub input_dims: [u32; 4],
    /// 0 = NCHW, 1 = NHWC.
    pub input_layout: u32,
    /// Number of labels (0 if none); when nonzero, equals the output's last dim.
    pub num_labels: u32,
    /// [`PreprocessPreset`].
    pub preprocess: u32,
    /// Resize so the shorter side is this many pixels, then centre-crop to the input H x W;
    /// 0 = resize straight to H x W.
    pub resize_shorter: u32,
    /// 0 = RGB, 1 = BGR channel order.
    pub channel_order: u32,
    /// Pixel values (0..255) are multiplied by `scale`, then `(v - mean[c]) / std[c]`.
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// 0 = fp32, 1 = fp16, 2 = int8, 3 = mixed.
    pub precision: u32,
    /// Must be zero.
    pub reserved: [u32; 13],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn record_sizes_are_the_documented_ones() {
        assert_eq!(size_of::<Header>(), 64);
        assert_eq!(size_of::<SectionEntry>(), 32);
        assert_eq!(size_of::<TensorRecord>(), 72);
        assert_eq!(size_of::<OpRecord>(), 136);
        assert_eq!(size_of::<MetaRecord>(), 160);
        assert_eq!(size_of::<LayerReportRecord>(), 32);
        for s in [
            size_of::<ConvParams>(),
            size_of::<PoolParams>(),
            size_of::<ActParams>(),
            size_of::<AddParams>(),
            size_of::<SoftmaxParams>(),
            size_of::<TransposeParams>(),
            size_of::<SliceParams>(),
            size_of::<PadParams>(),
            size_of::<GlobalPoolParams>(),
        ] {
            assert!(s <= OP_PARAM_WORDS * 4);
        }
    }
}
