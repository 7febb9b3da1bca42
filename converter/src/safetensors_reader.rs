//! safetensors files -> [`StateDict`] (through the `safetensors` crate, which validates the
//! header, the offsets and the sizes).

use crate::pytorch::{DType, RawTensor, StateDict};
use safetensors::{Dtype, SafeTensors};

fn dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// Read every tensor of a safetensors file (in the file's data order).
pub fn load(bytes: &[u8]) -> Result<StateDict, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let mut tensors = Vec::new();
    for (name, view) in st.iter() {
        let dt = dtype(view.dtype())
            .ok_or_else(|| format!("tensor '{name}' has dtype {:?}, which is not supported", view.dtype()))?;
        tensors.push((
            name.to_string(),
            RawTensor { dtype: dt, shape: view.shape().to_vec(), data: view.data().to_vec() },
        ));
    }
    let mut sd = StateDict { tensors, format: "safetensors".into(), stripped_prefix: String::new() };
    sd.strip_common_prefixes();
    Ok(sd)
}

/// Write f32 tensors as a safetensors file (for tests and tools).
pub fn save_f32(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>, String> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| format!("tensor '{n}': {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}
