//! Add: `y[i] = act(a[off_a(i)] + b[off_b(i)])` with explicit (broadcast) strides.

use super::{check_rank_param, Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::{AddParams, MAX_RANK};
use crate::kernels::generic::act::Act;
use crate::kernels::generic::eltwise::add_f32;

#[derive(Clone, Debug)]
pub struct Add {
    pub y_dims: Vec<usize>,
    pub a_strides: Vec<usize>,
    pub b_strides: Vec<usize>,
    pub act: Act,
}

impl Add {
    pub(crate) fn run(&self, a: &[f32], b: &[f32], y: &mut [f32]) {
        add_f32(&self.y_dims, a, &self.a_strides, b, &self.b_strides, self.act, y)
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: AddParams = c.params()?;
    let act = c.act(p.act, p.act_min, p.act_max)?;
    let a = c.input_f32(0, "a")?;
    let b = c.input_f32(1, "b")?;
    let y = c.output_f32()?;
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
    };
    Ok(c.prepared(OpImpl::Add(add), 0))
}
