//! ChannelAffine: `y = act(x * scale[c] + shift[c])`, `c` = index in the last physical dim.

use super::{Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::{ActParams, Layout};
use crate::kernels::generic::act::Act;
use crate::kernels::generic::eltwise::channel_affine_f32;

#[derive(Clone, Debug)]
pub struct ChannelAffine {
    pub act: Act,
}

impl ChannelAffine {
    pub(crate) fn run(&self, ins: &[&[f32]; 4], y: &mut [f32]) {
        channel_affine_f32(ins[0], ins[1], ins[2], self.act, y)
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: ActParams = c.params()?;
    let act = c.act(p.act, p.act_min, p.act_max)?;
    let x = c.input_f32(0, "x")?;
    let scale = c.input_f32(1, "scale")?;
    let shift = c.input_f32(2, "shift")?;
    let y = c.output_f32()?;
    let Some(&ch) = x.dims.last() else { return c.fail("x is a scalar (rank 0); it needs a channel dim") };
    for (d, role) in [(&scale, "scale"), (&shift, "shift")] {
        c.need_constant(d, role)?;
        c.need_layout(d, role, &[Layout::RowMajor])?;
        c.need_dims(d, role, &[ch])?;
    }
    c.need_layout(&y, "y", &[x.layout])?;
    c.need_dims(&y, "y", &x.dims)?;
    Ok(c.prepared(OpImpl::ChannelAffine(ChannelAffine { act }), x.elems as u64))
}
