//! Splitting an output buffer across the session's threads. Every output chunk is computed by
//! exactly one thread with the same code as the serial path, so results are bit-identical for
//! any thread count.

use crate::kernels::gemm::SyncPtr;
use crate::team::Parallel;

/// Call `f(index, chunk)` for every `chunk`-sized piece of `y` (the last may be shorter), on
/// `pool` when given (and it has more than one thread), else serially. The pieces are split
/// statically: worker `w` of `T` takes pieces `[w*n/T, (w+1)*n/T)`.
pub fn for_each_chunk<T, F, P>(pool: Option<&P>, y: &mut [T], chunk: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
    P: Parallel + ?Sized,
{
    if chunk == 0 || y.is_empty() {
        return;
    }
    let pieces = y.len().div_ceil(chunk);
    let workers = pool.map_or(1, |p| p.threads()).min(pieces);
    match pool {
        Some(p) if workers > 1 => {
            let (len, base) = (y.len(), SyncPtr(y.as_mut_ptr()));
            p.run(workers, &|w| {
                for i in w * pieces / workers..(w + 1) * pieces / workers {
                    let start = i * chunk;
                    let n = chunk.min(len - start);
                    // SAFETY: piece i is [start, start + n) inside `y` (borrowed mutably for
                    // the whole call); each piece index belongs to exactly one worker.
                    let c = unsafe { core::slice::from_raw_parts_mut(base.ptr().add(start), n) };
                    f(i, c);
                }
            });
        }
        _ => y.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c)),
    }
}
