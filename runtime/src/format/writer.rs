//! Building a `.resq` file image in memory. The converter fills a [`FileBuilder`] and writes
//! the bytes of [`FileBuilder::finish`] atomically. The reader (`super::reader`) accepts
//! exactly what this produces; `docs/FORMAT.md` describes both.

use super::checksum::{file_checksum, CHECKSUM_OFFSET};
use super::records::*;
use bytemuck::{bytes_of, cast_slice, Pod, Zeroable};
use std::collections::HashMap;

/// Something the builder was given that the format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build .resq file: {0}")]
pub struct BuildError(pub String);

/// Pack an op's params struct into the op record's parameter words.
///
/// The params structs of [`super::records`] all fit (a unit test checks it); a larger type
/// is a programming error and is reported by [`FileBuilder::finish`].
pub fn params_words<P: Pod>(p: &P) -> Option<[u32; OP_PARAM_WORDS]> {
    let bytes = bytes_of(p);
    if bytes.len() > OP_PARAM_WORDS * 4 || bytes.len() % 4 != 0 {
        return None;
    }
    let mut words = [0u32; OP_PARAM_WORDS];
    for (w, c) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Some(words)
}

/// Collects strings, tensors, constant payloads, ops and metadata, then lays them out.
#[derive(Default)]
pub struct FileBuilder {
    strings: Vec<u8>,
    interned: HashMap<String, StrRef>,
    tensors: Vec<TensorRecord>,
    payloads: Vec<Option<Vec<u8>>>,
    ops: Vec<OpRecord>,
    meta: Option<MetaRecord>,
    layer_report: Option<(u32, u64, Vec<u8>)>,
    errors: Vec<String>,
}

