//! Linear: `y = act(x · weightᵀ + bias)`, `x` `[M, K]`, `weight` `[N, K]`, `y` `[M, N]`.
//!
//! The weight is RowMajor `[N, K]` (the scalar reference kernel) or PackedN16 with dims
//! `[N, K]` (the 1x1, one-group case of the conv packing), run as a 1x1 convolution over
//! `[M, 1, 1, K]` by `kernels::gemm::conv2d_packed` on every ISA.

use super::{Checker, OpImpl, PreparedOp, RunCtx};
use crate::error::Result;
use crate::format::{ActParams, Layout};
use crate::kernels::gemm::{self, ConvGeom, Epilogue};
use crate::kernels::generic::act::Act;
use crate::kernels::generic::linear::linear_f32;
use crate::kernels::pack;

#[derive(Clone, Debug)]
pub struct Linear {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub act: Act,
    pub has_bias: bool,
    pub packed: bool,
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

    pub(crate) fn run(&self, ins: &[&[f32]; 4], y: &mut [f32], ctx: &mut RunCtx) {
        let bias = self.has_bias.then_some(ins[2]);
        if self.packed {
            let ep = Epilogue { bias, residual: None, act: self.act };
            gemm::conv2d_packed(ctx.isa, &self.geom(), ins[0], ins[1], &ep, y, ctx.scratch, ctx.pool)
        } else {
            linear_f32(self.m, self.k, self.n, ins[0], ins[1], bias, self.act, y, ctx.pool)
        }
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: ActParams = c.params()?;
    let act = c.act(p.act, p.act_min, p.act_max)?;
    let x = c.input_f32(0, "x")?;
    let w = c.input_f32(1, "weight")?;
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
    if elems.and_then(|e| e.checked_mul(4)).map(|b| b as u64) != Some(w.rec.data_size) {
        return c.fail(format!(
            "weight {} data_size is {} bytes but {} [{n}, {k}] needs {}",
            c.v.tensor_label(w.id),
            w.rec.data_size,
            if packed { "PackedN16" } else { "RowMajor" },
            elems.map_or("more than 2^64".into(), |e| (e as u64 * 4).to_string())
        ));
    }
    let bias = c.input(2);
    if let Some(b) = &bias {
        c.need_f32(b, "bias")?;
        c.need_constant(b, "bias")?;
        c.need_layout(b, "bias", &[Layout::RowMajor])?;
        c.need_dims(b, "bias", &[n])?;
    }
    let lin = Linear { m, k, n, act, has_bias: bias.is_some(), packed };
    Ok(c.prepared(OpImpl::Linear(lin), (m * n * k) as u64))
}
