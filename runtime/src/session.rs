//! A session: one inference context over a shared [`Model`]. It owns the activation arena,
//! the scratch buffer and (for more than one thread) a static thread team
//! ([`crate::team::Team`]), all allocated in [`Session::new`]; [`Session::run`] allocates
//! nothing and takes no locks of its own.
//!
//! Threads: the ops run on the caller's thread; a kernel's parallel loop hands one statically
//! computed share to each of the team's `threads - 1` parked workers and runs share 0 itself
//! (rayon, used before, allocated now and then inside its deques under contention; see
//! `team.rs`).

use crate::error::{Error, Result};
use crate::format::{DType, Layout};
use crate::kernels::Isa;
use crate::model::{Model, Parts, Src};
use crate::ops::RunCtx;
use crate::team::Team;
use std::time::Instant;

/// Session options: `Options::default().threads(2).max_isa(Isa::Generic)`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    threads: usize,
    max_isa: Option<Isa>,
    keep_intermediates: bool,
    /// Int8 Winograd turned off (the default, `false`, means on).
    no_int8_winograd: bool,
}

impl Options {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of threads; 0 (the default) = one per physical core ([`physical_cores`]).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Use kernels of at most this tier (on top of `RESQ_MAX_ISA`).
    pub fn max_isa(mut self, isa: Isa) -> Self {
        self.max_isa = Some(isa);
        self
    }

    /// Give every activation its own memory so that [`Session::tensor`] can read any of them
    /// after a run (calibration, per-layer error reports, debugging). Costs arena memory
    /// (the sum of all activations instead of the peak); results are identical.
    pub fn keep_intermediates(mut self, keep: bool) -> Self {
        self.keep_intermediates = keep;
        self
    }

    /// Run the int8 3x3 convolutions that have Winograd F(2x2,3x3) weights (built at load,
    /// AVX2 tier only) with them (`true`, the default) or with the direct kernel (`false`).
    /// The output bytes are identical either way; only speed differs.
    pub fn int8_winograd(mut self, on: bool) -> Self {
        self.no_int8_winograd = !on;
        self
    }
}

/// An activation read back from a session after [`Session::run`].
#[derive(Clone, Debug)]
pub struct TensorData<'a> {
    pub id: u32,
    pub name: &'a str,
    pub dtype: DType,
    pub layout: Layout,
    /// Physical dims of `layout`.
    pub dims: &'a [usize],
    /// Quantization of int8 tensors (0 / 0 otherwise).
    pub scale: f32,
    pub zero_point: i32,
    /// The raw elements, little-endian, `dtype`-sized.
    pub bytes: &'a [u8],
}

impl TensorData<'_> {
    /// The values as f32 in physical order: int8 dequantized (`(q - zero_point) * scale`),
    /// f16 widened, i32 converted, f32 copied.
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => bytemuck::cast_slice::<u8, f32>(self.bytes).to_vec(),
            DType::F16 => self.bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::I8 => self.bytes.iter().map(|&b| ((b as i8 as i32 - self.zero_point) as f32) * self.scale).collect(),
            DType::U8 => self.bytes.iter().map(|&b| ((b as i32 - self.zero_point) as f32) * self.scale).collect(),
            DType::I32 => bytemuck::cast_slice::<u8, i32>(self.bytes).iter().map(|&v| v as f32).collect(),
        }
    }
}

/// 16 f32, 64-byte aligned: the unit of arena and scratch buffers.
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Block([f32; 16]);

/// One inference context. Create with [`Model::session`].
pub struct Session<'m> {
    model: &'m Model,
    arena: Vec<Block>,
    scratch: Vec<Block>,
    isa: Isa,
    threads: usize,
    team: Option<Team>,
    keep: bool,
    int8_winograd: bool,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("isa", &self.isa).field("threads", &self.threads).finish_non_exhaustive()
    }
}

/// Physical cores available to this process: on Linux, the distinct (package, core) pairs of
/// the online CPUs (capped by `available_parallelism()`, which honours affinity and cgroup
/// limits), read from `/sys/devices/system/cpu/cpuN/topology` (SMT
/// siblings share a core's FMA units, so a second thread per core only adds contention to
/// these compute-bound kernels); elsewhere, or when that fails,
/// `std::thread::available_parallelism()`. Read once per process.
pub fn physical_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        linux_physical_cores().filter(|&n| n >= 1).map_or(logical, |n| n.min(logical))
    })
}

#[cfg(target_os = "linux")]
fn linux_physical_cores() -> Option<usize> {
    let read = |cpu: usize, f: &str| {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/topology/{f}"))
            .ok()?
            .trim()
            .parse::<i64>()
            .ok()
    };
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    let mut cores = std::collections::BTreeSet::new();
    for range in online.trim().split(',') {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
        for cpu in a..=b.min(a + 4096) {
            cores.insert((read(cpu, "physical_package_id")?, read(cpu, "core_id")?));
        }
    }
    Some(cores.len())
}

#[cfg(not(target_os = "linux"))]
fn linux_physical_cores() -> Option<usize> {
    None
}

