//! A static thread team: the calling thread plus `threads - 1` long-lived workers that run one
//! closure `f(worker_index)` at a time over a partition the kernels compute themselves.
//!
//! Why not rayon: the kernels' work is split statically (every output element belongs to one
//! share, computed in a fixed order, so results do not depend on the thread count), so a
//! work-stealing pool buys nothing, and rayon's threads allocate now and then outside the
//! session's control (see "Start and stop" below), which broke "`Session::run` allocates
//! nothing" at N threads. A team run is one atomic store, an `unpark` per worker (a futex
//! wake only if it sleeps), one atomic increment per share claimed and one per share done;
//! it allocates nothing after [`Team::new`].
//!
//! Protocol (all through `Shared`):
//! - `claim` = `generation << 32 | shares << 16 | next`. The caller writes `job` and `caller`,
//!   sets `done = 0`, then publishes a new generation with `next = 0` (Release store) and
//!   unparks up to `shares - 1` workers.
//! - Every participant (the caller and each worker that sees the new generation) claims
//!   share indices with `fetch_add(1)` on `claim` until they run out, runs `job(i)` for each
//!   index it got, and increments `done`; the participant that completes the last share
//!   unparks the caller. So a share runs on whichever thread claims it first: when a worker
//!   is not scheduled (a loaded machine) the caller does its share instead of waiting for
//!   it. What a share computes does not depend on who runs it: results are unchanged.
//! - The caller waits (spin, yield, park) until `done == shares` (Acquire). Only then may it
//!   return, so `job` (a pointer to the caller's stack) outlives every use, and `job`/`caller`
//!   are never written while a participant may read them (a claim of a finished generation
//!   fails; a successful claim happens-after the Release store that published `job`).
//! - Panics: each share runs under `catch_unwind`; the caller re-raises after all shares are
//!   done (its own panic payload first, else a new panic naming the team).
//! - A nested or concurrent [`Team::run`] (from inside a job, or another thread) finds `busy`
//!   set and runs its shares serially on the calling thread: same results, no deadlock.
//! - Start and stop are synchronous: [`Team::new`] returns only when every worker runs its
//!   loop, and drop joins them. A thread allocates while it starts (std's stack-overflow
//!   handler keeps a copy of the thread name) and while it exits (thread-local destructors);
//!   rayon's pool does both asynchronously, which is where the rare allocations seen "inside"
//!   `Session::run` at 2 threads came from (a backtrace-capturing allocator showed a late
//!   pool thread's start-up `Box<str>`, and a previous session's pool thread pushing its
//!   crossbeam-epoch garbage bag, 2 KB, from its TLS destructor while the next session ran).
//! - Drop: `shutdown`, a new generation with no shares, unpark all, join all.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Something that runs `f(w)` for `w in 0..workers`, each on its own thread, and returns when
/// all are done: the session's [`Team`] (and a `rayon::ThreadPool`, for callers that still
/// hold one). Kernels take `Option<&P>` with `P: Parallel` and split their work statically.
pub trait Parallel: Sync {
    /// Threads available (including the caller's).
    fn threads(&self) -> usize;
    /// Runs `f(w)` for every `w in 0..workers` (`workers <= threads()` run concurrently; more
    /// are allowed and run in some order) and returns when every call has returned. A panic
    /// in any call is propagated after all calls have finished.
    fn run(&self, workers: usize, f: &(dyn Fn(usize) + Sync));
}

impl Parallel for rayon::ThreadPool {
    fn threads(&self) -> usize {
        self.current_num_threads()
    }

    fn run(&self, workers: usize, f: &(dyn Fn(usize) + Sync)) {
        use rayon::prelude::*;
        if workers <= 1 {
            (0..workers).for_each(f);
        } else {
            // `install` runs inline when called on one of the pool's own threads.
            self.install(|| (0..workers).into_par_iter().for_each(f));
        }
    }
}

/// How long an idle worker spins (then yields, then parks) before sleeping; the caller waits
/// for the workers the same way. Ops of a small network are 10-100 us apart.
const SPIN: Duration = Duration::from_micros(50);
const YIELD: Duration = Duration::from_micros(300);

/// Most shares of one [`Team::run`] claimed through the team (more run serially): the share
/// counter is 16 bits and every participant's last, failing claim also increments it.
const MAX_SHARES: usize = (1 << 15) - 1;
/// The most threads a team can have.
pub const MAX_THREADS: usize = 1 << 14;

