//! MaxPool2d, AvgPool2d and GlobalAvgPool over NHWC activations.

use super::conv::out_size;
use super::{Checker, Desc, OpImpl, PreparedOp, RunCtx};
use crate::error::Result;
use crate::format::{DType, GlobalPoolParams, Layout, OpKind, PoolParams};
use crate::kernels::generic::pool::{avgpool2d_nhwc_f32, global_avgpool_nhwc_f32, maxpool2d_nhwc_f32, Pool2dShape};
use crate::kernels::int8;

#[derive(Clone, Debug)]
pub struct Pool {
    pub shape: Pool2dShape,
    pub count_include_pad: bool,
    /// Int8 form (x and y I8).
    pub q: Option<PoolQ>,
}

/// Int8 average pooling: zero points and the `s_x / s_y` multiplier (unused by max pooling,
/// whose input and output share their quantization).
#[derive(Clone, Copy, Debug)]
pub struct PoolQ {
    pub z_x: i32,
    pub z_y: i32,
    pub mult: i32,
    pub shift: u32,
}

impl Pool {
    pub(crate) fn run_max(&self, x: &[u8], y: &mut [u8], ctx: &mut RunCtx) {
        match self.q {
            Some(_) => int8::maxpool_i8(ctx.isa, &self.shape, cast(x), cast_mut(y), ctx.pool),
            None => maxpool2d_nhwc_f32(&self.shape, cast(x), cast_mut(y), ctx.pool),
        }
    }
    pub(crate) fn run_avg(&self, x: &[u8], y: &mut [u8], ctx: &mut RunCtx) {
        match self.q {
            Some(q) => int8::avgpool_i8(
                ctx.isa,
                &self.shape,
                self.count_include_pad,
                cast(x),
                q.z_x,
                q.mult,
                q.shift,
                q.z_y,
                cast_mut(y),
                ctx.pool,
            ),
            None => avgpool2d_nhwc_f32(&self.shape, self.count_include_pad, cast(x), cast_mut(y), ctx.pool),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GlobalAvgPool {
    pub n: usize,
    pub hw: usize,
    pub c: usize,
    pub q: Option<PoolQ>,
}

impl GlobalAvgPool {
    pub(crate) fn run(&self, x: &[u8], y: &mut [u8], ctx: &mut RunCtx) {
        match self.q {
            Some(q) => int8::global_avgpool_i8(
                ctx.isa,
                self.n,
                self.hw,
                self.c,
                cast(x),
                q.z_x,
                q.mult,
                q.shift,
                q.z_y,
                cast_mut(y),
            ),
            None => global_avgpool_nhwc_f32(self.n, self.hw, self.c, cast(x), cast_mut(y)),
        }
    }
}

/// Arena bytes as elements (aligned and sized at load).
fn cast<T: bytemuck::Pod>(b: &[u8]) -> &[T] {
    bytemuck::cast_slice(b)
}

fn cast_mut<T: bytemuck::Pod>(b: &mut [u8]) -> &mut [T] {
    bytemuck::cast_slice_mut(b)
}

/// Int8 pooling quantization: max pooling needs identical input and output quantization;
/// average pooling a valid `s_x / s_y` multiplier.
fn pool_q(c: &Checker, x: &Desc, y: &Desc, max: bool, mult: i32, shift: u32) -> Result<Option<PoolQ>> {
    if x.dtype != DType::I8 {
        return Ok(None);
    }
    c.need_dtype(y, "y", DType::I8)?;
    if max {
        c.output_like(x)?;
        if mult != 0 || shift != 0 {
            return c.fail("int8 max pooling takes no multiplier (mult and shift must be 0)");
        }
    } else {
        c.need_multiplier(mult, shift, "int8 average pooling")?;
    }
    Ok(Some(PoolQ { z_x: x.rec.quant_zero_point, z_y: y.rec.quant_zero_point, mult, shift }))
}

/// True if some tap `start + t*d` (t < k) lies in `[0, len)`. O(1): the first tap at or
/// after 0 is `t0 = ceil(-start / d)`.
fn window_hits(start: i64, k: u32, d: u32, len: usize) -> bool {
    let (d, len) = (d as i64, len as i64);
    let t0 = if start >= 0 { 0 } else { (-start + d - 1) / d };
    t0 < k as i64 && start + t0 * d < len
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: PoolParams = c.params()?;
    let x = c.input_movable(0, "x")?;
    let Some(y) = c.output() else { return c.fail("output is missing") };
    let q = pool_q(c, &x, &y, c.kind == OpKind::MaxPool2d, p.mult, p.shift)?;
    if q.is_none() {
        c.need_f32(&y, "y")?;
    }
    c.need_layout(&x, "x", &[Layout::Nhwc])?;
    c.need_layout(&y, "y", &[Layout::Nhwc])?;
    c.need_positive(&[
        (p.kernel_h, "kernel_h"),
        (p.kernel_w, "kernel_w"),
        (p.stride_h, "stride_h"),
        (p.stride_w, "stride_w"),
        (p.dilation_h, "dilation_h"),
        (p.dilation_w, "dilation_w"),
    ])?;
    if p.count_include_pad > 1 {
        return c.fail(format!("count_include_pad is {} (must be 0 or 1)", p.count_include_pad));
    }
    let (n, h, w, ch) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let (oh, ow) = (y.dims[1], y.dims[2]);
    if y.dims[0] != n || y.dims[3] != ch {
        return c.fail(format!("output dims {:?} must keep N and C of the input {:?}", y.dims, x.dims));
    }
    // Output H/W: floor or ceil mode of the usual formula (the converter resolves ceil mode).
    for (axis, inp, out, pa, pb, k, s, d) in [
        ("H", h, oh, p.pad_top, p.pad_bottom, p.kernel_h, p.stride_h, p.dilation_h),
        ("W", w, ow, p.pad_left, p.pad_right, p.kernel_w, p.stride_w, p.dilation_w),
    ] {
        let Some(floor) = out_size(inp as u64, pa as u64, pb as u64, k as u64, s as u64, d as u64) else {
            return c
                .fail(format!("pool window ({k} taps, dilation {d}) is larger than the padded input {axis} {inp}"));
        };
        let ceil =
            floor + u64::from((inp as u64 + pa as u64 + pb as u64 - (d as u64 * (k as u64 - 1) + 1)) % s as u64 != 0);
        if (out as u64) < floor || (out as u64) > ceil {
            return c.fail(format!(
                "output {axis} is {out}, expected {floor} (floor mode) or {ceil} (ceil mode) for input {inp}, kernel {k}, stride {s}, pads {pa}+{pb}, dilation {d}"
            ));
        }
        // Every window must see at least one input element (ceil-mode windows may overhang).
        for o in 0..out {
            if !window_hits(o as i64 * s as i64 - pa as i64, k, d, inp) {
                return c.fail(format!("pool window {o} along {axis} lies entirely in the padding"));
            }
        }
    }
    let shape = Pool2dShape {
        n,
        in_h: h,
        in_w: w,
        c: ch,
        out_h: oh,
        out_w: ow,
        kh: p.kernel_h as usize,
        kw: p.kernel_w as usize,
        stride_h: p.stride_h as usize,
        stride_w: p.stride_w as usize,
        pad_top: p.pad_top as usize,
        pad_left: p.pad_left as usize,
        pad_bottom: p.pad_bottom as usize,
        pad_right: p.pad_right as usize,
        dil_h: p.dilation_h as usize,
        dil_w: p.dilation_w as usize,
    };
    let pool = Pool { shape, count_include_pad: p.count_include_pad == 1, q };
    let imp = if c.kind == OpKind::MaxPool2d { OpImpl::MaxPool(pool) } else { OpImpl::AvgPool(pool) };
    Ok(c.prepared(imp, 0))
}

pub(crate) fn prepare_global(c: &Checker) -> Result<PreparedOp> {
    let p: GlobalPoolParams = c.params()?;
    let x = c.input_movable(0, "x")?;
    let Some(y) = c.output() else { return c.fail("output is missing") };
    let q = pool_q(c, &x, &y, false, p.mult, p.shift)?;
    if q.is_none() {
        c.need_f32(&y, "y")?;
    }
    c.need_layout(&x, "x", &[Layout::Nhwc])?;
    c.need_layout(&y, "y", &[Layout::Nhwc])?;
    let (n, h, w, ch) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    c.need_dims(&y, "y", &[n, 1, 1, ch])?;
    Ok(c.prepared(OpImpl::GlobalAvgPool(GlobalAvgPool { n, hw: h * w, c: ch, q }), 0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn window_hits_matches_enumeration() {
        for start in -12i64..8 {
            for k in 1..5u32 {
                for d in 1..4u32 {
                    for len in 1..5usize {
                        let slow = (0..k as i64).any(|t| (0..len as i64).contains(&(start + t * d as i64)));
                        assert_eq!(super::window_hits(start, k, d, len), slow, "{start} {k} {d} {len}");
                    }
                }
            }
        }
    }
}
