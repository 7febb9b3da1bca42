//! The validating reader: turns an untrusted byte slice into a [`FileView`] or an
//! [`Error::Format`] that says what is wrong and where. Nothing here panics, reads out of
//! bounds or needs `unsafe`: every byte range is checked (with checked arithmetic) before it
//! is read, and records are copied out with `bytemuck::pod_read_unaligned`.
//!
//! This module checks the file structure, every tensor record, op arity and data flow, and the
//! metadata. The per-op parameter checks (shapes implied by kernel/stride/pads, weight sizes,
//! ...) live next to each op's semantics in `crate::ops` and run right after this, in
//! `Model` construction; `docs/FORMAT.md` lists all the rules.

use super::checksum::file_checksum;
use super::records::*;
use crate::error::{Error, Result};
use bytemuck::Pod;
use core::mem::size_of;

/// Largest tensor (in bytes) a file may declare: 4 GiB. Keeps every size computation far
/// from overflow and rejects absurd arena requests before anything is allocated.
pub const MAX_TENSOR_BYTES: u64 = 1 << 32;

/// A validated file: records copied out of the bytes, byte ranges known to be in bounds.
#[derive(Clone, Debug)]
pub struct FileView<'a> {
    pub bytes: &'a [u8],
    pub header: Header,
    pub sections: Vec<SectionEntry>,
    pub meta: MetaRecord,
    /// The STRINGS section.
    pub strings: &'a [u8],
    pub tensors: Vec<TensorRecord>,
    pub ops: Vec<OpRecord>,
    /// Absolute offset of the TENSORS and OPS sections (for error offsets).
    pub tensors_offset: u64,
    pub ops_offset: u64,
}

fn err<T>(what: impl Into<String>, offset: u64) -> Result<T> {
    Err(Error::format(what, Some(offset)))
}

fn read_pod<T: Pod>(bytes: &[u8], at: u64, what: &str) -> Result<T> {
    let n = size_of::<T>() as u64;
    let end = at.checked_add(n).filter(|&e| e <= bytes.len() as u64);
    match end {
        Some(end) => Ok(bytemuck::pod_read_unaligned(&bytes[at as usize..end as usize])),
        None => err(format!("{what} ({n} bytes) extends past the end of the file ({} bytes)", bytes.len()), at),
    }
}

impl<'a> FileView<'a> {
    /// The string `r` refers to (validated by [`read`]; invalid refs give `""`).
    pub fn str(&self, r: StrRef) -> &'a str {
        let (o, l) = (r.offset as usize, r.len as usize);
        self.strings.get(o..o.saturating_add(l)).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// The section entry of `kind` (present for every required kind after [`read`]).
    pub fn section(&self, kind: SectionKind) -> Option<&SectionEntry> {
        self.sections.iter().find(|s| s.kind == kind as u32)
    }

    /// `tensor 7 'conv1.weight'`, for messages.
    pub fn tensor_label(&self, id: u32) -> String {
        match self.tensors.get(id as usize) {
            Some(t) if t.name.len > 0 => format!("tensor {id} '{}'", self.str(t.name)),
            _ => format!("tensor {id}"),
        }
    }

    /// `op 3 'layer1.0.conv1' (Conv2d)`, for messages.
    pub fn op_label(&self, index: usize) -> String {
        let Some(op) = self.ops.get(index) else { return format!("op {index}") };
        let kind = OpKind::from_u16(op.kind).map(|k| k.name()).unwrap_or("unknown kind");
        if op.name.len > 0 {
            format!("op {index} '{}' ({kind})", self.str(op.name))
        } else {
            format!("op {index} ({kind})")
        }
    }

    /// Absolute offset of tensor record `id`.
    pub fn tensor_offset(&self, id: u32) -> u64 {
        self.tensors_offset + id as u64 * size_of::<TensorRecord>() as u64
    }

    /// Absolute offset of op record `index`.
    pub fn op_offset(&self, index: usize) -> u64 {
        self.ops_offset + index as u64 * size_of::<OpRecord>() as u64
    }

