//! Direct 2-D convolution, NHWC activations, OHWI weights: the scalar reference of every
//! convolution kernel and the fallback on every CPU.
//!
//! ```text
//! y[n, oh, ow, o] = act( bias[o] + residual[n, oh, ow, o]
//!     + sum_{kh, kw, ci} x[n, oh*sh + kh*dh - pt, ow*sw + kw*dw - pl, g*Ig + ci] * w[o, kh, kw, ci] )
//! ```
//! with `g = o / Og` (`Ig = C / groups`, `Og = O / groups`); taps outside the input read zero.
//! The inner loops are dot products over contiguous channel runs; for groups = 1 and
//! dilation_w = 1 a whole kernel row (`KW * C` values) is one contiguous run in both `x` and `w`.

use super::act::{dot, dot4, Act};
use super::par::for_each_chunk;
use crate::kernels::pack::WeightElem;
use crate::team::Parallel;

pub use crate::kernels::gemm::ConvGeom;

/// `y = act(conv(x, w) + bias + residual)`, NHWC / OHWI, f32 activations, f32 or f16
/// weights (`W`, widened exactly before each multiply).
///
/// Contract (validated when the model is loaded): `x.len() == s.x_len()`, `w.len() ==
/// s.w_len()`, `y.len() == s.y_len()`, `bias` has `out_c` values, `residual` has `y.len()`,
/// `groups >= 1` divides both channel counts, strides and dilations are >= 1. A violated
/// contract panics on a slice index; it never reads or writes out of bounds.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_nhwc_ohwi_f32<W: WeightElem, P: Parallel + ?Sized>(
    s: &ConvGeom,
    x: &[f32],
    w: &[W],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
    pool: Option<&P>,
) {
    debug_assert_eq!(x.len(), s.x_len());
    debug_assert_eq!(w.len(), s.w_len());
    debug_assert_eq!(y.len(), s.y_len());
    let row = s.out_w * s.out_c;
    for_each_chunk(pool, y, row, |r, yrow| {
        let (n, oh) = (r / s.out_h, r % s.out_h);
        let res = residual.map(|res| &res[r * row..(r + 1) * row]);
        conv_row(s, x, w, bias, res, act, n, oh, yrow);
    });
}

#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn conv_row<W: WeightElem>(
    s: &ConvGeom,
    x: &[f32],
    w: &[W],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Act,
    n: usize,
    oh: usize,
    yrow: &mut [f32],
) {
    let (c, o_total) = (s.in_c, s.out_c);
    let ig = c / s.groups;
    let og = o_total / s.groups;
    let w_o = s.kh * s.kw * ig; // weights per output channel
                                // First input row of the window; the kernel rows that land inside the input depend only
                                // on the output row.
    let ih0 = (oh * s.stride_h) as isize - s.pad_top as isize;
    for yp in yrow.chunks_exact_mut(o_total) {
        match bias {
            Some(b) => yp.copy_from_slice(&b[..o_total]),
            None => yp.fill(0.0),
        }
    }
    for kh in 0..s.kh {
        let ih = ih0 + (kh * s.dil_h) as isize;
        if ih < 0 || ih >= s.in_h as isize {
            continue;
        }
        let x_row = ((n * s.in_h + ih as usize) * s.in_w) * c;
        if s.groups == 1 && s.dil_w == 1 {
            // One kernel row of 4 output channels (4 x KW*C weights) and one input row stay
            // in L1 while every output pixel of the row is visited. For each pixel the valid
            // taps `0 <= iw0 + kw < in_w` form one contiguous run of x and of each weight row.
            let quads = o_total / 4 * 4;
            for o in (0..o_total).step_by(4) {
                for ow in 0..s.out_w {
                    let iw0 = (ow * s.stride_w) as isize - s.pad_left as isize;
                    let kw_lo = (-iw0).max(0) as usize;
                    let kw_hi = (s.in_w as isize - iw0).clamp(0, s.kw as isize) as usize;
                    if kw_lo >= kw_hi {
                        continue;
                    }
                    let len = (kw_hi - kw_lo) * c;
                    let xs = &x[x_row + (iw0 + kw_lo as isize) as usize * c..][..len];
                    let w_off = (kh * s.kw + kw_lo) * c;
                    let wrow = |o: usize| &w[o * w_o + w_off..][..len];
                    let yp = &mut yrow[ow * o_total..(ow + 1) * o_total];
                    if o < quads {
                        let r = dot4(xs, [wrow(o), wrow(o + 1), wrow(o + 2), wrow(o + 3)]);
                        for (acc, v) in yp[o..o + 4].iter_mut().zip(r) {
                            *acc += v;
                        }
                    } else {
                        for (oo, acc) in yp.iter_mut().enumerate().skip(o) {
                            *acc += dot(xs, wrow(oo));
                        }
                    }
                }
            }
        } else {
            for ow in 0..s.out_w {
                let iw0 = (ow * s.stride_w) as isize - s.pad_left as isize;
                let yp = &mut yrow[ow * o_total..(ow + 1) * o_total];
                for kw in 0..s.kw {
                    let iw = iw0 + (kw * s.dil_w) as isize;
                    if iw < 0 || iw >= s.in_w as isize {
                        continue;
                    }
                    let px = x_row + iw as usize * c;
                    let w_off = (kh * s.kw + kw) * ig;
                    for g in 0..s.groups {
                        let xs = &x[px + g * ig..][..ig];
                        for o in g * og..(g + 1) * og {
                            yp[o] += dot(xs, &w[o * w_o + w_off..][..ig]);
                        }
                    }
                }
            }
        }
    }
    for (ow, yp) in yrow.chunks_exact_mut(o_total).enumerate() {
        if let Some(r) = res {
            for (v, r) in yp.iter_mut().zip(&r[ow * o_total..(ow + 1) * o_total]) {
                *v += r;
            }
        }
        act.apply_slice(yp);
    }
}
