//! Reading and writing float32 `.npy` files (NumPy format 1.0-3.0, little-endian, C order).
//!
//! Only what the CLI and the tests need: `float32` arrays (`<f4`; `<f8` is read and narrowed),
//! C order. Anything else is an error that says what was found.

use crate::{Error, Result};
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Refuse headers larger than this (NumPy itself writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 20;

/// Element types this reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Descr {
    F32,
    F64,
}

/// Parse an `.npy` image: returns (shape, data).
pub fn parse_f32(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not an .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy preamble".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    if header_len > MAX_HEADER {
        return Err(format!("header of {header_len} bytes is too large"));
    }
    let end = start + header_len;
    let header = bytes.get(start..end).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not UTF-8/ASCII")?;
    let descr = match dict_value(header, "descr").ok_or("header has no 'descr'")? {
        "'<f4'" | "\"<f4\"" | "'=f4'" => Descr::F32,
        "'<f8'" | "\"<f8\"" | "'=f8'" => Descr::F64,
        other => return Err(format!("dtype {other} is not supported (need little-endian float32 '<f4')")),
    };
    match dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")? {
        "False" => {}
        "True" => return Err("Fortran-order arrays are not supported (save with C order)".into()),
        other => return Err(format!("bad fortran_order value {other}")),
    }
    let shape = parse_shape(dict_value(header, "shape").ok_or("header has no 'shape'")?)?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let elem = if descr == Descr::F32 { 4 } else { 8 };
    let need = count.checked_mul(elem).ok_or("shape overflows")?;
    let payload = &bytes[end..];
    if payload.len() < need {
        return Err(format!("data is truncated: shape {shape:?} needs {need} bytes, file has {}", payload.len()));
    }
    let data = match descr {
        Descr::F32 => payload[..need].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Descr::F64 => payload[..need]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
    };
    Ok((shape, data))
}

/// The raw text of `'key': value` in the header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[pos + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}']).unwrap_or(rest.len()) };
    Some(rest[..end].trim())
}

fn parse_shape(s: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| format!("bad shape {s}"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('L').parse::<usize>().map_err(|_| format!("bad shape entry {p:?} in {s}")))
        .collect()
}

/// Serialise `data` with `shape` as a version 1.0 `.npy` image (`<f4`, C order).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> std::result::Result<Vec<u8>, String> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(format!("shape {shape:?} holds {count} values, data has {}", data.len()));
    }
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Pad with spaces so the data starts at a multiple of 64, newline-terminated.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    header.push('\n');
    let hlen = u16::try_from(header.len()).map_err(|_| "shape too long for an .npy header")?;
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

fn npy_err(path: &Path, what: String) -> Error {
    Error::Npy { path: path.to_path_buf(), what }
}

/// Read a float32 `.npy` file: (shape, values in C order).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    parse_f32(&bytes).map_err(|what| npy_err(path, what))
}

/// Write a float32 `.npy` file.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let bytes = to_bytes(shape, data).map_err(|what| npy_err(path, what))?;
    std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        for shape in [vec![3usize], vec![2, 3], vec![1, 3, 2, 2], vec![]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = to_bytes(&shape, &data).unwrap();
            let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!(header_end % 64, 0);
            let (s, d) = parse_f32(&bytes).unwrap();
            assert_eq!(s, shape);
            assert_eq!(d, data);
        }
    }

    #[test]
    fn numpy_written_header_parses() {
        // What numpy 2.x writes for np.zeros((20, 10), np.float32).
        let mut b = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (20, 10), }".to_vec();
        while b.len() < 127 {
            b.push(b' ');
        }
        b.push(b'\n');
        b.extend(std::iter::repeat_n(0u8, 800));
        let (s, d) = parse_f32(&b).unwrap();
        assert_eq!(s, vec![20, 10]);
        assert_eq!(d.len(), 200);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let good = to_bytes(&[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        for len in 0..good.len() {
            assert!(parse_f32(&good[..len]).is_err(), "truncation at {len} accepted");
        }
        let replace = |from: &[u8], to: &[u8]| {
            let mut b = good.clone();
            let at = b.windows(from.len()).position(|w| w == from).unwrap();
            b[at..at + from.len()].copy_from_slice(to);
            b
        };
        assert!(parse_f32(&replace(b"<f4", b"<i4")).unwrap_err().contains("not supported"));
        assert!(parse_f32(&replace(b"False", b"True ")).unwrap_err().contains("Fortran"));
        assert!(to_bytes(&[3], &[1.0]).is_err());
    }
}