/// The job of the current generation: a `&dyn Fn` living on the caller's stack.
type JobRef<'a> = &'a (dyn Fn(usize) + Sync + 'a);

struct Shared {
    /// `generation << 32 | shares << 16 | next share` (see the module docs).
    claim: AtomicU64,
    /// Points to a [`JobRef`] on the caller's stack, valid while the generation is running.
    job: AtomicPtr<()>,
    done: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    busy: AtomicBool,
    /// Workers that have reached their loop.
    started: AtomicUsize,
    /// The thread to unpark when `done` reaches the share count (written only between
    /// generations).
    caller: UnsafeCell<Option<Thread>>,
}

// SAFETY: `caller` is written by the thread that holds `busy` before it publishes a generation
// (Release) and read only by participants that claimed a share of that generation (their
// claim is an AcqRel RMW on the word the publishing store wrote), before they report the share
// done; the writer waits until every share is done before it writes again, so reads and
// writes never overlap. Everything else is atomic.
unsafe impl Sync for Shared {}

/// A fixed team of threads for the kernels' parallel loops (see the module docs).
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<(Thread, Option<JoinHandle<()>>)>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("threads", &self.threads()).finish_non_exhaustive()
    }
}

impl Team {
    /// A team of `threads` threads: the caller of [`Team::run`] plus `threads - 1` workers
    /// started now (named `resq-1`, `resq-2`, ...). `threads` is clamped to `1..=MAX_THREADS`.
    /// Returns once every worker is running (no thread start-up work is left for later).
    pub fn new(threads: usize) -> std::io::Result<Team> {
        let threads = threads.clamp(1, MAX_THREADS);
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            job: AtomicPtr::new(core::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            started: AtomicUsize::new(0),
            caller: UnsafeCell::new(None),
        });
        let mut team = Team { shared, workers: Vec::with_capacity(threads - 1) };
        for index in 1..threads {
            let sh = Arc::clone(&team.shared);
            // On error `team` is dropped, which stops the workers started so far.
            let handle = std::thread::Builder::new().name(format!("resq-{index}")).spawn(move || worker(&sh))?;
            team.workers.push((handle.thread().clone(), Some(handle)));
        }
        while team.shared.started.load(Ordering::Acquire) < threads - 1 {
            std::thread::yield_now();
        }
        Ok(team)
    }

    /// Threads of the team, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i)` for every share `i in 0..shares`, each exactly once, on the calling thread
    /// and the team's workers (whichever claims a share first runs it). Returns when all are
    /// done; re-raises a panic of any of them. Allocates nothing.
    pub fn run(&self, shares: usize, f: &(dyn Fn(usize) + Sync)) {
        let sh = &*self.shared;
        if shares <= 1
            || self.workers.is_empty()
            || shares > MAX_SHARES
            || sh.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            // One share, no workers, or a nested / concurrent call: serially, here.
            (0..shares).for_each(f);
            return;
        }
        let job: JobRef<'_> = f;
        // SAFETY: we hold `busy` and the previous generation is finished (all its shares were
        // done when its caller returned), so nobody reads `caller` now (see `Shared`).
        unsafe { *sh.caller.get() = Some(std::thread::current()) };
        sh.job.store(&job as *const JobRef<'_> as *mut (), Ordering::Relaxed);
        sh.panicked.store(false, Ordering::Relaxed);
        sh.done.store(0, Ordering::Relaxed);
        let gen = (sh.claim.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        sh.claim.store(gen << 32 | (shares as u64) << 16, Ordering::Release);
        for (t, _) in self.workers.iter().take(shares - 1) {
            t.unpark();
        }
        let mut mine = Ok(());
        while let Some(i) = claim(sh) {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i)));
            if mine.is_ok() {
                mine = r;
            }
            sh.done.fetch_add(1, Ordering::AcqRel);
        }
        wait_until(|| sh.done.load(Ordering::Acquire) == shares);
        let worker_panicked = sh.panicked.load(Ordering::Relaxed);
        sh.busy.store(false, Ordering::Release);
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        if worker_panicked {
            panic!("resq: a kernel panicked on a worker thread of the session's team");
        }
    }
}

/// Claims the next share of the current generation, or `None` when all are taken.
#[inline]
fn claim(sh: &Shared) -> Option<usize> {
    let v = sh.claim.fetch_add(1, Ordering::AcqRel);
    let (shares, i) = ((v >> 16) & 0xffff, v & 0xffff);
    (i < shares).then_some(i as usize)
}

impl Parallel for Team {
    fn threads(&self) -> usize {
        Team::threads(self)
    }

