//! Slice over physical dims: `y[i] = x[start + i * step]` per dim; `y`'s dims give the extent.

use super::{check_rank_param, Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::DType;
use crate::format::SliceParams;
use crate::kernels::generic::layout::slice;

#[derive(Clone, Debug)]
pub struct Slice {
    pub x_dims: Vec<usize>,
    pub y_dims: Vec<usize>,
    pub start: Vec<isize>,
    pub step: Vec<isize>,
    /// I8 elements (else F32).
    pub int8: bool,
}

impl Slice {
    pub(crate) fn run<T: Copy>(&self, x: &[T], y: &mut [T]) {
        slice(&self.x_dims, &self.start, &self.step, &self.y_dims, x, y)
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: SliceParams = c.params()?;
    let x = c.input_movable(0, "x")?;
    let y = c.output_like(&x)?;
    let r = check_rank_param(c, p.rank, x.dims.len())?;
    c.need_rank(&y, "y", r)?;
    if p.start[r..].iter().chain(&p.step[r..]).any(|&v| v != 0) {
        return c.fail(format!("start/step entries past rank {r} are not zero"));
    }
    for d in 0..r {
        let (s, st, n, len) = (p.start[d] as i64, p.step[d] as i64, y.dims[d] as i64, x.dims[d] as i64);
        if st == 0 {
            return c.fail(format!("step of dim {d} is 0"));
        }
        let last = s + (n - 1) * st;
        if s < 0 || s >= len || last < 0 || last >= len {
            return c.fail(format!(
                "dim {d}: indices {s}, {}, ..., {last} (start {s}, step {st}, {n} values) leave the input extent {len}",
                s + st
            ));
        }
    }
    let sl = Slice {
        x_dims: x.dims.clone(),
        y_dims: y.dims.clone(),
        start: p.start[..r].iter().map(|&v| v as isize).collect(),
        step: p.step[..r].iter().map(|&v| v as isize).collect(),
        int8: x.dtype == DType::I8,
    };
    Ok(c.prepared(OpImpl::Slice(sl), 0))
}
