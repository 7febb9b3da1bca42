//! resq-convert: converts trained ResNets (ONNX, PyTorch checkpoints, safetensors) into
//! `.resq` files.
//!
//! Pipeline: [`onnx`] (protobuf) -> [`import`] (IR with concrete shapes, constants folded),
//! or [`pytorch`] (checkpoint / safetensors tensors -> the architecture's IR graph)
//! -> [`passes`] (BatchNorm folding, bias / residual / activation fusion) -> [`lower`]
//! (physical layouts, weight packing) -> for fp16 / int8, [`quant`] (calibration on images,
//! int8 / mixed rewrite, per-layer accuracy report) -> `resq::format::FileBuilder` ->
//! [`write_atomic`].
//!
//! ```no_run
//! use resq_convert::{convert_file, write_atomic, ConvertOptions};
//! let bytes = convert_file("resnet20.onnx".as_ref(), &ConvertOptions::default())?;
//! write_atomic("resnet20.resq".as_ref(), &bytes)?;
//! # Ok::<(), resq_convert::ConvertError>(())
//! ```

pub mod error;
pub mod fold;
pub mod import;
pub mod ir;
pub mod lower;
pub mod onnx;
pub mod passes;
pub mod pytorch;
pub mod quant;
pub mod safetensors_reader;

pub use error::{ConvertError, UnsupportedNode};
pub use lower::Packing;
pub use quant::observe::Method as CalibrationMethod;
pub use quant::CalibrationOptions;
pub use resq::format::PreprocessPreset;

use prost::Message;
use resq::format::{empty_meta, FileBuilder};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Weight precision of the written model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    Fp32,
    /// Conv2d / Linear weights stored as IEEE f16 (activations stay f32).
    Fp16,
    /// int8 weights and activations, calibrated on images ([`CalibrationOptions`]); layers
    /// kept in float (`keep_float`, the accuracy budget) make it mixed.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

/// A constant bound to a graph input (`--freeze NAME=FILE`).
#[derive(Clone, Debug, PartialEq)]
pub struct FrozenTensor {
    pub dims: Vec<usize>,
    /// The values as f32 (integer tensors converted).
    pub data: Vec<f32>,
    /// Exact values of an integer tensor (from a TensorProto), used for integer inputs.
    pub ints: Option<Vec<i64>>,
}

impl FrozenTensor {
    pub fn f32(dims: Vec<usize>, data: Vec<f32>) -> Self {
        FrozenTensor { dims, data, ints: None }
    }

    /// Decode a serialized ONNX `TensorProto` (e.g. a test vector `input_1.pb`).
    pub fn from_tensor_proto(bytes: &[u8]) -> Result<Self, ConvertError> {
        let t = onnx::TensorProto::decode(bytes)
            .map_err(|e| ConvertError::Decode { what: "tensor file".into(), detail: e.to_string() })?;
        let name = t.name.clone().unwrap_or_default();
        let (_, dims, data) = import::decode_tensor(&t).map_err(|msg| ConvertError::Tensor { name, msg })?;
        Ok(match data {
            ir::Data::F32(v) => FrozenTensor { dims, data: v, ints: None },
            ir::Data::I64(v) => FrozenTensor { dims, data: v.iter().map(|&x| x as f32).collect(), ints: Some(v) },
        })
    }

    /// Read a `.npy` (float32) or `.pb` (TensorProto) file.
    pub fn from_file(path: &Path) -> Result<Self, ConvertError> {
        let bytes = std::fs::read(path).map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
            let (dims, data) = resq::npy::parse_f32(&bytes)
                .map_err(|msg| ConvertError::Tensor { name: path.display().to_string(), msg })?;
            Ok(FrozenTensor::f32(dims, data))
        } else {
            Self::from_tensor_proto(&bytes).map_err(|e| match e {
                ConvertError::Decode { detail, .. } => {
                    ConvertError::Decode { what: path.display().to_string(), detail }
                }
                other => other,
            })
        }
    }
}

