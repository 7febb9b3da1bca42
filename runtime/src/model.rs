//! A loaded, validated model: the file bytes (mapped, static or owned), the prepared ops and
//! the arena plan. Immutable and shared by any number of [`crate::Session`]s.

use crate::error::{Error, Result};
use crate::format::reader::{self, FileView};
use crate::format::{DType, Layout, PreprocessPreset, TensorKind, ALIGN, NONE};
use crate::ops::{self, PreparedOp};
use crate::plan::{self, Interval};
use crate::session::{Options, Session};
use std::path::Path;

/// 64 bytes, 64-byte aligned: the unit of owned model buffers.
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Aligned64([u8; 64]);

/// Model bytes copied into a 64-byte aligned buffer.
struct AlignedBuf {
    blocks: Vec<Aligned64>,
    len: usize,
}

impl AlignedBuf {
    fn copy_of(bytes: &[u8]) -> Self {
        let mut blocks = vec![Aligned64([0; 64]); bytes.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<Aligned64, u8>(&mut blocks)[..bytes.len()].copy_from_slice(bytes);
        AlignedBuf { blocks, len: bytes.len() }
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<Aligned64, u8>(&self.blocks)[..self.len]
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    Static(&'static [u8]),
    /// A caller's `Vec` that happens to be 64-byte aligned: kept as is.
    Vec(Vec<u8>),
    Owned(AlignedBuf),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Static(s) => s,
            Storage::Vec(v) => v,
            Storage::Owned(b) => b.bytes(),
        }
    }
}

/// Bytes for [`Model::from_bytes`]: a `&'static [u8]` (e.g. `include_bytes!`, used in place
/// when 64-byte aligned) or an owned `Vec<u8>`.
pub enum ModelBytes {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl From<&'static [u8]> for ModelBytes {
    fn from(b: &'static [u8]) -> Self {
        ModelBytes::Static(b)
    }
}

impl<const N: usize> From<&'static [u8; N]> for ModelBytes {
    fn from(b: &'static [u8; N]) -> Self {
        ModelBytes::Static(b)
    }
}

impl From<Vec<u8>> for ModelBytes {
    fn from(b: Vec<u8>) -> Self {
        ModelBytes::Owned(b)
    }
}

/// Logical order of the model input's dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputLayout {
    Nchw,
    Nhwc,
}

/// Numeric precision the model was converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
    Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
            Precision::Mixed => "mixed",
        }
    }
}

/// How to turn an image into the model input (from the file's metadata).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    pub preset: PreprocessPreset,
    /// Resize so the shorter side is this, then centre-crop to `height x width`; 0 = resize
    /// straight to `height x width`.
    pub resize_shorter: u32,
    /// Model input height and width.
    pub height: u32,
    pub width: u32,
    pub channel_order_bgr: bool,
    /// Pixel values 0..255 are multiplied by `scale`, then `(v - mean[c]) / std[c]`.
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Model metadata and sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub source: String,
    pub producer: String,
    pub precision: Precision,
    pub labels: Vec<String>,
    /// Logical input dims in `input_layout` order.
    pub input_dims: [usize; 4],
    pub input_layout: InputLayout,
    pub preprocess: Preprocess,
    pub output_shape: Vec<usize>,
    pub file_size: u64,
    /// Bytes of constant payloads (weights, biases, ...).
    pub param_bytes: u64,
    /// Bytes of the activation arena one session allocates.
    pub arena_bytes: u64,
    /// Bytes the model itself allocated at load, beyond the mapped file: int8 Winograd
    /// weights transformed for this CPU's kernels (0 when none; see `docs/DECISIONS.md`).
    pub heap_bytes: u64,
}

/// One op, for display (`resq inspect`) and profiling.
#[derive(Clone, Debug, PartialEq)]
pub struct OpInfo {
    /// Op kind name, e.g. "Conv2d".
    pub kind: &'static str,
    /// Source node name(s).
    pub name: String,
    /// Physical dims of each present input (data, weights, ...), in slot order.
    pub input_shapes: Vec<Vec<usize>>,
    pub output_shapes: Vec<Vec<usize>>,
    pub param_bytes: u64,
    /// Multiply-accumulates per run (conv, linear, channel affine; 0 for others).
    pub macs: u64,
    /// The algorithm that runs it: "direct", "gemm-n16" (packed GEMM / im2col),
    /// "winograd-f43", "int8-gemm", "int8-wino-f23" (int8 Winograd F(2x2,3x3), AVX2 sessions),
    /// or "-" for ops with a single implementation.
    pub algo: &'static str,
}

