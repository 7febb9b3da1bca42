//! Copy (Reshape, Flatten, Identity): the bytes of `x` copied to `y` as they are.

use super::{Checker, Desc, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::Layout;

#[derive(Clone, Debug)]
pub struct Copy;

/// True if a tensor's bytes are in row-major order of its logical shape: RowMajor, or Nhwc
/// where H*W == 1 or C == 1 (NHWC and NCHW coincide then).
fn row_major_bytes(d: &Desc) -> bool {
    match d.layout {
        Layout::RowMajor => true,
        Layout::Nhwc => d.dims.len() == 4 && (d.dims[1] * d.dims[2] == 1 || d.dims[3] == 1),
        _ => false,
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    c.params::<[u32; 0]>()?;
    let x = c.input_movable(0, "x")?;
    let y = c.output_like(&x)?;
    if x.elems != y.elems {
        return c.fail(format!("x {:?} has {} elements but y {:?} has {}", x.dims, x.elems, y.dims, y.elems));
    }
    if !(x.layout == y.layout || (row_major_bytes(&x) && row_major_bytes(&y))) {
        return c.fail(format!(
            "x layout {:?} {:?} and y layout {:?} {:?} are not byte-identical orders",
            x.layout, x.dims, y.layout, y.dims
        ));
    }
    Ok(c.prepared(OpImpl::Copy(Copy), 0))
}
