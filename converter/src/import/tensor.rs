//! Decoding ONNX tensors and node attributes.

use super::ops::{invalid, R};
use crate::ir::Data;
use crate::onnx::{attr_type, data_type, AttributeProto, TensorProto};

/// Largest constant the importer materialises (elements), to bound memory on hostile input.
pub(crate) const MAX_FOLD_ELEMS: usize = 1 << 26;

/// Decode a `TensorProto` into (ONNX dtype, dims, values).
pub fn decode_tensor(t: &TensorProto) -> Result<(i32, Vec<usize>, Data), String> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err("its data is stored in an external file; re-save the model with the weights inside \
                    (onnx.save_model(m, path, save_as_external_data=False))"
            .into());
    }
    let dtype = t.data_type.unwrap_or(0);
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        dims.push(usize::try_from(d).map_err(|_| format!("negative dim {d}"))?);
    }
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("element count overflows")?;
    if n > MAX_FOLD_ELEMS * 4 {
        return Err(format!("{n} elements is more than this converter accepts"));
    }
    use data_type as dt;
    let size = match dtype {
        dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
        dt::DOUBLE | dt::INT64 | dt::UINT64 => 8,
        dt::FLOAT16 | dt::BFLOAT16 | dt::INT16 | dt::UINT16 => 2,
        dt::UINT8 | dt::INT8 | dt::BOOL => 1,
        other => return Err(format!("data type {} is not supported", dt::name(other))),
    };
    let wrong = |have: usize| format!("holds {have} values but its dims {dims:?} need {n}");
    let data = if let Some(raw) = &t.raw_data {
        if raw.len() != n * size {
            return Err(format!(
                "raw_data has {} bytes but dims {dims:?} of {} need {}",
                raw.len(),
                dt::name(dtype),
                n * size
            ));
        }
        let c = raw.chunks_exact(size);
        match dtype {
            dt::FLOAT => Data::F32(c.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
            dt::DOUBLE => Data::F32(c.map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect()),
            dt::FLOAT16 => Data::F32(c.map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
            dt::BFLOAT16 => Data::F32(c.map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
            dt::INT64 => Data::I64(c.map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect()),
            dt::UINT64 => Data::I64(c.map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as i64).collect()),
            dt::INT32 => Data::I64(c.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()),
            dt::UINT32 => Data::I64(c.map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()),
            dt::INT16 => Data::I64(c.map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect()),
            dt::UINT16 => Data::I64(c.map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect()),
            dt::INT8 => Data::I64(c.map(|b| b[0] as i8 as i64).collect()),
            dt::UINT8 => Data::I64(c.map(|b| b[0] as i64).collect()),
            _ => Data::I64(c.map(|b| (b[0] != 0) as i64).collect()), // BOOL
        }
    } else {
        match dtype {
            dt::FLOAT if t.float_data.len() == n => Data::F32(t.float_data.clone()),
            dt::FLOAT => return Err(wrong(t.float_data.len())),
            dt::DOUBLE if t.double_data.len() == n => Data::F32(t.double_data.iter().map(|&x| x as f32).collect()),
            dt::DOUBLE => return Err(wrong(t.double_data.len())),
            dt::INT64 if t.int64_data.len() == n => Data::I64(t.int64_data.clone()),
            dt::INT64 => return Err(wrong(t.int64_data.len())),
            dt::UINT32 | dt::UINT64 if t.uint64_data.len() == n => {
                Data::I64(t.uint64_data.iter().map(|&x| x as i64).collect())
            }
            dt::UINT32 | dt::UINT64 => return Err(wrong(t.uint64_data.len())),
            _ if t.int32_data.len() != n => return Err(wrong(t.int32_data.len())),
            dt::FLOAT16 => Data::F32(t.int32_data.iter().map(|&x| half::f16::from_bits(x as u16).to_f32()).collect()),
            dt::BFLOAT16 => Data::F32(t.int32_data.iter().map(|&x| half::bf16::from_bits(x as u16).to_f32()).collect()),
            dt::BOOL => Data::I64(t.int32_data.iter().map(|&x| (x != 0) as i64).collect()),
            _ => Data::I64(t.int32_data.iter().map(|&x| x as i64).collect()),
        }
    };
    Ok((dtype, dims, data))
}

/// Node attributes by name.
pub(crate) struct Attrs<'a>(pub(crate) &'a [AttributeProto]);

