//! Int8 ops (format 1.2, `docs/FORMAT.md` §13): Conv2d and Linear on PackedN16K4 weights with
//! the fixed-point requantising epilogue, Quantize and Dequantize. (Int8 pools, Add and the
//! data-movement ops live with their f32 forms.) Every check the kernels' contracts rely on
//! is made here, at load: a file that passes gives the same bytes on every CPU.

use super::conv::geometry;
use super::{Checker, Desc, OpImpl, PreparedOp, RunCtx};
use crate::error::Result;
use crate::format::{ActParams, ConvParams, DType, Layout};
use crate::kernels::gemm::ConvGeom;
use crate::kernels::int8::{self, pack::packed_n16k4_len, winograd, QEpilogue};
use crate::kernels::Isa;
use std::sync::Arc;

/// The largest reduction length of an int8 conv/linear: `K * 128 * 127 < 2^31`, so the
/// i32 accumulator is exact in any summation order.
pub const MAX_K: usize = 131_072;

#[derive(Clone, Debug)]
pub struct QConv {
    pub shape: ConvGeom,
    pub z_x: i32,
    pub z_res: i32,
    pub z_y: i32,
    pub qmin: i32,
    pub qmax: i32,
    pub has_residual: bool,
    /// Winograd F(2x2,3x3) weights, built at load for the layers [`prefer_winograd_i8`]
    /// picks (used by sessions on the AVX2 tier with [`crate::Options::int8_winograd`] on).
    pub wino: Option<WinoWeights>,
}

/// Transformed int8 Winograd weights (`kernels::int8::winograd` layout), owned by the op and
/// shared by every session of the model. Debug prints only the size.
#[derive(Clone)]
pub struct WinoWeights(pub Arc<[i16]>);

impl std::fmt::Debug for WinoWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WinoWeights({} bytes)", self.0.len() * 2)
    }
}

/// Whether an int8 conv of geometry `g` gets Winograd F(2x2,3x3) weights at load (when the
/// process's CPU tier can run them): a [`winograd::supported`] layer (3x3, stride 1, one
/// group) with at least 16 input and 16 output channels whose output is at least 14x14, or
/// whose transformed weights take at most [`WINO_SMALL_BYTES`].
///
/// Measured on the dev box (2-core AMD EPYC Zen 3, ~2.45 GHz, shared with other jobs), one
/// thread, `conv2d_i8` vs `conv2d_i8_wino` on ResNet layer shapes (padding 1), medians of 15:
/// 64@56x56 1.85 vs 0.99 ms, 128@28x28 1.72 vs 0.92, 256@14x14 1.64 vs 0.90 (x1.8-1.9);
/// 512@7x7 1.58 vs 1.19 (x1.3; x1.0 in later runs on the loaded box: 16 tiles of which 7
/// are partial, and 8 MiB of transformed weights per layer streamed from L3 for them);
/// ResNet-20's 16@32x32 x1.44, 32@16x16 x1.33, 64@8x8 x1.73 (128 KiB of weights). In the
/// whole ResNet-50 int8 model the eleven 56/28/14 layers went from 18.4 to 9.9 ms (medians
/// of 50, 1 thread). The transformed weights are 3.6x the int8 ones, so the small-output
/// layers only get them when they are small: ResNet-50's three 512@7x7 layers (25 MiB) stay
/// direct; the eleven that get them add 12,451,840 bytes of heap.
pub fn prefer_winograd_i8(g: &ConvGeom) -> bool {
    let small = winograd::transformed_len(g.out_c, g.in_c).is_some_and(|l| l * 2 <= WINO_SMALL_BYTES);
    winograd::supported(g) && g.in_c >= 16 && g.out_c >= 16 && ((g.out_h >= 14 && g.out_w >= 14) || small)
}

/// Transformed-weight bytes below which a layer gets Winograd whatever its output size.
pub const WINO_SMALL_BYTES: usize = 1 << 20;

impl QConv {
    /// True if this run takes the Winograd path.
    fn use_wino(&self, ctx: &RunCtx) -> bool {
        self.wino.is_some() && ctx.int8_winograd && winograd::available(ctx.isa)
    }

    pub(crate) fn scratch_len(&self, threads: usize) -> usize {
        let direct = int8::conv2d_i8_scratch_len(&self.shape, threads);
        match self.wino {
            Some(_) => direct.max(winograd::conv2d_i8_wino_scratch_len(&self.shape, threads)),
            None => direct,
        }
    }