    /// Used dims of a tensor as `usize`.
    pub fn dims(&self, id: u32) -> Vec<usize> {
        self.tensors
            .get(id as usize)
            .map(|t| t.dims[..t.rank as usize].iter().map(|&d| d as usize).collect())
            .unwrap_or_default()
    }

    /// The payload bytes of a constant tensor (validated in bounds by [`read`]).
    pub fn payload(&self, id: u32) -> &'a [u8] {
        let Some(t) = self.tensors.get(id as usize) else { return &[] };
        let (o, s) = (t.data_offset as usize, t.data_size as usize);
        self.bytes.get(o..o.saturating_add(s)).unwrap_or(&[])
    }
}

/// Element count of a tensor record's used dims, or `None` on overflow.
pub fn element_count(t: &TensorRecord) -> Option<u64> {
    t.dims[..(t.rank as usize).min(MAX_RANK)].iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
}

/// Validate `bytes` as a `.resq` file. `bytes` must start at a 64-byte aligned address so
/// constant payloads can be viewed as `f32` in place.
pub fn read(bytes: &[u8]) -> Result<FileView<'_>> {
    let len = bytes.len() as u64;
    let header_size = size_of::<Header>() as u64;
    if len < header_size {
        return err(format!("file is {len} bytes, shorter than the {header_size}-byte header (truncated?)"), 0);
    }
    if (bytes.as_ptr() as usize) % ALIGN as usize != 0 {
        return Err(Error::format(
            format!("model bytes start at address {:p}, which is not {ALIGN}-byte aligned", bytes.as_ptr()),
            None,
        ));
    }
    let h: Header = read_pod(bytes, 0, "header")?;
    if h.magic != MAGIC {
        return err(
            format!("bad magic {:?}: expected {:?} (not a .resq file)", bytes_str(&h.magic), bytes_str(&MAGIC)),
            0,
        );
    }
    if h.version_major != VERSION_MAJOR || h.version_minor > VERSION_MINOR {
        return err(
            format!(
                "format version {}.{} is not supported: this reader reads {VERSION_MAJOR}.0 to {VERSION_MAJOR}.{VERSION_MINOR}",
                h.version_major, h.version_minor
            ),
            8,
        );
    }
    if h.header_size as u64 != header_size {
        return err(format!("header_size is {}, expected {header_size}", h.header_size), 12);
    }
    if h.flags != 0 {
        return err(format!("header flags are {:#x}, but no flag is defined in format 1.0 (expected 0)", h.flags), 16);
    }
    if h.file_size != len {
        return err(
            format!("header says the file is {} bytes but it is {len} bytes (truncated or padded?)", h.file_size),
            24,
        );
    }
    if h.file_size % ALIGN != 0 {
        return err(format!("file size {} is not a multiple of {ALIGN}", h.file_size), 24);
    }
    if h.section_table_offset != header_size {
        return err(format!("section_table_offset is {}, expected {header_size}", h.section_table_offset), 32);
    }
    if h.section_entry_size as usize != size_of::<SectionEntry>() {
        return err(
            format!("section_entry_size is {}, expected {}", h.section_entry_size, size_of::<SectionEntry>()),
            44,
        );
    }
    if h.reserved != [0; 8] {
        return err("header reserved bytes are not zero", 56);
    }
    let table_end = (h.section_count as u64)
        .checked_mul(size_of::<SectionEntry>() as u64)
        .and_then(|s| s.checked_add(header_size))
        .filter(|&e| e <= len);
    let Some(table_end) = table_end else {
        return err(format!("section table of {} entries extends past the end of the file", h.section_count), 40);
    };
    let sum = file_checksum(bytes);
    if sum != h.checksum {
        return err(
            format!(
                "checksum mismatch: header says {:#018x}, content hashes to {sum:#018x} (file corrupted)",
                h.checksum
            ),
            48,
        );
    }

    // Section table.
    let mut sections = Vec::with_capacity(h.section_count as usize);
    for i in 0..h.section_count as u64 {
        let at = header_size + i * size_of::<SectionEntry>() as u64;
        let s: SectionEntry = read_pod(bytes, at, "section entry")?;
        let Some(kind) = SectionKind::from_u32(s.kind) else {
            return err(format!("section {i} has unknown kind {}", s.kind), at);
        };
        if sections.iter().any(|o: &SectionEntry| o.kind == s.kind) {
            return err(format!("section {i}: {kind:?} section appears twice"), at);
        }
        let want_rs = match kind {
            SectionKind::Meta => Some(size_of::<MetaRecord>()),
            SectionKind::Tensors => Some(size_of::<TensorRecord>()),
            SectionKind::Ops => Some(size_of::<OpRecord>()),
            SectionKind::Strings | SectionKind::Data => Some(1),
            SectionKind::LayerReport => Some(size_of::<LayerReportRecord>()),
        };
        match want_rs {
            Some(r) if s.record_size as usize != r => {
                return err(format!("{kind:?} section: record_size is {}, expected {r}", s.record_size), at + 4)
            }
            None if s.record_size == 0 => return err(format!("{kind:?} section: record_size is 0"), at + 4),
            _ => {}
        }
        if s.count.checked_mul(s.record_size as u64) != Some(s.size) {
            return err(
                format!("{kind:?} section: size {} != count {} x record_size {}", s.size, s.count, s.record_size),
                at + 16,
            );
        }
        if s.offset % ALIGN != 0 {
            return err(format!("{kind:?} section offset {} is not a multiple of {ALIGN}", s.offset), at + 8);
        }
        if s.offset < table_end {
            return err(
                format!(
                    "{kind:?} section offset {} overlaps the header and section table (which end at {table_end})",
                    s.offset
                ),
                at + 8,
            );
        }
        match s.offset.checked_add(s.size) {
            Some(end) if end <= len => {}
            _ => {
                return err(
                    format!(
                        "{kind:?} section [{}, +{}) extends past the end of the file ({len} bytes)",
                        s.offset, s.size
                    ),
                    at + 8,
                )
            }
        }
        sections.push(s);
    }
    let mut sorted = sections.clone();
    sorted.sort_by_key(|s| (s.offset, s.size));
    for w in sorted.windows(2) {
        if w[0].offset + w[0].size > w[1].offset {
            return err(
                format!(
                    "sections overlap: kind {} [{}, {}) and kind {} [{}, {})",
                    w[0].kind,
                    w[0].offset,
                    w[0].offset + w[0].size,
                    w[1].kind,
                    w[1].offset,
                    w[1].offset + w[1].size
                ),
                w[1].offset,
            );
        }
    }
    let get =
        |k: SectionKind| -> Result<SectionEntry> {
            sections.iter().copied().find(|s| s.kind == k as u32).ok_or_else(|| {
                Error::format(format!("required {k:?} section is missing"), Some(h.section_table_offset))
            })
        };
    let meta_s = get(SectionKind::Meta)?;
    let strings_s = get(SectionKind::Strings)?;
    let tensors_s = get(SectionKind::Tensors)?;
    let ops_s = get(SectionKind::Ops)?;
    let data_s = get(SectionKind::Data)?;
    if meta_s.count != 1 {
        return err(format!("META section holds {} records, expected exactly 1", meta_s.count), meta_s.offset);
    }
    if tensors_s.count >= NONE as u64 {
        return err(format!("{} tensors: ids must be below {NONE}", tensors_s.count), tensors_s.offset);
    }
    let range = |s: &SectionEntry| s.offset as usize..(s.offset + s.size) as usize;
    let strings = &bytes[range(&strings_s)];
    let meta: MetaRecord = read_pod(bytes, meta_s.offset, "META record")?;
    let mut tensors = Vec::with_capacity(tensors_s.count as usize);
    for i in 0..tensors_s.count {
        tensors.push(read_pod::<TensorRecord>(
            bytes,
            tensors_s.offset + i * tensors_s.record_size as u64,
            "tensor record",
        )?);
    }
    let mut ops = Vec::with_capacity(ops_s.count as usize);
    for i in 0..ops_s.count {
        ops.push(read_pod::<OpRecord>(bytes, ops_s.offset + i * ops_s.record_size as u64, "op record")?);
    }
    let view = FileView {
        bytes,
        header: h,
        sections,
        meta,
        strings,
        tensors,
        ops,
        tensors_offset: tensors_s.offset,
        ops_offset: ops_s.offset,
    };
    check_tensors(&view, &data_s)?;
    check_ops(&view)?;
    check_meta(&view, meta_s.offset)?;
    Ok(view)
}

