//! Image preprocessing: resize (Pillow bilinear, bit-exact), centre crop, channel order and
//! normalisation, and the errors for bad sizes and buffers.

use resq::format::PreprocessPreset;
use resq::preprocess::{prepare_rgb8, resize_bilinear_rgb8};
use resq::{Error, Preprocess};
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/preprocess");
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

fn params(height: u32, width: u32, resize_shorter: u32) -> Preprocess {
    Preprocess {
        preset: if resize_shorter > 0 { PreprocessPreset::Imagenet } else { PreprocessPreset::Cifar },
        resize_shorter,
        height,
        width,
        channel_order_bgr: false,
        scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
    }
}

/// Packed RGB8 from a per-pixel function.
fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(&f(x, y));
        }
    }
    v
}

fn run(rgb: &[u8], w: usize, h: usize, p: &Preprocess) -> Vec<f32> {
    let mut out = vec![f32::NAN; 3 * p.height as usize * p.width as usize];
    prepare_rgb8(rgb, w, h, p, &mut out).expect("preprocessing failed");
    out
}

#[test]
fn constant_image_gives_the_normalised_constant() {
    let rgb = image(50, 40, |_, _| [10, 100, 200]);
    for resize_shorter in [0, 36] {
        let mut p = params(32, 32, resize_shorter);
        p.scale = 1.0 / 255.0;
        p.mean = IMAGENET_MEAN;
        p.std = IMAGENET_STD;
        let out = run(&rgb, 50, 40, &p);
        for (c, v) in [10.0f32, 100.0, 200.0].into_iter().enumerate() {
            let want = (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            for &got in &out[c * 1024..(c + 1) * 1024] {
                assert!((got - want).abs() < 1e-5, "resize_shorter {resize_shorter}, channel {c}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn gradient_resized_by_two_matches_hand_computed_values() {
    // Red = 10 * x over 8 columns (2 rows), resized to 4x1. Downscaling by 2 widens the
    // triangle filter to support 2: output x reads inputs around centre 2x + 1 with weights
    // triangle((j + 0.5 - centre) / 2), normalised:
    //   x=0: taps 0,1,2 weights 3/7 3/7 1/7 -> (0*3 + 10*3 + 20) / 7 = 7.14 -> 7
    //   x=1: taps 1..4 weights 1/8 3/8 3/8 1/8 -> (10 + 60 + 90 + 40) / 8 = 25
    //   x=2: taps 3..6 -> (30 + 120 + 150 + 60) / 8 = 45
    //   x=3: taps 5,6,7 weights 1/7 3/7 3/7 -> (50 + 180 + 210) / 7 = 62.86 -> 63
    // The two rows are equal, so the vertical 2 -> 1 pass keeps the values.
    let rgb = image(8, 2, |x, _| [10 * x as u8, 7, 255 - 10 * x as u8]);
    let out = run(&rgb, 8, 2, &params(1, 4, 0));
    assert_eq!(&out[0..4], &[7.0, 25.0, 45.0, 63.0]);
    assert_eq!(&out[4..8], &[7.0; 4]);
    assert_eq!(&out[8..12], &[255.0 - 7.0, 255.0 - 25.0, 255.0 - 45.0, 255.0 - 63.0]);

    // Upscaling by 2: plain bilinear between neighbouring centres (weights 3/4, 1/4), edges
    // clamped: [0, 40, 80, 120] -> [0, 10, 30, 50, 70, 90, 110, 120].
    let rgb = image(4, 1, |x, _| [40 * x as u8, 0, 0]);
    let out = run(&rgb, 4, 1, &params(1, 8, 0));
    assert_eq!(&out[0..8], &[0.0, 10.0, 30.0, 50.0, 70.0, 90.0, 110.0, 120.0]);
}

#[test]
fn crop_is_centred_with_round_half_to_even() {
    // Red encodes x, green encodes y. The shorter side (height 6) already equals
    // resize_shorter, so nothing is resampled and the crop offsets show directly.
    for (w, want_left) in [(10usize, 3usize), (9, 2), (11, 4)] {
        // (10-4)/2 = 3; (9-4)/2 = 2.5 -> 2; (11-4)/2 = 3.5 -> 4 (half to even).
        let rgb = image(w, 6, |x, y| [20 * x as u8, 40 * y as u8, 0]);
        let out = run(&rgb, w, 6, &params(4, 4, 6));
        for y in 0..4 {
            for x in 0..4 {
                assert_eq!(out[y * 4 + x], (20 * (x + want_left)) as f32, "w={w} red at ({x},{y})");
                assert_eq!(out[16 + y * 4 + x], (40 * (y + 1)) as f32, "w={w} green at ({x},{y})");
            }
        }
    }
}

#[test]
fn crop_larger_than_the_image_pads_with_zero_pixels() {
    // Shorter side resized to 2 (a 4x2 image stays as is), crop 4x4: one zero row above, one below.
    let rgb = image(4, 2, |_, _| [100, 100, 100]);
    let mut p = params(4, 4, 2);
    p.mean = [10.0; 3];
    let out = run(&rgb, 4, 2, &p);
    for y in 0..4 {
        let want = if y == 0 || y == 3 { -10.0 } else { 90.0 };
        assert_eq!(&out[y * 4..y * 4 + 4], &[want; 4], "row {y}");
    }
}

#[test]
fn bgr_order_swaps_channels_and_normalisation_follows_model_channels() {
    let rgb = image(2, 2, |_, _| [10, 20, 30]);
    let mut p = params(2, 2, 0);
    p.channel_order_bgr = true;
    p.scale = 0.5;
    p.mean = [1.0, 2.0, 3.0];
    p.std = [2.0, 4.0, 8.0];
    let out = run(&rgb, 2, 2, &p);
    // Model channel 0 is blue (30), 1 green (20), 2 red (10); mean/std index model channels.
    let want = [(15.0 - 1.0) / 2.0, (10.0 - 2.0) / 4.0, (5.0 - 3.0) / 8.0];
    for c in 0..3 {
        assert_eq!(&out[c * 4..c * 4 + 4], &[want[c]; 4], "channel {c}");
    }
    p.channel_order_bgr = false;
    let out = run(&rgb, 2, 2, &p);
    assert_eq!(out[0], (5.0 - 1.0) / 2.0);
    assert_eq!(out[8], (15.0 - 3.0) / 8.0);
}

fn read_u8_image(name: &str) -> (Vec<u8>, usize, usize) {
    let (shape, data) = resq::npy::read_f32(&Path::new(FIXTURES).join(name)).expect("fixture");
    assert_eq!(shape.len(), 3, "{name}");
    assert_eq!(shape[2], 3, "{name}");
    (data.iter().map(|&v| v as u8).collect(), shape[1], shape[0])
}

#[test]
fn resize_equals_pillow_bilinear_bit_for_bit() {
    // References made by fixtures/gen/pil_resize_ref.py with Pillow's Image.resize(BILINEAR).
    let (src, w, h) = read_u8_image("src.npy");
    assert_eq!((w, h), (37, 29));
    for (rw, rh) in [(16, 12), (9, 7), (45, 33), (37, 15), (5, 40)] {
        let (want, ww, wh) = read_u8_image(&format!("resize_{rw}x{rh}.npy"));
        assert_eq!((ww, wh), (rw, rh));
        let got = resize_bilinear_rgb8(&src, w, h, rw, rh).unwrap();
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{rw}x{rh}: {diff} of {} values differ from Pillow", want.len());
    }
}

#[test]
fn resize_crop_normalise_matches_the_torchvision_pipeline() {
    // Resize(20) -> 25x20, CenterCrop((17, 15)) at (top 2 = round(1.5), left 5), /255, mean/std.
    let (src, w, h) = read_u8_image("src.npy");
    let (shape, want) = resq::npy::read_f32(&Path::new(FIXTURES).join("imagenet_like.npy")).unwrap();
    assert_eq!(shape, vec![3, 17, 15]);
    let mut p = params(17, 15, 20);
    p.scale = 1.0 / 255.0;
    p.mean = IMAGENET_MEAN;
    p.std = IMAGENET_STD;
    let got = run(&src, w, h, &p);
    let max_err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_err < 1e-5, "max abs error {max_err}");
}

fn expect_err(rgb: &[u8], w: usize, h: usize, p: &Preprocess, out_len: usize, needle: &str) {
    let mut out = vec![0f32; out_len];
    match prepare_rgb8(rgb, w, h, p, &mut out) {
        Err(Error::Preprocess(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        other => panic!("expected a preprocessing error containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn bad_sizes_and_buffers_are_errors() {
    let p = params(4, 4, 0);
    let rgb = image(4, 4, |_, _| [1, 2, 3]);
    expect_err(&rgb, 0, 4, &p, 48, "zero size");
    expect_err(&rgb, 4, 0, &p, 48, "zero size");
    expect_err(&rgb[..47], 4, 4, &p, 48, "needs 48");
    expect_err(&rgb, 4, 4, &p, 47, "needs 48");
    expect_err(&rgb, 1 << 20, 1, &p, 48, "not supported");
    expect_err(&rgb, 4, 4, &params(0, 4, 0), 0, "input size is zero");
    let mut bad = params(4, 4, 0);
    bad.std[1] = 0.0;
    expect_err(&rgb, 4, 4, &bad, 48, "std");
    let mut bad = params(4, 4, 0);
    bad.scale = f32::NAN;
    expect_err(&rgb, 4, 4, &bad, 48, "scale");
    // Width * height overflowing usize is caught before any multiplication of the buffer.
    expect_err(&rgb, usize::MAX, usize::MAX, &p, 48, "not supported");
    assert!(matches!(resize_bilinear_rgb8(&rgb, 4, 4, 0, 3), Err(Error::Preprocess(_))));
    // A resize_shorter that would need a 65536 x 65536 intermediate image is refused up front.
    expect_err(&rgb, 4, 4, &params(4, 4, 1 << 16), 48, "pixels of buffers");
    assert!(matches!(resize_bilinear_rgb8(&rgb[..10], 4, 4, 2, 2), Err(Error::Preprocess(_))));
}

/// `../shared/data`, or `None` after printing a skip; fails when `RESQ_REQUIRE_DATA=1`.
#[cfg(feature = "cli")]
fn shared_data(test: &str) -> Option<std::path::PathBuf> {
    let data = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"));
    if data.is_dir() {
        return Some(data.to_path_buf());
    }
    assert!(
        std::env::var("RESQ_REQUIRE_DATA").as_deref() != Ok("1"),
        "{test}: {} missing and RESQ_REQUIRE_DATA=1",
        data.display()
    );
    eprintln!("SKIP {test}: {} not found", data.display());
    None
}

/// The ImageNet JPEGs decoded by the `image` crate and preprocessed here, against the inputs
/// ONNX Runtime's references were computed from (`../shared/data/refs/resnet50/input.npy`,
/// decoded by PIL/libjpeg, resized with Pillow's bilinear filter, centre-cropped). Resize and
/// crop are bit-exact (see above), so what remains is the JPEG decoders' rounding: a fraction
/// of one 8-bit level on average, a few levels at most.
///
/// The references' generator rounded the long side (`round(256 * long / short)`) where
/// torchvision's `Resize` truncates it, which we follow; an image where the two rules give
/// different sizes (the 1024x683 one: 384 vs 383) is skipped with a note.
#[cfg(feature = "cli")]
#[test]
fn jpeg_pipeline_matches_the_reference_inputs() {
    let Some(data) = shared_data("jpeg_pipeline_matches_the_reference_inputs") else { return };
    let (shape, want) = resq::npy::read_f32(&data.join("refs/resnet50/input.npy")).unwrap();
    assert_eq!(&shape[1..], &[3, 224, 224]);
    let files = std::fs::read_to_string(data.join("refs/resnet50/files.txt")).unwrap();
    let mut p = params(224, 224, 256);
    p.scale = 1.0 / 255.0;
    p.mean = IMAGENET_MEAN;
    p.std = IMAGENET_STD;
    let n = 3 * 224 * 224;
    let mut compared = 0;
    for (row, name) in files.split_whitespace().enumerate() {
        let img = image::open(data.join("images/foolbox-samples").join(name)).unwrap().into_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (short, long) = (w.min(h) as f64, w.max(h) as f64);
        if (256.0 * long / short).floor() != (256.0 * long / short).round() {
            eprintln!("note: {name} ({w}x{h}) skipped: the reference rounded its long side, torchvision truncates");
            continue;
        }
        let got = run(img.as_raw(), w, h, &p);
        let reference = &want[row * n..(row + 1) * n];
        // Differences in units of one 8-bit level (1/255 / std).
        let levels: Vec<f32> =
            (0..n).map(|i| (got[i] - reference[i]).abs() * 255.0 * IMAGENET_STD[i / (224 * 224)]).collect();
        let mean = levels.iter().sum::<f32>() / n as f32;
        let max = levels.iter().copied().fold(0.0, f32::max);
        assert!(mean < 0.5 && max < 4.5, "{name}: mean {mean:.3}, max {max:.2} levels from the reference");
        compared += 1;
    }
    assert!(compared >= 19, "only {compared} images compared");
}

/// The lossless CIFAR-10 PNGs through the cifar preset reproduce the inputs of ONNX Runtime's
/// ResNet-20 references (`refs/resnet20/input.npy`) to float rounding: no resize is involved,
/// so this pins decoding, channel order and normalisation.
#[cfg(feature = "cli")]
#[test]
fn png_pipeline_reproduces_the_resnet20_reference_inputs() {
    let Some(data) = shared_data("png_pipeline_reproduces_the_resnet20_reference_inputs") else { return };
    let (shape, want) = resq::npy::read_f32(&data.join("refs/resnet20/input.npy")).unwrap();
    assert_eq!(&shape[1..], &[3, 32, 32]);
    let files = std::fs::read_to_string(data.join("refs/resnet20/files.txt")).unwrap();
    let mut p = params(32, 32, 0);
    p.scale = 1.0 / 255.0;
    p.mean = IMAGENET_MEAN;
    p.std = IMAGENET_STD;
    let n = 3 * 32 * 32;
    let names: Vec<&str> = files.split_whitespace().collect();
    assert_eq!(names.len(), shape[0]);
    for (row, name) in names.iter().enumerate() {
        let img = image::open(data.join("images/foolbox-samples").join(name)).unwrap().into_rgb8();
        let got = run(img.as_raw(), 32, 32, &p);
        let max = got.iter().zip(&want[row * n..(row + 1) * n]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max < 1e-6, "{name}: max abs difference {max}");
    }
}
