//! Data movement: transpose, slice (strided gather), constant pad. All over physical dims,
//! rank <= 6, row-major index order, for any element type (f32 and int8 tensors).

use crate::format::MAX_RANK;

/// Row-major strides of `dims` (rank <= 6), in a fixed array (no allocation).
pub fn strides(dims: &[usize]) -> [usize; MAX_RANK] {
    let mut s = [0usize; MAX_RANK];
    let mut acc = 1usize;
    for d in (0..dims.len().min(MAX_RANK)).rev() {
        s[d] = acc;
        acc *= dims[d];
    }
    s
}

/// `y[i] = x[base + sum_d i_d * src[d]]` for `i` over `y_dims` row-major (rank <= 6, padded
/// with leading 1s). Contract: every offset reached lies inside `x`.
fn gather<T: Copy>(y_dims: &[usize], src: &[isize], base: isize, x: &[T], y: &mut [T]) {
    let r = y_dims.len();
    let mut d = [1usize; MAX_RANK];
    let mut s = [0isize; MAX_RANK];
    d[MAX_RANK - r..].copy_from_slice(y_dims);
    s[MAX_RANK - r..].copy_from_slice(src);
    let inner = d[5];
    let mut k = 0usize;
    for i0 in 0..d[0] {
        let o0 = base + i0 as isize * s[0];
        for i1 in 0..d[1] {
            let o1 = o0 + i1 as isize * s[1];
            for i2 in 0..d[2] {
                let o2 = o1 + i2 as isize * s[2];
                for i3 in 0..d[3] {
                    let o3 = o2 + i3 as isize * s[3];
                    for i4 in 0..d[4] {
                        let o4 = o3 + i4 as isize * s[4];
                        let yr = &mut y[k..k + inner];
                        if s[5] == 1 {
                            yr.copy_from_slice(&x[o4 as usize..o4 as usize + inner]);
                        } else {
                            for (j, v) in yr.iter_mut().enumerate() {
                                *v = x[(o4 + j as isize * s[5]) as usize];
                            }
                        }
                        k += inner;
                    }
                }
            }
        }
    }
}

/// `y.dims[d] = x_dims[perm[d]]`, `y[i] = x[j]` with `j[perm[d]] = i[d]`.
/// Contract: `perm` is a permutation of `0..x_dims.len()`, lengths match.
pub fn transpose<T: Copy>(x_dims: &[usize], perm: &[usize], x: &[T], y: &mut [T]) {
    let r = perm.len().min(MAX_RANK);
    let xs = strides(x_dims);
    let (mut y_dims, mut src) = ([0usize; MAX_RANK], [0isize; MAX_RANK]);
    for d in 0..r {
        y_dims[d] = x_dims[perm[d]];
        src[d] = xs[perm[d]] as isize;
    }
    gather(&y_dims[..r], &src[..r], 0, x, y);
}

/// `y[i] = x[start + i * step]` per dim. Contract: every index read lies inside `x`.
pub fn slice<T: Copy>(x_dims: &[usize], start: &[isize], step: &[isize], y_dims: &[usize], x: &[T], y: &mut [T]) {
    let r = x_dims.len().min(MAX_RANK);
    let xs = strides(x_dims);
    let base: isize = start.iter().zip(&xs).map(|(&s, &st)| s * st as isize).sum();
    let mut src = [0isize; MAX_RANK];
    for (d, v) in src.iter_mut().enumerate().take(r) {
        *v = step[d] * xs[d] as isize;
    }
    gather(y_dims, &src[..r], base, x, y);
}

/// `y` = `value` everywhere, with `x` placed at offset `before[d]` per dim.
/// Contract: `y_dims[d] >= x_dims[d] + before[d]`.
pub fn pad<T: Copy>(x_dims: &[usize], before: &[usize], y_dims: &[usize], value: T, x: &[T], y: &mut [T]) {
    y.fill(value);
    let r = x_dims.len();
    let ys = strides(y_dims);
    let mut d = [1usize; MAX_RANK];
    let mut s = [0usize; MAX_RANK];
    d[MAX_RANK - r..].copy_from_slice(x_dims);
    s[MAX_RANK - r..].copy_from_slice(&ys[..r]);
    let base: usize = before.iter().zip(&ys).map(|(&b, &st)| b * st).sum();
    let inner = d[5];
    let mut k = 0usize;
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                for i3 in 0..d[3] {
                    for i4 in 0..d[4] {
                        let o = base + i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3] + i4 * s[4];
                        y[o..o + inner].copy_from_slice(&x[k..k + inner]);
                        k += inner;
                    }
                }
            }
        }
    }
}

pub use {pad as pad_f32, slice as slice_f32, transpose as transpose_f32};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_nchw_to_nhwc() {
        // [1, 2, 2, 3] -> perm [0, 2, 3, 1] -> [1, 2, 3, 2]
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut y = vec![0.0; 12];
        transpose_f32(&[1, 2, 2, 3], &[0, 2, 3, 1], &x, &mut y);
        // y[0, h, w, c] = x[0, c, h, w] = c*6 + h*3 + w
        for h in 0..2 {
            for w in 0..3 {
                for c in 0..2 {
                    assert_eq!(y[(h * 3 + w) * 2 + c], (c * 6 + h * 3 + w) as f32);
                }
            }
        }
    }

    #[test]
    fn slice_negative_step_and_pad() {
        let x: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let mut y = vec![0.0; 4];
        slice_f32(&[10], &[9], &[-3], &[4], &x, &mut y);
        assert_eq!(y, [9.0, 6.0, 3.0, 0.0]);
        let mut p = vec![0.0; 6];
        pad_f32(&[2], &[3], &[6], -1.0, &x[..2], &mut p);
        assert_eq!(p, [-1.0, -1.0, -1.0, 0.0, 1.0, -1.0]);
    }
}
