//! `resq eval`: accuracy over a folder of class folders, filters, agreement with a second
//! model, unreadable images, label mismatches. Uses the shipped ResNet-20 and its CIFAR-10
//! PNGs (fixtures/), and, when `../shared/data` is present, a slice of the CIFAR-10 JPEG test set.
#![cfg(feature = "cli")]

mod common;

use resq::format::PreprocessPreset;
use resq_convert::{convert_file, ConvertOptions, Packing};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_resq");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");
const CIFAR: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

fn fixtures() -> PathBuf {
    PathBuf::from(FIXTURES)
}

/// `../shared/data`, or `None` after printing a skip; fails when `RESQ_REQUIRE_DATA=1`.
fn data_dir(test: &str) -> Option<PathBuf> {
    let d = PathBuf::from(DATA);
    if d.is_dir() {
        return Some(d);
    }
    if std::env::var("RESQ_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("{test}: test data {} is missing and RESQ_REQUIRE_DATA=1", d.display());
    }
    eprintln!("SKIP {test}: test data {} not found", d.display());
    None
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("resq-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn resq<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let out = common::target_command(BIN).args(args).output().expect("cannot start the resq binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "resq panicked:\n{stderr}");
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(o), stderr(o));
}

fn assert_exit(o: &Output, code: i32, what: &str) {
    assert_eq!(o.status.code(), Some(code), "{what}\nstdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
    assert!(!stderr(o).trim().is_empty(), "{what}: no message on stderr");
}

/// The value after `key` on the line starting with `key` (e.g. "top-1:").
fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no line starting with {key:?} in:\n{text}"))
}

fn convert(onnx: &Path, preset: PreprocessPreset, packing: Packing, out: &Path) {
    let labels = CIFAR.iter().map(|s| s.to_string()).collect();
    let opts = ConvertOptions { preprocess: Some(preset), labels: Some(labels), packing, ..ConvertOptions::default() };
    let bytes = convert_file(onnx, &opts).unwrap_or_else(|e| panic!("converting {}: {e}", onnx.display()));
    std::fs::write(out, bytes).unwrap();
}

/// The shipped ResNet-20 with cifar preprocessing and labels (fast kernels), converted once.
fn resnet20() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = scratch("model").join("resnet20.resq");
        convert(&fixtures().join("resnet20/resnet20.onnx"), PreprocessPreset::Cifar, Packing::Fast, &p);
        p
    })
}

/// The shipped CIFAR-10 PNGs `cifar10_<i>_<class>.png`, sorted, with their class.
fn shipped_images() -> Vec<(PathBuf, usize)> {
    let mut v: Vec<(PathBuf, usize)> = std::fs::read_dir(fixtures().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            let class = stem.rsplit('_').next().unwrap().parse().expect("cifar10_<i>_<class>.png");
            (p, class)
        })
        .collect();
    v.sort();
    assert_eq!(v.len(), 7, "expected the 7 shipped CIFAR-10 images, found {v:?}");
    v
}

/// A folder of class folders holding the shipped images: class names for most, the class
/// index for ship (8), to exercise both ways of naming a folder.
fn class_tree(name: &str) -> PathBuf {
    let root = scratch(name).join("images");
    for (img, class) in shipped_images() {
        let folder = if class == 8 { "8".to_owned() } else { CIFAR[class].to_owned() };
        std::fs::create_dir_all(root.join(&folder)).unwrap();
        std::fs::copy(&img, root.join(&folder).join(img.file_name().unwrap())).unwrap();
    }
    // Not images: ignored.
    std::fs::write(root.join("README.txt"), "not an image").unwrap();
    std::fs::write(root.join("cat").join(".hidden.png"), "hidden files are skipped").unwrap();
    root
}

