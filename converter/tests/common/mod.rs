//! Shared helpers of the converter's data-driven tests.

use std::path::PathBuf;

/// `../shared/data` relative to the workspace root, or `None` (after printing a skip) when it
/// is absent. Panics when it is absent and `RESQ_REQUIRE_DATA=1`.
pub fn data_dir(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("RESQ_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{test}: test data folder {} is missing and RESQ_REQUIRE_DATA=1", dir.display());
    }
    eprintln!("SKIP {test}: test data folder {} is absent", dir.display());
    None
}

#[allow(dead_code)]
/// Max over elements of |got - want| / (1e-5 + 1e-5 * |want|); <= 1 passes.
pub fn worst_ratio(got: &[f32], want: &[f32]) -> f32 {
    got.iter().zip(want).map(|(g, w)| (g - w).abs() / (1e-5 + 1e-5 * w.abs())).fold(0.0, f32::max)
}

/// True when the tests run on a non-x86_64 target: in CI that means under qemu-user
/// (aarch64 as a Cortex-A72/A76, armv7), where the portable scalar kernels run 20-50x slower
/// than natively. Whole-model tests then check fewer rows (every assertion and tolerance stays
/// the same), so that each test file stays within CI's time budget.
#[allow(dead_code)]
pub fn emulated() -> bool {
    cfg!(not(target_arch = "x86_64"))
}

/// A `Command` that starts `bin`, a program built for this test's target. Cargo runs the test
/// binaries of a cross target through `CARGO_TARGET_<TRIPLE>_RUNNER` (qemu-user), but not the
/// programs a test spawns, and without binfmt_misc the kernel cannot exec a foreign binary. So
/// the same runner goes in front: `RESQ_TEST_RUNNER` when set (blank: none), else the
/// `CARGO_TARGET_*_RUNNER` variable whose triple names this architecture and OS.
#[allow(dead_code)]
pub fn target_command(bin: &str) -> std::process::Command {
    match test_runner() {
        Some(runner) => {
            let mut words = runner.split_whitespace();
            let mut c = std::process::Command::new(words.next().expect("runner is not blank"));
            c.args(words).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

#[allow(dead_code)]
fn test_runner() -> Option<String> {
    if let Ok(r) = std::env::var("RESQ_TEST_RUNNER") {
        return (!r.trim().is_empty()).then_some(r);
    }
    // std's ARCH is "aarch64", "arm", "x86_64", ...: the first word of the target triple
    // ("arm" also starts "armv7"). Sorted so the choice does not depend on the env order.
    let prefix = format!("CARGO_TARGET_{}", std::env::consts::ARCH.to_ascii_uppercase());
    let os = format!("_{}_", std::env::consts::OS.to_ascii_uppercase());
    let mut found: Vec<(String, String)> = std::env::vars()
        .filter(|(k, v)| k.starts_with(&prefix) && k.ends_with("_RUNNER") && k.contains(&os) && !v.trim().is_empty())
        .collect();
    found.sort();
    found.into_iter().next().map(|(_, v)| v)
}