    pub(crate) fn run(&self, ins: &[&[u8]; 4], y: &mut [u8], ctx: &mut RunCtx) {
        let ep = QEpilogue {
            qparams: bytemuck::cast_slice(ins[2]),
            residual: self.has_residual.then(|| bytemuck::cast_slice(ins[3])),
            z_res: self.z_res,
            z_y: self.z_y,
            qmin: self.qmin,
            qmax: self.qmax,
        };
        let x = bytemuck::cast_slice(ins[0]);
        let y = bytemuck::cast_slice_mut(y);
        if let (true, Some(u)) = (self.use_wino(ctx), &self.wino) {
            winograd::conv2d_i8_wino(ctx.isa, &self.shape, x, self.z_x, &u.0, &ep, y, ctx.scratch, ctx.pool);
            return;
        }
        let w = bytemuck::cast_slice(ins[1]);
        int8::conv2d_i8(ctx.isa, &self.shape, x, self.z_x, w, &ep, y, ctx.scratch, ctx.pool)
    }
}

#[derive(Clone, Debug)]
pub struct QLinear {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub z_y: i32,
    pub qmin: i32,
    pub qmax: i32,
}

impl QLinear {
    pub(crate) fn scratch_len(&self, threads: usize) -> usize {
        int8::linear_i8_scratch_len(self.m, self.k, self.n, threads)
    }

    pub(crate) fn run(&self, ins: &[&[u8]; 4], y: &mut [u8], ctx: &mut RunCtx) {
        let ep = QEpilogue {
            qparams: bytemuck::cast_slice(ins[2]),
            residual: None,
            z_res: 0,
            z_y: self.z_y,
            qmin: self.qmin,
            qmax: self.qmax,
        };
        let (x, w) = (bytemuck::cast_slice(ins[0]), bytemuck::cast_slice(ins[1]));
        let y = bytemuck::cast_slice_mut(y);
        int8::linear_i8(ctx.isa, self.m, self.k, self.n, x, w, &ep, y, ctx.scratch, ctx.pool)
    }
}

/// Quantize (f32 -> i8) or Dequantize (i8 -> f32) with the int8 side's scale and zero point.
#[derive(Clone, Debug)]
pub struct Requantize {
    pub scale: f32,
    pub zero_point: i32,
}

impl Requantize {
    pub(crate) fn run_quantize(&self, x: &[u8], y: &mut [u8], ctx: &RunCtx) {
        int8::quantize_f32_i8(
            ctx.isa,
            bytemuck::cast_slice(x),
            self.scale,
            self.zero_point,
            bytemuck::cast_slice_mut(y),
        )
    }

    pub(crate) fn run_dequantize(&self, x: &[u8], y: &mut [u8], ctx: &RunCtx) {
        int8::dequantize_i8_f32(
            ctx.isa,
            bytemuck::cast_slice(x),
            self.scale,
            self.zero_point,
            bytemuck::cast_slice_mut(y),
        )
    }
}

impl Checker<'_, '_> {
    /// A required input of `dtype`.
    pub fn input_of(&self, slot: usize, role: &str, dtype: DType) -> Result<Desc> {
        let Some(d) = self.input(slot) else { return self.fail(format!("input {slot} ({role}) is missing")) };
        self.need_dtype(&d, role, dtype)?;
        Ok(d)
    }

    /// The output, of `dtype`.
    pub fn output_of(&self, dtype: DType) -> Result<Desc> {
        let Some(d) = self.output() else { return self.fail("output is missing") };
        self.need_dtype(&d, "output", dtype)?;
        Ok(d)
    }

    pub fn need_dtype(&self, d: &Desc, role: &str, dtype: DType) -> Result<()> {
        if d.dtype != dtype {
            return self.fail(format!("{role} {} is {:?}, expected {dtype:?}", self.v.tensor_label(d.id), d.dtype));
        }
        Ok(())
    }

    /// `(qmin, qmax)` of an int8 op: inside [-128, 127] and ordered.
    pub fn qclamp(&self, qmin: i32, qmax: i32) -> Result<(i32, i32)> {
        if !(-128..=127).contains(&qmin) || !(-128..=127).contains(&qmax) || qmin > qmax {
            return self.fail(format!("int8 clamp [{qmin}, {qmax}] is not an ordered range inside [-128, 127]"));
        }
        Ok((qmin, qmax))
    }

