//! Softmax along the middle axis of `x` viewed as `[outer, axis_len, inner]`.

use super::{Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::{Layout, SoftmaxParams};
use crate::kernels::generic::softmax::softmax_f32;

#[derive(Clone, Debug)]
pub struct Softmax {
    pub outer: usize,
    pub axis_len: usize,
    pub inner: usize,
}

impl Softmax {
    pub(crate) fn run(&self, x: &[f32], y: &mut [f32]) {
        softmax_f32(self.outer, self.axis_len, self.inner, x, y)
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: SoftmaxParams = c.params()?;
    let x = c.input_f32(0, "x")?;
    let y = c.output_f32()?;
    c.need_layout(&x, "x", &[Layout::RowMajor])?;
    c.need_layout(&y, "y", &[Layout::RowMajor])?;
    c.need_dims(&y, "y", &x.dims)?;
    let total = (p.outer as u64).checked_mul(p.axis_len as u64).and_then(|v| v.checked_mul(p.inner as u64));
    if p.axis_len == 0 || total != Some(x.elems as u64) {
        return c.fail(format!(
            "outer {} x axis_len {} x inner {} = {}, but x has {} elements",
            p.outer,
            p.axis_len,
            p.inner,
            total.map_or("more than 2^64".into(), |t| t.to_string()),
            x.elems
        ));
    }
    let s = Softmax { outer: p.outer as usize, axis_len: p.axis_len as usize, inner: p.inner as usize };
    Ok(c.prepared(OpImpl::Softmax(s), 0))
}
