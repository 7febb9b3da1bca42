//! Tensor arithmetic on constants (convert-time evaluation) and the index plans that the
//! importer shares between constant folding and run-time ops (Slice, Pad, Transpose).

use crate::ir::Data;

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Calls `f` with every multi-index of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Flat source index, for each element of `out` (row-major), of an operand of shape `src`
/// broadcast to `out`.
pub fn broadcast_indices(src: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let st = strides(src);
    let mut bst = vec![0; r];
    for d in 0..src.len() {
        let od = d + r - src.len();
        bst[od] = if src[d] == 1 { 0 } else { st[d] };
    }
    let mut v = Vec::with_capacity(out.iter().product());
    for_each_index(out, |idx| v.push(idx.iter().zip(&bst).map(|(i, s)| i * s).sum()));
    v
}

/// Elementwise binary operators that fold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a op b` with numpy broadcasting; both operands must be of one storage class.
pub fn binary(op: BinOp, a: (&[usize], &Data), b: (&[usize], &Data)) -> Result<(Vec<usize>, Data), String> {
    let shape = broadcast_shape(a.0, b.0).ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", a.0, b.0))?;
    let ia = broadcast_indices(a.0, &shape);
    let ib = broadcast_indices(b.0, &shape);
    let data = match (a.1, b.1) {
        (Data::F32(x), Data::F32(y)) => Data::F32(
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| match op {
                    BinOp::Add => x[i] + y[j],
                    BinOp::Sub => x[i] - y[j],
                    BinOp::Mul => x[i] * y[j],
                    BinOp::Div => x[i] / y[j],
                })
                .collect(),
        ),
        (Data::I64(x), Data::I64(y)) => {
            let mut v = Vec::with_capacity(ia.len());
            for (&i, &j) in ia.iter().zip(&ib) {
                v.push(match op {
                    BinOp::Add => x[i].wrapping_add(y[j]),
                    BinOp::Sub => x[i].wrapping_sub(y[j]),
                    BinOp::Mul => x[i].wrapping_mul(y[j]),
                    BinOp::Div => {
                        if y[j] == 0 {
                            return Err("integer division by zero".into());
                        }
                        x[i].wrapping_div(y[j])
                    }
                });
            }
            Data::I64(v)
        }
        _ => return Err("operands have different element types".into()),
    };
    Ok((shape, data))
}

/// Normalise an axis in `-rank..rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// Source indices of a transpose: `out.shape[d] = shape[perm[d]]`.
pub fn transpose_indices(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let st = strides(shape);
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let mut v = Vec::with_capacity(out.iter().product());
    for_each_index(&out, |idx| v.push(idx.iter().zip(&pst).map(|(i, s)| i * s).sum()));
    (out, v)
}

/// A resolved slice over every dim: start, step and output extent per dim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePlan {
    pub starts: Vec<i64>,
    pub steps: Vec<i64>,
    pub out: Vec<usize>,
}