#[test]
fn eval_counts_top1_top5_on_the_shipped_images() {
    let tree = class_tree("basic");
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--labels-from-dirs".as_ref(),
        "--threads".as_ref(),
        "1".as_ref(),
    ]);
    assert_ok(&o, "eval");
    let text = stdout(&o);
    // Every shipped image is classified correctly (cli.rs checks them one by one with classify).
    assert!(
        line(&text, "images:")
            .starts_with(&format!("7 evaluated under {} (7 found, 0 excluded, 0 unreadable)", tree.display())),
        "{text}"
    );
    assert_eq!(line(&text, "top-1:"), "7/7 = 100.00%", "{text}");
    assert_eq!(line(&text, "top-5:"), "7/7 = 100.00%", "{text}");
    assert!(line(&text, "model:").contains("fp32") && line(&text, "model:").contains("1 thread)"), "{text}");
    assert!(line(&text, "speed:").contains("images/s"), "{text}");
    assert!(!text.contains("agreement"), "no --compare, no agreement line: {text}");

    // Filters: --exclude drops the two images 0?_ of the first ten, --limit keeps the first 3
    // of the rest in sorted path order, --include selects by name.
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--labels-from-dirs".as_ref(),
        "--exclude".as_ref(),
        "cifar10_0?_*.png, nothing".as_ref(),
    ]);
    assert_ok(&o, "--exclude");
    // The shipped names: 00_3 01_8 03_0 04_6 06_1 12_5 13_7; "0?" matches five of them.
    assert!(line(&stdout(&o), "images:").starts_with("2 evaluated"), "{}", stdout(&o));
    assert!(line(&stdout(&o), "images:").ends_with("(7 found, 5 excluded, 0 unreadable)"), "{}", stdout(&o));
    assert_eq!(line(&stdout(&o), "top-1:"), "2/2 = 100.00%");
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--include".as_ref(),
        "*_1?_*".as_ref(),
        "--limit".as_ref(),
        "1".as_ref(),
    ]);
    assert_ok(&o, "--include --limit");
    assert!(line(&stdout(&o), "images:").starts_with("1 evaluated"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("top-1"), "no --labels-from-dirs, no accuracy: {}", stdout(&o));
}

#[test]
fn eval_json_has_counts_and_per_class_rows() {
    let tree = class_tree("json");
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--labels-from-dirs".as_ref(),
        "--json".as_ref(),
    ]);
    assert_ok(&o, "eval --json");
    let j = stdout(&o);
    for needle in [
        "\"found\": 7,",
        "\"excluded\": 0,",
        "\"unreadable\": 0,",
        "\"evaluated\": 7,",
        "\"top1\": {\n    \"correct\": 7,\n    \"percent\": 100\n  }",
        "\"top_k\": 5,",
        "\"unreadable_files\": []",
        // One image per class present; ship comes from the folder named "8".
        "{\n      \"index\": 8,\n      \"label\": \"ship\",\n      \"images\": 1,\n      \"top1\": 1\n    }",
        "\"label\": \"frog\",\n      \"images\": 1,\n      \"top1\": 1",
    ] {
        assert!(j.contains(needle), "{needle:?} not in:\n{j}");
    }
    assert!(!j.contains("\"agreement\""), "{j}");
}

#[test]
fn eval_compare_reports_agreement_with_the_reference_kernels() {
    let tree = class_tree("compare");
    let dir = tree.parent().unwrap().to_path_buf();
    // The same network on the direct scalar kernels, and once with different preprocessing
    // metadata (raw255): eval must feed both models MODEL's tensors and say so.
    let reference = dir.join("resnet20-ref.resq");
    convert(&fixtures().join("resnet20/resnet20.onnx"), PreprocessPreset::Cifar, Packing::Reference, &reference);
    let raw = dir.join("resnet20-raw255.resq");
    convert(&fixtures().join("resnet20/resnet20.onnx"), PreprocessPreset::Raw255, Packing::Fast, &raw);
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--labels-from-dirs".as_ref(),
        "--compare".as_ref(),
        reference.as_os_str(),
    ]);
    assert_ok(&o, "--compare");
    let text = stdout(&o);
    assert_eq!(line(&text, "agreement:"), "7/7 = 100.00% (same top-1 class)", "{text}");
    assert_eq!(line(&text, "compare top-1:"), "7/7 = 100.00%", "{text}");
    assert!(line(&text, "compare:").starts_with(reference.to_str().unwrap()), "{text}");
    let rel: f64 = line(&text, "rel-l2:").split_whitespace().next().unwrap().parse().unwrap();
    assert!((0.0..1e-4).contains(&rel), "fast vs reference kernels differ by rel L2 {rel}: {text}");
    assert!(line(&text, "speed:").contains("compare"), "{text}");
    assert!(!stderr(&o).contains("differs"), "{}", stderr(&o));

    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--compare".as_ref(),
        raw.as_os_str(),
    ]);
    assert_ok(&o, "--compare raw255");
    assert!(
        stderr(&o).contains("preprocessing stored in") && stderr(&o).contains(raw.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    // Same network, same tensors: identical outputs.
    assert_eq!(line(&stdout(&o), "agreement:"), "7/7 = 100.00% (same top-1 class)");
    assert_eq!(line(&stdout(&o), "rel-l2:").split_whitespace().next(), Some("0.000000"), "{}", stdout(&o));

    // A model with another class count cannot be compared.
    let tiny = dir.join("tiny.resq");
    let bytes = convert_file(
        &fixtures().join("tiny/tiny_cnn.onnx"),
        &ConvertOptions { preprocess: Some(PreprocessPreset::Cifar), ..ConvertOptions::default() },
    )
    .unwrap();
    std::fs::write(&tiny, bytes).unwrap();
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--compare".as_ref(),
        tiny.as_os_str(),
    ]);
    assert_exit(&o, 1, "compare with another class count");
    assert!(stderr(&o).contains(tiny.to_str().unwrap()), "{}", stderr(&o));
}