fn bytes_str(b: &[u8]) -> String {
    b.iter().flat_map(|&c| core::ascii::escape_default(c)).map(char::from).collect()
}

fn check_str(v: &FileView, r: StrRef, what: &str, at: u64) -> Result<()> {
    if r.len == 0 {
        if r.offset != 0 {
            return err(format!("{what}: empty string with nonzero offset {}", r.offset), at);
        }
        return Ok(());
    }
    let end = (r.offset as u64) + (r.len as u64);
    if end > v.strings.len() as u64 {
        return err(
            format!(
                "{what}: string [{}, +{}) lies outside the {}-byte STRINGS section",
                r.offset,
                r.len,
                v.strings.len()
            ),
            at,
        );
    }
    if std::str::from_utf8(&v.strings[r.offset as usize..end as usize]).is_err() {
        return err(format!("{what}: string at {} is not valid UTF-8", r.offset), at);
    }
    Ok(())
}

fn check_tensors(v: &FileView, data: &SectionEntry) -> Result<()> {
    let n = v.tensors.len() as u32;
    for (i, t) in v.tensors.iter().enumerate() {
        let id = i as u32;
        let at = v.tensor_offset(id);
        check_str(v, t.name, &format!("tensor {id} name"), at)?;
        let label = v.tensor_label(id);
        let Some(kind) = (match t.kind {
            0 => Some(TensorKind::Activation),
            1 => Some(TensorKind::Constant),
            _ => None,
        }) else {
            return err(format!("{label}: unknown kind {}", t.kind), at + 8);
        };
        let Some(dtype) = DType::from_u8(t.dtype) else {
            return err(format!("{label}: unknown dtype {}", t.dtype), at + 9);
        };
        let Some(layout) = Layout::from_u8(t.layout) else {
            return err(format!("{label}: unknown layout {}", t.layout), at + 10);
        };
        let rank = t.rank as usize;
        if rank > MAX_RANK {
            return err(format!("{label}: rank {rank} exceeds the maximum {MAX_RANK}"), at + 11);
        }
        if t.flags != 0 {
            return err(format!("{label}: flags {:#x} set, no flag is defined (expected 0)", t.flags), at + 12);
        }
        for (d, &dim) in t.dims.iter().enumerate() {
            if d < rank && dim == 0 {
                return err(format!("{label}: dim {d} is 0 (every used dim must be >= 1)"), at + 16 + 4 * d as u64);
            }
            if d >= rank && dim != 0 {
                return err(format!("{label}: dim {d} is {dim} past rank {rank} (must be 0)"), at + 16 + 4 * d as u64);
            }
        }
        if t.reserved != 0 {
            return err(format!("{label}: reserved field is {} (must be 0)", t.reserved), at + 68);
        }
        let bytes =
            element_count(t).and_then(|e| e.checked_mul(dtype.size() as u64)).filter(|&b| b <= MAX_TENSOR_BYTES);
        let Some(bytes) = bytes else {
            return err(
                format!("{label}: dims {:?} describe more than {MAX_TENSOR_BYTES} bytes", &t.dims[..rank]),
                at + 16,
            );
        };
        match layout {
            Layout::RowMajor => {}
            Layout::Nhwc if rank == 4 => {}
            Layout::Ohwi | Layout::PackedN16 | Layout::WinogradF43N16 if rank == 4 && kind == TensorKind::Constant => {}
            // Linear weights `[N, K]`: the 1x1, one-group case of PackedN16.
            Layout::PackedN16 if rank == 2 && kind == TensorKind::Constant => {}
            // Int8 GEMM weights (conv rank 4, Linear rank 2).
            Layout::PackedN16K4 if (rank == 4 || rank == 2) && kind == TensorKind::Constant && dtype == DType::I8 => {}
            _ => {
                return err(
                    format!("{label}: layout {layout:?} is not valid for a rank-{rank} {kind:?} tensor"),
                    at + 10,
                )
            }
        }
        if matches!(dtype, DType::F32 | DType::F16) && (t.quant_scale.to_bits() != 0 || t.quant_zero_point != 0) {
            return err(format!("{label}: quantization parameters set on a {dtype:?} tensor"), at + 56);
        }
        if dtype == DType::I8
            && kind == TensorKind::Activation
            && !(t.quant_scale.is_finite() && t.quant_scale > 0.0 && (-128..=127).contains(&t.quant_zero_point))
        {
            return err(
                format!(
                    "{label}: int8 activation needs a finite scale > 0 and a zero point in [-128, 127], has scale {} zero point {}",
                    t.quant_scale, t.quant_zero_point
                ),
                at + 56,
            );
        }
        if t.quant_channel_scales != NONE {
            match v.tensors.get(t.quant_channel_scales as usize) {
                Some(s)
                    if s.dtype == DType::F32 as u8
                        && s.kind == TensorKind::Constant as u8
                        && t.quant_channel_scales != id => {}
                _ => {
                    return err(
                        format!(
                            "{label}: quant_channel_scales {} is not an F32 constant tensor",
                            t.quant_channel_scales
                        ),
                        at + 64,
                    )
                }
            }
        }
        match kind {
            TensorKind::Activation => {
                if t.data_offset != 0 || t.data_size != 0 {
                    return err(format!("{label}: activation has data_offset/data_size set (must be 0)"), at + 40);
                }
            }
            TensorKind::Constant => {
                if t.data_offset % ALIGN != 0 {
                    return err(
                        format!("{label}: payload offset {} is not a multiple of {ALIGN}", t.data_offset),
                        at + 40,
                    );
                }
                let end = t.data_offset.checked_add(t.data_size);
                if t.data_offset < data.offset || end.is_none_or(|e| e > data.offset + data.size) {
                    return err(
                        format!(
                            "{label}: payload [{}, +{}) lies outside the DATA section [{}, {})",
                            t.data_offset,
                            t.data_size,
                            data.offset,
                            data.offset + data.size
                        ),
                        at + 40,
                    );
                }
                // Packed layouts' sizes depend on op parameters (groups): checked by the op.
                let packed = matches!(layout, Layout::PackedN16 | Layout::WinogradF43N16 | Layout::PackedN16K4);
                if !packed && t.data_size != bytes {
                    return err(
                        format!(
                            "{label}: data_size is {} bytes but {dtype:?} {layout:?} {:?} needs {bytes}",
                            t.data_size,
                            &t.dims[..rank]
                        ),
                        at + 48,
                    );
                }
                if packed && t.data_size % dtype.size() as u64 != 0 {
                    return err(
                        format!("{label}: data_size {} is not a multiple of the element size", t.data_size),
                        at + 48,
                    );
                }
            }
        }
    }
    let _ = n;
    Ok(())
}