/// ONNX Slice semantics (clamping, negative indices and steps) for `shape`.
pub fn slice_plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<SlicePlan, String> {
    let n = starts.len();
    if ends.len() != n {
        return Err(format!("starts has {n} entries but ends has {}", ends.len()));
    }
    let default_axes: Vec<i64> = (0..n as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    if axes.len() != n || steps.is_some_and(|s| s.len() != n) {
        return Err("starts, ends, axes and steps must have the same length".into());
    }
    let mut plan = SlicePlan { starts: vec![0; shape.len()], steps: vec![1; shape.len()], out: shape.to_vec() };
    let mut seen = vec![false; shape.len()];
    for k in 0..n {
        let ax = norm_axis(axes[k], shape.len())?;
        if std::mem::replace(&mut seen[ax], true) {
            return Err(format!("axis {ax} is sliced twice"));
        }
        let dim = shape[ax] as i64;
        let step = steps.map_or(1, |s| s[k]);
        if step == 0 {
            return Err("slice step is 0".into());
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, count) = if step > 0 {
            let s = fix(starts[k]).clamp(0, dim);
            let e = fix(ends[k]).clamp(0, dim);
            (s, if e > s { (e - s + step - 1) / step } else { 0 })
        } else {
            let s = fix(starts[k]).clamp(0, dim - 1);
            let e = fix(ends[k]).clamp(-1, dim - 1);
            let st = -step;
            (s, if s > e { (s - e + st - 1) / st } else { 0 })
        };
        plan.starts[ax] = start;
        plan.steps[ax] = step;
        plan.out[ax] = count as usize;
    }
    Ok(plan)
}

/// Source indices of a slice plan over `shape`.
pub fn slice_indices(shape: &[usize], plan: &SlicePlan) -> Vec<usize> {
    let st = strides(shape);
    let mut v = Vec::with_capacity(plan.out.iter().product());
    for_each_index(&plan.out, |idx| {
        let mut off = 0i64;
        for d in 0..idx.len() {
            off += (plan.starts[d] + idx[d] as i64 * plan.steps[d]) * st[d] as i64;
        }
        v.push(off as usize);
    });
    v
}

/// Source index (or `None` for padding) of every element of a constant-pad output.
pub fn pad_indices(shape: &[usize], before: &[i64], out: &[usize]) -> Vec<Option<usize>> {
    let st = strides(shape);
    let mut v = Vec::with_capacity(out.iter().product());
    for_each_index(out, |idx| {
        let mut off = 0usize;
        for d in 0..idx.len() {
            let s = idx[d] as i64 - before[d];
            if s < 0 || s >= shape[d] as i64 {
                v.push(None);
                return;
            }
            off += s as usize * st[d];
        }
        v.push(Some(off));
    });
    v
}

/// Output shape of a Reshape (ONNX rules: 0 copies the input dim unless `allowzero`, one -1
/// is inferred).
pub fn reshape_shape(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            -1 => return Err("more than one -1 in the shape".into()),
            0 if !allowzero => out.push(
                *input.get(i).ok_or_else(|| format!("shape entry {i} is 0 but the input has rank {}", input.len()))?,
            ),
            d if d >= 0 => out.push(d as usize),
            d => return Err(format!("invalid shape entry {d}")),
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("the target shape overflows")?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {input:?} to {spec:?}"));
        }
        out[i] = total / known;
    }
    if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(total) {
        return Err(format!("cannot reshape {input:?} ({total} elements) to {spec:?}"));
    }
    Ok(out)
}

/// Concatenate along `axis`.
pub fn concat(parts: &[(&[usize], &Data)], axis: usize) -> Result<(Vec<usize>, Data), String> {
    let first = parts.first().ok_or("Concat without inputs")?;
    let rank = first.0.len();
    let mut out = first.0.to_vec();
    out[axis] = 0;
    for (s, d) in parts {
        if s.len() != rank || (0..rank).any(|k| k != axis && s[k] != first.0[k]) {
            return Err(format!("cannot concatenate shapes {:?} and {:?} on axis {axis}", first.0, s));
        }
        if std::mem::discriminant(*d) != std::mem::discriminant(first.1) {
            return Err("inputs have different element types".into());
        }
        out[axis] += s[axis];
    }
    let outer: usize = out[..axis].iter().product();
    let mut data = match first.1 {
        Data::F32(_) => Data::F32(Vec::new()),
        Data::I64(_) => Data::I64(Vec::new()),
    };
    for o in 0..outer {
        for (s, d) in parts {
            let chunk: usize = s[axis..].iter().product();
            match (&mut data, d) {
                (Data::F32(v), Data::F32(x)) => v.extend_from_slice(&x[o * chunk..(o + 1) * chunk]),
                (Data::I64(v), Data::I64(x)) => v.extend_from_slice(&x[o * chunk..(o + 1) * chunk]),
                _ => {}
            }
        }
    }
    Ok((out, data))
}

