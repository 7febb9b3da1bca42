//! Softmax along the middle axis of `[outer, axis_len, inner]`, numerically stable
//! (the maximum is subtracted before `exp`).

/// Contract: `x.len() == y.len() == outer * axis_len * inner`.
pub fn softmax_f32(outer: usize, axis_len: usize, inner: usize, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), outer * axis_len * inner);
    debug_assert_eq!(y.len(), x.len());
    for o in 0..outer {
        let base = o * axis_len * inner;
        for i in 0..inner {
            let at = |a: usize| base + a * inner + i;
            let mut m = f32::NEG_INFINITY;
            for a in 0..axis_len {
                m = m.max(x[at(a)]);
            }
            let mut sum = 0f32;
            for a in 0..axis_len {
                let e = (x[at(a)] - m).exp();
                y[at(a)] = e;
                sum += e;
            }
            for a in 0..axis_len {
                y[at(a)] /= sum;
            }
        }
    }
}
