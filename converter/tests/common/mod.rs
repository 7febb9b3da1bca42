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