/// Inputs (min, max) and outputs of each op kind.
pub fn arity(kind: OpKind) -> (usize, usize, usize) {
    match kind {
        OpKind::Conv2d => (2, 4, 1),
        OpKind::Linear => (2, 3, 1),
        OpKind::Add => (2, 2, 1),
        OpKind::ChannelAffine => (3, 3, 1),
        _ => (1, 1, 1),
    }
}

/// Which input slots of `kind` may be [`NONE`] inside `n_inputs`.
fn optional_input(kind: OpKind, slot: usize) -> bool {
    matches!((kind, slot), (OpKind::Conv2d, 2 | 3) | (OpKind::Linear, 2))
}

fn check_ops(v: &FileView) -> Result<()> {
    let nt = v.tensors.len();
    let mut available = vec![false; nt];
    let input = v.meta.input_tensor as usize;
    if input < nt {
        available[input] = true;
    }
    for (i, op) in v.ops.iter().enumerate() {
        let at = v.op_offset(i);
        check_str(v, op.name, &format!("op {i} name"), at + 8)?;
        let label = v.op_label(i);
        let Some(kind) = OpKind::from_u16(op.kind) else {
            return err(format!("{label}: unknown op kind {}", op.kind), at);
        };
        if op.flags != 0 {
            return err(format!("{label}: flags {:#x} set, no flag is defined (expected 0)", op.flags), at + 2);
        }
        if op.reserved != 0 {
            return err(format!("{label}: reserved field is {} (must be 0)", op.reserved), at + 6);
        }
        let (min_in, max_in, n_out) = arity(kind);
        let (ni, no) = (op.n_inputs as usize, op.n_outputs as usize);
        if ni < min_in || ni > max_in {
            let want = if min_in == max_in { format!("{min_in}") } else { format!("{min_in} to {max_in}") };
            return err(format!("{label}: has {ni} inputs, {} takes {want}", kind.name()), at + 4);
        }
        if no != n_out {
            return err(format!("{label}: has {no} outputs, {} produces {n_out}", kind.name()), at + 5);
        }
        for (s, &t) in op.inputs.iter().enumerate() {
            let slot_at = at + 16 + 4 * s as u64;
            if s >= ni {
                if t != NONE {
                    return err(
                        format!("{label}: input slot {s} is past n_inputs {ni} but holds {t} (must be NONE)"),
                        slot_at,
                    );
                }
                continue;
            }
            if t == NONE {
                if optional_input(kind, s) {
                    continue;
                }
                return err(format!("{label}: required input {s} is NONE"), slot_at);
            }
            if t as usize >= nt {
                return err(format!("{label}: input {s} refers to tensor {t}, but there are {nt} tensors"), slot_at);
            }
            let tr = &v.tensors[t as usize];
            if tr.kind == TensorKind::Activation as u8 && !available[t as usize] {
                return err(
                    format!(
                        "{label}: input {s} reads {} before it is produced (ops run in file order)",
                        v.tensor_label(t)
                    ),
                    slot_at,
                );
            }
        }
        for (s, &t) in op.outputs.iter().enumerate() {
            let slot_at = at + 32 + 4 * s as u64;
            if s >= no {
                if t != NONE {
                    return err(
                        format!("{label}: output slot {s} is past n_outputs {no} but holds {t} (must be NONE)"),
                        slot_at,
                    );
                }
                continue;
            }
            if t as usize >= nt {
                return err(format!("{label}: output {s} refers to tensor {t}, but there are {nt} tensors"), slot_at);
            }
            if v.tensors[t as usize].kind != TensorKind::Activation as u8 {
                return err(
                    format!("{label}: output {} is a constant (outputs must be activations)", v.tensor_label(t)),
                    slot_at,
                );
            }
            if t as usize == input {
                return err(format!("{label}: writes the graph input {}", v.tensor_label(t)), slot_at);
            }
            if available[t as usize] {
                return err(
                    format!("{label}: output {} is already produced by an earlier op", v.tensor_label(t)),
                    slot_at,
                );
            }
            available[t as usize] = true;
        }
    }
    Ok(())
}

