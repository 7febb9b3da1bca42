//! A small pickle virtual machine for the opcode subset `torch.save` emits (protocols 2-5).
//!
//! Why not `serde-pickle`: it has no persistent-id support (BINPERSID/PERSID are rejected as
//! unsupported opcodes), and it can only replace unknown globals such as
//! `torch._utils._rebuild_tensor_v2` by `None`, which loses the storage/offset/shape/stride
//! arguments of every tensor. A checkpoint's tensors exist only through exactly those two
//! mechanisms, so the reader below keeps both as data: globals are `(module, name)` values,
//! `REDUCE`/`NEWOBJ` build inert call records, and persistent ids stay as their tuples. Nothing
//! is ever executed or imported; the torch-specific meaning is given afterwards by
//! [`super::checkpoint`].
//!
//! Objects live in an arena and the stack and memo hold indices, which gives Python's reference
//! semantics (a dict memoized before `SETITEMS` fills it is seen filled through the memo)
//! without reference counting.

use std::fmt;

/// Index of an object in [`Pickle::objs`].
pub type Id = usize;

/// A pickled object, inert.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit i64: little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    /// Insertion-ordered (also `collections.OrderedDict`).
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    /// `module.name`, never resolved.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` (REDUCE, NEWOBJ), with the BUILD state if any.
    Call {
        callable: Id,
        args: Id,
        state: Option<Id>,
    },
    /// A persistent reference: the pid object (for torch, a tuple naming a storage).
    Persistent(Id),
}

/// Why a pickle could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickleError {
    /// Byte offset of the opcode that failed.
    pub offset: usize,
    pub msg: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.msg)
    }
}

/// Guard against hostile inputs: no pickle a checkpoint needs comes near these.
const MAX_OBJS: usize = 50_000_000;

/// The result of reading one pickle: every object, and the root.
#[derive(Clone, Debug, Default)]
pub struct Pickle {
    pub objs: Vec<Obj>,
    pub root: Id,
}

impl Pickle {
    pub fn get(&self, id: Id) -> &Obj {
        &self.objs[id]
    }