/// Where an op input comes from at run time.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Src {
    None,
    /// Byte offset and byte length in the session arena.
    Arena {
        off: usize,
        len: usize,
    },
    /// Byte offset and byte length in the model bytes.
    Const {
        off: usize,
        len: usize,
    },
}

/// One tensor of the model, for tools (`resq inspect`, calibration, per-layer reports).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor id (index in the file's tensor table).
    pub id: u32,
    pub name: String,
    /// A constant (weights) rather than an activation.
    pub constant: bool,
    pub dtype: DType,
    pub layout: Layout,
    /// Physical dims of `layout`.
    pub dims: Vec<usize>,
    /// Quantization of int8 activations (0 / 0 otherwise).
    pub scale: f32,
    pub zero_point: i32,
}

/// One row of the file's per-layer quantization report (LAYER_REPORT section).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// Layer (op) name, or "output".
    pub name: String,
    /// Op index, or `None` for the model output row.
    pub op: Option<usize>,
    pub precision: Precision,
    /// SQNR of the layer's output against fp32 (dB).
    pub sqnr_db: f32,
    /// Relative L2 error against fp32.
    pub rel_l2: f32,
    /// Output row: top-1 agreement with fp32 on held-out images (0..1); NaN for layers.
    pub agreement: f32,
}

/// Where every activation lives in a session arena, and each op's resolved sources.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) srcs: Vec<[Src; 4]>,
    /// Output (byte offset, byte length) per op.
    pub(crate) dsts: Vec<(usize, usize)>,
    /// Graph input / output (byte offset, byte length) in the arena.
    pub(crate) input_slot: (usize, usize),
    pub(crate) output_slot: (usize, usize),
    /// (byte offset, byte length) of every tensor that has an arena slot.
    pub(crate) slots: Vec<Option<(usize, usize)>>,
    /// Arena size in bytes (a multiple of 64).
    pub(crate) arena_bytes: usize,
    /// Tensor id of the graph output.
    pub(crate) output_id: u32,
}

/// A validated model. See the crate docs for an example.
pub struct Model {
    storage: Storage,
    info: ModelInfo,
    op_infos: Vec<OpInfo>,
    tensor_infos: Vec<TensorInfo>,
    layer_report: Vec<LayerReport>,
    pub(crate) ops: Vec<PreparedOp>,
    /// The arena plan sessions use: activations share memory when their lifetimes allow.
    pub(crate) parts: Parts,
    /// The plan of sessions with [`Options::keep_intermediates`]: every activation has its own
    /// memory, so all of them can be read after a run.
    pub(crate) parts_kept: Parts,
}

// Sessions on many threads share one `&Model`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
};

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.info.name).field("ops", &self.ops.len()).finish_non_exhaustive()
    }
}

