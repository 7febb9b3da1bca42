//! PyTorch checkpoints and safetensors files -> IR.
//!
//! A checkpoint holds weights, not a graph: [`checkpoint`] (zip `.pth` of torch >= 1.6 and the
//! legacy pre-1.6 stream) and [`crate::safetensors_reader`] read the tensors into a
//! [`StateDict`]; [`resnet`] recognises the architecture from the tensor names and shapes and
//! builds the IR graph that `torch.onnx.export` would have produced, which then goes through
//! the same passes and lowering as an ONNX model.

pub mod checkpoint;
pub mod pickle;
pub mod resnet;

pub use resnet::{build_graph, infer_arch, Arch, ArchKind, Block, Variant};

use half::{bf16, f16};

/// Element types a checkpoint tensor can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
}

/// One tensor: contiguous row-major little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// An f32 tensor from values.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        RawTensor { dtype: DType::F32, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }

    /// The values as f32 (floating types only; half types widened, f64 rounded).
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        if self.data.len() != self.numel() * self.dtype.size() {
            return Err(format!("holds {} bytes for shape {:?} of {}", self.data.len(), self.shape, self.dtype.name()));
        }
        let d = &self.data;
        Ok(match self.dtype {
            DType::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F64 => d
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            DType::F16 => d.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => d.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => return Err(format!("is {}, not a floating-point tensor", other.name())),
        })
    }
}

/// Named tensors, in file order.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    pub tensors: Vec<(String, RawTensor)>,
    /// What the file was, for the model's `source` metadata (e.g. "PyTorch zip checkpoint").
    pub format: String,
    /// Name prefixes that were removed (`module.` of DataParallel, `_orig_mod.` of torch.compile).
    pub stripped_prefix: String,
}

impl StateDict {
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// Remove a prefix shared by every name (`module.`, `_orig_mod.`), repeatedly.
    pub fn strip_common_prefixes(&mut self) {
        loop {
            let Some(p) = ["module.", "_orig_mod.", "model."]
                .into_iter()
                .find(|p| !self.tensors.is_empty() && self.tensors.iter().all(|(n, _)| n.starts_with(p)))
            else {
                return;
            };
            for (n, _) in &mut self.tensors {
                n.drain(..p.len());
            }
            self.stripped_prefix.push_str(p);
        }
    }
}

/// Which reader a file goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Onnx,
    /// `.pth`/`.pt`/`.th`/`.tar`/`.ckpt`/`.bin`, zip or legacy.
    Torch,
    Safetensors,
}

/// The kind of `path` from its extension; for an unknown extension, from the first bytes.
pub fn file_kind(path: &std::path::Path, head: &[u8]) -> FileKind {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "onnx" => FileKind::Onnx,
        "safetensors" => FileKind::Safetensors,
        "pth" | "pt" | "th" | "tar" | "ckpt" | "bin" | "pkl" => FileKind::Torch,
        _ if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) => FileKind::Torch,
        _ if head.len() >= 9 && head[8] == b'{' && u64::from_le_bytes(head[..8].try_into().unwrap_or([0; 8])) > 1 => {
            FileKind::Safetensors
        }
        _ => FileKind::Onnx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn file_kind_by_extension_then_content() {
        assert_eq!(file_kind(Path::new("a.ONNX"), b"PK\x03\x04"), FileKind::Onnx);
        assert_eq!(file_kind(Path::new("a.pth.tar"), b""), FileKind::Torch);
        assert_eq!(file_kind(Path::new("a.th"), b""), FileKind::Torch);
        assert_eq!(file_kind(Path::new("a.safetensors"), b""), FileKind::Safetensors);
        assert_eq!(file_kind(Path::new("weights"), b"PK\x03\x04...."), FileKind::Torch);
        assert_eq!(file_kind(Path::new("weights"), &[0x80, 0x02, 0x8a, 0x0a, 0x6c]), FileKind::Torch);
        assert_eq!(file_kind(Path::new("weights"), b"\x40\0\0\0\0\0\0\0{\"a\""), FileKind::Safetensors);
        assert_eq!(file_kind(Path::new("weights"), b"\x08\x07\x12"), FileKind::Onnx);
    }

    #[test]
    fn shared_prefixes_are_stripped_only_when_every_name_has_them() {
        let t = RawTensor::from_f32(vec![1], &[1.0]);
        let mut sd = StateDict {
            tensors: vec![("module._orig_mod.a".into(), t.clone()), ("module._orig_mod.b".into(), t.clone())],
            ..Default::default()
        };
        sd.strip_common_prefixes();
        assert_eq!(sd.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(sd.stripped_prefix, "module._orig_mod.");
        let mut sd =
            StateDict { tensors: vec![("module.a".into(), t.clone()), ("b".into(), t.clone())], ..Default::default() };
        sd.strip_common_prefixes();
        assert_eq!(sd.names().collect::<Vec<_>>(), ["module.a", "b"]);
        assert_eq!(t.to_f32().unwrap(), [1.0]);
        let i = RawTensor { dtype: DType::I64, shape: vec![1], data: vec![0; 8] };
        assert!(i.to_f32().unwrap_err().contains("int64"));
    }
}
