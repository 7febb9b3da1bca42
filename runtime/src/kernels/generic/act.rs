//! Fused activations, applied in kernel epilogues, and the dot products of the scalar kernels.

use crate::kernels::pack::WeightElem;

/// An activation function applied to each output value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
}

impl Act {
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => v.max(0.0),
            Act::Clip(lo, hi) => v.max(lo).min(hi),
        }
    }

    /// Apply in place to a slice (the match is hoisted out of the loop so it vectorises).
    #[inline]
    pub fn apply_slice(self, y: &mut [f32]) {
        match self {
            Act::None => {}
            Act::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
            Act::Clip(lo, hi) => y.iter_mut().for_each(|v| *v = v.max(lo).min(hi)),
        }
    }
}

/// Dot product with 16 independent partial sums, so the loop vectorises without relying on
/// float reassociation. Reads `min(a.len(), b.len())` elements. `b` is f32 or f16 (widened
/// exactly, see [`WeightElem`]).
#[inline]
pub fn dot<W: WeightElem>(a: &[f32], b: &[W]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i].to_f32();
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y.to_f32();
    }
    let mut s8 = [0f32; 8];
    for i in 0..8 {
        s8[i] = acc[i] + acc[i + 8];
    }
    let s4 = [s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]];
    (s4[0] + s4[2]) + (s4[1] + s4[3]) + tail
}

/// Four dot products of `x` with `w[0..4]` at once (each `x.len()` long), sharing the loads of
/// `x`: 4 x 8 partial sums. Used where several output channels read the same input run.
#[inline]
pub fn dot4<W: WeightElem>(x: &[f32], w: [&[W]; 4]) -> [f32; 4] {
    let n = x.len();
    let (w0, w1, w2, w3) = (&w[0][..n], &w[1][..n], &w[2][..n], &w[3][..n]);
    let mut acc = [[0f32; 8]; 4];
    let cx = x.chunks_exact(8);
    let tail_at = n - cx.remainder().len();
    for ((((xs, a), b), c), d) in
        cx.zip(w0.chunks_exact(8)).zip(w1.chunks_exact(8)).zip(w2.chunks_exact(8)).zip(w3.chunks_exact(8))
    {
        for i in 0..8 {
            acc[0][i] += xs[i] * a[i].to_f32();
            acc[1][i] += xs[i] * b[i].to_f32();
            acc[2][i] += xs[i] * c[i].to_f32();
            acc[3][i] += xs[i] * d[i].to_f32();
        }
    }
    let mut out = [0f32; 4];
    for (j, (o, wj)) in out.iter_mut().zip([w0, w1, w2, w3]).enumerate() {
        let a = &acc[j];
        let mut t = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
        for (xv, wv) in x[tail_at..].iter().zip(&wj[tail_at..]) {
            t += xv * wv.to_f32();
        }
        *o = t;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_for_all_lengths() {
        for n in 0..70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn dot4_matches_dot() {
        for n in 0..40 {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let ws: Vec<Vec<f32>> =
                (0..4).map(|j| (0..n).map(|i| ((i * (j + 2)) as f32 * 0.11).cos()).collect()).collect();
            let got = dot4(&x, [&ws[0], &ws[1], &ws[2], &ws[3]]);
            for j in 0..4 {
                assert!((got[j] - dot(&x, &ws[j])).abs() < 1e-5, "n={n} j={j}");
            }
        }
    }

    #[test]
    fn acts() {
        assert_eq!(Act::Relu.apply(-1.0), 0.0);
        assert_eq!(Act::Clip(0.0, 6.0).apply(7.0), 6.0);
        let mut v = [-2.0, 3.0, 9.0];
        Act::Clip(-1.0, 6.0).apply_slice(&mut v);
        assert_eq!(v, [-1.0, 3.0, 6.0]);
    }
}