    fn run(&self, workers: usize, f: &(dyn Fn(usize) + Sync)) {
        Team::run(self, workers, f)
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.shutdown.store(true, Ordering::Release);
        let gen = (sh.claim.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        sh.claim.store(gen << 32, Ordering::Release);
        for (t, _) in &self.workers {
            t.unpark();
        }
        for (_, h) in &mut self.workers {
            if let Some(h) = h.take() {
                // A worker never unwinds (jobs' panics are caught), so join only fails if the
                // thread was killed; nothing to do about it in a destructor.
                let _ = h.join();
            }
        }
    }
}

/// Spins, then yields, then parks until `done()` (parking relies on an `unpark` after the
/// condition becomes true; spurious wake-ups just re-check).
#[inline]
fn wait_until(mut done: impl FnMut() -> bool) {
    if done() {
        return;
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if done() {
                return;
            }
            std::hint::spin_loop();
        }
        let waited = start.elapsed();
        if waited < SPIN {
            continue;
        }
        if waited < YIELD {
            std::thread::yield_now();
        } else {
            std::thread::park();
        }
    }
}

fn worker(sh: &Shared) {
    sh.started.fetch_add(1, Ordering::Release);
    let mut seen = 0u64;
    loop {
        wait_until(|| sh.claim.load(Ordering::Acquire) >> 32 != seen);
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = sh.claim.load(Ordering::Acquire) >> 32;
        while let Some(i) = claim(sh) {
            // SAFETY: our claim of share i succeeded, so its generation is running: the caller
            // wrote `caller` and `job` before publishing it (our AcqRel claim read that
            // Release store or a later increment of it) and waits for this share to be done
            // before touching them again (see `Shared`).
            let caller = unsafe { (*sh.caller.get()).clone() };
            let job = sh.job.load(Ordering::Relaxed) as *const JobRef<'_>;
            // SAFETY: `job` points to the caller's `JobRef`, alive until every share is done.
            let f: JobRef<'_> = unsafe { *job };
            let shares = (sh.claim.load(Ordering::Relaxed) >> 16) & 0xffff;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_err() {
                sh.panicked.store(true, Ordering::Relaxed);
            }
            if sh.done.fetch_add(1, Ordering::AcqRel) + 1 == shares as usize {
                if let Some(c) = caller {
                    c.unpark();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_index_runs_once_on_distinct_threads() {
        for threads in 1..=4 {
            let team = Team::new(threads).expect("team");
            assert_eq!(team.threads(), threads);
            for workers in 0..=6 {
                for _ in 0..50 {
                    let hits: Vec<AtomicUsize> = (0..workers).map(|_| AtomicUsize::new(0)).collect();
                    team.run(workers, &|w| {
                        hits[w].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(
                        hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                        "{threads} threads, {workers} workers"
                    );
                }
            }
            // The workers take part: shares that wait for each other can only finish if each
            // runs on its own thread (time-limited, so a broken team fails instead of hanging).
            let arrived = AtomicUsize::new(0);
            let ids: Vec<std::sync::Mutex<Option<std::thread::ThreadId>>> =
                (0..threads).map(|_| std::sync::Mutex::new(None)).collect();
            team.run(threads, &|w| {
                *ids[w].lock().unwrap() = Some(std::thread::current().id());
                arrived.fetch_add(1, Ordering::SeqCst);
                let t0 = Instant::now();
                while arrived.load(Ordering::SeqCst) < threads && t0.elapsed() < Duration::from_secs(20) {
                    std::hint::spin_loop();
                }
            });
            let mut seen: Vec<_> = ids.iter().map(|m| format!("{:?}", m.lock().unwrap().expect("ran"))).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), threads, "{threads} shares waiting for each other ran on {} threads", seen.len());
        }
    }

    #[test]
    fn panics_propagate_and_the_team_survives() {
        let team = Team::new(3).expect("team");
        for bad in 0..3 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                team.run(3, &|w| assert!(w != bad, "boom {w}"));
            }));
            assert!(r.is_err(), "panic of worker {bad} was lost");
            let n = AtomicUsize::new(0);
            team.run(3, &|_| {
                n.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(n.load(Ordering::Relaxed), 3);
        }
    }

    #[test]
    fn nested_and_concurrent_runs_complete() {
        let team = Team::new(2).expect("team");
        let n = AtomicUsize::new(0);
        team.run(2, &|_| {
            team.run(3, &|_| {
                n.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(n.load(Ordering::Relaxed), 6);
        let m = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..100 {
                        team.run(2, &|_| {
                            m.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(m.load(Ordering::Relaxed), 600);
    }

    #[test]
    fn idle_workers_sleep_and_wake() {
        let team = Team::new(2).expect("team");
        std::thread::sleep(Duration::from_millis(5)); // past the spin/yield phase: parked
        let n = AtomicUsize::new(0);
        team.run(2, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }
}
