//! Splitting an output buffer across the session's threads. Every output chunk is computed by
//! exactly one thread with the same code as the serial path, so results are bit-identical for
//! any thread count.

use rayon::prelude::*;
use rayon::ThreadPool;

/// Call `f(index, chunk)` for every `chunk`-sized piece of `y` (the last may be shorter), on
/// `pool` when given (and it has more than one thread), else serially.
pub fn for_each_chunk<F>(pool: Option<&ThreadPool>, y: &mut [f32], chunk: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if chunk == 0 || y.is_empty() {
        return;
    }
    match pool {
        Some(p) if p.current_num_threads() > 1 && y.len() > chunk => {
            // `install` runs inline when called on one of the pool's own threads (the session
            // drives ops from a pool thread), so this does not inject a job.
            p.install(|| y.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c)));
        }
        _ => y.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c)),
    }
}
