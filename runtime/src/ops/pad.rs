//! Pad (constant mode): `x` placed at `before[d]` inside `y`, the rest is `value`.

use super::{check_rank_param, Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::DType;
use crate::format::PadParams;
use crate::kernels::generic::layout::pad;

#[derive(Clone, Debug)]
pub struct Pad {
    pub x_dims: Vec<usize>,
    pub y_dims: Vec<usize>,
    pub before: Vec<usize>,
    pub value: f32,
    /// I8 elements (else F32); the pad byte is `value` (an integer in [-128, 127]).
    pub int8: bool,
}

impl Pad {
    pub(crate) fn run<T: PadValue>(&self, x: &[T], y: &mut [T]) {
        pad(&self.x_dims, &self.before, &self.y_dims, T::from_param(self.value), x, y)
    }
}

/// The pad value in the element type (validated at load for I8).
pub(crate) trait PadValue: Copy {
    fn from_param(v: f32) -> Self;
}

impl PadValue for f32 {
    fn from_param(v: f32) -> Self {
        v
    }
}

impl PadValue for i8 {
    fn from_param(v: f32) -> Self {
        v as i8
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: PadParams = c.params()?;
    let x = c.input_movable(0, "x")?;
    let y = c.output_like(&x)?;
    let int8 = x.dtype == DType::I8;
    if int8 && !(p.value.fract() == 0.0 && (-128.0..=127.0).contains(&p.value)) {
        return c.fail(format!("int8 pad value {} is not an integer in [-128, 127]", p.value));
    }
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
        int8,
    };
    Ok(c.prepared(OpImpl::Pad(pad), 0))
}