/// Conversion options.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub precision: Precision,
    /// Class labels; their count must equal the output's last dim.
    pub labels: Option<Vec<String>>,
    /// `None`: guessed from the input size (H >= 128: ImageNet, else CIFAR).
    pub preprocess: Option<PreprocessPreset>,
    /// Model name; default: the file stem.
    pub name: Option<String>,
    /// Graph inputs bound to constants.
    pub freeze: Vec<(String, FrozenTensor)>,
    /// Value of a symbolic batch dim.
    pub batch: usize,
    /// Weight layouts: the fast kernels' (default) or the plain reference layouts.
    pub packing: Packing,
    /// Checkpoints only: the architecture (`resnet20`, `resnet50`, ...); `None`: inferred
    /// from the tensor names and shapes.
    pub arch: Option<String>,
    /// Checkpoints only: input height and width; `None`: 32x32 (CIFAR) or 224x224 (ImageNet).
    pub input_size: Option<[usize; 2]>,
    /// int8 calibration, mixed precision and the accuracy report.
    pub calibration: CalibrationOptions,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            precision: Precision::Fp32,
            labels: None,
            preprocess: None,
            name: None,
            freeze: Vec::new(),
            batch: 1,
            packing: Packing::Fast,
            arch: None,
            input_size: None,
            calibration: CalibrationOptions::default(),
        }
    }
}

/// What a conversion did, for the CLI summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub name: String,
    pub source: String,
    /// Ops by kind name.
    pub ops: BTreeMap<&'static str, usize>,
    /// Model parameters (logical element count of the constants).
    pub param_count: usize,
    /// Bytes of the stored weights as the kernels read them (packed layouts, Winograd domain).
    pub param_bytes: usize,
    pub file_size: usize,
    pub preprocess: Option<PreprocessPreset>,
    /// True when the preset was guessed from the input size.
    pub preprocess_guessed: bool,
    pub input_dims: Vec<usize>,
    pub output_dims: Vec<usize>,
    pub stats: ir::Stats,
    pub precision: Precision,
    /// `MetaRecord::precision` written: 0 fp32, 1 fp16, 2 int8, 3 mixed.
    pub precision_code: u32,
    /// Per-layer accuracy against fp32 (int8; fp16 with calibration images), also stored in
    /// the file's LAYER_REPORT section.
    pub report: Option<quant::report::Report>,
    /// Layers kept in float in an int8 model.
    pub kept_float: Vec<String>,
    /// Calibration notes (images used, accuracy-budget steps).
    pub log: Vec<String>,
}

/// Name of a preset as the CLI spells it.
pub fn preset_name(p: PreprocessPreset) -> &'static str {
    match p {
        PreprocessPreset::None => "none",
        PreprocessPreset::Imagenet => "imagenet",
        PreprocessPreset::Cifar => "cifar",
        PreprocessPreset::Raw255 => "raw255",
    }
}

/// Parse a preset name.
pub fn parse_preset(s: &str) -> Option<PreprocessPreset> {
    Some(match s.to_ascii_lowercase().as_str() {
        "none" => PreprocessPreset::None,
        "imagenet" => PreprocessPreset::Imagenet,
        "cifar" | "cifar10" => PreprocessPreset::Cifar,
        "raw255" => PreprocessPreset::Raw255,
        _ => return None,
    })
}

/// Names of the graph inputs that are not initializers, in order (the first is normally the
/// run-time input; the others must be frozen).
pub fn graph_input_names(onnx_bytes: &[u8]) -> Result<Vec<String>, ConvertError> {
    let model = onnx::ModelProto::decode(onnx_bytes)
        .map_err(|e| ConvertError::Decode { what: "input".into(), detail: e.to_string() })?;
    let g = model.graph.unwrap_or_default();
    let inits: std::collections::HashSet<_> = g.initializer.iter().filter_map(|t| t.name.clone()).collect();
    Ok(g.input.iter().filter_map(|i| i.name.clone()).filter(|n| !inits.contains(n)).collect())
}

/// Decode ONNX bytes into a graph ready for lowering (import + passes).
pub fn onnx_to_ir(onnx_bytes: &[u8], opts: &ConvertOptions) -> Result<ir::Graph, ConvertError> {
    let model = onnx::ModelProto::decode(onnx_bytes)
        .map_err(|e| ConvertError::Decode { what: "input".into(), detail: e.to_string() })?;
    if model.graph.is_none() {
        return Err(ConvertError::Decode { what: "input".into(), detail: "it holds no graph".into() });
    }
    let mut g = import::import(&model, opts)?;
    passes::run(&mut g);
    Ok(g)
}