impl Model {
    /// Map a `.resq` file and validate it completely.
    ///
    /// # Safety contract (memory map)
    /// The file is memory-mapped (memmap2): it **must not be modified or truncated** by any
    /// process while the `Model` (and any session) lives; doing so is undefined behaviour as
    /// far as Rust is concerned (the bytes behind `&[u8]` would change). Converters write
    /// models atomically (temp file + rename), which never modifies a mapped file. Use
    /// [`Model::from_bytes`] with `std::fs::read` if the file may change.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Err(Error::format("file is empty", Some(0)).with_path(path));
        }
        // SAFETY: memmap2 requires that the mapped file is not modified while mapped; this is
        // the documented contract of `Model::open` (see above), and the map is only read.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Model::build(Storage::Mmap(map)).map_err(|e| e.with_path(path))
    }

    /// Validate a model held in memory. A `&'static [u8]` or `Vec<u8>` whose data is 64-byte
    /// aligned is used in place; other bytes are copied once into a 64-byte aligned buffer
    /// (`include_bytes!` and `Vec` give no alignment guarantee).
    pub fn from_bytes(bytes: impl Into<ModelBytes>) -> Result<Model> {
        let aligned = |b: &[u8]| (b.as_ptr() as usize) % ALIGN as usize == 0;
        let storage = match bytes.into() {
            ModelBytes::Static(b) if aligned(b) => Storage::Static(b),
            ModelBytes::Static(b) => Storage::Owned(AlignedBuf::copy_of(b)),
            ModelBytes::Owned(v) if aligned(&v) => Storage::Vec(v),
            ModelBytes::Owned(v) => Storage::Owned(AlignedBuf::copy_of(&v)),
        };
        Model::build(storage)
    }

    /// Like [`Model::open`], reading the file into memory instead of mapping it.
    pub fn read(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Model::from_bytes(bytes).map_err(|e| e.with_path(path))
    }

    fn build(storage: Storage) -> Result<Model> {
        let bytes = storage.bytes();
        let v = reader::read(bytes)?;
        let ops = (0..v.ops.len()).map(|i| ops::prepare(&v, i)).collect::<Result<Vec<_>>>()?;
        let parts = plan_model(&v, &ops, false)?;
        let parts_kept = plan_model(&v, &ops, true)?;
        let info = model_info(&v, &ops, parts.arena_bytes);
        let tensor_infos = (0..v.tensors.len() as u32)
            .map(|id| {
                let t = &v.tensors[id as usize];
                TensorInfo {
                    id,
                    name: v.str(t.name).to_owned(),
                    constant: t.kind == TensorKind::Constant as u8,
                    // The reader has validated these enums.
                    dtype: DType::from_u8(t.dtype).unwrap_or(DType::F32),
                    layout: Layout::from_u8(t.layout).unwrap_or(Layout::RowMajor),
                    dims: v.dims(id),
                    scale: t.quant_scale,
                    zero_point: t.quant_zero_point,
                }
            })
            .collect();
        let layer_report = reader::layer_report(&v)?
            .iter()
            .map(|r| LayerReport {
                name: v.str(r.name).to_owned(),
                op: (r.op != NONE).then_some(r.op as usize),
                precision: precision_of(r.precision),
                sqnr_db: r.sqnr_db,
                rel_l2: r.rel_l2,
                agreement: r.agreement,
            })
            .collect();
        let op_infos = ops
            .iter()
            .map(|op| OpInfo {
                kind: op.kind.name(),
                name: op.name.clone(),
                input_shapes: op.inputs.iter().filter(|&&t| t != NONE).map(|&t| v.dims(t)).collect(),
                output_shapes: vec![v.dims(op.output)],
                param_bytes: op.param_bytes,
                macs: op.macs,
                algo: op.imp.algo_name(),
            })
            .collect();
        drop(v);
        Ok(Model { storage, info, op_infos, tensor_infos, layer_report, ops, parts, parts_kept })
    }

    /// Start an inference context (allocates its arena and thread pool).
    pub fn session(&self, options: Options) -> Result<Session<'_>> {
        Session::new(self, options)
    }

    pub fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    pub fn ops(&self) -> Vec<OpInfo> {
        self.op_infos.clone()
    }

    /// Every tensor of the file, in id order.
    pub fn tensors(&self) -> Vec<TensorInfo> {
        self.tensor_infos.clone()
    }

    /// The tensor with this id.
    pub fn tensor_info(&self, id: u32) -> Option<&TensorInfo> {
        self.tensor_infos.get(id as usize)
    }

    /// The converter's per-layer quantization report (empty for float models).
    pub fn layer_report(&self) -> &[LayerReport] {
        &self.layer_report
    }

    /// Number of f32 values [`Session::run`] expects.
    pub fn input_len(&self) -> usize {
        self.parts.input_slot.1 / 4
    }

    /// Number of f32 values [`Session::run`] returns.
    pub fn output_len(&self) -> usize {
        self.parts.output_slot.1 / 4
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// A constant's payload (validated aligned and in bounds at load).
    #[inline]
    pub(crate) fn const_bytes(&self, off: usize, len: usize) -> &[u8] {
        &self.storage.bytes()[off..off + len]
    }
}