    /// The string value of `id`, if it is one.
    pub fn str(&self, id: Id) -> Option<&str> {
        match &self.objs[id] {
            Obj::Str(s) => Some(s),
            Obj::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn int(&self, id: Id) -> Option<i64> {
        match self.objs[id] {
            Obj::Int(i) => Some(i),
            Obj::Bool(b) => Some(b as i64),
            _ => None,
        }
    }

    /// Elements of a tuple or list.
    pub fn seq(&self, id: Id) -> Option<&[Id]> {
        match &self.objs[id] {
            Obj::Tuple(v) | Obj::List(v) => Some(v),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn global(&self, id: Id) -> Option<(&str, &str)> {
        match &self.objs[id] {
            Obj::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// A short description for error messages.
    pub fn describe(&self, id: Id) -> String {
        match &self.objs[id] {
            Obj::None => "None".into(),
            Obj::Bool(b) => b.to_string(),
            Obj::Int(i) => i.to_string(),
            Obj::BigInt(_) => "a big integer".into(),
            Obj::Float(f) => f.to_string(),
            Obj::Str(s) => format!("'{s}'"),
            Obj::Bytes(b) => format!("{} bytes", b.len()),
            Obj::Tuple(v) => format!("a tuple of {}", v.len()),
            Obj::List(v) => format!("a list of {}", v.len()),
            Obj::Dict(v) => format!("a dict of {}", v.len()),
            Obj::Set(v) => format!("a set of {}", v.len()),
            Obj::Global { module, name } => format!("{module}.{name}"),
            Obj::Call { callable, .. } => format!("a {} object", self.describe(*callable)),
            Obj::Persistent(_) => "a persistent reference".into(),
        }
    }
}

enum Slot {
    Mark,
    Obj(Id),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    objs: Vec<Obj>,
    stack: Vec<Slot>,
    /// Sparse: indices come from the file.
    memo: std::collections::HashMap<usize, Id>,
}

impl<'a> Vm<'a> {
    fn err(&self, msg: impl Into<String>) -> PickleError {
        PickleError { offset: self.op_at, msg: msg.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            self.err(format!("truncated: an argument of {n} bytes runs past the end ({} bytes)", self.data.len()))
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&c| c == b'\n').ok_or_else(|| self.err("truncated: unterminated text line"))?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| self.err("text argument is not UTF-8"))
    }

    fn new_obj(&mut self, o: Obj) -> Result<Id, PickleError> {
        if self.objs.len() >= MAX_OBJS {
            return Err(self.err("too many objects"));
        }
        self.objs.push(o);
        Ok(self.objs.len() - 1)
    }

    fn push(&mut self, o: Obj) -> Result<(), PickleError> {
        let id = self.new_obj(o)?;
        self.stack.push(Slot::Obj(id));
        Ok(())
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        match self.stack.pop() {
            Some(Slot::Obj(id)) => Ok(id),
            Some(Slot::Mark) => Err(self.err("unexpected mark on the stack")),
            None => Err(self.err("stack underflow")),
        }
    }

    fn top(&self) -> Result<Id, PickleError> {
        match self.stack.last() {
            Some(Slot::Obj(id)) => Ok(*id),
            Some(Slot::Mark) => Err(self.err("unexpected mark on the stack")),
            None => Err(self.err("stack underflow")),
        }
    }

    /// Pop everything down to the topmost mark (removed too).
    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let k =
            self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| self.err("no mark on the stack"))?;
        let items = self
            .stack
            .drain(k..)
            .skip(1)
            .map(|s| match s {
                Slot::Obj(id) => id,
                Slot::Mark => unreachable!("rposition found the topmost mark"),
            })
            .collect();
        self.stack.truncate(k);
        Ok(items)
    }

    fn memo_put(&mut self, idx: usize) -> Result<(), PickleError> {
        let id = self.top()?;
        self.memo.insert(idx, id);
        Ok(())
    }

    fn memo_get(&mut self, idx: usize) -> Result<(), PickleError> {
        let id = self.memo.get(&idx).copied().ok_or_else(|| self.err(format!("memo {idx} is not set")))?;
        self.stack.push(Slot::Obj(id));
        Ok(())
    }

    fn long(&mut self, bytes: &[u8]) -> Result<(), PickleError> {
        if bytes.len() <= 8 {
            let mut v: i64 = 0;
            for (i, &b) in bytes.iter().enumerate() {
                v |= (b as i64) << (8 * i);
            }
            if !bytes.is_empty() && bytes.len() < 8 && bytes[bytes.len() - 1] & 0x80 != 0 {
                v -= 1i64 << (8 * bytes.len());
            }
            self.push(Obj::Int(v))
        } else {
            self.push(Obj::BigInt(bytes.to_vec()))
        }
    }

    fn append(&mut self, list: Id, items: Vec<Id>) -> Result<(), PickleError> {
        match &mut self.objs[list] {
            Obj::List(v) | Obj::Set(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(self.err("APPEND(S)/ADDITEMS target is not a list or set")),
        }
    }

    fn set_items(&mut self, dict: Id, items: Vec<Id>) -> Result<(), PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let pairs: Vec<(Id, Id)> = items.chunks(2).map(|c| (c[0], c[1])).collect();
        let Obj::Dict(v) = &mut self.objs[dict] else {
            return Err(self.err("SETITEM(S) target is not a dict"));
        };
        // Python semantics: a repeated key replaces the earlier value. Keys here are strings
        // (state dicts), compared after the fact by the checkpoint reader, so just append.
        v.extend(pairs);
        Ok(())
    }

    fn reduce(&mut self, callable: Id, args: Id) -> Result<(), PickleError> {
        // `collections.OrderedDict()` (and `dict()`) must be real dicts: SETITEMS fills them.
        if let Obj::Global { module, name } = &self.objs[callable] {
            let is_dict = matches!(
                (module.as_str(), name.as_str()),
                ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict")
            );
            let empty_args = matches!(&self.objs[args], Obj::Tuple(v) if v.is_empty());
            if is_dict && empty_args {
                return self.push(Obj::Dict(Vec::new()));
            }
        }
        self.push(Obj::Call { callable, args, state: None })
    }

    fn run(&mut self) -> Result<Pickle, PickleError> {
        loop {
            self.op_at = self.pos;
            let op = self.u8().map_err(|_| self.err("truncated: the pickle ends before its STOP opcode"))?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: the length is advisory.
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Pickle { objs: std::mem::take(&mut self.objs), root });
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop().ok_or_else(|| self.err("stack underflow"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(Slot::Obj(t));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Obj::Int(v as i64))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i64))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(v as i64))?;
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.long(b)?;
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.long(b)?;
                }
                b'I' | b'L' => {
                    let line = self.line()?.trim_end_matches('L');
                    let o = match line {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        s => Obj::Int(s.parse().map_err(|_| self.err(format!("bad integer literal '{s}'")))?),
                    };
                    self.push(o)?;
                }
                b'N' => self.push(Obj::None)?,
                0x88 => self.push(Obj::Bool(true))?,
                0x89 => self.push(Obj::Bool(false))?,
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Obj::Float(f64::from_be_bytes(a)))?;
                }
                b'F' => {
                    let line = self.line()?;
                    let v = line.parse().map_err(|_| self.err(format!("bad float literal '{line}'")))?;
                    self.push(Obj::Float(v))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as usize,
                        0x8c => self.u8()? as usize,
                        _ => usize::try_from(self.u64()?).map_err(|_| self.err("string too long"))?,
                    };
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?;
                    self.push(Obj::Str(s.to_string()))?;
                }
                b'V' => {
                    let s = self.line()?.to_string();
                    self.push(Obj::Str(s))?;
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'T' | b'B' => self.u32()? as usize,
                        b'U' | b'C' => self.u8()? as usize,
                        _ => usize::try_from(self.u64()?).map_err(|_| self.err("bytes too long"))?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(b))?;
                }
                b')' => self.push(Obj::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items))?;
                }
                b']' => self.push(Obj::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.append(list, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.append(list, items)?;
                }
                b'}' => self.push(Obj::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let id = self.new_obj(Obj::Dict(Vec::new()))?;
                    self.set_items(id, items)?;
                    self.stack.push(Slot::Obj(id));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.set_items(d, items)?;
                }
                0x8f => self.push(Obj::Set(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    let s = self.top()?;
                    self.append(s, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Set(items))?;
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push(Obj::Global { module, name })?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Obj::Str(m), Obj::Str(n)) = (&self.objs[module], &self.objs[name]) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let g = Obj::Global { module: m.clone(), name: n.clone() };
                    self.push(g)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.reduce(callable, args)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.reduce(cls, args)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.reduce(cls, args)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    // State on a dict (an OrderedDict's `_metadata`) carries nothing we need.
                    if let Obj::Call { state: s, .. } = &mut self.objs[target] {
                        *s = Some(state);
                    }
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.memo_put(i)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let i = line.parse().map_err(|_| self.err(format!("bad memo index '{line}'")))?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.memo_get(i)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let i = line.parse().map_err(|_| self.err(format!("bad memo index '{line}'")))?;
                    self.memo_get(i)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Obj::Persistent(pid))?;
                }
                b'P' => {
                    let s = self.line()?.to_string();
                    let pid = self.new_obj(Obj::Str(s))?;
                    self.push(Obj::Persistent(pid))?;
                }
                other => {
                    return Err(self.err(format!(
                        "opcode 0x{other:02x} is not one that PyTorch checkpoints use (not a checkpoint, or corrupt)"
                    )))
                }
            }
        }
    }
}

