//! Fully connected layer: `y[m, j] = act(sum_k x[m, k] * w[j, k] + bias[j])`, `w` is `[N, K]`.

use super::act::{dot, Act};
use super::par::for_each_chunk;
use crate::kernels::pack::WeightElem;
use crate::team::Parallel;

/// `w` is f32 or f16 (`W`, widened exactly before each multiply).
/// Contract (validated at load): `x.len() == m*k`, `w.len() == n*k`, `y.len() == m*n`,
/// `bias` has `n` values.
#[allow(clippy::too_many_arguments)]
pub fn linear_f32<W: WeightElem, P: Parallel + ?Sized>(
    m: usize,
    k: usize,
    n: usize,
    x: &[f32],
    w: &[W],
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
    pool: Option<&P>,
) {
    debug_assert_eq!(x.len(), m * k);
    debug_assert_eq!(w.len(), n * k);
    debug_assert_eq!(y.len(), m * n);
    // Batch 1 is the common case: split the outputs, not the rows.
    let chunk = if m == 1 { n.clamp(1, 64) } else { n };
    for_each_chunk(pool, y, chunk, |ci, ys| {
        let start = ci * chunk;
        for (e, v) in ys.iter_mut().enumerate() {
            let (row, j) = ((start + e) / n, (start + e) % n);
            let acc = dot(&x[row * k..(row + 1) * k], &w[j * k..(j + 1) * k]);
            *v = act.apply(acc + bias.map_or(0.0, |b| b[j]));
        }
    });
}