#[test]
fn eval_skips_and_counts_unreadable_images_and_names_bad_folders() {
    let tree = class_tree("bad");
    let bad = tree.join("cat").join("broken.png");
    let png = std::fs::read(fixtures().join("images/cifar10_00_3.png")).unwrap();
    std::fs::write(&bad, &png[..png.len() / 2]).unwrap();
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--labels-from-dirs".as_ref(),
    ]);
    assert_ok(&o, "one broken image");
    assert!(line(&stdout(&o), "images:").ends_with("(8 found, 0 excluded, 1 unreadable)"), "{}", stdout(&o));
    assert_eq!(line(&stdout(&o), "top-1:"), "7/7 = 100.00%");
    assert!(stderr(&o).contains(bad.to_str().unwrap()) && stderr(&o).contains("skipped"), "{}", stderr(&o));

    // Only unreadable images: an error.
    let only_bad = tree.parent().unwrap().join("only-bad");
    std::fs::create_dir_all(only_bad.join("cat")).unwrap();
    std::fs::write(only_bad.join("cat/x.jpg"), b"not a jpeg").unwrap();
    let o = resq(&["eval".as_ref(), resnet20().as_os_str(), "--images".as_ref(), only_bad.as_os_str()]);
    assert_exit(&o, 1, "only unreadable images");
    assert!(stderr(&o).contains("x.jpg"), "{}", stderr(&o));

    // Folder names that are neither labels nor indices: listed, nothing is run.
    std::fs::create_dir_all(tree.join("unicorn")).unwrap();
    std::fs::copy(fixtures().join("images/cifar10_00_3.png"), tree.join("unicorn/a.png")).unwrap();
    std::fs::create_dir_all(tree.join("10")).unwrap();
    std::fs::copy(fixtures().join("images/cifar10_00_3.png"), tree.join("10/b.png")).unwrap();
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        tree.as_os_str(),
        "--labels-from-dirs".as_ref(),
    ]);
    assert_exit(&o, 1, "unknown class folders");
    let e = stderr(&o);
    assert!(e.contains("'unicorn'") && e.contains("'10'") && e.contains("airplane"), "{e}");
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));

    // An image directly under DIR has no class folder.
    let flat = tree.parent().unwrap().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    std::fs::copy(fixtures().join("images/cifar10_00_3.png"), flat.join("a.png")).unwrap();
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        flat.as_os_str(),
        "--labels-from-dirs".as_ref(),
    ]);
    assert_exit(&o, 1, "image outside a class folder");
    assert!(stderr(&o).contains(flat.join("a.png").to_str().unwrap()), "{}", stderr(&o));
    // Without --labels-from-dirs the same folder is fine.
    let o = resq(&["eval".as_ref(), resnet20().as_os_str(), "--images".as_ref(), flat.as_os_str()]);
    assert_ok(&o, "flat folder without labels");
}