    /// A fixed-point multiplier: `mult` in [0, 2^31 - 1] (any i32 >= 0), `shift` in [1, 62].
    pub fn need_multiplier(&self, mult: i32, shift: u32, what: &str) -> Result<()> {
        if mult < 0 || !(1..=62).contains(&shift) {
            return self
                .fail(format!("{what}: multiplier {mult} / shift {shift} out of range ([0, 2^31-1] / [1, 62])"));
        }
        Ok(())
    }

    /// Int8 weights: PackedN16K4 of logical `[o, kh, kw, ig]` (a rank-2 `[o, ig]` for Linear,
    /// with kh = kw = 1) with `groups`, every value in [-127, 127] (the exactness proofs of the
    /// vpmaddubsw / smull+smlal kernels need it).
    fn int8_weights(&self, w: &Desc, [o, kh, kw, ig]: [usize; 4], groups: usize) -> Result<()> {
        self.need_constant(w, "weight")?;
        self.need_layout(w, "weight", &[Layout::PackedN16K4])?;
        let dims: &[usize] = if w.dims.len() == 2 { &[o, ig] } else { &[o, kh, kw, ig] };
        self.need_dims(w, "weight", dims)?;
        let k = kh * kw * ig;
        if k > MAX_K {
            return self.fail(format!("reduction length {k} exceeds the int8 limit {MAX_K}"));
        }
        let want = packed_n16k4_len(o, kh, kw, ig, groups);
        if want.map(|b| b as u64) != Some(w.rec.data_size) {
            return self.fail(format!(
                "weight {} data_size is {} bytes but PackedN16K4 {dims:?} with groups {groups} needs {}",
                self.v.tensor_label(w.id),
                w.rec.data_size,
                want.map_or("more than usize::MAX".into(), |b| b.to_string())
            ));
        }
        let (off, len) = (w.rec.data_offset as usize, w.rec.data_size as usize);
        if let Some(pos) = self.v.bytes[off..off + len].iter().position(|&b| b == 0x80) {
            return self.fail(format!(
                "weight {} holds -128 at byte {pos}; int8 weights must lie in [-127, 127]",
                self.v.tensor_label(w.id)
            ));
        }
        Ok(())
    }

    /// The `[rows, 4]` I32 qparams constant: every `m_acc`, `m_res` >= 0 and shift in [1, 62];
    /// `m_res` must be 0 without a residual.
    fn qparams(&self, q: &Desc, rows: usize, residual: bool) -> Result<()> {
        self.need_constant(q, "qparams")?;
        self.need_layout(q, "qparams", &[Layout::RowMajor])?;
        self.need_dims(q, "qparams", &[rows, 4])?;
        let (off, len) = (q.rec.data_offset as usize, q.rec.data_size as usize);
        let words: Vec<i32> = self.v.bytes[off..off + len]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        for (row, r) in words.chunks_exact(4).enumerate() {
            let (m_acc, m_res, shift) = (r[1], r[2], r[3]);
            if m_acc < 0 || m_res < 0 || !(1..=62).contains(&shift) {
                return self.fail(format!(
                    "qparams row {row}: m_acc {m_acc}, m_res {m_res}, shift {shift} out of range ([0, 2^31-1], [1, 62])"
                ));
            }
            if !residual && m_res != 0 {
                return self.fail(format!("qparams row {row}: m_res {m_res} set but the op has no residual"));
            }
        }
        Ok(())
    }
}

/// Zero point of an int8 activation (validated by the reader to lie in [-128, 127]).
fn zp(d: &Desc) -> i32 {
    d.rec.quant_zero_point
}

