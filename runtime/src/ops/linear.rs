//! Linear: `y = act(x · weightᵀ + bias)`, `x` `[M, K]`, `weight` `[N, K]`, `y` `[M, N]`.
//!
//! The weight is RowMajor `[N, K]` (the scalar reference kernel) or PackedN16 with dims
//! `[N, K]` (the 1x1, one-group case of the conv packing), run as a 1x1 convolution over
//! `[M, 1, 1, K]` by `kernels::gemm::conv2d_packed` on every ISA. The weight is F32 or F16
//! (format 1.2; payload `elems * 2` bytes, read in place and widened in registers); `x`, `y`
//! and the bias are F32.

use super::{Checker, OpImpl, PreparedOp, RunCtx};
use crate::error::Result;
use crate::format::{ActParams, DType, Layout};
use crate::kernels::gemm::{self, ConvGeom, Epilogue};
use crate::kernels::generic::act::Act;
use crate::kernels::generic::linear::linear_f32;
use crate::kernels::pack::{self, WeightElem};
use half::f16;

#[derive(Clone, Debug)]
pub struct Linear {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub act: Act,
    pub has_bias: bool,
    pub packed: bool,
    /// The weight is F16 (else F32).
    pub weight_f16: bool,
}

impl Linear {
    /// The 1x1 convolution this layer is, for the packed kernel.
    fn geom(&self) -> ConvGeom {
        ConvGeom {
            n: self.m,
            in_h: 1,
            in_w: 1,
            in_c: self.k,
            out_h: 1,
            out_w: 1,
            out_c: self.n,
            kh: 1,
            kw: 1,
            stride_h: 1,
            stride_w: 1,
            pad_top: 0,
            pad_left: 0,
            dil_h: 1,
            dil_w: 1,
            groups: 1,
        }
    }

    pub(crate) fn scratch_len(&self, threads: usize) -> usize {
        if self.packed {
            gemm::conv2d_packed_scratch_len(&self.geom(), threads)
        } else {
            0
        }
    }

    /// Run with the inputs as raw bytes (`x`, bias: f32; weight: f32 or f16 as checked by
    /// [`prepare`]; payloads and arena slots are 64-byte aligned).
    pub(crate) fn run_bytes(&self, ins: &[&[u8]; 4], y: &mut [f32], ctx: &mut RunCtx) {
        let x: &[f32] = bytemuck::cast_slice(ins[0]);
        let bias: Option<&[f32]> = self.has_bias.then(|| bytemuck::cast_slice(ins[2]));
        if self.weight_f16 {
            self.run_w::<f16>(x, bytemuck::cast_slice(ins[1]), bias, y, ctx)
        } else {
            self.run_w::<f32>(x, bytemuck::cast_slice(ins[1]), bias, y, ctx)
        }
    }

    fn run_w<W: WeightElem>(&self, x: &[f32], w: &[W], bias: Option<&[f32]>, y: &mut [f32], ctx: &mut RunCtx) {
        if self.packed {
            let ep = Epilogue { bias, residual: None, act: self.act };
            gemm::conv2d_packed(ctx.isa, &self.geom(), x, w, &ep, y, ctx.scratch, ctx.pool)
        } else {
            linear_f32(self.m, self.k, self.n, x, w, bias, self.act, y, ctx.pool)
        }
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: ActParams = c.params()?;
    let act = c.act(p.act, p.act_min, p.act_max)?;
    let x = c.input_f32(0, "x")?;
    let Some(w) = c.input(1) else { return c.fail("input 1 (weight) is missing") };
    if !matches!(w.dtype, DType::F32 | DType::F16) {
        return c.unsupported(format!(
            "weight {} is {:?}; Linear weights are F32 or F16",
            c.v.tensor_label(w.id),
            w.dtype
        ));
    }
    let y = c.output_f32()?;
    for (d, role) in [(&x, "x"), (&y, "y")] {
        c.need_layout(d, role, &[Layout::RowMajor])?;
        c.need_rank(d, role, 2)?;
    }
    c.need_layout(&w, "weight", &[Layout::RowMajor, Layout::PackedN16])?;
    c.need_rank(&w, "weight", 2)?;
    c.need_constant(&w, "weight")?;
    let (m, k, n) = (x.dims[0], x.dims[1], w.dims[0]);
    c.need_dims(&w, "weight", &[n, k])?;
    c.need_dims(&y, "y", &[m, n])?;
    let packed = w.layout == Layout::PackedN16;
    let elems = if packed { pack::packed_n16_len_checked(n, 1, 1, k, 1) } else { n.checked_mul(k) };
    let esize = w.dtype.size();
    let want = elems.and_then(|e| e.checked_mul(esize)).map(|b| b as u64);
    if want != Some(w.rec.data_size) {
        return c.fail(format!(
            "weight {} data_size is {} bytes but {:?} {} [{n}, {k}] needs {}",
            c.v.tensor_label(w.id),
            w.rec.data_size,
            w.dtype,
            if packed { "PackedN16" } else { "RowMajor" },
            want.map_or("more than 2^64".into(), |b| b.to_string())
        ));
    }
    let bias = c.input(2);
    if let Some(b) = &bias {
        c.need_f32(b, "bias")?;
        c.need_constant(b, "bias")?;
        c.need_layout(b, "bias", &[Layout::RowMajor])?;
        c.need_dims(b, "bias", &[n])?;
    }
    let weight_f16 = w.dtype == DType::F16;
    let lin = Linear { m, k, n, act, has_bias: bias.is_some(), packed, weight_f16 };
    Ok(c.prepared(OpImpl::Linear(lin), (m * n * k) as u64))
}