/// Gather along `axis` with (possibly negative) `indices` of shape `ishape`.
pub fn gather(
    shape: &[usize],
    data: &Data,
    axis: usize,
    ishape: &[usize],
    indices: &[i64],
) -> Result<(Vec<usize>, Data), String> {
    let dim = shape[axis] as i64;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut idx = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let i = if i < 0 { i + dim } else { i };
            if !(0..dim).contains(&i) {
                return Err(format!("index {i} is out of range for a dim of {dim}"));
            }
            for k in 0..inner {
                idx.push((o * dim as usize + i as usize) * inner + k);
            }
        }
    }
    let mut out = shape[..axis].to_vec();
    out.extend_from_slice(ishape);
    out.extend_from_slice(&shape[axis + 1..]);
    Ok((out, data.gather(&idx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shape(&[3, 4, 5], &[5]), Some(vec![3, 4, 5]));
        assert_eq!(broadcast_shape(&[2, 1], &[1, 3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        let (s, d) =
            binary(BinOp::Sub, (&[2, 1], &Data::I64(vec![10, 20])), (&[3], &Data::I64(vec![1, 2, 3]))).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(d, Data::I64(vec![9, 8, 7, 19, 18, 17]));
        assert!(binary(BinOp::Div, (&[1], &Data::I64(vec![1])), (&[1], &Data::I64(vec![0]))).is_err());
    }

    #[test]
    fn slice_plan_follows_onnx_clamping() {
        // x[:, ::2] on [3, 5] with INT64_MAX end.
        let p = slice_plan(&[3, 5], &[0], &[i64::MAX], Some(&[1]), Some(&[2])).unwrap();
        assert_eq!(p.out, vec![3, 3]);
        assert_eq!(p.starts, vec![0, 0]);
        // Reverse: start -1, end -INT64_MAX, step -1 (what torch exports for flip).
        let p = slice_plan(&[4], &[-1], &[-i64::MAX], None, Some(&[-1])).unwrap();
        assert_eq!((p.starts[0], p.steps[0], p.out[0]), (3, -1, 4));
        assert_eq!(slice_indices(&[4], &p), vec![3, 2, 1, 0]);
        // Negative start, clamped end.
        let p = slice_plan(&[10], &[-3], &[100], None, None).unwrap();
        assert_eq!((p.starts[0], p.out[0]), (7, 3));
        // Empty.
        let p = slice_plan(&[10], &[5], &[2], None, None).unwrap();
        assert_eq!(p.out[0], 0);
        assert!(slice_plan(&[10], &[0], &[1], None, Some(&[0])).is_err());
    }

    #[test]
    fn reshape_rules() {
        assert_eq!(reshape_shape(&[2, 3, 4], &[0, -1], false).unwrap(), vec![2, 12]);
        assert_eq!(reshape_shape(&[2, 3, 4], &[-1, 2], false).unwrap(), vec![12, 2]);
        assert_eq!(reshape_shape(&[0, 3, 4], &[3, 4, 0], true).unwrap(), vec![3, 4, 0]);
        assert!(reshape_shape(&[2, 3, 4], &[5, -1], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[-1, -1], false).is_err());
    }

    #[test]
    fn transpose_concat_gather_pad() {
        let (s, idx) = transpose_indices(&[2, 3], &[1, 0]);
        assert_eq!(s, vec![3, 2]);
        assert_eq!(idx, vec![0, 3, 1, 4, 2, 5]);
        let a = Data::I64(vec![1, 2]);
        let b = Data::I64(vec![3]);
        let (s, d) = concat(&[(&[2], &a), (&[1], &b)], 0).unwrap();
        assert_eq!((s, d), (vec![3], Data::I64(vec![1, 2, 3])));
        let (s, d) = gather(&[3], &Data::I64(vec![7, 8, 9]), 0, &[], &[-1]).unwrap();
        assert_eq!((s, d), (vec![], Data::I64(vec![9])));
        let p = pad_indices(&[2], &[1], &[4]);
        assert_eq!(p, vec![None, Some(0), Some(1), None]);
    }
}