pub(crate) fn prepare_conv(c: &Checker) -> Result<PreparedOp> {
    let p: ConvParams = c.params()?;
    let x = c.input_of(0, "x", DType::I8)?;
    let w = c.input_of(1, "weight", DType::I8)?;
    let y = c.output_of(DType::I8)?;
    if p.algo != 3 {
        return c.fail(format!("int8 conv needs algo 3 (int8 packed GEMM), has {}", p.algo));
    }
    if p.act != 0 || p.act_min != 0.0 || p.act_max != 0.0 {
        return c.fail("int8 conv carries its activation in qmin/qmax: act, act_min and act_max must be 0");
    }
    let (qmin, qmax) = c.qclamp(p.qmin, p.qmax)?;
    let shape = geometry(c, &p, &x, &y)?;
    let (o, g) = (shape.out_c, shape.groups);
    let (kh, kw, ig) = (shape.kh, shape.kw, shape.in_c / g);
    c.int8_weights(&w, [o, kh, kw, ig], g)?;
    let Some(q) = c.input(2) else { return c.fail("input 2 (qparams) is missing: int8 convs need one") };
    c.need_dtype(&q, "qparams", DType::I32)?;
    let residual = c.input(3);
    c.qparams(&q, o, residual.is_some())?;
    let mut z_res = 0;
    if let Some(r) = &residual {
        c.need_dtype(r, "residual", DType::I8)?;
        c.need_layout(r, "residual", &[Layout::Nhwc])?;
        c.need_dims(r, "residual", &y.dims)?;
        z_res = zp(r);
    }
    let wino = winograd_weights(c, &w, &shape);
    let conv = QConv { shape, z_x: zp(&x), z_res, z_y: zp(&y), qmin, qmax, has_residual: residual.is_some(), wino };
    Ok(c.prepared(OpImpl::QConv(conv), shape.macs()))
}

/// The Winograd weights of a validated int8 conv, when [`prefer_winograd_i8`] picks it and
/// the process's tier (`Isa::detect()`, which caps every session) runs the Winograd kernels;
/// `None` otherwise, and also when the transformed weights cannot be allocated (the layer
/// then runs the direct kernel, with the same bytes).
fn winograd_weights(c: &Checker, w: &Desc, g: &ConvGeom) -> Option<WinoWeights> {
    if !(prefer_winograd_i8(g) && winograd::available(Isa::detect().implemented())) {
        return None;
    }
    let (off, len) = (w.rec.data_offset as usize, w.rec.data_size as usize);
    let packed: &[i8] = bytemuck::cast_slice(&c.v.bytes[off..off + len]);
    winograd::transform_weights_f23(packed, g.out_c, g.in_c).map(|u| WinoWeights(u.into()))
}

pub(crate) fn prepare_linear(c: &Checker) -> Result<PreparedOp> {
    let p: ActParams = c.params()?;
    let x = c.input_of(0, "x", DType::I8)?;
    let w = c.input_of(1, "weight", DType::I8)?;
    let y = c.output_of(DType::I8)?;
    if p.act != 0 || p.act_min != 0.0 || p.act_max != 0.0 {
        return c.fail("int8 Linear carries its activation in qmin/qmax: act, act_min and act_max must be 0");
    }
    let (qmin, qmax) = c.qclamp(p.qmin, p.qmax)?;
    c.need_layout(&x, "x", &[Layout::RowMajor])?;
    c.need_layout(&y, "y", &[Layout::RowMajor])?;
    c.need_rank(&x, "x", 2)?;
    c.need_rank(&w, "weight", 2)?;
    let (m, k, nn) = (x.dims[0], x.dims[1], w.dims[0]);
    c.int8_weights(&w, [nn, 1, 1, k], 1)?;
    c.need_dims(&y, "y", &[m, nn])?;
    let Some(q) = c.input(2) else { return c.fail("input 2 (qparams) is missing: int8 Linear needs one") };
    c.need_dtype(&q, "qparams", DType::I32)?;
    c.qparams(&q, nn, false)?;
    if c.input(3).is_some() {
        return c.fail("int8 Linear has no input 3");
    }
    let lin = QLinear { m, k, n: nn, z_y: zp(&y), qmin, qmax };
    Ok(c.prepared(OpImpl::QLinear(lin), (m * k * nn) as u64))
}

/// Quantize: x F32 -> y I8, or Dequantize: x I8 -> y F32; same layout and dims, no params.
pub(crate) fn prepare_requantize(c: &Checker, quantize: bool) -> Result<PreparedOp> {
    c.params::<[u32; 0]>()?;
    let (from, to) = if quantize { (DType::F32, DType::I8) } else { (DType::I8, DType::F32) };
    let x = c.input_of(0, "x", from)?;
    let y = c.output_of(to)?;
    c.need_layout(&y, "y", &[x.layout])?;
    c.need_dims(&y, "y", &x.dims)?;
    let q = if quantize { &y } else { &x };
    let r = Requantize { scale: q.rec.quant_scale, zero_point: zp(q) };
    Ok(c.prepared(if quantize { OpImpl::Quantize(r) } else { OpImpl::Dequantize(r) }, 0))
}
