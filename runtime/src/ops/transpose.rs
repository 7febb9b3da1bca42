//! Transpose over physical dims: `y.dims[d] = x.dims[perm[d]]`.

use super::{check_rank_param, Checker, OpImpl, PreparedOp};
use crate::error::Result;
use crate::format::DType;
use crate::format::TransposeParams;
use crate::kernels::generic::layout::transpose;

#[derive(Clone, Debug)]
pub struct Transpose {
    pub x_dims: Vec<usize>,
    pub perm: Vec<usize>,
    /// I8 elements (else F32).
    pub int8: bool,
}

impl Transpose {
    pub(crate) fn run<T: Copy>(&self, x: &[T], y: &mut [T]) {
        transpose(&self.x_dims, &self.perm, x, y)
    }
}

pub(crate) fn prepare(c: &Checker) -> Result<PreparedOp> {
    let p: TransposeParams = c.params()?;
    let x = c.input_movable(0, "x")?;
    let y = c.output_like(&x)?;
    let r = check_rank_param(c, p.rank, x.dims.len())?;
    if p.perm[r..].iter().any(|&v| v != 0) {
        return c.fail(format!("perm entries past rank {r} are not zero"));
    }
    let perm: Vec<usize> = p.perm[..r].iter().map(|&v| v as usize).collect();
    let mut seen = [false; 6];
    for &d in &perm {
        if d >= r || seen[d] {
            return c.fail(format!("perm {perm:?} is not a permutation of 0..{r}"));
        }
        seen[d] = true;
    }
    let want: Vec<usize> = perm.iter().map(|&d| x.dims[d]).collect();
    c.need_dims(&y, "y", &want)?;
    Ok(c.prepared(OpImpl::Transpose(Transpose { x_dims: x.dims.clone(), perm, int8: x.dtype == DType::I8 }), 0))
}
