//! Add: `y[i] = act(a[off_a(i)] + b[off_b(i)])` with explicit (broadcast) strides.

use super::{check_rank_param, Checker, OpImpl, PreparedOp, RunCtx};
use crate::error::Result;
use crate::format::{AddParams, DType, MAX_RANK};
use crate::kernels::generic::act::Act;
use crate::kernels::generic::eltwise::add_f32;
use crate::kernels::int8;

#[derive(Clone, Debug)]
pub struct Add {
    pub y_dims: Vec<usize>,
    pub a_strides: Vec<usize>,
    pub b_strides: Vec<usize>,
    pub act: Act,
    /// Int8 form.
    pub q: Option<AddQ>,
}

/// Int8 Add: `y = clamp(sra_round((a - z_a)*m_a + (b - z_b)*m_b, shift) + z_y, qmin, qmax)`.
#[derive(Clone, Copy, Debug)]
pub struct AddQ {
    pub z_a: i32,
    pub m_a: i32,
    pub z_b: i32,
    pub m_b: i32,
    pub shift: u32,
    pub z_y: i32,
    pub qmin: i32,
    pub qmax: i32,
}

impl Add {
    pub(crate) fn run(&self, a: &[u8], b: &[u8], y: &mut [u8], ctx: &mut RunCtx) {
        match self.q {
            Some(q) => int8::add_i8(
                ctx.isa,
                &self.y_dims,
                bytemuck::cast_slice(a),
                &self.a_strides,
                q.z_a,
                q.m_a,
                bytemuck::cast_slice(b),
                &self.b_strides,
                q.z_b,
                q.m_b,
                q.shift,
                q.z_y,
                q.qmin,
                q.qmax,
                bytemuck::cast_slice_mut(y),
            ),
            None => add_f32(
                &self.y_dims,
                bytemuck::cast_slice(a),
                &self.a_strides,
                bytemuck::cast_slice(b),
                &self.b_strides,
                self.act,
                bytemuck::cast_slice_mut(y),
            ),
        }
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: AddParams = c.params()?;
    let act = c.act(p.act, p.act_min, p.act_max)?;
    let a = c.input_movable(0, "a")?;
    let int8 = a.dtype == DType::I8;
    let dt = if int8 { DType::I8 } else { DType::F32 };
    let b = c.input_of(1, "b", dt)?;
    let y = c.output_of(dt)?;
    let q = if int8 {
        if p.act != 0 || p.act_min != 0.0 || p.act_max != 0.0 {
            return c.fail("int8 Add carries its activation in qmin/qmax: act, act_min and act_max must be 0");
        }
        let (qmin, qmax) = c.qclamp(p.qmin, p.qmax)?;
        c.need_multiplier(p.m_a, p.shift, "int8 Add, a")?;
        c.need_multiplier(p.m_b, p.shift, "int8 Add, b")?;
        Some(AddQ {
            z_a: a.rec.quant_zero_point,
            m_a: p.m_a,
            z_b: b.rec.quant_zero_point,
            m_b: p.m_b,
            shift: p.shift,
            z_y: y.rec.quant_zero_point,
            qmin,
            qmax,
        })
    } else {
        None
    };
    c.need_layout(&a, "a", &[y.layout])?;
    c.need_layout(&b, "b", &[y.layout])?;
    let r = check_rank_param(c, p.rank, y.dims.len())?;
    for (strides, x, name) in [(&p.a_strides, &a, "a"), (&p.b_strides, &b, "b")] {
        if strides[r..].iter().any(|&s| s != 0) {
            return c.fail(format!("{name}_strides past rank {r} are not zero"));
        }
        // Largest offset read: sum over dims of (extent - 1) * stride; must lie inside x.
        let max =
            (0..r).try_fold(0u64, |acc, d| acc.checked_add((y.dims[d] as u64 - 1).checked_mul(strides[d] as u64)?));
        if max.is_none_or(|m| m >= x.elems as u64) {
            return c.fail(format!(
                "{name}_strides {:?} over output dims {:?} read past the {} elements of {name} {:?}",
                &strides[..r],
                y.dims,
                x.elems,
                x.dims
            ));
        }
    }
    debug_assert!(r <= MAX_RANK);
    let add = Add {
        y_dims: y.dims.clone(),
        a_strides: p.a_strides[..r].iter().map(|&s| s as usize).collect(),
        b_strides: p.b_strides[..r].iter().map(|&s| s as usize).collect(),
        act,
        q,
    };
    Ok(c.prepared(OpImpl::Add(add), 0))
}
