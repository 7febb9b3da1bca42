//! Conv2d: `y = act(conv(x, w) + bias + residual)`, NHWC activations.
//!
//! The weight layout is tied to `ConvParams::algo` (chosen by the converter):
//! 0 = direct, `Ohwi` (`kernels::generic::conv`, the reference);
//! 1 = packed GEMM, `PackedN16` (`kernels::gemm::conv2d_packed`);
//! 2 = Winograd F(4x4,3x3), `WinogradF43N16` (`kernels::gemm::conv2d_winograd`).
//! The packed forms run on every ISA: `Isa::Generic` selects their scalar twins.
//!
//! The weight is F32, or F16 (format 1.2, any of the three layouts; payload `elems * 2`
//! bytes): the kernels read the f16 payload in place and widen it in registers, no f32 copy
//! is made. Activations and bias stay F32.

use super::{Checker, Desc, OpImpl, PreparedOp, RunCtx};
use crate::error::Result;
use crate::format::{ConvParams, DType, Layout};
use crate::kernels::gemm::{self, ConvGeom, Epilogue};
use crate::kernels::generic::act::Act;
use crate::kernels::generic::conv::conv2d_nhwc_ohwi_f32;
use crate::kernels::pack::{self, WeightElem};
use half::f16;

/// Which kernel runs the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvImpl {
    /// Direct convolution over OHWI weights (`kernels::generic::conv`).
    DirectOhwi,
    /// GEMM / im2col over PackedN16 weights.
    Packed,
    /// Winograd F(4x4,3x3) over WinogradF43N16 weights.
    Winograd,
}

#[derive(Clone, Debug)]
pub struct Conv {
    pub shape: ConvGeom,
    pub act: Act,
    pub has_bias: bool,
    pub has_residual: bool,
    pub imp: ConvImpl,
    /// The weight is F16 (else F32).
    pub weight_f16: bool,
}

impl Conv {
    /// Scratch f32 values for `threads` threads.
    pub(crate) fn scratch_len(&self, threads: usize) -> usize {
        match self.imp {
            ConvImpl::DirectOhwi => 0,
            ConvImpl::Packed => gemm::conv2d_packed_scratch_len(&self.shape, threads),
            ConvImpl::Winograd => gemm::conv2d_winograd_scratch_len(&self.shape, threads),
        }
    }

    /// Run with the inputs as raw bytes (`x`, bias, residual: f32; weight: f32 or f16, as
    /// checked by [`prepare`]; payloads and arena slots are 64-byte aligned).
    pub(crate) fn run_bytes(&self, ins: &[&[u8]; 4], y: &mut [f32], ctx: &mut RunCtx) {
        let x: &[f32] = bytemuck::cast_slice(ins[0]);
        let bias: Option<&[f32]> = self.has_bias.then(|| bytemuck::cast_slice(ins[2]));
        let residual: Option<&[f32]> = self.has_residual.then(|| bytemuck::cast_slice(ins[3]));
        if self.weight_f16 {
            self.run_w::<f16>(x, bytemuck::cast_slice(ins[1]), bias, residual, y, ctx)
        } else {
            self.run_w::<f32>(x, bytemuck::cast_slice(ins[1]), bias, residual, y, ctx)
        }
    }

    fn run_w<W: WeightElem>(
        &self,
        x: &[f32],
        w: &[W],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        y: &mut [f32],
        ctx: &mut RunCtx,
    ) {
        match self.imp {
            ConvImpl::DirectOhwi => conv2d_nhwc_ohwi_f32(&self.shape, x, w, bias, residual, self.act, y, ctx.pool),
            ConvImpl::Packed => {
                let ep = Epilogue { bias, residual, act: self.act };
                gemm::conv2d_packed(ctx.isa, &self.shape, x, w, &ep, y, ctx.scratch, ctx.pool)
            }
            ConvImpl::Winograd => {
                let ep = Epilogue { bias, residual, act: self.act };
                gemm::conv2d_winograd(ctx.isa, &self.shape, x, w, &ep, y, ctx.scratch, ctx.pool)
            }
        }
    }
}

/// Output size along one axis, or `None` if the (padded) input is smaller than the kernel.
pub(crate) fn out_size(input: u64, pad_a: u64, pad_b: u64, k: u64, stride: u64, dil: u64) -> Option<u64> {
    let span = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = input.checked_add(pad_a)?.checked_add(pad_b)?;
    Some(padded.checked_sub(span)? / stride + 1)
}