fn check_meta(v: &FileView, at: u64) -> Result<()> {
    let m = &v.meta;
    check_str(v, m.name, "META name", at)?;
    check_str(v, m.source, "META source", at + 8)?;
    check_str(v, m.producer, "META producer", at + 16)?;
    check_str(v, m.labels, "META labels", at + 24)?;
    let nt = v.tensors.len();
    let act_f32_rowmajor = |id: u32, what: &str, off: u64| -> Result<&TensorRecord> {
        let Some(t) = v.tensors.get(id as usize) else {
            return err(format!("META {what} tensor id {id} is out of range ({nt} tensors)"), off);
        };
        if t.kind != TensorKind::Activation as u8 || t.dtype != DType::F32 as u8 || t.layout != Layout::RowMajor as u8 {
            return err(format!("META {what} {} must be an F32 RowMajor activation", v.tensor_label(id)), off);
        }
        Ok(t)
    };
    let inp = act_f32_rowmajor(m.input_tensor, "input", at + 32)?;
    let out = act_f32_rowmajor(m.output_tensor, "output", at + 36)?;
    if m.input_layout > 1 {
        return err(format!("META input_layout is {} (0 = NCHW, 1 = NHWC)", m.input_layout), at + 56);
    }
    if inp.rank != 4 || inp.dims[..4] != m.input_dims {
        return err(
            format!(
                "META input_dims {:?} do not match the input {} dims {:?}",
                m.input_dims,
                v.tensor_label(m.input_tensor),
                &inp.dims[..(inp.rank as usize).min(MAX_RANK)]
            ),
            at + 40,
        );
    }
    if m.input_tensor == m.output_tensor {
        return err("META output tensor is the graph input (it must be produced by an op)", at + 36);
    }
    let produced = v.ops.iter().any(|op| op.outputs[..(op.n_outputs as usize).min(2)].contains(&m.output_tensor));
    if !produced {
        return err(format!("META output {} is not produced by any op", v.tensor_label(m.output_tensor)), at + 36);
    }
    let labels = v.str(m.labels);
    let n_labels = if labels.is_empty() { 0 } else { labels.split('\n').count() };
    if n_labels != m.num_labels as usize {
        return err(format!("META num_labels is {} but the labels string has {n_labels} lines", m.num_labels), at + 60);
    }
    let last = if out.rank == 0 { 1 } else { out.dims[(out.rank as usize).min(MAX_RANK) - 1] };
    if m.num_labels != 0 && m.num_labels != last {
        return err(format!("META has {} labels but the output's last dim is {last}", m.num_labels), at + 60);
    }
    if m.preprocess > 3 {
        return err(format!("META preprocess preset {} is unknown (0..=3)", m.preprocess), at + 64);
    }
    if m.channel_order > 1 {
        return err(format!("META channel_order is {} (0 = RGB, 1 = BGR)", m.channel_order), at + 72);
    }
    if m.preprocess != 0 {
        if !m.scale.is_finite() || m.mean.iter().any(|x| !x.is_finite()) {
            return err("META preprocessing scale/mean are not finite", at + 76);
        }
        if m.std.iter().any(|&s| !s.is_finite() || s == 0.0) {
            return err(format!("META preprocessing std {:?} has a zero or non-finite entry", m.std), at + 92);
        }
    }
    if m.precision > 3 {
        return err(
            format!("META precision {} is unknown (0 = fp32, 1 = fp16, 2 = int8, 3 = mixed)", m.precision),
            at + 104,
        );
    }
    if m.reserved != [0; 13] {
        return err("META reserved words are not zero", at + 108);
    }
    Ok(())
}