/// Convert ONNX bytes; also returns the summary.
pub fn convert_onnx_bytes_with_summary(
    onnx_bytes: &[u8],
    source_name: &str,
    opts: &ConvertOptions,
) -> Result<(Vec<u8>, Summary), ConvertError> {
    if opts.batch == 0 {
        return Err(ConvertError::Other("batch must be at least 1".into()));
    }
    let g = onnx_to_ir(onnx_bytes, opts)?;
    let file_name = Path::new(source_name).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let source = format!("{file_name} (ONNX opset {}, producer {})", g.opset, g.producer);
    ir_to_file(g, source_name, source, None, opts)
}

/// What the file's metadata says besides the program and the precision.
struct FileMeta {
    name: String,
    source: String,
    labels: Option<Vec<String>>,
    preset: PreprocessPreset,
}

/// Write `prog` with metadata `m`, `MetaRecord::precision` = `precision` (0 fp32, 1 fp16,
/// 2 int8, 3 mixed) and, when given, the LAYER_REPORT section.
fn write_program(
    mut prog: lower::Program,
    m: &FileMeta,
    precision: u32,
    report: Option<&quant::report::Report>,
) -> Result<Vec<u8>, ConvertError> {
    let mut b = FileBuilder::new();
    let ids = prog.emit(&mut b);
    let mut meta = empty_meta();
    meta.name = b.string(&m.name);
    meta.source = b.string(&m.source);
    meta.producer = b.string(&format!("resq-convert {}", env!("CARGO_PKG_VERSION")));
    if let Some(l) = &m.labels {
        meta.labels = b.string(&l.join("\n"));
        meta.num_labels = l.len() as u32;
    }
    meta.input_tensor = ids[prog.input as usize];
    meta.output_tensor = ids[prog.output as usize];
    let d4 = prog.input_dims.map(|d| u32::try_from(d).unwrap_or(u32::MAX));
    meta.input_dims = d4;
    meta.input_layout = 0;
    meta.preprocess = m.preset as u32;
    let h = d4[2];
    let imagenet_std = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    match m.preset {
        PreprocessPreset::Imagenet => {
            meta.resize_shorter = ((h as f64) * 256.0 / 224.0).round() as u32;
            meta.scale = 1.0 / 255.0;
            (meta.mean, meta.std) = imagenet_std;
        }
        PreprocessPreset::Cifar => {
            meta.scale = 1.0 / 255.0;
            (meta.mean, meta.std) = imagenet_std;
        }
        PreprocessPreset::Raw255 | PreprocessPreset::None => {
            meta.scale = 1.0;
            meta.mean = [0.0; 3];
            meta.std = [1.0; 3];
        }
    }
    meta.channel_order = 0;
    meta.precision = precision;
    b.set_meta(meta);
    if let Some(r) = report {
        let (count, bytes) = r.records(&mut b);
        b.set_layer_report(std::mem::size_of::<resq::format::LayerReportRecord>() as u32, count, bytes);
    }
    Ok(b.finish()?)
}

