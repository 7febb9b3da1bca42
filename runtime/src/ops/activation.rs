//! Activation: `y = act(x)`, same shape and layout.

use super::{Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::ActParams;
use crate::kernels::generic::act::Act;
use crate::kernels::generic::eltwise::activation_f32;

#[derive(Clone, Debug)]
pub struct Activation {
    pub act: Act,
}

impl Activation {
    pub(crate) fn run(&self, x: &[f32], y: &mut [f32]) {
        activation_f32(x, self.act, y)
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: ActParams = c.params()?;
    let act = c.act(p.act, p.act_min, p.act_max)?;
    let x = c.input_f32(0, "x")?;
    let y = c.output_f32()?;
    c.need_layout(&y, "y", &[x.layout])?;
    c.need_dims(&y, "y", &x.dims)?;
    Ok(c.prepared(OpImpl::Activation(Activation { act }), 0))
}
