//! `Session::run` allocates nothing after the first call, at 1 and at 2 threads (a counting
//! global allocator measures every allocation of the process while the runs happen).

mod common;
use common::*;
use resq::{Model, Options};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(l.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(n, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `n` inferences with counting on; returns (allocations, bytes).
fn count_runs(model: &Model, threads: usize, n: usize) -> (usize, usize) {
    let x = Rng::new(42).vec(model.input_len());
    let mut s = model.session(Options::default().threads(threads)).unwrap();
    let first = s.run(&x).unwrap().to_vec(); // warm-up
    let mut prof = vec![0.0; model.ops().len()];
    ALLOCS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let mut same = true;
    for i in 0..n {
        let y = if i % 2 == 0 { s.run(&x).unwrap() } else { s.run_profiled(&x, &mut prof).unwrap() };
        same &= y == &first[..];
    }
    COUNTING.store(false, Ordering::SeqCst);
    assert!(same, "outputs changed between runs");
    (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst))
}

// A `harness = false` test (see Cargo.toml): the counter is process-wide, and libtest's own
// threads (its result channel, timers) allocate while a test runs, which showed up as a rare
// 2.3 KB allocation under load. With no harness, the only threads are ours and the session's.
fn main() {
    run_allocates_nothing_after_warm_up();
    println!("no_alloc: 1 passed, 0 failed");
}

/// Zero allocations at any thread count. (Until the session's own thread team replaced the
/// rayon pool, rayon's thread start-up and crossbeam-epoch garbage bags allocated a few KB in
/// about 1 run in 60 under CPU contention; the team starts and stops its threads
/// synchronously and shares work through one atomic word.)
fn check(threads: usize, n: usize, b: usize, runs: usize, what: &str) {
    assert_eq!((n, b), (0, 0), "{what}, {threads} thread(s): {n} allocations, {b} bytes in {runs} runs");
}

fn run_allocates_nothing_after_warm_up() {
    let (bytes, _) = tiny_model(11);
    let model = Model::from_bytes(bytes).unwrap();
    for threads in [1, 2, 3] {
        let (n, b) = count_runs(&model, threads, 200);
        check(threads, n, b, 200, "tiny");
    }
    // A real model (Slice/Pad shortcuts, fused residual convs), when the shared data is there.
    if let Some(data) = shared_data("run_allocates_nothing_after_warm_up (resnet20)") {
        let model = Model::from_bytes(convert_shared(&data, "models/cifar10-resnet20/resnet20.onnx")).unwrap();
        for threads in [1, 2] {
            let (n, b) = count_runs(&model, threads, 70);
            check(threads, n, b, 70, "resnet20");
        }
        // And the int8 path (Quantize, int8 convs, pools, Linear, Dequantize).
        let int8 =
            Model::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/resnet20/resnet20_int8.resq")).unwrap();
        for threads in [1, 2] {
            let (n, b) = count_runs(&int8, threads, 70);
            check(threads, n, b, 70, "resnet20 int8");
        }
    }
    // The counter works: a Vec allocation is seen.
    COUNTING.store(true, Ordering::SeqCst);
    let v = std::hint::black_box(vec![1u8; 10]);
    COUNTING.store(false, Ordering::SeqCst);
    drop(v);
    assert!(ALLOCS.load(Ordering::SeqCst) >= 1);
}