impl<'a> Attrs<'a> {
    pub(crate) fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name.as_deref() == Some(name))
    }
    pub(crate) fn int(&self, name: &str) -> R<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == Some(attr_type::INT) || a.i.is_some() => Ok(Some(a.i.unwrap_or(0))),
            Some(_) => Err(invalid(format!("attribute '{name}' must be an int"))),
        }
    }
    pub(crate) fn int_or(&self, name: &str, d: i64) -> R<i64> {
        Ok(self.int(name)?.unwrap_or(d))
    }
    pub(crate) fn float(&self, name: &str) -> R<Option<f32>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == Some(attr_type::FLOAT) || a.f.is_some() => Ok(Some(a.f.unwrap_or(0.0))),
            Some(_) => Err(invalid(format!("attribute '{name}' must be a float"))),
        }
    }
    pub(crate) fn ints(&self, name: &str) -> R<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type.is_none_or(|t| t == attr_type::INTS) => Ok(Some(a.ints.clone())),
            Some(_) => Err(invalid(format!("attribute '{name}' must be a list of ints"))),
        }
    }
    pub(crate) fn floats(&self, name: &str) -> R<Option<Vec<f32>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type.is_none_or(|t| t == attr_type::FLOATS) => Ok(Some(a.floats.clone())),
            Some(_) => Err(invalid(format!("attribute '{name}' must be a list of floats"))),
        }
    }
    pub(crate) fn string(&self, name: &str) -> R<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type.is_none_or(|t| t == attr_type::STRING) => {
                Ok(Some(String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into_owned()))
            }
            Some(_) => Err(invalid(format!("attribute '{name}' must be a string"))),
        }
    }
    pub(crate) fn tensor(&self, name: &str) -> R<Option<&'a TensorProto>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type.is_none_or(|t| t == attr_type::TENSOR) && a.t.is_some() => Ok(a.t.as_ref()),
            Some(_) => Err(invalid(format!("attribute '{name}' must be a tensor"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_proto_decoding() {
        let mut t = TensorProto { dims: vec![2], data_type: Some(data_type::FLOAT), ..Default::default() };
        t.raw_data = Some([1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        assert_eq!(decode_tensor(&t).unwrap().2, Data::F32(vec![1.5, -2.0]));
        t.raw_data = Some(vec![0; 7]);
        assert!(decode_tensor(&t).unwrap_err().contains("raw_data has 7 bytes"));
        let t = TensorProto {
            dims: vec![2],
            data_type: Some(data_type::FLOAT16),
            int32_data: vec![0x3c00, 0xc000],
            ..Default::default()
        };
        assert_eq!(decode_tensor(&t).unwrap().2, Data::F32(vec![1.0, -2.0]));
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(data_type::INT64),
            int64_data: vec![1, -1],
            ..Default::default()
        };
        assert!(decode_tensor(&t).is_err());
        let t = TensorProto {
            dims: vec![1],
            data_type: Some(data_type::FLOAT),
            data_location: Some(1),
            ..Default::default()
        };
        assert!(decode_tensor(&t).unwrap_err().contains("external"));
        let t = TensorProto { dims: vec![1], data_type: Some(data_type::STRING), ..Default::default() };
        assert!(decode_tensor(&t).unwrap_err().contains("STRING"));
        let t = TensorProto { dims: vec![-1], data_type: Some(data_type::FLOAT), ..Default::default() };
        assert!(decode_tensor(&t).is_err());
    }
}