/// Lifetimes of every activation (step 0 = input copy, step i+1 = op i), arena offsets, and
/// each op's resolved sources. With `keep_all`, every activation lives for the whole run (no
/// two share memory).
fn plan_model(v: &FileView, ops: &[PreparedOp], keep_all: bool) -> Result<Parts> {
    let nt = v.tensors.len();
    let steps_end = ops.len() + 1;
    let mut first = vec![usize::MAX; nt];
    let mut last = vec![0usize; nt];
    let input = v.meta.input_tensor as usize;
    first[input] = 0;
    for (i, op) in ops.iter().enumerate() {
        for &t in op.inputs.iter().filter(|&&t| t != NONE) {
            if v.tensors[t as usize].kind == TensorKind::Activation as u8 {
                last[t as usize] = last[t as usize].max(i + 1);
            }
        }
        first[op.output as usize] = i + 1;
    }
    last[v.meta.output_tensor as usize] = steps_end;
    let ids: Vec<usize> = (0..nt).filter(|&t| first[t] != usize::MAX).collect();
    let mut intervals = Vec::with_capacity(ids.len());
    // Sizes in u64, and their sum bounds every offset the planner can produce: on 32-bit
    // targets (armv7) the shapes a file declares could otherwise overflow usize here or there.
    let too_big = || Error::format("the activations need more memory than this target can address", None);
    let mut total = 0u64;
    for &t in &ids {
        let rec = &v.tensors[t];
        let elem = DType::from_u8(rec.dtype).map_or(4, |d| d.size()) as u64;
        let bytes = reader::element_count(rec).unwrap_or(0).saturating_mul(elem);
        total = total.saturating_add(bytes.next_multiple_of(ALIGN));
        let size = usize::try_from(bytes).map_err(|_| too_big())?;
        let (a, b) = if keep_all { (0, steps_end) } else { (first[t], last[t].max(first[t])) };
        intervals.push(Interval { size, first: a, last: b });
    }
    if total > isize::MAX as u64 {
        return Err(too_big());
    }
    let p = plan::plan(&intervals, ALIGN as usize);
    let mut slot = vec![None; nt];
    for (k, &t) in ids.iter().enumerate() {
        slot[t] = Some((p.offsets[k], intervals[k].size));
    }
    let mut srcs = Vec::with_capacity(ops.len());
    let mut dsts = Vec::with_capacity(ops.len());
    for op in ops {
        let mut s = [Src::None; 4];
        for (k, &t) in op.inputs.iter().enumerate() {
            if t == NONE {
                continue;
            }
            let rec = &v.tensors[t as usize];
            s[k] = if rec.kind == TensorKind::Constant as u8 {
                let (o, n) = (rec.data_offset as usize, rec.data_size as usize);
                let elem = DType::from_u8(rec.dtype).map_or(4, |d| d.size());
                if o % elem != 0 || n % elem != 0 || (v.bytes.as_ptr() as usize + o) % elem != 0 {
                    return Err(Error::format(
                        format!("{}: payload is not {elem}-byte aligned/sized", v.tensor_label(t)),
                        Some(v.tensor_offset(t)),
                    ));
                }
                Src::Const { off: o, len: n }
            } else {
                match slot[t as usize] {
                    Some((off, len)) => Src::Arena { off, len },
                    None => {
                        return Err(Error::format(format!("{} is read but never produced", v.tensor_label(t)), None))
                    }
                }
            };
        }
        srcs.push(s);
        dsts.push(slot[op.output as usize].unwrap_or((0, 0)));
    }
    let missing = || Error::format("graph input/output has no arena slot", None);
    Ok(Parts {
        srcs,
        dsts,
        input_slot: slot[input].ok_or_else(missing)?,
        output_slot: slot[v.meta.output_tensor as usize].ok_or_else(missing)?,
        slots: slot,
        arena_bytes: p.size,
        output_id: v.meta.output_tensor,
    })
}

fn precision_of(p: u32) -> Precision {
    match p {
        1 => Precision::Fp16,
        2 => Precision::Int8,
        3 => Precision::Mixed,
        _ => Precision::Fp32,
    }
}

fn model_info(v: &FileView, ops: &[PreparedOp], arena_bytes: usize) -> ModelInfo {
    let m = &v.meta;
    let labels = v.str(m.labels);
    let labels: Vec<String> =
        if labels.is_empty() { Vec::new() } else { labels.split('\n').map(str::to_owned).collect() };
    let input_layout = if m.input_layout == 1 { InputLayout::Nhwc } else { InputLayout::Nchw };
    let d = m.input_dims;
    let (height, width) = match input_layout {
        InputLayout::Nchw => (d[2], d[3]),
        InputLayout::Nhwc => (d[1], d[2]),
    };
    let preset = match m.preprocess {
        1 => PreprocessPreset::Imagenet,
        2 => PreprocessPreset::Cifar,
        3 => PreprocessPreset::Raw255,
        _ => PreprocessPreset::None,
    };
    let precision = precision_of(m.precision);
    let param_bytes =
        v.tensors.iter().filter(|t| t.kind == TensorKind::Constant as u8).map(|t| t.data_size).sum::<u64>();
    let heap_bytes = ops
        .iter()
        .map(|op| match &op.imp {
            crate::ops::OpImpl::QConv(c) => c.wino.as_ref().map_or(0, |w| 2 * w.0.len() as u64),
            _ => 0,
        })
        .sum();
    ModelInfo {
        name: v.str(m.name).to_owned(),
        source: v.str(m.source).to_owned(),
        producer: v.str(m.producer).to_owned(),
        precision,
        labels,
        input_dims: d.map(|x| x as usize),
        input_layout,
        preprocess: Preprocess {
            preset,
            resize_shorter: m.resize_shorter,
            height,
            width,
            channel_order_bgr: m.channel_order == 1,
            scale: m.scale,
            mean: m.mean,
            std: m.std,
        },
        output_shape: v.dims(m.output_tensor),
        file_size: v.bytes.len() as u64,
        param_bytes,
        arena_bytes: arena_bytes as u64,
        heap_bytes,
    }
}