/// Lower a graph that went through the passes (at `opts.precision`, calibrating for int8)
/// and write the `.resq` bytes. `default_preset` is used when `opts.preprocess` is `None`
/// (else the preset is guessed from the input size).
fn ir_to_file(
    mut g: ir::Graph,
    source_name: &str,
    source: String,
    default_preset: Option<PreprocessPreset>,
    opts: &ConvertOptions,
) -> Result<(Vec<u8>, Summary), ConvertError> {
    let input_dims = g.shape(g.input).to_vec();
    let output_dims = g.shape(g.output).to_vec();
    let classes = *output_dims.last().unwrap_or(&1);
    if let Some(l) = &opts.labels {
        if l.len() != classes {
            return Err(ConvertError::Labels(l.len(), classes));
        }
    }
    let image_like = input_dims.len() == 4 && input_dims[1] == 3;
    let (preset, guessed) = match (opts.preprocess, default_preset) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (p, false),
        (None, None) if !image_like => (PreprocessPreset::None, true),
        (None, None) if input_dims[2] >= 128 => (PreprocessPreset::Imagenet, true),
        (None, None) => (PreprocessPreset::Cifar, true),
    };
    let name = opts.name.clone().unwrap_or_else(|| {
        Path::new(source_name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
    });
    let m = FileMeta { name, source, labels: opts.labels.clone(), preset };
    let write = |p: lower::Program, code: u32, r: Option<&quant::report::Report>| write_program(p, &m, code, r);

    let c = &opts.calibration;
    let outcome = match opts.precision {
        Precision::Fp32 => {
            if c.dir.is_some() || !c.keep_float.is_empty() || c.accuracy_budget.is_some() {
                return Err(ConvertError::Other(
                    "--calibrate, --keep-float and --accuracy-budget apply to --precision int8 (and --calibrate \
                     to fp16, for its accuracy report)"
                        .into(),
                ));
            }
            quant::Outcome {
                program: lower::lower(&g, opts.packing)?,
                precision: 0,
                report: None,
                kept_float: Vec::new(),
                log: Vec::new(),
            }
        }
        Precision::Fp16 => quant::fp16_program(&g, opts.packing, c, &write)?,
        Precision::Int8 => quant::int8_program(&g, c, &write)?,
    };
    // The weights now live in the program: free the IR copies before the file is laid out.
    for t in &mut g.tensors {
        t.value = None;
    }
    let prog = outcome.program;
    let param_count = prog.param_count();
    let param_bytes = prog.param_bytes();
    let mut ops = BTreeMap::new();
    for op in &prog.ops {
        *ops.entry(op.kind.name()).or_insert(0) += 1;
    }
    let bytes = write_program(prog, &m, outcome.precision, outcome.report.as_ref())?;

    let summary = Summary {
        name: m.name,
        source: m.source,
        ops,
        param_count,
        param_bytes,
        file_size: bytes.len(),
        preprocess: Some(preset),
        preprocess_guessed: guessed,
        input_dims,
        output_dims,
        stats: g.stats.clone(),
        precision: opts.precision,
        precision_code: outcome.precision,
        report: outcome.report,
        kept_float: outcome.kept_float,
        log: outcome.log,
    };
    Ok((bytes, summary))
}

/// Convert ONNX bytes into the bytes of a `.resq` file. `source_name` (the input file name)
/// goes into the metadata and gives the default model name.
pub fn convert_onnx_bytes(onnx: &[u8], source_name: &str, opts: &ConvertOptions) -> Result<Vec<u8>, ConvertError> {
    convert_onnx_bytes_with_summary(onnx, source_name, opts).map(|(b, _)| b)
}

/// Read a PyTorch checkpoint (`.pth`, `.pt`, `.th`, `.tar`: zip or legacy format) or a
/// safetensors file into its (prefix-stripped) state dict.
pub fn load_state_dict(
    bytes: &[u8],
    kind: pytorch::FileKind,
    source_name: &str,
) -> Result<pytorch::StateDict, ConvertError> {
    let r = match kind {
        pytorch::FileKind::Safetensors => safetensors_reader::load(bytes),
        _ => pytorch::checkpoint::load(bytes),
    };
    r.map_err(|e| {
        let what = if kind == pytorch::FileKind::Safetensors { "safetensors file" } else { "PyTorch checkpoint" };
        ConvertError::Other(format!("{source_name}: cannot read it as a {what}: {e}"))
    })
}

/// Build the graph of a state dict (architecture from `opts.arch` or inferred), run the passes.
/// Returns the graph and the architecture.
pub fn state_dict_to_ir(
    sd: &pytorch::StateDict,
    opts: &ConvertOptions,
) -> Result<(ir::Graph, pytorch::Arch), ConvertError> {
    let arch = match &opts.arch {
        Some(name) => {
            let want = pytorch::Arch::parse(name).map_err(ConvertError::Other)?;
            if let Ok(found) = pytorch::infer_arch(sd) {
                if found != want {
                    return Err(ConvertError::InvalidModel(format!(
                        "--arch {} does not match the checkpoint, which holds a {} ({:?} blocks {:?})",
                        want.name(),
                        found.name(),
                        found.block,
                        found.blocks
                    )));
                }
            }
            want
        }
        None => pytorch::infer_arch(sd).map_err(ConvertError::InvalidModel)?,
    };
    let hw = opts.input_size.unwrap_or_else(|| arch.default_input());
    let mut g = pytorch::build_graph(sd, &arch, opts.batch, hw)?;
    passes::run(&mut g);
    Ok((g, arch))
}