/// Read one pickle from the start of `data`; returns it and the number of bytes it took.
pub fn load(data: &[u8]) -> Result<(Pickle, usize), PickleError> {
    let mut vm = Vm { data, pos: 0, op_at: 0, objs: Vec::new(), stack: Vec::new(), memo: Default::default() };
    let p = vm.run()?;
    Ok((p, vm.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dicts_tuples_memo_and_persistent_ids() {
        // pickle.dumps({'a': (1, -2, 'x'), 'b': [3.5]}, protocol=2) with a persistent id.
        // Built by hand: PROTO 2, EMPTY_DICT, BINPUT 0, MARK, 'a', (K1 J-2 'x' TUPLE3),
        // 'b', EMPTY_LIST BINPUT 1 MARK G3.5 APPENDS, 'p', ('storage',) BINPERSID, SETITEMS, STOP
        let mut d = vec![0x80, 2, b'}', b'q', 0, b'('];
        d.extend([b'X', 1, 0, 0, 0, b'a']);
        d.extend([b'K', 1, b'J']);
        d.extend((-2i32).to_le_bytes());
        d.extend([0x8c, 1, b'x', 0x87]);
        d.extend([b'X', 1, 0, 0, 0, b'b', b']', b'q', 1, b'(', b'G']);
        d.extend(3.5f64.to_be_bytes());
        d.extend([b'e']);
        d.extend([b'X', 1, 0, 0, 0, b'p', 0x8c, 7]);
        d.extend(b"storage");
        d.extend([0x85, b'Q', b'u', b'.']);
        let (p, n) = load(&d).unwrap();
        assert_eq!(n, d.len());
        let Obj::Dict(items) = p.get(p.root) else { panic!("root is {:?}", p.get(p.root)) };
        assert_eq!(items.len(), 3);
        assert_eq!(p.str(items[0].0), Some("a"));
        let t = p.seq(items[0].1).unwrap();
        assert_eq!((p.int(t[0]), p.int(t[1]), p.str(t[2])), (Some(1), Some(-2), Some("x")));
        assert_eq!(p.get(p.seq(items[1].1).unwrap()[0]), &Obj::Float(3.5));
        let Obj::Persistent(pid) = p.get(items[2].1) else { panic!() };
        assert_eq!(p.str(p.seq(*pid).unwrap()[0]), Some("storage"));
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let good = [0x80, 2, b'K', 7, b'.'];
        assert_eq!(load(&good).unwrap().0.objs, vec![Obj::Int(7)]);
        for n in 0..good.len() {
            assert!(load(&good[..n]).is_err(), "prefix {n}");
        }
        assert!(load(b"\xff\xfe garbage").is_err());
        assert!(load(b".").is_err(), "STOP on an empty stack");
        assert!(load(b"(u.").is_err(), "SETITEMS without a dict");
        assert!(load(&[b'j', 9, 0, 0, 0]).is_err(), "unset memo");
    }

    #[test]
    fn long1_handles_sign_and_big_values() {
        let (p, _) = load(&[0x8a, 1, 0xff, b'.']).unwrap();
        assert_eq!(p.get(p.root), &Obj::Int(-1));
        let (p, _) = load(&[0x8a, 2, 0xff, 0x00, b'.']).unwrap();
        assert_eq!(p.get(p.root), &Obj::Int(255));
        let (p, _) = load(&[0x8a, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, b'.']).unwrap();
        assert_eq!(p.get(p.root), &Obj::BigInt(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    }
}
