//! Pad (constant mode): `x` placed at `before[d]` inside `y`, the rest is `value`.

use super::{check_rank_param, Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::PadParams;
use crate::kernels::generic::layout::pad_f32;

#[derive(Clone, Debug)]
pub struct Pad {
    pub x_dims: Vec<usize>,
    pub y_dims: Vec<usize>,
    pub before: Vec<usize>,
    pub value: f32,
}

impl Pad {
    pub(crate) fn run(&self, x: &[f32], y: &mut [f32]) {
        pad_f32(&self.x_dims, &self.before, &self.y_dims, self.value, x, y)
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: PadParams = c.params()?;
    let x = c.input_f32(0, "x")?;
    let y = c.output_f32()?;
    let r = check_rank_param(c, p.rank, x.dims.len())?;
    c.need_rank(&y, "y", r)?;
    if p.before[r..].iter().any(|&v| v != 0) {
        return c.fail(format!("before entries past rank {r} are not zero"));
    }
    for d in 0..r {
        if (x.dims[d] as u64) + (p.before[d] as u64) > y.dims[d] as u64 {
            return c.fail(format!(
                "dim {d}: input extent {} placed at {} does not fit the output extent {}",
                x.dims[d], p.before[d], y.dims[d]
            ));
        }
    }
    let pad = Pad {
        x_dims: x.dims.clone(),
        y_dims: y.dims.clone(),
        before: p.before[..r].iter().map(|&v| v as usize).collect(),
        value: p.value,
    };
    Ok(c.prepared(OpImpl::Pad(pad), 0))
}