impl FileBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Intern a string in the STRINGS section.
    pub fn string(&mut self, s: &str) -> StrRef {
        if s.is_empty() {
            return StrRef::default();
        }
        if let Some(r) = self.interned.get(s) {
            return *r;
        }
        let (Ok(offset), Ok(len)) = (u32::try_from(self.strings.len()), u32::try_from(s.len())) else {
            self.errors.push("string section larger than 4 GiB".into());
            return StrRef::default();
        };
        self.strings.extend_from_slice(s.as_bytes());
        let r = StrRef { offset, len };
        self.interned.insert(s.to_owned(), r);
        r
    }

    fn record(&mut self, name: &str, kind: TensorKind, dtype: DType, layout: Layout, dims: &[usize]) -> TensorRecord {
        let mut rec = TensorRecord::zeroed();
        rec.name = self.string(name);
        rec.kind = kind as u8;
        rec.dtype = dtype as u8;
        rec.layout = layout as u8;
        rec.quant_channel_scales = NONE;
        if dims.len() > MAX_RANK {
            self.errors.push(format!("tensor '{name}' has rank {} > {MAX_RANK}", dims.len()));
            return rec;
        }
        rec.rank = dims.len() as u8;
        for (d, &v) in rec.dims.iter_mut().zip(dims) {
            match u32::try_from(v) {
                Ok(v) if v > 0 => *d = v,
                _ => self.errors.push(format!("tensor '{name}' has dim {v} (must be 1..=u32::MAX)")),
            }
        }
        rec
    }

    /// Declare a run-time tensor (lives in the session arena). Returns its id.
    pub fn activation(&mut self, name: &str, dtype: DType, layout: Layout, dims: &[usize]) -> u32 {
        let rec = self.record(name, TensorKind::Activation, dtype, layout, dims);
        self.push(rec, None)
    }

    /// Declare a constant with its payload bytes (exactly as the kernels read them).
    pub fn constant(&mut self, name: &str, dtype: DType, layout: Layout, dims: &[usize], bytes: Vec<u8>) -> u32 {
        let mut rec = self.record(name, TensorKind::Constant, dtype, layout, dims);
        rec.data_size = bytes.len() as u64;
        self.push(rec, Some(bytes))
    }

    /// [`Self::constant`] for f32 data.
    pub fn constant_f32(&mut self, name: &str, layout: Layout, dims: &[usize], data: &[f32]) -> u32 {
        self.constant(name, DType::F32, layout, dims, cast_slice::<f32, u8>(data).to_vec())
    }

    fn push(&mut self, rec: TensorRecord, payload: Option<Vec<u8>>) -> u32 {
        let id = self.tensors.len() as u32;
        self.tensors.push(rec);
        self.payloads.push(payload);
        id
    }

    /// Mutable access to a declared tensor (e.g. to set quantization parameters).
    pub fn tensor_mut(&mut self, id: u32) -> Option<&mut TensorRecord> {
        self.tensors.get_mut(id as usize)
    }

    pub fn tensor(&self, id: u32) -> Option<&TensorRecord> {
        self.tensors.get(id as usize)
    }

    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Append an op (ops run in the order they are added). Returns its index.
    pub fn op<P: Pod>(&mut self, kind: OpKind, name: &str, inputs: &[u32], outputs: &[u32], params: &P) -> usize {
        let mut rec = OpRecord::zeroed();
        rec.kind = kind as u16;
        rec.name = self.string(name);
        rec.inputs = [NONE; 4];
        rec.outputs = [NONE; 2];
        if inputs.len() > 4 || outputs.len() > 2 {
            self.errors.push(format!(
                "op '{name}' has {} inputs / {} outputs (max 4 / 2)",
                inputs.len(),
                outputs.len()
            ));
        } else {
            rec.n_inputs = inputs.len() as u8;
            rec.n_outputs = outputs.len() as u8;
            rec.inputs[..inputs.len()].copy_from_slice(inputs);
            rec.outputs[..outputs.len()].copy_from_slice(outputs);
        }
        match params_words(params) {
            Some(w) => rec.params = w,
            None => self.errors.push(format!("op '{name}': params do not fit in {OP_PARAM_WORDS} words")),
        }
        self.ops.push(rec);
        self.ops.len() - 1
    }

    pub fn op_count(&self) -> usize {
        self.ops.len()
    }

    /// Set the metadata record (its `StrRef`s come from [`Self::string`]).
    pub fn set_meta(&mut self, meta: MetaRecord) {
        self.meta = Some(meta);
    }

    /// Attach an optional LAYER_REPORT section: `count` records of `record_size` bytes.
    pub fn set_layer_report(&mut self, record_size: u32, count: u64, bytes: Vec<u8>) {
        self.layer_report = Some((record_size, count, bytes));
    }

    /// Lay the file out and return its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, BuildError> {
        let Some(meta) = self.meta else {
            return Err(BuildError("no metadata record was set".into()));
        };
        if !self.errors.is_empty() {
            return Err(BuildError(self.errors.join("; ")));
        }
        let align = |x: u64| x.div_ceil(ALIGN) * ALIGN;

        // Sections in file order: META, STRINGS, TENSORS, OPS, [LAYER_REPORT], DATA.
        let mut entries: Vec<(SectionKind, u32, u64)> = vec![
            (SectionKind::Meta, core::mem::size_of::<MetaRecord>() as u32, 1),
            (SectionKind::Strings, 1, self.strings.len() as u64),
            (SectionKind::Tensors, core::mem::size_of::<TensorRecord>() as u32, self.tensors.len() as u64),
            (SectionKind::Ops, core::mem::size_of::<OpRecord>() as u32, self.ops.len() as u64),
        ];
        if let Some((rs, count, _)) = &self.layer_report {
            entries.push((SectionKind::LayerReport, *rs, *count));
        }
        // DATA: payloads at aligned offsets relative to the section start.
        let mut data_size = 0u64;
        let mut rel = vec![0u64; self.tensors.len()];
        for (i, p) in self.payloads.iter().enumerate() {
            if let Some(p) = p {
                data_size = align(data_size);
                rel[i] = data_size;
                data_size += p.len() as u64;
            }
        }
        entries.push((SectionKind::Data, 1, data_size));

        let header_size = core::mem::size_of::<Header>() as u64;
        let table_size = entries.len() as u64 * core::mem::size_of::<SectionEntry>() as u64;
        let mut offset = align(header_size + table_size);
        let mut table = Vec::with_capacity(entries.len());
        for &(kind, record_size, count) in &entries {
            let size = count * record_size as u64;
            table.push(SectionEntry { kind: kind as u32, record_size, offset, size, count });
            offset = align(offset + size);
        }
        let file_size = offset.max(align(header_size + table_size));
        let data_offset = table.last().map(|e| e.offset).unwrap_or(0);
        for (t, r) in self.tensors.iter_mut().zip(&rel) {
            if t.kind == TensorKind::Constant as u8 {
                t.data_offset = data_offset + r;
            }
        }

        let header = Header {
            magic: MAGIC,
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            header_size: header_size as u32,
            flags: 0,
            file_size,
            section_table_offset: header_size,
            section_count: table.len() as u32,
            section_entry_size: core::mem::size_of::<SectionEntry>() as u32,
            checksum: 0,
            reserved: [0; 8],
        };
        let mut out = vec![0u8; file_size as usize];
        let put = |out: &mut Vec<u8>, at: u64, bytes: &[u8]| {
            out[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        };
        put(&mut out, 0, bytes_of(&header));
        put(&mut out, header_size, cast_slice(&table));
        for e in &table {
            match SectionKind::from_u32(e.kind) {
                Some(SectionKind::Meta) => put(&mut out, e.offset, bytes_of(&meta)),
                Some(SectionKind::Strings) => put(&mut out, e.offset, &self.strings),
                Some(SectionKind::Tensors) => put(&mut out, e.offset, cast_slice(&self.tensors)),
                Some(SectionKind::Ops) => put(&mut out, e.offset, cast_slice(&self.ops)),
                Some(SectionKind::LayerReport) => {
                    if let Some((_, _, bytes)) = &self.layer_report {
                        put(&mut out, e.offset, bytes)
                    }
                }
                Some(SectionKind::Data) => {
                    for (t, p) in self.tensors.iter().zip(&self.payloads) {
                        if let Some(p) = p {
                            put(&mut out, t.data_offset, p);
                        }
                    }
                }
                None => {}
            }
        }
        let sum = file_checksum(&out);
        out[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 8].copy_from_slice(&sum.to_le_bytes());
        Ok(out)
    }
}

/// A [`MetaRecord`] with every field zero and the tensor ids set to [`NONE`].
pub fn empty_meta() -> MetaRecord {
    let mut m = MetaRecord::zeroed();
    m.input_tensor = NONE;
    m.output_tensor = NONE;
    m
}