/// The checks every Conv2d form shares (f32 and int8): NHWC rank-4 `x` and `y`, positive
/// kernel/stride/dilation/groups, groups dividing both channel counts, and `y`'s dims equal
/// to the computed `[N, OH, OW, O]`. Returns the geometry the kernels take.
pub(crate) fn geometry(c: &Checker, p: &ConvParams, x: &Desc, y: &Desc) -> Result<ConvGeom> {
    c.need_layout(x, "x", &[Layout::Nhwc])?;
    c.need_layout(y, "y", &[Layout::Nhwc])?;
    c.need_rank(x, "x", 4)?;
    c.need_rank(y, "y", 4)?;
    c.need_positive(&[
        (p.kernel_h, "kernel_h"),
        (p.kernel_w, "kernel_w"),
        (p.stride_h, "stride_h"),
        (p.stride_w, "stride_w"),
        (p.dilation_h, "dilation_h"),
        (p.dilation_w, "dilation_w"),
        (p.groups, "groups"),
    ])?;
    let (n, h, wd, ch) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let o = y.dims[3];
    let g = p.groups as usize;
    if ch % g != 0 || o % g != 0 {
        return c.fail(format!("groups {g} does not divide the input channels {ch} and output channels {o}"));
    }
    let axis = |inp: usize, a: u32, b: u32, k: u32, s: u32, d: u32| {
        out_size(inp as u64, a as u64, b as u64, k as u64, s as u64, d as u64)
    };
    let oh = axis(h, p.pad_top, p.pad_bottom, p.kernel_h, p.stride_h, p.dilation_h);
    let ow = axis(wd, p.pad_left, p.pad_right, p.kernel_w, p.stride_w, p.dilation_w);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return c.fail(format!(
            "kernel {}x{} (dilation {}x{}) is larger than the padded input {}x{}",
            p.kernel_h, p.kernel_w, p.dilation_h, p.dilation_w, h, wd
        ));
    };
    let want_y = [n, oh as usize, ow as usize, o];
    if y.dims != want_y {
        return c.fail(format!(
            "output dims {:?} do not match the computed [N, OH, OW, O] = {want_y:?} (input {:?}, kernel {}x{}, stride {}x{}, pads t{} l{} b{} r{}, dilation {}x{})",
            y.dims, x.dims, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.pad_bottom, p.pad_right, p.dilation_h, p.dilation_w
        ));
    }
    Ok(ConvGeom {
        n,
        in_h: h,
        in_w: wd,
        in_c: ch,
        out_h: oh as usize,
        out_w: ow as usize,
        out_c: o,
        kh: p.kernel_h as usize,
        kw: p.kernel_w as usize,
        stride_h: p.stride_h as usize,
        stride_w: p.stride_w as usize,
        pad_top: p.pad_top as usize,
        pad_left: p.pad_left as usize,
        dil_h: p.dilation_h as usize,
        dil_w: p.dilation_w as usize,
        groups: g,
    })
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: ConvParams = c.params()?;
    let x = c.input_f32(0, "x")?;
    let Some(w) = c.input(1) else { return c.fail("input 1 (weight) is missing") };
    if !matches!(w.dtype, DType::F32 | DType::F16) {
        return c.unsupported(format!(
            "weight {} is {:?}; Conv2d weights are F32 or F16",
            c.v.tensor_label(w.id),
            w.dtype
        ));
    }
    let y = c.output_f32()?;
    let act = c.act(p.act, p.act_min, p.act_max)?;
    let shape = geometry(c, &p, &x, &y)?;
    let (o, g) = (shape.out_c, shape.groups);
    let (kh, kw, ig) = (shape.kh, shape.kw, shape.in_c / g);
    c.need_constant(&w, "weight")?;
    c.need_dims(&w, "weight", &[o, kh, kw, ig])?;
    // Weight layout and payload size per algorithm.
    let want_layout = match p.algo {
        0 => Layout::Ohwi,
        1 => Layout::PackedN16,
        2 => Layout::WinogradF43N16,
        a => return c.fail(format!("unknown conv algo {a} (0 = direct, 1 = packed GEMM, 2 = Winograd F(4x4,3x3))")),
    };
    c.need_layout(&w, "weight", &[want_layout])?;
    if want_layout == Layout::WinogradF43N16
        && (kh != 3
            || kw != 3
            || p.stride_h != 1
            || p.stride_w != 1
            || p.dilation_h != 1
            || p.dilation_w != 1
            || g != 1)
    {
        return c.fail("Winograd F(4x4,3x3) needs a 3x3 kernel, stride 1, dilation 1 and groups 1");
    }
    let elems: Option<u64> = match want_layout {
        Layout::PackedN16 => pack::packed_n16_len_checked(o, kh, kw, ig, g).map(|e| e as u64),
        Layout::WinogradF43N16 => Some(pack::winograd_f43_len(o, ig) as u64).filter(|&e| e > 0),
        _ => (o as u64).checked_mul((kh * kw * ig) as u64),
    };
    let want_bytes = elems.and_then(|e| e.checked_mul(w.dtype.size() as u64));
    if want_bytes != Some(w.rec.data_size) {
        return c.fail(format!(
            "weight {} data_size is {} bytes but {:?} {want_layout:?} [{o}, {kh}, {kw}, {ig}] with groups {g} needs {}",
            c.v.tensor_label(w.id),
            w.rec.data_size,
            w.dtype,
            want_bytes.map_or("more than 2^64".into(), |b| b.to_string())
        ));
    }
    let bias = c.input(2);
    if let Some(b) = &bias {
        c.need_f32(b, "bias")?;
        c.need_constant(b, "bias")?;
        c.need_layout(b, "bias", &[Layout::RowMajor])?;
        c.need_dims(b, "bias", &[o])?;
    }
    let residual = c.input(3);
    if let Some(r) = &residual {
        c.need_f32(r, "residual")?;
        c.need_layout(r, "residual", &[Layout::Nhwc])?;
        c.need_dims(r, "residual", &y.dims)?;
    }
    let imp = match want_layout {
        Layout::PackedN16 => ConvImpl::Packed,
        Layout::WinogradF43N16 => ConvImpl::Winograd,
        _ => ConvImpl::DirectOhwi,
    };
    let weight_f16 = w.dtype == DType::F16;
    let conv = Conv { shape, act, has_bias: bias.is_some(), has_residual: residual.is_some(), imp, weight_f16 };
    Ok(c.prepared(OpImpl::Conv(conv), shape.macs()))
}