/// The LAYER_REPORT rows (empty when the section is absent), each checked: names are valid
/// strings, `op` is an op index or NONE, precision is 0..=2, reserved is zero.
pub fn layer_report(v: &FileView) -> Result<Vec<LayerReportRecord>> {
    let Some(sec) = v.section(SectionKind::LayerReport) else { return Ok(Vec::new()) };
    let rs = size_of::<LayerReportRecord>() as u64;
    let mut rows = Vec::with_capacity(sec.count.min(1 << 16) as usize);
    for i in 0..sec.count {
        let at = sec.offset + i * rs;
        let r: LayerReportRecord = read_pod(v.bytes, at, "layer report record")?;
        check_str(v, r.name, &format!("layer report row {i} name"), at)?;
        if r.op != NONE && r.op as usize >= v.ops.len() {
            return err(format!("layer report row {i}: op {} is not an op index (< {})", r.op, v.ops.len()), at + 8);
        }
        if r.precision > 2 {
            return err(
                format!("layer report row {i}: precision {} (0 = fp32, 1 = fp16, 2 = int8)", r.precision),
                at + 12,
            );
        }
        if r.reserved != 0 {
            return err(format!("layer report row {i}: reserved field is not zero"), at + 28);
        }
        rows.push(r);
    }
    Ok(rows)
}
