//! `torch.save` files: the zip format (torch >= 1.6: `<archive>/data.pkl` plus one
//! `<archive>/data/<key>` entry per storage) and the legacy format (a sequence of pickles:
//! magic number, protocol version, system info, the object, the storage keys; then every
//! storage as an 8-byte element count followed by its raw bytes).
//!
//! The object pickle refers to storages through persistent ids
//! `('storage', torch.FloatStorage, key, location, numel[, view])` and builds tensors with
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`; both are interpreted
//! here from the inert values [`super::pickle`] produces.

use super::pickle::{self, Id, Obj, Pickle};
use super::{DType, RawTensor, StateDict};
use std::collections::HashMap;
use std::io::Read;

/// `0x1950a86a20f9469cfc6c`, the legacy format's magic number (little-endian bytes).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

/// Keys under which training scripts nest the weights, in the order they are tried.
const NEST_KEYS: &[&str] = &[
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "model_state",
    "state",
    "module",
    "ema",
    "model_ema",
];

/// A storage a tensor refers to.
#[derive(Clone, Debug)]
struct StorageRef {
    key: String,
    dtype: DType,
    /// Elements of the whole storage.
    numel: usize,
    /// Element offset of a legacy storage view inside its root storage.
    base: usize,
}

/// A tensor to rebuild from a storage.
#[derive(Clone, Debug)]
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" | "UntypedStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

fn usize_of(p: &Pickle, id: Id, what: &str) -> Result<usize, String> {
    p.int(id).and_then(|v| usize::try_from(v).ok()).ok_or_else(|| format!("{what} is {}, not a size", p.describe(id)))
}

fn sizes(p: &Pickle, id: Id, what: &str) -> Result<Vec<usize>, String> {
    let s = p.seq(id).ok_or_else(|| format!("{what} is {}, not a tuple", p.describe(id)))?;
    s.iter().map(|&d| usize_of(p, d, what)).collect()
}

/// The storage named by a persistent id tuple.
fn storage_ref(p: &Pickle, pid: Id) -> Result<StorageRef, String> {
    let t = p.seq(pid).ok_or_else(|| format!("persistent id is {}, not a tuple", p.describe(pid)))?;
    if t.len() < 5 || p.str(t[0]) != Some("storage") {
        return Err(format!("persistent id {} is not a storage reference", p.describe(pid)));
    }
    let ty = match p.global(t[1]) {
        Some((_, name)) => name.to_string(),
        None => p.str(t[1]).unwrap_or("?").to_string(),
    };
    let dtype = storage_dtype(&ty).ok_or_else(|| format!("storage type '{ty}' is not supported"))?;
    let key = p.str(t[2]).map(str::to_string).or_else(|| p.int(t[2]).map(|k| k.to_string()));
    let key = key.ok_or_else(|| format!("storage key is {}", p.describe(t[2])))?;
    let numel = usize_of(p, t[4], "storage size")?;
    let mut r = StorageRef { key, dtype, numel, base: 0 };
    // Legacy views: (view_key, offset, view_size) into the root storage `key`.
    if let Some(&v) = t.get(5) {
        if let Some(view) = p.seq(v) {
            if view.len() == 3 {
                r.base = usize_of(p, view[1], "storage view offset")?;
                let vsize = usize_of(p, view[2], "storage view size")?;
                if r.base.checked_add(vsize).is_none_or(|e| e > r.numel) {
                    return Err(format!("storage view [{}, +{vsize}) lies outside storage '{}'", r.base, r.key));
                }
            }
        }
    }
    Ok(r)
}

/// The tensor built by a `torch._utils._rebuild_*` call, `Ok(None)` if `id` is not one.
fn tensor_ref(p: &Pickle, id: Id) -> Result<Option<TensorRef>, String> {
    let Obj::Call { callable, args, .. } = p.get(id) else { return Ok(None) };
    let Some((module, name)) = p.global(*callable) else { return Ok(None) };
    let args = p.seq(*args).unwrap_or(&[]);
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            if args.len() < 4 {
                return Err(format!("{name} has {} arguments", args.len()));
            }
            let Obj::Persistent(pid) = p.get(args[0]) else {
                return Err(format!("{name}: its storage is {}, not a persistent reference", p.describe(args[0])));
            };
            let storage = storage_ref(p, *pid)?;
            let offset = usize_of(p, args[1], "storage offset")?;
            let shape = sizes(p, args[2], "tensor size")?;
            let stride = sizes(p, args[3], "tensor stride")?;
            if shape.len() != stride.len() {
                return Err(format!("size {shape:?} and stride {stride:?} differ in rank"));
            }
            Ok(Some(TensorRef { storage, offset, shape, stride }))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => match args.first() {
            Some(&a) => tensor_ref(p, a),
            None => Err(format!("{name} has no arguments")),
        },
        ("torch._utils", other) if other.starts_with("_rebuild_") => Err(format!(
            "tensors rebuilt by torch._utils.{other} (quantized, sparse or meta tensors) are not supported"
        )),
        _ => Ok(None),
    }
}

/// Items of a dict object with string keys.
fn dict_items(p: &Pickle, id: Id) -> Option<Vec<(String, Id)>> {
    let Obj::Dict(items) = p.get(id) else { return None };
    items.iter().map(|&(k, v)| p.str(k).map(|k| (k.to_string(), v))).collect()
}

/// The tensors of a dict whose values are (mostly) tensors; `None` if it is not a state dict.
fn as_state_dict(p: &Pickle, id: Id) -> Result<Option<Refs>, String> {
    let Some(items) = dict_items(p, id) else { return Ok(None) };
    let mut out = Vec::new();
    for (k, v) in &items {
        if let Some(t) = tensor_ref(p, *v).map_err(|e| format!("tensor '{k}': {e}"))? {
            out.push((k.clone(), t));
        }
    }
    if out.is_empty() || out.len() * 2 < items.len() {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Find the state dict: the root itself, or nested under a usual key (two levels at most).
/// Named tensor references of a state dict.
type Refs = Vec<(String, TensorRef)>;

fn find_state_dict(p: &Pickle, id: Id, depth: usize) -> Result<Option<(String, Refs)>, String> {
    if let Some(sd) = as_state_dict(p, id)? {
        return Ok(Some((String::new(), sd)));
    }
    if depth == 0 {
        return Ok(None);
    }
    let Some(items) = dict_items(p, id) else { return Ok(None) };
    let mut order: Vec<&(String, Id)> = Vec::new();
    for k in NEST_KEYS {
        order.extend(items.iter().filter(|(n, _)| n == k));
    }
    order.extend(items.iter().filter(|(n, _)| !NEST_KEYS.contains(&n.as_str())));
    for (k, v) in order {
        if let Some((inner, sd)) = find_state_dict(p, *v, depth - 1)? {
            let path = if inner.is_empty() { k.clone() } else { format!("{k}.{inner}") };
            return Ok(Some((path, sd)));
        }
    }
    Ok(None)
}

/// Why no state dict was found, naming what the checkpoint holds.
fn no_state_dict(p: &Pickle) -> String {
    let root = p.root;
    if let Obj::Call { callable, .. } = p.get(root) {
        return format!(
            "it holds a pickled {} object (torch.save(model)), not a state dict: save model.state_dict() instead",
            p.describe(*callable)
        );
    }
    match dict_items(p, root) {
        Some(items) if !items.is_empty() => {
            let list: Vec<String> = items.iter().map(|(k, v)| format!("'{k}' ({})", p.describe(*v))).collect();
            format!("no state dict (a dict of tensors) in it; its top-level entries are: {}", list.join(", "))
        }
        _ => format!("no state dict (a dict of tensors) in it; it holds {}", p.describe(root)),
    }
}

/// Copy a tensor out of its storage bytes (any strides) into contiguous bytes.
fn materialize(t: &TensorRef, storage: &[u8]) -> Result<RawTensor, String> {
    let es = t.storage.dtype.size();
    let numel: usize = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("size overflows")?;
    let avail = storage.len() / es;
    let mut data = Vec::with_capacity(numel * es);
    if numel > 0 {
        let first = t.storage.base.checked_add(t.offset).ok_or("offset overflows")?;
        let mut last = first;
        for (&d, &s) in t.shape.iter().zip(&t.stride) {
            last = (d - 1).checked_mul(s).and_then(|x| last.checked_add(x)).ok_or("extent overflows")?;
        }
        if last >= avail {
            return Err(format!(
                "size {:?} stride {:?} offset {} reach element {last} of storage '{}', which has {avail}",
                t.shape, t.stride, t.offset, t.storage.key
            ));
        }
        let rank = t.shape.len();
        let contiguous = {
            let mut expect = 1usize;
            let mut ok = true;
            for d in (0..rank).rev() {
                if t.shape[d] != 1 && t.stride[d] != expect {
                    ok = false;
                }
                expect *= t.shape[d];
            }
            ok
        };
        if contiguous {
            data.extend_from_slice(&storage[first * es..(first + numel) * es]);
        } else {
            let mut idx = vec![0usize; rank];
            for _ in 0..numel {
                let e = first + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
                data.extend_from_slice(&storage[e * es..(e + 1) * es]);
                for d in (0..rank).rev() {
                    idx[d] += 1;
                    if idx[d] < t.shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
    }
    Ok(RawTensor { dtype: t.storage.dtype, shape: t.shape.clone(), data })
}

fn build(
    p: &Pickle,
    format: &str,
    mut storage: impl FnMut(&StorageRef) -> Result<Vec<u8>, String>,
) -> Result<StateDict, String> {
    let (path, refs) = find_state_dict(p, p.root, 2)?.ok_or_else(|| no_state_dict(p))?;
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if !cache.contains_key(&t.storage.key) {
            let bytes = storage(&t.storage).map_err(|e| format!("tensor '{name}': {e}"))?;
            cache.insert(t.storage.key.clone(), bytes);
        }
        let raw = materialize(&t, &cache[&t.storage.key]).map_err(|e| format!("tensor '{name}': {e}"))?;
        tensors.push((name, raw));
    }
    let format = if path.is_empty() { format.to_string() } else { format!("{format}, state dict under '{path}'") };
    let mut sd = StateDict { tensors, format, stripped_prefix: String::new() };
    sd.strip_common_prefixes();
    Ok(sd)
}

/// Read a zip-format checkpoint.
pub fn load_zip(bytes: &[u8]) -> Result<StateDict, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("not a readable zip: {e}"))?;
    let pkl = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or("a zip, but without an '<archive>/data.pkl' entry: not a PyTorch checkpoint")?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str, limit: usize| -> Result<Vec<u8>, String> {
        let mut f = zip.by_name(name).map_err(|e| format!("entry '{name}': {e}"))?;
        // The sizes come from the file: reserve modestly, the reads bound the growth.
        let mut v = Vec::with_capacity((f.size() as usize).min(limit).min(64 << 20));
        f.by_ref().take(limit as u64 + 1).read_to_end(&mut v).map_err(|e| format!("entry '{name}': {e}"))?;
        if v.len() > limit {
            return Err(format!("entry '{name}' is larger than expected"));
        }
        Ok(v)
    };
    if let Ok(order) = read(&format!("{prefix}byteorder"), 64) {
        if order != b"little" {
            return Err(format!("byte order '{}' is not supported", String::from_utf8_lossy(&order)));
        }
    }
    let data = read(&pkl, 1 << 30)?;
    let (p, _) = pickle::load(&data).map_err(|e| format!("{pkl}: {e}"))?;
    build(&p, "PyTorch zip checkpoint", |s| {
        let want = s.numel.checked_mul(s.dtype.size()).ok_or("storage size overflows")?;
        let v = read(&format!("{prefix}data/{}", s.key), want)?;
        if v.len() != want {
            return Err(format!(
                "storage '{}' has {} bytes; {} {} elements need {want}",
                s.key,
                v.len(),
                s.numel,
                s.dtype.name()
            ));
        }
        Ok(v)
    })
}

/// Read a legacy (pre-1.6) checkpoint.
pub fn load_legacy(bytes: &[u8]) -> Result<StateDict, String> {
    let mut pos = 0usize;
    let mut next = |what: &str| -> Result<Pickle, String> {
        let (p, n) = pickle::load(&bytes[pos..]).map_err(|e| format!("{what} at byte {pos}: {e}"))?;
        pos += n;
        Ok(p)
    };
    let magic = next("magic number")?;
    if magic.get(magic.root) != &Obj::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err("not a PyTorch checkpoint (the legacy format's magic number is missing)".into());
    }
    let proto = next("protocol version")?;
    if proto.int(proto.root) != Some(LEGACY_PROTOCOL) {
        return Err(format!("legacy protocol {} is not supported (expected 1001)", proto.describe(proto.root)));
    }
    let info = next("system info")?;
    if let Some(items) = dict_items(&info, info.root) {
        if let Some((_, v)) = items.iter().find(|(k, _)| k == "little_endian") {
            if info.get(*v) == &Obj::Bool(false) {
                return Err("big-endian checkpoints are not supported".into());
            }
        }
    }
    let obj = next("object")?;
    let keys_p = next("storage key list")?;
    let keys: Vec<String> = keys_p
        .seq(keys_p.root)
        .ok_or("the storage key list is not a list")?
        .iter()
        .map(|&k| keys_p.str(k).map(str::to_string).ok_or_else(|| format!("storage key {}", keys_p.describe(k))))
        .collect::<Result<_, _>>()?;
    // Storages follow in key order: 8-byte element count, then the elements. The element size
    // comes from the storage type the object pickle gave each key.
    let mut types: HashMap<String, DType> = HashMap::new();
    for o in &obj.objs {
        if let Obj::Persistent(pid) = o {
            if let Ok(s) = storage_ref(&obj, *pid) {
                types.insert(s.key, s.dtype);
            }
        }
    }
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in &keys {
        let es = types.get(key).map(|d| d.size()).ok_or_else(|| format!("storage '{key}' is never used"))?;
        let head = bytes.get(pos..pos + 8).ok_or_else(|| format!("truncated: storage '{key}' is missing"))?;
        let n = u64::from_le_bytes(head.try_into().map_err(|_| "truncated")?);
        let len = usize::try_from(n).ok().and_then(|n| n.checked_mul(es)).ok_or("storage size overflows")?;
        let end = (pos + 8).checked_add(len).ok_or("storage size overflows")?;
        let body = bytes.get(pos + 8..end).ok_or_else(|| {
            format!(
                "truncated: storage '{key}' needs {len} bytes at byte {}, the file has {}",
                pos + 8,
                bytes.len().saturating_sub(pos + 8)
            )
        })?;
        storages.insert(key.clone(), body.to_vec());
        pos += 8 + len;
    }
    build(&obj, "PyTorch legacy checkpoint", |s| {
        storages.get(&s.key).cloned().ok_or_else(|| format!("storage '{}' is not in the file", s.key))
    })
}

/// Read a `torch.save` file of either format.
pub fn load(bytes: &[u8]) -> Result<StateDict, String> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        load_zip(bytes)
    } else if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        Err("a tar archive: the tar checkpoint format of torch < 0.4 is not supported (re-save it with torch.save)"
            .into())
    } else if bytes.first() == Some(&0x80) {
        load_legacy(bytes)
    } else if bytes.is_empty() {
        Err("the file is empty".into())
    } else {
        Err("neither a zip nor a pickle stream: not a PyTorch checkpoint".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn global(out: &mut Vec<u8>, module: &str, name: &str) {
        out.push(b'c');
        out.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn ints(out: &mut Vec<u8>, v: &[u8]) {
        out.push(b'(');
        for &i in v {
            out.extend([b'K', i]);
        }
        out.push(b't');
    }

    /// `_rebuild_tensor_v2(storage(key, type, numel), offset, size, stride, False, OrderedDict())`.
    fn tensor(out: &mut Vec<u8>, ty: &str, key: &str, numel: u8, offset: u8, size: &[u8], stride: &[u8]) {
        global(out, "torch._utils", "_rebuild_tensor_v2");
        out.extend(b"((");
        text(out, "storage");
        global(out, "torch", ty);
        text(out, key);
        text(out, "cpu");
        out.extend([b'K', numel, b't', b'Q', b'K', offset]);
        ints(out, size);
        ints(out, stride);
        out.push(0x89);
        global(out, "collections", "OrderedDict");
        out.extend(b")R");
        out.extend(b"tR");
    }

    /// `{'epoch': 3, 'state_dict': OrderedDict(module.w: a transposed 3x2 f32 view,
    /// module.b: element 1 of an f16 storage)}`.
    fn object_pickle() -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        text(&mut p, "epoch");
        p.extend([b'K', 3]);
        text(&mut p, "state_dict");
        global(&mut p, "collections", "OrderedDict");
        p.extend(b")R(");
        text(&mut p, "module.w");
        tensor(&mut p, "FloatStorage", "0", 6, 0, &[3, 2], &[1, 3]);
        text(&mut p, "module.b");
        tensor(&mut p, "HalfStorage", "1", 2, 1, &[1], &[1]);
        p.extend(b"uu.");
        p
    }

    fn storages() -> (Vec<u8>, Vec<u8>) {
        let f: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let h: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        (f, h)
    }

    fn check(sd: &StateDict, format: &str) {
        assert_eq!(sd.format, format!("{format}, state dict under 'state_dict'"));
        assert_eq!(sd.stripped_prefix, "module.");
        let w = sd.get("w").unwrap();
        assert_eq!(w.shape, [3, 2]);
        assert_eq!(w.to_f32().unwrap(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0], "strides are honoured");
        let b = sd.get("b").unwrap();
        assert_eq!((b.dtype, b.to_f32().unwrap()), (DType::F16, vec![-2.0]), "offsets are honoured");
    }

    fn zip_checkpoint(pkl: &[u8], f: &[u8], h: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, data) in
            [("ckpt/data.pkl", pkl), ("ckpt/byteorder", &b"little"[..]), ("ckpt/data/0", f), ("ckpt/data/1", h)]
        {
            w.start_file(name, o).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_checkpoint_with_views_nesting_and_prefix() {
        let (f, h) = storages();
        let bytes = zip_checkpoint(&object_pickle(), &f, &h);
        check(&load(&bytes).unwrap(), "PyTorch zip checkpoint");
        // A storage shorter than its pickle says is an error naming it.
        let bad = zip_checkpoint(&object_pickle(), &f[..20], &h);
        let e = load(&bad).unwrap_err();
        assert!(e.contains("storage '0'") && e.contains("module.w"), "{e}");
    }

    #[test]
    fn legacy_checkpoint_with_views_nesting_and_prefix() {
        let (f, h) = storages();
        let mut b = vec![0x80, 2, 0x8a, 10];
        b.extend(LEGACY_MAGIC);
        b.extend([b'.', 0x80, 2, b'M', 0xe9, 0x03, b'.', 0x80, 2, b'}', b'(']);
        text(&mut b, "little_endian");
        b.extend([0x88, b'u', b'.']);
        b.extend(object_pickle());
        b.extend([0x80, 2, b'(']);
        text(&mut b, "0");
        text(&mut b, "1");
        b.extend(b"l.");
        b.extend(6u64.to_le_bytes());
        b.extend(&f);
        b.extend(2u64.to_le_bytes());
        b.extend(&h);
        check(&load(&b).unwrap(), "PyTorch legacy checkpoint");
        for cut in 0..b.len() {
            assert!(load(&b[..cut]).is_err(), "truncated to {cut} bytes");
        }
    }

    #[test]
    fn files_without_a_state_dict_say_what_they_hold() {
        let mut p = vec![0x80, 2, b'}', b'('];
        text(&mut p, "epoch");
        p.extend([b'K', 3, b'u', b'.']);
        let e = load(&zip_checkpoint(&p, b"", b"")).unwrap_err();
        assert!(e.contains("'epoch' (3)"), "{e}");
        let mut p = vec![0x80, 2];
        global(&mut p, "torchvision.models.resnet", "ResNet");
        p.extend(b")\x81.");
        let e = load(&zip_checkpoint(&p, b"", b"")).unwrap_err();
        assert!(e.contains("torchvision.models.resnet.ResNet") && e.contains("state_dict()"), "{e}");
    }
}