impl<'m> Session<'m> {
    pub(crate) fn new(model: &'m Model, options: Options) -> Result<Session<'m>> {
        let threads = match options.threads {
            0 => physical_cores(),
            n => n,
        };
        let isa = match options.max_isa {
            Some(cap) => Isa::detect().capped(cap),
            None => Isa::detect(),
        }
        .implemented();
        let scratch_len = model.ops.iter().map(|o| o.scratch_len(threads)).max().unwrap_or(0);
        let team = if threads > 1 {
            Some(Team::new(threads).map_err(|e| Error::ThreadPool { threads, what: e.to_string() })?)
        } else {
            None
        };
        let keep = options.keep_intermediates;
        let parts = if keep { &model.parts_kept } else { &model.parts };
        Ok(Session {
            model,
            arena: blocks(parts.arena_bytes.div_ceil(4), "activation arena")?,
            scratch: blocks(scratch_len, "scratch buffer")?,
            isa,
            threads,
            team,
            keep,
            int8_winograd: !options.no_int8_winograd,
        })
    }

    /// Run one inference. `input` holds `model.input_len()` f32 values in the model's input
    /// layout (NCHW for converted ONNX models); returns `model.output_len()` values.
    pub fn run(&mut self, input: &[f32]) -> Result<&[f32]> {
        self.run_inner(input, None)
    }

    /// [`Session::run`], also storing each op's wall time in seconds into `per_op_seconds`
    /// (length `model.ops().len()`).
    pub fn run_profiled(&mut self, input: &[f32], per_op_seconds: &mut [f64]) -> Result<&[f32]> {
        if per_op_seconds.len() != self.model.ops.len() {
            return Err(Error::Buffer {
                what: "per_op_seconds",
                expected: self.model.ops.len(),
                found: per_op_seconds.len(),
            });
        }
        self.run_inner(input, Some(per_op_seconds))
    }

    fn run_inner(&mut self, input: &[f32], prof: Option<&mut [f64]>) -> Result<&[f32]> {
        let model = self.model;
        if input.len() != model.input_len() {
            return Err(Error::Input { expected: model.input_len(), found: input.len() });
        }
        let isa = self.isa;
        let parts = self.parts();
        let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut self.arena);
        let scratch: &mut [f32] = bytemuck::cast_slice_mut(&mut self.scratch);
        exec(model, parts, arena, scratch, input, self.team.as_ref(), isa, self.int8_winograd, prof);
        let (o, n) = parts.output_slot;
        Ok(bytemuck::cast_slice(&bytemuck::cast_slice::<Block, u8>(&self.arena)[o..o + n]))
    }

    fn parts(&self) -> &'m Parts {
        if self.keep {
            &self.model.parts_kept
        } else {
            &self.model.parts
        }
    }

    /// Activation `id` as left by the last [`Session::run`]: any activation when the session
    /// was made with [`Options::keep_intermediates`], otherwise only the graph output (other
    /// activations, the input included, share memory and are overwritten during a run). `None` for
    /// constants, unknown ids and tensors not kept.
    pub fn tensor(&self, id: u32) -> Option<TensorData<'_>> {
        let model = self.model;
        let info = model.tensor_info(id)?;
        let parts = self.parts();
        let (off, len) = (*parts.slots.get(id as usize)?)?;
        if !self.keep && id != parts.output_id {
            return None;
        }
        Some(TensorData {
            id,
            name: &info.name,
            dtype: info.dtype,
            layout: info.layout,
            dims: &info.dims,
            scale: info.scale,
            zero_point: info.zero_point,
            bytes: &bytemuck::cast_slice::<Block, u8>(&self.arena)[off..off + len],
        })
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }
}

/// A zeroed buffer of at least `len` f32; an error (not an abort) if it cannot be allocated.
fn blocks(len: usize, what: &'static str) -> Result<Vec<Block>> {
    let n = len.div_ceil(16);
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory { what, bytes: n as u64 * 64 })?;
    v.resize(n, Block([0.0; 16]));
    Ok(v)
}

/// Run every op of `model` in order over `arena`.
#[allow(clippy::too_many_arguments)]
fn exec(
    model: &Model,
    parts: &Parts,
    arena: &mut [u8],
    scratch: &mut [f32],
    input: &[f32],
    pool: Option<&Team>,
    isa: Isa,
    int8_winograd: bool,
    mut prof: Option<&mut [f64]>,
) {
    let (io, il) = parts.input_slot;
    arena[io..io + il].copy_from_slice(bytemuck::cast_slice(input));
    let mut ctx = RunCtx { pool, isa, scratch, int8_winograd };
    for (i, op) in model.ops.iter().enumerate() {
        let t0 = prof.is_some().then(Instant::now);
        let (oo, ol) = parts.dsts[i];
        // The planner guarantees an op's output range is disjoint from its inputs' ranges,
        // so every arena input lies entirely below or entirely above the output.
        let (lo, rest) = arena.split_at_mut(oo);
        let (out, hi) = rest.split_at_mut(ol);
        let (lo, hi, hi_base): (&[u8], &[u8], usize) = (lo, hi, oo + ol);
        let get = |s: Src| -> &[u8] {
            match s {
                Src::None => &[],
                Src::Arena { off, len } if off + len <= oo => &lo[off..off + len],
                Src::Arena { off, len } => &hi[off - hi_base..off - hi_base + len],
                Src::Const { off, len } => model.const_bytes(off, len),
            }
        };
        let s = &parts.srcs[i];
        let ins = [get(s[0]), get(s[1]), get(s[2]), get(s[3])];
        op.run(&ins, out, &mut ctx);
        if let (Some(t0), Some(p)) = (t0, prof.as_deref_mut()) {
            p[i] = t0.elapsed().as_secs_f64();
        }
    }
}

#[cfg(test)]
mod core_count_tests {
    #[test]
    fn physical_cores_is_between_one_and_the_logical_count() {
        let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let physical = super::physical_cores();
        assert!((1..=logical).contains(&physical), "{physical} physical of {logical} logical");
        #[cfg(target_os = "linux")]
        if let Some(n) = super::linux_physical_cores() {
            assert!(n >= 1);
        }
    }
}
