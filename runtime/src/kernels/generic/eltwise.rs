//! Element-wise kernels: broadcast add, activation, per-channel affine.

use super::act::Act;
use crate::format::MAX_RANK;

/// `y[i] = act(a[off_a(i)] + b[off_b(i)])` where `i` runs over `y_dims` row-major and
/// `off_x(i) = sum_d i_d * x_strides[d]` (stride 0 on broadcast dims).
///
/// Contract (validated at load): `y_dims.len() <= 6`, the strides have the same length, and
/// every offset reached lies inside `a` / `b`.
pub fn add_f32(
    y_dims: &[usize],
    a: &[f32],
    a_strides: &[usize],
    b: &[f32],
    b_strides: &[usize],
    act: Act,
    y: &mut [f32],
) {
    let r = y_dims.len();
    debug_assert!(r <= MAX_RANK && a_strides.len() == r && b_strides.len() == r);
    // Pad to 6 dims (leading 1s, stride 0).
    let mut d = [1usize; MAX_RANK];
    let mut sa = [0usize; MAX_RANK];
    let mut sb = [0usize; MAX_RANK];
    d[MAX_RANK - r..].copy_from_slice(y_dims);
    sa[MAX_RANK - r..].copy_from_slice(a_strides);
    sb[MAX_RANK - r..].copy_from_slice(b_strides);
    let inner = d[5];
    let mut k = 0usize;
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                for i3 in 0..d[3] {
                    for i4 in 0..d[4] {
                        let oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3] + i4 * sa[4];
                        let ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3] + i4 * sb[4];
                        let yr = &mut y[k..k + inner];
                        match (sa[5], sb[5]) {
                            (1, 1) => {
                                let (ar, br) = (&a[oa..oa + inner], &b[ob..ob + inner]);
                                for ((v, &p), &q) in yr.iter_mut().zip(ar).zip(br) {
                                    *v = p + q;
                                }
                            }
                            (1, 0) => {
                                let (ar, q) = (&a[oa..oa + inner], b[ob]);
                                yr.iter_mut().zip(ar).for_each(|(v, &p)| *v = p + q);
                            }
                            (0, 1) => {
                                let (p, br) = (a[oa], &b[ob..ob + inner]);
                                yr.iter_mut().zip(br).for_each(|(v, &q)| *v = p + q);
                            }
                            (s1, s2) => {
                                for (j, v) in yr.iter_mut().enumerate() {
                                    *v = a[oa + j * s1] + b[ob + j * s2];
                                }
                            }
                        }
                        act.apply_slice(yr);
                        k += inner;
                    }
                }
            }
        }
    }
}

/// `y = act(x)`.
pub fn activation_f32(x: &[f32], act: Act, y: &mut [f32]) {
    y.copy_from_slice(x);
    act.apply_slice(y);
}

/// `y[.., c] = act(x[.., c] * scale[c] + shift[c])` over rows of `scale.len()` channels.
pub fn channel_affine_f32(x: &[f32], scale: &[f32], shift: &[f32], act: Act, y: &mut [f32]) {
    let c = scale.len();
    if c == 0 {
        return;
    }
    for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for (((v, &p), &s), &t) in yr.iter_mut().zip(xr).zip(scale).zip(shift) {
            *v = p * s + t;
        }
        act.apply_slice(yr);
    }
}