/// Convert a checkpoint or safetensors file's bytes; also returns the summary.
pub fn convert_checkpoint_bytes_with_summary(
    bytes: &[u8],
    kind: pytorch::FileKind,
    source_name: &str,
    opts: &ConvertOptions,
) -> Result<(Vec<u8>, Summary), ConvertError> {
    if opts.batch == 0 {
        return Err(ConvertError::Other("batch must be at least 1".into()));
    }
    let sd = load_state_dict(bytes, kind, source_name)?;
    let (g, arch) = state_dict_to_ir(&sd, opts)?;
    let file_name = Path::new(source_name).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let stripped = if sd.stripped_prefix.is_empty() {
        String::new()
    } else {
        format!(", prefix '{}' removed", sd.stripped_prefix)
    };
    let source = format!("{file_name} ({}{stripped}, arch {})", sd.format, arch.name());
    let preset = match arch.kind {
        pytorch::ArchKind::Cifar => PreprocessPreset::Cifar,
        pytorch::ArchKind::Imagenet => PreprocessPreset::Imagenet,
    };
    ir_to_file(g, source_name, source, Some(preset), opts)
}

/// Convert any supported file's bytes, choosing the reader by the name's extension (`.onnx`;
/// `.pth`/`.pt`/`.th`/`.tar`/`.ckpt`/`.bin`; `.safetensors`) or, for other names, the content.
pub fn convert_bytes_with_summary(
    bytes: &[u8],
    source_name: &str,
    opts: &ConvertOptions,
) -> Result<(Vec<u8>, Summary), ConvertError> {
    match pytorch::file_kind(Path::new(source_name), &bytes[..bytes.len().min(16)]) {
        pytorch::FileKind::Onnx if opts.arch.is_some() || opts.input_size.is_some() => Err(ConvertError::Other(
            format!("{source_name}: --arch and --input-size apply to checkpoints; an ONNX model defines both itself"),
        )),
        pytorch::FileKind::Onnx => convert_onnx_bytes_with_summary(bytes, source_name, opts),
        kind => convert_checkpoint_bytes_with_summary(bytes, kind, source_name, opts),
    }
}

/// Convert an ONNX model, PyTorch checkpoint or safetensors file (it is only read).
pub fn convert_file(input: &Path, opts: &ConvertOptions) -> Result<Vec<u8>, ConvertError> {
    let bytes = std::fs::read(input).map_err(|source| ConvertError::Io { path: input.to_path_buf(), source })?;
    convert_bytes_with_summary(&bytes, &input.to_string_lossy(), opts).map(|(b, _)| b)
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename
/// (and fsync of the directory where the platform allows). Readers see the old file or the
/// new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ConvertError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ConvertError::Io { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| ConvertError::Other(format!("{}: not a file path", path.display())))?
        .to_string_lossy()
        .into_owned();
    let mut tmp = None;
    for attempt in 0..100u32 {
        let candidate = dir.join(format!(".{file_name}.{}.{attempt}.tmp", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(f) => {
                tmp = Some((candidate, f));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&candidate)(e)),
        }
    }
    let (tmp_path, mut f) =
        tmp.ok_or_else(|| ConvertError::Other(format!("{}: cannot create a temporary file", dir.display())))?;
    let result = (|| {
        f.write_all(bytes).map_err(io(&tmp_path))?;
        f.sync_all().map_err(io(&tmp_path))?;
        drop(f);
        std::fs::rename(&tmp_path, path).map_err(io(path))?;
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result
}

/// Decode a serialized ONNX `TensorProto` (test vectors, `--freeze FILE.pb`) into f32 values.
pub fn load_tensor_proto(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
    let t = FrozenTensor::from_tensor_proto(bytes)?;
    Ok((t.dims, t.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncated_input_are_errors() {
        assert!(matches!(
            convert_onnx_bytes(b"", "x.onnx", &ConvertOptions::default()),
            Err(ConvertError::Decode { .. })
        ));
        assert!(convert_onnx_bytes(b"\xff\xff\xff\xff garbage", "x.onnx", &ConvertOptions::default()).is_err());
        let mut state = 0x1234_5678u32;
        for len in [1usize, 7, 64, 1000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            assert!(convert_onnx_bytes(&bytes, "x.onnx", &ConvertOptions::default()).is_err());
        }
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("resq-convert-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.resq");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two two");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(write_atomic(&dir.join("missing-dir").join("m.resq"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