#[test]
fn eval_usage_errors() {
    let m = resnet20().to_str().unwrap();
    let fx = fixtures().join("images");
    let fx = fx.to_str().unwrap();
    for (args, code, needle) in [
        (vec!["eval", m], 2, "--images"),
        (vec!["eval", "--images", fx], 2, "MODEL"),
        (vec!["eval", m, "--images", fx, "--exclude-range", "999-950"], 2, "--exclude-range"),
        (vec!["eval", m, "--images", fx, "--exclude-range", "x"], 2, "--exclude-range"),
        (vec!["eval", m, "--images", fx, "--exclude", "a,,b"], 2, "empty pattern"),
        (vec!["eval", m, "--images", fx, "--limit", "0"], 2, "--limit"),
        (vec!["eval", m, "--images", "/nonexistent/images"], 1, "/nonexistent/images"),
        (vec!["eval", m, "--images", fx, "--exclude", "*"], 1, "no images"),
        (vec!["eval", "/nonexistent/m.resq", "--images", fx], 1, "/nonexistent/m.resq"),
    ] {
        let o = resq(&args);
        assert_exit(&o, code, &format!("{args:?}"));
        assert!(stderr(&o).contains(needle), "{args:?}: {needle:?} not in {}", stderr(&o));
    }
    let o = resq(&["eval", "--help"]);
    assert_ok(&o, "--help");
    assert!(stdout(&o).contains("--exclude-range A-B"));
    let o = resq(&["--help"]);
    assert!(stdout(&o).contains("resq eval MODEL --images DIR"));
}

/// ResNet-20 on 100 CIFAR-10 JPEGs: 0940..0949 of every class, selected with `--include` and
/// `--exclude-range` together (the held-out/calibration split of the int8 work).
#[test]
fn eval_cifar10_jpeg_slice_with_filters() {
    let Some(data) = data_dir("eval_cifar10_jpeg_slice_with_filters") else { return };
    let images = data.join("images/cifar10-test");
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--labels-from-dirs".as_ref(),
        "--include".as_ref(),
        "094?.jpg,095?.jpg".as_ref(),
        "--exclude-range".as_ref(),
        "950-999".as_ref(),
    ]);
    assert_ok(&o, "cifar10 slice");
    let text = stdout(&o);
    assert!(line(&text, "images:").ends_with("(10000 found, 9900 excluded, 0 unreadable)"), "{text}");
    assert!(line(&text, "images:").starts_with("100 evaluated"), "{text}");
    assert_eq!(line(&text, "top-1:"), TOP1_0940_0949, "{text}");
    assert_eq!(line(&text, "top-5:"), TOP5_0940_0949, "{text}");

    // --limit keeps the first N in sorted order: airplane/0940..0944.
    let o = resq(&[
        "eval".as_ref(),
        resnet20().as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--labels-from-dirs".as_ref(),
        "--include".as_ref(),
        "094?.jpg".as_ref(),
        "--limit".as_ref(),
        "5".as_ref(),
        "--json".as_ref(),
    ]);
    assert_ok(&o, "cifar10 --limit");
    let j = stdout(&o);
    assert!(j.contains("\"evaluated\": 5,") && j.contains("\"label\": \"airplane\",\n      \"images\": 5,"), "{j}");

    // A batch-3 model (from the PyTorch checkpoint, whose batch is free) on 50 images: 16 full
    // batches and a zero-padded one; it must agree with the batch-1 model image for image.
    let b3 = scratch("batch3").join("resnet20-b3.resq");
    let opts = ConvertOptions {
        preprocess: Some(PreprocessPreset::Cifar),
        labels: Some(CIFAR.iter().map(|s| s.to_string()).collect()),
        batch: 3,
        ..ConvertOptions::default()
    };
    let pth = data.join("models/cifar10-resnet20/resnet20.pth");
    std::fs::write(&b3, convert_file(&pth, &opts).unwrap_or_else(|e| panic!("{}: {e}", pth.display()))).unwrap();
    let o = resq(&[
        "eval".as_ref(),
        b3.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--labels-from-dirs".as_ref(),
        "--include".as_ref(),
        "094?.jpg".as_ref(),
        "--exclude-range".as_ref(),
        "945-949".as_ref(),
        "--compare".as_ref(),
        resnet20().as_os_str(),
    ]);
    assert_ok(&o, "batch-3 model");
    let text = stdout(&o);
    assert!(line(&text, "images:").starts_with("50 evaluated"), "{text}");
    assert_eq!(line(&text, "agreement:"), "50/50 = 100.00% (same top-1 class)", "{text}");
    assert_eq!(line(&text, "top-1:"), line(&text, "compare top-1:"), "{text}");
    let rel: f64 = line(&text, "rel-l2:").split_whitespace().next().unwrap().parse().unwrap();
    assert!(rel < 1e-4, "batch 3 vs batch 1: rel L2 {rel}\n{text}");
}

/// Measured with `resq eval` (avx2 and generic kernels alike); ONNX Runtime 1.32 on the same
/// files decoded by Pillow gets the same counts (81 and 98).
const TOP1_0940_0949: &str = "81/100 = 81.00%";
const TOP5_0940_0949: &str = "98/100 = 98.00%";
